"""The documentation site: a strict build, then the built site served on localhost and opened
in headless Chromium the way a reader would.

One ``mkdocs build --strict`` per test session (module fixture) into a temporary directory (or
the site ``.ci/run`` just built strictly, named by ``$INDUCTION_LENS_DOCS_SITE``).
The build executes the tutorial notebook unless its cached execution matches the notebook, the
package sources and the library versions (``docs/_hooks/notebooks.py``), so a cell that breaks
fails here. Then, on the served site: every internal link and asset resolves (files and HTTP
200, anchors included), the main pages load with no console error and no request leaving the
machine, the plots are drawn where they are expected, and each page is screenshotted into
``$INDUCTION_LENS_SCREENSHOTS`` (default: a temporary directory; the path is printed).

Skipped, with the reason, where the docs dependencies or Chromium are not installed; under CI
(``$CI`` set) that is a failure instead.
"""

import functools
import html.parser
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.browser import Browser, chromium_or_skip, format_messages

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / "docs" / "_hooks"

slow = [pytest.mark.slow, pytest.mark.timeout(1800)]
"""Marks of the tests that need the built site (the build may execute the tutorial)."""


def _slow(fn):
    for mark in slow:
        fn = mark(fn)
    return fn

MAIN_PAGES = {
    # page URL (relative to the site root) -> plotly figures drawn on it, at least (None: any
    # number, including none). The home page and the argument pages draw the published
    # results of the examples (docs/figures/NAME).
    "": 1,
    "getting-started/": 0,
    "tutorial/": 6,
    "concepts/": 0,
    "concepts/in-context-learning/": 0,
    "concepts/induction-heads/": 1,
    "concepts/phase-changes/": 1,
    "concepts/ablations/": 0,
    "concepts/circuits/": 0,
    "concepts/evaluating-runs/": 0,
    "arguments/": 0,
    "arguments/arg1-co-occurrence/": 10,
    "arguments/arg4-generality/": 1,
    "arguments/arg6-continuity/": 1,
    "models/": 0,
    "hub/": 0,
    "cli/": 0,
    "api/": 0,
    "api/induction_lens.measures.heads/": 0,
    "api/induction_lens.viz/": 0,
}


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        reason = f"{module} is not installed (pip install -e '.[docs]')"
        if os.environ.get("CI"):
            pytest.fail(f"docs test cannot run in CI: {reason}")
        pytest.skip(reason)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """Build the site once: ``{"dir", "seconds", "log", "pages"}``.

    With ``$INDUCTION_LENS_DOCS_SITE`` set (``.ci/run`` sets it after its own
    ``mkdocs build --strict``) that site is checked instead of building a second one.
    """
    prebuilt = os.environ.get("INDUCTION_LENS_DOCS_SITE")
    if prebuilt:
        out = Path(prebuilt).resolve()
        assert (out / "index.html").is_file(), f"INDUCTION_LENS_DOCS_SITE={prebuilt} holds no site"
        pages = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
        print(f"\ndocs: checking the site prebuilt in {out} ({len(pages)} HTML pages)")
        return {"dir": out, "seconds": None, "log": "", "pages": pages}
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_jupyter",
                   "nbclient", "ipykernel"):
        _require(module)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env.pop("INDUCTION_LENS_DOCS_EXECUTE", None)  # the test always renders the executed notebook
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1700)
    seconds = time.monotonic() - started
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
    print(f"\ndocs: built {len(pages)} HTML pages in {seconds:.1f} s into {out}")
    return {"dir": out, "seconds": seconds, "log": log, "pages": pages}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A browser that stops reading (a cancelled prefetch) is not an error of the site.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server(site):
    """The built site on http://127.0.0.1:PORT/ (a stdlib server in a thread)."""
    handler = functools.partial(_QuietHandler, directory=str(site["dir"]))
    httpd = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    chromium_or_skip()
    with Browser(width=1280, height=900) as b:
        yield b


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    target = os.environ.get("INDUCTION_LENS_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\ndocs: screenshots in {path}")
    return path


# ---------------------------------------------------------------------------- the build
@_slow
def test_every_nav_page_and_api_module_is_built(site):
    built = set(site["pages"])
    for page in MAIN_PAGES:
        assert f"{page}index.html" in built, f"{page or 'home'} was not built"
    for number, name in enumerate(("co-occurrence", "smeared-keys", "ablations", "generality",
                                   "mechanism", "continuity"), start=1):
        assert f"arguments/arg{number}-{name}/index.html" in built
    # One API page per public module of the package, found on disk independently of the hook.
    package = ROOT / "induction_lens"
    for path in package.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        if any(p.startswith("_") for p in parts):
            continue
        module = ".".join(parts)
        expected = "api/index.html" if module == "induction_lens" else f"api/{module}/index.html"
        assert expected in built, f"no API page for {module}"


@_slow
def test_cli_reference_lists_every_subcommand(site):
    from induction_lens.cli import build_parser

    page = (site["dir"] / "cli" / "index.html").read_text(encoding="utf-8")

    def walk(parser, path=()):
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    yield (*path, name), sub
                    yield from walk(sub, (*path, name))

    commands = list(walk(build_parser()))
    assert commands
    for path, sub in commands:
        assert f"induction-lens {' '.join(path)}" in page
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in page, f"{' '.join(path)}: option {flag} missing from the CLI page"


@_slow
def test_tutorial_is_executed_and_its_download_is_the_clean_notebook(site):
    page = (site["dir"] / "tutorial" / "index.html").read_text(encoding="utf-8")
    assert 'class="dataframe' in page, "the tutorial shows no DataFrame output"
    assert "plotly-graph-div" in page, "the tutorial shows no plotly figure"
    assert "Traceback" not in page
    download = json.loads((site["dir"] / "tutorial" / "tutorial.ipynb").read_text())
    source = json.loads((ROOT / "docs" / "tutorial.ipynb").read_text())
    assert download == source
    assert all(not cell.get("outputs") for cell in source["cells"]), (
        "commit docs/tutorial.ipynb without outputs; the build executes it")


@_slow
def test_search_index_holds_the_concepts(site):
    index = json.loads((site["dir"] / "search" / "search_index.json").read_text())
    text = " ".join(doc["text"] for doc in index["docs"]).lower()
    for phrase in ("prefix matching", "in-context learning score", "pattern-preserving"):
        assert phrase in text


# ---------------------------------------------------------------------------- links
class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.assets: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if attrs.get("name") and tag == "a":
            self.ids.add(attrs["name"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])
        elif tag in ("script", "img", "iframe") and attrs.get("src"):
            self.assets.append(attrs["src"])
        elif tag == "link" and attrs.get("href") and attrs.get("rel") not in ("canonical",):
            self.assets.append(attrs["href"])


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def _target(site_dir: Path, page: Path, ref: str) -> tuple[Path, str] | None:
    """The file an internal reference points to and its fragment; None for external ones."""
    parts = urllib.parse.urlsplit(ref)
    if parts.scheme or parts.netloc or ref.startswith(("mailto:", "javascript:", "data:")):
        return None
    if not parts.path:
        return page, parts.fragment
    base = page.parent if not parts.path.startswith("/") else site_dir
    target = (base / urllib.parse.unquote(parts.path.lstrip("/"))).resolve()
    if target.is_dir() or parts.path.endswith("/"):
        target = target / "index.html"
    return target, parts.fragment


@_slow
def test_internal_links_and_anchors_resolve(site, server):
    site_dir = site["dir"].resolve()
    parsed: dict[Path, _Links] = {}

    def links_of(path: Path) -> _Links:
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path]

    broken, missing_anchor, checked = [], [], set()
    for page in sorted(site_dir.rglob("*.html")):
        links = links_of(page)
        for ref in links.hrefs + links.assets:
            resolved = _target(site_dir, page, ref)
            if resolved is None:
                continue
            target, fragment = resolved
            where = f"{page.relative_to(site_dir)} -> {ref}"
            if not target.is_relative_to(site_dir) or not target.exists():
                broken.append(where)
                continue
            checked.add(target)
            if fragment and target.suffix == ".html" and fragment not in links_of(target).ids:
                missing_anchor.append(where)
    assert not broken, "broken internal links:\n" + "\n".join(broken[:50])
    assert not missing_anchor, "links to missing anchors:\n" + "\n".join(missing_anchor[:50])
    # The server returns every target with 200 (what a browser would get).
    for target in sorted(checked):
        url = server + urllib.parse.quote(target.relative_to(site_dir).as_posix())
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"),
                                        timeout=10) as response:
                assert response.status == 200, url
        except urllib.error.HTTPError as err:
            pytest.fail(f"{url}: HTTP {err.code}")
    assert len(checked) > 30


@_slow
def test_no_page_references_a_remote_script_or_stylesheet(site):
    remote = []
    for page in site["dir"].rglob("*.html"):
        for ref in _parse(page).assets:
            if urllib.parse.urlsplit(ref).scheme in ("http", "https") or ref.startswith("//"):
                remote.append(f"{page.relative_to(site['dir'])}: {ref}")
    assert not remote, "pages load remote assets (the site must work offline):\n" + "\n".join(
        remote[:30])


# ---------------------------------------------------------------------------- in the browser
@_slow
@pytest.mark.parametrize("page", list(MAIN_PAGES), ids=[p.strip("/") or "home"
                                                        for p in MAIN_PAGES])
def test_page_renders_without_errors(page, site, server, browser, screenshots):
    load = browser.load(server + page, wait_for="article.md-content__inner", timeout=60)
    name = re.sub(r"[^a-z0-9]+", "_", page.strip("/").lower()) or "home"
    shot = browser.screenshot(screenshots / f"{name}.png")
    assert shot.stat().st_size > 10_000
    assert not load.errors, f"console errors on {page or 'home'}:\n" + format_messages(load.errors)
    assert not load.external_requests, f"{page or 'home'} requested {load.external_requests}"
    assert browser.count("article.md-content__inner h1") >= 1
    expected = MAIN_PAGES[page]
    plots = browser.count(".js-plotly-plot")
    drawn = int(browser.js("return Array.from(document.querySelectorAll('.js-plotly-plot'))"
                           ".filter(p => p.querySelector('.main-svg')).length"))
    assert drawn == plots, f"{plots - drawn} plotly figure(s) on {page} were not drawn"
    if expected is None:
        return
    assert plots >= expected, f"{page}: {plots} plotly figures, expected at least {expected}"
    if expected == 0:
        assert "plotly.min.js" not in browser.js("return document.head.innerHTML"), (
            f"{page} loads plotly.js without a figure")


# ---------------------------------------------------------------------------- the hooks alone
def _hook_module(name: str):
    import importlib

    sys.path.insert(0, str(HOOKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(HOOKS))


def test_cli_reference_renders_any_parser():
    import argparse

    cli_reference = _hook_module("cli_reference")
    parser = argparse.ArgumentParser(prog="tool", description="A tool.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run it")
    run.add_argument("--fast", action="store_true", help="go fast")
    nested = sub.add_parser("db", help="database").add_subparsers(dest="db_command")
    nested.add_parser("ls", help="list tables")
    text = cli_reference.render(parser)
    assert "| [`tool run`](#cmd-run) | run it |" in text
    assert "| [`tool db ls`](#cmd-db-ls) | list tables |" in text
    assert "--fast" in text and "go fast" in text
    assert text.count("```text") == 4  # tool, run, db, db ls


def test_figure_generators_are_deterministic():
    figures = _hook_module("figures")
    assert figures.GENERATORS
    for name, generate in figures.GENERATORS.items():
        first, second = generate(), generate()
        assert first.to_json() == second.to_json(), f"generator {name} is not deterministic"
        assert first.data, f"generator {name} draws nothing"


def test_phase_window_demo_accepts_the_step_and_rejects_the_drift():
    figures = _hook_module("figures")
    names = [trace.name for trace in figures.GENERATORS["phase_window_demo"]().data if trace.name]
    assert any(n.startswith("two layers") and n.endswith("phase change") for n in names), names
    assert any(n.startswith("one layer") and "rejected" in n for n in names), names


def test_sphinx_roles_become_links_or_code():
    pytest.importorskip("griffe", reason="griffe comes with the docs extra")
    roles = _hook_module("griffe_roles")
    import griffe

    pkg = griffe.load("induction_lens", search_paths=[str(ROOT)])
    heads = pkg["measures.heads"]
    text = roles.convert(":func:`head_scores` and :func:`~induction_lens.data.repeated_tokens`, "
                         ":func:`_direct_logits`, :mod:`nowhere.at_all`, the \"[A][B]\" rule, "
                         "``[A][B]`` in code", heads, pkg.modules_collection)
    assert "[`head_scores`][induction_lens.measures.heads.head_scores]" in text
    assert "[`repeated_tokens`][induction_lens.data.repeated_tokens]" in text
    assert "`_direct_logits`" in text and "[`_direct_logits`]" not in text  # private: code only
    assert "`nowhere.at_all`" in text
    assert "\\[A\\]\\[B\\]" in text and "``[A][B]``" in text


def test_literal_blocks_become_fences_at_the_list_content_column():
    roles = _hook_module("griffe_roles")
    text = ("* **Registry.** Register your own::\n\n      @register(\"m\")\n      def m(x):\n"
            "          return x\n\n  After.\n\nLayout::\n\n    HUB/\n      RUN/\n")
    out = roles.literal_blocks(text)
    assert "* **Registry.** Register your own:\n\n    ```python\n    @register(\"m\")\n" in out
    assert "  After." in out
    assert "Layout:\n\n```text\nHUB/\n  RUN/\n```" in out


def test_example_figures_and_claims_are_embedded_or_announced(tmp_path, monkeypatch):
    pytest.importorskip("mkdocs", reason="mkdocs comes with the docs extra")
    import plotly.graph_objects as go

    hooks = _hook_module("site_hooks")
    out = tmp_path / "arg9_demo"
    out.mkdir()
    go.Figure(go.Scatter(x=[0, 1], y=[1, 0])).write_html(
        str(out / "curve.html"), include_plotlyjs="directory", full_html=True)
    (out / "summary.json").write_text(json.dumps({"claims": [
        {"key": "k", "status": "PASS", "statement": "it holds | really",
         "criterion": "x > 0", "measured": {"x": 0.123456}}]}))
    monkeypatch.setenv("INDUCTION_LENS_FIGURES", str(tmp_path))
    slots: list[str] = []
    markdown = hooks._figure("file: arg9_demo/curve\nscript: python examples/arg9_demo.py\n"
                             "caption: A curve.", "page.md", slots)
    assert 'data-slot="0"' in markdown and "A curve." in markdown
    assert "plotly-graph-div" in slots[0] and "plotly.min.js" not in slots[0]
    missing = hooks._figure("file: arg9_demo/absent\nscript: python examples/arg9_demo.py",
                            "page.md", slots)
    assert "Figure not generated yet" in missing and "python examples/arg9_demo.py" in missing
    table = hooks._claims("arg9_demo")
    assert "**PASS**" in table and "it holds \\| really" in table and "x = 0.123" in table
    assert "`k`" in table and "smoke run" not in table
    assert "No results yet" in hooks._claims("arg8_none")
    assert "python examples/arg8_none.py" in hooks._claims("arg8_none")


def test_figures_named_after_runs_are_found_by_pattern(tmp_path, monkeypatch):
    """A ``file:`` with ``*`` draws every figure of the example's latest run, captioned from its
    summary; files of an earlier run in the same folder are not shown."""
    pytest.importorskip("mkdocs", reason="mkdocs comes with the docs extra")
    import plotly.graph_objects as go

    hooks = _hook_module("site_hooks")
    out = tmp_path / "arg9_demo"
    out.mkdir()
    for run in ("a-1l", "a-2l", "tiny-a-2l"):
        go.Figure(go.Scatter(x=[0, 1], y=[1, 0], name=run)).write_html(
            str(out / f"heads_{run}.html"), include_plotlyjs="directory", full_html=True)
    (out / "summary.json").write_text(json.dumps({
        "mode": "tiny", "claims": [], "figures": [
            {"name": f"heads_{run}", "html": str(out / f"heads_{run}.html"),
             "caption": f"{run}: every head"} for run in ("a-1l", "a-2l")]}))
    monkeypatch.setenv("INDUCTION_LENS_FIGURES", str(tmp_path))
    slots: list[str] = []
    markdown = hooks._figure("file: arg9_demo/heads_*\nscript: python examples/arg9_demo.py\n"
                             "caption: Every head.", "page.md", slots)
    assert len(slots) == 2 and all("plotly-graph-div" in slot for slot in slots)
    assert "a-1l: every head" in markdown and "a-2l: every head" in markdown
    assert "tiny-a-2l" not in markdown
    missing = hooks._figure("file: arg9_demo/none_*\nscript: python examples/arg9_demo.py",
                            "page.md", slots)
    assert "Figure not generated yet" in missing
    assert "smoke run" in hooks._claims("arg9_demo")  # a --tiny summary is flagged


# ---------------------------------------------------------------------------- argument pages
_CLAIM = re.compile(r"""ex\.claim\(\s*f?["']([a-z0-9_]+)""")
_FIGURE = re.compile(r"""ex\.figure\(\s*(f?)(["'])(.*?)\2""")


def _figure_names(source: str) -> list[re.Pattern]:
    """The figure names a script writes, as patterns (an f-string's fields match any text);
    a call of ``C.training_figures`` writes the ones that helper of ``examples/_common.py``
    names."""
    if "C.training_figures(" in source:
        common = (ROOT / "examples" / "_common.py").read_text(encoding="utf-8")
        helper = common[common.index("def training_figures("):]
        source += helper[:helper.index("\n\n\n")]
    names = []
    for is_f, _, name in _FIGURE.findall(source):
        parts = re.split(r"\{[^}]*\}", name) if is_f else [name]
        names.append(re.compile("^" + ".+".join(re.escape(p) for p in parts) + "$"))
    return names


def _argument_pages() -> dict[Path, str]:
    pages = sorted((ROOT / "docs" / "arguments").glob("arg*.md"))
    assert len(pages) == 6
    return {page: page.read_text(encoding="utf-8") for page in pages}


def test_argument_pages_match_the_example_scripts():
    """Every claim key a script states is named on its page; every figure a page embeds is one
    the script writes (a name with ``*`` stands for the figures named after the runs)."""
    for page, text in _argument_pages().items():
        names = re.findall(r"^\[\[claims ([a-z0-9_]+)\]\]$", text, flags=re.MULTILINE)
        assert len(names) == 1, f"{page.name}: expected one [[claims NAME]]"
        script = ROOT / "examples" / f"{names[0]}.py"
        if not script.exists():
            pytest.fail(f"{page.name} documents {script.relative_to(ROOT)}, which does not exist")
        source = script.read_text(encoding="utf-8")
        for key in set(_CLAIM.findall(source)):
            assert f"`{key}" in text, f"{page.name}: claim {key!r} of {script.name} not described"
        written = _figure_names(source)
        assert written, f"{script.name} writes no figure"
        for block in re.findall(r"^```plotly\n(.*?)\n```$", text, flags=re.MULTILINE | re.DOTALL):
            spec = dict(line.split(": ", 1) for line in block.splitlines())
            folder, _, figure = spec["file"].partition("/")
            assert folder == names[0], f"{page.name}: figure {spec['file']} of another example"
            assert spec.get("script") == f"python examples/{names[0]}.py"
            example = figure.replace("*", "RUN")  # a run's name in place of the wildcard
            assert any(pattern.match(example) for pattern in written), (
                f"{page.name}: {script.name} writes no figure {figure!r} (it writes "
                f"{sorted(p.pattern for p in written)})")


# ---------------------------------------------------------------------------- published results
PUBLISHED = ROOT / "docs" / "figures"


def _published() -> list[Path]:
    return sorted(p.parent for p in PUBLISHED.glob("*/summary.json"))


def _example_common():
    examples = str(ROOT / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    import _common

    return _common


def test_published_results_are_default_runs_of_this_code():
    """Results under ``docs/figures/NAME`` (``examples/publish.py``) come from a finished
    default-mode run of the example as it is now: its script and the files that decide what it
    trains and claims (``_common.RESULT_INPUTS``) have the sha256 the run recorded."""
    common = _example_common()
    folders = _published()
    assert folders, "no published results in docs/figures (run the examples, then publish.py)"
    for folder in folders:
        name = folder.name
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        assert summary["example"] == name
        assert summary["mode"] == "default" and summary["error"] is None, name
        assert summary.get("inputs_sha256") == common.inputs_sha256(name), (
            f"docs/figures/{name} is stale: the code changed since it was produced; run "
            f"`python examples/{name}.py --out examples_out/{name}` and "
            f"`python examples/publish.py {name}`")
        assert summary["claims"], name
        for entry in summary["figures"]:
            assert entry.get("html") and (folder / entry["html"]).is_file(), (name, entry)


@_slow
def test_every_argument_page_shows_its_results(site):
    """Each argument page of the built site shows its example's claims table and figures, none
    of the placeholders a missing result leaves."""
    for page in _argument_pages():
        html = (site["dir"] / "arguments" / page.stem / "index.html").read_text(encoding="utf-8")
        assert "No results yet" not in html, f"{page.name}: no claims table"
        assert "Figure not generated yet" not in html, f"{page.name}: a figure is missing"
        assert "PASS" in html, f"{page.name}: no claim verdicts"


def test_publish_refuses_unfinished_runs_and_replaces_old_results(tmp_path, monkeypatch, capsys):
    """``examples/publish.py`` refuses a ``--tiny`` run and a run of other code, each with a
    one-line error and nothing written; a good run replaces the published folder whole (no
    file of the old results stays, no staging folder is left)."""
    common = _example_common()
    import publish

    name = "arg3_ablations"
    figures = tmp_path / "figures"
    monkeypatch.setattr(publish, "DOCS_FIGURES", figures)
    source = tmp_path / "out"
    (source / name).mkdir(parents=True)
    (source / name / "fig.html").write_text("<html>new</html>")

    def write_summary(**overrides):
        summary = {"example": name, "mode": "default", "error": None, "passed": 1, "failed": 0,
                   "inputs_sha256": common.inputs_sha256(name), "hub": "/somewhere/hub",
                   "figures": [{"name": "fig", "html": str(source / name / "fig.html"),
                                "png": "fig.png"}], **overrides}
        (source / name / "summary.json").write_text(json.dumps(summary))

    write_summary(mode="tiny")
    assert publish.publish(name, source) == 2
    assert "publish only default-mode runs" in capsys.readouterr().err
    write_summary(inputs_sha256={"examples/arg3_ablations.py": "0" * 64})
    assert publish.publish(name, source) == 2
    assert "other code" in capsys.readouterr().err
    assert not figures.exists() or not any(figures.iterdir())

    (figures / name).mkdir(parents=True)
    (figures / name / "old.html").write_text("old")
    write_summary()
    assert publish.publish(name, source) == 0
    assert sorted(p.name for p in (figures / name).iterdir()) == ["fig.html", "summary.json"]
    published = json.loads((figures / name / "summary.json").read_text())
    assert published["hub"] == "hub" and published["figures"][0] == {
        "name": "fig", "html": "fig.html", "png": None}
    assert sorted(p.name for p in figures.iterdir()) == [name]
