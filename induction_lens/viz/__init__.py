"""Viz: Plotly figures of the paper's measurements, tidy DataFrame in, ``go.Figure`` out.

Level: above ``runs``; below ``cli``. Figures only select and reshape frames; the HTML report
(:mod:`~induction_lens.viz.report`) is the one module here that reads a hub (through
``runs``). Never imports ``cli``. ``il.plots`` is this namespace.

Families: :mod:`~induction_lens.viz.training` (curves, heatmaps, PCA),
:mod:`~induction_lens.viz.heads`, :mod:`~induction_lens.viz.ablations`,
:mod:`~induction_lens.viz.circuits`, :mod:`~induction_lens.viz.text`,
:mod:`~induction_lens.viz.reddy` (Reddy 2023's figures); the shared style in
:mod:`~induction_lens.viz._common`.

Every figure function draws one panel of Olsson et al. 2022 ("In-context Learning and Induction
Heads"): a row of the Model Analysis Table, or a figure of Arguments 1-6. They only select and
reshape the tidy frames the evaluators return (:mod:`induction_lens.frame`); every number is
computed there, so a figure can be redrawn from a cached parquet without a model.

Conventions shared by all figures:

* **Training time** is the x axis of every "over training" panel, in elapsed training tokens
  on a log axis, as in the paper's table (checkpoints with 0 tokens cannot sit on a log axis
  and are left out; pass ``log_x=False`` to keep them).
* **Losses** are in nats; the ICL score is a loss difference, also in nats.
* **Phase-change windows** (:class:`~induction_lens.analysis.phases.PhaseWindow` objects or the
  :func:`~induction_lens.analysis.phases.phase_changes` frame) are drawn as shaded bands, like the
  paper's orange band, and listed in the legend.
* Heads are coloured by layer depth (head-score panels) or by head type (ablation panels),
  as in the table's captions.
* One template (:data:`TEMPLATE`) and a default height of :data:`HEIGHT` pixels; the width
  follows the container (a Jupyter cell, a column of the HTML report).

Bad input (an empty frame, a missing metric, an unknown run) raises :class:`PlotError` with
a one-line message that names the fix.
"""

from induction_lens.viz._common import (
    HEAD_TYPE_COLOURS,
    HEIGHT,
    METRIC_LABELS,
    RUN_COLOURS,
    TEMPLATE,
    WINDOW_COLOUR,
    PlotError,
    format_si,
    layer_colour,
    log_ticks,
    run_colour,
)
from induction_lens.viz.ablations import ablation_attribution
from induction_lens.viz.circuits import composition_heatmap
from induction_lens.viz.heads import copying_vs_prefix, correlation_scatter, head_score_curves
from induction_lens.viz.reddy import (
    reddy_data_dependence,
    reddy_phase_diagram,
    reddy_training_curves,
    reddy_transition,
)
from induction_lens.viz.text import attention_pattern, token_loss_diff
from induction_lens.viz.training import (
    icl_score_curve,
    llc_curve,
    loss_curve,
    loss_derivative_heatmap,
    loss_heatmap,
    pca_trajectories,
)

__all__ = [
    "HEAD_TYPE_COLOURS",
    "HEIGHT",
    "METRIC_LABELS",
    "RUN_COLOURS",
    "TEMPLATE",
    "WINDOW_COLOUR",
    "PlotError",
    "ablation_attribution",
    "attention_pattern",
    "composition_heatmap",
    "copying_vs_prefix",
    "correlation_scatter",
    "format_si",
    "head_score_curves",
    "icl_score_curve",
    "llc_curve",
    "layer_colour",
    "log_ticks",
    "loss_curve",
    "loss_derivative_heatmap",
    "loss_heatmap",
    "pca_trajectories",
    "reddy_data_dependence",
    "reddy_phase_diagram",
    "reddy_training_curves",
    "reddy_transition",
    "run_colour",
    "token_loss_diff",
]
