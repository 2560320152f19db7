"""Analysis: frame -> frame (and curve -> window) functions. No models, no hub, no files.

Level: above ``frame``; below ``runs``, ``viz`` and ``cli``. It may import ``constants``,
``errors`` and ``frame`` (plus numpy/pandas); never ``models``, ``measures``, ``hub``,
``runs``, ``viz`` or ``cli``.

* :mod:`~induction_lens.analysis.changepoint`: the phase-change definition (change points
  accepted against the run's own noise, after a plateau) and the PCA pivot.
* :mod:`~induction_lens.analysis.phases`: phase-change windows and their co-occurrence.
* :mod:`~induction_lens.analysis.losses`: loss by context index, its log-derivative, PCA.
* :mod:`~induction_lens.analysis.heads`: head types from head scores.
* :mod:`~induction_lens.analysis.summary`: one row per checkpoint.
* :mod:`~induction_lens.analysis.reddy`: Reddy 2023's final accuracies per sweep cell.
* :mod:`~induction_lens.analysis.circuits`, :mod:`~induction_lens.analysis.generality`:
  statistics over circuit and generality frames.
"""

from induction_lens.analysis.changepoint import (
    Change,
    ChangeParams,
    Pivot,
    PivotParams,
    detect_change,
    detect_pivot,
    find_changes,
)
from induction_lens.analysis.circuits import spearman
from induction_lens.analysis.generality import copying_summary, strongest_induction_head
from induction_lens.analysis.heads import HEAD_TYPES, classify_heads
from induction_lens.analysis.losses import loss_by_context, loss_log_derivative, per_token_loss_pca
from induction_lens.analysis.phases import (
    PhaseWindow,
    co_occurrence,
    co_occurrence_table,
    detect_phase_change,
    phase_changes,
    signal_curve,
)
from induction_lens.analysis.reddy import reddy_final_accuracy
from induction_lens.analysis.summary import checkpoint_summary

__all__ = [
    "HEAD_TYPES",
    "Change",
    "ChangeParams",
    "Pivot",
    "PivotParams",
    "detect_change",
    "detect_pivot",
    "find_changes",
    "PhaseWindow",
    "checkpoint_summary",
    "classify_heads",
    "co_occurrence",
    "co_occurrence_table",
    "copying_summary",
    "detect_phase_change",
    "loss_by_context",
    "loss_log_derivative",
    "per_token_loss_pca",
    "phase_changes",
    "reddy_final_accuracy",
    "signal_curve",
    "spearman",
    "strongest_induction_head",
]
