"""Weight-based circuit measures over training: the registered metric functions and the
validation of the head activation evaluators against them (appendix "Validating head
activation evaluators").

Level: ``runs`` (imports ``measures``, ``analysis``, ``frame`` and the rest of ``runs``).
"""

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from transformer_lens import HookedTransformer

from induction_lens.analysis.circuits import spearman
from induction_lens.constants import HEAD_METRICS
from induction_lens.frame import tidy
from induction_lens.hub import Hub
from induction_lens.measures.circuits import PAIR_METRICS, CircuitError, circuit_scores
from induction_lens.runs.context import EvalContext
from induction_lens.runs.evaluate import evaluate_run
from induction_lens.runs.settings import EvalSettings

__all__ = ["CIRCUIT_SWEEP_METRICS", "VALIDATION_PAIRS", "validate_circuits"]


def qk_trace_metric(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
    """``qk_trace`` (and ``qk_smear_trace`` for smeared models) of one checkpoint; the
    previous-token scores are the sweep's own (memoised, shared with ``previous_token``)."""
    prev = ctx.previous_token_scores(model) if model.cfg.n_layers > 1 else None
    return circuit_scores(model, prev_scores=prev, metrics=("qk_trace", "qk_smear_trace"))


def ov_metric(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
    """``ov_copying`` and ``ov_positive_fraction`` of one checkpoint (weights only)."""
    return circuit_scores(model, metrics=("ov_copying", "ov_positive_fraction"))


def composition_metric(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
    """Q/K/V composition scores of every pair and the random baseline (weights only)."""
    return circuit_scores(model, metrics=PAIR_METRICS + ("composition_baseline",))


# The QK trace reads the previous-token examples: their number, and (for runs without a corpus)
# the seed and token pool of the random stand-in.
PREV_SETTINGS = ("head_examples", "head_seed", "exclude_fraction")


CIRCUIT_SWEEP_METRICS = ("qk_trace", "ov_copying", "composition")
"""The circuit metrics registered by :mod:`induction_lens.runs.builtin`."""


VALIDATION_PAIRS: tuple[tuple[str, str], ...] = (("qk_trace", "prefix_matching"),
                                                 ("ov_copying", "copying"))
"""(weight-based measure, behavioural evaluator) pairs the paper validates against each other."""


def validate_circuits(
    hub: Hub | str | Path,
    runs: Sequence[str] | str,
    *,
    every: int = 1,
    settings: EvalSettings | None = None,
    cache: bool = True,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Spearman correlations of the weight-based measures with the head activation evaluators.

    Appendix "Validating head activation evaluators": the prefix-matching evaluator "correlates
    well with the trace of QK eigenvalues for the previous-token QK-circuit term", and the
    copying evaluator with the OV eigenvalue measure. Over every head x snapshot of ``runs``
    (every ``every``-th checkpoint) this computes, with :func:`spearman`:

    * ``"qk_trace~prefix_matching"`` over heads in layers >= 1 (the QK trace is undefined in
      layer 0, so 1-layer runs contribute nothing);
    * ``"ov_copying~copying"`` over all heads;
    * ``"ov_positive_fraction~copying"`` (the companion OV measure);

    pooled over ``runs``, and the same per run under ``"{run}:qk_trace~prefix_matching"`` etc.
    The scores come from :func:`~induction_lens.runs.evaluate.evaluate_run` (cached in the hub
    unless ``cache=False``; pass ``cache=False`` for a hub you must not write into).

    Returns:
        ``(joined, coefficients)``: ``joined`` has one row per run, step, tokens, layer and head
        with one column per measure (``qk_trace``, ``qk_smear_trace`` where present,
        ``ov_copying``, ``ov_positive_fraction``, ``prefix_matching``, ``copying``,
        ``previous_token``) — the scatter plots of the appendix; ``coefficients`` maps the
        names above to Spearman's rho (NaN when fewer than 3 pairs).
    """
    runs = [runs] if isinstance(runs, str) else list(runs)
    if not runs:
        raise CircuitError("validate_circuits needs at least one run name")
    metrics = ["qk_trace", "ov_copying", *HEAD_METRICS]
    frames = [evaluate_run(hub, run, metrics=metrics, every=every, settings=settings,
                           cache=cache, progress=progress) for run in runs]
    long = tidy(pd.concat(frames, ignore_index=True))
    long = long[long["layer"].notna()]
    keys = ["run", "step", "train_tokens", "layer", "head"]
    joined = long.pivot(index=keys, columns="metric", values="value").reset_index()
    joined.columns.name = None
    coefficients: dict[str, float] = {}
    pairs = (*VALIDATION_PAIRS, ("ov_positive_fraction", "copying"))
    for scope, frame in [(None, joined)] + [(run, joined[joined["run"] == run]) for run in runs]:
        for weight_metric, behaviour in pairs:
            name = f"{weight_metric}~{behaviour}"
            if scope is not None:
                name = f"{scope}:{name}"
            rows = frame[frame["layer"] >= 1] if weight_metric == "qk_trace" else frame
            coefficients[name] = spearman(rows[weight_metric], rows[behaviour])
    return joined, coefficients
