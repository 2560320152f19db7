"""Sweeps: train every cell of a grid of runs into a hub and evaluate every checkpoint.

Level: ``runs`` (imports ``config``, ``presets``, ``hub``, ``train``, ``io``, ``frame`` and the
rest of ``runs``; never ``viz`` or ``cli``).

The paper's measurements are made "on all snapshots of all models across training" (appendix
"Data Collection"), and its arguments compare many models: series of layers, with and without
MLPs, smeared keys. A sweep is that comparison as one call:

* a :class:`SweepGrid` is the cartesian product of models (preset names, or labelled
  run configs), seeds, data specs, training overrides
  (``steps``, ``lr``, any :class:`~induction_lens.config.TrainConfig` field) and, for Reddy
  2023 runs, task overrides (``B``, ``K``, ``eps``, any
  :class:`~induction_lens.config.ReddyTaskSpec` field: the paper's data-dependence sweep);
* each :class:`Cell` has a run name derived from its parameters only
  (``attn-only-2l_synthetic_s0_lr0.001``; see :func:`run_name`), so the same grid always
  maps to the same runs, and two cells never write one run (cells are deduplicated by name,
  and two different configs that would share a name are refused);
* :func:`run_cell` trains a cell that is missing, resumes one that was cut
  (``train(..., resume=True)``: bit-identical on CPU to an uninterrupted run), leaves a
  finished one alone, then evaluates every checkpoint with
  :func:`~induction_lens.runs.evaluate_run`, whose cache makes a finished evaluation free;
* an executor (:mod:`induction_lens.runs.executors`) decides where cells run: in this process
  (default) or as Ray tasks on a local Ray or a cluster. Each cell writes only its own run,
  through the hub's per-run lock, so a killed cell leaves the hub consistent (complete
  checkpoints only) and is redone by the next call.

The result (our choice between the two forms the design allowed): one tidy frame in the schema
of :mod:`induction_lens.frame`, with the cell's parameters as extra columns after the schema's
(``model``, ``seed``, ``data``, then one column per training override, then one per task
override), so results of a grid
group and plot directly (``frame.groupby(["model", "lr"])``). :func:`sweep_cells` gives the
cells themselves as a frame (one row per run, with its status after a sweep).
"""

import dataclasses
import itertools
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from tqdm.auto import tqdm

from induction_lens.config import DataSpec, ReddyNetSpec, ReddyTaskSpec, RunConfig, TrainConfig
from induction_lens.errors import ConfigError, HubError
from induction_lens.frame import tidy
from induction_lens.hub import Hub, check_run_name
from induction_lens.io import fingerprint
from induction_lens.presets import Scale, get_preset
from induction_lens.runs.evaluate import evaluate_run
from induction_lens.runs.executors import Executor, ExecutorName, make_executor
from induction_lens.runs.registry import METRICS, Metric, select_metrics
from induction_lens.runs.settings import EvalSettings
from induction_lens.train import resolve_config, train
from induction_lens.train_reddy import resolve_reddy_config

logger = logging.getLogger(__name__)

__all__ = ["Cell", "CellResult", "SweepGrid", "refit_reddy", "run_cell", "run_name", "sweep",
           "sweep_cells"]

CellStatus = Literal["trained", "resumed", "done"]
"""What :func:`run_cell` did to the run: trained it from scratch, resumed a cut run, or found it
finished."""

CELL_COLUMNS = ("model", "seed", "data")
"""The parameter columns every cell has; training overrides follow, then task overrides, one
column each."""

_TASK_FIXED = ("source", "seed")
"""ReddyTaskSpec fields a task override may not name: ``source`` is always "reddy", and the
task seed would collide with the ``seed`` column (sweep it through ``data`` with ReddyTaskSpec
objects instead)."""

_NAME_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_READABLE = 100
"""Longest readable run-name prefix before a hash is used instead (the hub allows 128)."""


def _value_label(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str | int | bool):
        return str(value)
    return json.dumps(value, separators=(",", ""))


def _data_label(data: str | DataSpec | ReddyTaskSpec) -> str:
    """A data spec's part of a run name: the CLI string itself, or for a :class:`DataSpec` or
    :class:`ReddyTaskSpec` object its source and a hash of its fields (the plain default spec
    is ``synthetic``)."""
    if isinstance(data, str):
        return data
    if data == DataSpec():
        return "synthetic"
    return f"{data.source}-{fingerprint(data.to_dict(), 8)}"


def run_name(model: str, seed: int, data: str | DataSpec | ReddyTaskSpec,
             overrides: Sequence[tuple[str, Any]] = (),
             task: Sequence[tuple[str, Any]] = ()) -> str:
    """The run name of a cell: ``{model}_{data}_s{seed}`` then ``_{field}{value}`` per training
    override, then per task override (``reddy-icl_reddy-1a2b3c4d_s0_B2_K128``).

    Deterministic in the cell's parameters only (not in the package version or the time), so
    rerunning a sweep finds its runs. Characters the hub does not allow in a run name become
    ``-``; when that loses information (``files:a b`` vs ``files:a_b``) or the name would pass
    100 characters, a hash of the parameters is appended (readable prefix cut to fit).
    """
    parts = [model, _data_label(data), f"s{seed}"]
    parts += [f"{key}{_value_label(value)}" for key, value in (*overrides, *task)]
    raw = "_".join(parts)
    name = _NAME_SAFE.sub("-", raw.replace(":", "-"))
    lossy = _NAME_SAFE.search(raw.replace(":", "-")) is not None
    if lossy or len(name) > _MAX_READABLE or not name[:1].isalnum():
        key = fingerprint([model, seed, _data_label(data) if isinstance(data, str)
                           else data.to_dict(), [[k, _value_label(v)] for k, v in overrides]]
                          + ([[[k, _value_label(v)] for k, v in task]] if task else []), 8)
        name = f"{name.lstrip('-._')[:_MAX_READABLE]}-{key}" if name.strip("-._") else f"run-{key}"
    return check_run_name(name)


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: its parameters, its full config and its run name."""

    model: str
    """Preset name, or the label of a custom :class:`RunConfig`."""
    seed: int
    """``TrainConfig.seed``: the weights' initialisation (the data stream is the data spec's)."""
    data: str
    """The data spec's label (its CLI string, or ``source-hash`` for a :class:`DataSpec`)."""
    overrides: tuple[tuple[str, Any], ...]
    """Training overrides ``(field, value)`` in grid order."""
    config: RunConfig
    run: str
    task: tuple[tuple[str, Any], ...] = ()
    """Reddy task overrides ``(ReddyTaskSpec field, value)`` in grid order (empty otherwise)."""

    def params(self) -> dict[str, Any]:
        """``{"model", "seed", "data", **overrides, **task}``: the cell's columns in the
        result."""
        return {"model": self.model, "seed": self.seed, "data": self.data,
                **dict(self.overrides), **dict(self.task)}


def refit_reddy(base: RunConfig, task: ReddyTaskSpec) -> RunConfig:
    """``base`` (a Reddy config) on another task, its network re-fitted to the task.

    The network's task-bound fields (``d_model``, ``n_ctx``, ``n_labels``, ``init_std``) are
    recomputed by :meth:`ReddyNetSpec.for_task`; every field where ``base`` departs from the
    fit of its own task (a wider classifier, more layers) is kept as ``base`` has it. Our
    choice: a sweep over ``K`` or ``B`` compares one architecture across data distributions.
    """
    own = ReddyNetSpec.for_task(base.data)  # type: ignore[arg-type]
    kept = {f.name: getattr(base.model, f.name) for f in dataclasses.fields(ReddyNetSpec)
            if getattr(base.model, f.name) != getattr(own, f.name)}
    return dataclasses.replace(base, model=ReddyNetSpec.for_task(task, **kept), data=task)


def _as_tuple(name: str, values: Any) -> tuple[Any, ...]:
    if isinstance(values, str | DataSpec | ReddyTaskSpec) or not isinstance(values, Sequence):
        values = (values,)
    values = tuple(values)
    if not values:
        raise ConfigError(f"SweepGrid.{name} is empty; give at least one value (an empty axis "
                          "makes an empty grid)")
    return values


@dataclass(frozen=True)
class SweepGrid:
    """The cartesian product of models, seeds, data specs and training overrides.

    Args:
        models: preset names (``"attn-only-2l"``), or ``{label: RunConfig}`` for custom models
            (the label is the ``model`` column and the start of the run name).
        seeds: values of ``TrainConfig.seed`` (the weights' initialisation). Our choice: the
            data stream is not reseeded, so every model of a comparison sees the same examples
            in the same order (the paper's protocol); sweep data seeds through ``data``.
        data: data specs, as CLI strings (``"synthetic"``, ``"synthetic:zipf"``,
            ``"shakespeare"``, ...) or :class:`DataSpec` objects; for Reddy models also
            :class:`ReddyTaskSpec` objects (each replaces the model's task). None: each
            model's own.
        train: ``{TrainConfig field: values}``, e.g. ``{"steps": [200], "lr": [1e-3, 3e-3]}``;
            a single value stands for a list of one.
        scale: preset scale, "laptop" or "paper".
        task: Reddy models only: ``{ReddyTaskSpec field: values}``, e.g.
            ``{"B": [0, 1, 2, 4], "K": [128, 512]}``, each cell replacing those fields of the
            model's task (after ``data``) and re-fitting the network to it
            (:func:`refit_reddy`): Reddy 2023's data-dependence sweep (section 3, Figure 2).

    Cells are ordered models, then data, then seeds, then training overrides, then task
    overrides (the first override varies slowest). Unknown presets, unknown fields and invalid
    values (a ``B`` not dividing ``N``) fail here, before any run.
    """

    models: Sequence[str] | Mapping[str, RunConfig]
    seeds: Sequence[int] = (0,)
    data: Sequence[str | DataSpec] | str | DataSpec | None = None
    train: Mapping[str, Any] = field(default_factory=dict)
    scale: Scale = "laptop"
    task: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.models, Mapping):
            bad = [k for k, v in self.models.items()
                   if not isinstance(k, str) or not isinstance(v, RunConfig)]
            if bad:
                raise ConfigError(f"SweepGrid.models entries {bad} must map a label (str) to a "
                                  "RunConfig; or pass preset names")
            models: tuple[tuple[str, RunConfig], ...] = tuple(self.models.items())
        else:
            names = _as_tuple("models", self.models)
            bad = [n for n in names if not isinstance(n, str)]
            if bad:
                raise ConfigError(f"SweepGrid.models entries {bad} must be preset names; pass "
                                  "{label: RunConfig} for custom models")
            models = tuple((n, get_preset(n, self.scale)) for n in names)
        if not models:
            raise ConfigError("SweepGrid.models is empty; give at least one preset name")
        seeds = _as_tuple("seeds", self.seeds)
        bad = [s for s in seeds if not isinstance(s, int) or isinstance(s, bool) or s < 0]
        if bad:
            raise ConfigError(f"SweepGrid.seeds {bad} must be integers >= 0")
        data = (None,) if self.data is None else _as_tuple("data", self.data)
        for spec in data:
            if not (spec is None or isinstance(spec, str | DataSpec | ReddyTaskSpec)):
                raise ConfigError(f"SweepGrid.data entry {spec!r} must be a CLI string such as "
                                  "'synthetic', a DataSpec or (Reddy models) a ReddyTaskSpec")
            if isinstance(spec, str):
                DataSpec.parse(spec)  # a bad source fails now, naming the valid ones
        if not isinstance(self.train, Mapping):
            raise ConfigError("SweepGrid.train must map TrainConfig fields to lists of values, "
                              "e.g. {'steps': [200], 'lr': [1e-3, 3e-3]}")
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(self.train) - fields)
        if unknown:
            raise ConfigError(f"SweepGrid.train fields {unknown} are not TrainConfig fields; use "
                              f"some of {sorted(fields)}")
        if "seed" in self.train:
            raise ConfigError("SweepGrid.train['seed']: sweep seeds with SweepGrid.seeds "
                              "(--seeds) instead")
        train = tuple((k, _as_tuple(f"train[{k!r}]", v)) for k, v in self.train.items())
        if not isinstance(self.task, Mapping):
            raise ConfigError("SweepGrid.task must map ReddyTaskSpec fields to lists of values, "
                              "e.g. {'B': [0, 1, 2, 4], 'K': [128, 512]}")
        task_fields = {f.name for f in dataclasses.fields(ReddyTaskSpec)} - set(_TASK_FIXED)
        unknown = sorted(set(self.task) - task_fields)
        if unknown:
            raise ConfigError(f"SweepGrid.task fields {unknown} are not sweepable ReddyTaskSpec "
                              f"fields; use some of {sorted(task_fields)} (task seeds: pass "
                              "ReddyTaskSpec objects as data)")
        task = tuple((k, _as_tuple(f"task[{k!r}]", v)) for k, v in self.task.items())
        reddy = [label for label, cfg in models if cfg.is_reddy]
        if task and len(reddy) < len(models):
            others = [label for label, cfg in models if not cfg.is_reddy]
            raise ConfigError(f"SweepGrid.task overrides ReddyTaskSpec fields, but models "
                              f"{others} are not Reddy runs; sweep them in a separate grid")
        if any(isinstance(s, ReddyTaskSpec) for s in data) and len(reddy) < len(models):
            raise ConfigError("SweepGrid.data holds a ReddyTaskSpec but some models are not "
                              "Reddy runs; sweep them in a separate grid")
        object.__setattr__(self, "models", dict(models))
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "train", dict(train))
        object.__setattr__(self, "task", dict(task))
        self.cells()  # every cell's config is validated here, before any run

    def cells(self) -> list[Cell]:
        """Every cell, deduplicated by run name (first kept), in grid order.

        Raises:
            ConfigError: two cells with different configs would share a run name, or a cell's
                config is invalid (a value out of range, a context too short for the data).
        """
        keys, task_keys = list(self.train), list(self.task)
        cells: dict[str, Cell] = {}
        for (label, base), spec, seed, values, task_values in itertools.product(
                self.models.items(), self.data, self.seeds,
                itertools.product(*self.train.values()), itertools.product(*self.task.values())):
            overrides = tuple(zip(keys, values, strict=True))
            task = tuple(zip(task_keys, task_values, strict=True))
            try:
                tcfg = dataclasses.replace(base.train, seed=seed, **dict(overrides))
                if base.is_reddy:
                    # A new task re-fits the network from the base's own task (refit_reddy).
                    new = spec if isinstance(spec, ReddyTaskSpec) else None
                    cfg = resolve_reddy_config(base, train=tcfg, data=None if new else spec)
                    if task or new is not None:
                        cfg = refit_reddy(cfg, dataclasses.replace(new or cfg.data, **dict(task)))
                else:
                    cfg = resolve_config(base, train=tcfg, data=spec)
            except (TypeError, ValueError) as err:
                where = f"model={label!r} seed={seed} data={spec!r} {dict(overrides)}"
                where += f" task {dict(task)}" if task else ""
                if isinstance(err, ConfigError):
                    raise ConfigError(f"sweep cell {where}: {err}") from None
                raise ConfigError(f"sweep cell {where}: {err}; check the values' types") from None
            data_label = _data_label(spec) if spec is not None else _data_label(base.data)
            name = run_name(label, seed, spec if spec is not None else base.data, overrides, task)
            cell = Cell(label, seed, data_label, overrides, cfg, name, task)
            if name in cells and cells[name].config != cfg:
                raise ConfigError(f"two sweep cells map to run {name!r} with different configs "
                                  f"({cells[name].params()} and {cell.params()}); give the "
                                  "custom models distinct labels")
            cells.setdefault(name, cell)
        return list(cells.values())


@dataclass
class CellResult:
    """What :func:`run_cell` returns (picklable: it travels back from Ray workers)."""

    run: str
    status: CellStatus
    frame: pd.DataFrame
    seconds: float


def _train_state(hub: Hub, cell: Cell) -> Literal["new", "short", "done"]:
    """Whether the cell's run is missing, cut before its last step, or finished."""
    if cell.run not in hub.runs():
        return "new"
    stored = hub.config(cell.run)
    if stored != cell.config:
        raise HubError(f"run {cell.run!r} of hub {hub.root} holds another config than the sweep "
                       "cell of that name; delete the run (or use another --hub) to sweep it")
    entries = hub.manifest(cell.run)
    return "done" if entries and entries[-1].step == cell.config.train.steps else "short"


def run_cell(hub: str | Path, cell: Cell, *, metrics: Sequence[str] | None,
             settings: EvalSettings, every: int = 1, device: str | None = None,
             threads: int | None = 1, custom_metrics: Sequence[Metric] = ()) -> CellResult:
    """Train the cell's run if missing or cut, then evaluate its checkpoints (cached).

    The function each executor runs, in this process or in a Ray worker (hence module level,
    plain arguments). ``threads`` pins torch's CPU threads for the cell (None: as they are):
    CPU matrix products round differently with another thread count, so a fixed count is what
    makes runs bit-identical across executors. ``custom_metrics`` carries metrics registered in
    the calling process that a fresh worker does not know; they are registered there if missing.

    Returns:
        The run, what was done to it, its tidy frame with the cell's parameter columns, and the
        seconds it took.
    """
    t0 = time.perf_counter()
    for metric in custom_metrics:
        METRICS.setdefault(metric.name, metric)
    store = Hub.of(hub)
    state = _train_state(store, cell)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        if state != "done":
            # resume=True also creates a missing run; a cut one continues from its last
            # complete checkpoint (a killed writer's leftovers are cleaned when it is opened).
            train(cell.config, hub=store, run=cell.run, resume=True, device=device,
                  progress=False)
        frame = evaluate_run(store, cell.run, metrics=metrics, every=every, settings=settings,
                             device=device, progress=False)
    finally:
        torch.set_num_threads(before)
    status: CellStatus = {"new": "trained", "short": "resumed", "done": "done"}[state]
    return CellResult(cell.run, status, _with_params(frame, cell), time.perf_counter() - t0)


def _with_params(frame: pd.DataFrame, cell: Cell) -> pd.DataFrame:
    out = frame.copy()
    for key, value in cell.params().items():
        out[key] = [value] * len(out)  # a list: tuple values (weight_decay_steps) stay whole
    return tidy(out)


def sweep_cells(grid: SweepGrid, *, results: Mapping[str, CellResult] | None = None
                ) -> pd.DataFrame:
    """The cells of ``grid`` as a frame: ``run, model, seed, data``, one column per override,
    and (given ``results``) ``status`` and ``seconds``."""
    rows = []
    for cell in grid.cells():
        row = {"run": cell.run, **cell.params()}
        if results is not None and cell.run in results:
            row.update(status=results[cell.run].status, seconds=results[cell.run].seconds)
        rows.append(row)
    return pd.DataFrame(rows)


def _grid(grid: SweepGrid | Sequence[str] | Mapping[str, RunConfig], seeds: Any, data: Any,
          train: Any, scale: Any, task: Any = None) -> SweepGrid:
    if isinstance(grid, SweepGrid):
        given = [n for n, v in (("seeds", seeds), ("data", data), ("train", train),
                                ("scale", scale), ("task", task)) if v is not None]
        if given:
            raise ConfigError(f"{given} are set on the SweepGrid already; pass them to "
                              "SweepGrid(...) or pass model names instead of a grid")
        return grid
    return SweepGrid(grid, seeds=(0,) if seeds is None else seeds, data=data,
                     train={} if train is None else train,
                     scale="laptop" if scale is None else scale,
                     task={} if task is None else task)


def sweep(grid: SweepGrid | Sequence[str] | Mapping[str, RunConfig], *, hub: Hub | str | Path,
          seeds: Sequence[int] | None = None,
          data: Sequence[str | DataSpec | ReddyTaskSpec] | str | DataSpec | ReddyTaskSpec
          | None = None,
          train: Mapping[str, Any] | None = None, scale: Scale | None = None,
          task: Mapping[str, Any] | None = None,
          metrics: Sequence[str] | str | None = None, every: int = 1,
          settings: EvalSettings | None = None, executor: ExecutorName | Executor = "inprocess",
          address: str | None = None, num_cpus: int | None = None,
          num_gpus: float | None = None, device: str | torch.device | None = None,
          threads: int | None = 1, progress: bool = True, return_cells: bool = False
          ) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Train every missing cell of a grid into ``hub`` and evaluate every checkpoint.

    Rerunning is cheap: a finished run is not retrained and its cached metrics are not
    recomputed; a run cut short (a killed or failed cell) is resumed from its last complete
    checkpoint. Each cell writes only its own run through the hub's lock, so cells run
    concurrently under Ray, and the result does not depend on the executor (bit for bit on CPU).

    Args:
        grid: a :class:`SweepGrid`, or the models of one (preset names or ``{label:
            RunConfig}``) with ``seeds``, ``data``, ``train`` and ``scale`` given here.
        hub: the hub (or its directory); with Ray on a cluster, a path every node sees.
        seeds, data, train, scale, task: the grid's other axes (see :class:`SweepGrid`).
        metrics: metric names for :func:`~induction_lens.runs.evaluate_run` (default: the
            default metrics of each run's kind: ``reddy`` for Reddy runs); unknown names fail
            before any run.
        every: evaluate every ``every``-th checkpoint and the last one.
        settings: evaluation settings (default :class:`EvalSettings`).
        executor: "inprocess" (default), "ray", or an executor object
            (:mod:`induction_lens.runs.executors`).
        address, num_cpus, num_gpus: Ray only: an existing cluster, the local Ray's CPUs, GPUs
            per task (see :class:`~induction_lens.runs.executors.RayExecutor`).
        device: torch device of training and evaluation (default: CUDA if available, else
            CPU; pass "cpu" for results that are bit-identical across executors).
        threads: torch CPU threads of each cell (Ray reserves as many CPUs per task). Our
            choice of default, 1: CPU results depend on the thread count (matrix products
            split their sums differently), so one fixed count keeps a sweep bit-identical across
            executors and machines, and a sweep's parallelism is across cells. None leaves
            torch's own setting (faster for one big run in process, not reproducible across
            executors).
        progress: a tqdm progress bar over cells (cells themselves show none).
        return_cells: also return the cells frame (:func:`sweep_cells`, with ``status``:
            trained, resumed or done, and ``seconds``).

    Returns:
        The tidy frame (:mod:`induction_lens.frame`) of every cell, in grid order, with the
        columns ``model, seed, data``, one per training override and one per task override
        after the schema's; with
        ``return_cells``, ``(frame, cells)``.

    Raises:
        ConfigError: an empty grid, an unknown preset, field or executor, a bad metric name
            (:class:`EvalError`), an unreachable ``address``: at once, before any run.
        InductionLensError (or whatever a cell raised): after every other cell has finished,
            the first failure, noting its run; rerun the sweep to redo it.
    """
    grid = _grid(grid, seeds, data, train, scale, task)
    cells = grid.cells()
    chosen = select_metrics(metrics)  # EvalError for a bad name, before anything runs
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ConfigError(f"every={every!r} must be a positive integer")
    settings = settings if settings is not None else EvalSettings()
    names = None if metrics is None else [m for item in ([metrics] if isinstance(metrics, str)
                                                         else metrics)
                                          for m in str(item).split(",") if m]
    store = Hub.of(hub)
    for cell in cells:
        _train_state(store, cell)  # a run of another config under a cell's name fails now
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads={threads!r} must be a positive integer or None")
    kwargs = dict(metrics=names, settings=settings, every=every, threads=threads,
                  device=None if device is None else str(device), custom_metrics=list(chosen))
    root = str(store.root.expanduser().absolute())  # workers may start in another directory
    calls = [((root, cell), kwargs) for cell in cells]
    runner = make_executor(executor, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                           cpus_per_task=threads or 1)
    results: dict[int, CellResult] = {}
    failures: list[tuple[int, BaseException]] = []
    bar = tqdm(total=len(cells), desc="sweep", unit="run", disable=not progress,
               dynamic_ncols=True)
    outcomes = runner.map(run_cell, calls)
    try:
        for i, outcome in outcomes:
            if isinstance(outcome, BaseException):
                logger.error("sweep cell %s failed: %s", cells[i].run, outcome)
                failures.append((i, outcome))
            else:
                results[i] = outcome
                bar.set_postfix_str(f"{outcome.run}: {outcome.status}", refresh=False)
            bar.update(1)
    finally:
        outcomes.close()  # stops what is still pending (Ray: cancels the tasks)
        bar.close()
        runner.close()
    if failures:
        i, err = min(failures, key=lambda f: f[0])
        others = f" (and {len(failures) - 1} other cell(s))" if len(failures) > 1 else ""
        err.add_note(f"in sweep cell {cells[i].run!r}{others}; the other cells are in the hub: "
                     "rerun the sweep to redo the failed ones")
        raise err
    frames = [results[i].frame for i in range(len(cells)) if len(results[i].frame)]
    out = tidy(pd.concat(frames, ignore_index=True) if frames
               else pd.DataFrame(columns=["metric", "value", *CELL_COLUMNS]))
    if return_cells:
        return out, sweep_cells(grid, results={r.run: r for r in results.values()})
    return out
