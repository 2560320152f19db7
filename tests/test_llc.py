"""The LLC estimate: devinterp 2.x's sampler on a model whose LLC is known, and the metrics."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from induction_lens.errors import EvalError
from induction_lens.frame import check_frame
from induction_lens.measures.llc import estimate_llc, trace_drift
from induction_lens.runs.evaluate import EvalSettings, evaluate_model
from induction_lens.runs.registry import METRICS

from .conftest import TINY_DATA, tiny_spec

pytest.importorskip("devinterp.slt.llc", reason="devinterp 2.x (the 'devinterp' extra) is not "
                    "installed; pip install 'induction-lens[devinterp]'")


class LinearRegression(nn.Module):
    """``y = w . x``; example ``i`` is token id ``i`` (the dataset rows hold ``[i, i]``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        super().__init__()
        self.register_buffer("x", x)
        self.register_buffer("y", y)
        solution = torch.linalg.lstsq(x, y[:, None]).solution[:, 0]
        self.w = nn.Parameter(solution.clone())  # the minimum w* of the squared error


def half_squared_error(model: LinearRegression, input_ids: torch.Tensor) -> torch.Tensor:
    """Gaussian negative log-likelihood (up to a constant): ``(y - w.x)^2 / 2`` per example,
    shaped ``[batch, 1]`` like a per-token loss of two-token sequences."""
    idx = input_ids[:, 0]
    return (0.5 * (model.y[idx] - model.x[idx] @ model.w) ** 2)[:, None]


def regression(d: int, n: int = 64, seed: int = 0) -> tuple[LinearRegression, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, generator=g) + 0.5 * torch.randn(n, generator=g)
    ids = torch.arange(n)[:, None].expand(n, 2).contiguous()
    return LinearRegression(x, y), ids


@pytest.mark.parametrize("d", [2, 6])
def test_regular_minimum_has_llc_half_its_dimension(d):
    """A full-rank linear regression has a regular minimum: LLC = d/2 (Lau et al. 2023; the
    case devinterp's own accuracy tests use). Full batch (no minibatch noise) and a weak
    localisation; the tempered posterior around w* is Gaussian with covariance
    (n_beta H)^-1, so E[L - L(w*)] = d / (2 n_beta) and the estimate is d/2 up to SGLD's
    discretisation bias (~+3% at this step size) and Monte Carlo error (~4%); tolerance 12%."""
    model, ids = regression(d)
    before = model.w.detach().clone()
    res = estimate_llc(model, ids, loss_fn=half_squared_error, lr=0.01, n_beta=10.0,
                       localization=0.01, num_chains=4, num_draws=800, batch_size=len(ids),
                       device="cpu")
    assert res.llc == pytest.approx(d / 2, rel=0.12)
    assert res.per_chain.shape == (4,) and res.loss_trace.shape == (4, 800)
    with torch.no_grad():
        assert res.init_loss == pytest.approx(float(half_squared_error(model, ids).mean()),
                                              rel=1e-5)
    assert torch.equal(model.w.detach(), before)  # sampling runs on copies


def test_estimate_is_seeded():
    model, ids = regression(3)
    kwargs = dict(loss_fn=half_squared_error, lr=0.01, n_beta=10.0, num_chains=1,
                  num_draws=50, batch_size=16, device="cpu")
    a, b = estimate_llc(model, ids, seed=3, **kwargs), estimate_llc(model, ids, seed=3, **kwargs)
    c = estimate_llc(model, ids, seed=4, **kwargs)
    assert a.llc == b.llc and a.llc != c.llc


def test_trace_drift_by_hand():
    flat = np.full((2, 8), 1.5)
    assert math.isnan(trace_drift(flat, 1.5, 10.0))  # LLC 0: undefined
    # losses 1.0 ... then 1.2: quarters 3 and 4 have means 1.1 and 1.2, overall 1.0875
    trace = np.array([[1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 1.2]])
    llc = 10.0 * (trace.mean() - 0.5)
    assert trace_drift(trace, 0.5, 10.0) == pytest.approx(10.0 * (1.2 - 1.1) / llc)
    assert trace_drift(np.ones((1, 3)), 0.0, 1.0) != trace_drift(np.ones((1, 3)), 0.0, 1.0)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"lr": 0.0}, "lr=0.0 must be a positive number"),
    ({"num_draws": 0}, "num_draws=0 must be a positive integer"),
    ({"batch_size": 100}, "fewer than batch_size=100"),
    ({"sampler": "hmc"}, "sampler='hmc' is not one of"),
    ({"restriction": "l9h0"}, "restriction 'l9h0'"),
])
def test_bad_llc_options_are_clear_errors(kwargs, needle, tiny_model):
    tokens = torch.randint(0, 50, (16, 24), generator=torch.Generator().manual_seed(0))
    options = {"num_chains": 1, "num_draws": 2, "batch_size": 8, **kwargs}
    with pytest.raises(EvalError, match=needle.replace("(", r"\(")):
        estimate_llc(tiny_model, tokens, **options)


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("llc_sampler", "hmc", "EvalSettings.llc_sampler='hmc'"),
    ("llc_draws", 0, "EvalSettings.llc_draws=0"),
    ("llc_lr", -1.0, "EvalSettings.llc_lr=-1.0"),
    ("llc_n_beta", float("nan"), "EvalSettings.llc_n_beta=nan"),
    ("llc_examples", 4, "llc_examples=4 must be at least llc_batch_size=32"),
])
def test_bad_llc_settings_name_the_field(field, value, needle):
    with pytest.raises(EvalError, match=needle):
        EvalSettings(**{field: value})


def test_llc_settings_are_in_the_cache_key():
    metric = METRICS["llc"]
    a = metric.cache_key(EvalSettings())
    for field, value in (("llc_lr", 3e-4), ("llc_draws", 50), ("llc_seed", 1),
                         ("llc_localization", 10.0), ("llc_n_beta", 5.0)):
        assert metric.cache_key(EvalSettings(**{field: value})) != a, field
    assert metric.cache_key(EvalSettings(head_examples=3)) == a  # what it does not read


def test_llc_metrics_on_a_tiny_model():
    """The registered metrics in the schema, with a few draws: LLC rows and one refined LLC
    per head; the full-model estimate equals the measure's own with the same settings."""
    from induction_lens.data import make_corpus
    from induction_lens.models import build_model

    spec = tiny_spec(n_layers=1, n_heads=2, d_model=16)
    tiny_model = build_model(spec, seed=0)
    corpus = make_corpus(TINY_DATA, d_vocab=50, n_ctx=24)
    settings = EvalSettings(n_examples=16, llc_examples=16, llc_batch_size=8, llc_chains=1,
                            llc_draws=6)
    frame = evaluate_model(tiny_model, metrics=["llc", "llc_heads"],
                           eval_tokens=corpus.eval_tokens, settings=settings)
    check_frame(frame)
    model_rows = frame[frame["layer"].isna()].set_index("metric")["value"]
    assert set(model_rows.index) == {"llc", "llc_std", "llc_trace_drift", "llc_init_loss"}
    direct = estimate_llc(tiny_model, corpus.eval_tokens(16), num_chains=1, num_draws=6,
                          batch_size=8)
    assert model_rows["llc"] == pytest.approx(direct.llc, rel=1e-6)
    heads = frame[frame["metric"] == "llc_head"]
    assert sorted(zip(heads["layer"], heads["head"], strict=True)) == [(0, 0), (0, 1)]
    assert heads["value"].map(np.isfinite).all()
    # the refined LLC of head 1 is the measure restricted to its weights
    one = estimate_llc(tiny_model, corpus.eval_tokens(16), num_chains=1, num_draws=6,
                       batch_size=8, restriction="l0h1")
    assert heads.set_index("head")["value"][1] == pytest.approx(one.llc, rel=1e-6)


def test_llc_windows_and_figure():
    """An LLC curve with a clean step gets a window from the shared detector, and the figure
    draws it beside prefix matching and the ICL score."""
    from induction_lens.analysis.phases import co_occurrence_table, detect_phase_change
    from induction_lens.viz import PlotError, llc_curve

    steps = np.arange(0, 1050, 50)
    step = 1 / (1 + np.exp(-(steps - 500) / 25.0))
    noise = np.random.default_rng(0).normal(0, 0.01, len(steps))
    rows = []
    for s, v, n in zip(steps, step, noise, strict=True):
        base = {"run": "r", "step": s, "train_tokens": s * 100}
        rows += [{**base, "metric": "llc", "value": 20 + 30 * v + n},
                 {**base, "metric": "llc_std", "value": 1.0},
                 {**base, "metric": "icl_score", "value": -0.05 - 0.4 * v + n},
                 {**base, "metric": "prefix_matching", "value": 0.05 + 0.6 * v + n,
                  "layer": 1, "head": 0}]
    frame = pd.DataFrame(rows)
    window = detect_phase_change(frame, signal="llc", run="r")
    assert window is not None and 400 <= window.mid_step <= 600
    table = co_occurrence_table(frame, others=("prefix_matching", "llc"))
    assert table.set_index("signal").loc["llc", "both"]
    fig = llc_curve(frame, windows=[window])
    assert [t.name for t in fig.data if t.mode] == ["LLC", "max prefix matching", "ICL score"]
    assert len(fig.layout.shapes) == 1
    with pytest.raises(PlotError, match="'llc' metric"):
        llc_curve(frame[frame["metric"] != "llc"])
