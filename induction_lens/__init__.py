"""induction_lens: reproduce Olsson et al. 2022, *In-context Learning and Induction Heads*.

Build the paper's models as TransformerLens ``HookedTransformer``s, train them into a local
checkpoint hub, and measure induction heads over training as tidy pandas DataFrames.

The top level holds the workflow (configs, presets, :func:`train`, :class:`Hub`,
:func:`evaluate_run`, :func:`head_scores`, :func:`ablate`, :func:`ablate_run`,
:func:`detect_phase_change`, :func:`build_report`) and the namespaces, one per level:

* :mod:`induction_lens.measures`: pure functions of a model and tokens (``*_scores`` return
  ``[n_layers, n_heads]`` tensors);
* :mod:`induction_lens.analysis`: frame -> frame (phase windows, PCA, head types);
* :mod:`induction_lens.runs`: metrics over the checkpoints of runs, cached in the hub;
* :mod:`induction_lens.viz` (also ``il.plots``): DataFrame -> plotly figure, and the report;
* :mod:`induction_lens.frame`: the one tidy schema.

Names that used to live at the top level and moved into a namespace still work for one release,
with a ``DeprecationWarning`` naming their new home.
"""

import importlib
import warnings
from typing import Any

from induction_lens import analysis, frame, measures, runs, viz
from induction_lens._version import __version__
from induction_lens.analysis.phases import detect_phase_change
from induction_lens.config import DataSpec, Intervention, ModelSpec, RunConfig, TrainConfig
from induction_lens.errors import ConfigError, EvalError, HubError, InductionLensError
from induction_lens.hub import Hub
from induction_lens.measures.ablations import ablate
from induction_lens.measures.heads import head_scores
from induction_lens.models import build_model
from induction_lens.presets import PRESETS, get_preset, list_presets
from induction_lens.pretrained import import_pretrained
from induction_lens.runs import (
    EvalSettings,
    ablate_run,
    evaluate_model,
    evaluate_run,
    evaluate_runs,
    register_metric,
    sweep,
)
from induction_lens.train import TrainResult, train
from induction_lens.viz.report import build_report

plots = viz
"""The figures namespace under its familiar name (``il.plots.loss_curve(...)``)."""

__all__ = [
    "__version__",
    "ConfigError",
    "DataSpec",
    "EvalError",
    "EvalSettings",
    "Hub",
    "HubError",
    "InductionLensError",
    "Intervention",
    "ModelSpec",
    "PRESETS",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "ablate",
    "ablate_run",
    "analysis",
    "build_model",
    "build_report",
    "detect_phase_change",
    "evaluate_model",
    "evaluate_run",
    "evaluate_runs",
    "frame",
    "get_preset",
    "head_scores",
    "import_pretrained",
    "list_presets",
    "measures",
    "plots",
    "register_metric",
    "runs",
    "sweep",
    "train",
    "viz",
]

_MOVED: dict[str, str] = {
    "ablation_metrics": "induction_lens.measures",
    "circuit_scores": "induction_lens.measures",
    "composition_scores": "induction_lens.measures",
    "icl_score": "induction_lens.measures",
    "ov_copying": "induction_lens.measures",
    "per_token_losses": "induction_lens.measures",
    "qk_trace": "induction_lens.measures",
    "summarise_losses": "induction_lens.measures",
    "token_loss_diff": "induction_lens.measures",
    "PhaseWindow": "induction_lens.analysis",
    "checkpoint_summary": "induction_lens.analysis",
    "classify_heads": "induction_lens.analysis",
    "co_occurrence": "induction_lens.analysis",
    "co_occurrence_table": "induction_lens.analysis",
    "loss_by_context": "induction_lens.analysis",
    "loss_log_derivative": "induction_lens.analysis",
    "per_token_loss_pca": "induction_lens.analysis",
    "phase_changes": "induction_lens.analysis",
    "head_types": "induction_lens.runs",
    "validate_circuits": "induction_lens.runs",
}
"""Former top-level names and the namespace each moved to (kept for one release)."""


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        home = _MOVED[name]
        warnings.warn(f"induction_lens.{name} moved to {home}.{name}; the top-level name will "
                      "be removed in the next release", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(home), name)
    raise AttributeError(f"module 'induction_lens' has no attribute {name!r}")
