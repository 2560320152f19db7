"""The one tidy schema: the builders give values you can check by hand, and every registered
metric's rows follow the schema."""

import numpy as np
import pandas as pd
import pytest
import torch

from induction_lens.errors import EvalError
from induction_lens.frame import (
    OPTIONAL_COLUMNS,
    TIDY_COLUMNS,
    check_frame,
    head_frame,
    model_frame,
    tidy,
)
from induction_lens.runs import METRICS, EvalSettings, evaluate_model

from .conftest import TINY_DATA


def test_head_frame_lays_out_every_head_in_order():
    scores = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    frame = head_frame({"prefix_matching": scores, "baseline": torch.tensor(7.0)}, kind="x")
    assert list(frame.columns) == ["layer", "head", "metric", "value", "kind"]
    per_head = frame[frame.metric == "prefix_matching"]
    assert per_head[["layer", "head"]].to_numpy().tolist() == [[0, 0], [0, 1], [0, 2],
                                                               [1, 0], [1, 1], [1, 2]]
    np.testing.assert_allclose(per_head.value, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], rtol=1e-7)
    model_level = frame[frame.metric == "baseline"]
    assert model_level.layer.isna().all() and model_level.value.tolist() == [7.0]
    assert str(frame.layer.dtype) == "Int64" and str(frame.value.dtype) == "float64"
    assert set(frame.kind) == {"x"}
    check_frame(frame, checkpoint=False)


def test_head_frame_refuses_other_shapes():
    with pytest.raises(EvalError, match=r"shape \(2, 2, 2\)"):
        head_frame({"x": torch.zeros(2, 2, 2)})


def test_tidy_orders_and_types_the_columns():
    raw = pd.DataFrame({"value": [1, 2], "metric": ["a", "b"], "kind": ["k", "k"],
                        "head_type": ["induction", "other"], "step": [3, 4]})
    frame = tidy(raw)
    assert list(frame.columns) == [*TIDY_COLUMNS, "kind", "head_type"]
    assert frame.step.tolist() == [3, 4] and frame.train_tokens.isna().all()
    assert str(frame.value.dtype) == "float64" and str(frame.metric.dtype) == "string"
    check_frame(frame)


def test_check_frame_catches_what_breaks_the_schema():
    frame = tidy(pd.DataFrame({"metric": ["a"], "value": [1.0]}))
    with pytest.raises(EvalError, match="do not start"):
        check_frame(frame.drop(columns=["train_tokens"]))
    with pytest.raises(EvalError, match="dtype"):
        check_frame(frame.astype({"layer": "float64"}))
    swapped = frame.assign(kind="k", source_layer=pd.array([1], dtype="Int64"))
    with pytest.raises(EvalError, match="order"):
        check_frame(swapped)  # kind must come after source_layer


def test_model_frame_keeps_the_optional_columns_it_is_asked_for():
    frame = model_frame([pd.DataFrame({"metric": ["m"], "value": [1.0]})],
                        columns=("source_layer", "source_head"))
    assert list(frame.columns) == ["layer", "head", "metric", "value", "source_layer",
                                   "source_head"]
    assert model_frame([]).columns.tolist() == ["layer", "head", "metric", "value"]


def _check_rows(name, frame, n_layers, n_heads):
    assert len(frame), f"{name} wrote no rows"
    check_frame(frame)
    assert set(frame.columns) <= set(TIDY_COLUMNS) | set(OPTIONAL_COLUMNS), name
    per_head = frame[frame.layer.notna()]
    assert per_head.layer.between(0, n_layers - 1).all()
    assert per_head["head"].between(0, n_heads - 1).all()
    if name.startswith("ablation_"):
        assert set(frame["kind"]) == {name.removeprefix("ablation_")}


@pytest.mark.parametrize("name", sorted(n for n, m in METRICS.items() if m.task == "language"))
def test_every_registered_metric_follows_the_schema(name, tiny_model):
    from induction_lens.data import make_corpus

    corpus = make_corpus(TINY_DATA, d_vocab=tiny_model.cfg.d_vocab, n_ctx=tiny_model.cfg.n_ctx)
    settings = EvalSettings(n_examples=8, head_examples=4, head_seq_len=5, head_repeats=4,
                            batch_size=8, llc_chains=1, llc_draws=4, llc_batch_size=8)
    frame = evaluate_model(tiny_model, metrics=[name], eval_tokens=corpus.eval_tokens,
                           settings=settings)
    _check_rows(name, frame, tiny_model.cfg.n_layers, tiny_model.cfg.n_heads)


@pytest.mark.parametrize("name", sorted(n for n, m in METRICS.items() if m.task == "reddy"))
def test_every_reddy_metric_follows_the_schema(name, tmp_path):
    import induction_lens as il
    from induction_lens.config import ReddyNetSpec, ReddyTaskSpec, RunConfig, TrainConfig
    from induction_lens.runs import evaluate_run

    task = ReddyTaskSpec(K=32, L=8, N=4, D=7, n_pos=9, p_C=0.5)
    train = TrainConfig(steps=2, batch_size=8, lr=0.05, warmup_steps=0, grad_clip=None,
                        checkpoint_every=2, optimizer="sgd")
    il.train(RunConfig(ReddyNetSpec.for_task(task), train, task), hub=tmp_path, run="r",
             device="cpu", progress=False)
    frame = evaluate_run(tmp_path, "r", metrics=[name], settings=EvalSettings(n_examples=16),
                         progress=False)
    _check_rows(name, frame, 2, 1)
    assert frame.step.tolist().count(2) == len(frame) // 2  # both checkpoints, same rows
    with pytest.raises(EvalError, match="measure other runs"):
        evaluate_run(tmp_path, "r", metrics="losses", progress=False)
    default = evaluate_run(tmp_path, "r", settings=EvalSettings(n_examples=16), progress=False)
    if METRICS[name].default:  # the defaults of a Reddy run (reddy_ablation_* is opt-in)
        assert set(default.metric) == set(frame.metric)
