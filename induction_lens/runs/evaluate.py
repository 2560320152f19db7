"""Run the registered metrics over the checkpoints of runs: one tidy frame out, cached per run.

Level: ``runs`` (imports ``hub``, ``frame``, ``errors`` and the rest of ``runs``; never ``viz``
or ``cli``).

The paper measures every property "on all snapshots of all models across training"
(appendix "Data Collection"). :func:`evaluate_run` does that for one run of a hub:

* **Metrics** come from the registry (:mod:`induction_lens.runs.registry`;
  built-ins in :mod:`induction_lens.runs.builtin`): ``losses`` (``loss``, ``icl_score``,
  ``loss_by_position``, ``loss_per_example``), the head evaluators ``prefix_matching``,
  ``copying``, ``previous_token`` (default), and ``qk_trace``, ``ov_copying``,
  ``composition``, ``ablation_pattern``, ``ablation_full`` on request.
* **Inputs** (:class:`~induction_lens.runs.context.EvalContext`) are built once per run: the
  evaluation set, the fixed random indices, the evaluator token pool, the repeated random
  tokens, the dataset examples for previous-token scores, and a per-checkpoint memo so metrics
  share forward passes.
* **Checkpoints** are chosen in one place, :meth:`~induction_lens.hub.Hub.select_checkpoints`
  (every ``every``-th and the newest, or explicit ``steps``).
* **Cache** (:mod:`induction_lens.runs.cache`): each metric's rows live in
  ``RUN/evals/{name}.parquet``; only missing, changed or stale checkpoints are computed. Files
  are written atomically (at least every ``flush_seconds`` and on interruption), so a killed
  sweep keeps what it finished.
"""

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from induction_lens.errors import EvalError, HubError
from induction_lens.frame import tidy
from induction_lens.hub import Hub
from induction_lens.models.reddy import ReddyNetwork
from induction_lens.runs.cache import MetricState, cache_path
from induction_lens.runs.context import EvalContext
from induction_lens.runs.registry import Metric, select_metrics
from induction_lens.runs.settings import EvalSettings

logger = logging.getLogger(__name__)

__all__ = ["evaluate_model", "evaluate_run", "evaluate_runs"]


def _run_metric(metric: Metric, model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
    frame = metric.fn(model, ctx)
    if not isinstance(frame, pd.DataFrame) or not {"metric", "value"} <= set(frame.columns):
        raise EvalError(f"metric {metric.name!r} must return a DataFrame with 'metric' and "
                        "'value' columns")
    frame = frame.copy()
    frame["run"] = ctx.run
    frame["step"] = ctx.step
    frame["train_tokens"] = ctx.train_tokens
    return tidy(frame)


def evaluate_model(model: HookedTransformer, *, metrics: Sequence[str] | str | None = None,
                   eval_tokens: Tensor | Callable[[int], Tensor] | None = None,
                   token_frequencies: np.ndarray | None = None,
                   settings: EvalSettings | None = None) -> pd.DataFrame:
    """Evaluate one model (no hub, no cache): the single-snapshot form of :func:`evaluate_run`.

    Args:
        model: any ``HookedTransformer``.
        metrics: names in :data:`~induction_lens.runs.registry.METRICS` (default: the default ones).
        eval_tokens: the evaluation set (a tensor, or ``corpus.eval_tokens``); required by
            ``losses``; also supplies the previous-token examples.
        token_frequencies: for the evaluator token pool (None: every token but BOS).
        settings: evaluation settings.

    Returns:
        The tidy frame with null ``run``/``step``/``train_tokens``.
    """
    settings = settings if settings is not None else EvalSettings()
    ctx = EvalContext(settings, d_vocab=model.cfg.d_vocab, n_ctx=model.cfg.n_ctx,
                      eval_tokens=eval_tokens, token_frequencies=token_frequencies)
    ctx.begin_checkpoint(None, None)
    frames = [_keep(_run_metric(m, model, ctx), rows)
              for m, rows in select_metrics(metrics, task=_task(model)).items()]
    return tidy(pd.concat(frames, ignore_index=True))


def evaluate_run(hub: Hub | str | Path, run: str, *, metrics: Sequence[str] | str | None = None,
                 every: int = 1, steps: Sequence[int] | None = None,
                 settings: EvalSettings | None = None, cache: bool = True,
                 device: str | torch.device | None = None, progress: bool = True,
                 flush_seconds: float = 60.0, refresh: bool = False) -> pd.DataFrame:
    """Evaluate every ``every``-th checkpoint of a run with the chosen metrics.

    Args:
        hub: the hub or its directory.
        run: the run's name.
        metrics: names in :data:`~induction_lens.runs.registry.METRICS` (a list, or one
            comma-separated string; "all" for every registered metric). Default: the metrics
            registered with ``default=True``
            (:data:`DEFAULT_METRICS` and any other engineer's defaults).
        every: evaluate every ``every``-th checkpoint and the newest one (ignored with
            ``steps``; see :meth:`Hub.select_checkpoints`).
        steps: explicit checkpoint steps.
        settings: evaluation settings (default :class:`EvalSettings`: laptop sizes).
        cache: read and write ``RUN/evals/{metric}.parquet``; False computes everything and
            writes nothing (use it on hubs you must not write into).
        device: torch device for the models.
        progress: tqdm progress bar over checkpoints.
        flush_seconds: write the caches at least this often during a long sweep.
        refresh: recompute every requested checkpoint even where cached rows match (and
            rewrite the cache).

    Returns:
        The tidy frame (:mod:`induction_lens.frame`) of
        the requested checkpoints, sorted by metric family order, step and row.
    """
    hub = Hub.of(hub)
    settings = settings if settings is not None else EvalSettings()
    ctx = EvalContext.from_hub(hub, run, settings, cache=cache)
    chosen = select_metrics(metrics, task=ctx.task)
    entries = hub.manifest(run)
    if not entries:
        raise HubError(f"run {run!r} has no complete checkpoint to evaluate")
    if steps is None and (not isinstance(every, int) or every < 1):
        raise EvalError(f"every={every!r} must be a positive integer")
    wanted = hub.select_checkpoints(run, every=every, steps=steps)
    sha = {e.step: e.sha256 for e in wanted}

    states = []
    for metric in chosen:
        state = MetricState(metric, cache_path(hub, run, metric.name),
                            metric.cache_key(settings, ctx))
        if cache:
            state.load(sha, keep=() if refresh else None)
        states.append(state)

    todo: dict[int, list[MetricState]] = {}
    for state in states:
        for step in sha:
            if step not in state.checkpoints:
                todo.setdefault(step, []).append(state)
    if todo:
        last_flush = time.monotonic()
        bar = tqdm(total=len(todo), desc=f"evaluate {run}", unit="ckpt", disable=not progress,
                   dynamic_ncols=True)
        try:
            for step, tokens, model in hub.iter_checkpoints(run, steps=sorted(todo),
                                                            device=device):
                ctx.begin_checkpoint(step, tokens)
                for state in todo[step]:
                    state.frames.append(_run_metric(state.metric, model, ctx))
                    state.checkpoints[step] = sha[step]
                    state.dirty = True
                bar.update(1)
                if cache and time.monotonic() - last_flush > flush_seconds:
                    _flush_all(states)
                    last_flush = time.monotonic()
        finally:
            bar.close()
            if cache:
                _flush_all(states)
    parts = [_keep(f[f["step"].isin(sha)], chosen[state.metric])
             for state in states for f in state.frames if len(f)]
    if not parts:
        return tidy(pd.DataFrame(columns=["metric", "value"]))
    # Metrics in the order asked for, each sorted by step (stable: rows keep their order).
    out = tidy(pd.concat(parts, ignore_index=True))
    return out.sort_values("step", kind="stable").reset_index(drop=True)


def _task(model: HookedTransformer) -> str:
    """The kind of run ``model`` belongs to (:attr:`~induction_lens.runs.registry.Metric.task`)."""
    return "reddy" if isinstance(model, ReddyNetwork) else "language"


def _keep(frame: pd.DataFrame, rows: set[str] | None) -> pd.DataFrame:
    """The rows of ``frame`` whose metric is in ``rows`` (None: all)."""
    return frame if rows is None else frame[frame["metric"].isin(rows)]


def _flush_all(states: list[MetricState]) -> None:
    for state in states:
        state.flush()


def evaluate_runs(hub: Hub | str | Path, runs: Sequence[str], **kwargs: Any) -> pd.DataFrame:
    """:func:`evaluate_run` for several runs, concatenated (same keyword arguments)."""
    frames = [evaluate_run(hub, run, **kwargs) for run in runs]
    return tidy(pd.concat(frames, ignore_index=True)) if frames else tidy(pd.DataFrame(
        columns=["metric", "value"]))

