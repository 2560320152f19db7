"""Figures of one text: attention patterns and per-token loss differences between two models.

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
    HEIGHT,
    PlotError,
    _check_frame,
    _figure,
)

__all__ = ["attention_pattern", "token_loss_diff"]


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
        diff_frame: the output of :func:`~induction_lens.measures.losses.token_loss_diff`
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
