"""The HTML Model Analysis Table: one self-contained page, a row per measurement, a column per run.

Olsson et al. 2022 summarise every model they trained in the "Model Analysis Table": for each
model (a column) the PCA of token losses, the loss curve with the phase-change band, the loss
by context index and its log derivative, the in-context-learning score, the prefix-matching
score and QK-eigenvalue trace of every head, and the two ablation attributions. The arguments
of the paper are read off that table. :func:`build_report` draws the same table for runs of a
local hub.

What it computes and what it reuses. Measurements come from the cached sweeps: the per-token
losses, the head evaluators and the QK trace through
:func:`~induction_lens.runs.evaluate.evaluate_run` (``RUN/evals/{metric}.parquet``), the
ablations through :func:`~induction_lens.runs.ablate_run` (the ``ablation_{kind}`` metric,
cached the same way). A first build evaluates what is missing; a second
build of the same runs only reads parquet files and draws. Phase-change windows come from
:func:`~induction_lens.analysis.phases.phase_changes` (the shaded band is the ICL-score window, the
paper's defining measurement); head types for the ablation colours from
:func:`~induction_lens.analysis.classify_heads` on the sweep's scores at each run's newest
checkpoint (what :func:`~induction_lens.runs.head_types` computes, without loading the model
again).

Level: ``viz`` (reads runs through ``runs``; prints nothing: ``induction-lens report`` is in
:mod:`induction_lens.cli`).

Reddy 2023 runs (in-context classification, :mod:`induction_lens.models.reddy`) have no language
losses or induction heads to measure; a report of Reddy runs draws its own rows instead
(:data:`REDDY_ROWS`, chosen by the runs' task: IC / IC2 / IW accuracy and the progress measures
over training, the IC transition shaded), from the cached ``reddy`` metric. One report holds
runs of one task.

The page embeds plotly.js once, inline, so it opens offline and from a file; each figure is a
``<div class="plotly-graph-div">`` drawn by its own small script. Within a row, the panels share
their axis ranges (and colour ranges) so that columns compare at a glance, as in the paper.
"""

import dataclasses
import datetime as dt
import html
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from induction_lens import viz as plots
from induction_lens._version import __version__
from induction_lens.analysis.heads import classify_heads
from induction_lens.analysis.losses import loss_log_derivative, per_token_loss_pca
from induction_lens.analysis.phases import phase_changes
from induction_lens.errors import EvalError
from induction_lens.hub import Hub
from induction_lens.io import atomic_write_bytes, git_hash
from induction_lens.runs.ablations import ablate_run, ablation_path, with_head_types
from induction_lens.runs.evaluate import evaluate_run
from induction_lens.viz._common import _axis_values

logger = logging.getLogger(__name__)

__all__ = [
    "REDDY_ROWS",
    "REPORT_METRICS",
    "Report",
    "ReportError",
    "build_report",
    "render_report",
]

REPORT_METRICS: tuple[str, ...] = ("losses", "prefix_matching", "copying", "previous_token",
                                   "qk_trace")
"""Sweep metrics the table needs (``copying``/``previous_token`` classify the heads)."""

AblationMode = Literal["auto", "yes", "no"]

FIGURE_HEIGHT = 300
"""Height of each panel in pixels."""


class ReportError(EvalError):
    """The report cannot be built for these inputs; the message names the fix."""


# ============================================================================ the rows
@dataclass(frozen=True)
class Row:
    """One row of the table: a measurement drawn once per run."""

    key: str
    """Stable identifier (used in element ids)."""
    title: str
    """Row label, the paper's."""
    caption: str
    """What the panel shows, quoted or paraphrased from the paper, and what differs here."""
    cite: str
    """Where in the paper the row is defined."""
    section: str
    """The table's group: "PCA", "Models over training", "Attention heads over training" or
    "Ablations"."""
    draw: Callable[["_RunData", "_Context"], go.Figure]
    """Draws the panel of one run; a :class:`~induction_lens.viz.PlotError` becomes a
    written note in the cell (e.g. the QK trace of a one-layer model)."""
    share: tuple[str, ...] = ("x", "y")
    """Axes (``x``, ``y``, ``z`` for heatmap colours) whose range is shared along the row."""


@dataclass
class _RunData:
    run: str
    frame: pd.DataFrame
    windows: pd.DataFrame
    ablations: pd.DataFrame | None
    summary: dict[str, Any]
    span: tuple[float, float] | bool = False
    """Reddy runs: the IC transition ``(start_step, end_step)`` to shade, or False."""


@dataclass
class _Context:
    pca: pd.DataFrame | None
    pca_note: str | None
    kind: str


def _no_title(fig: go.Figure) -> go.Figure:
    # Legend above the plot (below it, it collides with the axis title in a short panel).
    fig.update_layout(title=None, height=FIGURE_HEIGHT, margin=dict(l=55, r=15, t=40, b=40),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0,
                                  xanchor="left", font=dict(size=10), bgcolor="rgba(0,0,0,0)"))
    return fig


def _draw_pca(data: _RunData, ctx: _Context) -> go.Figure:
    if ctx.pca is None:
        raise plots.PlotError(ctx.pca_note or "no PCA")
    fig = plots.pca_trajectories(ctx.pca, highlight=data.run, title=None)
    return _no_title(fig).update_layout(showlegend=False)


def _draw_loss(data: _RunData, ctx: _Context) -> go.Figure:
    return _no_title(plots.loss_curve(data.frame, windows=data.windows, title=None))


def _draw_heatmap(data: _RunData, ctx: _Context) -> go.Figure:
    return _no_title(plots.loss_heatmap(data.frame, title=None))


def _draw_derivative(data: _RunData, ctx: _Context) -> go.Figure:

    return _no_title(plots.loss_derivative_heatmap(loss_log_derivative(data.frame), title=None))


def _draw_icl(data: _RunData, ctx: _Context) -> go.Figure:
    return _no_title(plots.icl_score_curve(data.frame, windows=data.windows, title=None))


def _draw_prefix(data: _RunData, ctx: _Context) -> go.Figure:
    return _no_title(plots.head_score_curves(data.frame, metric="prefix_matching",
                                             windows=data.windows, title=None))


def _draw_qk(data: _RunData, ctx: _Context) -> go.Figure:
    metric = "qk_trace"
    if data.summary["n_layers"] < 2:
        if not (data.summary["smeared"] and (data.frame["metric"] == "qk_smear_trace").any()):
            raise plots.PlotError("Only defined for models more than one layer deep (the trace "
                                  "needs an earlier head to K-compose with).")
        metric = "qk_smear_trace"  # the smeared key's own previous-token term
    return _no_title(plots.head_score_curves(data.frame, metric=metric,
                                             windows=data.windows, title=None))


def _draw_ablation(name: str) -> Callable[[_RunData, _Context], go.Figure]:
    def draw(data: _RunData, ctx: _Context) -> go.Figure:
        if data.ablations is None:
            raise plots.PlotError("no ablations of this run in the hub (build with "
                                  "--ablations yes, or run `induction-lens ablate`)")
        rows = data.ablations[data.ablations["kind"] == ctx.kind]
        if name == "before_after_projection" and not (rows["metric"] == name).any():
            raise plots.PlotError("no before-and-after vector: no phase change was detected in "
                                  "this run's ICL score, so there is no window to take it over")
        return _no_title(plots.ablation_attribution(data.ablations, metric=name,
                                                    windows=data.windows, title=None))
    return draw


_LOSS_NOTE = ("Losses are in nats on the run's held-out evaluation set ({n_examples} examples "
              "of {n_ctx} tokens; the paper: 10,000 of 512).")

ROWS: tuple[Row, ...] = (
    Row("pca", "PCA of token losses",
        "Each snapshot's vector of per-token losses (one random token per example) projected on "
        "the first two principal components of all snapshots of all runs shown, in one shared "
        "basis. The highlighted run is coloured by training tokens; the others are grey. The "
        "paper sees every multi-layer model pivot at the phase change.",
        "Model Analysis Table, row \"PCA of token losses\"; Analyses, Per-token losses, PCA",
        "PCA", _draw_pca),
    Row("loss", "Loss over training",
        "Loss(n_train): the mean of the random-token-per-example losses after n_train training "
        "tokens. The orange band is the detected phase-change window of the ICL score (the "
        "paper: \"the orange band denotes phase change interval\"); the paper sees a small "
        "bump of the loss curve there.",
        "Model Analysis Table, row \"Loss over training\"; Analyses, Loss curve",
        "Models over training", _draw_loss),
    Row("heatmap", "Loss over training, by context index",
        "Loss(n_train, i_ctx), the average loss of the token at context index i_ctx after "
        "n_train training tokens (both axes logarithmic). Later tokens becoming abruptly easier "
        "is in-context learning appearing.",
        "Model Analysis Table, row \"Loss over training, broken down by context index\"; "
        "Analyses, 2D in-context learning plot",
        "Models over training", _draw_heatmap, share=("x", "y", "z")),
    Row("derivative", "Derivative of loss wrt context index",
        "d Loss(n_train, i_ctx) / d ln(i_ctx): how much a token's loss falls with e% more "
        "context (blue: more context helps). Unsmoothed, so the densely spaced late indices are "
        "noisy; the colour range is clipped at the 98th percentile of |value|.",
        "Model Analysis Table, row \"Derivative of loss wrt context index\"; Analyses, 2D loss "
        "derivative plot",
        "Models over training", _draw_derivative, share=("x", "y", "z")),
    Row("icl", "In-context learning score",
        "Loss at a late context index minus loss at an early one (the paper: token 500 minus "
        "token 50 of 512; here {early} and {late} of {n_ctx}, the same places in the context). "
        "Negative: later tokens are predicted better. The paper: it drops abruptly in the "
        "phase change, to about -0.4 nats, for every model with more than one layer.",
        "Model Analysis Table, row \"In-context learning score\"; Key Concepts",
        "Models over training", _draw_icl),
    Row("prefix", "Prefix matching score",
        "Each line is an attention head: the average fraction of its attention given to the "
        "token an induction head would attend to (the token after an earlier copy of the "
        "present token) on repeated random tokens. Heads are coloured by layer depth, dark "
        "(early) to green (late).",
        "Model Analysis Table, row \"Prefix matching score\"; Appendix, head activation "
        "evaluators",
        "Attention heads over training", _draw_prefix),
    Row("qk", "Trace of QK eigenvalues",
        "Each line is a head: the trace of its QK circuit's K-composition term with the earlier "
        "heads, weighted by how previous-token-like each earlier head is. Only defined for "
        "heads in the second layer and beyond. Coloured by layer depth. For a one-layer "
        "smeared-key model the panel shows instead the smeared key's own previous-token term "
        "(qk_smear_trace, an extension: the paper defines no QK measure there).",
        "Model Analysis Table, row \"Trace of QK eigenvalues\"; Appendix, (4) Trace of QK "
        "eigenvalues",
        "Attention heads over training", _draw_qk),
    Row("ablation_before_after", "Ablation to \"before-and-after\" vector",
        "Each line is a head: the projection of the change in per-token losses when the head "
        "is ablated (pattern-preserving) on the unit vector of the change in per-token losses "
        "across the phase-change window. Negative: removing the head undoes the phase change "
        "(the paper: induction heads). Coloured by head type: previous token, induction, other.",
        "Model Analysis Table, row \"Ablation to 'before-and-after' vector\"; Analyses, "
        "Ablation attribution to phase change",
        "Ablations", _draw_ablation("before_after_projection")),
    Row("ablation_icl", "Ablation attribution to \"in-context learning score\"",
        "Each line is a head: the change in the ICL score when the head is ablated "
        "(pattern-preserving). Positive: the head carries in-context learning (the paper: "
        "induction heads). Coloured by head type: previous token, induction, other.",
        "Model Analysis Table, row \"Ablation attribution to 'in-context learning score'\"; "
        "Analyses, Ablation attribution to phase change",
        "Ablations", _draw_ablation("icl_score_delta")),
)
"""The table's rows, top to bottom, in the paper's order."""


def _draw_reddy_accuracy(data: _RunData, ctx: _Context) -> go.Figure:
    return _no_title(plots.reddy_training_curves(data.frame, measures=(), window=data.span,
                                                 title=None))


def _draw_reddy_progress(data: _RunData, ctx: _Context) -> go.Figure:
    return _no_title(plots.reddy_training_curves(data.frame, accuracies=(), window=data.span,
                                                 title=None))


REDDY_ROWS: tuple[Row, ...] = (
    Row("reddy_accuracy", "Accuracy over training",
        "Accuracy of the query's label on the test sets: IC (novel classes in bursty "
        "sequences: in-context learning only), IC2 (known classes with every label shifted: "
        "in-context evidence must override the memorised label) and IW (B = 0: the query's "
        "class is usually absent from the context: in-weights learning), each on {n_examples} "
        "sequences. The orange band is the detected transition of IC accuracy (our detector, "
        "the package's change-point definition; the paper reads it by eye).",
        "Reddy 2023 (arXiv 2312.03002), section 3, dynamics figure",
        "Accuracy over training", _draw_reddy_accuracy),
    Row("reddy_progress", "Progress measures",
        "ILA1, TILA2, TLA2 and CLA (our reading of the paper's attention-based progress "
        "measures, see induction_lens.measures.reddy): the paper sees them jump in the same "
        "window as IC accuracy.",
        "Reddy 2023 (arXiv 2312.03002), section 3, progress measures",
        "Accuracy over training", _draw_reddy_progress),
)
"""The rows of a report of Reddy 2023 runs."""


# ============================================================================ data
def _check_runs(hub: Hub, runs: Sequence[str] | str) -> list[str]:
    runs = [runs] if isinstance(runs, str) else list(runs)
    if not runs:
        raise ReportError("build_report needs at least one run; pass runs=[...] (--runs R1 R2)")
    dupes = sorted({r for r in runs if runs.count(r) > 1})
    if dupes:
        raise ReportError(f"runs {dupes} are listed more than once")
    known = hub.runs()
    unknown = [r for r in runs if r not in known]
    if unknown:
        raise ReportError(f"run(s) {unknown} not in hub {hub.root} (runs: {known})")
    for run in runs:
        if not hub.manifest(run):
            raise ReportError(f"run {run!r} has no complete checkpoint yet")
    return runs


def _task_of(hub: Hub, runs: list[str]) -> Literal["language", "reddy"]:
    kinds = {run: "reddy" if hub.config(run).is_reddy else "language" for run in runs}
    if len(set(kinds.values())) > 1:
        reddy = [r for r, k in kinds.items() if k == "reddy"]
        raise ReportError(f"runs {reddy} are Reddy 2023 runs and the others language models; "
                          "their tables have different rows: build one report per kind")
    return "reddy" if "reddy" in kinds.values() else "language"


def _model_summary(hub: Hub, run: str) -> dict[str, Any]:
    cfg = hub.config(run)
    m = cfg.model
    entries = hub.manifest(run)
    if cfg.is_reddy:
        task = cfg.data
        return {
            "preset": cfg.preset,
            "architecture": f"Reddy 2023 network: {m.n_layers} attention layers of one head, "
                            f"{m.n_mlp_layers}-layer ReLU classifier of width {m.mlp_width}",
            "shape": f"d_model {m.d_model}, {m.n_labels} labels",
            "data": f"reddy K={task.K} L={task.L} N={task.N} B={task.B} eps={task.eps} "
                    f"alpha={task.alpha} p_B={task.p_B} p_C={task.p_C}",
            "checkpoints": len(entries), "last_step": entries[-1].step,
            "last_tokens": entries[-1].tokens, "n_ctx": m.n_ctx, "n_layers": m.n_layers,
            "smeared": False, "data_key": task.to_dict(),
        }
    parts = [f"{m.n_layers} layer{'s' if m.n_layers != 1 else ''}",
             "attention-only" if m.attn_only else "with MLPs"]
    if m.smeared_keys:
        parts.append("smeared keys")
    return {
        "preset": cfg.preset,
        "architecture": ", ".join(parts),
        "shape": f"d_model {m.d_model}, {m.n_heads} heads x {m.d_head}, context {m.n_ctx}, "
                 f"vocab {m.d_vocab}",
        "data": cfg.data.source if hasattr(cfg.data, "source") else str(cfg.data),
        "checkpoints": len(entries),
        "last_step": entries[-1].step,
        "last_tokens": entries[-1].tokens,
        "n_ctx": m.n_ctx,
        "n_layers": m.n_layers,
        "smeared": bool(m.smeared_keys),
        "data_key": cfg.data.to_dict() if hasattr(cfg.data, "to_dict") else str(cfg.data),
    }


def _head_types(frame: pd.DataFrame) -> pd.DataFrame | None:
    newest = frame[frame["step"] == frame["step"].max()]
    heads = newest[newest["metric"].isin(["prefix_matching", "copying", "previous_token"])
                   & newest["layer"].notna()]
    if heads.empty:
        return None
    return classify_heads(heads.drop(columns=["run", "step", "train_tokens"]))


def _ablations(hub: Hub, run: str, mode: AblationMode, kind: str, every: int, settings: Any,
               device: Any, progress: bool, frame: pd.DataFrame) -> pd.DataFrame | None:
    if mode == "no" or (mode == "auto" and not ablation_path(hub, run, kind).is_file()):
        return None
    # "auto" uses the run's cached ablations (completing checkpoints the cache lacks).
    result = ablate_run(hub, run, kind, every=every, settings=settings, device=device,
                        progress=progress)
    types = _head_types(frame)
    return with_head_types(result, types) if types is not None else result


def _gather(hub: Hub, runs: list[str], *, every: int, settings: Any, ablations: AblationMode,
            kind: str, device: Any, progress: bool
            ) -> tuple[list[_RunData], _Context]:
    data = []
    for run in runs:
        frame = evaluate_run(hub, run, metrics=list(REPORT_METRICS), every=every,
                             settings=settings, device=device, progress=progress)
        data.append(_RunData(run=run, frame=frame, windows=phase_changes(frame),
                             ablations=_ablations(hub, run, ablations, kind, every, settings,
                                                  device, progress, frame),
                             summary=_model_summary(hub, run)))
    pca, note = None, None
    keys = {repr(d.summary["data_key"]) + str(d.summary["n_ctx"]) for d in data}
    try:
        pca = per_token_loss_pca(pd.concat([d.frame for d in data], ignore_index=True))
    except EvalError as err:
        note = f"no PCA: {err}"
    if pca is not None and len(keys) > 1:
        note = ("these runs were evaluated on different data (their data settings or context "
                "lengths differ), so their loss vectors do not share examples and the shared "
                "PCA basis mixes unrelated tokens; compare runs trained on the same data")
        logger.warning("report: %s", note)
    return data, _Context(pca=pca, pca_note=note, kind=kind)


def _reddy_windows(run: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, tuple[float, float]
                                                            | bool]:
    """The IC transition of a Reddy run as a ``phase_changes``-like row, and its step span."""
    change = plots.reddy_transition(frame)
    tokens = frame.groupby("step")["train_tokens"].first()
    row: dict[str, Any] = {"run": run, "signal": "ic_accuracy", "detected": change is not None,
                           "start_step": np.nan, "end_step": np.nan, "start_tokens": np.nan,
                           "end_tokens": np.nan}
    if change is None:
        return pd.DataFrame([row]), False
    row.update(start_step=change.start, end_step=change.end,
               start_tokens=float(tokens.get(int(change.start), np.nan)),
               end_tokens=float(tokens.get(int(change.end), np.nan)))
    return pd.DataFrame([row]), (change.start, change.end)


def _gather_reddy(hub: Hub, runs: list[str], *, every: int, settings: Any, device: Any,
                  progress: bool) -> tuple[list[_RunData], _Context]:
    data = []
    for run in runs:
        frame = evaluate_run(hub, run, metrics=["reddy"], every=every, settings=settings,
                             device=device, progress=progress)
        windows, span = _reddy_windows(run, frame)
        data.append(_RunData(run=run, frame=frame, windows=windows, ablations=None,
                             summary=_model_summary(hub, run), span=span))
    return data, _Context(pca=None, pca_note=None, kind="pattern")


# ============================================================================ shared ranges
def _finite(values: Any) -> np.ndarray:
    if values is None:
        return np.array([])
    arr = np.asarray(values, dtype=object).ravel()
    out = pd.to_numeric(pd.Series(arr), errors="coerce").to_numpy(dtype=np.float64)
    return out[np.isfinite(out)]


def _share_ranges(figures: list[go.Figure], axes: Sequence[str]) -> None:
    """Give every figure of a row the union of their ranges on ``axes`` (padded 4%)."""
    if len(figures) < 2:
        return
    for axis in axes:
        if axis == "z":
            lows, highs, symmetric = [], [], False
            for fig in figures:
                for tr in fig.data:
                    if tr.type != "heatmap":
                        continue
                    z = _finite(tr.z)
                    lo = tr.zmin if tr.zmin is not None else (z.min() if len(z) else None)
                    hi = tr.zmax if tr.zmax is not None else (z.max() if len(z) else None)
                    symmetric |= tr.zmin is not None and tr.zmax is not None and \
                        np.isclose(tr.zmin, -tr.zmax)
                    if lo is not None:
                        lows.append(lo)
                        highs.append(hi)
            if not lows:
                continue
            lo, hi = float(min(lows)), float(max(highs))
            if symmetric:
                top = max(abs(lo), abs(hi))
                lo, hi = -top, top
            for fig in figures:
                fig.update_traces(zmin=lo, zmax=hi, zmid=None, selector=dict(type="heatmap"))
            continue
        log = all((getattr(fig.layout, f"{axis}axis").type == "log") for fig in figures)
        heatmap = any(tr.type == "heatmap" for fig in figures for tr in fig.data)
        if log:
            v = np.concatenate([_axis_values(fig, axis) for fig in figures])
            v = np.log10(v)
        else:
            parts = [_finite(getattr(tr, axis, None)) for fig in figures for tr in fig.data]
            parts += [_finite([getattr(sh, f"{axis}0"), getattr(sh, f"{axis}1")])
                      for fig in figures for sh in (fig.layout.shapes or ())
                      if getattr(sh, f"{axis}ref", None) == axis]
            v = np.concatenate(parts) if parts else np.array([])
        if not len(v) or (heatmap and not log):
            continue  # linear heatmap axes are categorical-like: leave them alone
        lo, hi = float(v.min()), float(v.max())
        pad = 0.0 if heatmap else (0.04 * (hi - lo) if hi > lo else (abs(lo) * 0.1 or 1.0))
        for fig in figures:
            (fig.update_xaxes if axis == "x" else fig.update_yaxes)(
                range=[lo - pad, hi + pad], autorange=False)
            plots.log_ticks(fig, axis)


# ============================================================================ HTML
_CSS = """
:root { --label: 250px; --cell: 360px; --line: #e3e6ec; --ink: #222833; --muted: #5b6474; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 Helvetica, Arial, sans-serif; color: var(--ink);
       background: #f6f7f9; }
header.page { padding: 18px 24px 8px; }
header.page h1 { margin: 0 0 4px; font-size: 22px; }
header.page p { margin: 2px 0; color: var(--muted); max-width: 1100px; }
.table { display: grid; margin: 8px 16px 24px; background: white; border: 1px solid var(--line);
         width: calc(100% - 32px); }
.table > .cell, .table > .colhead { min-width: 0; overflow: hidden; }
.table > div { border-bottom: 1px solid var(--line); }
.colhead { position: sticky; top: 0; z-index: 5; background: #fbfbfc; padding: 10px 12px;
           border-left: 1px solid var(--line); }
.colhead h2 { margin: 0 0 2px; font-size: 15px; }
.colhead p { margin: 0; font-size: 12px; color: var(--muted); }
.corner { position: sticky; top: 0; z-index: 5; background: #fbfbfc; padding: 10px 12px; }
.section { grid-column: 1 / -1; padding: 8px 12px; background: #eef1f5; font-size: 12px;
           font-weight: bold; letter-spacing: .06em; text-transform: uppercase; }
.rowhead { padding: 10px 12px; }
.rowhead h3 { margin: 0 0 4px; font-size: 14px; }
.rowhead p { margin: 0 0 6px; font-size: 12px; color: var(--muted); }
.rowhead p.cite { font-style: italic; }
.cell { border-left: 1px solid var(--line); padding: 4px 6px; min-height: 120px; }
.cell.note { display: flex; align-items: center; justify-content: center; padding: 16px;
             color: var(--muted); font-size: 12px; text-align: center; }
.windows { margin: 4px 0 0; padding: 0; list-style: none; font-size: 12px; }
.windows li { color: var(--muted); }
.windows li.hit { color: #b35300; }
footer { padding: 0 24px 24px; color: var(--muted); font-size: 12px; }
.cell .modebar-container { opacity: 0; transition: opacity .2s; }
.cell:hover .modebar-container { opacity: 1; }
footer code { font-size: 11px; }
"""


def _window_items(windows: pd.DataFrame) -> str:
    names = {"icl_score": "ICL score", "prefix_matching": "prefix matching", "loss": "loss bump",
             "ic_accuracy": "IC accuracy"}
    items = []
    for row in windows.itertuples():
        name = names.get(row.signal, row.signal)
        if row.detected:
            items.append(f'<li class="hit">{name}: steps {int(row.start_step):,}–'
                         f'{int(row.end_step):,} ({plots.format_si(row.start_tokens)}–'
                         f'{plots.format_si(row.end_tokens)} tokens)</li>')
        else:
            items.append(f"<li>{name}: no phase change detected</li>")
    return f'<ul class="windows">{"".join(items)}</ul>' if items else ""


def _column_header(data: _RunData) -> str:
    s = data.summary
    preset = f" (preset {html.escape(str(s['preset']))})" if s["preset"] else ""
    return (f'<div class="colhead"><h2>{html.escape(data.run)}</h2>'
            f"<p>{html.escape(s['architecture'])}{preset}</p>"
            f"<p>{html.escape(s['shape'])}</p>"
            f"<p>data {html.escape(str(s['data']))}; {s['checkpoints']} checkpoints to step "
            f"{s['last_step']:,} ({plots.format_si(s['last_tokens'])} tokens)</p>"
            f"{_window_items(data.windows)}</div>")


_CONFIG = {"displaylogo": False, "responsive": True,
           "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


def _figure_html(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG)


def render_report(cells: list[tuple[Row, list[go.Figure | str]]], data: Sequence[_RunData], *,
                  title: str, intro: str, footer: str) -> str:
    """The page's HTML from drawn rows (a figure or a note per run)."""
    n = len(data)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style>",
           # plotly.js inline, once: the page needs no network.
           f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>',
           "</head><body>",
           f'<header class="page"><h1>{html.escape(title)}</h1>{intro}</header>',
           f'<main class="table" style="grid-template-columns: var(--label) '
           f'repeat({n}, minmax(var(--cell), 1fr)); min-width: calc(var(--label) + {n} * '
           f'var(--cell) + 2px)">',
           '<div class="corner"><b>Measurement</b></div>',
           *(_column_header(d) for d in data)]
    section = None
    for row, row_cells in cells:
        if row.section != section:
            section = row.section
            out.append(f'<div class="section">{html.escape(section)}</div>')
        out.append(f'<div class="rowhead" id="row-{row.key}"><h3>{html.escape(row.title)}</h3>'
                   f"<p>{html.escape(row.caption)}</p>"
                   f'<p class="cite">{html.escape(row.cite)}</p></div>')
        for d, cell in zip(data, row_cells, strict=True):
            if isinstance(cell, str):
                out.append(f'<div class="cell note">{html.escape(cell)}</div>')
            else:
                out.append(f'<div class="cell">{_figure_html(cell, f"fig-{row.key}-{d.run}")}'
                           "</div>")
    out += ["</main>", f"<footer>{footer}</footer>", "</body></html>"]
    return "\n".join(out)


# ============================================================================ building
@dataclass
class Report:
    """What :func:`build_report` wrote."""

    path: Path
    """The HTML file."""
    runs: list[str]
    rows: list[str]
    """Keys of the rows drawn (:data:`ROWS`, or :data:`REDDY_ROWS` for Reddy runs)."""
    figures: int
    """Number of plotly figures on the page."""
    notes: list[str] = field(default_factory=list)
    """Cells drawn as a written note instead of a figure (``"row/run: why"``)."""
    seconds: float = 0.0
    """Wall time of the build (evaluation included)."""
    windows: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The detected phase-change windows of every run (``phase_changes`` rows)."""

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def build_report(hub: Hub | str | Path, runs: Sequence[str] | str, out: str | Path, *,
                 every: int = 1, settings: Any = None,
                 ablations: AblationMode | bool | None = "auto", kind: str = "pattern",
                 title: str | None = None, device: Any = None,
                 progress: bool = False) -> Report:
    """Evaluate what is missing and write the Model Analysis Table of ``runs`` as one HTML file.

    Args:
        hub: the hub or its directory. Evaluations are cached into it
            (``RUN/evals/*.parquet``); copy a hub you must not write into.
        runs: run names, one column each, in this order.
        out: the HTML file to write (atomically).
        every: evaluate every ``every``-th checkpoint (and the newest).
        settings: :class:`~induction_lens.runs.evaluate.EvalSettings` (default: laptop sizes).
        ablations: "auto" (default; also None): draw the ablation rows from the runs' cached
            ``ablation_{kind}.parquet`` where present, and leave the rows out when no run has
            one; "yes" (True): compute missing ablations with
            :func:`~induction_lens.runs.ablations.ablate_run` (minutes per run on a laptop);
            "no" (False): no ablation rows.
        kind: ablation kind, "pattern" (the paper's pattern-preserving) or "full".

    Reddy 2023 runs get the rows :data:`REDDY_ROWS` (from the ``reddy`` metric) instead of the
    language-model table; ``ablations`` does not apply to them. Language-model and Reddy runs
    cannot share one report.
        title: page title (default "Model Analysis Table").
        device: torch device for evaluation.
        progress: tqdm progress bars while evaluating.

    Returns:
        A :class:`Report` (path, figures drawn, cells left as notes, wall time).
    """
    from induction_lens.measures.ablations import AblationKind

    started = time.monotonic()
    aliases: dict[Any, AblationMode] = {None: "auto", True: "yes", False: "no"}
    mode = aliases.get(ablations, ablations) if not isinstance(ablations, str) else ablations
    if mode not in ("auto", "yes", "no"):
        raise ReportError(f"ablations={ablations!r} must be 'auto', 'yes' or 'no'")
    if kind not in get_args(AblationKind):
        raise ReportError(f"kind={kind!r} is not one of {get_args(AblationKind)}")
    if not isinstance(every, int) or every < 1:
        raise ReportError(f"every={every!r} must be a positive integer")
    hub = Hub.of(hub)
    names = _check_runs(hub, runs)
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ReportError(f"out={str(out)!r} should be an .html file")

    from induction_lens.measures.losses import icl_indices
    from induction_lens.runs.evaluate import EvalSettings

    settings = settings if settings is not None else EvalSettings()
    task = _task_of(hub, names)
    if task == "reddy":
        data, ctx = _gather_reddy(hub, names, every=every, settings=settings, device=device,
                                  progress=progress)
        rows = list(REDDY_ROWS)
    else:
        data, ctx = _gather(hub, names, every=every, settings=settings, ablations=mode,
                            kind=kind, device=device, progress=progress)
        with_ablations = mode == "yes" or (mode == "auto" and any(d.ablations is not None
                                                                   for d in data))
        rows = [r for r in ROWS if with_ablations or r.section != "Ablations"]
    n_ctx = {d.summary["n_ctx"] for d in data}
    ctx_len = max(n_ctx)
    early, late = icl_indices(ctx_len, settings.icl_indices)
    fill = {"early": early, "late": late, "n_ctx": ctx_len, "n_examples": settings.n_examples}
    cells: list[tuple[Row, list[go.Figure | str]]] = []
    notes: list[str] = []
    n_figures = 0
    for row in rows:
        drawn: list[go.Figure | str] = []
        for d in data:
            try:
                drawn.append(row.draw(d, ctx))
            except plots.PlotError as err:
                message = re.sub(r"^[a-z_]+: ", "", str(err))  # drop the function's name
                drawn.append(message)
                notes.append(f"{row.key}/{d.run}: {message}")
        figures = [f for f in drawn if isinstance(f, go.Figure)]
        _share_ranges(figures, row.share)
        n_figures += len(figures)
        caption = row.caption.format(**fill)
        if row.key in ("loss", "heatmap"):
            caption += " " + _LOSS_NOTE.format(**fill)
        if row.key == "pca" and ctx.pca_note and ctx.pca is not None:
            caption += " Warning: " + ctx.pca_note + "."
        if row.key == "icl" and len(n_ctx) > 1:
            caption += " (Runs have different contexts; each uses its own scaled indices.)"
        cells.append((dataclasses.replace(row, caption=caption), drawn))

    title = title or ("Reddy 2023 runs" if task == "reddy" else "Model Analysis Table")
    head = (f"<p>{len(names)} run{'s' if len(names) != 1 else ''} of hub "
            f"<code>{html.escape(str(hub.root))}</code>")
    reddy_intro = (f"{head}: Reddy 2023, <i>The mechanistic basis of data dependence and "
                   "abrupt learning in an in-context classification task</i>, a row per "
                   "measurement, a column per run. Training time is the optimizer step; "
                   "panels of a row share their axes.</p>")
    intro = reddy_intro if task == "reddy" else (
             f"{head}, laid out like the Model Analysis "
             "Table of Olsson et al. 2022, <i>In-context Learning and Induction Heads</i>: a row "
             "per measurement, a column per model. Training time is in elapsed training tokens "
             "on a log axis; panels of a row share their axes. Hover a line for its values; "
             "drag to zoom, double-click to reset.</p>"
             "<p>Phase-change windows are detected from the curves (shaded: the ICL-score "
             "window); see <code>induction_lens.analysis.phases</code> for the criteria.</p>")
    settings_text = html.escape(", ".join(f"{k}={v}" for k, v in
                                          dataclasses.asdict(settings).items()))
    commit = git_hash()
    footer = (f"<p>induction_lens {html.escape(__version__)}"
              f"{' (git ' + html.escape(commit[:12]) + ')' if commit else ''}; built "
              f"{dt.datetime.now().astimezone().isoformat(timespec='seconds')}; every "
              f"{every} checkpoint(s); ablations: {mode} ({kind}).</p>"
              f"<p>Evaluation settings: <code>{settings_text}</code></p>")
    page = render_report(cells, data, title=title, intro=intro, footer=footer)
    atomic_write_bytes(out, page.encode("utf-8"))
    windows = pd.concat([d.windows for d in data], ignore_index=True)
    return Report(path=out, runs=names, rows=[r.key for r in rows], figures=n_figures,
                  notes=notes, seconds=time.monotonic() - started, windows=windows)


# ============================================================================ CLI


