"""What every figure shares: the style (template, colours, labels, log-token axes), input
checks and the phase-window bands.

Level: ``viz`` (imports ``errors`` only).
"""

import html
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale

from induction_lens.errors import EvalError

__all__ = [
    "HEAD_TYPE_COLOURS",
    "HEIGHT",
    "METRIC_LABELS",
    "PlotError",
    "RUN_COLOURS",
    "TEMPLATE",
    "WINDOW_COLOUR",
    "format_si",
    "layer_colour",
    "log_ticks",
    "run_colour",
]


class PlotError(EvalError):
    """A plotting function got a frame it cannot draw; the message names the input and the fix.

    An :class:`~induction_lens.errors.EvalError` (hence an ``InductionLensError``), so the
    command line reports it as one line.
    """


# ============================================================================ style
HEIGHT = 380
"""Default figure height in pixels; the width follows the container."""

_GRID = "#e5e8ee"
TEMPLATE = go.layout.Template(layout=go.Layout(
    font=dict(family="Helvetica, Arial, sans-serif", size=12, color="#2a2f3a"),
    paper_bgcolor="white",
    plot_bgcolor="white",
    colorway=qualitative.D3,
    margin=dict(l=60, r=20, t=50, b=50),
    title=dict(font=dict(size=14), x=0.01, xanchor="left"),
    hoverlabel=dict(font=dict(size=11)),
    legend=dict(font=dict(size=11), bgcolor="rgba(255,255,255,0.7)"),
    xaxis=dict(gridcolor=_GRID, linecolor="#9aa3b2", zerolinecolor=_GRID, ticks="outside",
               showline=True, automargin=True),
    yaxis=dict(gridcolor=_GRID, linecolor="#9aa3b2", zerolinecolor="#c9ced8", ticks="outside",
               showline=True, automargin=True),
))
"""The figures' template: a compact white theme (small enough to embed in every figure of
the HTML report)."""

RUN_COLOURS: tuple[str, ...] = tuple(qualitative.D3)
"""Line colours of runs, in the order the runs appear."""

HEAD_TYPE_COLOURS: dict[str, str] = {
    "previous_token": "#1f77b4",
    "induction": "#d62728",
    "other": "#a0a4ab",
}
"""The ablation rows' colours: "previous token; induction; other" (Model Analysis Table)."""

_HEAD_TYPE_NAMES = {"previous_token": "previous token", "induction": "induction",
                    "other": "other"}

WINDOW_COLOUR = "#ff7f0e"
"""The paper's orange phase-change band."""

METRIC_LABELS: dict[str, str] = {
    "loss": "loss (nats)",
    "icl_score": "ICL score (nats)",
    "prefix_matching": "prefix-matching score",
    "copying": "copying score",
    "previous_token": "previous-token score",
    "qk_trace": "QK trace (previous-token term)",
    "qk_smear_trace": "QK trace (smeared-key term)",
    "ov_copying": "OV eigenvalue copying, Σ Re λ / Σ |λ|",
    "ov_positive_fraction": "share of OV eigenvalues with Re λ > 0",
    "icl_score_delta": "change in ICL score (nats)",
    "before_after_projection": "projection on before/after (nats)",
    "random_token_loss_delta": "change in loss (nats)",
    "clean_icl_score": "ICL score (nats)",
    "clean_random_token_loss": "loss (nats)",
}
"""Axis titles (with units) of the metrics the evaluators write."""

_SIGNAL_NAMES = {"icl_score": "ICL score", "prefix_matching": "prefix matching",
                 "loss": "loss bump"}
_TOKENS_TITLE = "training tokens"
_LAYER_SCALE = "Viridis"


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def run_colour(index: int) -> str:
    """Colour of the ``index``-th run (cycles through :data:`RUN_COLOURS`)."""
    return RUN_COLOURS[index % len(RUN_COLOURS)]


def layer_colour(layer: int, n_layers: int) -> str:
    """Colour of a head in ``layer`` of an ``n_layers`` model: dark (early) to green (late).

    The table's head panels: "Heads are colored by layer depth: early; late." The top of the
    Viridis scale (yellow) is left out: it is unreadable on white.
    """
    position = 0.0 if n_layers <= 1 else layer / (n_layers - 1)
    return sample_colorscale(_LAYER_SCALE, [0.85 * position])[0]


def _figure(title: str | None, *, height: int | None = None) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE, height=height or HEIGHT,
                      title=dict(text=title) if title else None)
    return fig


def _log_axis(fig: go.Figure, axis: str, log: bool, title: str) -> None:
    # SI suffixes (500k, 2M, 10G) read at a glance; plotly adds 2x and 5x ticks on a log axis
    # spanning less than a few decades (laptop runs), powers of ten only on longer ones.
    update = dict(title_text=title, type="log" if log else "linear", exponentformat="SI")
    (fig.update_xaxes if axis == "x" else fig.update_yaxes)(**update)


def _nice_log_ticks(lo: float, hi: float) -> np.ndarray:
    """Tick positions (log10 units) at 1, 2 and 5 times powers of ten within ``[lo, hi]``, or
    powers of ten only when there would be more than 8."""
    decades = np.arange(np.floor(lo), np.ceil(hi) + 1)
    ticks = np.log10(np.concatenate([m * 10.0 ** decades for m in (1, 2, 5)]))
    ticks = np.sort(ticks[(ticks >= lo - 1e-9) & (ticks <= hi + 1e-9)])
    if len(ticks) > 8:
        ticks = decades[(decades >= lo) & (decades <= hi)]
    return ticks if len(ticks) else np.array([lo, hi])


def format_si(value: float) -> str:
    """``value`` with an SI suffix and 3 significant digits: 2.25M, 512, 1.5k."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _axis_values(fig: go.Figure, axis: str) -> np.ndarray:
    """Finite values a figure places on ``axis`` (traces, heatmap cell edges, shapes)."""
    parts = []
    for trace in fig.data:
        values = getattr(trace, axis, None)
        if values is None:
            continue
        v = pd.to_numeric(pd.Series(np.asarray(values, dtype=object).ravel()), errors="coerce")
        v = v.to_numpy(dtype=np.float64)
        v = np.sort(v[np.isfinite(v) & (v > 0)])
        if trace.type == "heatmap" and len(v) > 1:  # log cells reach half a cell beyond
            lv = np.log10(v)
            v = 10 ** np.array([lv[0] - (lv[1] - lv[0]) / 2, lv[-1] + (lv[-1] - lv[-2]) / 2])
        parts.append(v)
    for shape in fig.layout.shapes or ():
        if getattr(shape, f"{axis}ref", None) == axis:
            parts.append(np.array([getattr(shape, f"{axis}0"), getattr(shape, f"{axis}1")],
                                  dtype=np.float64))
    v = np.concatenate(parts) if parts else np.array([])
    return v[np.isfinite(v) & (v > 0)]


def log_ticks(fig: go.Figure, axis: str = "x") -> go.Figure:
    """Label a log axis at 1, 2 and 5 times powers of ten with SI suffixes (200k, 1M, 5M).

    Plotly's own labels on a log axis spanning one or two decades are bare digits ("2 3 4 ...
    1M 2"), unreadable for training tokens. Ticks come from the axis range when one is set
    (e.g. shared across the report's columns), else from the figure's data. Returns ``fig``.
    """
    ax = getattr(fig.layout, f"{axis}axis")
    if ax.type != "log":
        return fig
    if ax.range is not None:
        lo, hi = (float(r) for r in ax.range)
    else:
        values = _axis_values(fig, axis)
        if not len(values):
            return fig
        lo, hi = float(np.log10(values.min())), float(np.log10(values.max()))
    ticks = _nice_log_ticks(lo, hi)
    (fig.update_xaxes if axis == "x" else fig.update_yaxes)(
        tickmode="array", tickvals=[float(10.0 ** t) for t in ticks],
        ticktext=[format_si(10.0 ** t) for t in ticks])
    return fig


# ============================================================================ input checks
def _check_frame(frame: Any, what: str, columns: Iterable[str] = (), hint: str = ""
                 ) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise PlotError(f"{what} needs a pandas DataFrame, got {type(frame).__name__}")
    if frame.empty:
        raise PlotError(f"{what}: the frame is empty{'; ' + hint if hint else ''}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PlotError(f"{what}: the frame has no column(s) {missing}"
                        f"{'; ' + hint if hint else ''}")
    return frame


def _metric_rows(frame: pd.DataFrame, metric: str, what: str, hint: str) -> pd.DataFrame:
    rows = frame[frame["metric"] == metric]
    if rows.empty:
        present = sorted(str(m) for m in frame["metric"].dropna().unique())
        raise PlotError(f"{what}: the frame has no '{metric}' rows (it has {present}); {hint}")
    return rows


def _run_names(frame: pd.DataFrame) -> list[str | None]:
    """Runs in order of appearance; ``[None]`` for a frame without run names."""
    if "run" not in frame.columns or not frame["run"].notna().any():
        return [None]
    return [str(r) for r in pd.unique(frame["run"].dropna())]


def _select_runs(frame: pd.DataFrame, run: str | Sequence[str] | None, what: str, *,
                 single: bool) -> tuple[pd.DataFrame, list[str | None]]:
    """Rows of the chosen run(s) and their names; one run only where ``single``."""
    runs = _run_names(frame)
    if run is None:
        if single and len(runs) > 1:
            raise PlotError(f"{what}: the frame holds runs {runs}; pass run= to pick one")
        return frame, runs
    wanted = [run] if isinstance(run, str) else list(run)
    unknown = [r for r in wanted if r not in runs]
    if unknown:
        raise PlotError(f"{what}: run(s) {unknown} not in the frame (runs: {runs})")
    if single and len(wanted) != 1:
        raise PlotError(f"{what} draws one run; pass run= a single name, not {wanted}")
    return frame[frame["run"].isin(wanted)], wanted


def _of_run(frame: pd.DataFrame, run: str | None) -> pd.DataFrame:
    if run is None or "run" not in frame.columns:
        return frame
    return frame[frame["run"] == run]


def _on_training_axis(rows: pd.DataFrame, log_x: bool, what: str) -> pd.DataFrame:
    rows = rows[rows["train_tokens"].notna()]
    if log_x:
        rows = rows[rows["train_tokens"] > 0]
    if rows.empty:
        raise PlotError(f"{what}: no checkpoint with a positive token count to place on the "
                        "training-tokens axis (pass log_x=False to keep step 0)")
    return rows


def _steps_at(rows: pd.DataFrame, step: int | None, what: str) -> pd.DataFrame:
    """Rows of checkpoint ``step`` (default: each run's newest)."""
    if "step" not in rows.columns or not rows["step"].notna().any():
        return rows
    if step is None:
        newest = rows.groupby(rows["run"].fillna("") if "run" in rows.columns
                              else np.zeros(len(rows)))["step"].transform("max")
        return rows[rows["step"] == newest]
    picked = rows[rows["step"] == step]
    if picked.empty:
        steps = sorted(int(s) for s in rows["step"].dropna().unique())
        raise PlotError(f"{what}: no checkpoint at step {step} (steps: {steps})")
    return picked


# ============================================================================ windows
def _windows(windows: Any, signal: str | None) -> list[dict[str, Any]]:
    """Phase-change windows as dicts ``run, signal, x0, x1`` (training tokens).

    ``windows`` is None, one :class:`~induction_lens.analysis.phases.PhaseWindow`, a list of them
    (all drawn: the caller chose them) or the :func:`~induction_lens.analysis.phases.phase_changes`
    frame (its detected rows, of ``signal`` only unless ``signal`` is None).
    """
    if windows is None:
        return []
    if isinstance(windows, pd.DataFrame):
        if windows.empty:
            return []
        needed = {"start_tokens", "end_tokens"}
        if not needed <= set(windows.columns):
            raise PlotError("windows: the frame has no start_tokens/end_tokens columns; pass "
                            "phases.phase_changes(frame) or a list of PhaseWindow")
        rows = windows
        if "detected" in rows.columns:
            rows = rows[rows["detected"].fillna(False).astype(bool)]
        if signal is not None and "signal" in rows.columns:
            rows = rows[rows["signal"] == signal]
        return [{"run": r.get("run"), "signal": r.get("signal"), "x0": float(r["start_tokens"]),
                 "x1": float(r["end_tokens"])} for _, r in rows.iterrows()]
    items = [windows] if hasattr(windows, "start_tokens") else list(windows)
    out = []
    for w in items:
        if w is None:
            continue
        if not (hasattr(w, "start_tokens") and hasattr(w, "end_tokens")):
            raise PlotError(f"windows must be PhaseWindow objects or the phase_changes frame, "
                            f"got {type(w).__name__}")
        out.append({"run": getattr(w, "run", None), "signal": getattr(w, "signal", None),
                    "x0": float(w.start_tokens), "x1": float(w.end_tokens)})
    return out


def _draw_windows(fig: go.Figure, windows: Any, runs: Sequence[str | None],
                  signal: str | None = "icl_score") -> None:
    """Shade each window of a plotted run (a legend entry per band)."""
    bands = [w for w in _windows(windows, signal)
             if w["run"] is None or None in runs or w["run"] in runs]
    several = len([r for r in runs if r is not None]) > 1
    for band in bands:
        colour = (run_colour(list(runs).index(band["run"]))
                  if several and band["run"] in runs else WINDOW_COLOUR)
        name = "phase change"  # of the ICL score, the paper's defining measurement
        if band["signal"] not in (None, "icl_score"):
            name += f" ({_SIGNAL_NAMES.get(band['signal'], band['signal'])})"
        if several and band["run"] is not None:
            name += f", {band['run']}"
        fig.add_shape(type="rect", xref="x", yref="paper", x0=band["x0"], x1=band["x1"],
                      y0=0, y1=1, fillcolor=colour, opacity=0.18, line_width=0, layer="below",
                      name=name, showlegend=True)


# ============================================================================ over training
def _run_lines(rows: pd.DataFrame, runs: Sequence[str | None], metric: str, *, what: str,
               title: str | None, windows: Any, log_x: bool, window_signal: str | None,
               height: int | None) -> go.Figure:
    fig = _figure(title, height=height)
    for i, run in enumerate(runs):
        sub = _of_run(rows, run).sort_values("step")
        if sub.empty:
            continue
        fig.add_trace(go.Scatter(
            x=sub["train_tokens"].astype(float), y=sub["value"].astype(float), mode="lines+markers",
            name=run or metric, line=dict(color=run_colour(i), width=2), marker=dict(size=4),
            customdata=np.stack([sub["step"].astype(float)], axis=-1),
            hovertemplate=(f"<b>{html.escape(run or metric)}</b><br>step %{{customdata[0]:,}}"
                           f"<br>tokens %{{x:,.0f}}<br>{html.escape(_label(metric))} "
                           "%{y:.4f}<extra></extra>")))
    _draw_windows(fig, windows, runs, window_signal)
    _log_axis(fig, "x", log_x, _TOKENS_TITLE)
    fig.update_yaxes(title_text=_label(metric))
    fig.update_layout(showlegend=len(fig.data) > 1 or bool(fig.layout.shapes))
    return log_ticks(fig, "x")


_COMPOSITION_KINDS = ("q_composition", "k_composition", "v_composition")


def _head_lines(fig: go.Figure, rows: pd.DataFrame, colour_of, name_of, group_of,
                label: str, run: str | None) -> None:
    shown: set[str] = set()
    for (layer, head), sub in rows.groupby(["layer", "head"], sort=True):
        sub = sub.sort_values("step")
        group = group_of(sub)
        fig.add_trace(go.Scatter(
            x=sub["train_tokens"].astype(float), y=sub["value"].astype(float), mode="lines",
            name=name_of(group), legendgroup=group, showlegend=group not in shown,
            line=dict(color=colour_of(sub), width=1.6),
            customdata=np.stack([sub["step"].astype(float)], axis=-1),
            hovertemplate=(f"<b>L{int(layer)}H{int(head)}</b>"
                           f"{' (' + html.escape(str(group)) + ')' if group else ''}"
                           f"{'<br>' + html.escape(run) if run else ''}"
                           "<br>step %{customdata[0]:,}<br>tokens %{x:,.0f}<br>"
                           f"{html.escape(label)} %{{y:.4f}}<extra></extra>")))
        shown.add(group)
