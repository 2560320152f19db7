"""Ablation figures: per-head ablation attributions over training, coloured by head type
(Argument 3).

Level: ``viz`` (frame in, ``go.Figure`` out; no computation). Conventions:
:mod:`induction_lens.viz`.
"""

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from induction_lens.viz._common import (
    _HEAD_TYPE_NAMES,
    _TOKENS_TITLE,
    HEAD_TYPE_COLOURS,
    PlotError,
    _check_frame,
    _draw_windows,
    _figure,
    _head_lines,
    _label,
    _log_axis,
    _metric_rows,
    _on_training_axis,
    _select_runs,
    log_ticks,
)

__all__ = ["ablation_attribution"]


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
        frame: the frame of :func:`~induction_lens.runs.ablate_run`, with a ``head_type``
            column (``runs.with_head_types(frame, runs.head_types(hub, run))``), or pass
            ``types``.
        metric: a report name of :data:`induction_lens.measures.ablations.ABLATION_REPORTS`
            (``icl_score_delta``, ``before_after_projection``, ``random_token_loss_delta``).
        kind: "pattern" (pattern-preserving, the paper's table) or "full": the rows whose
            ``kind`` column says so (a frame without the column is taken as that kind).
        run: which run, when the frame holds several.
        types: head types (``layer, head, head_type``) to join when ``frame`` has none.
        windows, log_x, window_signal, height: see :func:`loss_curve`.
        title: default: the metric's name.
    """
    what = "ablation_attribution"
    _check_frame(frame, what, ("metric", "value", "train_tokens", "step", "layer", "head"),
                 "pass the frame runs.ablate_run returns")
    if "kind" in frame.columns:
        frame = frame[frame["kind"] == kind]
    rows = _metric_rows(frame, metric, what,
                        "before_after_projection needs a detected phase-change window"
                        if metric == "before_after_projection" else
                        f"run runs.ablate_run(hub, run, kind={kind!r})")
    rows, runs = _select_runs(rows, run, what, single=True)
    rows = rows[rows["layer"].notna() & rows["head"].notna()]
    if types is not None:
        _check_frame(types, f"{what} types", ("layer", "head", "head_type"),
                     "pass runs.head_types(hub, run)")
        right = types[["layer", "head", "head_type"]].astype({"layer": "Int64", "head": "Int64"})
        rows = rows.drop(columns=["head_type"], errors="ignore").astype(
            {"layer": "Int64", "head": "Int64"}).merge(right, on=["layer", "head"], how="left")
    if "head_type" not in rows.columns:
        raise PlotError(f"{what}: the frame has no head_type column; join head types with "
                        "runs.with_head_types(frame, runs.head_types(hub, run)) or "
                        "pass types=")
    rows = rows.assign(head_type=rows["head_type"].fillna("other").astype(str))
    unknown = sorted(set(rows["head_type"]) - set(HEAD_TYPE_COLOURS))
    if unknown:
        raise PlotError(f"{what}: unknown head type(s) {unknown}; expected "
                        f"{sorted(HEAD_TYPE_COLOURS)}")
    rows = _on_training_axis(rows, log_x, what)
    default = {"icl_score_delta": "Ablation attribution to ICL score",
               "before_after_projection": "Ablation to before-and-after vector"}
    fig = _figure(default.get(metric, _label(metric)) if title is None else title, height=height)
    # Induction heads drawn last so that they lie on top of the grey "other" heads.
    order = {"other": 0, "previous_token": 1, "induction": 2}
    rows = rows.assign(_order=rows["head_type"].map(order)).sort_values(
        ["_order", "layer", "head", "step"])
    for head_type in sorted(set(rows["head_type"]), key=order.get):
        _head_lines(fig, rows[rows["head_type"] == head_type],
                    colour_of=lambda sub: HEAD_TYPE_COLOURS[sub["head_type"].iloc[0]],
                    name_of=lambda group: _HEAD_TYPE_NAMES[group],
                    group_of=lambda sub: sub["head_type"].iloc[0],
                    label=_label(metric), run=runs[0])
    fig.add_hline(y=0, line=dict(color="#9aa3b2", width=1, dash="dot"))
    _draw_windows(fig, windows, runs, window_signal)
    _log_axis(fig, "x", log_x, _TOKENS_TITLE)
    fig.update_yaxes(title_text=_label(metric))
    return log_ticks(fig, "x")
