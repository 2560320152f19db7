"""Loss curves as frames: loss by context index, its log-derivative, per-token-loss PCA.

Level: ``analysis`` (frame -> frame; imports ``errors`` and ``frame`` only). Inputs are the
tidy frames of :func:`induction_lens.runs.evaluate_run` with the ``losses`` metric.
"""

import numpy as np
import pandas as pd

from induction_lens.errors import EvalError


def _one_metric(frame: pd.DataFrame, metric: str, what: str) -> pd.DataFrame:
    if "metric" not in frame.columns:
        raise EvalError(f"{what} needs a tidy frame with a 'metric' column (from evaluate_run)")
    rows = frame[frame["metric"] == metric]
    if rows.empty:
        raise EvalError(f"{what} needs '{metric}' rows; evaluate the run with the 'losses' metric")
    return rows


def loss_by_context(frame: pd.DataFrame) -> pd.DataFrame:
    """Loss by (snapshot, context index), the "2D in-context learning plot" ("Analyses").

    Args:
        frame: a tidy sweep frame with ``loss_by_position`` rows (metric "losses").

    Returns:
        Long frame ``run, step, tokens, position, value`` sorted by run, step and position
        (pivot it for a heatmap: ``.pivot_table(index="position", columns="step")``).
    """
    rows = _one_metric(frame, "loss_by_position", "loss_by_context")
    cols = [c for c in ("run", "step", "train_tokens") if c in rows.columns]
    out = rows[cols + ["position", "value"]].sort_values(cols + ["position"])
    return out.reset_index(drop=True)


def loss_log_derivative(frame: pd.DataFrame) -> pd.DataFrame:
    """d loss / d ln(context index) per snapshot, the "2D loss derivative plot" ("Analyses").

    "This captures the amount that token loss is reduced by seeing e% more context." Computed
    with ``numpy.gradient`` on the non-uniform grid ``ln(i)`` (second-order central differences
    inside, one-sided at the ends), without smoothing, so it is as noisy as the context-index
    average itself; the paper does not say how it smoothed, if at all.

    Returns:
        Long frame ``run, step, tokens, position, value`` like :func:`loss_by_context`.
    """
    table = loss_by_context(frame)
    keys = [c for c in ("run", "step", "train_tokens") if c in table.columns]
    parts = []
    for _, group in table.groupby(keys, sort=True):
        group = group.sort_values("position")
        pos = group["position"].to_numpy(dtype=np.float64)
        if len(pos) < 2:
            raise EvalError("loss_log_derivative needs at least two context indices per snapshot")
        deriv = np.gradient(group["value"].to_numpy(dtype=np.float64), np.log(pos))
        parts.append(group.assign(value=deriv))
    return pd.concat(parts, ignore_index=True)


def per_token_loss_pca(frame: pd.DataFrame, *, n_components: int = 2) -> pd.DataFrame:
    """PCA of the random-token-per-example loss vectors of every snapshot of one or more runs.

    "Analyses", *PCA*: "The random-token-per-example loss data for all snapshots and all models
    [...] is concatenated into a large matrix, of shape (N*M model snapshots x 10,000 examples)
    [...] projected down to the first two principal components." All runs share one basis, so
    their trajectories are comparable. Columns are centred over all snapshots (no scaling: every
    column is a loss in nats); the sign of each component is fixed so that its largest-magnitude
    loading is positive (deterministic across calls).

    Args:
        frame: tidy sweep frame(s) with ``loss_per_example`` rows; every snapshot of every run
            must cover the same examples (the same evaluation set).
        n_components: how many components to return.

    Returns:
        One row per snapshot: ``run, step, tokens, pc1..pcK`` and ``explained_variance_pc1..K``
        (the fraction of the total variance each component explains, the same on every row).
    """
    rows = _one_metric(frame, "loss_per_example", "per_token_loss_pca")
    keys = [c for c in ("run", "step", "train_tokens") if c in rows.columns]
    matrix = rows.pivot_table(index=keys, columns="example", values="value", aggfunc="first")
    if matrix.isna().any().any():
        raise EvalError("per_token_loss_pca: snapshots cover different examples; evaluate every "
                        "run on the same evaluation set (same n_examples and seed)")
    if not 1 <= n_components <= min(matrix.shape):
        raise EvalError(f"n_components={n_components} must be in [1, {min(matrix.shape)}] for "
                        f"{matrix.shape[0]} snapshots of {matrix.shape[1]} examples")
    x = matrix.to_numpy(dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    flip = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    flip[flip == 0] = 1
    scores = (u * s) * flip
    total = float((s**2).sum())
    out = matrix.index.to_frame(index=False)
    for k in range(n_components):
        out[f"pc{k + 1}"] = scores[:, k]
    for k in range(n_components):
        out[f"explained_variance_pc{k + 1}"] = (s[k] ** 2 / total) if total > 0 else 0.0
    return out
