"""Reddy 2023's measures on hand-built networks whose attention is known exactly."""

import math

import pytest
import torch

from induction_lens.config import ReddyNetSpec, ReddyTaskSpec
from induction_lens.data.reddy import eval_set, make_world
from induction_lens.errors import EvalError
from induction_lens.measures.reddy import (
    ablated_accuracy,
    accuracy_and_loss,
    cla,
    evaluate_reddy,
    progress_measures,
)
from induction_lens.models.reddy import ReddyNetwork

TASK = ReddyTaskSpec(K=64, L=16, N=8, B=2, D=15, n_pos=20, p_C=0.5)
T = TASK.seq_len


@torch.no_grad()
def _hand_built(previous_token: bool) -> ReddyNetwork:
    """Layer 2 uniform (Q = K = 0); layer 1 previous-token via the position one-hot, or uniform."""
    net = ReddyNetwork(ReddyNetSpec.for_task(TASK), seed=0, device="cpu")
    for block in net.blocks:
        block.attn.W_Q.zero_()
        block.attn.W_K.zero_()
    if previous_token:
        c = 10.0  # score 100 for the previous position, 0 elsewhere: exp(-100) is 0 in float32
        for p in range(TASK.n_pos - 1):
            net.blocks[0].attn.W_Q[0, p + 1, p] = c
            net.blocks[0].attn.W_K[0, p, p] = c
    return net


def test_previous_token_layer1_and_uniform_layer2():
    batch = eval_set(TASK, make_world(TASK), "ic", 64)
    m = progress_measures(_hand_built(True), batch)
    assert m["ila1"] == pytest.approx(1.0, abs=1e-6)
    # Uniform layer 2: the query spreads 1/(2N+1) on each of the 2N+1 tokens.
    assert m["tla2"] == pytest.approx(TASK.N / T, abs=1e-6)
    assert m["tila2"] == pytest.approx(TASK.B / T, abs=1e-6)  # B items share the query's class


def test_uniform_layer1_by_hand():
    batch = eval_set(TASK, make_world(TASK), "ic", 32)
    m = progress_measures(_hand_built(False), batch)
    # Label token at 2i+1 attends uniformly over 2i+2 tokens.
    expected = sum(1 / (2 * i + 2) for i in range(TASK.N)) / TASK.N
    assert m["ila1"] == pytest.approx(expected, abs=1e-6)


def test_tila2_ignores_sequences_without_the_query_class():
    batch = eval_set(TASK, make_world(TASK), "iw", 400)
    has = batch.matches.any(1)
    assert 0 < has.sum() < 400
    m = progress_measures(_hand_built(True), batch)
    expected = (batch.matches[has].sum(1).double() / T).mean().item()
    assert m["tila2"] == pytest.approx(expected, abs=1e-6)


def test_accuracy_loss_and_cla_by_hand():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([0, 0, 2, 1])
    acc, loss = accuracy_and_loss(logits, targets)
    assert acc == 0.5  # row 3 ties: argmax picks label 0, wrong
    p_hi = math.exp(5) / (math.exp(5) + 2)
    by_hand = (-math.log(p_hi) * 2 - math.log(1 / (math.exp(5) + 2)) - math.log(1 / 3)) / 4
    assert loss == pytest.approx(by_hand, rel=1e-6)
    context = torch.tensor([[0, 1], [2, 2], [2, 0], [1, 1]])
    assert cla(logits, context) == 0.5  # predictions 0, 1, 2, 0: in context rows 0 and 2


def test_layer2_ablation():
    world = make_world(TASK)
    batch = eval_set(TASK, world, "ic", 64)
    net = _hand_built(True)
    with torch.no_grad():
        net.blocks[1].attn.W_V.zero_()  # layer 2 writes nothing: ablating it changes nothing
        silent = (net(batch.inputs).argmax(-1) == batch.targets).float().mean().item()
    assert ablated_accuracy(net, batch, kind="zero") == silent
    assert ablated_accuracy(net, batch, kind="mean") == silent
    with pytest.raises((EvalError, TypeError), match="kind|resample"):
        ablated_accuracy(net, batch, kind="resample")  # type: ignore[arg-type]


def test_mean_ablation_feeds_the_batch_mean():
    batch = eval_set(TASK, make_world(TASK), "ic", 16)
    net = _hand_built(True)
    seen = {}

    def grab(z, hook):
        seen["z"] = z.clone()

    net.run_with_hooks(batch.inputs, fwd_hooks=[("blocks.1.attn.hook_z", grab)])
    mean_z = seen["z"].mean(0, keepdim=True).expand_as(seen["z"])
    by_hand = net.run_with_hooks(batch.inputs,
                                 fwd_hooks=[("blocks.1.attn.hook_z", lambda z, hook: mean_z)])
    acc = (by_hand.argmax(-1) == batch.targets).float().mean().item()
    assert ablated_accuracy(net, batch, kind="mean") == acc


def test_evaluate_reddy_names_and_ranges():
    net = _hand_built(True)
    out = evaluate_reddy(net, TASK, n_sequences=64)
    names = {f"{s}_{m}" for s in ("ic", "ic2", "iw", "train") for m in ("accuracy", "loss")}
    assert set(out) == names | {"ila1", "tila2", "tla2", "cla"}
    assert all(0 <= out[n] <= 1 for n in out if n.endswith("accuracy"))
    batch = eval_set(TASK, make_world(TASK), "iw", 64)
    acc, _ = accuracy_and_loss(net(batch.inputs).detach(), batch.targets)
    assert out["iw_accuracy"] == acc


def test_measures_refuse_a_batch_of_another_task():
    other = ReddyTaskSpec(K=64, L=16, N=8, B=2, D=20, n_pos=20)
    batch = eval_set(other, make_world(other), "ic", 4)
    with pytest.raises(EvalError, match="dims"):
        progress_measures(_hand_built(True), batch)
    with pytest.raises(EvalError, match="n_sequences"):
        evaluate_reddy(_hand_built(True), TASK, n_sequences=0)
