"""Build the paper's models as TransformerLens ``HookedTransformer``s.

Every model is a stock ``HookedTransformer`` whose attention modules are
:class:`LensAttention`, a subclass of TransformerLens's ``Attention`` that adds two things and
changes nothing else:

* **Smeared keys** (Argument 2, "Model Details"): for each head a trainable real ``alpha``
  (``blocks.{l}.attn.smear_alpha``, in the state dict) mixes each key with the previous
  position's key, ``k_j <- sigmoid(alpha) k_j + (1 - sigmoid(alpha)) k_{j-1}``; the first
  position is left unchanged. Following TransformerLens's own convention for rotary keys
  (``hook_k`` then ``hook_rot_k``), ``hook_k`` still shows the projected key and the new hook
  point ``hook_smeared_k`` shows the mixed key that the attention scores use.
* **Fused attention**: when nothing is hooked on the attention scores or pattern (and no KV
  cache or padding mask is used), the softmax(QK^T)V step runs through
  ``torch.nn.functional.scaled_dot_product_attention``. It computes the same function as
  TransformerLens's masked attention (checked equal in the tests) without materialising the
  masked score matrix; ``run_with_cache`` and any hook on ``hook_attn_scores``/``hook_pattern``
  switch back to the reference path automatically.
"""

import contextlib
import warnings
from collections.abc import Iterator

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.components import Attention, Embed, LayerNorm, LayerNormPre
from transformer_lens.hook_points import HookPoint

from induction_lens.config import ModelSpec

__all__ = ["LensAttention", "LensLayerNorm", "LensLayerNormPre", "build_model", "hooked_config",
           "fused_attention", "smear_keys"]


@contextlib.contextmanager
def quiet_deprecation() -> Iterator[None]:
    """Silence only TransformerLens 3.9's "HookedTransformer is deprecated" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HookedTransformer is deprecated.*",
                                category=DeprecationWarning)
        yield


def smear_keys(
    k: Float[Tensor, "batch key_pos head_index d_head"],
    alpha: Float[Tensor, " head_index"],
) -> Float[Tensor, "batch key_pos head_index d_head"]:
    """Mix every key with the previous position's key: ``s k_j + (1 - s) k_{j-1}``.

    Here ``s = sigmoid(alpha)``, one per head.

    The first position has no predecessor and is returned unchanged (the paper: "in the case
    of the very first token in the context, no interpolation happens"). ``s = 1`` returns the
    keys bit for bit and ``s = 0`` returns exactly the previous keys.
    """
    s = einops.rearrange(torch.sigmoid(alpha), "head_index -> 1 1 head_index 1").to(k.dtype)
    mixed = s * k[:, 1:] + (1 - s) * k[:, :-1]
    return torch.cat([k[:, :1], mixed], dim=1)


def _has_hooks(point: HookPoint) -> bool:
    return bool(point._forward_hooks or point._forward_pre_hooks or point._backward_hooks)


class LensEmbed(Embed):
    """TransformerLens's token embedding with a reproducible gradient.

    ``W_E[tokens]`` backpropagates through an accumulating ``index_put_`` whose sums, on CPU
    with more than one thread, come out in a different order on every call, so two identical
    training runs drift apart. ``F.embedding`` gives the same values and a deterministic
    gradient.
    """

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        embedded = F.embedding(tokens, self.W_E)
        return self.ln(embedded) if self.cfg.post_embedding_ln else embedded


class _FusedNormMixin:
    """``F.layer_norm`` in place of TransformerLens's step-by-step LayerNorm when nothing hooks it.

    TransformerLens normalises in five elementwise operations so that ``hook_scale`` and
    ``hook_normalized`` can see the intermediates; ``F.layer_norm`` computes the same function
    (mean-centred, biased variance plus ``eps`` under the root) in one kernel, several times
    faster forward and backward on CPU. Whenever either hook point has a hook (``run_with_cache``,
    ``run_with_hooks``) or ``fused`` is False, the TransformerLens code runs unchanged.
    """

    fused: bool = True

    def _fused_ok(self, x: Tensor) -> bool:
        return (self.fused and x.dtype == self.cfg.dtype
                and x.dtype in (torch.float32, torch.float64)
                and not _has_hooks(self.hook_scale) and not _has_hooks(self.hook_normalized))


class LensLayerNorm(_FusedNormMixin, LayerNorm):
    """TransformerLens ``LayerNorm`` with a fused path (see :class:`_FusedNormMixin`)."""

    def forward(self, x: Float[Tensor, "... length"]) -> Float[Tensor, "... length"]:
        if not self._fused_ok(x):
            return super().forward(x)
        return F.layer_norm(x, (self.length,), self.w, self.b, self.eps)


class LensLayerNormPre(_FusedNormMixin, LayerNormPre):
    """TransformerLens ``LayerNormPre`` (no gain or bias) with a fused path."""

    def forward(self, x: Float[Tensor, "... length"]) -> Float[Tensor, "... length"]:
        if not self._fused_ok(x):
            return super().forward(x)
        return F.layer_norm(x, (x.shape[-1],), None, None, self.eps)


def _lens_norm(norm: nn.Module, cfg: HookedTransformerConfig) -> nn.Module:
    """The fused-capable replacement of a freshly built TransformerLens normalisation module."""
    if type(norm) is LayerNorm:
        return LensLayerNorm(cfg, length=norm.length)
    if type(norm) is LayerNormPre:
        return LensLayerNormPre(cfg)
    return norm


class LensAttention(Attention):
    """TransformerLens ``Attention`` plus optional smeared keys and a fused fast path."""

    def __init__(self, cfg: HookedTransformerConfig, *, layer_id: int, smeared: bool,
                 fused: bool = True):
        super().__init__(cfg, "global", layer_id)
        self.smeared = smeared
        self.fused = fused
        if smeared:
            # Initialised at 0 (sigmoid = 0.5: an even mix), learned from there.
            self.smear_alpha = nn.Parameter(torch.zeros(cfg.n_heads, dtype=cfg.dtype))
            self.hook_smeared_k = HookPoint()  # [batch, pos, head_index, d_head]

    def calculate_qkv_matrices(self, query_input, key_input, value_input):
        q, k, v = super().calculate_qkv_matrices(query_input, key_input, value_input)
        if self.smeared:
            k = self.hook_smeared_k(smear_keys(k, self.smear_alpha))
        return q, k, v

    def _fused_ok(self, past_kv_cache_entry, additive_attention_mask, attention_mask,
                  position_bias) -> bool:
        cfg = self.cfg
        return (
            self.fused
            and past_kv_cache_entry is None
            and additive_attention_mask is None
            and attention_mask is None
            and position_bias is None
            and not cfg.use_attn_result
            and cfg.attention_dir == "causal"
            and cfg.attn_scores_soft_cap <= 0
            and not _has_hooks(self.hook_attn_scores)
            and not _has_hooks(self.hook_pattern)
        )

    def forward(self, query_input, key_input, value_input, past_kv_cache_entry=None,
                additive_attention_mask=None, attention_mask=None, position_bias=None):
        if self.smeared and past_kv_cache_entry is not None:
            raise ValueError(
                "smeared-key models cannot use a KV cache (the first new key needs the previous "
                "one); call generate(..., use_past_kv_cache=False)"
            )
        if not self._fused_ok(past_kv_cache_entry, additive_attention_mask, attention_mask,
                              position_bias):
            return super().forward(query_input, key_input, value_input, past_kv_cache_entry,
                                   additive_attention_mask, attention_mask, position_bias)
        q, k, v = self.calculate_qkv_matrices(query_input, key_input, value_input)
        pattern_v = F.scaled_dot_product_attention(
            einops.rearrange(q, "batch pos head_index d_head -> batch head_index pos d_head"),
            einops.rearrange(k, "batch pos head_index d_head -> batch head_index pos d_head"),
            einops.rearrange(v, "batch pos head_index d_head -> batch head_index pos d_head"),
            is_causal=True,
            scale=1.0 / self.attn_scale,
        )
        z = self.hook_z(
            einops.rearrange(pattern_v,
                             "batch head_index pos d_head -> batch pos head_index d_head")
        )
        w = einops.rearrange(self.W_O, "head_index d_head d_model -> d_model (head_index d_head)")
        return F.linear(
            einops.rearrange(z, "batch pos head_index d_head -> batch pos (head_index d_head)"),
            w,
            self.b_O,
        )


def hooked_config(spec: ModelSpec, *, seed: int | None = 0,
                  device: str | torch.device | None = None) -> HookedTransformerConfig:
    """The ``HookedTransformerConfig`` of a :class:`ModelSpec` (smeared keys excluded).

    Choices: GPT-2 style initialisation (TransformerLens default), ``attn_only`` for the
    attention-only series, ``d_mlp = 4 d_model`` unless given, and no tokenizer (the hub
    attaches the run's own). ``seed`` seeds the weight initialisation (TransformerLens calls
    ``torch.manual_seed`` with it).
    """
    return HookedTransformerConfig(
        n_layers=spec.n_layers,
        d_model=spec.d_model,
        n_heads=spec.n_heads,
        d_head=spec.d_head,
        n_ctx=spec.n_ctx,
        d_vocab=spec.d_vocab,
        d_mlp=spec.mlp_width,
        attn_only=spec.attn_only,
        act_fn=None if spec.attn_only else spec.act_fn,
        normalization_type=spec.normalization_type,
        positional_embedding_type=spec.positional_embedding_type,
        seed=seed,
        device=str(device) if device is not None else "cpu",
        default_prepend_bos=True,
    )


def build_model(spec: ModelSpec, *, seed: int | None = 0,
                device: str | torch.device | None = None) -> HookedTransformer:
    """A freshly initialised ``HookedTransformer`` for ``spec``.

    The attention modules are :class:`LensAttention` (smeared keys when ``spec.smeared_keys``),
    the LayerNorms :class:`LensLayerNorm` / :class:`LensLayerNormPre` (fused when unhooked) and
    the embedding is :class:`LensEmbed` (a deterministic gradient); everything else is
    stock TransformerLens, so hooks, ``run_with_cache``, ``model.QK`` / ``model.OV`` and
    ``state_dict`` work as usual. The same ``seed`` gives the same weights.

    The key biases ``b_K`` stay in the state dict but are frozen at zero (``requires_grad``
    False): a key bias adds ``q . b_K`` to every score of a query, which the softmax cancels
    (with smeared keys too, as both mixed keys carry it), so its exact gradient is zero. Left
    trainable, Adam turns the rounding noise of that zero gradient into full-size steps, which
    made resumed runs differ from uninterrupted ones on some CPUs.

    Args:
        spec: the architecture.
        seed: initialisation seed (``None`` leaves the global RNG untouched).
        device: where to put the model (default CPU).
    """
    cfg = hooked_config(spec, seed=seed, device=device)
    with quiet_deprecation():
        model = HookedTransformer(cfg, move_to_device=False)
    model.embed = LensEmbed(cfg)
    if hasattr(model, "ln_final"):
        model.ln_final = _lens_norm(model.ln_final, cfg)
    for layer, block in enumerate(model.blocks):
        for name in ("ln1", "ln2"):
            if hasattr(block, name):
                setattr(block, name, _lens_norm(getattr(block, name), cfg))
        block.attn = LensAttention(cfg, layer_id=layer, smeared=spec.smeared_keys)
    model.init_weights()  # re-seeds, so replacing the attention modules keeps init deterministic
    model.setup()  # register the new hook points
    for block in model.blocks:
        block.attn.b_K.requires_grad_(False)
    if device is not None:
        model.to(torch.device(device), print_details=False)
    return model


@contextlib.contextmanager
def fused_attention(model: HookedTransformer, enabled: bool) -> Iterator[HookedTransformer]:
    """Temporarily switch the fused paths (:class:`LensAttention` and the LayerNorms) on or off.

    Off, every module runs TransformerLens's own code: the reference the fused paths are tested
    against, and what ``TrainConfig.fused_attention=False`` trains with.
    """
    modules = [m for m in model.modules() if isinstance(m, (LensAttention, _FusedNormMixin))]
    before = [m.fused for m in modules]
    for m in modules:
        m.fused = enabled
    try:
        yield model
    finally:
        for m, was in zip(modules, before, strict=True):
            m.fused = was
