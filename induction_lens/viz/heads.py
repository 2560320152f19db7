"""Head-score figures: head scores over training, copying vs prefix matching at one
checkpoint, and correlation scatters (evaluator validation).

Level: ``viz`` (frame in, ``go.Figure`` out; no computation). Conventions:
:mod:`induction_lens.viz`.
"""

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from induction_lens.viz._common import (
    _TOKENS_TITLE,
    PlotError,
    _check_frame,
    _draw_windows,
    _figure,
    _head_lines,
    _label,
    _log_axis,
    _metric_rows,
    _nice_log_ticks,
    _of_run,
    _on_training_axis,
    _select_runs,
    _steps_at,
    format_si,
    layer_colour,
    log_ticks,
    run_colour,
)

__all__ = ["head_score_curves", "copying_vs_prefix", "correlation_scatter"]


def head_score_curves(frame: pd.DataFrame, *, metric: str = "prefix_matching",
                      run: str | None = None, windows: Any = None, log_x: bool = True,
                      window_signal: str | None = "icl_score", title: str | None = None,
                      height: int | None = None) -> go.Figure:
    """One line per attention head over training, coloured by layer depth.

    Model Analysis Table, rows "Prefix matching score" ("the average fraction of a head's
    attention weight given to the token we expect an induction head to attend to [...] on
    random, synthetic data") and "Trace of QK eigenvalues" (``metric="qk_trace"``: "only
    defined for models more than one layer deep"). "Heads are colored by layer depth". Argument
    1: induction heads form in the phase-change window; Argument 5: the QK trace follows the
    prefix-matching score.

    Args:
        frame: a tidy sweep frame with per-head rows of ``metric`` (``prefix_matching``,
            ``copying``, ``previous_token``, ``qk_trace``, ``qk_smear_trace``, ...).
        metric: the head metric to draw.
        run: which run, when the frame holds several.
        windows, log_x, window_signal, height: see :func:`loss_curve`.
        title: default: the metric's name.

    Raises:
        PlotError: also when ``metric`` has no finite value, e.g. ``qk_trace`` of a one-layer
            model.
    """
    what = "head_score_curves"
    _check_frame(frame, what, ("metric", "value", "train_tokens", "step", "layer", "head"),
                 "pass the frame evaluate_run returns")
    rows = _metric_rows(frame, metric, what, f"evaluate the run with the '{metric}' metric")
    rows, runs = _select_runs(rows, run, what, single=True)
    rows = rows[rows["layer"].notna() & rows["head"].notna()]
    rows = rows[np.isfinite(rows["value"].astype(float))]
    if rows.empty:
        extra = (" (the QK trace is only defined for heads in layer >= 1, so not for one-layer "
                 "models)" if metric.startswith("qk_") else "")
        raise PlotError(f"{what}: '{metric}' has no finite per-head value for run "
                        f"{runs[0]!r}{extra}")
    rows = _on_training_axis(rows, log_x, what)
    n_layers = int(frame.loc[frame["layer"].notna(), "layer"].max()) + 1
    default = {"prefix_matching": "Prefix-matching score", "qk_trace": "Trace of QK eigenvalues"}
    fig = _figure(default.get(metric, _label(metric)) if title is None else title,
                  height=height)
    _head_lines(fig, rows,
                colour_of=lambda sub: layer_colour(int(sub["layer"].iloc[0]), n_layers),
                name_of=lambda group: group,
                group_of=lambda sub: f"layer {int(sub['layer'].iloc[0])}",
                label=_label(metric), run=runs[0])
    _draw_windows(fig, windows, runs, window_signal)
    _log_axis(fig, "x", log_x, _TOKENS_TITLE)
    fig.update_yaxes(title_text=_label(metric))
    return log_ticks(fig, "x")


def _wide_scores(frame: pd.DataFrame, metrics: Sequence[str], what: str) -> pd.DataFrame:
    """One row per (run, step, tokens, layer, head) with a column per metric."""
    if "metric" not in frame.columns:
        missing = [m for m in metrics if m not in frame.columns]
        if missing:
            raise PlotError(f"{what}: the frame has neither a 'metric' column nor columns "
                            f"{missing}")
        return frame
    for m in metrics:
        _metric_rows(frame, m, what, f"evaluate the run with the '{m}' metric")
    rows = frame[frame["metric"].isin(metrics) & frame["layer"].notna()]
    keys = [c for c in ("run", "step", "train_tokens")
            if c in rows.columns and rows[c].notna().any()]
    wide = rows.pivot_table(index=keys + ["layer", "head"], columns="metric", values="value",
                            aggfunc="first").reset_index()
    wide.columns.name = None
    for m in metrics:  # pivot_table drops a column that is NaN throughout (layer-0 QK trace)
        if m not in wide.columns:
            wide[m] = np.nan
    return wide


def copying_vs_prefix(frame: pd.DataFrame, *, step: int | None = None,
                      run: str | Sequence[str] | None = None, thresholds: bool = True,
                      title: str | None = "Copying vs prefix matching",
                      height: int | None = None) -> go.Figure:
    """Copying score against prefix-matching score, one marker per head.

    "Key Concepts": an induction head does both prefix matching and copying, so induction heads
    sit in the top right. The dashed lines are the thresholds of
    :func:`~induction_lens.analysis.heads.classify_heads`. Markers are coloured by layer depth;
    several runs get different symbols.

    Args:
        frame: a tidy sweep frame with ``prefix_matching`` and ``copying`` rows (or a wide
            frame with those columns, e.g. ``classify_heads`` output).
        step: the checkpoint (default: each run's newest).
        run: run(s) to draw (default: all).
        thresholds: draw the classification thresholds.
        title, height: see :func:`loss_curve`.
    """
    from induction_lens.analysis.heads import COPYING_THRESHOLD, PREFIX_MATCHING_THRESHOLD

    what = "copying_vs_prefix"
    _check_frame(frame, what, ("layer", "head"), "pass the frame evaluate_run returns")
    wide = _wide_scores(frame, ("prefix_matching", "copying"), what)
    wide, runs = _select_runs(wide, run, what, single=False)
    wide = _steps_at(wide, step, what)
    n_layers = int(wide["layer"].max()) + 1
    symbols = ("circle", "diamond", "square", "triangle-up", "cross", "x", "star", "hexagon")
    fig = _figure(title, height=height)
    for i, name in enumerate(runs):
        sub = _of_run(wide, name)
        if sub.empty:
            continue
        custom = np.stack([sub["layer"].astype(float), sub["head"].astype(float),
                           sub["step"].astype(float) if "step" in sub.columns
                           else np.full(len(sub), np.nan)], axis=-1)
        fig.add_trace(go.Scatter(
            x=sub["prefix_matching"].astype(float), y=sub["copying"].astype(float),
            mode="markers", name=name or "heads", customdata=custom,
            marker=dict(size=10, symbol=symbols[i % len(symbols)], opacity=0.9,
                        color=[layer_colour(int(la), n_layers) for la in sub["layer"]],
                        line=dict(color="white", width=1)),
            hovertemplate=(f"<b>{html.escape(name or '')} L%{{customdata[0]}}H%{{customdata[1]}}"
                           "</b><br>step %{customdata[2]:,}<br>prefix matching %{x:.3f}<br>"
                           "copying %{y:.3f}<extra></extra>")))
    if thresholds:
        fig.add_vline(x=PREFIX_MATCHING_THRESHOLD, line=dict(color="#9aa3b2", dash="dash",
                                                             width=1))
        fig.add_hline(y=COPYING_THRESHOLD, line=dict(color="#9aa3b2", dash="dash", width=1))
    fig.update_xaxes(title_text=_label("prefix_matching"))
    fig.update_yaxes(title_text=_label("copying"))
    fig.update_layout(showlegend=len(runs) > 1)
    return fig


def correlation_scatter(frame: pd.DataFrame, x: str = "qk_trace", y: str = "prefix_matching", *,
                        run: str | Sequence[str] | None = None, min_layer: int | None = None,
                        coefficient: float | None = None, title: str | None = None,
                        height: int | None = None) -> go.Figure:
    """Scatter of two per-head measures over every head x snapshot, with Spearman's rho.

    Appendix "Validating head activation evaluators" / Argument 5: the prefix-matching
    evaluator "correlates well with the trace of QK eigenvalues", and the copying evaluator
    with the OV eigenvalue measure. Markers are coloured by training time (log tokens);
    several runs get different symbols.

    Args:
        frame: a tidy sweep frame with rows of both metrics, or a wide frame with one column
            per measure (``validate_circuits``' ``joined``).
        x, y: the two measures.
        run: run(s) to pool (default: all).
        min_layer: keep heads of layers ``>= min_layer`` only (default: 1 when either measure
            is a QK trace, which is undefined in layer 0; else 0).
        coefficient: Spearman's rho to print (default: computed over the plotted points with
            :func:`~induction_lens.analysis.circuits.spearman`).
        title, height: see :func:`loss_curve`.
    """
    what = "correlation_scatter"
    _check_frame(frame, what, ("layer", "head"), "pass the frame evaluate_run returns")
    if x == y:
        raise PlotError(f"{what}: x and y are both {x!r}; pick two different measures")
    wide = _wide_scores(frame, (x, y), what)
    wide, runs = _select_runs(wide, run, what, single=False)
    if min_layer is None:
        min_layer = 1 if (x.startswith("qk_") or y.startswith("qk_")) else 0
    wide = wide[(wide["layer"] >= min_layer) & np.isfinite(wide[x].astype(float))
                & np.isfinite(wide[y].astype(float))]
    if wide.empty:
        raise PlotError(f"{what}: no head in layers >= {min_layer} has finite {x!r} and {y!r} "
                        "(the QK trace needs a model with at least two layers)")
    if coefficient is None:
        from induction_lens.analysis.circuits import spearman

        coefficient = spearman(wide[x], wide[y])
    symbols = ("circle", "diamond", "square", "triangle-up", "cross", "x", "star", "hexagon")
    has_tokens = "train_tokens" in wide.columns and wide["train_tokens"].notna().any()
    fig = _figure(f"{_label(y)} vs {_label(x)}" if title is None else title, height=height)
    tok = wide["train_tokens"].astype(float) if has_tokens else pd.Series(1.0, index=wide.index)
    floor = float(tok[tok > 0].min()) if (tok > 0).any() else 1.0
    lo, hi = float(np.log10(floor)), float(np.log10(max(float(tok.max()), floor * 10)))
    ticks = _nice_log_ticks(lo, hi)
    colorbar = dict(title=dict(text=_TOKENS_TITLE, side="right"), thickness=12, tickvals=ticks,
                    ticktext=[format_si(10.0 ** t) for t in ticks])
    for i, name in enumerate(runs):
        sub = _of_run(wide, name)
        if sub.empty:
            continue
        t = np.log10(np.maximum(tok.loc[sub.index].to_numpy(), floor))
        custom = np.stack([sub["layer"].astype(float), sub["head"].astype(float),
                           sub["step"].astype(float) if "step" in sub.columns
                           else np.full(len(sub), np.nan)], axis=-1)
        fig.add_trace(go.Scatter(
            x=sub[x].astype(float), y=sub[y].astype(float), mode="markers",
            name=name or "heads", customdata=custom,
            marker=dict(size=7, symbol=symbols[i % len(symbols)], opacity=0.8,
                        color=t if has_tokens else run_colour(i), colorscale="Plasma",
                        cmin=lo, cmax=hi,
                        showscale=has_tokens and i == 0,
                        colorbar=colorbar),
            hovertemplate=(f"<b>{html.escape(name or '')} L%{{customdata[0]}}H%{{customdata[1]}}"
                           f"</b><br>step %{{customdata[2]:,}}<br>{html.escape(x)} %{{x:.4g}}"
                           f"<br>{html.escape(y)} %{{y:.4g}}<extra></extra>")))
    rho = "n/a" if coefficient is None or not np.isfinite(coefficient) else f"{coefficient:.3f}"
    fig.update_layout(title_text=f"{fig.layout.title.text or ''} (Spearman ρ = {rho}, "
                                 f"n = {len(wide)})".lstrip(),
                      showlegend=len(runs) > 1, legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title_text=_label(x))
    fig.update_yaxes(title_text=_label(y))
    return fig
