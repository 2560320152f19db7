"""Attention-head ablations: full and pattern-preserving, exact and fast (Argument 3).

Implements the paper's appendix "(2) Per-token losses (attention head ablations)" and the two
views of "Ablation attribution to phase change" (Model Analysis Table):

* **Full ablation**: "run the model, replacing the ablated attention head's result vector with
  a zero vector"; every downstream query, key, value and pattern is recomputed.
* **Pattern-preserving ablation** (the one in the paper's table): "Step 1: run the model ...
  saving all attention patterns. Step 2: run the model a second time. Replace the ablated
  attention head's result vector with a zero vector, and force all attention patterns to be
  the version recorded in the first run." Only downstream value paths change.

Zeroing a head's *result* (its ``z @ W_O``) is what zeroing ``hook_z`` does; the layer's
output bias ``b_O`` belongs to no head and stays.

Why this module does not just call ``run_with_hooks`` once per head (that reference lives in
``tests/test_ablations.py`` and the fast path here equals it to 1e-5 in float32): it skips work
that cannot change the answer.

1. **One clean run per batch, shared by every head.** It records the residual stream after each
   layer's attention (``resid_mid``), every head's ``z`` and, for the pattern-preserving kind,
   every attention pattern. Ablating head ``(l, h)`` restarts from ``resid_mid[l] - z_h W_O^h``:
   layers before ``l`` are never recomputed.
2. **Frozen patterns need no queries, keys or softmax.** Downstream of the ablated head, a
   pattern-preserving pass computes only LayerNorm, values, ``pattern @ v`` and ``W_O``.
3. **Only the positions the metrics need.** The reported metrics read a few context indices per
   example (the random token, and the two indices of the in-context-learning score). Once no
   attention layer follows, everything is position-wise, so the last layer's attention output
   (its queries, for the full kind), the MLP, the final LayerNorm, the unembedding and the
   log-softmax run at those positions only. Ablating a head of the last layer costs just that.
4. **Streaming.** Examples go through in batches sized from a memory budget
   (:func:`default_batch_size`); the reducers keep running sums, so memory does not grow with
   the evaluation set.

What cannot be skipped: a full ablation changes every downstream query and key, so each
downstream layer but the last is recomputed in full (attention included). The pattern-preserving
kind is therefore much cheaper than the full kind, and its reference (which must run
TransformerLens's masked attention to force patterns) much dearer; ``benchmarks/
bench_ablation.py`` measures both against the floor of unembedding the needed positions.

Several heads can also be ablated together (``ablate(..., jointly=True)``), e.g. every induction
head at once when a model has redundant ones; heads of the set in later layers are zeroed as
those layers are recomputed.

Stacking the ablations of several heads of one layer into one pass (``heads_per_pass``) is an
option. The full kind stacks them along the batch (their downstream patterns differ, nothing is
shared); on CPU that measured 0.8-1.07x, i.e. not faster. The pattern-preserving kind shares every
frozen pattern, so its stacked pass widens each ``pattern @ v`` product instead (4 heads of
16: the product costs ~2x one head's, not 4x, measured), but end to end on 2 CPU cores this was
within noise of one head per pass (0.92 s vs 1.00 s for 128 examples of the laptop
``attn-only-4l``), so the default is 1. On a GPU, where small products leave the device idle,
stacking may pay; it has not been measured there (no GPU was available for this work).

Other readouts. The engine ends in a *readout* of the final residual stream at the needed
positions: for the language models the final LayerNorm, unembedding and next-token loss. A
network that feeds continuous inputs into its first block and reads one position with its own
head (Reddy 2023's classifier network, :mod:`induction_lens.measures.reddy`) uses the same clean
pass, frozen patterns and single-position last layer through :func:`ablate_readout`, with its
readout returning per-example statistics (loss and correctness) instead of a next-token loss.

Outputs. :func:`ablate` returns an :class:`AblationResult` (tensors; ``to_frame()`` tidies
small ones). :func:`ablation_metrics` streams an evaluation set and returns the per-head
reports as a tidy frame (:mod:`induction_lens.frame`; the ablation kind in the ``kind``
column); :func:`induction_lens.runs.ablate_run` does that for every checkpoint of a hub run
through the metric registry and its cache. Metric names are listed in :data:`ABLATION_REPORTS`.

Level: ``measures`` (pure: a model and tokens in, tensors or a one-model frame out).
"""

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import einops
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer
from transformer_lens.components import Attention, LayerNorm, LayerNormPre

from induction_lens.errors import EvalError
from induction_lens.frame import model_frame
from induction_lens.measures._checks import check_tokens
from induction_lens.measures.losses import icl_indices, random_token_indices

logger = logging.getLogger(__name__)

__all__ = [
    "ABLATION_VERSION",
    "AblationError",
    "AblationKind",
    "AblationResult",
    "Readout",
    "ABLATION_REPORTS",
    "ReadoutAblation",
    "ablate",
    "ablate_readout",
    "ablation_metrics",
    "before_after_vector",
    "check_kind",
    "clean_losses",
    "default_batch_size",
]

AblationKind = Literal["pattern", "full"]
"""``"pattern"``: pattern-preserving (the paper's table); ``"full"``: everything recomputed."""

ABLATION_VERSION = 1
"""Bumped whenever a change alters the numbers; a cached parquet of another version is redone."""

HeadIndex = tuple[int, int]


class AblationError(EvalError):
    """Bad input to an ablation; the message names the argument and the fix.

    An :class:`~induction_lens.measures._checks.EvalError` (hence a ``ConfigError``), so the
    command line reports it as one line.
    """


# ---------------------------------------------------------------------------- validation
_UNSUPPORTED: tuple[tuple[str, Any, str], ...] = (
    # (config field, value it must have, what it is)
    ("use_split_qkv_input", False, "split q/k/v inputs"),
    ("use_attn_in", False, "per-head attention inputs"),
    ("n_key_value_heads", None, "grouped-query attention"),
    ("use_qk_norm", False, "QK normalisation"),
    ("clip_qkv", None, "q/k/v clipping"),
    ("use_logn_attn", False, "log-n attention scaling"),
    ("use_local_attn", False, "local attention"),
    ("parallel_attn_mlp", False, "parallel attention and MLP"),
    ("use_normalization_before_and_after", False, "normalisation after each sublayer"),
    ("use_attention_sinks", False, "attention sinks"),
    ("load_in_4bit", False, "4-bit weights"),
    ("num_experts", None, "mixture-of-experts MLPs"),
    ("attention_dir", "causal", "bidirectional attention"),
    ("n_devices", 1, "models split over several devices"),
)


def _check_model(model: HookedTransformer) -> None:
    """Refuse models whose forward pass the fast path does not reproduce exactly."""
    if not isinstance(model, HookedTransformer):
        raise AblationError(f"model must be a transformer_lens HookedTransformer, not "
                            f"{type(model).__name__}")
    cfg = model.cfg
    for name, wanted, what in _UNSUPPORTED:
        if getattr(cfg, name, wanted) != wanted:
            raise AblationError(f"ablations do not support {what} (cfg.{name}="
                                f"{getattr(cfg, name)!r}); use a standard pre-LN model")
    if cfg.positional_embedding_type not in ("standard", "shortformer"):
        raise AblationError(f"ablations support 'standard' and 'shortformer' positions, not "
                            f"cfg.positional_embedding_type={cfg.positional_embedding_type!r}")
    if cfg.attn_scores_soft_cap > 0 or cfg.output_logits_soft_cap > 0:
        raise AblationError("ablations do not support soft-capped scores or logits "
                            "(cfg.attn_scores_soft_cap / output_logits_soft_cap)")
    if cfg.attn_types is not None and any(t != "global" for t in cfg.attn_types):
        raise AblationError(f"ablations support global attention only (cfg.attn_types="
                            f"{cfg.attn_types!r})")
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    if cfg.original_architecture in POST_NORM_ARCHITECTURES:
        raise AblationError(f"ablations do not support post-norm architectures "
                            f"({cfg.original_architecture})")
    for layer, block in enumerate(model.blocks):
        if not isinstance(block.attn, Attention):
            raise AblationError(f"blocks.{layer}.attn is a {type(block.attn).__name__}; "
                                "ablations support transformer_lens Attention (and subclasses)")
    hooked = [name for name, hp in model.hook_dict.items()
              if hp._forward_hooks or hp._forward_pre_hooks]
    if hooked:
        raise AblationError(f"the model has hooks attached ({', '.join(hooked[:3])}"
                            f"{' ...' if len(hooked) > 3 else ''}), which the fast path would "
                            "ignore; call model.reset_hooks() first")


def check_kind(kind: str) -> AblationKind:
    if kind not in get_args(AblationKind):
        raise AblationError(f"kind={kind!r} is not one of {get_args(AblationKind)}; "
                            "'pattern' is the paper's pattern-preserving ablation")
    return kind  # type: ignore[return-value]


def _check_heads(model: HookedTransformer, heads: Sequence[HeadIndex] | None) -> list[HeadIndex]:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if heads is None:
        return [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    out: list[HeadIndex] = []
    for item in heads:
        try:
            layer, head = (int(v) for v in item)
        except (TypeError, ValueError):
            raise AblationError(f"heads must be (layer, head) pairs, got {item!r}") from None
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise AblationError(f"head ({layer}, {head}) is out of range: the model has "
                                f"{n_layers} layer(s) of {n_heads} head(s), indices from 0")
        out.append((layer, head))
    if len(set(out)) != len(out):
        raise AblationError(f"heads contains duplicates: {out}; list each head once")
    if not out:
        raise AblationError("heads is empty; pass at least one (layer, head) pair, or None for "
                            "every head")
    return out


def _check_indices(indices: Tensor | None, n_examples: int, n_pos: int) -> Tensor | None:
    """Context indices as a ``[batch, n_index]`` long tensor, or None for every index."""
    if indices is None:
        return None
    indices = torch.as_tensor(indices)
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise AblationError(f"indices must be integer context indices, got {indices.dtype}")
    if indices.ndim == 1:
        indices = einops.repeat(indices, "n_index -> batch n_index", batch=n_examples)
    if indices.ndim != 2 or indices.shape[0] != n_examples or indices.shape[1] < 1:
        raise AblationError(f"indices must have shape [n_index] or [batch={n_examples}, n_index]"
                            f", got {tuple(indices.shape)}")
    if int(indices.min()) < 1 or int(indices.max()) > n_pos - 1:
        raise AblationError(f"context indices must lie in [1, {n_pos - 1}] (index 0 is the "
                            f"first token and has no loss), got [{int(indices.min())}, "
                            f"{int(indices.max())}]")
    return indices.long()


# ---------------------------------------------------------------------------- memory
def default_batch_size(model: HookedTransformer, n_pos: int, kind: AblationKind, *,
                       heads_per_pass: int = 1, memory_budget: int = 512 * 2**20,
                       max_batch: int = 64) -> int:
    """Examples per batch so that the engine's tensors stay within ``memory_budget`` bytes.

    Per example the engine holds the clean run's ``resid_mid`` and ``z`` for every layer, every
    layer's ``[head, pos, pos]`` pattern (pattern-preserving kind only), the transient scores
    of one layer (about three ``[head, pos, pos]`` tensors while the softmax runs) and, per head
    in flight, a handful of ``[pos, d_model]`` residuals and an MLP hidden layer. The estimate
    is deliberately generous (float32, no reuse). ``max_batch`` caps it: 64 examples already
    make matmuls large enough to keep a CPU busy, and smaller batches bound the memory.
    """
    cfg = model.cfg
    T, d, L, H = n_pos, cfg.d_model, cfg.n_layers, cfg.n_heads
    d_mlp = 0 if cfg.attn_only else (cfg.d_mlp or 4 * d)
    G = heads_per_pass
    floats = 2 * L * T * d + 3 * H * T * T + G * (8 * T * d + 2 * T * d_mlp)
    if kind == "pattern":  # frozen patterns of every layer, shared by the stacked ablations
        floats += L * H * T * T
    else:  # each stacked ablation's scores
        floats += G * 3 * H * T * T
    per_example = 4 * floats
    return int(max(1, min(max_batch, memory_budget // per_example)))


# ---------------------------------------------------------------------------- engine
@dataclass
class _CleanRun:
    """What one clean forward pass leaves behind for the ablated passes of a batch."""

    tokens: Int[Tensor, "batch pos"]
    resid_mid: list[Float[Tensor, "batch _pos d_model"]]
    """Residual stream after each layer's attention (before its MLP, if any). With ``rows``,
    the last layer's entry (like its ``z`` and pattern) holds only those positions."""
    z: list[Float[Tensor, "batch _pos head_index d_head"]]
    patterns: list[Float[Tensor, "head_index batch _query_pos key_pos"] | None] | None
    """Pattern-preserving kind: each layer's attention pattern, heads first (None for layer 0,
    which no ablated pass recomputes); None for the full kind."""
    pos_embed: Float[Tensor, "batch pos d_model"] | None
    """Shortformer positional embedding (added to query/key inputs only), else None."""
    rows: Int[Tensor, "batch n_index"] | None
    """Residual positions whose next-token loss is wanted (context index - 1); None: all."""
    targets: Int[Tensor, "batch n_index"]
    losses: Float[Tensor, "batch n_index *stat"]
    """Clean losses at those positions (a readout may add trailing statistics)."""
    readout: "Readout"
    """What turns the final residual stream at ``rows`` into ``losses``."""


def _gather_rows(x: Tensor, rows: Tensor) -> Tensor:
    """``x[b, rows[b, k]]`` for x of shape ``[batch, pos, ...]`` and rows ``[batch, n_index]``."""
    batch_idx = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[batch_idx, rows]


def _final_losses(model: HookedTransformer, resid: Float[Tensor, " batch *rest d_model"],
                  targets: Int[Tensor, " batch *rest"]) -> Float[Tensor, " batch *rest"]:
    """Final LayerNorm, unembedding and next-token cross-entropy at the given positions only."""
    if model.cfg.normalization_type is not None:
        resid = _norm(model.ln_final, resid)
    logits = einops.rearrange(model.unembed(resid), "batch ... d_vocab -> batch d_vocab ...")
    return F.cross_entropy(logits, targets, reduction="none")


Readout = Callable[[HookedTransformer, Tensor, Tensor], Tensor]
"""``readout(model, resid, targets) -> stats``: the readout of the final residual stream.

``resid`` is ``[*lead, d_model]`` at the read positions and ``targets`` the matching
``[*lead]`` integer targets, where ``lead`` is ``batch, n_index`` with the ablations of one
pass along an extra axis (``batch, n_index, group`` for the pattern-preserving kind, ``(group
batch), n_index`` for the full kind); ``stats`` is ``[*lead, *stat]``: a loss per position
(the language models' :func:`_final_losses`, the default) or, for another readout such as a
classifier's, several numbers per position (e.g. loss and correctness). The engine subtracts
clean from ablated statistics elementwise, so every statistic must be a per-example number
whose change means something (a loss, a 0/1 correctness).
"""


def _causal_pattern(q: Float[Tensor, "batch query_pos head_index d_head"],
                    k: Float[Tensor, "batch key_pos head_index d_head"], attn_scale: float,
                    query_rows: Int[Tensor, "batch query_pos"] | None = None, *,
                    heads_first: bool = False) -> Tensor:
    """TransformerLens's attention pattern: scaled scores, causal mask, softmax.

    ``query_rows`` gives the position of each query when only some queries are computed
    (each attends to keys at positions ``<= row``); None means a query at every position.
    The scale and the mask are fused into one ``baddbmm`` (``mask + scores / scale``), which
    gives TransformerLens's values to float32 rounding at about half the cost of
    ``scores / scale`` followed by ``masked_fill``.

    Returns:
        ``[batch, head_index, query_pos, key_pos]``, or with ``heads_first`` the contiguous
        ``[head_index, batch, query_pos, key_pos]`` that the pattern-preserving passes use.
    """
    order = "(head_index batch)" if heads_first else "(batch head_index)"
    n_query, n_heads = q.shape[1], q.shape[2]
    key_pos = torch.arange(k.shape[1], device=k.device)
    if query_rows is None:
        query_pos = torch.arange(n_query, device=q.device)
        future = key_pos[None, :] > query_pos[:, None]
    else:
        future = einops.repeat(key_pos[None, None, :] > query_rows[:, :, None],
                               f"batch query_pos key_pos -> {order} query_pos key_pos",
                               head_index=n_heads)
    mask = torch.zeros(future.shape, dtype=q.dtype, device=q.device).masked_fill_(
        future, float("-inf"))
    scores = torch.baddbmm(
        mask,
        einops.rearrange(q, f"batch query_pos head_index d_head -> {order} query_pos d_head"),
        einops.rearrange(k, f"batch key_pos head_index d_head -> {order} d_head key_pos"),
        alpha=1.0 / attn_scale)
    out = "head_index batch" if heads_first else "batch head_index"
    return einops.rearrange(torch.softmax(scores, dim=-1), f"{order} query_pos key_pos -> {out} "
                            "query_pos key_pos", head_index=n_heads)


def _attend(pattern: Float[Tensor, "... head_index query_pos key_pos"],
            v: Float[Tensor, "... head_index key_pos d_head"]) -> Tensor:
    return pattern @ v


def _project_out(attn: Attention, z: Float[Tensor, "batch pos head_index d_head"]
                 ) -> Float[Tensor, "batch pos d_model"]:
    """``z @ W_O + b_O`` summed over heads, as TransformerLens computes it."""
    w = einops.rearrange(attn.W_O, "head_index d_head d_model -> d_model (head_index d_head)")
    return F.linear(einops.rearrange(z, "batch pos head_index d_head -> batch pos "
                                        "(head_index d_head)"), w, attn.b_O)


def _norm(ln: torch.nn.Module, x: Tensor) -> Tensor:
    """Apply TransformerLens norm module ``ln``; its LayerNorm and LayerNormPre as one kernel.

    ``F.layer_norm`` computes the same function as TransformerLens's LayerNorm (centre, divide
    by ``sqrt(mean(x^2) + eps)``, scale and shift) in one pass instead of eight elementwise
    ones, which matters on the ablated passes; values agree to float32 rounding. Other norms
    (RMS, none) and low-precision models use the module itself.
    """
    if x.dtype in (torch.float32, torch.float64):
        if type(ln) is LayerNorm:
            return F.layer_norm(x, ln.w.shape, ln.w, ln.b, ln.eps)
        if type(ln) is LayerNormPre:
            return F.layer_norm(x, x.shape[-1:], None, None, ln.eps)
    return ln(x)


def _mlp(block, resid: Tensor) -> Tensor:
    return resid + block.mlp(_norm(block.ln2, resid))


def _clean_run(model: HookedTransformer, tokens: Int[Tensor, "batch pos"] | None,
               kind: AblationKind, rows: Int[Tensor, "batch n_index"] | None, *,
               resid: Float[Tensor, "batch pos d_model"] | None = None,
               targets: Int[Tensor, "batch n_index"] | None = None,
               readout: Readout = _final_losses) -> _CleanRun:
    """The un-ablated forward pass, recording what every ablated pass restarts from.

    Token ids go through the model's embedding; alternatively ``resid`` is the residual stream
    fed straight into the first block (a network whose inputs are continuous vectors, like
    ``forward(..., start_at_layer=0)``), and then ``rows`` and ``targets`` must be given.
    """
    if resid is None:
        resid, _, pos_embed, mask = model.input_to_embed(tokens)
        if mask is not None:
            raise AblationError("ablations do not support padded inputs (an attention mask was "
                                "built: left padding side); pass unpadded token tensors")
    else:
        pos_embed = None  # start_at_layer: no embedding (nor shortformer positions) is added
    resid_mid, zs, patterns = [], [], []
    last = model.cfg.n_layers - 1
    for layer, block in enumerate(model.blocks):
        attn = block.attn
        x = _norm(block.ln1, resid)
        qk_in = x if pos_embed is None else x + pos_embed
        sparse = rows is not None and layer == last
        if sparse:
            # Nothing position-mixing follows: queries (and everything after) at ``rows`` only.
            q, k, v = attn.calculate_qkv_matrices(_gather_rows(qk_in, rows), qk_in, x)
            resid = _gather_rows(resid, rows)
        else:
            q, k, v = attn.calculate_qkv_matrices(qk_in, qk_in, x)  # smears keys if Lens
        # Frozen patterns are read only downstream of an ablated head: never layer 0's.
        if sparse or (kind == "pattern" and layer > 0):
            pattern = _causal_pattern(q, k, attn.attn_scale, rows if sparse else None,
                                      heads_first=True)
            z = einops.rearrange(
                _attend(pattern, einops.rearrange(v, "batch pos head_index d_head -> head_index "
                                                     "batch pos d_head")),
                "head_index batch pos d_head -> batch pos head_index d_head")
            patterns.append(pattern)
        else:
            patterns.append(None)  # the fused kernel: same function, no pattern materialised
            z = einops.rearrange(F.scaled_dot_product_attention(
                *(einops.rearrange(t, "batch pos head_index d_head -> batch head_index pos d_head")
                  for t in (q, k, v)), is_causal=True, scale=1.0 / attn.attn_scale),
                "batch head_index pos d_head -> batch pos head_index d_head")
        zs.append(z)
        resid = resid + _project_out(attn, z)
        resid_mid.append(resid)
        if not model.cfg.attn_only:
            resid = _mlp(block, resid)
    if targets is not None:
        final = resid
    elif rows is None:
        final, targets = resid[:, :-1], tokens[:, 1:]
    else:
        final, targets = resid, tokens.gather(1, rows + 1)
    return _CleanRun(tokens=tokens, resid_mid=resid_mid, z=zs,
                     patterns=patterns if kind == "pattern" else None, pos_embed=pos_embed,
                     rows=rows, targets=targets, losses=readout(model, final, targets),
                     readout=readout)


Ablation = tuple[HeadIndex, ...]
"""The heads one ablation zeroes together (a single head in the paper's experiments)."""


def _zeroed(ablations: Sequence[Ablation], n_layers: int, n_heads: int
            ) -> Bool[Tensor, "group n_layers n_heads"]:
    zeroed = torch.zeros(len(ablations), n_layers, n_heads, dtype=torch.bool)
    for g, ablation in enumerate(ablations):
        for lay, head in ablation:
            zeroed[g, lay, head] = True
    return zeroed


def _contribution(z: Float[Tensor, "batch pos head_index d_head"],
                  W_O: Float[Tensor, "head_index d_head d_model"],
                  zeroed: Bool[Tensor, "group head_index"]
                  ) -> Float[Tensor, "batch pos group d_model"]:
    """Each ablation's zeroed heads' summed result vectors ``z_h W_O^h`` in one layer."""
    if bool((zeroed.sum(-1) == 1).all()):  # one head per ablation: index it
        heads = zeroed.float().argmax(-1).tolist()
        return einops.einsum(z[:, :, heads], W_O[heads], "batch pos group d_head, group d_head "
                             "d_model -> batch pos group d_model")
    return einops.einsum(z, zeroed.to(z.dtype).to(z.device), W_O, "batch pos head_index d_head, "
                         "group head_index, head_index d_head d_model -> batch pos group d_model")


def _pattern_preserving_losses(model: HookedTransformer, clean: _CleanRun,
                               ablations: Sequence[Ablation]
                               ) -> Float[Tensor, "group batch n_index"]:
    """Losses under each of ``ablations`` (all starting in one layer) with frozen patterns.

    The ``group`` ablations share every frozen pattern, so they travel together in a residual
    stream laid out ``[batch, pos, group, d_model]`` (position-wise operations do not care),
    and every ``pattern @ v`` product serves all of them at once: values are computed head by
    head straight into ``[head_index, batch, pos, (group d_head)]``, multiplied by the
    heads-first patterns in one ``bmm`` whose width is ``group * d_head`` (a 4-head-wide product
    costs ~2x a one-head one on CPU, not 4x), and projected by ``W_O`` head by head into the
    residual layout. No tensor is ever permuted.
    """
    G, cfg = len(ablations), model.cfg
    n_layers, H, e, d = cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model
    layer = min(lay for lay, _ in ablations[0])
    zeroed = _zeroed(ablations, n_layers, H)
    rows = clean.rows
    z, base = clean.z[layer], clean.resid_mid[layer]  # at ``rows`` only in the last layer
    resid = (base[:, :, None, :] - _contribution(z, model.blocks[layer].attn.W_O,
                                                 zeroed[:, layer])).contiguous()
    if not cfg.attn_only:
        resid = _mlp(model.blocks[layer], resid)
    for m in range(layer + 1, n_layers):
        block = model.blocks[m]
        attn = block.attn
        x = _norm(block.ln1, resid).reshape(-1, d)  # [(batch pos group), d_model]
        batch, n_pos = resid.shape[:2]
        v = x.new_empty(H, batch, n_pos, G * e)
        for h in range(H):
            torch.addmm(attn.b_V[h], x, attn.W_V[h], out=v[h].view(-1, e))
        pattern = clean.patterns[m]  # [head, batch, query, key]; last layer: needed rows only
        n_query = pattern.shape[2]
        z_m = torch.bmm(pattern.reshape(H * batch, n_query, n_pos),
                        v.view(H * batch, n_pos, G * e)).view(H, batch, n_query, G, e)
        for g, h in zeroed[:, m].nonzero().tolist():  # heads of a joint ablation in this layer
            z_m[h, :, :, g] = 0.0
        if n_query != n_pos:
            resid = _gather_rows(resid, rows)
        out = (resid + attn.b_O).reshape(-1, d)  # [(batch query group), d_model]
        for h in range(H):
            out.addmm_(z_m[h].reshape(-1, e), attn.W_O[h])
        resid = out.view(batch, n_query, G, d)
        if not cfg.attn_only:
            resid = _mlp(block, resid)
    if rows is None:
        resid = resid[:, :-1]
    targets = einops.repeat(clean.targets, "batch n -> batch n group", group=G)
    losses = clean.readout(model, resid, targets)
    return einops.rearrange(losses, "batch n group ... -> group batch n ...")


def _full_losses(model: HookedTransformer, clean: _CleanRun, ablations: Sequence[Ablation]
                 ) -> Float[Tensor, "group batch n_index"]:
    """Losses under each of ``ablations`` (all starting in one layer), everything recomputed.

    The ``group`` ablations ride along the batch dimension (``(group batch)``, group
    outermost): their downstream patterns differ, so nothing is shared. Each restarts from the
    cached ``resid_mid`` of its first layer minus the zeroed heads' results; heads of an
    ablation in later layers are zeroed as those layers are recomputed.
    """
    G, cfg = len(ablations), model.cfg
    n_layers = cfg.n_layers
    layer = min(lay for lay, _ in ablations[0])
    zeroed = _zeroed(ablations, n_layers, cfg.n_heads)
    rows = clean.rows
    rows_g = None if rows is None else einops.repeat(rows, "batch n -> (group batch) n", group=G)
    z, base = clean.z[layer], clean.resid_mid[layer]  # at ``rows`` only in the last layer
    contribution = _contribution(z, model.blocks[layer].attn.W_O, zeroed[:, layer])
    resid = einops.rearrange(base[:, :, None, :] - contribution,
                             "batch pos group d_model -> (group batch) pos d_model")
    if not cfg.attn_only:
        resid = _mlp(model.blocks[layer], resid)
    pe = clean.pos_embed
    if pe is not None and G > 1:
        pe = einops.repeat(pe, "batch pos d_model -> (group batch) pos d_model", group=G)
    for m in range(layer + 1, n_layers):
        block = model.blocks[m]
        attn = block.attn
        x = _norm(block.ln1, resid)
        qk_in = x if pe is None else x + pe
        if rows is not None and m == n_layers - 1:  # queries at the needed rows only
            q, k, v = attn.calculate_qkv_matrices(_gather_rows(qk_in, rows_g), qk_in, x)
            z_m = einops.rearrange(
                _attend(_causal_pattern(q, k, attn.attn_scale, rows_g),
                        einops.rearrange(v, "batch pos head_index d_head -> batch head_index "
                                            "pos d_head")),
                "batch head_index n d_head -> batch n head_index d_head")
            resid = _gather_rows(resid, rows_g)
        else:
            q, k, v = attn.calculate_qkv_matrices(qk_in, qk_in, x)
            z_m = einops.rearrange(F.scaled_dot_product_attention(
                *(einops.rearrange(t, "batch pos head_index d_head -> batch head_index pos "
                                      "d_head") for t in (q, k, v)),
                is_causal=True, scale=1.0 / attn.attn_scale),
                "batch head_index pos d_head -> batch pos head_index d_head")
        if bool(zeroed[:, m].any()):  # heads of a joint ablation in this layer
            keep = einops.repeat((~zeroed[:, m]).to(z_m.dtype).to(z_m.device),
                                 "group head_index -> (group batch) 1 head_index 1",
                                 batch=z_m.shape[0] // G)
            z_m = z_m * keep
        resid = resid + _project_out(attn, z_m)
        if not cfg.attn_only:
            resid = _mlp(block, resid)
    if rows is None:
        resid = resid[:, :-1]
    targets = einops.repeat(clean.targets, "batch n -> (group batch) n", group=G)
    losses = clean.readout(model, resid, targets)
    return einops.rearrange(losses, "(group batch) n ... -> group batch n ...", group=G)


def _passes(ablations: Sequence[Ablation], per_pass: int
            ) -> Iterator[tuple[list[Ablation], list[int]]]:
    """Chunks of at most ``per_pass`` ablations sharing a first layer, with their positions."""
    by_layer: dict[int, list[int]] = {}
    for i, ablation in enumerate(ablations):
        by_layer.setdefault(min(lay for lay, _ in ablation), []).append(i)
    for layer in sorted(by_layer):
        idx = by_layer[layer]
        for start in range(0, len(idx), per_pass):
            chunk = idx[start:start + per_pass]
            yield [ablations[i] for i in chunk], chunk


def _model_device(model: HookedTransformer) -> torch.device:
    return next(model.parameters()).device


def _ablate_batch(model: HookedTransformer, tokens: Tensor | None, kind: AblationKind,
                  ablations: Sequence[Ablation], rows: Tensor | None, heads_per_pass: int,
                  **inputs: Any) -> tuple[Tensor, Tensor]:
    """Clean losses ``[batch, n]`` and ablated-minus-clean ``[ablation, batch, n]`` (plus any
    trailing statistics of the readout). ``inputs``: ``resid``, ``targets``, ``readout`` of
    :func:`_clean_run`."""
    clean = _clean_run(model, tokens, kind, rows, **inputs)
    delta = torch.empty((len(ablations), *clean.losses.shape), dtype=clean.losses.dtype,
                        device=clean.losses.device)
    for chunk, where in _passes(ablations, heads_per_pass):
        losses = (_pattern_preserving_losses(model, clean, chunk) if kind == "pattern"
                  else _full_losses(model, clean, chunk))
        delta[where] = losses - clean.losses
    return clean.losses, delta


# ---------------------------------------------------------------------------- public API
@dataclass
class AblationResult:
    """Per-token loss changes of single-head ablations (see :func:`ablate`)."""

    kind: AblationKind
    heads: list[HeadIndex]
    """The ablated heads, in the order of ``delta``'s first axis."""
    indices: Int[Tensor, "batch n_index"]
    """Context index of each loss (the loss at index ``i`` predicts token ``i``)."""
    clean: Float[Tensor, "batch n_index"]
    """Losses (nats) of the un-ablated model."""
    delta: Float[Tensor, "head batch n_index"]
    """Ablated minus clean loss: positive where the head helped. One row per head, or a single
    row when ``jointly``."""
    jointly: bool = False
    """True when all ``heads`` were ablated together."""

    def to_frame(self) -> pd.DataFrame:
        """Long form ``layer, head, metric="loss_delta", value, position, example, kind``.

        One row per (head, example, index): meant for small inputs; reduce large ones with
        :func:`ablation_metrics` instead. A joint ablation has null ``layer``/``head``.
        """
        n_heads, n_examples, n_index = self.delta.shape
        layers = pd.array([pd.NA if self.jointly else h[0] for h in self.heads][:n_heads],
                          dtype="Int64")
        head_ids = pd.array([pd.NA if self.jointly else h[1] for h in self.heads][:n_heads],
                            dtype="Int64")
        return model_frame(pd.DataFrame({
            "layer": np.repeat(layers, n_examples * n_index),
            "head": np.repeat(head_ids, n_examples * n_index),
            "example": np.tile(np.repeat(np.arange(n_examples), n_index), n_heads),
            "position": np.tile(self.indices.numpy().reshape(-1), n_heads),
            "metric": "loss_delta",
            "value": self.delta.numpy().reshape(-1).astype(np.float64),
            "kind": self.kind,
        }))


def _batches(n: int, batch_size: int, *, split_at: int | None = None) -> Iterator[slice]:
    bounds = [0, n] if split_at is None or not 0 < split_at < n else [0, split_at, n]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        for start in range(lo, hi, batch_size):
            yield slice(start, min(start + batch_size, hi))


def _resolve_batch_size(model: HookedTransformer, n_pos: int, kind: AblationKind,
                        batch_size: int | None, heads_per_pass: int) -> int:
    if batch_size is None:
        return default_batch_size(model, n_pos, kind, heads_per_pass=heads_per_pass)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise AblationError(f"batch_size={batch_size!r} must be a positive integer")
    return batch_size


def _check_heads_per_pass(heads_per_pass: int) -> int:
    if not isinstance(heads_per_pass, int) or heads_per_pass < 1:
        raise AblationError(f"heads_per_pass={heads_per_pass!r} must be a positive integer")
    return heads_per_pass


@torch.inference_mode()
def ablate(model: HookedTransformer, tokens: Int[Tensor, "batch pos"],
           kind: AblationKind = "pattern", heads: Sequence[HeadIndex] | None = None, *,
           indices: Int[Tensor, "batch n_index"] | Int[Tensor, " n_index"] | None = None,
           jointly: bool = False, batch_size: int | None = None, heads_per_pass: int = 1,
           progress: bool = False) -> AblationResult:
    """Per-token loss changes when each head is ablated on its own.

    Paper, appendix "(2) Per-token losses (attention head ablations)": each head's result
    vector is replaced by zeros, one head at a time. ``kind="full"`` recomputes everything
    downstream; ``kind="pattern"`` (the Model Analysis Table's) forces every attention pattern
    to its clean value so that only value paths change. Equal (to float32 rounding) to one
    ``run_with_hooks`` per head; see the module docstring for how work is skipped.

    Args:
        model: any standard pre-LN ``HookedTransformer`` (attention-only or with MLPs, LN,
            LNPre, RMS or no normalisation, standard or shortformer positions, smeared keys).
            It must have no hooks attached.
        tokens: token ids, at most ``n_ctx`` long.
        kind: "pattern" or "full".
        heads: ``(layer, head)`` pairs; None ablates every head.
        jointly: ablate all ``heads`` together in a single ablation (``delta`` then has one
            row) instead of one at a time, e.g. to knock out every induction head at once.
        indices: context indices at which to report the loss, per example ``[batch, n]`` or
            shared ``[n]``, each in ``[1, pos - 1]``; None reports every index (then column
            ``j`` is index ``j + 1``, the package convention). Fewer indices are much faster.
        batch_size: examples per pass; None sizes batches from a ~512 MiB budget.
        heads_per_pass: ablations starting in the same layer computed in one stacked pass
            (see the module docstring; 1 is as fast as any on CPU, more may pay on a GPU).
        progress: show a tqdm bar over batches.

    Returns:
        An :class:`AblationResult` with CPU float32 tensors.
    """
    kind = check_kind(kind)
    _check_model(model)
    tokens = check_tokens(model, tokens)
    head_list = _check_heads(model, heads)
    ablations = [tuple(head_list)] if jointly else [(h,) for h in head_list]
    n_examples, n_pos = tokens.shape
    idx = _check_indices(indices, n_examples, n_pos)
    heads_per_pass = _check_heads_per_pass(heads_per_pass)
    batch_size = _resolve_batch_size(model, n_pos, kind, batch_size, heads_per_pass)
    device = _model_device(model)
    cleans, deltas = [], []
    for sl in tqdm(list(_batches(n_examples, batch_size)), disable=not progress,
                   desc=f"{kind} ablation", unit="batch"):
        rows = None if idx is None else (idx[sl] - 1).to(device)
        c, d = _ablate_batch(model, tokens[sl].to(device), kind, ablations, rows,
                             heads_per_pass)
        cleans.append(c.float().cpu())
        deltas.append(d.float().cpu())
    n_index = n_pos - 1 if idx is None else idx.shape[1]
    clean = torch.cat(cleans) if cleans else torch.empty(0, n_index)
    delta = torch.cat(deltas, dim=1) if deltas else torch.empty(len(ablations), 0, n_index)
    if idx is None:
        idx = einops.repeat(torch.arange(1, n_pos), "n -> batch n", batch=n_examples)
    return AblationResult(kind=kind, heads=head_list, indices=idx, clean=clean, delta=delta,
                          jointly=jointly)


@dataclass
class ReadoutAblation:
    """Per-example readout statistics under head ablations (see :func:`ablate_readout`)."""

    kind: AblationKind
    heads: list[HeadIndex]
    """The ablated heads, in the order of ``delta``'s first axis (one row when ``jointly``)."""
    clean: Float[Tensor, " batch *stat"]
    """The readout's statistics (e.g. loss, correctness) of the un-ablated model."""
    delta: Float[Tensor, " ablation batch *stat"]
    """Ablated minus clean statistics."""
    jointly: bool = False

    @property
    def ablated(self) -> Float[Tensor, " ablation batch *stat"]:
        """The statistics under each ablation (``clean + delta``)."""
        return self.clean[None] + self.delta


@torch.inference_mode()
def ablate_readout(model: HookedTransformer, inputs: Float[Tensor, "batch pos d_model"],
                   targets: Int[Tensor, " batch"], readout: Readout,
                   kind: AblationKind = "pattern", heads: Sequence[HeadIndex] | None = None, *,
                   position: int = -1, jointly: bool = False, batch_size: int | None = None,
                   heads_per_pass: int = 1, progress: bool = False) -> ReadoutAblation:
    """Head ablations of a network that reads one position of its residual stream.

    The same engine as :func:`ablate` (one shared clean pass, frozen patterns for
    ``kind="pattern"``, only the read position in the last layer), for networks that take
    continuous inputs as the residual stream of the first block (``start_at_layer=0``) and
    read one position with their own head instead of the unembedding, e.g. Reddy 2023's
    classifier (:func:`induction_lens.measures.reddy.head_ablation`). Equal, to float32
    rounding, to one ``run_with_hooks`` per head that zeroes the head's ``hook_z`` (and, for
    ``"pattern"``, forces every ``hook_pattern`` to its clean value).

    Args:
        model: a ``HookedTransformer`` as in :func:`ablate` (no hooks attached).
        inputs: the residual stream fed to block 0, ``[batch, pos, d_model]``.
        targets: one integer target per example, passed to ``readout``.
        readout: ``readout(model, resid, targets) -> stats`` (see :data:`Readout`), applied
            to the final residual at ``position`` (``n_index`` = 1) with any leading axes.
        kind: "pattern" (pattern-preserving, Olsson et al.'s) or "full".
        heads: ``(layer, head)`` pairs; None: every head.
        position: the read position (default the last, -1).
        jointly, batch_size, heads_per_pass, progress: see :func:`ablate`.

    Returns:
        A :class:`ReadoutAblation` with CPU float32 tensors (``clean`` ``[batch, *stat]``).
    """
    kind = check_kind(kind)
    _check_model(model)
    inputs = torch.as_tensor(inputs)
    d_model, n_ctx = model.cfg.d_model, model.cfg.n_ctx
    if (inputs.ndim != 3 or not inputs.dtype.is_floating_point or inputs.shape[-1] != d_model
            or inputs.shape[1] < 1):
        raise AblationError(f"inputs must be a float residual stream [batch, pos, {d_model}], got "
                            f"{inputs.dtype} of shape {tuple(inputs.shape)}")
    n_examples, n_pos = inputs.shape[:2]
    if n_pos > n_ctx:
        raise AblationError(f"inputs have {n_pos} positions but the model's n_ctx is {n_ctx}; "
                            "shorten them")
    targets = torch.as_tensor(targets)
    if (targets.dtype.is_floating_point or targets.dtype == torch.bool
            or targets.shape != (n_examples,)):
        raise AblationError(f"targets must be integers of shape ({n_examples},), one per "
                            f"example, got {targets.dtype} of shape {tuple(targets.shape)}")
    if not isinstance(position, int) or not -n_pos <= position < n_pos:
        raise AblationError(f"position={position!r} must be an integer in [{-n_pos}, "
                            f"{n_pos - 1}] (-1: the last position)")
    if not callable(readout):
        raise AblationError("readout must be callable: readout(model, resid, targets) -> stats")
    head_list = _check_heads(model, heads)
    ablations = [tuple(head_list)] if jointly else [(h,) for h in head_list]
    heads_per_pass = _check_heads_per_pass(heads_per_pass)
    batch_size = _resolve_batch_size(model, n_pos, kind, batch_size, heads_per_pass)
    device = _model_device(model)
    dtype = next(model.parameters()).dtype
    row = position % n_pos
    cleans, deltas = [], []
    for sl in tqdm(list(_batches(n_examples, batch_size)), disable=not progress,
                   desc=f"{kind} ablation", unit="batch"):
        n = sl.stop - sl.start
        rows = torch.full((n, 1), row, dtype=torch.long, device=device)
        c, d = _ablate_batch(model, None, kind, ablations, rows, heads_per_pass,
                             resid=inputs[sl].to(device=device, dtype=dtype),
                             targets=targets[sl, None].long().to(device), readout=readout)
        cleans.append(c[:, 0].float().cpu())
        deltas.append(d[:, :, 0].float().cpu())
    if not cleans:
        raise AblationError("inputs hold no examples; pass at least one sequence")
    return ReadoutAblation(kind=kind, heads=head_list, clean=torch.cat(cleans),
                           delta=torch.cat(deltas, dim=1), jointly=jointly)


@torch.inference_mode()
def clean_losses(model: HookedTransformer, tokens: Int[Tensor, "batch pos"],
                 indices: Int[Tensor, "batch n_index"] | Int[Tensor, " n_index"], *,
                 batch_size: int | None = None) -> Float[Tensor, "batch n_index"]:
    """Un-ablated losses at the given context indices only (unembedding just those positions)."""
    _check_model(model)
    tokens = check_tokens(model, tokens)
    n_examples, n_pos = tokens.shape
    idx = _check_indices(indices, n_examples, n_pos)
    batch_size = _resolve_batch_size(model, n_pos, "full", batch_size, 1)
    device = _model_device(model)
    out = [_clean_run(model, tokens[sl].to(device), "full", (idx[sl] - 1).to(device)
                      ).losses.float().cpu() for sl in _batches(n_examples, batch_size)]
    return torch.cat(out) if out else torch.empty(0, idx.shape[1])


# ---------------------------------------------------------------------------- reports
ABLATION_REPORTS: dict[str, str] = {
    "icl_score_delta": "change of the in-context-learning score (loss at the late index minus "
                       "loss at the early index, averaged over examples) when the head is "
                       "ablated; positive: the head contributed in-context learning",
    "before_after_projection": "dot product of the change of the random-token-per-example loss "
                               "vector with the unit before-and-after vector; negative: "
                               "ablating the head undoes the phase change",
    "random_token_loss_delta": "change of the mean random-token-per-example loss",
    "context_loss_delta": "change of the context-index average loss at ``position`` (over the "
                          "leading ``context_fraction`` of the examples)",
    "clean_icl_score": "in-context-learning score of the un-ablated model (model-level)",
    "clean_random_token_loss": "mean random-token-per-example loss of the un-ablated model "
                               "(model-level)",
}
"""Metric names of :func:`ablation_metrics` (the ablation kind is the ``kind`` column)."""

DEFAULT_CONTEXT_FRACTION = 0.1
"""Share of the examples (the leading ones) whose every index feeds ``context_loss_delta``.

The other reports read three context indices per example; the context-index average reads all
of them, which costs the full unembedding and log-softmax at every position (on the laptop
``attn-only-4l`` that alone is several times the rest of a pattern-preserving ablation, see
``benchmarks/bench_ablation.py``). Averaging it over the first 10% of the examples (1,000 of
the paper's 10,000) keeps the total close to the three-index cost; the per-position mean is
then an unbiased estimate whose standard error is the spread of the per-token loss change
divided by ~32 at paper size. Pass ``context_fraction=1.0`` for every example (exact, slower).
"""


def before_after_vector(start: Float[Tensor, " batch"], end: Float[Tensor, " batch"]
                        ) -> Float[Tensor, " batch"]:
    """The unit "before-and-after" vector: ``(end - start) / |end - start|``.

    Paper, "Ablation attribution to phase change": the random-token-per-example loss vector of
    the "phase change end" snapshot minus that of the "phase change start" snapshot,
    "normalized to a unit vector". Both vectors must use the same examples and indices.
    """
    start, end = torch.as_tensor(start, dtype=torch.float64), torch.as_tensor(end,
                                                                              dtype=torch.float64)
    if start.shape != end.shape or start.ndim != 1:
        raise AblationError(f"start and end loss vectors must be 1-D and the same length, got "
                            f"{tuple(start.shape)} and {tuple(end.shape)}")
    diff = end - start
    norm = float(diff.norm())
    if not math.isfinite(norm) or norm == 0.0:
        raise AblationError("the loss vectors at the window's start and end are identical (or "
                            "not finite); choose a window that spans the phase change")
    return diff / norm


def _example_columns(delta: Tensor, rand: Tensor, early: int, late: int
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """From every-index losses ``[..., batch, pos - 1]``: the random, early and late columns."""
    cols = (rand - 1).expand(*delta.shape[:-1])[..., None]
    return delta.gather(-1, cols)[..., 0], delta[..., early - 1], delta[..., late - 1]


@torch.inference_mode()
def ablation_metrics(model: HookedTransformer, tokens: Int[Tensor, "batch pos"],
                     kind: AblationKind = "pattern", heads: Sequence[HeadIndex] | None = None, *,
                     random_indices: Int[Tensor, " batch"] | None = None,
                     before_after: Float[Tensor, " batch"] | None = None,
                     icl: tuple[int, int] | None = None,
                     context_fraction: float = DEFAULT_CONTEXT_FRACTION,
                     batch_size: int | None = None, heads_per_pass: int = 1,
                     progress: bool = False) -> pd.DataFrame:
    """The per-head ablation reports of the Model Analysis Table, streamed over ``tokens``.

    Paper, "Ablation attribution to phase change": for each head, the change of the
    in-context-learning score and the projection of the change of the random-token-per-example
    loss vector on the unit before-and-after vector; plus the change of the mean random-token
    loss and of the context-index average loss (:data:`ABLATION_REPORTS`). Conventions are those of
    :mod:`induction_lens.measures.losses`: the ICL score reads context indices
    :func:`~induction_lens.measures.losses.icl_indices` (50 and 500, scaled to shorter contexts),
    the random index per example is :func:`~induction_lens.measures.losses.random_token_indices`.

    Memory does not grow with the number of examples: each batch is reduced to running sums.

    Args:
        model: see :func:`ablate`.
        tokens: the evaluation set (the paper: 10,000 examples of the full context).
        kind: "pattern" (the paper's table) or "full".
        heads: ``(layer, head)`` pairs; None: every head.
        random_indices: each example's random context index (default
            :func:`~induction_lens.measures.losses.random_token_indices` with seed 0).
        before_after: the before-and-after vector over the same examples (normalised here);
            None leaves out ``before_after_projection``.
        icl: explicit (early, late) ICL-score indices (default: the paper's, scaled).
        context_fraction: share of the examples, from the first, that feed
            ``context_loss_delta`` (see :data:`DEFAULT_CONTEXT_FRACTION`); 1.0: all; 0: none.
        batch_size, heads_per_pass, progress: see :func:`ablate`.

    Returns:
        A tidy one-model frame ``layer, head, metric, value, position, kind`` (nullable
        integers; model-level rows have null layer/head; only ``context_loss_delta`` has a
        position; ``kind`` is the ablation kind).
    """
    kind = check_kind(kind)
    _check_model(model)
    tokens = check_tokens(model, tokens)
    head_list = _check_heads(model, heads)
    n_examples, n_pos = tokens.shape
    early, late = icl_indices(n_pos, icl)
    if random_indices is None:
        random_indices = random_token_indices(n_examples, n_pos)
    rand = _check_indices(torch.as_tensor(random_indices).reshape(-1, 1), n_examples, n_pos)[:, 0]
    unit = None
    if before_after is not None:
        before_after = torch.as_tensor(before_after, dtype=torch.float64)
        if before_after.shape != (n_examples,):
            raise AblationError(f"before_after has shape {tuple(before_after.shape)}; it needs "
                                f"one entry per example ({n_examples},)")
        norm = float(before_after.norm())
        if not math.isfinite(norm) or norm == 0.0:
            raise AblationError("before_after is zero or not finite; it cannot be normalised")
        unit = before_after / norm
    if not isinstance(context_fraction, int | float) or not 0 <= context_fraction <= 1:
        raise AblationError(f"context_fraction={context_fraction!r} must be a number in [0, 1] "
                            "(1: every example feeds the context-index average)")
    n_context = math.ceil(context_fraction * n_examples)
    heads_per_pass = _check_heads_per_pass(heads_per_pass)
    batch_size = _resolve_batch_size(model, n_pos, kind, batch_size, heads_per_pass)
    device = _model_device(model)

    H = len(head_list)
    sums = {k: torch.zeros(H, dtype=torch.float64) for k in ("rand", "early", "late", "proj")}
    clean_sums = {k: torch.zeros((), dtype=torch.float64) for k in ("rand", "early", "late")}
    context_sum = torch.zeros(H, n_pos - 1, dtype=torch.float64)
    for sl in tqdm(list(_batches(n_examples, batch_size, split_at=n_context)),
                   disable=not progress, desc=f"{kind} ablation", unit="batch", leave=False):
        r = rand[sl]
        dense = sl.start < n_context
        if dense:
            rows = None
        else:
            idx = torch.stack([r, torch.full_like(r, early), torch.full_like(r, late)], dim=1)
            rows = (idx - 1).to(device)
        clean, delta = _ablate_batch(model, tokens[sl].to(device), kind,
                                     [(h,) for h in head_list], rows, heads_per_pass)
        clean, delta = clean.double().cpu(), delta.double().cpu()
        if dense:
            context_sum += delta.sum(dim=1)
            d_rand, d_early, d_late = _example_columns(delta, r, early, late)
            c_rand, c_early, c_late = _example_columns(clean, r, early, late)
        else:
            d_rand, d_early, d_late = delta.unbind(-1)
            c_rand, c_early, c_late = clean.unbind(-1)
        for key, value in (("rand", d_rand), ("early", d_early), ("late", d_late)):
            sums[key] += value.sum(dim=-1)
        for key, value in (("rand", c_rand), ("early", c_early), ("late", c_late)):
            clean_sums[key] += value.sum()
        if unit is not None:
            sums["proj"] += d_rand @ unit[sl]

    layers = [h[0] for h in head_list]
    head_ids = [h[1] for h in head_list]
    per_head = {"icl_score_delta": (sums["late"] - sums["early"]) / n_examples,
                "random_token_loss_delta": sums["rand"] / n_examples}
    if unit is not None:
        per_head["before_after_projection"] = sums["proj"]
    frames = [pd.DataFrame({"layer": layers, "head": head_ids,
                            "metric": name, "value": values.numpy()})
              for name, values in per_head.items()]
    frames.append(pd.DataFrame({
        "metric": ["clean_icl_score", "clean_random_token_loss"],
        "value": [float(clean_sums["late"] - clean_sums["early"]) / n_examples,
                  float(clean_sums["rand"]) / n_examples]}))
    if n_context:
        frames.append(pd.DataFrame({
            "layer": np.repeat(layers, n_pos - 1), "head": np.repeat(head_ids, n_pos - 1),
            "metric": "context_loss_delta",
            "position": np.tile(np.arange(1, n_pos), H),
            "value": (context_sum / n_context).numpy().reshape(-1)}))
    frame = model_frame(frames, columns=("position",))
    frame["kind"] = kind
    return model_frame(frame)


# ---------------------------------------------------------------------------- head types


# ---------------------------------------------------------------------------- over a run


# ---------------------------------------------------------------------------- CLI


