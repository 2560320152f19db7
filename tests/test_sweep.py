"""The sweep over checkpoints: registry, tidy schema, parquet cache, CLI, and the paper's
Argument 1 on the briefly trained 1- and 2-layer models."""

import argparse
import json
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from induction_lens.analysis.phases import co_occurrence, detect_phase_change, phase_changes
from induction_lens.analysis.summary import checkpoint_summary
from induction_lens.cli import evaluate as cli_evaluate
from induction_lens.config import RunConfig, TrainConfig
from induction_lens.frame import TIDY_COLUMNS
from induction_lens.hub import Hub, HubError
from induction_lens.measures._checks import EvalError
from induction_lens.measures.heads import prefix_matching_scores
from induction_lens.measures.losses import icl_score
from induction_lens.runs import context as runs_context
from induction_lens.runs import registry as runs_registry
from induction_lens.runs.evaluate import EvalSettings, cache_path, evaluate_model, evaluate_run
from induction_lens.runs.phases import detect_phase_window
from induction_lens.runs.registry import register_metric
from induction_lens.train import train

from .conftest import TINY_DATA, tiny_spec
from .test_losses import clear_error

TINY_SETTINGS = EvalSettings(n_examples=8, head_examples=3, head_seq_len=5, head_repeats=4)
TINY_TRAIN = TrainConfig(steps=6, batch_size=2, checkpoint_every=2, warmup_steps=2)


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    """A tiny run (checkpoints 0, 2, 4, 6), trained once; tests copy it before writing."""
    root = tmp_path_factory.mktemp("tiny_source")
    train(RunConfig(tiny_spec(), TINY_TRAIN, TINY_DATA), hub=root, run="tiny", progress=False)
    return root


@pytest.fixture
def tiny_hub(tiny_source, tmp_path):
    shutil.copytree(tiny_source / "tiny", tmp_path / "tiny")
    return Hub(tmp_path)


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry, so tests can register metrics freely."""
    monkeypatch.setattr(runs_registry, "METRICS", dict(runs_registry.METRICS))
    return runs_registry.METRICS


@pytest.fixture
def counter(registry):
    """A registered metric that counts the checkpoints it evaluates."""
    calls = []

    def count(model, ctx):
        calls.append(ctx.step)
        return pd.DataFrame({"metric": ["count"], "value": [float(ctx.step)]})

    register_metric("count", count, version="1", settings=("n_examples",), default=False)
    return calls


# ----------------------------------------------------------------------------- registry
def test_register_metric_direct_and_as_decorator(registry):
    @register_metric("double", version="2", settings=["batch_size"], description="x2")
    def double(model, ctx):
        return pd.DataFrame({"metric": ["double"], "value": [2.0]})

    assert registry["double"].fn is double and registry["double"].version == "2"
    assert registry["double"].settings == ("batch_size",)
    with pytest.raises(EvalError, match="already registered"):
        register_metric("double", lambda m, c: None, version="3")
    register_metric("double", lambda m, c: None, version="3", replace=True)
    assert registry["double"].version == "3"


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "bad name", "fn": len, "version": "1"}, "letters, digits"),
    ({"name": "m", "fn": len, "version": ""}, "version"),
    ({"name": "m", "fn": len, "version": "1", "settings": ["nope"]}, "unknown settings"),
    ({"name": "m", "fn": 3, "version": "1"}, "callable"),
])
def test_register_metric_errors(registry, kwargs, message):
    with clear_error(message):
        register_metric(**kwargs)


def test_metric_must_return_a_frame(registry, tiny_model):
    register_metric("broken", lambda m, c: {"value": 1}, version="1")
    with pytest.raises(EvalError, match="must return a DataFrame"):
        evaluate_model(tiny_model, metrics=["broken"])


def test_unknown_metric(tiny_hub):
    with pytest.raises(EvalError, match="unknown metric"):
        evaluate_run(tiny_hub, "tiny", metrics=["nope"], settings=TINY_SETTINGS)


# ----------------------------------------------------------------------------- single model
def test_evaluate_model_tidy_frame(tiny_model):
    eval_tokens = torch.randint(1, 50, (8, 24))
    eval_tokens[:, 0] = 0
    frame = evaluate_model(tiny_model, eval_tokens=eval_tokens, settings=TINY_SETTINGS)
    assert tuple(frame.columns) == TIDY_COLUMNS
    assert frame["run"].isna().all() and frame["step"].isna().all()
    assert set(frame["metric"]) == {"loss", "icl_score", "loss_by_position", "loss_per_example",
                                    "prefix_matching", "copying", "previous_token"}
    assert len(frame[frame["metric"] == "loss_by_position"]) == 23
    per_example = frame[frame["metric"] == "loss_per_example"]
    assert per_example["example"].tolist() == list(range(8))
    assert per_example["position"].between(1, 23).all()
    heads = frame[frame["metric"] == "prefix_matching"]
    assert len(heads) == 8 and heads["layer"].notna().all()
    icl = frame[frame["metric"] == "icl_score"]["value"].item()
    assert icl == pytest.approx(icl_score(tiny_model, eval_tokens), abs=1e-5)


# ----------------------------------------------------------------------------- runs and cache
def test_evaluate_run_without_cache_writes_nothing(tiny_hub):
    frame = evaluate_run(tiny_hub, "tiny", settings=TINY_SETTINGS, cache=False, progress=False)
    assert sorted(frame["step"].unique()) == [0, 2, 4, 6]
    assert (frame["train_tokens"] == frame["step"] * 2 * 24).all()
    assert (frame["run"] == "tiny").all()
    assert tuple(frame.columns) == TIDY_COLUMNS
    assert str(frame["layer"].dtype) == "Int64" and str(frame["value"].dtype) == "float64"
    assert not (tiny_hub.run_dir("tiny") / "evals").exists()


def test_cache_is_reused_and_extended(tiny_hub, counter):
    kw = dict(settings=TINY_SETTINGS, progress=False)
    first = evaluate_run(tiny_hub, "tiny", metrics=["count", "losses"], steps=[0, 2], **kw)
    assert counter == [0, 2]
    assert cache_path(tiny_hub, "tiny", "count").exists()
    assert cache_path(tiny_hub, "tiny", "losses").exists()
    again = evaluate_run(tiny_hub, "tiny", metrics=["count", "losses"], steps=[0, 2], **kw)
    assert counter == [0, 2]  # nothing recomputed
    pd.testing.assert_frame_equal(first, again)
    full = evaluate_run(tiny_hub, "tiny", metrics=["count", "losses"], **kw)
    assert counter == [0, 2, 4, 6]  # only the new checkpoints
    assert sorted(full["step"].unique()) == [0, 2, 4, 6]
    pd.testing.assert_frame_equal(full[full["step"] <= 2].reset_index(drop=True), first)
    every = evaluate_run(tiny_hub, "tiny", metrics="count,losses", every=2, **kw)
    assert sorted(every["step"].unique()) == [0, 4, 6] and counter == [0, 2, 4, 6]


def test_version_bump_and_settings_change_recompute_only_that_metric(tiny_hub, counter,
                                                                      registry):
    kw = dict(progress=False, metrics=["count", "losses"])
    evaluate_run(tiny_hub, "tiny", settings=TINY_SETTINGS, **kw)
    losses_file = cache_path(tiny_hub, "tiny", "losses")
    mtime = losses_file.stat().st_mtime_ns
    register_metric("count", registry["count"].fn, version="2", settings=("n_examples",),
                    replace=True)
    evaluate_run(tiny_hub, "tiny", settings=TINY_SETTINGS, **kw)
    assert counter == [0, 2, 4, 6] * 2
    assert losses_file.stat().st_mtime_ns == mtime  # untouched
    # batch_size is read by 'losses' but not by 'count'.
    evaluate_run(tiny_hub, "tiny", settings=EvalSettings(**{**TINY_SETTINGS.__dict__,
                                                           "batch_size": 3}), **kw)
    assert counter == [0, 2, 4, 6] * 2
    assert losses_file.stat().st_mtime_ns != mtime
    evaluate_run(tiny_hub, "tiny", settings=EvalSettings(**{**TINY_SETTINGS.__dict__,
                                                           "n_examples": 6}), **kw)
    assert counter == [0, 2, 4, 6] * 3


def test_changed_checkpoint_is_recomputed(tiny_hub, counter):
    evaluate_run(tiny_hub, "tiny", metrics=["count"], settings=TINY_SETTINGS, progress=False)
    path = cache_path(tiny_hub, "tiny", "count")
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"induction_lens"])
    meta["checkpoints"]["2"] = "0" * 64  # as if step 2 had been rewritten since
    table = table.replace_schema_metadata({**table.schema.metadata,
                                           b"induction_lens": json.dumps(meta).encode()})
    pq.write_table(table, path)
    evaluate_run(tiny_hub, "tiny", metrics=["count"], settings=TINY_SETTINGS, progress=False)
    assert counter == [0, 2, 4, 6, 2]


def test_unreadable_cache_is_recomputed(tiny_hub, counter):
    path = cache_path(tiny_hub, "tiny", "count")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    frame = evaluate_run(tiny_hub, "tiny", metrics=["count"], settings=TINY_SETTINGS,
                         progress=False)
    assert counter == [0, 2, 4, 6] and len(frame) == 4
    assert pq.read_table(path).num_rows == 4


def test_interrupted_sweep_keeps_finished_checkpoints(tiny_hub, registry, counter):
    def flaky(model, ctx):
        if ctx.step == 4:
            raise KeyboardInterrupt
        return pd.DataFrame({"metric": ["flaky"], "value": [1.0]})

    register_metric("flaky", flaky, version="1", settings=())
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(tiny_hub, "tiny", metrics=["count", "flaky"], settings=TINY_SETTINGS,
                     progress=False)
    assert counter == [0, 2, 4]
    evaluate_run(tiny_hub, "tiny", metrics=["count"], settings=TINY_SETTINGS, progress=False)
    assert counter == [0, 2, 4, 6]  # count finished step 4 before flaky failed: it was kept
    flaky_rows = pd.read_parquet(cache_path(tiny_hub, "tiny", "flaky"))
    assert sorted(flaky_rows["step"]) == [0, 2]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"every": 0}, EvalError, "every=0"),
    ({"steps": [3]}, HubError, "no checkpoint at steps"),
])
def test_bad_sweep_arguments(tiny_hub, kwargs, error, message):
    with pytest.raises(error, match=message) as err:
        evaluate_run(tiny_hub, "tiny", settings=TINY_SETTINGS, progress=False, **kwargs)
    assert "\n" not in str(err.value)


def test_head_input_too_long_for_the_context_is_a_clear_error(tiny_hub):
    with pytest.raises(EvalError, match="do not fit the context 24"):
        evaluate_run(tiny_hub, "tiny", metrics=["prefix_matching"], cache=False,
                      progress=False)


def test_settings_validation():
    with pytest.raises(EvalError, match="n_examples"):
        EvalSettings(n_examples=0)
    with pytest.raises(EvalError, match="head_repeats"):
        EvalSettings(head_repeats=1)
    assert EvalSettings.paper().n_examples == 10_000


@pytest.mark.slow
def test_detect_phase_window_is_the_sweep_plus_detection(trained_hub):
    """On the 2-layer run, which has a phase change, the window equals detection on the
    sweep's frame and lies inside the run; the 1-layer run has none."""
    settings = EvalSettings(n_examples=64)
    got = detect_phase_window(trained_hub, "attn-only-2l", settings=settings, cache=False)
    frame = evaluate_run(trained_hub, "attn-only-2l", metrics=["losses"], settings=settings,
                         cache=False, progress=False)
    assert got is not None and got == detect_phase_change(frame, signal="icl_score")
    assert 0 < got.start_step < got.end_step <= 800 and got.change < 0
    assert detect_phase_window(trained_hub, "attn-only-1l", settings=settings,
                               cache=False) is None
    assert not (trained_hub.run_dir("attn-only-2l") / "evals").exists()
    with pytest.raises(EvalError, match="unknown signal"):
        detect_phase_window(trained_hub, "attn-only-2l", signal="bogus")


# ----------------------------------------------------------------------------- CLI
def test_cli_evaluate_writes_parquet_and_prints_windows(tiny_hub, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli_evaluate.add_parser(parser.add_subparsers())
    out = tmp_path / "all.parquet"
    args = parser.parse_args(["evaluate", "tiny", "--hub", str(tiny_hub.root), "--metrics",
                              "losses", "--n-examples", "8", "--out", str(out), "-q"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "run 'tiny'" in printed and "icl_score" in printed
    assert "no phase change" in printed or "phase change from step" in printed
    assert cache_path(tiny_hub, "tiny", "losses").exists()
    frame = pd.read_parquet(out)
    assert set(frame["run"]) == {"tiny"} and tuple(frame.columns) == TIDY_COLUMNS


# ----------------------------------------------------------------------------- Argument 1
@pytest.fixture(scope="module")
def trained_evals(trained_hub):
    """Every checkpoint of the trained 1L and 2L runs, evaluated without writing to the hub."""
    settings = EvalSettings(n_examples=256)
    return {run: evaluate_run(trained_hub, run, settings=settings, cache=False, progress=False)
            for run in ("attn-only-1l", "attn-only-2l")}


@pytest.mark.slow
def test_two_layer_model_has_a_phase_change_and_one_layer_model_none(trained_evals):
    one, two = trained_evals["attn-only-1l"], trained_evals["attn-only-2l"]
    window = detect_phase_change(two, signal="icl_score")
    assert window is not None
    assert detect_phase_change(one, signal="icl_score") is None
    assert detect_phase_change(one, signal="prefix_matching") is None
    assert not phase_changes(one)["detected"].any()

    summary = {run: checkpoint_summary(f).set_index("step") for run, f in trained_evals.items()}
    icl_two, icl_one = summary["attn-only-2l"]["icl_score"], summary["attn-only-1l"]["icl_score"]
    # The ICL score falls across the window, to far below anything the 1-layer model reaches.
    assert icl_two[window.end_step] < icl_two[window.start_step] - 1.0
    assert icl_two.iloc[-1] < icl_one.min() - 1.0
    # A layer-1 head becomes an induction head (prefix score > 0.5) inside that window.
    prefix = two[(two["metric"] == "prefix_matching") & (two["layer"] == 1)]
    best = prefix.groupby("step")["value"].max()
    assert best.iloc[-1] > 0.5
    first_above = int(best[best > 0.5].index.min())
    assert window.start_step <= first_above <= window.end_step
    layer0 = two[(two["metric"] == "prefix_matching") & (two["layer"] == 0)]["value"]
    assert layer0.max() < 0.2
    # ... and the prefix-score window co-occurs with the ICL window.
    co = co_occurrence(window, detect_phase_change(two, signal="prefix_matching"))
    assert co["both"] and co["overlap_steps"] > 0


@pytest.mark.slow
def test_sweep_values_equal_single_model_evaluators(trained_hub, trained_evals):
    run, step = "attn-only-2l", 800
    model = trained_hub.load_model(run, step)
    frame = trained_evals[run]
    at = frame[frame["step"] == step]
    tokens = trained_hub.corpus(run).eval_tokens(256)
    assert at[at["metric"] == "icl_score"]["value"].item() == pytest.approx(
        icl_score(model, tokens), abs=1e-5)
    ctx = runs_context.EvalContext.from_hub(trained_hub, run, EvalSettings(n_examples=256))
    prefix = prefix_matching_scores(model, ctx.repeated_tokens).flatten()
    got = at[at["metric"] == "prefix_matching"].sort_values(["layer", "head"])["value"]
    assert torch.allclose(torch.tensor(got.to_numpy()).float(), prefix, atol=1e-5)


def test_a_row_name_selects_its_metric_and_only_those_rows(tiny_hub):
    """``icl_score`` is a row of the ``losses`` metric: asking for it computes ``losses`` and
    returns its ``icl_score`` rows; a registry name returns every row it writes."""
    settings = EvalSettings(n_examples=8)
    rows = evaluate_run(tiny_hub, "tiny", metrics="icl_score", settings=settings, progress=False)
    full = evaluate_run(tiny_hub, "tiny", metrics="losses", settings=settings, progress=False)
    assert set(rows.metric) == {"icl_score"}
    assert set(full.metric) == {"loss", "icl_score", "loss_by_position", "loss_per_example"}
    pd.testing.assert_frame_equal(rows, full[full.metric == "icl_score"].reset_index(drop=True))
    with pytest.raises(EvalError, match="or a row they write"):
        evaluate_run(tiny_hub, "tiny", metrics="icl_scores", settings=settings, progress=False)
