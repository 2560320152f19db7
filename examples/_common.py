"""Plumbing shared by the example scripts (``arg1_...`` to ``arg6_...``); not part of the library.

Every example:

* takes the same options (:func:`build_parser`): ``--hub`` (runs are trained into it, or reused
  when already there), ``--out`` (figures and ``summary.json``), ``--full`` (the complete set of
  models for the argument instead of the quick default), ``--tiny`` (a few training steps and
  small evaluation sets: the same code paths in seconds, for the tests; its claims usually
  FAIL), ``--steps``, ``--data``, ``--scale``, ``--device``, ``--no-png``, ``--strict``;
* trains what it needs with :meth:`Example.ensure_run` (a run already in the hub with the same
  configuration is reused, or resumed when it has fewer steps than asked for);
* states each quantitative claim with :meth:`Example.claim`, which prints one ``PASS``/``FAIL``
  line with the measured values, whatever the outcome;
* writes its figures as HTML (one shared ``plotly.min.js`` next to them, so they open offline)
  and as PNG when a static export works (plotly's ``write_image`` needs the ``kaleido``
  package and a Chrome/Chromium; otherwise the summary says why there is no PNG);
* ends with :meth:`Example.finish`, which writes ``summary.json``: the claims with their
  measured values and verdicts, what was run (runs, steps, data, evaluation settings, command
  line, versions) and how long it took under which machine load.
"""

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from induction_lens._version import __version__
from induction_lens.config import ConfigError, DataSpec, RunConfig
from induction_lens.hub import Hub, HubError, git_hash
from induction_lens.runs.evaluate import EvalSettings, evaluate_run
from induction_lens.train import resolve_config, train

TINY_STEPS = 12
"""Training steps of every run in ``--tiny`` mode."""
TINY_CHECKPOINT_EVERY = 2
"""Checkpoint interval in ``--tiny`` mode (7 checkpoints: enough for the window detector)."""
TINY_SETTINGS = EvalSettings(n_examples=8, batch_size=8, head_examples=2)
"""Evaluation settings of ``--tiny`` mode."""


RESULT_INPUTS = (
    "examples/_common.py",
    "induction_lens/presets.py",
    "induction_lens/data/synthetic.py",
    "induction_lens/analysis/changepoint.py",
    "induction_lens/analysis/phases.py",
)
"""Files (besides the example script itself) that decide what an example trains and claims.
``summary.json`` records their sha256 (``inputs_sha256``), so that published results
(``docs/figures/NAME``, :mod:`publish`) can be checked against the code (``tests/test_docs.py``
fails when they differ)."""

REPO = Path(__file__).resolve().parent.parent


def inputs_sha256(name: str) -> dict[str, str]:
    """sha256 of the example script ``examples/NAME.py`` and of :data:`RESULT_INPUTS`."""
    from induction_lens.io import sha256_file

    return {rel: sha256_file(REPO / rel) for rel in (f"examples/{name}.py", *RESULT_INPUTS)}


class ExampleError(ConfigError):
    """An example cannot run as asked; the message says why and what to do instead."""


class PlotsUnavailable(RuntimeError):
    """``induction_lens.viz`` (or one of its functions) is missing."""


def build_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options every example takes (a script may add its own)."""
    p = argparse.ArgumentParser(prog=f"{name}.py", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hub", default="hub",
                   help="hub directory: runs are trained into it, or reused when already there "
                        "(default ./hub, shared with `induction-lens demo`)")
    p.add_argument("--out", default=None,
                   help=f"where figures and summary.json go (default examples_out/{name})")
    p.add_argument("--full", action="store_true",
                   help="the complete set of models for this argument (slower; see the "
                        "script's docstring)")
    p.add_argument("--tiny", action="store_true",
                   help=f"{TINY_STEPS} training steps and small evaluation sets: exercises "
                        "every code path in seconds (claims will usually FAIL)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps of every run (default: the script's choice)")
    p.add_argument("--data", default="synthetic",
                   help="training data of the runs: synthetic (default), shakespeare, "
                        "files:PATH[,PATH], hf:NAME; runs on other data get their own names")
    p.add_argument("--scale", choices=["laptop", "paper"], default="laptop",
                   help="preset scale (paper scale needs a GPU: pass --device cuda)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 when the machine is already busy, i.e. "
                        "its 1-minute load average exceeds half its cores, else torch's default; "
                        "on a shared 2-core machine several threads per process fight each "
                        "other: one thread measured 5-10x faster per training step)")
    p.add_argument("--no-png", action="store_true", help="write HTML figures only")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when a claim FAILs (default: 0; claims are reported)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def _jsonable(value: Any) -> Any:
    """JSON-ready copy: numpy/torch scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str) or value is None:
        return value
    return str(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "nan" if not math.isfinite(float(value)) else f"{float(value):.3g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def choose_threads(requested: int | None, loadavg: list[float] | None) -> int:
    """torch's CPU thread count for this process (see ``--threads``)."""
    if requested is not None:
        if requested < 1:
            raise ExampleError(f"--threads {requested} must be a positive integer")
        return requested
    cpus = os.cpu_count() or 1
    if loadavg is not None and loadavg[0] > 0.5 * cpus:
        return 1
    return torch.get_num_threads()


class _LoadSampler:
    """Samples the 1-minute load average every few seconds while the example runs."""

    def __init__(self, every: float = 5.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._every = every
        self.start_loadavg = self._read()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _read() -> list[float] | None:
        try:
            return [round(v, 2) for v in os.getloadavg()]
        except OSError:
            return None

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            now = self._read()
            if now is not None:
                self.samples.append(now[0])

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=1)
        return {"start": self.start_loadavg, "end": self._read(),
                "mean_1min": round(float(np.mean(self.samples)), 2) if self.samples else None,
                "max_1min": round(float(np.max(self.samples)), 2) if self.samples else None,
                "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}


@dataclass
class RunRecord:
    """One run an example used: what it is and whether it was trained, resumed or reused."""

    run: str
    preset: str
    steps: int
    data: str
    status: str
    """"trained", "resumed" (had fewer steps) or "reused"."""
    train_seconds: float


class Example:
    """The state of one example run: options, hub, claims, figures; see the module docstring."""

    def __init__(self, name: str, title: str, args: argparse.Namespace):
        self.name = name
        self.title = title
        self.args = args
        self.tiny: bool = args.tiny
        self.full: bool = args.full
        self.quiet: bool = args.quiet or args.tiny
        self.hub = Hub(args.hub)
        self.out = Path(args.out if args.out else Path("examples_out") / name)
        self.out.mkdir(parents=True, exist_ok=True)
        self.settings = TINY_SETTINGS if self.tiny else EvalSettings()
        self.data = DataSpec.parse(args.data)
        self.claims: list[dict[str, Any]] = []
        self.figures: list[dict[str, Any]] = []
        self.runs: list[RunRecord] = []
        self.notes: list[str] = []
        self.facts: dict[str, Any] = {}
        """Extra descriptive values the script wants in the summary (not claims)."""
        self._figs: list[tuple[Any, Path]] = []
        self._started = time.time()
        self._load = _LoadSampler()
        self.threads = choose_threads(args.threads, self._load.start_loadavg)
        torch.set_num_threads(self.threads)
        self.mode = "tiny" if self.tiny else ("full" if self.full else "default")

    # ------------------------------------------------------------------ runs
    def run_name(self, preset: str, *, suffix: str | None = None) -> str:
        """The hub name of ``preset`` for this example's data, scale and mode."""
        parts = [preset]
        if not self.data.is_synthetic:
            tag = self.data.source if self.data.source != "hub" else "hf"
            parts.append(tag)
        if self.args.scale != "laptop":
            parts.append(self.args.scale)
        if suffix:
            parts.append(suffix)
        name = "-".join(parts)
        return f"tiny-{name}" if self.tiny else name

    def config(self, preset: str, *, steps: int | None = None, data: DataSpec | None = None,
               seed: int | None = None, model: dict[str, Any] | None = None,
               train_fields: dict[str, Any] | None = None) -> RunConfig:
        """The run config of ``preset`` with this example's data/scale/steps (tiny-sized);
        ``seed`` replaces the weight-initialisation seed, ``model`` overrides fields of the
        preset's :class:`~induction_lens.config.ModelSpec` (e.g. ``{"d_vocab": 1024}``) and
        ``train_fields`` fields of its :class:`~induction_lens.config.TrainConfig` (e.g.
        ``{"interventions": (...)}``)."""
        wanted = self.args.steps if self.args.steps is not None else steps
        if self.tiny:
            wanted = self.args.steps if self.args.steps is not None else TINY_STEPS
        cfg = resolve_config(preset, data=data if data is not None else self.data,
                             steps=wanted, scale=self.args.scale)
        if seed is not None:
            cfg = replace(cfg, train=replace(cfg.train, seed=seed))
        if model:
            cfg = replace(cfg, model=replace(cfg.model, **model))
        if train_fields:
            cfg = replace(cfg, train=replace(cfg.train, **train_fields))
        if self.tiny:
            cfg = replace(cfg, train=replace(cfg.train, checkpoint_every=TINY_CHECKPOINT_EVERY,
                                             warmup_steps=min(cfg.train.warmup_steps, 2)))
        return cfg

    def ensure_run(self, preset: str, *, steps: int | None = None, data: DataSpec | None = None,
                   run: str | None = None, seed: int | None = None,
                   model: dict[str, Any] | None = None,
                   train_fields: dict[str, Any] | None = None) -> str:
        """Train ``preset`` into the hub, or reuse/resume the run already there; its name.

        A run of the same name must have the same model, data and training configuration
        (the number of steps may differ): one with fewer steps is resumed up to ``steps``, one
        with at least as many is reused as it is. ``seed`` (the weight initialisation) adds
        ``-s{seed}`` to the name; ``model`` and ``train_fields`` override model and training fields
        (pass ``run`` to name such a run after what it is).
        """
        cfg = self.config(preset, steps=steps, data=data, seed=seed, model=model,
                          train_fields=train_fields)
        name = run or self.run_name(preset, suffix=None if seed is None else f"s{seed}")
        t0 = time.time()
        status = "trained"
        if name in self.hub.runs():
            stored = self.hub.config(name)
            for part in ("model", "data", "train"):
                old, new = getattr(stored, part).to_dict(), getattr(cfg, part).to_dict()
                for d in (old, new):
                    d.pop("induction_lens_version", None)
                    if part == "train":
                        d.pop("steps")
                if old != new:
                    raise ExampleError(
                        f"run {name!r} in hub {self.hub.root} has a different {part} config "
                        f"than this example needs; use another --hub (or delete the run)")
            entries = self.hub.manifest(name)
            last = entries[-1].step if entries else 0
            if last >= cfg.train.steps:
                status = "reused"
            else:
                status = "resumed"
        if status != "reused":
            self.say(f"[{self.name}] {'training' if status == 'trained' else 'resuming'} "
                     f"{name} ({preset}) to step {cfg.train.steps}")
            train(cfg, hub=self.hub, run=name, resume=status == "resumed",
                  device=self.args.device, progress=not self.quiet)
        last = self.hub.manifest(name)[-1].step
        self.runs.append(RunRecord(run=name, preset=preset, steps=last,
                                   data=cfg.data.source, status=status,
                                   train_seconds=round(time.time() - t0, 1)))
        return name

    def evaluate(self, run: str, metrics: Sequence[str] | str, *,
                 settings: EvalSettings | None = None, **kwargs: Any):
        """:func:`~induction_lens.runs.evaluate.evaluate_run` with this example's settings (or
        ``settings``)."""
        return evaluate_run(self.hub, run, metrics=metrics,
                            settings=self.settings if settings is None else settings,
                            device=self.args.device, progress=not self.quiet, **kwargs)

    # ------------------------------------------------------------------ output
    def say(self, line: str = "") -> None:
        print(line, flush=True)

    def note(self, text: str) -> None:
        """A remark for the summary (and the terminal)."""
        self.notes.append(text)
        self.say(f"note: {text}")

    def claim(self, key: str, statement: str, passed: bool, measured: dict[str, Any], *,
              criterion: str, paper: str, note: str | None = None) -> bool:
        """Record one quantitative claim and print its PASS/FAIL line.

        Args:
            key: short identifier, e.g. ``"icl_phase_change[attn-only-2l]"``.
            statement: the claim in words, as the paper makes it.
            passed: whether the measured values meet ``criterion``.
            measured: the numbers the verdict rests on.
            criterion: the test applied, in words with its thresholds.
            paper: where the paper makes the claim (argument, figure).
            note: anything the reader should know (e.g. why it fails at laptop scale).
        """
        passed = bool(passed)
        status = "PASS" if passed else "FAIL"
        self.claims.append({"key": key, "status": status, "passed": passed,
                            "statement": statement, "criterion": criterion, "paper": paper,
                            "measured": _jsonable(measured), "note": note})
        values = ", ".join(f"{k}={_fmt(v)}" for k, v in measured.items())
        self.say(f"{status} {key}: {statement} ({values})")
        return passed

    def figure(self, name: str, build: Callable[[], Any], *, caption: str = "") -> None:
        """Build a plotly figure and write ``OUT/{name}.html`` (PNG at :meth:`finish`).

        ``build`` is called here; a missing ``induction_lens.viz`` function is recorded in the
        summary (and printed) instead of stopping the example.
        """
        try:
            fig = build()
        except PlotsUnavailable as err:
            self.figures.append({"name": name, "html": None, "png": None, "caption": caption,
                                 "error": str(err)})
            self.say(f"figure {name}: not written ({err})")
            return
        path = self.out / f"{name}.html"
        fig.write_html(str(path), include_plotlyjs="directory", full_html=True)
        self.figures.append({"name": name, "html": str(path), "png": None, "caption": caption})
        self._figs.append((fig, self.out / f"{name}.png"))

    def _export_png(self) -> str:
        if self.args.no_png:
            return "skipped (--no-png)"
        if not self._figs:
            return "no figures"
        if importlib.util.find_spec("kaleido") is None:
            return "unavailable: the kaleido package is not installed (pip install kaleido)"
        import plotly.io as pio

        try:
            pio.write_images([f for f, _ in self._figs], [str(p) for _, p in self._figs])
        except Exception as err:  # kaleido reports a missing browser in several ways
            return f"unavailable: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
        for entry in self.figures:
            png = self.out / f"{entry['name']}.png"
            if entry.get("html") and png.exists():
                entry["png"] = str(png)
        return "ok"

    def finish(self, error: str | None = None) -> int:
        """Export PNGs, write ``summary.json``, print the verdicts; the exit status."""
        png = self._export_png() if error is None else "skipped (error)"
        load = self._load.stop()
        wall = round(time.time() - self._started, 1)
        n_pass = sum(c["passed"] for c in self.claims)
        n_fail = len(self.claims) - n_pass
        summary = {
            "example": self.name,
            "title": self.title,
            "mode": self.mode,
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
            "argv": vars(self.args),
            "hub": str(self.hub.root),
            "data": self.data.to_dict(),
            "scale": self.args.scale,
            "runs": [r.__dict__ for r in self.runs],
            "eval_settings": self.settings.to_dict(),
            "claims": self.claims,
            "passed": n_pass,
            "failed": n_fail,
            "figures": self.figures,
            "png_export": png,
            "facts": self.facts,
            "notes": self.notes,
            "error": error,
            "wall_seconds": wall,
            "load_average": load,
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "torch": torch.__version__,
                        "device": self.args.device or ("cuda" if torch.cuda.is_available()
                                                       else "cpu")},
            "induction_lens_version": __version__,
            "git_hash": git_hash(),
            "inputs_sha256": inputs_sha256(self.name),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        path = self.out / "summary.json"
        path.write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
        self.say("")
        self.say(f"{self.name}: {n_pass} PASS, {n_fail} FAIL in {wall:.0f} s "
                 f"(load average {load['mean_1min']} on {load['cpu_count']} CPUs); "
                 f"figures: {sum(1 for f in self.figures if f.get('html'))} HTML, PNG {png}")
        for c in self.claims:
            self.say(f"  {c['status']} {c['key']}")
        self.say(f"summary: {path}")
        if error is not None:
            return 2
        return 1 if (self.args.strict and n_fail) else 0


def plots():
    """``induction_lens.viz``, or :class:`PlotsUnavailable` when it is not there yet."""
    try:
        import induction_lens.viz as module
    except ImportError as err:
        raise PlotsUnavailable(f"induction_lens.viz is not importable ({err})") from None
    return module


def plot(function: str, *args: Any, **kwargs: Any):
    """Call ``induction_lens.viz.<function>(*args, **kwargs)``."""
    module = plots()
    fn = getattr(module, function, None)
    if fn is None:
        raise PlotsUnavailable(f"induction_lens.viz has no {function}()")
    return fn(*args, **kwargs)


def training_figures(ex: "Example", frame: pd.DataFrame, runs: Sequence[str],
                     icl_windows: pd.DataFrame, *, across: str = "") -> None:
    """The figures of every training-dynamics example: ICL score and loss over training (one
    line per run, shaded phase-change windows) and each run's prefix-matching curves."""
    ex.figure("icl_score", lambda: plot("icl_score_curve", frame, windows=icl_windows),
              caption=f"ICL score over training{across}; shaded: phase-change windows")
    ex.figure("loss", lambda: plot("loss_curve", frame, windows=icl_windows),
              caption=f"loss over training{across}")
    for run in runs:
        ex.figure(f"prefix_matching_{run}",
                  lambda r=run: plot("head_score_curves", frame, metric="prefix_matching",
                                     run=r, windows=icl_windows),
                  caption=f"{run}: prefix-matching score of every head")


def main(name: str, title: str, body: Callable[[Example], None], argv: Sequence[str] | None,
         *, description: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None
         = None) -> int:
    """Parse options, run ``body(example)``, write the summary; the process exit status.

    Expected failures (bad options, a hub run with another configuration, data that cannot be
    loaded) end with one ``error:`` line and status 2, after a summary that records the error.
    """
    parser = build_parser(name, description)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be a positive integer")
    try:
        example = Example(name, title, args)
    except ConfigError as err:
        parser.error(str(err))
    example.say(f"{name}: {title} [{example.mode} mode, hub {example.hub.root}, "
                f"out {example.out}]")
    try:
        body(example)
    except (ConfigError, HubError) as err:
        example.say(f"error: {err}")
        return example.finish(error=str(err))
    except KeyboardInterrupt:
        example.say("interrupted; complete checkpoints stay in the hub")
        return example.finish(error="interrupted")
    except Exception as err:
        traceback.print_exc()
        example.finish(error=f"{type(err).__name__}: {err}")
        raise
    return example.finish()


def fraction(a: float, b: float) -> float:
    """``a / b``, NaN when ``b`` is 0 or either is not finite."""
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return float("nan")
    return a / b


# ---------------------------------------------------------------------------- shared analyses
def pca_pivot(pca: pd.DataFrame, run: str) -> dict[str, Any]:
    """Where a run's per-token-loss PCA trajectory pivots (Argument 1, "PCA pivot").

    The paper marks by eye where the trajectories "pivot". Here the pivot is
    :func:`~induction_lens.analysis.changepoint.detect_pivot`'s rule on the trajectory in the first
    two components: the checkpoint interval of the largest displacement, accepted when it is
    at least ``PivotParams.min_ratio`` (5) times the median displacement of the other
    intervals. The trajectory starts at the first checkpoint after initialisation (the first
    update is a jump every run makes). Returned: ``pivoted`` (accepted), the interval
    (``start``, ``end`` steps) and its midpoint ``step``, ``displacement`` and ``ratio`` (also
    when not accepted, for the report).
    """
    from induction_lens.analysis.changepoint import PivotParams, largest_displacement

    rows = pca[pca["run"] == run].sort_values("step")
    rows = rows[rows["step"] > rows["step"].min()]
    points = rows[["pc1", "pc2"]].to_numpy(dtype=np.float64)
    steps = rows["step"].to_numpy(dtype=np.float64)
    if len(points) < 4:
        return {"pivoted": False, "step": None, "start": None, "end": None,
                "displacement": float("nan"), "ratio": float("nan")}
    best = largest_displacement(steps, points)  # reported whatever its ratio; judged here
    return {"pivoted": best.ratio >= PivotParams().min_ratio,
            "step": (best.start + best.end) / 2, "start": int(best.start), "end": int(best.end),
            "displacement": best.displacement, "ratio": best.ratio}


def within(step: float | None, start: float | None, end: float | None, slack: float) -> bool:
    """Whether ``step`` lies in ``[start - slack, end + slack]`` (False when any is missing)."""
    if step is None or start is None or end is None:
        return False
    values = (float(step), float(start), float(end))
    if not all(math.isfinite(v) for v in values):
        return False
    return start - slack <= step <= end + slack
