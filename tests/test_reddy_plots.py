"""Reddy 2023 figures: traces, values and axis titles from hand-made frames; clear errors."""

import numpy as np
import pandas as pd
import pytest

from induction_lens import viz
from induction_lens.analysis.changepoint import detect_change
from induction_lens.viz import PlotError


def _final(eps=(0.1,), seeds=(0, 1)) -> pd.DataFrame:
    """A per-cell table: ic = B/10 + K/1000 + eps + seed/100, iw = 1 - B/10."""
    rows = []
    for e in eps:
        for b in (0, 1, 2, 4):
            for k in (128, 512):
                for s in seeds:
                    rows.append(dict(run=f"r{e}{b}{k}{s}", model="reddy-icl", seed=s, B=b, K=k,
                                     eps=e, step=100, ic_accuracy=b / 10 + k / 1000 + e + s / 100,
                                     iw_accuracy=1 - b / 10))
    return pd.DataFrame(rows)


def test_data_dependence_lines_per_eps_mean_over_seeds():
    final = _final(eps=(0.1, 0.5))
    fig = viz.reddy_data_dependence(final[final["K"] == 512], x="B", by="eps")
    assert len(fig.data) == 4  # 2 panels x 2 eps
    ic_01 = fig.data[0]
    assert ic_01.name == "eps = 0.1" and list(ic_01.x) == [0, 1, 2, 4]
    assert np.allclose(ic_01.y, [b / 10 + 0.512 + 0.1 + 0.005 for b in (0, 1, 2, 4)])
    assert np.allclose(ic_01.error_y.array, np.std([0, 0.01], ddof=1))
    iw_05 = fig.data[3]
    assert iw_05.name == "eps = 0.5" and np.allclose(iw_05.y, [1, 0.9, 0.8, 0.6])
    assert fig.layout.xaxis.title.text == "burstiness B"
    assert fig.layout.yaxis.title.text == "accuracy"
    assert [a.text for a in fig.layout.annotations] == ["IC accuracy (novel classes)",
                                                        "IW accuracy (B = 0)"]


def test_data_dependence_vs_k_and_from_the_tidy_frame():
    final = _final()
    final = final[final["B"] == 1]
    tidy = final.melt(id_vars=["run", "model", "seed", "B", "K", "eps", "step"],
                      value_vars=["ic_accuracy", "iw_accuracy"], var_name="metric")
    fig = viz.reddy_data_dependence(tidy, x="K")
    assert list(fig.data[0].x) == [128, 512]
    assert np.allclose(fig.data[0].y, [0.1 + 0.128 + 0.1 + 0.005, 0.1 + 0.512 + 0.1 + 0.005])
    assert fig.layout.xaxis.title.text == "number of classes K"


def test_data_dependence_refuses_to_average_over_a_varying_field():
    with pytest.raises(PlotError, match=r"also varies \['K'\]"):
        viz.reddy_data_dependence(_final(), x="B")
    with pytest.raises(PlotError, match=r"no column\(s\) \['alpha'\]"):
        viz.reddy_data_dependence(_final(), x="alpha")
    with pytest.raises(PlotError, match="the frame is empty"):
        viz.reddy_data_dependence(pd.DataFrame())


def test_phase_diagram_cells_are_seed_means():
    fig = viz.reddy_phase_diagram(_final())
    heat = fig.data[0]
    assert list(heat.x) == ["0", "1", "2", "4"] and list(heat.y) == ["128", "512"]
    expected = [[b / 10 + k / 1000 + 0.1 + 0.005 for b in (0, 1, 2, 4)] for k in (128, 512)]
    assert np.allclose(heat.z, expected)
    assert (heat.zmin, heat.zmax) == (0.0, 1.0)
    assert fig.layout.xaxis.title.text == "burstiness B"
    assert fig.layout.yaxis.title.text == "number of classes K"
    with pytest.raises(PlotError, match=r"also varies \['eps'\]"):
        viz.reddy_phase_diagram(_final(eps=(0.1, 0.5)))


def _curve_frame() -> pd.DataFrame:
    steps = np.arange(0, 2000, 50)
    rng = np.random.default_rng(0)
    ic = 0.25 + 0.7 / (1 + np.exp(-(steps - 1000) / 30)) + rng.normal(0, 0.01, len(steps))
    rows = []
    for s, v in zip(steps, ic, strict=True):
        rows += [dict(run="a", step=int(s), metric="ic_accuracy", value=float(v)),
                 dict(run="a", step=int(s), metric="iw_accuracy", value=0.1),
                 dict(run="a", step=int(s), metric="ila1", value=float(v) / 2)]
    return pd.DataFrame(rows)


def test_training_curves_panels_and_detected_window():
    frame = _curve_frame()
    fig = viz.reddy_training_curves(frame)
    names = [t.name for t in fig.data]
    assert names == ["IC accuracy (novel classes)", "IW accuracy (B = 0)", "ILA1",
                     "IC transition"]
    ic = frame[frame["metric"] == "ic_accuracy"]
    assert np.allclose(fig.data[0].y, ic["value"]) and np.allclose(fig.data[0].x, ic["step"])
    assert fig.data[2].yaxis == "y2" and np.allclose(fig.data[2].y, ic["value"] / 2)
    change = detect_change(ic["step"].to_numpy(float), ic["value"].to_numpy(float))
    assert change is not None and change.start <= 1000 <= change.end
    shapes = fig.layout.shapes
    assert len(shapes) == 2 and {(s.x0, s.x1) for s in shapes} == {(change.start, change.end)}
    assert fig.layout.xaxis2.title.text == "step"
    assert fig.layout.yaxis.title.text == "accuracy"
    assert fig.layout.yaxis2.title.text == "progress measure"


def test_training_curves_given_or_no_window_and_errors():
    frame = _curve_frame()
    fig = viz.reddy_training_curves(frame, window=(100, 300))
    assert {(s.x0, s.x1) for s in fig.layout.shapes} == {(100.0, 300.0)}
    flat = frame.assign(value=0.25)
    assert viz.reddy_transition(flat) is None
    assert not viz.reddy_training_curves(flat).layout.shapes
    with pytest.raises(PlotError, match="pass run= to pick one"):
        viz.reddy_training_curves(pd.concat([frame, frame.assign(run="b")]))
    with pytest.raises(PlotError, match="none of"):
        viz.reddy_training_curves(frame.assign(metric="loss"))
