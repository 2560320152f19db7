"""Circuit figures: composition-score heatmaps (Argument 5).

Level: ``viz`` (frame in, ``go.Figure`` out; no computation). Conventions:
:mod:`induction_lens.viz`.
"""


import numpy as np
import pandas as pd
import plotly.graph_objects as go

from induction_lens.viz._common import (
    _COMPOSITION_KINDS,
    PlotError,
    _check_frame,
    _figure,
    _metric_rows,
    _of_run,
    _select_runs,
    _steps_at,
)

__all__ = ["composition_heatmap"]


def composition_heatmap(frame: pd.DataFrame, *, kind: str = "k_composition",
                        step: int | None = None, run: str | None = None, relative: bool = True,
                        title: str | None = None, height: int | None = None) -> go.Figure:
    """Composition scores between every earlier (source) and later (target) head.

    "A Mathematical Framework for Transformer Circuits" composition scores, used in Argument 5:
    an induction head's key side K-composes with a previous-token head. Shown relative to the
    random baseline ``composition_baseline`` (``1/sqrt(d_model)``): the colour is the score
    minus the baseline (red: more composition than random matrices), the hover gives both.
    Pairs that cannot compose (source not in an earlier layer) are blank.

    Args:
        frame: a tidy sweep frame with the ``composition`` metric's rows
            (``q/k/v_composition`` with ``source_layer``/``source_head``, and
            ``composition_baseline``).
        kind: "q_composition", "k_composition" or "v_composition".
        step: the checkpoint (default: the newest).
        run: which run, when the frame holds several.
        relative: colour by score minus baseline (True) or by the raw score.
        title, height: see :func:`loss_curve`.
    """
    what = "composition_heatmap"
    if kind not in _COMPOSITION_KINDS:
        raise PlotError(f"{what}: kind={kind!r} is not one of {list(_COMPOSITION_KINDS)}")
    _check_frame(frame, what, ("metric", "value", "layer", "head"),
                 "pass the frame evaluate_run returns (metric 'composition')")
    hint = "evaluate the run with the 'composition' metric"
    if (frame["metric"] == "composition_baseline").any() and not (frame["metric"] == kind).any():
        raise PlotError(f"{what}: the frame has no '{kind}' rows although the composition "
                        "metric was evaluated: composition needs a model with at least two "
                        "layers")
    rows = _metric_rows(frame, kind, what, hint)
    if not {"source_layer", "source_head"} <= set(rows.columns):
        raise PlotError(f"{what}: the frame has no source_layer/source_head columns; {hint}")
    rows, runs = _select_runs(rows, run, what, single=True)
    rows = _steps_at(rows, step, what)
    base_rows = _of_run(frame[frame["metric"] == "composition_baseline"], runs[0])
    if "step" in rows.columns and rows["step"].notna().any() and len(base_rows):
        base_rows = base_rows[base_rows["step"] == rows["step"].iloc[0]]
    baseline = float(base_rows["value"].iloc[0]) if len(base_rows) else None
    if relative and baseline is None:
        raise PlotError(f"{what}: no composition_baseline row to compare with; {hint}, or pass "
                        "relative=False")
    n_layers = int(max(rows["layer"].max(), rows["source_layer"].max())) + 1
    n_heads = int(max(rows["head"].max(), rows["source_head"].max())) + 1
    targets = [(la, h) for la in range(1, n_layers) for h in range(n_heads)]
    sources = [(la, h) for la in range(n_layers - 1) for h in range(n_heads)]
    if not targets:
        raise PlotError(f"{what}: composition needs at least two layers")
    z = np.full((len(targets), len(sources)), np.nan)
    t_index = {t: i for i, t in enumerate(targets)}
    s_index = {s: i for i, s in enumerate(sources)}
    for r in rows.itertuples():
        t, s = (int(r.layer), int(r.head)), (int(r.source_layer), int(r.source_head))
        if t in t_index and s in s_index:
            z[t_index[t], s_index[s]] = float(r.value)
    colour = z - baseline if relative else z
    raw = np.where(np.isnan(z), None, z)
    label = "score − baseline" if relative else "composition score"
    fig = _figure((f"{kind.replace('_', '-')}{': ' + runs[0] if runs[0] else ''}"
                   if title is None else title), height=height)
    step_text = ""
    if "step" in rows.columns and rows["step"].notna().any():
        step_text = f", step {int(rows['step'].iloc[0]):,}"
    fig.add_trace(go.Heatmap(
        x=[f"L{la}H{h}" for la, h in sources], y=[f"L{la}H{h}" for la, h in targets],
        z=colour, customdata=raw, colorscale="RdBu_r" if relative else "Viridis",
        zmid=0 if relative else None,
        colorbar=dict(title=dict(side="right", text=label), thickness=12),
        hoverongaps=False,
        hovertemplate=("source %{x} → target %{y}<br>score %{customdata:.4f}"
                       + (f"<br>baseline {baseline:.4f}" if baseline is not None else "")
                       + f"<br>{label} %{{z:.4f}}<extra></extra>")))
    fig.update_xaxes(title_text="source head (earlier layer)", tickangle=-45)
    fig.update_yaxes(title_text=f"target head{step_text}", autorange="reversed")
    return fig
