"""Headless Chromium for tests: load a page, collect its console errors, take a screenshot.

Reusable by any test that must check what a person would see (the docs site, the HTML report).
Uses Selenium with the system's Chromium and ChromeDriver (Debian: ``apt-get install -y
chromium chromium-driver``); nothing is downloaded at run time.

Typical use::

    from tests.browser import Browser, chromium_or_skip

    chromium_or_skip()                       # skips (or fails under CI) if Chromium is missing
    with Browser() as browser:
        page = browser.load("http://127.0.0.1:8000/", wait_for=".md-content")
        assert not page.errors, page.errors  # console messages at SEVERE level
        assert browser.count(".js-plotly-plot .main-svg") >= 1
        browser.screenshot(tmp_path / "home.png")

Chromium runs with the flags this workplace's machines need (``--headless``, ``--no-sandbox``
as root, no GPU) and with every background-networking feature off, in a fresh profile per
browser: a page that tries to reach the network shows up as a console error, not as a hang.
"""

import base64
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMEDRIVER_CANDIDATES = ("chromedriver",)

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
)


def find_chromium() -> tuple[str | None, str | None]:
    """Paths of the Chromium binary and of ChromeDriver (``$CHROMIUM``/``$CHROMEDRIVER`` first)."""
    browser = os.environ.get("CHROMIUM") or next(
        (p for p in map(shutil.which, CHROMIUM_CANDIDATES) if p), None)
    driver = os.environ.get("CHROMEDRIVER") or next(
        (p for p in map(shutil.which, CHROMEDRIVER_CANDIDATES) if p), None)
    return browser, driver


def missing_reason() -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    browser, driver = find_chromium()
    if browser is None or driver is None:
        return ("Chromium and ChromeDriver are not installed "
                "(Debian: apt-get install -y chromium chromium-driver)")
    return None


def chromium_or_skip() -> None:
    """Skip the calling test when Chromium cannot run here; under CI (``$CI`` set), fail."""
    import pytest

    reason = missing_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


@dataclass
class PageLoad:
    """What loading one URL gave."""

    url: str
    seconds: float
    errors: list[dict] = field(default_factory=list)
    """Console messages at SEVERE level (JavaScript errors, failed resource loads)."""
    messages: list[dict] = field(default_factory=list)
    """Every console message, any level."""
    external_requests: list[str] = field(default_factory=list)
    """Resources the page requested from another origin than its own."""


class Browser:
    """One headless Chromium session (a context manager)."""

    def __init__(self, *, width: int = 1280, height: int = 900, page_timeout: float = 60.0):
        reason = missing_reason()
        if reason is not None:
            raise RuntimeError(reason)
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        browser, driver = find_chromium()
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        options = Options()
        options.binary_location = browser
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self._profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # An explicit driver path: Selenium Manager (which would try to download one) is not used.
        self.driver = webdriver.Chrome(service=Service(executable_path=driver), options=options)
        self.driver.set_page_load_timeout(page_timeout)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    # ------------------------------------------------------------------ loading
    def load(self, url: str, *, wait_for: str | None = None, timeout: float = 30.0,
             settle: float = 0.3) -> PageLoad:
        """Open ``url``, wait for the load event (and ``wait_for``, a CSS selector), then collect
        the console messages the page produced and the cross-origin requests it made."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        self.console()  # drop messages of the previous page
        started = time.monotonic()
        self.driver.get(url)
        wait = WebDriverWait(self.driver, timeout)
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        if wait_for:
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, wait_for)))
        time.sleep(settle)  # let scripts run after load (plots draw on load)
        seconds = time.monotonic() - started
        messages = self.console()
        external = self.js("""
            return performance.getEntriesByType('resource').map(e => e.name)
                .filter(n => !n.startsWith(location.origin) && !n.startsWith('data:')
                             && !n.startsWith('blob:'));""") or []
        return PageLoad(url=url, seconds=seconds,
                        errors=[m for m in messages if m.get("level") == "SEVERE"],
                        messages=messages, external_requests=list(external))

    def console(self) -> list[dict]:
        """Console messages since the last call (``level``, ``message``, ``source``)."""
        return list(self.driver.get_log("browser"))

    # ------------------------------------------------------------------ inspecting
    def js(self, script: str, *args):
        """Run JavaScript in the page and return its result."""
        return self.driver.execute_script(script, *args)

    def count(self, selector: str) -> int:
        """Number of elements matching a CSS selector."""
        return int(self.js("return document.querySelectorAll(arguments[0]).length", selector))

    def texts(self, selector: str) -> list[str]:
        return list(self.js("return Array.from(document.querySelectorAll(arguments[0]))"
                            ".map(e => e.textContent)", selector))

    def links(self) -> list[str]:
        """Absolute URLs of every ``<a href>`` of the page."""
        return list(self.js("return Array.from(document.querySelectorAll('a[href]'))"
                            ".map(a => a.href)"))

    # ------------------------------------------------------------------ screenshots
    def screenshot(self, path: str | Path, *, full_page: bool = True,
                   element: str | None = None) -> Path:
        """Save a PNG of the page: the whole page by default, only the viewport with
        ``full_page=False``, or the box of the first element matching the CSS selector
        ``element``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if element is not None:
            box = self.js("""const r = document.querySelector(arguments[0]).getBoundingClientRect();
                return {x: r.left + window.scrollX, y: r.top + window.scrollY,
                        width: r.width, height: r.height};""", element)
            clip = {k: max(1, int(v)) if k in ("width", "height") else int(v)
                    for k, v in box.items()}
        elif full_page:
            metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            clip = {"x": 0, "y": 0, "width": max(1, int(size["width"])),
                    "height": max(1, min(int(size["height"]), 16384))}
        else:
            self.driver.save_screenshot(str(path))
            return path
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True, "fromSurface": True,
            "clip": {**clip, "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def format_messages(messages: list[dict]) -> str:
    """Console messages as readable lines, for assertion messages."""
    return "\n".join(json.dumps({k: m.get(k) for k in ("level", "source", "message")})
                     for m in messages)
