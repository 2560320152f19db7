"""Models: fused attention equals TransformerLens's, smeared keys behave as defined."""

import pytest
import torch

from induction_lens.models import (
    LensAttention,
    LensLayerNorm,
    LensLayerNormPre,
    build_model,
    fused_attention,
    smear_keys,
)

from .conftest import tiny_spec

ATOL = 1e-5

VARIANTS = {
    "attn-only-LN": {},
    "attn-only-noLN": {"normalization_type": None},
    "attn-only-LNPre": {"normalization_type": "LNPre"},
    "mlp": {"attn_only": False},
    "smeared": {"smeared_keys": True},
    "smeared-mlp": {"smeared_keys": True, "attn_only": False},
    "standard-positions": {"positional_embedding_type": "standard"},
}


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_fused_attention_matches_transformer_lens(overrides):
    model = build_model(tiny_spec(**overrides), seed=1)
    if overrides.get("smeared_keys"):
        with torch.no_grad():
            for block in model.blocks:
                block.attn.smear_alpha.normal_()
    tokens = torch.randint(0, 50, (3, 24))
    with fused_attention(model, False):
        reference = model(tokens)
    with fused_attention(model, True):
        fast = model(tokens)
    torch.testing.assert_close(fast, reference, atol=ATOL, rtol=0)


def test_fused_gradients_match_reference():
    model = build_model(tiny_spec(smeared_keys=True), seed=2)
    tokens = torch.randint(0, 50, (2, 24))
    grads = []
    for fused in (False, True):
        model.zero_grad()
        with fused_attention(model, fused):
            model(tokens, return_type="loss").backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_hooking_the_pattern_uses_the_reference_path():
    model = build_model(tiny_spec(), seed=0)
    tokens = torch.randint(0, 50, (2, 24))
    seen = []
    model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_pattern",
                                             lambda p, hook: seen.append(p.shape))])
    assert seen == [torch.Size([2, 4, 24, 24])]
    _, cache = model.run_with_cache(tokens)
    assert torch.allclose(cache["pattern", 0].sum(-1), torch.ones(2, 4, 24))


def test_build_model_is_deterministic_and_seeded():
    a, b = build_model(tiny_spec(), seed=3), build_model(tiny_spec(), seed=3)
    c = build_model(tiny_spec(), seed=4)
    for (name, x), y, _z in zip(a.state_dict().items(), b.state_dict().values(),
                               c.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert not torch.equal(a.W_Q, c.W_Q)
    assert all(isinstance(block.attn, LensAttention) for block in a.blocks)


def test_smear_keys_limits_are_exact():
    k = torch.randn(2, 7, 3, 5)
    plus = smear_keys(k, torch.full((3,), float("inf")))
    minus = smear_keys(k, torch.full((3,), float("-inf")))
    assert torch.equal(plus, k)
    assert torch.equal(minus[:, 1:], k[:, :-1])
    assert torch.equal(minus[:, 0], k[:, 0])  # the first position is never mixed


def test_smear_keys_mixes_per_head():
    k = torch.randn(1, 4, 2, 3)
    alpha = torch.tensor([0.0, 2.0])
    out = smear_keys(k, alpha)
    s = torch.sigmoid(alpha)
    for h in range(2):
        expected = s[h] * k[0, 2, h] + (1 - s[h]) * k[0, 1, h]
        torch.testing.assert_close(out[0, 2, h], expected)


def test_smeared_model_alpha_limits_match_vanilla_and_previous_keys():
    spec = tiny_spec(smeared_keys=True)
    smeared = build_model(spec, seed=5)
    vanilla = build_model(tiny_spec(), seed=5)
    vanilla.load_state_dict({k: v for k, v in smeared.state_dict().items()
                             if "smear_alpha" not in k})
    tokens = torch.randint(0, 50, (2, 24))
    with torch.no_grad():
        for block in smeared.blocks:
            block.attn.smear_alpha.fill_(float("inf"))
    torch.testing.assert_close(smeared(tokens), vanilla(tokens), atol=ATOL, rtol=0)
    with torch.no_grad():
        for block in smeared.blocks:
            block.attn.smear_alpha.fill_(float("-inf"))
    _, cache = smeared.run_with_cache(tokens)
    for layer in range(spec.n_layers):
        k, mixed = cache["k", layer], cache[f"blocks.{layer}.attn.hook_smeared_k"]
        assert torch.equal(mixed[:, 1:], k[:, :-1])
        assert torch.equal(mixed[:, 0], k[:, 0])


def test_smear_alpha_is_a_trained_parameter_in_the_state_dict():
    model = build_model(tiny_spec(smeared_keys=True), seed=0)
    assert "blocks.0.attn.smear_alpha" in model.state_dict()
    model(torch.randint(0, 50, (2, 24)), return_type="loss").backward()
    assert model.blocks[0].attn.smear_alpha.grad.abs().sum() > 0


def test_smeared_model_refuses_kv_cache():
    model = build_model(tiny_spec(smeared_keys=True), seed=0)
    with pytest.raises(ValueError, match="use_past_kv_cache=False"):
        model.generate(torch.randint(1, 50, (1, 4)), max_new_tokens=2, use_past_kv_cache=True,
                       stop_at_eos=False,
                       verbose=False)
    out = model.generate(torch.randint(1, 50, (1, 4)), max_new_tokens=2,
                         use_past_kv_cache=False, stop_at_eos=False, verbose=False)
    assert out.shape == (1, 6)


def test_key_bias_is_frozen_because_the_softmax_cancels_it():
    """A key bias shifts every score of a query equally; it is frozen so Adam cannot walk it
    on rounding noise (which made resumed runs differ from uninterrupted ones)."""
    from induction_lens.config import TrainConfig
    from induction_lens.train import make_optimizer

    model = build_model(tiny_spec(smeared_keys=True), seed=0)
    tokens = torch.randint(0, 50, (2, 24))
    before = model(tokens)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.b_K.normal_()
    assert torch.allclose(model(tokens), before, atol=1e-4)  # the reason it can be frozen
    assert all(not block.attn.b_K.requires_grad for block in model.blocks)
    optimizer = make_optimizer(model, TrainConfig(steps=1, batch_size=1))
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(model.blocks[0].attn.b_K) not in trained
    assert id(model.blocks[0].attn.W_K) in trained


def test_gradients_are_reproducible_with_several_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = build_model(tiny_spec(), seed=0)
        tokens = torch.randint(0, 50, (8, 24))
        grads = []
        for _ in range(4):
            model.zero_grad()
            model(tokens, return_type="loss").backward()
            grads.append(model.embed.W_E.grad.clone())
        assert all(torch.equal(grads[0], g) for g in grads[1:])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("normalization", ["LN", "LNPre"])
def test_hooked_layer_norms_take_the_transformer_lens_path(normalization):
    """The fused LayerNorm steps aside whenever its hook points are hooked, so caches and
    interventions see TransformerLens's intermediates."""
    model = build_model(tiny_spec(normalization_type=normalization, attn_only=False), seed=0)
    norms = [model.ln_final, *(b.ln1 for b in model.blocks), *(b.ln2 for b in model.blocks)]
    assert all(isinstance(n, (LensLayerNorm, LensLayerNormPre)) for n in norms)
    tokens = torch.randint(0, 50, (2, 24))
    logits, cache = model.run_with_cache(tokens)
    assert cache["ln_final.hook_scale"].shape == (2, 24, 1)
    torch.testing.assert_close(logits, model(tokens), atol=ATOL, rtol=0)
    doubled = model.run_with_hooks(
        tokens, fwd_hooks=[("ln_final.hook_normalized", lambda x, hook: 2 * x)])
    assert not torch.allclose(doubled, logits)
