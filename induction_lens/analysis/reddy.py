"""Reddy 2023's data-dependence summary: final accuracies per sweep cell.

Level: ``analysis`` (frame -> frame; imports ``errors`` and ``frame`` only).

Reddy 2023 (arXiv 2312.03002, section 3, Figure 2) reads the data dependence of in-context
learning off the accuracies at the end of training: IC accuracy (novel classes) rising with the
burstiness ``B`` and the number of classes ``K``, IW accuracy (``B = 0`` sequences of known
classes) falling with ``B``. :func:`reddy_final_accuracy` turns the tidy frame of a sweep over
Reddy runs (:func:`induction_lens.runs.sweep` with ``task={"B": [...], "K": [...]}``) into that
table.
"""

import pandas as pd

from induction_lens.errors import EvalError
from induction_lens.frame import OPTIONAL_COLUMNS, TIDY_COLUMNS

__all__ = ["FINAL_METRICS", "reddy_final_accuracy"]

FINAL_METRICS: tuple[str, ...] = ("ic_accuracy", "ic2_accuracy", "iw_accuracy",
                                  "train_accuracy")
"""The ``reddy`` metric's accuracy rows :func:`reddy_final_accuracy` reports, when present."""


def reddy_final_accuracy(frame: pd.DataFrame) -> pd.DataFrame:
    """Final IC / IC2 / IW / training accuracy of every run in a frame of Reddy runs.

    Args:
        frame: a tidy frame holding the ``reddy`` metric's rows (``ic_accuracy``, ...) of one
            or more runs, e.g. what :func:`induction_lens.runs.sweep` returns; its extra
            columns (the sweep's cell parameters ``model, seed, data, B, K, ...``) are carried
            over.

    Returns:
        One row per run, in order of first appearance: ``run``, the cell's parameter columns,
        ``step`` (the run's last evaluated step) and one column per accuracy in
        :data:`FINAL_METRICS` that the frame holds (NaN where a run lacks it). "Final" is our
        reading of the paper's "at the end of training": the last evaluated checkpoint of the
        run, not an average over the last few.

    Raises:
        EvalError: the frame has no ``ic_accuracy`` or ``iw_accuracy`` rows (not a frame of
            the ``reddy`` metric).
    """
    for col in ("run", "step", "metric", "value"):
        if col not in frame.columns:
            raise EvalError(f"reddy_final_accuracy needs a tidy frame with a {col!r} column; "
                            "pass what sweep(...) or evaluate_run(...) returns")
    rows = frame[frame["metric"].isin(FINAL_METRICS)]
    if not {"ic_accuracy", "iw_accuracy"} <= set(rows["metric"]):
        raise EvalError("the frame has no ic_accuracy / iw_accuracy rows; evaluate the Reddy "
                        "runs with the 'reddy' metric (the default for Reddy runs)")
    params = [c for c in frame.columns
              if c not in TIDY_COLUMNS and c not in OPTIONAL_COLUMNS]
    last = rows.groupby("run", sort=False)["step"].transform("max")
    final = rows[rows["step"] == last]
    wide = final.pivot_table(index="run", columns="metric", values="value", aggfunc="mean",
                             sort=False)
    order = list(dict.fromkeys(final["run"]))
    keys = final.drop_duplicates("run").set_index("run")[["step", *params]]
    out = keys.loc[order].join(wide.reindex(order))
    metrics = [m for m in FINAL_METRICS if m in out.columns]
    out = out.reset_index()[["run", *params, "step", *metrics]]
    out.columns.name = None
    return out
