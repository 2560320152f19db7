"""Reddy 2023's network equals its equations; hooks work; the nested-logit model's gradients."""

import pytest
import torch

from induction_lens.config import ReddyNetSpec, ReddyTaskSpec
from induction_lens.data.reddy import make_world, train_batch
from induction_lens.errors import ConfigError
from induction_lens.models.reddy import (
    InductionHeadModel,
    NestedLogitModel,
    ReddyNetwork,
    train_nested_logits,
)

TASK = ReddyTaskSpec(K=64, L=8, N=8, D=15, n_pos=20, p_C=0.5)


def _net(seed: int = 0) -> ReddyNetwork:
    return ReddyNetwork(ReddyNetSpec.for_task(TASK), seed=seed, device="cpu")


def _reference(net: ReddyNetwork, u: torch.Tensor) -> torch.Tensor:
    """The paper's equations in plain torch: u <- u + softmax_causal((Q u)(K u)^T) V u."""
    T = u.shape[1]
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    for block in net.blocks:
        Q, K, V = (block.attn.W_Q[0].T, block.attn.W_K[0].T, block.attn.W_V[0].T)
        q, k, v = u @ Q.T, u @ K.T, u @ V.T
        scores = (q @ k.transpose(1, 2)).masked_fill(mask, float("-inf"))
        u = u + scores.softmax(-1) @ v
    h = u[:, -1]
    layers = [m for m in net.classifier if isinstance(m, torch.nn.Linear)]
    for lin in layers[:-1]:
        h = torch.relu(h @ lin.weight.T + lin.bias)
    return h @ layers[-1].weight.T + layers[-1].bias


def test_network_equals_plain_reimplementation():
    net = _net()
    batch = train_batch(TASK, make_world(TASK), 0, 64)
    with torch.no_grad():
        diff = (net(batch.inputs) - _reference(net, batch.inputs)).abs().max().item()
    assert diff <= 1e-5


def test_frozen_parts_and_trainable_parameters():
    net = _net()
    spec = net.spec
    for block in net.blocks:
        assert torch.equal(block.attn.W_O[0], torch.eye(spec.d_model))
        assert not block.attn.W_O.requires_grad
        for b in (block.attn.b_Q, block.attn.b_K, block.attn.b_V, block.attn.b_O):
            assert not b.requires_grad and not b.any()
    n_trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert n_trainable == spec.n_params
    assert net.cfg.n_heads == 1 and net.blocks[0].attn.attn_scale == 1.0
    # Q, K, V are N(0, 1/D): their empirical std is within 5% of D^-1/2.
    qkv = torch.cat([net.blocks[0].attn.W_Q.flatten(), net.blocks[1].attn.W_V.flatten()])
    assert abs(qkv.std().item() * TASK.D ** 0.5 - 1) < 0.05


def test_same_seed_same_weights():
    a, b, c = _net(0), _net(0), _net(1)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.blocks[0].attn.W_Q, c.blocks[0].attn.W_Q)


def test_attention_hooks_work():
    net = _net()
    x = train_batch(TASK, make_world(TASK), 0, 8).inputs
    logits, cache = net.run_with_cache(x)
    T = TASK.seq_len
    for layer in (0, 1):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        assert pattern.shape == (8, 1, T, T)
        assert torch.allclose(pattern.sum(-1), torch.ones(8, 1, T))
        assert (pattern.triu(1) == 0).all()
        assert cache[f"blocks.{layer}.attn.hook_q"].shape == (8, T, 1, TASK.d_input)
        scores = cache[f"blocks.{layer}.attn.hook_attn_scores"]
        assert torch.allclose(scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1),
                                                 float("-inf")).softmax(-1), pattern, atol=1e-6)
    assert torch.equal(cache["hook_logits"], logits)
    assert torch.allclose(cache["hook_readout"], cache["blocks.1.hook_resid_post"][:, -1])

    def uniform(pattern, hook):
        return torch.tril(torch.ones_like(pattern)) / torch.arange(1, T + 1)[:, None]

    patched = net.run_with_hooks(x, fwd_hooks=[("blocks.1.attn.hook_pattern", uniform)])
    assert not torch.allclose(patched, logits)


def test_bad_input_shape():
    with pytest.raises(ConfigError, match="takes tokens"):
        _net()(torch.zeros(2, 5, 7))


def test_nested_logits_gradient_at_origin():
    n, ell = 8, 32
    model = NestedLogitModel(n, ell)
    assert model.p_correct().item() == pytest.approx(1 / ell)
    model().backward()
    assert model.xi.grad.item() == pytest.approx(-(1 / n - 1 / ell), abs=1e-12)
    assert model.alpha.grad.item() == 0 and model.beta1.grad.item() == 0


def test_nested_logits_stay_at_origin_when_l_equals_n():
    # The exact gradient is zero; float64 rounding of the softmax leaves ~1e-17 per step.
    frame = train_nested_logits(8, 8, steps=500, record_every=100)
    assert (frame[["beta1", "alpha", "xi"]].abs().to_numpy() < 1e-12).all()
    assert (frame["p_correct"] - 1 / 8).abs().max() < 1e-12


def test_nested_logits_slow_then_abrupt_in_curriculum_order():
    frame = train_nested_logits(8, 32, steps=4000, record_every=10).set_index("step")
    p = frame["p_correct"]
    assert p[1000] < 2 / 32 and p[4000] > 0.9
    # Which parameter reaches 0.5 first: xi, then alpha, then beta1.
    first = {k: int((frame[k] >= 0.5).idxmax()) for k in ("xi", "alpha", "beta1")}
    assert first["xi"] < first["alpha"] < first["beta1"]


def test_nested_logits_bad_inputs():
    with pytest.raises(ConfigError, match="n_labels"):
        NestedLogitModel(8, 4)
    with pytest.raises(ConfigError, match="steps"):
        train_nested_logits(steps=0)


def test_induction_head_model_by_hand():
    torch.manual_seed(0)
    labels = torch.randn(5, 3)
    content = torch.randn(2, 5, 3)  # N = 2: x1, l1, x2, l2, xq
    model = InductionHeadModel(labels, beta1=0.3, alpha=1.5, xi=2.0)
    p1 = 1 / (1 + torch.exp(torch.tensor(-0.3)))
    expected = []
    for seq in content:
        h = [p1 * seq[0] + (1 - p1) * seq[1], p1 * seq[2] + (1 - p1) * seq[3]]
        s = torch.stack([1.5 * (seq[4] @ hi) for hi in h]).softmax(0)
        expected.append(2.0 * (s[0] * h[0] + s[1] * h[1]) @ labels.T)
    assert torch.allclose(model(content), torch.stack(expected), atol=1e-6)
    frozen = InductionHeadModel(labels, beta1=2.0, learn_beta1=False)
    assert not frozen.beta1.requires_grad


def test_induction_head_model_only_xi_moves_at_the_origin():
    task = ReddyTaskSpec(K=64, L=16, N=8, D=15, n_pos=20, p_C=1.0)
    batch = train_batch(task, make_world(task), 0, 64)
    model = InductionHeadModel(make_world(task).labels)
    torch.nn.functional.cross_entropy(model(batch.inputs[..., task.n_pos:]),
                                      batch.targets).backward()
    assert model.xi.grad.item() < 0
    assert model.alpha.grad.item() == 0 and model.beta1.grad.item() == 0
