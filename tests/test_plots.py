"""Plot helpers: each returns a Figure whose traces and axes carry the hand-made frame's values;
bad inputs give one-line errors."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from induction_lens import plots
from induction_lens.analysis.circuits import spearman
from induction_lens.analysis.losses import loss_log_derivative, per_token_loss_pca
from induction_lens.analysis.phases import PhaseWindow
from induction_lens.frame import tidy
from induction_lens.viz import PlotError

STEPS = [0, 10, 20, 30, 40, 50]
TOKENS_PER_STEP = 1000
POSITIONS = range(1, 8)
N_EXAMPLES = 6


def _head_value(run: str, metric: str, step: int, layer: int, head: int) -> float:
    """A distinct, hand-checkable value per (run, metric, step, head)."""
    base = {"prefix_matching": 0.0, "copying": -1.0, "previous_token": 0.5,
            "qk_trace": 10.0}[metric]
    return base + 0.01 * step + 0.1 * layer + 0.001 * head + (0.5 if run == "b" else 0.0)


def make_frame(runs=("a", "b"), n_layers: int = 2, n_heads: int = 2) -> pd.DataFrame:
    """A tidy sweep frame of every metric the plots read, with known values."""
    rows = []
    for r_i, run in enumerate(runs):
        for step in STEPS:
            tok = step * TOKENS_PER_STEP
            common = dict(run=run, step=step, train_tokens=tok)
            rows.append({**common, "metric": "loss", "value": 6.0 - 0.05 * step - r_i})
            rows.append({**common, "metric": "icl_score", "value": -0.01 * step - 0.1 * r_i})
            for pos in POSITIONS:
                rows.append({**common, "metric": "loss_by_position", "position": pos,
                             "value": 6.0 - 0.01 * step * np.log(pos) - r_i})
            for ex in range(N_EXAMPLES):
                rows.append({**common, "metric": "loss_per_example", "example": ex,
                             "value": 5.0 + np.sin(ex + 1) * step / 50 + r_i * ex / 10})
            for layer in range(n_layers):
                for head in range(n_heads):
                    for metric in ("prefix_matching", "copying", "previous_token", "qk_trace"):
                        value = _head_value(run, metric, step, layer, head)
                        if metric == "qk_trace" and layer == 0:
                            value = np.nan  # undefined in layer 0
                        rows.append({**common, "metric": metric, "layer": layer, "head": head,
                                     "value": value})
            rows.append({**common, "metric": "composition_baseline", "value": 0.125})
            for layer in range(1, n_layers):
                for head in range(n_heads):
                    for src_layer in range(layer):
                        for src_head in range(n_heads):
                            rows.append({**common, "metric": "k_composition", "layer": layer,
                                         "head": head, "source_layer": src_layer,
                                         "source_head": src_head,
                                         "value": 0.1 * (1 + src_head) + 0.01 * head})
    frame = tidy(pd.DataFrame(rows))
    for col in ("source_layer", "source_head"):
        frame[col] = (frame[col] if col in frame.columns else pd.NA)
        frame[col] = frame[col].astype("Int64")
    return frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame()


def window(run: str = "a", start: int = 20, end: int = 30, signal: str = "icl_score"
           ) -> PhaseWindow:
    return PhaseWindow(signal=signal, start_step=start, end_step=end,
                       start_tokens=start * TOKENS_PER_STEP, end_tokens=end * TOKENS_PER_STEP,
                       mid_step=(start + end) / 2, mid_tokens=(start + end) / 2 * TOKENS_PER_STEP,
                       start_value=0.0, end_value=-0.3, change=-0.3, snr=10.0,
                       concentration=0.9, abruptness=5.0, run=run)


def _scatter(fig: go.Figure, name: str) -> go.Scatter:
    (trace,) = [t for t in fig.data if t.name == name]
    return trace


# ----------------------------------------------------------------------------- over training
def test_loss_curve_one_line_per_run_on_a_log_token_axis(frame):
    fig = plots.loss_curve(frame)
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["a", "b"]
    a = _scatter(fig, "a")
    # step 0 (0 tokens) cannot sit on a log axis: the other five checkpoints, in order
    assert list(a.x) == [s * TOKENS_PER_STEP for s in STEPS[1:]]
    np.testing.assert_allclose(a.y, [6.0 - 0.05 * s for s in STEPS[1:]])
    assert fig.layout.xaxis.type == "log"
    assert fig.layout.xaxis.title.text == "training tokens"
    assert "nats" in fig.layout.yaxis.title.text
    assert "%{y" in a.hovertemplate and "step" in a.hovertemplate
    # SI tick labels at 1-2-5 times powers of ten inside the data range
    assert list(fig.layout.xaxis.ticktext) == ["10k", "20k", "50k"]
    assert fig.layout.height == plots.HEIGHT


def test_loss_curve_keeps_step_zero_on_a_linear_axis_and_picks_runs(frame):
    fig = plots.loss_curve(frame, log_x=False, run="b")
    assert [t.name for t in fig.data] == ["b"]
    assert list(fig.data[0].x) == [s * TOKENS_PER_STEP for s in STEPS]
    assert fig.layout.xaxis.type == "linear"


def test_windows_are_shaded_bands_from_phase_windows_or_the_phase_changes_frame(frame):
    fig = plots.loss_curve(frame, run="a", windows=[window("a"), None])
    (band,) = fig.layout.shapes
    assert (band.x0, band.x1, band.yref, band.type) == (20_000, 30_000, "paper", "rect")
    assert band.showlegend and band.name == "phase change"
    # the phase_changes frame: only detected rows of the chosen signal are drawn
    table = pd.DataFrame([
        {"run": "a", "signal": "icl_score", "detected": True, "start_tokens": 20_000,
         "end_tokens": 30_000},
        {"run": "a", "signal": "loss", "detected": True, "start_tokens": 10_000,
         "end_tokens": 40_000},
        {"run": "b", "signal": "icl_score", "detected": False, "start_tokens": np.nan,
         "end_tokens": np.nan},
    ])
    fig = plots.icl_score_curve(frame, windows=table)
    bands = [s for s in fig.layout.shapes if s.type == "rect"]
    assert [(b.x0, b.x1) for b in bands] == [(20_000, 30_000)]
    fig = plots.icl_score_curve(frame, windows=table, window_signal=None)
    assert sorted((b.x0, b.x1) for b in fig.layout.shapes if b.type == "rect") == [
        (10_000, 40_000), (20_000, 30_000)]
    # a window of a run that is not drawn is not shaded
    fig = plots.loss_curve(frame, run="b", windows=[window("a")])
    assert not fig.layout.shapes
    with pytest.raises(PlotError, match="PhaseWindow"):
        plots.loss_curve(frame, windows=[(1, 2)])


def test_icl_score_curve(frame):
    fig = plots.icl_score_curve(frame)
    assert [t.name for t in fig.data] == ["a", "b"]
    np.testing.assert_allclose(_scatter(fig, "b").y, [-0.01 * s - 0.1 for s in STEPS[1:]])
    assert fig.layout.yaxis.title.text == "ICL score (nats)"
    assert any(s.type == "line" and s.y0 == 0 for s in fig.layout.shapes)  # the zero line


def test_loss_heatmap_is_the_position_by_tokens_table(frame):
    fig = plots.loss_heatmap(frame, run="a")
    (hm,) = fig.data
    assert hm.type == "heatmap"
    assert list(hm.x) == [s * TOKENS_PER_STEP for s in STEPS[1:]]
    assert list(hm.y) == list(POSITIONS)
    z = np.asarray(hm.z)
    assert z.shape == (len(POSITIONS), len(STEPS) - 1)
    # row = context index, column = checkpoint
    assert z[2, 1] == pytest.approx(6.0 - 0.01 * 20 * np.log(3))
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert "context index" in fig.layout.yaxis.title.text
    assert "nats" in hm.colorbar.title.text
    with pytest.raises(PlotError, match=r"holds runs \['a', 'b'\]; pass run="):
        plots.loss_heatmap(frame)


def test_loss_derivative_heatmap_draws_the_evaluator_output(frame):
    deriv = loss_log_derivative(frame[frame["run"] == "a"])
    fig = plots.loss_derivative_heatmap(deriv, clip_quantile=None)
    (hm,) = fig.data
    z = np.asarray(hm.z, dtype=float)
    # the evaluator's numbers, unchanged: d(6 - 0.01 s ln i)/d ln i = -0.01 s
    np.testing.assert_allclose(z[:, 1], -0.01 * 20, atol=1e-9)
    assert hm.zmin == pytest.approx(-hm.zmax)  # diverging, centred on 0
    assert hm.zmax == pytest.approx(0.01 * 50)
    with pytest.raises(PlotError, match="loss_log_derivative"):
        plots.loss_derivative_heatmap(frame[frame["run"] == "a"])


def test_head_score_curves_one_line_per_head_coloured_by_layer(frame):
    fig = plots.head_score_curves(frame, run="a")
    assert len(fig.data) == 4
    colours = {t.legendgroup: set() for t in fig.data}
    for t in fig.data:
        colours[t.legendgroup].add(t.line.color)
    assert sorted(colours) == ["layer 0", "layer 1"]
    assert all(len(c) == 1 for c in colours.values())
    assert colours["layer 0"] != colours["layer 1"]
    assert sum(bool(t.showlegend) for t in fig.data) == 2  # one legend entry per layer
    # the L1H1 line carries its values
    (l1h1,) = [t for t in fig.data if "L1H1" in t.hovertemplate]
    np.testing.assert_allclose(l1h1.y, [_head_value("a", "prefix_matching", s, 1, 1)
                                        for s in STEPS[1:]])
    assert fig.layout.xaxis.type == "log"


def test_qk_trace_curves_skip_layer_zero_and_refuse_one_layer_models(frame):
    fig = plots.head_score_curves(frame, metric="qk_trace", run="b", windows=[window("b")])
    assert len(fig.data) == 2 and {t.legendgroup for t in fig.data} == {"layer 1"}
    assert len(fig.layout.shapes) == 1
    one_layer = make_frame(runs=("x",), n_layers=1)
    with pytest.raises(PlotError, match="only defined for heads in layer >= 1"):
        plots.head_score_curves(one_layer, metric="qk_trace")


def _ablation_frame() -> pd.DataFrame:
    rows = []
    for step in STEPS:
        for layer in range(2):
            for head in range(2):
                for name, sign in (("icl_score_delta", 1), ("before_after_projection", -1)):
                    rows.append(dict(run="a", step=step, train_tokens=step * TOKENS_PER_STEP,
                                     layer=layer, head=head,
                                     metric=name, kind="pattern",
                                     value=sign * (0.01 * step * layer + 0.001 * head)))
    return tidy(pd.DataFrame(rows))


TYPES = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1],
                      "head_type": ["previous_token", "other", "induction", "induction"]})


def test_ablation_attribution_coloured_by_head_type():
    abl = _ablation_frame().merge(TYPES, on=["layer", "head"])
    fig = plots.ablation_attribution(abl, metric="before_after_projection")
    assert len(fig.data) == 4
    by_group = {t.legendgroup: t.line.color for t in fig.data}
    assert by_group == {k: plots.HEAD_TYPE_COLOURS[k]
                        for k in ("previous_token", "other", "induction")}
    assert [t.legendgroup for t in fig.data][-1] == "induction"  # drawn on top
    names = sorted(t.name for t in fig.data if t.showlegend)
    assert names == ["induction", "other", "previous token"]
    (l1h0,) = [t for t in fig.data if "L1H0" in t.hovertemplate]
    np.testing.assert_allclose(l1h0.y, [-0.01 * s for s in STEPS[1:]])
    assert "before/after" in fig.layout.yaxis.title.text
    # the same through types=; rows of another kind are not drawn
    other_kind = _ablation_frame().assign(kind="full", value=99.0)
    fig2 = plots.ablation_attribution(pd.concat([_ablation_frame(), other_kind]),
                                      metric="icl_score_delta", types=TYPES)
    assert all(99.0 not in list(t.y) for t in fig2.data)
    assert {t.legendgroup for t in fig2.data} == {"previous_token", "other", "induction"}
    assert "ICL score" in fig2.layout.yaxis.title.text


def test_ablation_attribution_errors():
    with pytest.raises(PlotError, match="head_type"):
        plots.ablation_attribution(_ablation_frame())
    no_projection = _ablation_frame()
    no_projection = no_projection[~no_projection["metric"].str.endswith("projection")]
    with pytest.raises(PlotError, match="phase-change window"):
        plots.ablation_attribution(no_projection, metric="before_after_projection", types=TYPES)
    with pytest.raises(PlotError, match="ablate_run"):
        plots.ablation_attribution(_ablation_frame(), kind="full", types=TYPES)


def test_pca_trajectories_share_one_basis_and_colour_markers_by_time(frame):
    pca = per_token_loss_pca(frame)
    fig = plots.pca_trajectories(pca)
    assert [t.name for t in fig.data] == ["a", "b"]
    a = _scatter(fig, "a")
    np.testing.assert_allclose(a.x, pca[pca["run"] == "a"].sort_values("step")["pc1"])
    # marker colour is log10 tokens (0 tokens clipped to the first positive checkpoint)
    first = STEPS[1] * TOKENS_PER_STEP
    np.testing.assert_allclose(a.marker.color,
                               np.log10([first, *[s * TOKENS_PER_STEP for s in STEPS[1:]]]))
    assert "% of variance" in fig.layout.xaxis.title.text
    assert sum(bool(t.marker.showscale) for t in fig.data) == 1
    fig = plots.pca_trajectories(pca, highlight="b")
    assert _scatter(fig, "a").mode == "lines" and _scatter(fig, "a").line.color == "#c5c9d0"
    assert _scatter(fig, "b").mode == "lines+markers"
    with pytest.raises(PlotError, match="not in the frame"):
        plots.pca_trajectories(pca, highlight="zzz")
    with pytest.raises(PlotError, match="pc1"):
        plots.pca_trajectories(frame)


def test_copying_vs_prefix_at_the_newest_step(frame):
    fig = plots.copying_vs_prefix(frame)
    assert [t.name for t in fig.data] == ["a", "b"]
    a = _scatter(fig, "a")
    assert len(a.x) == 4
    np.testing.assert_allclose(sorted(a.x), sorted(
        _head_value("a", "prefix_matching", 50, la, h) for la in range(2) for h in range(2)))
    fig = plots.copying_vs_prefix(frame, step=10, run="b")
    np.testing.assert_allclose(sorted(fig.data[0].y), sorted(
        _head_value("b", "copying", 10, la, h) for la in range(2) for h in range(2)))
    with pytest.raises(PlotError, match=r"no checkpoint at step 11 \(steps: \[0, 10"):
        plots.copying_vs_prefix(frame, step=11)


def test_correlation_scatter_reports_spearman_over_the_plotted_heads(frame):
    fig = plots.correlation_scatter(frame)  # qk_trace vs prefix_matching, layers >= 1
    pts = sum(len(t.x) for t in fig.data)
    assert pts == 2 * 2 * len(STEPS)  # runs x layer-1 heads x checkpoints
    xs = np.concatenate([t.x for t in fig.data])
    ys = np.concatenate([t.y for t in fig.data])
    assert f"ρ = {spearman(xs, ys):.3f}" in fig.layout.title.text
    assert f"n = {pts}" in fig.layout.title.text
    fig = plots.correlation_scatter(frame, "copying", "previous_token", run="a",
                                    coefficient=0.5)
    assert "ρ = 0.500" in fig.layout.title.text
    assert sum(len(t.x) for t in fig.data) == 4 * len(STEPS)
    with pytest.raises(PlotError, match="the frame has no 'ov_copying' rows"):
        plots.correlation_scatter(frame, "ov_copying", "copying")


def test_composition_heatmap_relative_to_the_baseline(frame):
    fig = plots.composition_heatmap(frame, run="a")
    (hm,) = fig.data
    assert list(hm.x) == ["L0H0", "L0H1"] and list(hm.y) == ["L1H0", "L1H1"]
    z = np.asarray(hm.z, dtype=float)
    # target L1H1 from source L0H1: 0.1 * 2 + 0.01 * 1 = 0.21, minus the baseline 0.125
    assert z[1, 1] == pytest.approx(0.21 - 0.125)
    assert hm.customdata[1][1] == pytest.approx(0.21)
    raw = plots.composition_heatmap(frame, run="a", relative=False)
    assert np.asarray(raw.data[0].z, dtype=float)[1, 1] == pytest.approx(0.21)
    with pytest.raises(PlotError, match="kind='x_composition' is not one of"):
        plots.composition_heatmap(frame, run="a", kind="x_composition")
    with pytest.raises(PlotError, match="at least two layers"):
        plots.composition_heatmap(make_frame(runs=("x",), n_layers=1))


# ----------------------------------------------------------------------------- one text
def test_attention_pattern_from_array_tensor_and_frame():
    pattern = np.tril(np.ones((4, 4)))
    pattern /= pattern.sum(1, keepdims=True)
    tokens = ["<s>", "a", "b", "a"]
    fig = plots.attention_pattern(pattern, tokens, title="L1H0")
    (hm,) = fig.data
    np.testing.assert_allclose(np.asarray(hm.z), pattern)
    assert list(fig.layout.xaxis.ticktext) == ["&lt;s&gt;", "a", "b", "a"]  # escaped
    assert fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.title.text == "L1H0"
    fig_t = plots.attention_pattern(torch.tensor(pattern))
    np.testing.assert_allclose(np.asarray(fig_t.data[0].z), pattern)
    long = pd.DataFrame([{"query_pos": q, "key_pos": k, "value": pattern[q, k]}
                         for q in range(4) for k in range(q + 1)])
    z = np.asarray(plots.attention_pattern(long).data[0].z, dtype=float)
    np.testing.assert_allclose(np.nan_to_num(z), pattern)
    assert np.isnan(z[0, 1])  # masked positions stay blank
    with pytest.raises(PlotError, match=r"one head's \[query_pos, key_pos\] pattern"):
        plots.attention_pattern(np.zeros((1, 2, 4, 4)))
    with pytest.raises(PlotError, match="3 tokens for a pattern with 4 key positions"):
        plots.attention_pattern(pattern, tokens[:3])


def test_token_loss_diff_lays_out_the_text_coloured_by_the_change():
    diff = pd.DataFrame({"position": [1, 2, 3, 4, 5], "token_id": [5, 6, 7, 8, 9],
                         "token": [" Harry", "\n", "<b>", " Potter", "!"],
                         "loss_before": [3.0, 2.0, 1.0, 4.0, 2.0],
                         "loss_after": [1.0, 2.5, 1.0, 1.0, 2.0]})
    diff["diff"] = diff["loss_after"] - diff["loss_before"]
    fig = plots.token_loss_diff(diff, tokens_per_line=3)
    (hm,) = fig.data
    text = np.asarray(hm.text)
    z = np.asarray(hm.z, dtype=float)
    # a new line after the newline token, then three tokens a line
    assert list(text[0][:2]) == ["\u00a0Harry", "↵"]
    assert list(text[1]) == ["&lt;b&gt;", "\u00a0Potter", "!"]
    assert z[0, 0] == -2.0 and z[0, 1] == 0.5 and np.isnan(z[0, 2])
    assert z[1, 1] == -3.0
    assert hm.zmid == 0 and hm.zmin == -3.0 and hm.zmax == 3.0
    assert list(hm.customdata[1][1][:3]) == [4, 4.0, 1.0]  # position, before, after
    assert "before" in hm.hovertemplate and "after" in hm.hovertemplate
    with pytest.raises(PlotError, match="tokens_per_line"):
        plots.token_loss_diff(diff, tokens_per_line=0)


# ----------------------------------------------------------------------------- bad inputs
BAD_CALLS = {
    "loss_curve": lambda f: plots.loss_curve(f),
    "icl_score_curve": lambda f: plots.icl_score_curve(f),
    "loss_heatmap": lambda f: plots.loss_heatmap(f, run="a"),
    "head_score_curves": lambda f: plots.head_score_curves(f, run="a"),
    "ablation_attribution": lambda f: plots.ablation_attribution(f, types=TYPES),
    "copying_vs_prefix": lambda f: plots.copying_vs_prefix(f),
    "correlation_scatter": lambda f: plots.correlation_scatter(f),
    "composition_heatmap": lambda f: plots.composition_heatmap(f, run="a"),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_empty_frame_and_non_frames_give_one_line_errors(name, frame):
    call = BAD_CALLS[name]
    with pytest.raises(PlotError) as err:
        call(frame.iloc[:0])
    assert "\n" not in str(err.value) and (name in str(err.value))
    with pytest.raises(PlotError, match="needs a pandas DataFrame"):
        call({"metric": []})


@pytest.mark.parametrize("name", ["loss_curve", "icl_score_curve", "loss_heatmap",
                                  "head_score_curves", "copying_vs_prefix",
                                  "composition_heatmap"])
def test_missing_metric_names_what_the_frame_has(name, frame):
    only_previous = frame[frame["metric"] == "previous_token"]
    with pytest.raises(PlotError) as err:
        BAD_CALLS[name](only_previous)
    message = str(err.value)
    assert "\n" not in message
    assert "no '" in message and "['previous_token']" in message


def test_unknown_run_lists_the_runs(frame):
    for call in (lambda: plots.loss_curve(frame, run="zzz"),
                 lambda: plots.loss_heatmap(frame, run="zzz"),
                 lambda: plots.head_score_curves(frame, run="zzz"),
                 lambda: plots.copying_vs_prefix(frame, run=["a", "zzz"])):
        with pytest.raises(PlotError, match=r"\['zzz'\] not in the frame \(runs: \['a', 'b'\]\)"):
            call()


def test_plot_error_is_a_config_error_for_the_cli():
    from induction_lens.config import ConfigError

    assert issubclass(PlotError, ConfigError)


def test_every_figure_serialises(frame):
    """Plotly validates on assignment; to_json catches anything left (e.g. numpy objects)."""
    figs = [plots.loss_curve(frame, windows=[window()]), plots.loss_heatmap(frame, run="a"),
            plots.head_score_curves(frame, run="a"), plots.pca_trajectories(
                per_token_loss_pca(frame)), plots.composition_heatmap(frame, run="b"),
            plots.correlation_scatter(frame)]
    for fig in figs:
        assert len(fig.to_json()) > 100
