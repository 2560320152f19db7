"""Execute the tutorial notebook at build time, once per content, and prepare it for the site.

Why here and not ``mkdocs-jupyter``'s ``execute: true``: that would train the tutorial's model on
every build (a minute or two on 2 cores), also when only a Markdown page changed, and its own
cache is keyed on the notebook alone, so a change to the package would keep showing old
outputs. This module keys a cache on everything the outputs depend on (the notebook, every
source file of ``induction_lens``, and the versions of the libraries that compute or draw
them): a build re-executes exactly when one of them changed, so the site never shows stale
outputs, and a second build in the same CI run (``mkdocs build --strict``, then the browser
test) costs nothing.

Execution: ``nbclient`` with the ``python3`` kernel of the interpreter running mkdocs, in a
fresh temporary working directory (the notebook writes its hub there, never into the
repository), with ``PLOTLY_RENDERER=plotly_mimetype`` so that figures come out as plotly JSON
(``application/vnd.plotly.v1+json``, what JupyterLab and VS Code render natively). Any cell
error fails the build with the cell's traceback. On a machine that is already busy (1-minute
load average above half its cores) the kernel gets ``OMP_NUM_THREADS=1`` unless the variable
is set: on a shared 2-core machine, two torch threads fighting other processes made training
several times slower than one (the example scripts make the same choice, ``--threads``).

For the site every plotly output also gets a ``text/html`` rendering that draws with the
site's one local copy of plotly.js (see ``site_hooks.py``): no RequireJS, no CDN.

Environment:
    INDUCTION_LENS_DOCS_CACHE: cache directory (default ``~/.cache/induction-lens/docs``).
    INDUCTION_LENS_DOCS_EXECUTE: ``0`` renders the notebook without executing it (fast local
        iterations on other pages; never in CI).
"""

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.notebooks")

TIMEOUT_S = 1800
"""Per cell. The training cell (800 steps of the laptop 2-layer model) takes a minute or two on
2 idle cores, about 3.5 min single-threaded with three other jobs on the same 2 cores."""
KEEP = 4
"""Cached executions kept per notebook (the newest)."""
LIBRARIES = ("torch", "transformer-lens", "plotly", "pandas", "numpy", "nbclient", "ipykernel")


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("INDUCTION_LENS_DOCS_CACHE", base / "induction-lens" / "docs"))


def execution_enabled() -> bool:
    value = os.environ.get("INDUCTION_LENS_DOCS_EXECUTE", "1").strip().lower()
    return value not in ("0", "false", "no")


def kernel_threads() -> str | None:
    """``OMP_NUM_THREADS`` for the kernel: "1" on a busy machine, else None (torch's default)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    return "1" if load > 0.5 * (os.cpu_count() or 1) else None


def cache_key(notebook: Path, package_dir: Path) -> str:
    """Hash of the notebook, the package's source files and the relevant library versions."""
    digest = hashlib.sha256()
    digest.update(notebook.read_bytes())
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(package_dir)).encode())
        digest.update(path.read_bytes())
    for name in LIBRARIES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name}=={version}".encode())
    return digest.hexdigest()[:20]


def _plotly_html(nb) -> int:
    """Give every plotly output a ``text/html`` that draws with a global ``Plotly``."""
    import plotly.io as pio

    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            spec = data.get("application/vnd.plotly.v1+json")
            if spec is None:
                continue
            count += 1
            fig = pio.from_json(json.dumps(spec), skip_invalid=True)
            data["text/html"] = pio.to_html(
                fig, include_plotlyjs=False, full_html=False, div_id=f"tutorial-figure-{count}",
                default_height=f"{fig.layout.height or 450}px", default_width="100%",
                config={"responsive": True, "displaylogo": False})
    return count


def execute(notebook: Path, package_dir: Path) -> Path:
    """Path of an executed copy of ``notebook`` (from the cache, or executed now)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    key = cache_key(notebook, package_dir)
    entry = cache_root() / f"{notebook.stem}-{key}"
    target = entry / notebook.name
    if target.exists():
        log.info("tutorial notebook: cached execution %s", entry)
        return target
    nb = nbformat.read(notebook, as_version=4)
    started = time.monotonic()
    log.info("executing %s (new notebook or package sources; 2-3 min on 2 idle cores)",
             notebook.name)
    saved = {k: os.environ.get(k) for k in ("PLOTLY_RENDERER", "TQDM_DISABLE", "PATH",
                                            "OMP_NUM_THREADS")}
    os.environ["PLOTLY_RENDERER"] = "plotly_mimetype"
    os.environ["TQDM_DISABLE"] = "1"
    threads = kernel_threads()
    if threads is not None:
        log.info("the machine is busy: the tutorial kernel runs torch on %s thread", threads)
        os.environ["OMP_NUM_THREADS"] = threads
    # The python3 kernelspec runs "python": make it the interpreter running mkdocs.
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                          os.environ.get("PATH", "")])
    try:
        with tempfile.TemporaryDirectory(prefix="induction-lens-tutorial-") as workdir:
            client = NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                                    resources={"metadata": {"path": workdir}})
            client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{notebook.name} failed to execute:\n{err}") from err
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    figures = _plotly_html(nb)
    entry.mkdir(parents=True, exist_ok=True)
    tmp = entry / (notebook.name + ".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(target)
    (entry / "timing.json").write_text(json.dumps(
        {"seconds": round(time.monotonic() - started, 1), "figures": figures,
         "omp_num_threads": threads or os.environ.get("OMP_NUM_THREADS")}))
    log.info("executed %s in %.0f s (%d plotly figures)", notebook.name,
             time.monotonic() - started, figures)
    _evict(notebook.stem, keep=KEEP)
    return target


def _evict(stem: str, *, keep: int) -> None:
    entries = sorted(cache_root().glob(f"{stem}-*"), key=lambda p: p.stat().st_mtime,
                     reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def last_timing(executed: Path) -> dict | None:
    path = executed.parent / "timing.json"
    return json.loads(path.read_text()) if path.exists() else None
