"""Figures over training: loss and ICL-score curves, loss heatmaps and their
log-derivative, per-token-loss PCA trajectories (Model Analysis Table rows and Argument 1).

Level: ``viz`` (frame in, ``go.Figure`` out; no computation). Conventions:
:mod:`induction_lens.viz`.
"""

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from induction_lens.viz._common import (
    _TOKENS_TITLE,
    HEIGHT,
    TEMPLATE,
    PlotError,
    _check_frame,
    _draw_windows,
    _figure,
    _log_axis,
    _metric_rows,
    _nice_log_ticks,
    _of_run,
    _on_training_axis,
    _run_lines,
    _run_names,
    _select_runs,
    format_si,
    log_ticks,
    run_colour,
)

__all__ = ["icl_score_curve", "llc_curve", "loss_curve", "loss_derivative_heatmap", "loss_heatmap",
           "pca_trajectories"]


def loss_curve(frame: pd.DataFrame, *, windows: Any = None, run: str | Sequence[str] | None = None,
               metric: str = "loss", log_x: bool = True, window_signal: str | None = "icl_score",
               title: str | None = "Loss over training", height: int | None = None) -> go.Figure:
    """Loss over training tokens, one line per run, the phase-change window shaded.

    Model Analysis Table, row "Loss over training": "Loss curve showing Loss(n_train) after the
    model is trained on n_train tokens [...] The orange band denotes phase change interval."
    The loss is the mean of the random-token-per-example vector (the sweep's ``loss`` rows,
    "Analyses": *Loss curve*). Argument 1 reads the phase change as a small bump of this curve.

    Args:
        frame: a tidy sweep frame (:func:`~induction_lens.runs.evaluate.evaluate_run`) with
            ``loss`` rows; several runs give several lines.
        windows: phase-change windows to shade (see :func:`_windows`).
        run: one run or a list of runs to draw (default: every run in the frame).
        metric: the model-level metric to draw (``loss``; ``icl_score`` is
            :func:`icl_score_curve`).
        log_x: training tokens on a log axis (the paper's), dropping a 0-token checkpoint.
        window_signal: which windows of a ``phase_changes`` frame to shade ("icl_score", the
            paper's defining measurement; None: all detected).
        title: figure title (None: none).
        height: pixels (default :data:`HEIGHT`).
    """
    what = "loss_curve"
    _check_frame(frame, what, ("metric", "value", "train_tokens", "step"),
                 "pass the frame evaluate_run returns (metric 'losses')")
    rows = _metric_rows(frame, metric, what, "evaluate the run with the 'losses' metric")
    rows, runs = _select_runs(rows, run, what, single=False)
    rows = rows[rows["layer"].isna()] if "layer" in rows.columns else rows
    rows = _on_training_axis(rows, log_x, what)
    return _run_lines(rows, runs, metric, what=what, title=title, windows=windows, log_x=log_x,
                      window_signal=window_signal, height=height)


def icl_score_curve(frame: pd.DataFrame, *, windows: Any = None,
                    run: str | Sequence[str] | None = None, log_x: bool = True,
                    window_signal: str | None = "icl_score",
                    title: str | None = "In-context learning score",
                    height: int | None = None) -> go.Figure:
    """The in-context-learning score over training, one line per run.

    Model Analysis Table, row "In-context learning score": Loss(n_train, i_ctx = 500) -
    Loss(n_train, i_ctx = 50), "how much better the model is at predicting the 500th token than
    the 50th" (negative: it learns in context). Argument 1: it drops abruptly in the
    phase-change window, for every model with more than one layer; Argument 6: it ends near
    -0.4 nats across sizes. On shorter laptop contexts the two indices are scaled
    (:func:`~induction_lens.measures.losses.icl_indices`).

    Args:
        frame: a tidy sweep frame with ``icl_score`` rows (metric "losses").
        windows, run, log_x, window_signal, title, height: see :func:`loss_curve`.
    """
    what = "icl_score_curve"
    _check_frame(frame, what, ("metric", "value", "train_tokens", "step"),
                 "pass the frame evaluate_run returns (metric 'losses')")
    rows = _metric_rows(frame, "icl_score", what, "evaluate the run with the 'losses' metric")
    rows, runs = _select_runs(rows, run, what, single=False)
    rows = _on_training_axis(rows, log_x, what)
    fig = _run_lines(rows, runs, "icl_score", what=what, title=title, windows=windows,
                     log_x=log_x, window_signal=window_signal, height=height)
    fig.add_hline(y=0, line=dict(color="#9aa3b2", width=1, dash="dot"))
    return fig


def _heatmap_table(rows: pd.DataFrame, what: str, log_x: bool) -> pd.DataFrame:
    rows = _on_training_axis(rows, log_x, what)
    rows = rows[rows["position"].notna() & (rows["position"] > 0)]
    if rows.empty:
        raise PlotError(f"{what}: no context index >= 1 in the frame")
    return rows.pivot_table(index="position", columns="train_tokens", values="value",
                            aggfunc="first", dropna=False).sort_index().sort_index(axis=1)


def _training_heatmap(table: pd.DataFrame, steps: pd.Series, *, title: str | None,
                      colorbar: str, log_x: bool, log_y: bool, height: int | None,
                      zmid: float | None = None, zlim: tuple[float, float] | None = None,
                      colorscale: str = "Viridis") -> go.Figure:
    fig = _figure(title, height=height)
    z = table.to_numpy(dtype=np.float64)
    step_of = steps.reindex(table.columns).to_numpy(dtype=np.float64)
    custom = np.broadcast_to(step_of[None, :], z.shape)
    kwargs: dict[str, Any] = {}
    if zlim is not None:
        kwargs.update(zmin=zlim[0], zmax=zlim[1])
    if zmid is not None:
        kwargs.update(zmid=zmid)
    fig.add_trace(go.Heatmap(
        x=table.columns.to_numpy(dtype=np.float64), y=table.index.to_numpy(dtype=np.float64),
        z=z, customdata=custom, colorscale=colorscale,
        colorbar=dict(title=dict(side="right", text=colorbar), thickness=12),
        hovertemplate=("step %{customdata:,}<br>tokens %{x:,.0f}<br>context index %{y}<br>"
                       f"{html.escape(colorbar)} %{{z:.4f}}<extra></extra>"), **kwargs))
    _log_axis(fig, "x", log_x, _TOKENS_TITLE)
    _log_axis(fig, "y", log_y, "context index (tokens)")
    return log_ticks(log_ticks(fig, "x"), "y")


def loss_heatmap(frame: pd.DataFrame, *, run: str | None = None, log_x: bool = True,
                 log_y: bool = True, title: str | None = "Loss by context index",
                 height: int | None = None) -> go.Figure:
    """Loss over (training tokens, context index): the "2D in-context learning plot".

    Model Analysis Table, row "Loss over training, broken down by context index": "Heatmap of
    Loss(n_train, i_ctx), the average loss of i_ctx token in context after n_train elapsed
    tokens of training" ("Analyses": *2D in-context learning plot*, after Kaplan et al.). A
    vertical slice is one snapshot's loss against context index; the phase change shows as later
    tokens getting abruptly easier. Both axes are logarithmic.

    Args:
        frame: a tidy sweep frame with ``loss_by_position`` rows (metric "losses"), or the
            output of :func:`~induction_lens.analysis.losses.loss_by_context`.
        run: which run, when the frame holds several.
        log_x: training tokens on a log axis (drops a 0-token checkpoint).
        log_y: context index on a log axis.
        title, height: see :func:`loss_curve`.
    """
    what = "loss_heatmap"
    _check_frame(frame, what, ("value", "train_tokens", "position"),
                 "pass the frame evaluate_run returns (metric 'losses')")
    rows = (_metric_rows(frame, "loss_by_position", what,
                         "evaluate the run with the 'losses' metric")
            if "metric" in frame.columns else frame)
    rows, runs = _select_runs(rows, run, what, single=True)
    table = _heatmap_table(rows, what, log_x)
    steps = rows.groupby("train_tokens")["step"].first() if "step" in rows.columns else \
        pd.Series(np.nan, index=table.columns)
    fig = _training_heatmap(table, steps, title=title, colorbar="loss (nats)", log_x=log_x,
                            log_y=log_y, height=height)
    if runs[0] is not None and title:
        fig.update_layout(title_text=f"{title}: {runs[0]}")
    return fig


def loss_derivative_heatmap(frame: pd.DataFrame, *, run: str | None = None, log_x: bool = True,
                            log_y: bool = True, clip_quantile: float | None = 0.98,
                            title: str | None = "d loss / d ln(context index)",
                            height: int | None = None) -> go.Figure:
    """d loss / d ln(context index) over (training tokens, context index).

    Model Analysis Table, row "Derivative of loss wrt context index": "the log vertical partial
    derivative of the above graph", which "captures the amount that token loss is reduced by
    seeing e% more context" ("Analyses": *2D loss derivative plot*). Negative (blue) means
    more context helps. Diverging colours centred on 0.

    Args:
        frame: the output of :func:`~induction_lens.analysis.losses.loss_log_derivative`
            (``run, step, tokens, position, value``).
        run: which run, when the frame holds several.
        log_x, log_y: log axes (see :func:`loss_heatmap`).
        clip_quantile: the colour range is ``+-`` this quantile of ``|value|`` so that the noisy
            first context indices do not wash out the rest (None: the full range). Values
            beyond it keep their true number in the hover text.
        title, height: see :func:`loss_curve`.
    """
    what = "loss_derivative_heatmap"
    _check_frame(frame, what, ("value", "train_tokens", "position"),
                 "pass losses.loss_log_derivative(frame)")
    if "metric" in frame.columns:
        raise PlotError(f"{what} draws the output of losses.loss_log_derivative(frame), not a "
                        "sweep frame; pass loss_log_derivative(frame)")
    rows, runs = _select_runs(frame, run, what, single=True)
    table = _heatmap_table(rows, what, log_x)
    values = np.abs(table.to_numpy(dtype=np.float64))
    values = values[np.isfinite(values)]
    if clip_quantile is not None and len(values):
        if not 0 < clip_quantile <= 1:
            raise PlotError(f"{what}: clip_quantile={clip_quantile} must be in (0, 1]")
        top = float(np.quantile(values, clip_quantile)) or float(values.max()) or 1.0
        zlim = (-top, top)
    else:
        top = float(values.max()) if len(values) else 1.0
        zlim = (-top, top)
    steps = rows.groupby("train_tokens")["step"].first() if "step" in rows.columns else \
        pd.Series(np.nan, index=table.columns)
    fig = _training_heatmap(table, steps, title=title, colorbar="d loss / d ln i (nats)",
                            log_x=log_x, log_y=log_y, height=height, zlim=zlim,
                            colorscale="RdBu_r")
    if runs[0] is not None and title:
        fig.update_layout(title_text=f"{title}: {runs[0]}")
    return fig


def pca_trajectories(pca_frame: pd.DataFrame, *, highlight: str | Sequence[str] | None = None,
                     components: tuple[int, int] = (1, 2),
                     title: str | None = "PCA of token losses",
                     height: int | None = None) -> go.Figure:
    """Trajectories of several runs through per-token-loss space, in one shared PCA basis.

    Model Analysis Table, top row "PCA of token losses": "We take 10,000 individual token
    predictions per model, and project them onto the first two principal components. This
    shows how the large-scale behavior of multiple networks evolve over training." All runs
    share the basis (:func:`~induction_lens.analysis.losses.per_token_loss_pca`), so a pivot
    common to the multi-layer models (Argument 1) shows as their trajectories turning together.
    Each run is a line; its markers are coloured by training time (log tokens).

    Args:
        pca_frame: the output of :func:`~induction_lens.analysis.losses.per_token_loss_pca`
            (``run, step, tokens, pc1, pc2, ...``).
        highlight: run(s) drawn in colour; the others are drawn thin and grey for context
            (default: every run in colour). The report highlights one run per column.
        components: which two components to draw (1-based).
        title, height: see :func:`loss_curve`.
    """
    what = "pca_trajectories"
    a, b = components
    cols = [f"pc{a}", f"pc{b}"]
    _check_frame(pca_frame, what, ["step", "train_tokens", *cols],
                 "pass losses.per_token_loss_pca(frame) (n_components >= the components drawn)")
    runs = _run_names(pca_frame)
    if highlight is not None:
        wanted = [highlight] if isinstance(highlight, str) else list(highlight)
        unknown = [r for r in wanted if r not in runs]
        if unknown:
            raise PlotError(f"{what}: run(s) {unknown} not in the frame (runs: {runs})")
    else:
        wanted = runs
    fig = _figure(title, height=height)
    tokens = pca_frame["train_tokens"].astype(float)
    positive = tokens[tokens > 0]
    floor = float(positive.min()) if len(positive) else 1.0
    log_t = np.log10(np.maximum(tokens.to_numpy(), floor))
    lo, hi = float(log_t.min()), float(log_t.max())
    if hi == lo:
        hi = lo + 1.0
    ticks = _nice_log_ticks(lo, hi)
    colorbar = dict(title=dict(text=_TOKENS_TITLE, side="right"), thickness=12, tickvals=ticks,
                    ticktext=[format_si(10.0 ** t) for t in ticks])
    shown_bar = False
    for i, run in enumerate(runs):
        sub = _of_run(pca_frame, run).sort_values("step")
        x, y = sub[cols[0]].astype(float), sub[cols[1]].astype(float)
        sub_log = np.log10(np.maximum(sub["train_tokens"].astype(float).to_numpy(), floor))
        custom = np.stack([sub["step"].astype(float), sub["train_tokens"].astype(float)], axis=-1)
        hover = (f"<b>{html.escape(run or 'model')}</b><br>step %{{customdata[0]:,}}<br>"
                 f"tokens %{{customdata[1]:,.0f}}<br>PC{a} %{{x:.3f}}<br>PC{b} %{{y:.3f}}"
                 "<extra></extra>")
        if run not in wanted:
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=run, customdata=custom,
                                     line=dict(color="#c5c9d0", width=1), hovertemplate=hover,
                                     legendgroup="others", showlegend=False))
            continue
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=run or "model", customdata=custom,
            line=dict(color=run_colour(i), width=1.5),
            marker=dict(size=7, color=sub_log, colorscale="Plasma", cmin=lo, cmax=hi,
                        line=dict(color=run_colour(i), width=1),
                        showscale=not shown_bar, colorbar=colorbar),
            hovertemplate=hover))
        shown_bar = True
    for k, col in zip((a, b), ("x", "y"), strict=True):
        share = f"explained_variance_pc{k}"
        text = f"PC{k}"
        if share in pca_frame.columns and pca_frame[share].notna().any():
            text += f" ({100 * float(pca_frame[share].iloc[0]):.0f}% of variance)"
        (fig.update_xaxes if col == "x" else fig.update_yaxes)(title_text=text)
    fig.update_layout(legend=dict(orientation="h", y=-0.25), showlegend=len(wanted) > 1)
    return fig


def llc_curve(frame: pd.DataFrame, *, run: str | None = None, windows: Any = None,
              log_x: bool = True, window_signal: str | None = None,
              title: str | None = "Local learning coefficient over training",
              height: int | None = None) -> go.Figure:
    """The LLC over training above the highest prefix-matching score and the ICL score of one
    run, on one training-tokens axis, the phase-change windows shaded across all three.

    The LLC (metric ``llc``, :mod:`induction_lens.measures.llc`) is drawn with a band of one
    standard deviation over chains (``llc_std``); the middle panel is the best head's
    prefix-matching score (Argument 1's signal of induction heads forming), the bottom one the
    ICL score (the paper's defining measurement). Panels whose metric the frame lacks are
    left out; the LLC panel is required.

    Args:
        frame: a tidy sweep frame with ``llc`` rows (metric "llc"), and optionally
            ``prefix_matching`` and ``icl_score`` rows.
        run: the run to draw (required when the frame holds several).
        windows: phase-change windows to shade (a ``phase_changes`` frame or PhaseWindows).
        log_x: training tokens on a log axis, dropping a 0-token checkpoint.
        window_signal: which windows of a ``phase_changes`` frame to shade (None: every
            detected signal, e.g. both the ICL and the LLC window).
        title: figure title (None: none).
        height: pixels (default: 2 x :data:`HEIGHT`).
    """
    what = "llc_curve"
    _check_frame(frame, what, ("metric", "value", "train_tokens", "step"),
                 "pass the frame evaluate_run returns (metric 'llc')")
    rows = _metric_rows(frame, "llc", what, "evaluate the run with the 'llc' metric")
    frame, runs = _select_runs(frame, run, what, single=True)
    panels = [("llc", "LLC")] + [(m, label) for m, label in (
        ("prefix_matching", "max prefix matching"), ("icl_score", "ICL score"))
        if (frame["metric"] == m).any()]
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.04)
    fig.update_layout(template=TEMPLATE, height=height or 2 * HEIGHT,
                      title=dict(text=title) if title else None)
    for i, (metric, label) in enumerate(panels, start=1):
        rows = _on_training_axis(frame[frame["metric"] == metric], log_x, what)
        curve = (rows.groupby(["step", "train_tokens"], as_index=False)["value"].max()
                 .sort_values("step"))
        x = curve["train_tokens"].astype(float)
        if metric == "llc":
            std = _on_training_axis(frame[frame["metric"] == "llc_std"], log_x, what) \
                if (frame["metric"] == "llc_std").any() else None
            if std is not None and len(std):
                spread = curve.merge(std[["step", "value"]].rename(columns={"value": "std"}),
                                     on="step", how="left")["std"].fillna(0).to_numpy(float)
                y = curve["value"].to_numpy(float)
                fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]),
                                         y=np.concatenate([y + spread, (y - spread)[::-1]]),
                                         fill="toself", line=dict(width=0), opacity=0.2,
                                         fillcolor=run_colour(0), hoverinfo="skip",
                                         name="LLC +- std over chains"), row=i, col=1)
        fig.add_trace(go.Scatter(x=x, y=curve["value"].astype(float), mode="lines+markers",
                                 name=label, line=dict(color=run_colour(i - 1), width=2),
                                 marker=dict(size=4)), row=i, col=1)
        fig.update_yaxes(title_text=label, row=i, col=1)
    _draw_windows(fig, windows, runs, window_signal)
    fig.update_xaxes(type="log" if log_x else "linear", exponentformat="SI")
    fig.update_xaxes(title_text=_TOKENS_TITLE, row=len(panels), col=1)
    return log_ticks(fig, "x")
