"""induction_lens: reproduce Olsson et al. 2022, *In-context Learning and Induction Heads*.

Build the paper's models as TransformerLens ``HookedTransformer``s, train them into a local
checkpoint hub, and measure induction heads over training as tidy pandas DataFrames.
"""

from induction_lens import plots
from induction_lens._version import __version__
from induction_lens.config import ConfigError, DataSpec, ModelSpec, RunConfig, TrainConfig
from induction_lens.evals.ablations import ablate, ablate_run, ablation_metrics, head_types
from induction_lens.evals.circuits import (
    circuit_scores,
    composition_scores,
    ov_copying,
    qk_trace,
    validate_circuits,
)
from induction_lens.evals.common import EvalError
from induction_lens.evals.heads import classify_heads, head_scores
from induction_lens.evals.losses import (
    icl_score,
    loss_by_context,
    loss_log_derivative,
    per_token_loss_pca,
    per_token_losses,
    summarise_losses,
    token_loss_diff,
)
from induction_lens.evals.phases import (
    PhaseWindow,
    co_occurrence,
    co_occurrence_table,
    detect_phase_change,
    phase_changes,
)
from induction_lens.evals.sweep import (
    EvalSettings,
    checkpoint_summary,
    evaluate_model,
    evaluate_run,
    evaluate_runs,
    register_metric,
)
from induction_lens.hub import Hub, HubError
from induction_lens.models import build_model
from induction_lens.presets import PRESETS, get_preset, list_presets
from induction_lens.report import build_report
from induction_lens.train import TrainResult, train

__all__ = [
    "__version__",
    "ConfigError",
    "DataSpec",
    "EvalError",
    "EvalSettings",
    "Hub",
    "HubError",
    "ModelSpec",
    "PRESETS",
    "PhaseWindow",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "ablate",
    "ablate_run",
    "ablation_metrics",
    "build_model",
    "build_report",
    "checkpoint_summary",
    "circuit_scores",
    "classify_heads",
    "co_occurrence",
    "co_occurrence_table",
    "composition_scores",
    "detect_phase_change",
    "evaluate_model",
    "evaluate_run",
    "evaluate_runs",
    "get_preset",
    "head_scores",
    "head_types",
    "icl_score",
    "list_presets",
    "loss_by_context",
    "loss_log_derivative",
    "ov_copying",
    "per_token_loss_pca",
    "per_token_losses",
    "phase_changes",
    "plots",
    "qk_trace",
    "register_metric",
    "summarise_losses",
    "token_loss_diff",
    "train",
    "validate_circuits",
]
