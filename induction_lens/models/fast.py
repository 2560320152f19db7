"""A plain-torch training forward over a ``HookedTransformer``'s own parameters.

TransformerLens computes a forward pass in many small operations so that every intermediate
can be hooked: a ``HookPoint`` call per activation, separate query / key / value einsums, the
LayerNorm applied once per attention input (three times per layer under shortformer
positions), a five-step LayerNorm, and a log-softmax + gather loss. At the laptop scale of
this package (``d_model`` 64, 2 to 4 GFLOP a training step) per-operation costs, not only the
arithmetic, set the training speed on a CPU.

:func:`fast_logits` and :func:`fast_lm_loss` compute the same function from the same
``nn.Parameter`` objects (no copies: the state dict, the checkpoints and the optimizer see
exactly the model's parameters, and the gradients land in them):

* one matrix product for the queries, keys and values of all heads, with the shortformer
  positions projected once (``[n_ctx, d_model]``, not per example) and added to the queries
  and keys only, exactly where TransformerLens adds them to the attention input;
* ``F.scaled_dot_product_attention(is_causal=True)`` (what
  :class:`~induction_lens.models.LensAttention`'s fused path uses), smeared keys included;
* ``F.layer_norm``, ``F.linear`` and the MLP's own activation function (``block.mlp.act_fn``,
  so ``gelu`` and ``gelu_new`` cannot be confused);
* the unembedding of only the positions the loss reads, fused with the cross-entropy and its
  gradient (:class:`_UnembedCrossEntropy`).

It is used by the trainer only when :func:`fast_forward_ok` holds: every fused path is on and
nothing is hooked anywhere in the model (an intervention, ``run_with_hooks``, a user's hook),
and the configuration is one this forward implements. Anything else runs the
``HookedTransformer`` itself. The tests check logits and gradients equal to TransformerLens's
own unfused code (:func:`~induction_lens.models.fused_attention` off).
"""

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.components import LayerNorm, LayerNormPre

from induction_lens.models.transformer import (
    LensAttention,
    LensEmbed,
    LensLayerNorm,
    LensLayerNormPre,
    _FusedNormMixin,
    _has_hooks,
    smear_keys,
)

__all__ = ["fast_forward_ok", "fast_lm_loss", "fast_logits"]

# Configuration fields whose non-default values this forward does not implement.
_OFF = ("use_attn_result", "use_split_qkv_input", "use_attn_in", "use_hook_mlp_in",
        "parallel_attn_mlp", "post_embedding_ln", "use_normalization_before_and_after",
        "gated_mlp", "use_qk_norm", "final_rms", "scale_attn_by_inverse_layer_idx",
        "use_local_attn", "num_experts")


def _architecture_ok(model: HookedTransformer) -> bool:
    cfg = model.cfg
    if any(getattr(cfg, name, None) for name in _OFF):
        return False
    if (cfg.positional_embedding_type not in ("standard", "shortformer")
            or cfg.normalization_type not in ("LN", "LNPre", None)
            or cfg.attention_dir != "causal" or cfg.attn_scores_soft_cap > 0
            or cfg.output_logits_soft_cap > 0 or cfg.n_key_value_heads is not None
            or cfg.original_architecture not in (None, "neel", "neel-solu-old")
            or cfg.dtype not in (torch.float32, torch.float64)):
        return False
    if type(model.embed) is not LensEmbed:
        return False
    norms = [getattr(m, n) for m in [model, *model.blocks] for n in ("ln_final", "ln1", "ln2")
             if hasattr(m, n)]
    if not all(type(n) in (LensLayerNorm, LensLayerNormPre, torch.nn.Identity) for n in norms):
        return False
    for block in model.blocks:
        if type(block.attn) is not LensAttention:
            return False
        if not cfg.attn_only and type(block.mlp).__name__ != "MLP":
            return False
    return True


def fast_forward_ok(model: HookedTransformer) -> bool:
    """Whether :func:`fast_logits` computes exactly what ``model(tokens)`` would now.

    True when the model is one :func:`~induction_lens.models.build_model` builds (causal,
    pre-LayerNorm or none, standard or shortformer positions, optional plain MLP, smeared keys or
    not), every fused path is switched on, and no hook point of the model carries a hook
    (interventions, ``run_with_hooks`` and ``hooks(...)`` contexts all register hooks, so each
    of them sends training back through the ``HookedTransformer``).
    """
    if not _architecture_ok(model):
        return False
    for module in model.modules():
        if isinstance(module, (LensAttention, _FusedNormMixin)) and not module.fused:
            return False
    if model._forward_hooks or model._forward_pre_hooks:
        return False
    return not any(_has_hooks(point) for point in model.hook_dict.values())


def _norm(module: torch.nn.Module | None, x: Tensor) -> Tensor:
    if module is None or isinstance(module, torch.nn.Identity):  # normalization_type None
        return x
    if isinstance(module, LayerNorm):
        return F.layer_norm(x, (module.length,), module.w, module.b, module.eps)
    assert isinstance(module, LayerNormPre)
    return F.layer_norm(x, (x.shape[-1],), None, None, module.eps)


def _attention(attn: LensAttention, x: Tensor, pos: Tensor | None) -> Tensor:
    """One attention layer on the normalised residual ``x`` (``pos``: shortformer positions)."""
    n_heads = attn.cfg.n_heads
    w_q = einops.rearrange(attn.W_Q, "h m d -> m (h d)")
    w_k = einops.rearrange(attn.W_K, "h m d -> m (h d)")
    w_v = einops.rearrange(attn.W_V, "h m d -> m (h d)")
    b_qkv = torch.cat([attn.b_Q.flatten(), attn.b_K.flatten(), attn.b_V.flatten()])
    w_qkv = torch.cat([w_q, w_k, w_v], dim=1)
    if pos is None:
        qkv = torch.matmul(x, w_qkv) + b_qkv
    else:  # queries and keys read residual + positions, values the residual only
        pos_qk = torch.matmul(pos, w_qkv[:, : 2 * w_q.shape[1]])
        per_position = torch.cat([pos_qk, pos_qk.new_zeros(pos_qk.shape[0], w_v.shape[1])],
                                 dim=1) + b_qkv  # [pos, 3 * h * d]: one add over the batch
        qkv = torch.matmul(x, w_qkv) + per_position
    q, k, v = einops.rearrange(qkv, "b p (three h d) -> three b h p d", three=3, h=n_heads)
    if attn.smeared:
        k = einops.rearrange(
            smear_keys(einops.rearrange(k, "b h p d -> b p h d"), attn.smear_alpha),
            "b p h d -> b h p d")
    z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / float(attn.attn_scale))
    w_o = einops.rearrange(attn.W_O, "h d m -> m (h d)")
    return F.linear(einops.rearrange(z, "b h p d -> b p (h d)"), w_o, attn.b_O)


def _residual(model: HookedTransformer, tokens: Tensor) -> Tensor:
    cfg = model.cfg
    x = F.embedding(tokens, model.embed.W_E)
    pos = model.pos_embed.W_pos[: tokens.shape[1]]
    if cfg.positional_embedding_type == "standard":
        x = x + pos
        pos = None
    for block in model.blocks:
        x = x + _attention(block.attn, _norm(block.ln1, x), pos)
        if not cfg.attn_only:
            mlp = block.mlp
            hidden = mlp.act_fn(torch.matmul(_norm(block.ln2, x), mlp.W_in) + mlp.b_in)
            x = x + (torch.matmul(hidden, mlp.W_out) + mlp.b_out)
    return _norm(getattr(model, "ln_final", None), x)


def fast_logits(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]
                ) -> Float[Tensor, "batch pos d_vocab"]:
    """``model(tokens)`` computed in plain torch (see the module docstring; check
    :func:`fast_forward_ok` first)."""
    return torch.matmul(_residual(model, tokens), model.unembed.W_U) + model.unembed.b_U


class _UnembedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``targets`` under ``resid @ W_U + b_U``, with its gradient.

    Training always differentiates the loss, so the forward pass computes the gradient of the
    logits too, in the logits' own buffer: softmax minus the one-hot targets, over the number
    of rows. ``F.cross_entropy`` keeps a log-softmax for its backward pass and recomputes the
    softmax from it there; this saves one pass over the ``[rows, d_vocab]`` logits each way,
    a large share of a laptop model's step. Checked equal, value and gradients, to
    TransformerLens's own loss in ``tests/test_fast_train.py``.
    """

    @staticmethod
    def forward(ctx, resid: Tensor, w_u: Tensor, b_u: Tensor, targets: Tensor) -> Tensor:
        logits = torch.addmm(b_u, resid, w_u)
        picked = logits.gather(1, targets[:, None])
        top = logits.amax(dim=1, keepdim=True)
        grad = logits.sub_(top).exp_()  # one exponential, in place
        total = grad.sum(dim=1, keepdim=True)
        loss = (total.log() + top - picked).mean()  # logsumexp - logit of the target
        grad.div_(total * targets.shape[0])  # the softmax over the number of rows
        grad.scatter_add_(1, targets[:, None],
                          grad.new_full((targets.shape[0], 1), -1.0 / targets.shape[0]))
        ctx.save_for_backward(resid, w_u, grad)
        return loss

    @staticmethod
    def backward(ctx, upstream: Tensor):  # type: ignore[override]
        resid, w_u, grad = ctx.saved_tensors
        # The upstream gradient is a scalar: scale the three small results, not the
        # [rows, d_vocab] buffer (one pass over it fewer).
        return ((grad @ w_u.T).mul_(upstream), (resid.T @ grad).mul_(upstream),
                grad.sum(0).mul_(upstream), None)


def fast_lm_loss(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, ""]:
    """Mean next-token cross-entropy of ``model`` on ``tokens``, unembedding only the
    positions that predict a next token (the last one predicts nothing)."""
    resid = _residual(model, tokens)[:, :-1]
    return _UnembedCrossEntropy.apply(resid.reshape(-1, resid.shape[-1]), model.unembed.W_U,
                                      model.unembed.b_U, tokens[:, 1:].reshape(-1))
