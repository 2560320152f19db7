"""One row per checkpoint: loss, ICL score and the best head scores (frame -> frame).

Level: ``analysis`` (imports nothing above ``frame``).
"""

import pandas as pd


def checkpoint_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run and checkpoint: ``loss``, ``icl_score`` and the best head scores.

    Columns present depend on the metrics evaluated: ``loss``, ``icl_score``,
    ``max_prefix_matching``, ``max_copying``, ``max_previous_token`` (the highest score over
    all heads at that checkpoint).
    """
    keys = ["run", "step", "train_tokens"]
    model_level = frame[frame["layer"].isna() & frame["position"].isna()
                        & frame["metric"].isin(["loss", "icl_score"])]
    out = model_level.pivot_table(index=keys, columns="metric", values="value",
                                  aggfunc="first")
    head = frame[frame["layer"].notna() & frame["metric"].isin(["prefix_matching", "copying",
                                                                "previous_token"])]
    if len(head):
        best = head.pivot_table(index=keys, columns="metric", values="value", aggfunc="max")
        best.columns = [f"max_{c}" for c in best.columns]
        out = best if out.empty else out.join(best, how="outer")
    out = out.reset_index()
    out.columns.name = None
    return out.sort_values(["run", "step"]).reset_index(drop=True)
