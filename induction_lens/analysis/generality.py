"""Summaries of the generality evaluators' frames (Argument 4): copying, the strongest head.

Level: ``analysis`` (imports ``errors`` and ``analysis.heads`` only).
"""

import pandas as pd

from induction_lens.analysis.heads import classify_heads
from induction_lens.errors import EvalError


def copying_summary(frame: pd.DataFrame) -> dict[str, float]:
    """Means of :func:`literal_copying`'s columns over repeated positions and over first
    occurrences (``repeated`` False), keyed by :data:`COPYING_METRICS` (NaN when empty)."""
    missing = {"repeated", "induction_attention", "logit_attribution", "loss"} - set(frame)
    if missing:
        raise EvalError(f"copying_summary needs literal_copying's frame; missing {sorted(missing)}")
    rep = frame[frame["repeated"]]
    first = frame[~frame["repeated"]]

    def mean(rows: pd.DataFrame, col: str) -> float:
        return float(rows[col].mean()) if len(rows) else float("nan")

    return {
        "induction_attention_repeated": mean(rep, "induction_attention"),
        "induction_attention_first": mean(first, "induction_attention"),
        "logit_attribution_repeated": mean(rep, "logit_attribution"),
        "logit_attribution_first": mean(first, "logit_attribution"),
        "loss_repeated": mean(rep, "loss"),
        "loss_first": mean(first, "loss"),
    }


def strongest_induction_head(scores: pd.DataFrame) -> tuple[int, int]:
    """The head with the highest prefix-matching score among the induction heads of
    :func:`~induction_lens.analysis.heads.classify_heads` (the highest prefix-matching head
    overall when none qualifies), as ``(layer, head)``.

    Args:
        scores: ``layer, head, metric, value`` rows of one model (e.g.
            :func:`~induction_lens.measures.heads.head_scores`) with ``prefix_matching`` (and,
            for the induction test, ``copying``).
    """

    if "metric" not in scores or not (scores["metric"] == "prefix_matching").any():
        raise EvalError("strongest_induction_head needs prefix_matching scores (head_scores)")
    keys = [c for c in ("run", "step", "train_tokens") if c in scores.columns]
    if keys and len(scores[keys].drop_duplicates()) > 1:
        raise EvalError("scores hold several models or snapshots; pass one snapshot's rows")
    types = classify_heads(scores)
    pool = types[types["head_type"] == "induction"]
    pool = pool if len(pool) else types
    best = pool.sort_values(["prefix_matching", "layer", "head"],
                            ascending=[False, True, True]).iloc[0]
    return int(best["layer"]), int(best["head"])
