"""Reddy 2023's figures: data dependence, the (B, K) phase diagram, and training dynamics.

Level: ``viz`` (imports ``analysis``, ``errors`` and the shared style). Frames in, figures out:

* :func:`reddy_data_dependence`: final IC and IW accuracy against ``B`` or ``K``, one line per
  ``eps`` (Reddy 2023, arXiv 2312.03002, section 3, Figure 2: "in-context learning is
  promoted by larger burstiness B, larger numbers of classes K" while in-weights learning
  falls with ``B``);
* :func:`reddy_phase_diagram`: final IC accuracy over the ``(B, K)`` grid as a heat map;
* :func:`reddy_training_curves`: IC / IC2 / IW accuracy and the progress measures (ILA1, TILA2,
  ...) over training, the transition window of IC accuracy shaded.

The data-dependence figures read the per-cell table of
:func:`~induction_lens.analysis.reddy.reddy_final_accuracy` (or the tidy sweep frame, which
they pass through it); seeds of one cell are averaged and drawn with their standard deviation.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from induction_lens.analysis.changepoint import MIN_POINTS, Change, ChangeParams, detect_change
from induction_lens.analysis.reddy import FINAL_METRICS, reddy_final_accuracy
from induction_lens.viz._common import (
    HEIGHT,
    TEMPLATE,
    WINDOW_COLOUR,
    PlotError,
    _check_frame,
    _metric_rows,
    _select_runs,
    run_colour,
)

__all__ = ["REDDY_LABELS", "reddy_data_dependence", "reddy_phase_diagram",
           "reddy_training_curves", "reddy_transition"]

REDDY_LABELS: dict[str, str] = {
    "ic_accuracy": "IC accuracy (novel classes)",
    "ic2_accuracy": "IC2 accuracy (swapped labels)",
    "iw_accuracy": "IW accuracy (B = 0)",
    "train_accuracy": "training accuracy",
    "ila1": "ILA1", "tila2": "TILA2", "tla2": "TLA2", "cla": "CLA",
    "B": "burstiness B", "K": "number of classes K", "eps": "within-class noise eps",
}
"""Axis and legend titles of the Reddy metrics and task fields."""

_NOT_PARAMS = {"run", "step", "seed", *FINAL_METRICS}


def _label(name: str) -> str:
    return REDDY_LABELS.get(name, name.replace("_", " "))


def _final(frame: pd.DataFrame, what: str, needed: Sequence[str]) -> pd.DataFrame:
    """The per-cell table: ``frame`` itself, or ``reddy_final_accuracy(frame)`` for a tidy
    frame; checked to have ``needed`` columns."""
    _check_frame(frame, what, (), "pass reddy_final_accuracy(sweep(...)) or the sweep frame")
    final = reddy_final_accuracy(frame) if "metric" in frame.columns else frame
    missing = [c for c in needed if c not in final.columns]
    if missing:
        raise PlotError(f"{what}: the frame has no column(s) {missing}; sweep them with "
                        "sweep(..., task={'B': [...], 'K': [...]}) or pick other axes")
    return final


def _mean_over_seeds(final: pd.DataFrame, keys: list[str], metric: str, what: str
                     ) -> pd.DataFrame:
    """``keys, mean, std, n`` of ``metric`` over the cells' seeds; other parameter columns
    that vary are an error (the figure would silently average over them)."""
    others = [c for c in final.columns if c not in _NOT_PARAMS and c not in keys
              and final[c].astype(str).nunique() > 1]
    if others:
        raise PlotError(f"{what}: the frame also varies {others}; select one value of each "
                        f"(e.g. final[final.{others[0]} == ...]) or draw them as lines (by=)")
    stats = final.groupby(keys, sort=True)[metric].agg(["mean", "std", "count"]).reset_index()
    stats["std"] = stats["std"].fillna(0.0)
    return stats


def reddy_data_dependence(frame: pd.DataFrame, *, x: str = "B", by: str | None = "eps",
                          metrics: Sequence[str] = ("ic_accuracy", "iw_accuracy"),
                          title: str | None = None, height: int | None = None) -> go.Figure:
    """Final accuracies against one task field, one panel per accuracy, one line per ``by``.

    Reddy 2023, section 3 (Figure 2): IC accuracy rises with the burstiness ``B`` and the
    number of classes ``K``, IW accuracy falls with ``B``; larger within-class noise ``eps``
    favours in-context learning. Points are means over seeds, error bars one standard
    deviation (zero for one seed).

    Args:
        frame: :func:`~induction_lens.analysis.reddy.reddy_final_accuracy`'s table, or the
            tidy frame of a Reddy sweep (passed through it).
        x: the task field on the x axis (a column of the table: ``B``, ``K``, ...).
        by: the field drawn as separate lines (default ``eps``); None, or a column the table
            lacks (``eps`` not swept), draws one line.
        metrics: the accuracies, one panel each.
        title: figure title (default: "Final accuracy vs {x}").
        height: pixels (default :data:`HEIGHT`).

    Raises:
        PlotError: a missing column, or another parameter that varies in the table.
    """
    what = "reddy_data_dependence"
    final = _final(frame, what, [x, *metrics])
    by = by if by is not None and by in final.columns else None
    keys = [x] if by is None else [by, x]
    fig = make_subplots(rows=1, cols=len(metrics), horizontal_spacing=0.1,
                        subplot_titles=[_label(m) for m in metrics])
    fig.update_layout(template=TEMPLATE, height=height or HEIGHT,
                      title=dict(text=title or f"Final accuracy vs {x}"))
    for col, metric in enumerate(metrics, start=1):
        stats = _mean_over_seeds(final, keys, metric, what)
        groups = [(None, stats)] if by is None else list(stats.groupby(by, sort=True))
        for i, (value, rows) in enumerate(groups):
            name = "all cells" if by is None else f"{by} = {value}"
            fig.add_trace(go.Scatter(
                x=rows[x].tolist(), y=rows["mean"].astype(float).tolist(),
                error_y=dict(type="data", array=rows["std"].astype(float).tolist()),
                mode="lines+markers", name=name, legendgroup=name, showlegend=col == 1,
                line=dict(color=run_colour(i), width=2)), row=1, col=col)
        fig.update_xaxes(title_text=_label(x), row=1, col=col)
        fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=col)
    return fig


def reddy_phase_diagram(frame: pd.DataFrame, *, x: str = "B", y: str = "K",
                        metric: str = "ic_accuracy", title: str | None = None,
                        height: int | None = None) -> go.Figure:
    """Heat map of a final accuracy over two task fields (default IC accuracy over B and K).

    Reddy 2023, section 3: the regions of the (B, K) plane where the network learns in context
    or in weights. Cells are means over seeds; axes are categorical (the swept values, sorted),
    so uneven grids (K = 128, 512, 2048) get equal cells.

    Args:
        frame: the per-cell table or the tidy sweep frame (see :func:`reddy_data_dependence`).
        x, y: the task fields on the axes.
        metric: the accuracy coloured (0 to 1).
        title: figure title (default: "{metric} at the end of training").
        height: pixels (default :data:`HEIGHT`).
    """
    what = "reddy_phase_diagram"
    final = _final(frame, what, [x, y, metric])
    stats = _mean_over_seeds(final, [x, y], metric, what)
    table = stats.pivot(index=y, columns=x, values="mean").sort_index().sort_index(axis=1)
    fig = go.Figure(go.Heatmap(
        x=[str(v) for v in table.columns], y=[str(v) for v in table.index],
        z=table.to_numpy(float), zmin=0.0, zmax=1.0, colorscale="Viridis",
        colorbar=dict(title=dict(text="accuracy")),
        text=np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.2f}")(table.to_numpy(float)),
        texttemplate="%{text}", hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y}}<br>%{{z:.3f}}"
                                              "<extra></extra>"))
    fig.update_layout(template=TEMPLATE, height=height or HEIGHT,
                      title=dict(text=title or f"{_label(metric)} at the end of training"))
    fig.update_xaxes(title_text=_label(x), type="category")
    fig.update_yaxes(title_text=_label(y), type="category")
    return fig


def reddy_transition(frame: pd.DataFrame, *, run: str | None = None,
                     params: ChangeParams | None = None) -> Change | None:
    """The transition window of IC accuracy over steps
    (:func:`~induction_lens.analysis.changepoint.detect_change` on ``ic_accuracy``), or None
    when the curve has no accepted phase change (no jump, or fewer than
    :data:`~induction_lens.analysis.changepoint.MIN_POINTS` checkpoints)."""
    what = "reddy_transition"
    _check_frame(frame, what, ("metric", "value", "step"), "pass evaluate_run's frame")
    rows, _ = _select_runs(_metric_rows(frame, "ic_accuracy", what, "evaluate with 'reddy'"),
                           run, what, single=True)
    curve = rows.groupby("step", sort=True)["value"].mean()
    if len(curve) < MIN_POINTS:
        return None
    return detect_change(curve.index.to_numpy(float), curve.to_numpy(float), params=params)


def reddy_training_curves(frame: pd.DataFrame, *, run: str | None = None,
                          accuracies: Sequence[str] = ("ic_accuracy", "ic2_accuracy",
                                                       "iw_accuracy"),
                          measures: Sequence[str] = ("ila1", "tila2", "tla2", "cla"),
                          window: bool | tuple[float, float] = True,
                          title: str | None = None, height: int | None = None) -> go.Figure:
    """Accuracies (top) and progress measures (bottom) of one run over training steps.

    Reddy 2023, section 3: IC accuracy sits on a plateau, then jumps; the progress measures
    (our reading of ILA1, TILA2, TLA2, CLA, :mod:`induction_lens.measures.reddy`) move in the
    same window. The window is shaded in the paper's orange: by default the phase change of
    IC accuracy found by :func:`reddy_transition` (our choice of detector, the package's
    change-point definition; none is shaded when it finds none), or a ``(start, end)`` pair
    of steps. The x axis is the optimizer step (linear), as the paper plots its dynamics.

    Args:
        frame: the tidy frame of ``evaluate_run`` on a Reddy run (metric ``reddy``).
        run: the run to draw (required when the frame holds several).
        accuracies, measures: the rows of each panel (those the frame lacks are left out, and
            a panel with none of its rows; at least one row must be present).
        window: True (detect), False (none) or ``(start_step, end_step)``.
        title: figure title (default: "{run}: accuracy and progress measures").
        height: pixels (default: 2 x :data:`HEIGHT`).
    """
    what = "reddy_training_curves"
    _check_frame(frame, what, ("metric", "value", "step"),
                 "pass the frame evaluate_run returns for a Reddy run (metric 'reddy')")
    frame, runs = _select_runs(frame, run, what, single=True)
    present = set(frame["metric"])
    chosen = [([m for m in accuracies if m in present], "accuracy"),
              ([m for m in measures if m in present], "progress measure")]
    panels = [(names, label) for names, label in chosen if names]
    if not panels:
        raise PlotError(f"{what}: the frame has none of {[*accuracies, *measures]}; evaluate "
                        "the run with the 'reddy' metric")
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.06)
    fig.update_layout(template=TEMPLATE, height=height or len(panels) * HEIGHT,
                      title=dict(text=title or f"{runs[0] or 'run'}: accuracy and progress "
                                 "measures"))
    for r, (names, label) in enumerate(panels, start=1):
        for i, metric in enumerate(names):
            curve = frame[frame["metric"] == metric].groupby("step", sort=True)["value"].mean()
            fig.add_trace(go.Scatter(x=curve.index.astype(float).tolist(),
                                     y=curve.astype(float).tolist(), mode="lines+markers",
                                     name=_label(metric), marker=dict(size=4),
                                     line=dict(color=run_colour(i + 3 * (r - 1)), width=2)),
                          row=r, col=1)
        fig.update_yaxes(title_text=label, row=r, col=1)
    fig.update_xaxes(title_text="step", row=len(panels), col=1)
    span: tuple[float, float] | None = None
    if window is True:
        change = reddy_transition(frame) if "ic_accuracy" in present else None
        span = None if change is None else (change.start, change.end)
    elif isinstance(window, tuple):
        span = (float(window[0]), float(window[1]))
    if span is not None:
        fig.add_vrect(x0=span[0], x1=span[1], fillcolor=WINDOW_COLOUR, opacity=0.2,
                      line_width=0, row="all", col=1)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="IC transition",
                                 marker=dict(color=WINDOW_COLOUR, symbol="square", size=10)))
    return fig
