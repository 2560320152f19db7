"""Plotly figures of the paper's measurements: tidy DataFrame in, ``go.Figure`` out.

Every function here draws one panel of Olsson et al. 2022 ("In-context Learning and Induction
Heads"): a row of the Model Analysis Table, or a figure of Arguments 1-6. They only select and
reshape the frames the evaluators return (:mod:`induction_lens.evals`); every number is
computed there, so a figure can be redrawn from a cached parquet without a model.

Conventions shared by all figures:

* **Training time** is the x axis of every "over training" panel, in elapsed training tokens
  on a log axis, as in the paper's table (checkpoints with 0 tokens cannot sit on a log axis
  and are left out; pass ``log_x=False`` to keep them).
* **Losses** are in nats; the ICL score is a loss difference, also in nats.
* **Phase-change windows** (:class:`~induction_lens.evals.phases.PhaseWindow` objects or the
  :func:`~induction_lens.evals.phases.phase_changes` frame) are drawn as shaded bands, like the
  paper's orange band, and listed in the legend.
* Heads are coloured by layer depth (head-score panels) or by head type (ablation panels),
  as in the table's captions.
* One template (:data:`TEMPLATE`) and a default height of :data:`HEIGHT` pixels; the width
  follows the container (a Jupyter cell, a column of the HTML report).

Bad input (an empty frame, a missing metric, an unknown run) raises :class:`PlotError` with
a one-line message that names the fix.
"""

import html
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale

from induction_lens.evals.common import EvalError

__all__ = [
    "HEAD_TYPE_COLOURS",
    "HEIGHT",
    "METRIC_LABELS",
    "PlotError",
    "TEMPLATE",
    "ablation_attribution",
    "attention_pattern",
    "composition_heatmap",
    "copying_vs_prefix",
    "correlation_scatter",
    "head_score_curves",
    "icl_score_curve",
    "layer_colour",
    "log_ticks",
    "loss_curve",
    "loss_derivative_heatmap",
    "loss_heatmap",
    "pca_trajectories",
    "run_colour",
    "token_loss_diff",
]


class PlotError(EvalError):
    """A plotting function got a frame it cannot draw; the message names the input and the fix.

    An :class:`~induction_lens.evals.common.EvalError` (hence a ``ConfigError``), so the
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
    short = metric.removeprefix("ablation_pattern_").removeprefix("ablation_full_")
    return METRIC_LABELS.get(short, short.replace("_", " "))


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
    rows = rows[rows["tokens"].notna()]
    if log_x:
        rows = rows[rows["tokens"] > 0]
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

    ``windows`` is None, one :class:`~induction_lens.evals.phases.PhaseWindow`, a list of them
    (all drawn: the caller chose them) or the :func:`~induction_lens.evals.phases.phase_changes`
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
            x=sub["tokens"].astype(float), y=sub["value"].astype(float), mode="lines+markers",
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


def loss_curve(frame: pd.DataFrame, *, windows: Any = None, run: str | Sequence[str] | None = None,
               metric: str = "loss", log_x: bool = True, window_signal: str | None = "icl_score",
               title: str | None = "Loss over training", height: int | None = None) -> go.Figure:
    """Loss over training tokens, one line per run, the phase-change window shaded.

    Model Analysis Table, row "Loss over training": "Loss curve showing Loss(n_train) after the
    model is trained on n_train tokens [...] The orange band denotes phase change interval."
    The loss is the mean of the random-token-per-example vector (the sweep's ``loss`` rows,
    "Analyses": *Loss curve*). Argument 1 reads the phase change as a small bump of this curve.

    Args:
        frame: a tidy sweep frame (:func:`~induction_lens.evals.sweep.evaluate_run`) with
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
    _check_frame(frame, what, ("metric", "value", "tokens", "step"),
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
    (:func:`~induction_lens.evals.losses.icl_indices`).

    Args:
        frame: a tidy sweep frame with ``icl_score`` rows (metric "losses").
        windows, run, log_x, window_signal, title, height: see :func:`loss_curve`.
    """
    what = "icl_score_curve"
    _check_frame(frame, what, ("metric", "value", "tokens", "step"),
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
    return rows.pivot_table(index="position", columns="tokens", values="value", aggfunc="first",
                            dropna=False).sort_index().sort_index(axis=1)


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
            output of :func:`~induction_lens.evals.losses.loss_by_context`.
        run: which run, when the frame holds several.
        log_x: training tokens on a log axis (drops a 0-token checkpoint).
        log_y: context index on a log axis.
        title, height: see :func:`loss_curve`.
    """
    what = "loss_heatmap"
    _check_frame(frame, what, ("value", "tokens", "position"),
                 "pass the frame evaluate_run returns (metric 'losses')")
    rows = (_metric_rows(frame, "loss_by_position", what,
                         "evaluate the run with the 'losses' metric")
            if "metric" in frame.columns else frame)
    rows, runs = _select_runs(rows, run, what, single=True)
    table = _heatmap_table(rows, what, log_x)
    steps = rows.groupby("tokens")["step"].first() if "step" in rows.columns else \
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
        frame: the output of :func:`~induction_lens.evals.losses.loss_log_derivative`
            (``run, step, tokens, position, value``).
        run: which run, when the frame holds several.
        log_x, log_y: log axes (see :func:`loss_heatmap`).
        clip_quantile: the colour range is ``+-`` this quantile of ``|value|`` so that the noisy
            first context indices do not wash out the rest (None: the full range). Values
            beyond it keep their true number in the hover text.
        title, height: see :func:`loss_curve`.
    """
    what = "loss_derivative_heatmap"
    _check_frame(frame, what, ("value", "tokens", "position"),
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
    steps = rows.groupby("tokens")["step"].first() if "step" in rows.columns else \
        pd.Series(np.nan, index=table.columns)
    fig = _training_heatmap(table, steps, title=title, colorbar="d loss / d ln i (nats)",
                            log_x=log_x, log_y=log_y, height=height, zlim=zlim,
                            colorscale="RdBu_r")
    if runs[0] is not None and title:
        fig.update_layout(title_text=f"{title}: {runs[0]}")
    return fig


def _head_lines(fig: go.Figure, rows: pd.DataFrame, colour_of, name_of, group_of,
                label: str, run: str | None) -> None:
    shown: set[str] = set()
    for (layer, head), sub in rows.groupby(["layer", "head"], sort=True):
        sub = sub.sort_values("step")
        group = group_of(sub)
        fig.add_trace(go.Scatter(
            x=sub["tokens"].astype(float), y=sub["value"].astype(float), mode="lines",
            name=name_of(group), legendgroup=group, showlegend=group not in shown,
            line=dict(color=colour_of(sub), width=1.6),
            customdata=np.stack([sub["step"].astype(float)], axis=-1),
            hovertemplate=(f"<b>L{int(layer)}H{int(head)}</b>"
                           f"{' (' + html.escape(str(group)) + ')' if group else ''}"
                           f"{'<br>' + html.escape(run) if run else ''}"
                           "<br>step %{customdata[0]:,}<br>tokens %{x:,.0f}<br>"
                           f"{html.escape(label)} %{{y:.4f}}<extra></extra>")))
        shown.add(group)


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
    _check_frame(frame, what, ("metric", "value", "tokens", "step", "layer", "head"),
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


def _ablation_metric(metric: str, kind: str) -> str:
    return metric if metric.startswith("ablation_") else f"ablation_{kind}_{metric}"


def ablation_attribution(frame: pd.DataFrame, *, metric: str = "icl_score_delta",
                         kind: str = "pattern", run: str | None = None,
                         types: pd.DataFrame | None = None, windows: Any = None,
                         log_x: bool = True, window_signal: str | None = "icl_score",
                         title: str | None = None, height: int | None = None) -> go.Figure:
    """Per-head ablation attributions over training, coloured by head type.

    Model Analysis Table, rows "Ablation to 'before-and-after' vector" (``metric=
    "before_after_projection"``: "the projection of the observed per-token loss differences
    when ablating an attention head onto the difference in per-token losses before and after
    the bump"; negative for induction heads) and "Ablation attribution to 'in-context learning
    score'" (``metric="icl_score_delta"``: "the change in the in-context learning score
    observed when ablating each attention head"; positive for induction heads, whose removal
    undoes in-context learning). "Heads are colored by type: previous token; induction; other."
    Argument 3.

    Args:
        frame: the frame of :func:`~induction_lens.evals.ablations.ablate_run`, with a
            ``head_type`` column (``ablations.with_head_types(frame, head_types(hub, run))``),
            or pass ``types``.
        metric: a report name of :data:`induction_lens.evals.ablations.METRICS`
            (``icl_score_delta``, ``before_after_projection``, ``random_token_loss_delta``) or
            a full metric name ``ablation_{kind}_{name}``.
        kind: "pattern" (pattern-preserving, the paper's table) or "full".
        run: which run, when the frame holds several.
        types: head types (``layer, head, head_type``) to join when ``frame`` has none.
        windows, log_x, window_signal, height: see :func:`loss_curve`.
        title: default: the metric's name.
    """
    what = "ablation_attribution"
    _check_frame(frame, what, ("metric", "value", "tokens", "step", "layer", "head"),
                 "pass the frame ablations.ablate_run returns")
    full = _ablation_metric(metric, kind)
    rows = _metric_rows(frame, full, what,
                        "before_after_projection needs a detected phase-change window"
                        if full.endswith("before_after_projection") else
                        f"run ablations.ablate_run(hub, run, kind={kind!r})")
    rows, runs = _select_runs(rows, run, what, single=True)
    rows = rows[rows["layer"].notna() & rows["head"].notna()]
    if types is not None:
        _check_frame(types, f"{what} types", ("layer", "head", "head_type"),
                     "pass ablations.head_types(hub, run)")
        right = types[["layer", "head", "head_type"]].astype({"layer": "Int64", "head": "Int64"})
        rows = rows.drop(columns=["head_type"], errors="ignore").astype(
            {"layer": "Int64", "head": "Int64"}).merge(right, on=["layer", "head"], how="left")
    if "head_type" not in rows.columns:
        raise PlotError(f"{what}: the frame has no head_type column; join head types with "
                        "ablations.with_head_types(frame, ablations.head_types(hub, run)) or "
                        "pass types=")
    rows = rows.assign(head_type=rows["head_type"].fillna("other").astype(str))
    unknown = sorted(set(rows["head_type"]) - set(HEAD_TYPE_COLOURS))
    if unknown:
        raise PlotError(f"{what}: unknown head type(s) {unknown}; expected "
                        f"{sorted(HEAD_TYPE_COLOURS)}")
    rows = _on_training_axis(rows, log_x, what)
    default = {"icl_score_delta": "Ablation attribution to ICL score",
               "before_after_projection": "Ablation to before-and-after vector"}
    short = full.split("_", 2)[2] if full.count("_") >= 2 else full
    fig = _figure(default.get(short, _label(full)) if title is None else title, height=height)
    # Induction heads drawn last so that they lie on top of the grey "other" heads.
    order = {"other": 0, "previous_token": 1, "induction": 2}
    rows = rows.assign(_order=rows["head_type"].map(order)).sort_values(
        ["_order", "layer", "head", "step"])
    for head_type in sorted(set(rows["head_type"]), key=order.get):
        _head_lines(fig, rows[rows["head_type"] == head_type],
                    colour_of=lambda sub: HEAD_TYPE_COLOURS[sub["head_type"].iloc[0]],
                    name_of=lambda group: _HEAD_TYPE_NAMES[group],
                    group_of=lambda sub: sub["head_type"].iloc[0],
                    label=_label(full), run=runs[0])
    fig.add_hline(y=0, line=dict(color="#9aa3b2", width=1, dash="dot"))
    _draw_windows(fig, windows, runs, window_signal)
    _log_axis(fig, "x", log_x, _TOKENS_TITLE)
    fig.update_yaxes(title_text=_label(full))
    return log_ticks(fig, "x")


# ============================================================================ PCA
def pca_trajectories(pca_frame: pd.DataFrame, *, highlight: str | Sequence[str] | None = None,
                     components: tuple[int, int] = (1, 2),
                     title: str | None = "PCA of token losses",
                     height: int | None = None) -> go.Figure:
    """Trajectories of several runs through per-token-loss space, in one shared PCA basis.

    Model Analysis Table, top row "PCA of token losses": "We take 10,000 individual token
    predictions per model, and project them onto the first two principal components. This
    shows how the large-scale behavior of multiple networks evolve over training." All runs
    share the basis (:func:`~induction_lens.evals.losses.per_token_loss_pca`), so a pivot
    common to the multi-layer models (Argument 1) shows as their trajectories turning together.
    Each run is a line; its markers are coloured by training time (log tokens).

    Args:
        pca_frame: the output of :func:`~induction_lens.evals.losses.per_token_loss_pca`
            (``run, step, tokens, pc1, pc2, ...``).
        highlight: run(s) drawn in colour; the others are drawn thin and grey for context
            (default: every run in colour). The report highlights one run per column.
        components: which two components to draw (1-based).
        title, height: see :func:`loss_curve`.
    """
    what = "pca_trajectories"
    a, b = components
    cols = [f"pc{a}", f"pc{b}"]
    _check_frame(pca_frame, what, ["step", "tokens", *cols],
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
    tokens = pca_frame["tokens"].astype(float)
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
        sub_log = np.log10(np.maximum(sub["tokens"].astype(float).to_numpy(), floor))
        custom = np.stack([sub["step"].astype(float), sub["tokens"].astype(float)], axis=-1)
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


# ============================================================================ heads at one step
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
    keys = [c for c in ("run", "step", "tokens") if c in rows.columns and rows[c].notna().any()]
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
    :func:`~induction_lens.evals.heads.classify_heads`. Markers are coloured by layer depth;
    several runs get different symbols.

    Args:
        frame: a tidy sweep frame with ``prefix_matching`` and ``copying`` rows (or a wide
            frame with those columns, e.g. ``classify_heads`` output).
        step: the checkpoint (default: each run's newest).
        run: run(s) to draw (default: all).
        thresholds: draw the classification thresholds.
        title, height: see :func:`loss_curve`.
    """
    from induction_lens.evals.heads import COPYING_THRESHOLD, PREFIX_MATCHING_THRESHOLD

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
            :func:`~induction_lens.evals.circuits.spearman`).
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
        from induction_lens.evals.circuits import spearman

        coefficient = spearman(wide[x], wide[y])
    symbols = ("circle", "diamond", "square", "triangle-up", "cross", "x", "star", "hexagon")
    has_tokens = "tokens" in wide.columns and wide["tokens"].notna().any()
    fig = _figure(f"{_label(y)} vs {_label(x)}" if title is None else title, height=height)
    tok = wide["tokens"].astype(float) if has_tokens else pd.Series(1.0, index=wide.index)
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


# ============================================================================ circuits
_COMPOSITION_KINDS = ("q_composition", "k_composition", "v_composition")


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


# ============================================================================ one text
def attention_pattern(pattern: Any, tokens: Sequence[str] | None = None, *,
                      title: str | None = None, height: int | None = None) -> go.Figure:
    """A head's attention pattern on one text: query position (rows) by key position.

    The paper's attention figures (Argument 4, "Looking at the Phase Change More Closely"):
    an induction head's query on a repeated token attends to the token after the earlier copy,
    a stripe just after the diagonal of each earlier repeat.

    Args:
        pattern: ``[query_pos, key_pos]`` weights: a numpy array, a torch tensor (e.g.
            ``cache["pattern", layer][0, head]``) or a tidy frame with columns
            ``query``/``query_pos``, ``key``/``key_pos`` and ``value``.
        tokens: the text's tokens as strings (one per key position), shown on the axes (when
            they fit) and in the hover text.
        title, height: see :func:`loss_curve`.
    """
    what = "attention_pattern"
    if isinstance(pattern, pd.DataFrame):
        _check_frame(pattern, what, ("value",), "pass columns query_pos, key_pos and value")
        q = "query_pos" if "query_pos" in pattern.columns else "query"
        k = "key_pos" if "key_pos" in pattern.columns else "key"
        if q not in pattern.columns or k not in pattern.columns:
            raise PlotError(f"{what}: the frame needs query_pos (or query) and key_pos (or key) "
                            "columns")
        matrix = pattern.pivot_table(index=q, columns=k, values="value", aggfunc="first")
        n_q, n_k = int(matrix.index.max()) + 1, int(matrix.columns.max()) + 1
        matrix = matrix.reindex(index=range(n_q), columns=range(n_k))
        z = matrix.to_numpy(dtype=np.float64)
    else:
        if hasattr(pattern, "detach"):
            pattern = pattern.detach().float().cpu().numpy()
        z = np.asarray(pattern, dtype=np.float64)
        if z.ndim != 2:
            raise PlotError(f"{what} needs one head's [query_pos, key_pos] pattern, got shape "
                            f"{z.shape}; index it, e.g. cache['pattern', layer][0, head]")
    if z.size == 0:
        raise PlotError(f"{what}: the pattern is empty")
    n_q, n_k = z.shape
    if tokens is not None:
        tokens = [str(t) for t in tokens]
        if len(tokens) != n_k:
            raise PlotError(f"{what}: {len(tokens)} tokens for a pattern with {n_k} key "
                            "positions; pass one token per position")
    names = tokens if tokens is not None else [""] * n_k
    shown = [html.escape(t) for t in names]
    custom = np.empty((n_q, n_k, 2), dtype=object)
    for i in range(n_q):
        for j in range(n_k):
            custom[i, j, 0] = shown[i] if i < n_k else ""
            custom[i, j, 1] = shown[j]
    fig = _figure(title or "Attention pattern", height=height or max(HEIGHT, min(900, 14 * n_q)))
    fig.add_trace(go.Heatmap(
        z=z, x=np.arange(n_k), y=np.arange(n_q), customdata=custom, colorscale="Blues",
        zmin=0, zmax=max(1.0, float(np.nanmax(z))) if np.isfinite(z).any() else 1.0,
        colorbar=dict(title=dict(side="right", text="attention"), thickness=12),
        hoverongaps=False,
        hovertemplate=("query %{y} %{customdata[0]}<br>key %{x} %{customdata[1]}<br>"
                       "attention %{z:.3f}<extra></extra>")))
    if tokens is not None and n_k <= 48:
        ticks = dict(tickmode="array", tickvals=list(range(n_k)),
                     ticktext=[f"{t}" for t in shown], tickfont=dict(size=9))
        fig.update_xaxes(**ticks, tickangle=-60)
        fig.update_yaxes(tickmode="array", tickvals=list(range(n_q)),
                         ticktext=[shown[i] if i < n_k else str(i) for i in range(n_q)],
                         tickfont=dict(size=9))
    fig.update_xaxes(title_text="key position", showgrid=False)
    fig.update_yaxes(title_text="query position", autorange="reversed", showgrid=False,
                     scaleanchor="x", scaleratio=1, constrain="domain")
    fig.update_xaxes(constrain="domain")
    return fig


def _display_token(token: str) -> str:
    text = html.escape(str(token)).replace("\n", "↵").replace("\t", "→")
    return text.replace(" ", "\u00a0") or "\u00a0"


def token_loss_diff(diff_frame: pd.DataFrame, *, tokens_per_line: int = 16,
                    title: str | None = "Per-token loss change (after − before)",
                    height: int | None = None) -> go.Figure:
    """A text with each token coloured by its loss change between two snapshots.

    The paper's "B - A per-token losses on Harry Potter" ("Looking at the Phase Change More
    Closely"): blue tokens got easier after the phase change (typically the second occurrence
    of repeated text, which induction heads can copy), red ones harder. Tokens are laid out as
    text, ``tokens_per_line`` a line and a new line after each newline token; the hover shows
    both losses and the difference.

    Args:
        diff_frame: the output of :func:`~induction_lens.evals.losses.token_loss_diff`
            (``position, token_id, token, loss_before, loss_after, diff``).
        tokens_per_line: tokens per line of the layout.
        title, height: see :func:`loss_curve` (default height: from the number of lines).
    """
    what = "token_loss_diff"
    _check_frame(diff_frame, what, ("position", "token", "loss_before", "loss_after", "diff"),
                 "pass losses.token_loss_diff(before, after, text)")
    if not isinstance(tokens_per_line, int) or tokens_per_line < 1:
        raise PlotError(f"{what}: tokens_per_line={tokens_per_line!r} must be a positive integer")
    frame = diff_frame.sort_values("position").reset_index(drop=True)
    cells: list[list[int | None]] = [[]]
    for i, token in enumerate(frame["token"].astype(str)):
        if len(cells[-1]) >= tokens_per_line:
            cells.append([])
        cells[-1].append(i)
        if "\n" in token:
            cells.append([])
    if not cells[-1]:
        cells.pop()
    n_rows = len(cells)
    z = np.full((n_rows, tokens_per_line), np.nan)
    text = np.full((n_rows, tokens_per_line), "", dtype=object)
    custom = np.full((n_rows, tokens_per_line, 4), None, dtype=object)
    diff = frame["diff"].astype(float).to_numpy()
    for r, line in enumerate(cells):
        for c, i in enumerate(line):
            z[r, c] = diff[i]
            text[r, c] = _display_token(frame.at[i, "token"])
            custom[r, c] = [int(frame.at[i, "position"]), float(frame.at[i, "loss_before"]),
                            float(frame.at[i, "loss_after"]), text[r, c]]
    finite = np.abs(diff[np.isfinite(diff)])
    top = float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
    fig = _figure(title, height=height or max(200, 90 + 26 * n_rows))
    fig.add_trace(go.Heatmap(
        z=z, text=text, texttemplate="%{text}", textfont=dict(size=11), customdata=custom,
        colorscale="RdBu_r", zmid=0, zmin=-top, zmax=top, xgap=2, ygap=2, hoverongaps=False,
        colorbar=dict(title=dict(side="right", text="Δ loss (nats)"), thickness=12),
        hovertemplate=("<b>%{customdata[3]}</b> (context index %{customdata[0]})<br>"
                       "before %{customdata[1]:.3f} nats<br>after %{customdata[2]:.3f} nats<br>"
                       "after − before %{z:+.3f} nats<extra></extra>")))
    fig.update_xaxes(visible=False, showgrid=False)
    fig.update_yaxes(visible=False, showgrid=False, autorange="reversed")
    fig.update_layout(margin=dict(l=10, r=10))
    return fig
