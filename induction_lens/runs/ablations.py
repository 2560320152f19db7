"""Head ablations over the checkpoints of a run: the Model Analysis Table's ablation rows.

Level: ``runs``. The ablation reports of one model are
:func:`induction_lens.measures.ablation_metrics`; here they become the registered metrics
``ablation_pattern`` and ``ablation_full``, computed
and cached by :func:`~induction_lens.runs.evaluate_run` like every other metric (same cache,
same checkpoint selection), with the ablation ``kind`` as a column of the tidy frame.

The before-and-after vector of the paper's "Ablation attribution to phase change" is the clean
random-token loss vector at the phase window's end minus at its start. The window is
``EvalSettings.ablation_window``: given as steps (snapped to the nearest checkpoints), detected
from the run's ICL score ("detect", the default:
:func:`~induction_lens.analysis.detect_phase_change` on the ``losses`` metric), or "none". The
resolved window and its checkpoints' hashes are part
of the cache key, so a retrained or extended run whose window moves is recomputed.
"""

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformer_lens import HookedTransformer

from induction_lens.analysis.heads import classify_heads
from induction_lens.analysis.phases import detect_phase_change
from induction_lens.errors import EvalError
from induction_lens.hub import Hub
from induction_lens.measures.ablations import (
    AblationError,
    AblationKind,
    ablation_metrics,
    before_after_vector,
    check_kind,
    clean_losses,
)
from induction_lens.measures.heads import head_scores
from induction_lens.runs.cache import cache_path
from induction_lens.runs.context import EvalContext
from induction_lens.runs.evaluate import evaluate_run
from induction_lens.runs.settings import EvalSettings

logger = logging.getLogger(__name__)

__all__ = ["ablate_run", "ablation_metric_name", "ablation_path", "head_types",
           "with_head_types"]

ABLATION_SETTINGS = ("n_examples", "index_seed", "icl_indices", "ablation_window",
                     "context_fraction")
"""The :class:`EvalSettings` fields the ablation metrics read (batching is speed only)."""


def ablation_metric_name(kind: AblationKind) -> str:
    """The registered metric (and cache file) of ``kind``: ``ablation_pattern`` or
    ``ablation_full``."""
    return f"ablation_{check_kind(kind)}"


def ablation_path(hub: Hub | str | Path, run: str, kind: AblationKind) -> Path:
    """Where ``kind``'s reports of ``run`` are cached: ``RUN/evals/ablation_KIND.parquet``."""
    return cache_path(hub, run, ablation_metric_name(kind))


# ---------------------------------------------------------------------------- the window
def _snap(run: str, window: Sequence[int], available: Sequence[int]) -> tuple[int, int]:
    start, end = window
    if not available:
        raise AblationError(f"run {run!r} has no checkpoints")
    snapped = [min(available, key=lambda s, t=t: (abs(s - t), s)) for t in (start, end)]
    if snapped != [start, end]:
        logger.info("phase window (%d, %d) snapped to checkpoints %s", start, end, snapped)
    if snapped[0] >= snapped[1]:
        raise AblationError(f"window ({start}, {end}) spans no two checkpoints (snapped to "
                            f"{snapped}); its start must come before its end")
    return snapped[0], snapped[1]


def _detect(hub: Hub, run: str, settings: EvalSettings, *, cache: bool = True
            ) -> tuple[int, int] | None:
    """The run's phase-change window in steps from its ICL-score curve (the ``losses`` metric,
    cached), or None when it shows none."""
    frame = evaluate_run(hub, run, metrics="losses", settings=settings, cache=cache,
                         progress=False)
    window = detect_phase_change(frame, signal="icl_score", run=run)
    if window is None:
        logger.warning("run %s shows no phase change in its ICL score; "
                       "before_after_projection is left out (set ablation_window)", run)
        return None
    return window.start_step, window.end_step


def resolve_window(ctx: EvalContext) -> tuple[int, int] | None:
    """``ctx.settings.ablation_window`` as checkpoint steps of ``ctx.run`` (memoised per run)."""
    def build() -> tuple[int, int] | None:
        window = ctx.settings.ablation_window
        if window == "none":
            return None
        if ctx.hub is None:
            if window == "detect":
                logger.info("no hub: the ablation reports leave before_after_projection out")
                return None
            raise AblationError("ablation_window needs a stored run (a hub) to read the "
                                "window's checkpoints; use ablation_window='none'")
        if window == "detect":
            return _detect(ctx.hub, ctx.run, ctx.settings, cache=ctx.cache)
        available = [e.step for e in ctx.hub.manifest(ctx.run)]
        return _snap(ctx.run, window, available)

    return ctx.once("ablation_window", build)


def _window_key(ctx: EvalContext) -> dict[str, Any]:
    window = resolve_window(ctx)
    if window is None:
        return {"window": None}
    sha = {e.step: e.sha256 for e in ctx.hub.manifest(ctx.run)}
    return {"window": list(window), "window_checkpoints": [sha[s] for s in window]}


def _unit_vector(ctx: EvalContext, device: torch.device) -> torch.Tensor | None:
    def build() -> torch.Tensor | None:
        window = resolve_window(ctx)
        if window is None:
            return None
        ends = [clean_losses(ctx.hub.load_model(ctx.run, s, device=device), ctx.eval_tokens,
                             ctx.random_index[:, None],
                             batch_size=ctx.settings.ablation_batch_size)[:, 0]
                for s in window]
        return before_after_vector(*ends)

    return ctx.once("before_after", build)


def ablation_metric(kind: AblationKind):
    """The registered metric function of ``kind`` (see the module docstring)."""
    kind = check_kind(kind)

    def fn(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
        s = ctx.settings
        device = next(model.parameters()).device
        return ablation_metrics(model, ctx.eval_tokens, kind, random_indices=ctx.random_index,
                                before_after=_unit_vector(ctx, device), icl=s.icl_indices,
                                context_fraction=s.context_fraction,
                                batch_size=s.ablation_batch_size,
                                heads_per_pass=s.heads_per_pass)

    fn.__name__ = f"ablation_{kind}_metric"
    fn.__doc__ = f"Every head's {kind} ablation reports (Model Analysis Table)."
    return fn


ablation_run_key = _window_key
"""The run-dependent part of the ablation metrics' cache key: the resolved window."""


# ---------------------------------------------------------------------------- over a run
def ablate_run(hub: Hub | str | Path, run: str, kind: AblationKind = "pattern", *,
               every: int = 1, steps: Sequence[int] | None = None, window: Any = None,
               settings: EvalSettings | None = None, context_fraction: float | None = None,
               batch_size: int | None = None, heads_per_pass: int | None = None,
               device: str | torch.device | None = None, progress: bool = True,
               force: bool = False) -> pd.DataFrame:
    """Every head's ablation reports at every ``every``-th checkpoint of a run, cached.

    The Model Analysis Table's ablation rows for one model: :func:`evaluate_run` with the
    ``ablation_{kind}`` metric. The evaluation set, the random index of each example and the
    ICL-score indices are the sweep's (:class:`EvalSettings`: the run's held-out
    ``corpus.eval_tokens(n_examples)``; laptop sized by default, ``EvalSettings.paper()`` is the
    paper's 10,000 examples), so the reports line up with ``loss_per_example`` and
    ``icl_score``. Checkpoints are chosen like every metric's
    (:meth:`~induction_lens.hub.Hub.select_checkpoints`: every ``every``-th and the newest).

    Args:
        hub: the hub or its directory.
        run: the run's name.
        kind: "pattern" (the paper's) or "full".
        every: use every ``every``-th checkpoint and the newest (ignored when ``steps`` is given).
        steps: explicit checkpoint steps.
        window: ``(start_step, end_step)`` or a ``PhaseWindow`` (snapped to the nearest
            checkpoints); None detects it; False leaves the projection out. Overrides
            ``settings.ablation_window``.
        settings: evaluation settings (default ``EvalSettings()``).
        context_fraction, batch_size, heads_per_pass: override the settings' ablation fields
            (see :func:`~induction_lens.measures.ablation_metrics`).
        device: torch device for the models.
        progress: tqdm bar over checkpoints.
        force: recompute (and rewrite the cache) even where cached rows match.

    Returns:
        The tidy frame ``run, step, train_tokens, layer, head, metric, value, position,
        example, kind``; ``frame.attrs["window"]`` is the window used (steps) or None.
    """
    kind = check_kind(kind)
    settings = settings if settings is not None else EvalSettings()
    overrides: dict[str, Any] = {}
    if window is not None:
        if window is False:
            overrides["ablation_window"] = "none"
        elif hasattr(window, "start_step") and hasattr(window, "end_step"):
            overrides["ablation_window"] = (window.start_step, window.end_step)
        else:
            overrides["ablation_window"] = window
    for name, value in (("context_fraction", context_fraction),
                        ("ablation_batch_size", batch_size), ("heads_per_pass", heads_per_pass)):
        if value is not None:
            overrides[name] = value
    try:
        settings = replace(settings, **overrides)
    except EvalError as err:
        raise AblationError(str(err)) from None
    if not isinstance(every, int) or every < 1:
        raise AblationError(f"every={every!r} must be a positive integer")
    hub = Hub.of(hub)
    available = [e.step for e in hub.manifest(run)]
    if not available:
        raise AblationError(f"run {run!r} has no checkpoints to ablate")
    if steps is not None:
        missing = sorted(set(steps) - set(available))
        if missing:
            raise AblationError(f"run {run!r} has no checkpoint at steps {missing}")
    frame = evaluate_run(hub, run, metrics=ablation_metric_name(kind), every=every, steps=steps,
                         settings=settings, device=device, progress=progress, refresh=force)
    ctx = EvalContext.from_hub(hub, run, settings)
    frame.attrs["window"] = (None if settings.ablation_window == "none"
                             else _window_key(ctx)["window"])
    return frame


# ---------------------------------------------------------------------------- head types
def head_types(hub: Hub | str | Path, run: str, step: int | None = None, *,
               settings: EvalSettings | None = None,
               device: str | torch.device | None = None, **thresholds: float | None
               ) -> pd.DataFrame:
    """Previous-token / induction / other type of every head, for colouring ablation plots.

    The Model Analysis Table colours each head's ablation line by type ("previous token;
    induction; other"). Types come from :func:`induction_lens.analysis.classify_heads` (its
    documented thresholds, overridable through ``thresholds``) on the sweep's evaluator inputs
    (:class:`EvalSettings`), at checkpoint ``step`` (default: the newest, so that each head
    keeps the type it ends training with).

    Returns:
        ``layer, head, head_type`` (plus the three evaluator scores).
    """
    hub = Hub.of(hub)
    s = settings if settings is not None else EvalSettings()
    model = hub.load_model(run, step, device=device)
    ctx = EvalContext.from_hub(hub, run, s)
    scores = head_scores(model, token_pool=ctx.token_pool,
                         dataset_tokens=ctx.dataset_tokens,
                         n_examples=s.head_examples, seq_len=s.head_seq_len,
                         repeats=s.head_repeats, seed=s.head_seed, copying_bos=s.copying_bos,
                         copying_reading=s.copying_reading, batch_size=s.batch_size)
    return classify_heads(scores, **thresholds)


def with_head_types(frame: pd.DataFrame, types: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``head_type`` column joined on ``layer, head`` (model-level rows: NA)."""
    keys = ["layer", "head"]
    right = types[keys + ["head_type"]].astype({"layer": "Int64", "head": "Int64"})
    left = frame.astype({"layer": "Int64", "head": "Int64"})
    return left.merge(right, on=keys, how="left")
