"""The metric registry: a name -> (function, version, the settings it reads).

Level: ``runs``, a leaf of it (imports ``errors`` and ``runs.settings`` only; the built-in
metrics are registered in one place, :mod:`induction_lens.runs.builtin`).

A metric is ``fn(model, ctx) -> DataFrame`` (``ctx``: :class:`~induction_lens.runs.EvalContext`)
returning rows of the tidy schema (:mod:`induction_lens.frame`) without the checkpoint columns,
which :func:`~induction_lens.runs.evaluate_run` adds. Register your own with
:func:`register_metric`, directly or as a decorator::

    from induction_lens.runs import register_metric

    @register_metric("my_score", version="1", settings=("head_examples",))
    def my_score(model, ctx):
        prev = ctx.previous_token_scores(model)   # shared with the built-in metric
        return head_frame({"my_score": prev * 2})
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from transformer_lens import HookedTransformer

from induction_lens.errors import EvalError
from induction_lens.frame import SCHEMA_VERSION
from induction_lens.runs.settings import ALL_SETTINGS, KEYED_WHEN_SET, EvalSettings

if TYPE_CHECKING:
    from induction_lens.runs.context import EvalContext

__all__ = ["METRICS", "Metric", "MetricFn", "Task", "register_metric", "resolve_metrics",
           "select_metrics"]

Task = Literal["language", "reddy"]
"""The kinds of run a metric can measure."""


MetricFn = Callable[[HookedTransformer, "EvalContext"], pd.DataFrame]
"""``fn(model, ctx)`` returning rows with ``metric, value`` and any of ``layer, head,
position, example``."""


@dataclass(frozen=True)
class Metric:
    """A registered evaluator."""

    name: str
    """Registry key; also the cache file name ``RUN/evals/{name}.parquet``."""
    fn: MetricFn
    version: str
    """Bump it whenever ``fn``'s output changes: cached rows of another version are dropped."""
    settings: tuple[str, ...] = ALL_SETTINGS
    """The :class:`EvalSettings` fields ``fn`` reads (changing one of them recomputes it)."""
    description: str = ""
    default: bool = True
    """Whether :func:`evaluate_run` computes it when ``metrics`` is not given."""
    run_key: Callable[["EvalContext"], dict[str, Any]] | None = None
    """What else of the run the values depend on (e.g. the ablations' detected phase window),
    added to the cache key; None: nothing."""
    rows: tuple[str, ...] = ()
    """The values its rows carry in the ``metric`` column (``losses`` writes ``loss``,
    ``icl_score``, ...): they may be asked for by name, e.g. ``evaluate_run(metrics="icl_score")``
    computes ``losses`` and returns only its ``icl_score`` rows."""
    task: Task = "language"
    """The kind of run it measures: "language" (the paper's language models, and imported
    series) or "reddy" (Reddy 2023's classifier); defaults are chosen per kind."""

    def cache_key(self, settings: EvalSettings, ctx: "EvalContext | None" = None
                  ) -> dict[str, Any]:
        """The metric's version, the settings it reads, the schema version and its run key."""
        values = settings.to_dict()
        key = {"metric": self.name, "version": self.version, "schema": SCHEMA_VERSION,
               "settings": {k: values[k] for k in sorted(self.settings)
                            if k not in KEYED_WHEN_SET or values[k] != KEYED_WHEN_SET[k]}}
        if self.run_key is not None and ctx is not None:
            key["run"] = self.run_key(ctx)
        return key


METRICS: dict[str, Metric] = {}
"""Every registered metric by name."""


def register_metric(name: str, fn: MetricFn | None = None, *, version: str,
                    settings: Iterable[str] | None = None, description: str = "",
                    default: bool = True, replace: bool = False,
                    run_key: Callable[["EvalContext"], dict[str, Any]] | None = None,
                    rows: Iterable[str] = (), task: "Task" = "language"):
    """Register ``fn`` under ``name``; use directly or as a decorator.

    Args:
        name: registry key and cache file name (letters, digits, ``_``, ``-``).
        fn: ``fn(model, ctx) -> DataFrame`` (see :data:`MetricFn`); omit to use as a decorator.
        version: bump whenever the function's output changes, so stale caches are recomputed.
        settings: the :class:`EvalSettings` fields the function reads (default: all of them;
            naming only the ones it reads avoids needless recomputation).
        description: one line for ``induction-lens evaluate --help``.
        default: computed by :func:`evaluate_run` when ``metrics`` is not given.
        replace: allow replacing an existing registration.
        run_key: see :attr:`Metric.run_key`.
        rows: the ``metric`` column values it writes (see :attr:`Metric.rows`).
        task: the kind of run it measures (see :attr:`Metric.task`).

    Returns:
        ``fn`` (so the decorator form leaves the function usable).
    """
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise EvalError(f"metric name {name!r} must be non-empty letters, digits, '_' or '-'")
    if not isinstance(version, str) or not version:
        raise EvalError(f"metric {name!r}: version must be a non-empty string")
    keys = ALL_SETTINGS if settings is None else tuple(settings)
    unknown = sorted(set(keys) - set(ALL_SETTINGS))
    if unknown:
        raise EvalError(f"metric {name!r} reads unknown settings {unknown}; EvalSettings has "
                        f"{list(ALL_SETTINGS)}")

    def register(func: MetricFn) -> MetricFn:
        if not callable(func):
            raise EvalError(f"metric {name!r}: fn must be callable")
        if name in METRICS and not replace and METRICS[name].fn is not func:
            raise EvalError(f"metric {name!r} is already registered; pass replace=True to "
                            "replace it")
        METRICS[name] = Metric(name, func, version, tuple(sorted(set(keys))), description,
                               default, run_key, tuple(rows), task)
        return func

    return register if fn is None else register(fn)


def resolve_metrics(metrics: Sequence[str] | str | None) -> list[Metric]:
    """The registered metrics named by ``metrics``, in the order asked for (see
    :func:`select_metrics`)."""
    return list(select_metrics(metrics))


def select_metrics(metrics: Sequence[str] | str | None, *, task: "Task | None" = None
                   ) -> dict[Metric, set[str] | None]:
    """What to compute for ``metrics`` and which of its rows to return.

    ``metrics`` is a list or a comma-separated string of registry names (``losses``), row
    names a metric declares in :attr:`Metric.rows` (``icl_score``), or "all"; None: the
    default metrics. ``task`` (the kind of run, see :attr:`Metric.task`) picks the defaults
    and "all", and refuses a named metric of another kind; None: any. Returns ``{metric: row
    names to keep, or None for all its rows}`` in the order asked for.

    Raises:
        EvalError: a name that is neither, naming both vocabularies; a metric of another task.
    """
    def fits(m: Metric) -> bool:
        return task is None or m.task == task

    if metrics is None:
        return {m: None for m in METRICS.values() if m.default and fits(m)}
    if isinstance(metrics, str):
        metrics = [metrics]
    names = [n for item in metrics for n in str(item).split(",") if n]
    if names == ["all"]:
        return {m: None for m in METRICS.values() if fits(m)}
    by_row = {row: m for m in METRICS.values() for row in m.rows}
    unknown = [n for n in names if n not in METRICS and n not in by_row]
    if unknown or not names:
        raise EvalError(f"unknown metric(s) {unknown or names}; registered: {sorted(METRICS)} "
                        f"(or a row they write: {sorted(by_row)})")
    wrong = [n for n in names if not fits(METRICS[n] if n in METRICS else by_row[n])]
    if wrong:
        raise EvalError(f"metric(s) {wrong} measure other runs than {task} runs; choose from "
                        f"{sorted(m.name for m in METRICS.values() if fits(m))}")
    chosen: dict[Metric, set[str] | None] = {}
    for name in names:
        if name in METRICS:
            chosen[METRICS[name]] = None
            continue
        metric = by_row[name]
        if metric not in chosen:
            chosen[metric] = {name}
        elif chosen[metric] is not None:
            chosen[metric].add(name)
    return chosen
