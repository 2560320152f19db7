"""The trainer's plain-torch forward equals TransformerLens's code and steps aside when it must.

The reference is the ``HookedTransformer`` itself with every fused path off
(``fused_attention(model, False)``: TransformerLens's einsums, masked softmax and five-step
LayerNorm), and its loss is computed the plain way, log-softmax then the target's entry.
"""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from induction_lens.config import RunConfig, TrainConfig
from induction_lens.models import build_model, fused_attention
from induction_lens.models.fast import (
    _UnembedCrossEntropy,
    fast_forward_ok,
    fast_lm_loss,
    fast_logits,
)
from induction_lens.train import make_optimizer, train

from .conftest import TINY_DATA, tiny_spec

ATOL = 1e-5

VARIANTS = {
    "attn-only-1l": {"n_layers": 1},
    "attn-only-2l": {},
    "attn-only-3l": {"n_layers": 3},
    "mlp-1l": {"n_layers": 1, "attn_only": False},
    "mlp-2l": {"attn_only": False},
    "mlp-3l": {"n_layers": 3, "attn_only": False},
    "mlp-gelu_new": {"attn_only": False, "act_fn": "gelu_new"},
    "smeared-mlp": {"smeared_keys": True, "attn_only": False},
    "LNPre": {"normalization_type": "LNPre", "attn_only": False},
    "no-LN": {"normalization_type": None, "attn_only": False},
    "standard-positions": {"positional_embedding_type": "standard", "attn_only": False},
}


def reference_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy written out: minus the log-probability of each next token."""
    logprobs = logits[:, :-1].log_softmax(-1)
    return -logprobs.gather(-1, tokens[:, 1:, None]).mean()


def randomised(overrides: dict, seed: int) -> torch.nn.Module:
    """A model whose biases, gains and smear alphas are random too (zeros would hide bugs)."""
    model = build_model(tiny_spec(**overrides), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.rsplit(".", 1)[-1].startswith("W_"):
                param.add_(0.3 * torch.randn(param.shape, generator=gen))
    return model


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_fast_forward_logits_and_gradients_equal_transformer_lens(overrides):
    model = randomised(overrides, seed=3)
    assert fast_forward_ok(model)
    tokens = torch.randint(0, 50, (3, 24), generator=torch.Generator().manual_seed(4))
    grads = {}
    for name, forward in [("reference", None), ("fast", fast_lm_loss)]:
        model.zero_grad(set_to_none=True)
        if forward is None:
            with fused_attention(model, False):
                logits = model(tokens)
                loss = reference_loss(logits, tokens)
            reference_logits, reference = logits.detach(), loss.detach()
        else:
            loss = forward(model, tokens)
            torch.testing.assert_close(loss.detach(), reference, atol=ATOL, rtol=0)
        loss.backward()
        grads[name] = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    torch.testing.assert_close(fast_logits(model, tokens).detach(), reference_logits,
                               atol=ATOL, rtol=0)
    assert grads["fast"].keys() == grads["reference"].keys()
    for name, grad in grads["reference"].items():
        torch.testing.assert_close(grads["fast"][name], grad, atol=ATOL, rtol=0,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_any_hook_or_fused_off_sends_training_back_to_the_hooked_transformer():
    model = build_model(tiny_spec(), seed=0)
    assert fast_forward_ok(model)
    with fused_attention(model, False):
        assert not fast_forward_ok(model)
    handle = model.blocks[1].attn.hook_z.add_hook(lambda z, hook: z)
    assert not fast_forward_ok(model)
    model.reset_hooks()
    assert fast_forward_ok(model)
    handle = model.register_forward_hook(lambda module, args, out: out)
    assert not fast_forward_ok(model)
    handle.remove()
    assert fast_forward_ok(model)


def test_an_architecture_it_does_not_implement_is_declined():
    model = build_model(tiny_spec(), seed=0)
    model.cfg.use_attn_result = True  # per-head results: only TransformerLens computes them
    assert not fast_forward_ok(model)


def test_fast_trainer_follows_the_transformer_lens_trainer(tmp_path):
    """Same run through the fast forward and through TransformerLens's unfused code: the same
    losses at every step up to float rounding, and final weights that agree closely."""
    cfg = RunConfig(tiny_spec(attn_only=False),
                    TrainConfig(steps=6, batch_size=2, checkpoint_every=6, warmup_steps=2),
                    TINY_DATA)
    runs = {}
    for fused in (True, False):
        runs[fused] = train(replace(cfg, train=replace(cfg.train, fused_attention=fused)),
                            hub=tmp_path, run=f"f{int(fused)}", progress=False, device="cpu")
    torch.testing.assert_close(torch.tensor(runs[True].log["loss"].to_numpy()),
                               torch.tensor(runs[False].log["loss"].to_numpy()),
                               atol=1e-4, rtol=0)
    fast, ref = runs[True].model.state_dict(), runs[False].model.state_dict()
    for name in ref:
        torch.testing.assert_close(fast[name], ref[name], atol=1e-4, rtol=0)


def test_fast_trainer_is_deterministic(tmp_path):
    cfg = RunConfig(tiny_spec(attn_only=False),
                    TrainConfig(steps=4, batch_size=2, checkpoint_every=4, warmup_steps=1),
                    TINY_DATA)
    a = train(cfg, hub=tmp_path, run="a", progress=False, device="cpu").model.state_dict()
    b = train(cfg, hub=tmp_path, run="b", progress=False, device="cpu").model.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_optimizer_is_fused_adamw_on_cpu_and_equals_the_loop():
    """The fused AdamW kernel takes the same step as torch's per-parameter loop (to rounding)."""
    tcfg = TrainConfig(steps=3, batch_size=2)
    model = build_model(tiny_spec(), seed=0)
    opt = make_optimizer(model, tcfg)
    assert all(group["fused"] for group in opt.param_groups)
    twin = build_model(tiny_spec(), seed=0)
    loop = torch.optim.AdamW(
        [{"params": [p for n, p in twin.named_parameters() if p.requires_grad
                     and n.rsplit(".", 1)[-1].startswith("W_")],
          "weight_decay": tcfg.weight_decay},
         {"params": [p for n, p in twin.named_parameters() if p.requires_grad
                     and not n.rsplit(".", 1)[-1].startswith("W_")], "weight_decay": 0.0}],
        lr=tcfg.lr, betas=tcfg.betas, foreach=False)
    tokens = torch.randint(0, 50, (2, 24), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        for net, optimizer in ((model, opt), (twin, loop)):
            optimizer.zero_grad()
            fast_lm_loss(net, tokens).backward()
            optimizer.step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_unembed_cross_entropy_equals_the_plain_loss_under_any_upstream_gradient(dtype):
    gen = torch.Generator().manual_seed(5)
    leaves = [torch.randn(shape, generator=gen, dtype=dtype, requires_grad=True)
              for shape in ((40, 8), (8, 30), (30,))]
    targets = torch.randint(0, 30, (40,), generator=gen)
    grads = []
    for fused in (False, True):
        for leaf in leaves:
            leaf.grad = None
        resid, w_u, b_u = leaves
        if fused:
            loss = _UnembedCrossEntropy.apply(resid, w_u, b_u, targets)
        else:
            loss = F.cross_entropy(resid @ w_u + b_u, targets)
        (2.5 * loss).backward()  # an upstream gradient other than 1 must scale every gradient
        grads.append((loss.detach(), [leaf.grad.clone() for leaf in leaves]))
    (plain, plain_grads), (fused_loss, fused_grads) = grads
    torch.testing.assert_close(fused_loss, plain)
    for ours, reference in zip(fused_grads, plain_grads, strict=True):
        torch.testing.assert_close(ours, reference)
