"""Figures the docs build computes itself: tiny, deterministic, and drawn by the package's code.

Each generator takes no argument and returns a ``plotly.graph_objects.Figure`` in well under a
second. They illustrate a definition with the very function that implements it (so the figure
changes when the implementation does). A page asks for one with a ``plotly`` block::

    ```plotly
    generator: prefix_matching_targets
    caption: What the two attention evaluators read.
    ```
"""

from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

GENERATORS: dict[str, Callable[[], go.Figure]] = {}


def generator(fn: Callable[[], go.Figure]) -> Callable[[], go.Figure]:
    GENERATORS[fn.__name__] = fn
    return fn


@generator
def prefix_matching_targets() -> go.Figure:
    """Which attention entries the previous-token and prefix-matching scores average."""
    import torch

    from induction_lens.constants import BOS_TOKEN_ID
    from induction_lens.measures.heads import induction_targets

    seq = [11, 42, 7, 30, 25]
    tokens = torch.tensor([[BOS_TOKEN_ID] + seq * 3])
    labels = ["BOS"] + [f"{t}·{i // len(seq) + 1}" for i, t in enumerate(seq * 3)]
    n = tokens.shape[1]
    targets = induction_targets(tokens)[0].numpy()
    previous = np.eye(n, k=-1)
    causal = np.tril(np.ones((n, n)))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        "previous token: entries (i, i-1)", "prefix matching: induction_targets(tokens)"))
    for col, mask in ((1, previous), (2, targets)):
        z = np.where(causal > 0, mask, np.nan)
        fig.add_trace(go.Heatmap(
            z=z, x=labels, y=labels, colorscale=[[0, "#e8eaf6"], [1, "#d84315"]], zmin=0, zmax=1,
            showscale=False, xgap=1, ygap=1,
            hovertemplate="query %{y}<br>key %{x}<br>counted: %{z}<extra></extra>"),
            row=1, col=col)
    fig.update_yaxes(autorange="reversed", title_text="query (attending from)", row=1, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=2)
    fig.update_xaxes(title_text="key (attended to)", tickangle=-60)
    fig.update_layout(height=470, margin=dict(l=60, r=20, t=50, b=80),
                      template="plotly_white")
    return fig


def _icl_like(x: np.ndarray, rng: np.random.Generator, *, step_at: float | None) -> np.ndarray:
    """An ICL-score-like curve (nats): slow drift, an optional abrupt drop, noise."""
    y = -0.02 - 0.04 * x / x[-1] + rng.normal(0.0, 0.012, size=len(x))
    if step_at is not None:
        y = y - 0.28 / (1.0 + np.exp(-(x - step_at) / 25.0))
    return y


@generator
def phase_window_demo() -> go.Figure:
    """The level-change detector behind ``detect_phase_change("icl_score")`` on a curve with a
    phase change and on one without (synthetic data)."""
    from induction_lens.analysis.changepoint import change_candidates, fit_spline
    from induction_lens.analysis.phases import SIGNAL_PARAMS

    params = SIGNAL_PARAMS["icl_score"]
    rng = np.random.default_rng(0)
    steps = np.arange(0, 1001, 25, dtype=float)
    tokens = steps * 32 * 128  # laptop preset: batch 32 x context 128
    curves = {"two layers (abrupt drop)": _icl_like(steps, rng, step_at=560.0),
              "one layer (gradual drift)": _icl_like(steps, rng, step_at=None)}
    colours = {"two layers (abrupt drop)": "#1a237e", "one layer (gradual drift)": "#9e9e9e"}
    fig = go.Figure()
    for name, y in curves.items():
        candidates = change_candidates(tokens, y, params=params)
        accepted = [c for c in candidates if c.accepted]
        best = max(accepted or candidates, key=lambda c: c.ratio, default=None)
        verdict = ("no candidate" if best is None else "phase change" if best.accepted
                   else "rejected: " + ", ".join(best.failed))
        fig.add_trace(go.Scatter(x=tokens, y=y, mode="markers", name=f"{name} — {verdict}",
                                 marker=dict(color=colours[name], size=6)))
        fitted = fit_spline(tokens, y, params=params).fitted
        fig.add_trace(go.Scatter(x=tokens, y=fitted, mode="lines", showlegend=False,
                                 line=dict(color=colours[name], width=2, dash="solid"
                                           if accepted else "dot"),
                                 hoverinfo="skip"))
        if best is not None and best.accepted:
            fig.add_vrect(x0=best.start, x1=best.end, fillcolor="#ff9800",
                          opacity=0.25, line_width=0, annotation_text="detected window",
                          annotation_position="top left")
    fig.update_layout(height=420, template="plotly_white", margin=dict(l=60, r=20, t=30, b=60),
                      xaxis_title="elapsed training tokens", yaxis_title="ICL score (nats)",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    return fig
