"""Per-token losses and their views: the ICL score, the context-index heatmap and its log
derivative, per-token-loss PCA and token-level diffs between snapshots.

The spec is the paper's appendix "Data Collection", "(1) Per-token losses (unaltered models)",
and "Analyses", "Per-token losses" (loss curve, 2D in-context learning plot, 2D loss derivative
plot, in-context learning score, PCA); the ICL score itself is defined in "Key Concepts".

Convention used by every evaluator of this package: the loss at context index ``i`` is the
cross-entropy of predicting token ``i`` from tokens ``0..i-1``. Index 0 (the BOS token) has no
loss, so a ``[batch, n_ctx]`` token tensor gives ``[batch, n_ctx - 1]`` losses whose column
``j`` is context index ``j + 1``.

Speed and memory: losses are streamed in batches of examples and, inside a batch, the final
LayerNorm, unembedding and cross-entropy run on chunks of at most ``logits_budget`` logits, so
neither the logits of the evaluation set nor those of one batch are ever held at once (at paper
scale one batch of 64 x 512 tokens would be 2^31 logits). When only some context indices are
needed (the random-token-per-example vector, the ICL score) only those positions are unembedded
(:func:`losses_at`); LayerNorm acts on each position separately, so this is exact.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import einops
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.utilities import apply_softcap

from induction_lens.constants import BOS_TOKEN_ID
from induction_lens.measures._checks import (
    EvalError,
    check_batch_size,
    check_tokens,
    eval_mode,
    model_device,
)

__all__ = [
    "ICL_PAPER_INDICES",
    "LossSummary",
    "icl_indices",
    "icl_score",
    "losses_at",
    "per_token_losses",
    "random_token_indices",
    "summarise_losses",
    "token_loss_diff",
]

ICL_PAPER_INDICES = (50, 500)
"""The paper's context indices for the ICL score, on examples of :data:`ICL_PAPER_LENGTH`."""
ICL_PAPER_LENGTH = 512
"""Length of the paper's evaluation examples."""
LOGITS_BUDGET = 2**22
"""Default largest number of logits materialised at once (16 MiB of float32)."""


# --------------------------------------------------------------------------- indices
def _round_half_even(x: float) -> int:
    """``x`` to the nearest integer, halves to the even neighbour (12.5 -> 12, 37.5 -> 38):
    Python's ``round``, named so the rule is visible where the ICL indices are scaled."""
    return int(round(x))


def icl_indices(seq_len: int, indices: tuple[int, int] | Sequence[int] | None = None
                ) -> tuple[int, int]:
    """The (early, late) context indices of the ICL score for examples of ``seq_len`` tokens.

    Default: the paper's 50 and 500 ("Key Concepts", on 512-token examples) when examples have
    at least 512 tokens, else scaled to the example length, ``round(50/512 * seq_len)`` and
    ``round(500/512 * seq_len)`` (12 and 125 for the laptop context of 128), so that the two
    indices keep their place in the context. Explicit ``indices`` are checked, not scaled.

    The rounding is our choice, and it is Python's ``round``: halves go to the even neighbour
    (banker's rounding), not up. It matters exactly at the laptop context: ``50/512 * 128`` is
    12.5 exactly (``50/512 = 25/256`` is exact in binary), which rounds to 12 where rounding half
    up (``math.floor(x + 0.5)``) would give 13; ``500/512 * 128 = 125`` is an integer either way.
    The late index is clamped to ``seq_len - 1`` and the early one to at least 1. We keep 12,
    the value every cached ICL score of the laptop runs was computed with.

    Raises:
        EvalError: when an index is outside ``[1, seq_len - 1]`` (index 0 is BOS and has no
            loss) or the early index is not before the late one.
    """
    if seq_len < 3:
        raise EvalError(f"the ICL score needs examples of at least 3 tokens, got {seq_len}")
    if indices is None:
        if seq_len >= ICL_PAPER_LENGTH:
            early, late = ICL_PAPER_INDICES
        else:
            early = max(1, _round_half_even(ICL_PAPER_INDICES[0] / ICL_PAPER_LENGTH * seq_len))
            late = min(seq_len - 1,
                       _round_half_even(ICL_PAPER_INDICES[1] / ICL_PAPER_LENGTH * seq_len))
    else:
        if len(indices) != 2:
            raise EvalError(f"ICL indices must be two context indices (early, late), got "
                            f"{tuple(indices)}")
        early, late = (int(i) for i in indices)
    for name, value in (("early", early), ("late", late)):
        if not 1 <= value <= seq_len - 1:
            raise EvalError(f"ICL {name} index {value} is outside the context: examples have "
                            f"{seq_len} tokens, so indices must be in [1, {seq_len - 1}]")
    if early >= late:
        raise EvalError(f"ICL indices ({early}, {late}) must satisfy early < late")
    return early, late


def random_token_indices(n_examples: int, seq_len: int, *, seed: int = 0
                         ) -> Int[Tensor, " batch"]:
    """One random context index per example, in ``[1, seq_len - 1]``, fixed by ``seed``.

    The appendix's "random token per example": "For each example, we extract the loss for just
    one random token [...] (The random index used for each example is consistent between each
    model.)" The indices depend only on (``n_examples``, ``seq_len``, ``seed``), so every model
    and snapshot evaluated on the same set gets the same ones.
    """
    if seq_len < 2:
        raise EvalError(f"examples need at least 2 tokens for a loss, got {seq_len}")
    rng = np.random.default_rng(seed)  # the first k indices do not depend on n_examples
    return torch.from_numpy(rng.integers(1, seq_len, size=n_examples).astype(np.int64))


# --------------------------------------------------------------------------- core
def _final_residual(model: HookedTransformer, tokens: Tensor) -> Tensor:
    """The residual stream after the last block (before the final LayerNorm)."""
    return model(tokens, stop_at_layer=model.cfg.n_layers)


def _row_losses(model: HookedTransformer, resid: Float[Tensor, "rows d_model"],
                targets: Int[Tensor, " rows"], budget: int) -> Float[Tensor, " rows"]:
    """Cross-entropy of ``targets`` from residual rows, unembedding ``budget`` logits at a time."""
    rows = max(1, budget // model.cfg.d_vocab)
    out = []
    for start in range(0, resid.shape[0], rows):
        chunk = resid[None, start:start + rows]  # [1, rows, d_model]: the shape TL modules expect
        if model.cfg.normalization_type is not None:
            chunk = model.ln_final(chunk)
        logits = apply_softcap(model.unembed(chunk), model.cfg.output_logits_soft_cap)[0]
        out.append(F.cross_entropy(logits.float(), targets[start:start + rows],
                                   reduction="none"))
    return torch.cat(out) if out else resid.new_zeros(0)


def _check_budget(budget: int) -> int:
    if not isinstance(budget, int) or budget < 1:
        raise EvalError(f"logits_budget={budget!r} must be a positive integer")
    return budget


@torch.no_grad()
def per_token_losses(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], *,
                     batch_size: int = 64, logits_budget: int = LOGITS_BUDGET
                     ) -> Float[Tensor, "batch pos_minus_1"]:
    """Next-token losses (nats) of every position, streamed in batches of ``batch_size``.

    Column ``j`` is the loss at context index ``j + 1`` (see the module docstring). The result
    holds one number per token; logits are materialised ``logits_budget`` at a time.
    """
    tokens = check_tokens(model, tokens)
    check_batch_size(batch_size)
    _check_budget(logits_budget)
    device = model_device(model)
    out = []
    with eval_mode(model):
        for start in range(0, tokens.shape[0], batch_size):
            chunk = tokens[start:start + batch_size].to(device)
            resid = _final_residual(model, chunk)[:, :-1]
            flat = einops.rearrange(resid, "batch pos d_model -> (batch pos) d_model")
            targets = einops.rearrange(chunk[:, 1:], "batch pos -> (batch pos)")
            losses = _row_losses(model, flat, targets, logits_budget)
            out.append(einops.rearrange(losses, "(batch pos) -> batch pos",
                                        batch=chunk.shape[0]).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def losses_at(model: HookedTransformer, tokens: Int[Tensor, "batch pos"],
              positions: Int[Tensor, "batch k"], *, batch_size: int = 64,
              logits_budget: int = LOGITS_BUDGET) -> Float[Tensor, "batch k"]:
    """Losses at chosen context indices of each example, unembedding only those positions.

    ``out[b, m]`` is the loss at context index ``positions[b, m]`` of example ``b`` (equal to
    ``per_token_losses(model, tokens)[b, positions[b, m] - 1]``). The blocks still run on every
    position (a later token attends to all earlier ones); the saving is the unembedding and
    softmax, a large share of a small model's forward pass. Hooks added to the model (e.g. an
    ablation) apply as usual; hooks on ``ln_final`` see the gathered rows as ``[1, rows, d]``.
    """
    tokens = check_tokens(model, tokens)
    check_batch_size(batch_size)
    _check_budget(logits_budget)
    if positions.ndim != 2 or positions.shape[0] != tokens.shape[0]:
        raise EvalError(f"positions must be [batch, k] with batch = {tokens.shape[0]}, got "
                        f"{tuple(positions.shape)}")
    positions = positions.long()
    if positions.numel() and (int(positions.min()) < 1 or int(positions.max()) >= tokens.shape[1]):
        raise EvalError(f"positions must be context indices in [1, {tokens.shape[1] - 1}] "
                        f"(index 0 is BOS and has no loss), got [{int(positions.min())}, "
                        f"{int(positions.max())}]")
    device = model_device(model)
    out = []
    with eval_mode(model):
        for start in range(0, tokens.shape[0], batch_size):
            chunk = tokens[start:start + batch_size].to(device)
            pos = positions[start:start + batch_size].to(device)
            # Truncate to the last needed position: later tokens cannot affect earlier ones.
            resid = _final_residual(model, chunk[:, :int(pos.max()) + 1] if pos.numel() else chunk)
            rows = torch.arange(chunk.shape[0], device=device)[:, None].expand_as(pos)
            picked = resid[rows, pos - 1]  # [b, k, d_model]: the residual predicting token pos
            flat = einops.rearrange(picked, "b k d_model -> (b k) d_model")
            targets = einops.rearrange(chunk[rows, pos], "b k -> (b k)")
            losses = _row_losses(model, flat, targets, logits_budget)
            out.append(einops.rearrange(losses, "(b k) -> b k", b=chunk.shape[0]).float().cpu())
    return torch.cat(out)


@dataclass
class LossSummary:
    """The appendix's two summaries of one snapshot's per-token losses, plus the ICL score."""

    per_example: Float[Tensor, " batch"]
    """Random token per example: the loss at ``random_index[b]`` of example ``b``."""
    random_index: Int[Tensor, " batch"]
    """The context index drawn for each example (:func:`random_token_indices`)."""
    by_position: Float[Tensor, " pos"] | None
    """Context-index average: entry ``i`` is the mean loss at context index ``i`` (entry 0, BOS,
    is NaN); None when not requested."""
    icl_indices: tuple[int, int]
    """The (early, late) indices of the ICL score."""
    icl_losses: tuple[float, float]
    """Mean loss at the early and late index."""

    @property
    def loss(self) -> float:
        """The loss-curve value: the mean of the random-token-per-example vector ("Analyses")."""
        return float(self.per_example.double().mean())

    @property
    def icl_score(self) -> float:
        """Loss at the late index minus loss at the early index (negative: learns in context)."""
        return self.icl_losses[1] - self.icl_losses[0]


def summarise_losses(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], *,
                     random_index: Int[Tensor, " batch"] | None = None, seed: int = 0,
                     context_average: bool = True,
                     indices: tuple[int, int] | None = None, batch_size: int = 64,
                     logits_budget: int = LOGITS_BUDGET) -> LossSummary:
    """Both per-token-loss summaries and the ICL score of one model in one streamed pass.

    With ``context_average`` every position's loss is needed and computed (then reduced batch
    by batch); without it only the random index and the two ICL indices of each example are
    unembedded (:func:`losses_at`).

    Args:
        model: the snapshot.
        tokens: the evaluation set, ``[batch, pos]`` (the paper: 10,000 examples of 512 tokens).
        random_index: one context index per example; default :func:`random_token_indices`
            with ``seed``.
        seed: seed of the default random indices.
        context_average: also compute the context-index average (all positions).
        indices: (early, late) ICL indices; default :func:`icl_indices` of the example length.
        batch_size: examples per forward pass.
        logits_budget: most logits held at once.
    """
    tokens = check_tokens(model, tokens, min_len=3)
    batch, seq_len = tokens.shape
    early, late = icl_indices(seq_len, indices)
    if random_index is None:
        random_index = random_token_indices(batch, seq_len, seed=seed)
    random_index = random_index.long()
    if random_index.shape != (batch,):
        raise EvalError(f"random_index must have shape ({batch},), got "
                        f"{tuple(random_index.shape)}")
    if int(random_index.min()) < 1 or int(random_index.max()) >= seq_len:
        raise EvalError(f"random_index values must be in [1, {seq_len - 1}]")
    if context_average:
        check_batch_size(batch_size)
        sums = torch.zeros(seq_len - 1, dtype=torch.float64)
        per_example = torch.empty(batch)
        for start in range(0, batch, batch_size):
            losses = per_token_losses(model, tokens[start:start + batch_size],
                                      batch_size=batch_size, logits_budget=logits_budget)
            sums += losses.double().sum(0)
            idx = random_index[start:start + batch_size]
            per_example[start:start + batch_size] = losses[torch.arange(len(idx)), idx - 1]
        by_position = torch.cat([torch.tensor([float("nan")]), (sums / batch).float()])
        icl = (float(by_position[early]), float(by_position[late]))
    else:
        positions = torch.stack([random_index, torch.full_like(random_index, early),
                                 torch.full_like(random_index, late)], dim=1)
        picked = losses_at(model, tokens, positions, batch_size=batch_size,
                           logits_budget=logits_budget)
        per_example = picked[:, 0]
        by_position = None
        icl = (float(picked[:, 1].double().mean()), float(picked[:, 2].double().mean()))
    return LossSummary(per_example=per_example, random_index=random_index,
                       by_position=by_position, icl_indices=(early, late), icl_losses=icl)


def icl_score(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], *,
              indices: tuple[int, int] | None = None, batch_size: int = 64) -> float:
    """In-context learning score ("Key Concepts"): mean loss at the late index minus mean loss
    at the early index (the paper: token 500 minus token 50), in nats.

    Negative means later tokens are predicted better, i.e. the model learns in context. Only
    the two positions are unembedded. See :func:`icl_indices` for the defaults and scaling.
    """
    tokens = check_tokens(model, tokens, min_len=3)
    early, late = icl_indices(tokens.shape[1], indices)
    positions = torch.tensor([early, late]).expand(tokens.shape[0], 2)
    picked = losses_at(model, tokens, positions, batch_size=batch_size).double().mean(0)
    return float(picked[1] - picked[0])


# --------------------------------------------------------------------------- views


# --------------------------------------------------------------------------- token diffs
def _encode(tokenizer, text: str) -> list[int]:
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "decode") and \
            hasattr(tokenizer, "get_vocab_size"):  # tokenizers.Tokenizer
        return list(tokenizer.encode(text, add_special_tokens=False).ids)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])  # transformers


def _decode(tokenizer, token: int) -> str:
    if tokenizer is None:
        return str(token)
    return tokenizer.decode([token])


def token_loss_diff(before: HookedTransformer, after: HookedTransformer,
                    text: str | Sequence[int] | Int[Tensor, " pos"], *, tokenizer=None,
                    prepend_bos: bool = True) -> pd.DataFrame:
    """Per-token losses of one text under two snapshots and their difference.

    The paper's "B - A per-token losses on Harry Potter" ("Looking at the Phase Change More
    Closely"): run a text through the snapshot before and after the phase change and look at
    which tokens got easier (negative ``diff``, typically repeated text) or harder.

    Args:
        before: snapshot A (e.g. ``hub.load_model(run, window.start_step)``).
        after: snapshot B (e.g. ``hub.load_model(run, window.end_step)``).
        text: a string (needs a tokenizer: ``tokenizer`` or the model's own, which the hub
            attaches to natural-text runs) or token ids.
        tokenizer: a ``tokenizers.Tokenizer`` or a transformers tokenizer.
        prepend_bos: put the BOS token (id 0) first, as in training.

    Returns:
        One row per predicted token: ``position`` (context index), ``token_id``, ``token`` (its
        text, or the id for synthetic runs), ``loss_before``, ``loss_after`` and
        ``diff = loss_after - loss_before`` (nats).
    """
    if before.cfg.d_vocab != after.cfg.d_vocab:
        raise EvalError("the two snapshots have different vocabularies; compare snapshots of "
                        "one run")
    tokenizer = tokenizer if tokenizer is not None else getattr(before, "tokenizer", None)
    if isinstance(text, str):
        if tokenizer is None:
            raise EvalError("this model has no tokenizer (synthetic runs); pass token ids "
                            "instead of a string, or pass tokenizer=")
        ids = _encode(tokenizer, text)
    else:
        ids = [int(t) for t in (text.tolist() if isinstance(text, Tensor) else text)]
    if prepend_bos:
        ids = [BOS_TOKEN_ID] + ids
    if len(ids) < 2:
        raise EvalError("the text has no token to predict; pass a longer text")
    n_ctx = min(before.cfg.n_ctx, after.cfg.n_ctx)
    if len(ids) > n_ctx:
        raise EvalError(f"the text is {len(ids)} tokens (with BOS) but the context is {n_ctx}; "
                        "pass a shorter text")
    tokens = torch.tensor([ids])
    loss_a = per_token_losses(before, tokens)[0].double().numpy()
    loss_b = per_token_losses(after, tokens)[0].double().numpy()
    return pd.DataFrame({
        "position": np.arange(1, len(ids)),
        "token_id": ids[1:],
        "token": [_decode(tokenizer, t) for t in ids[1:]],
        "loss_before": loss_a,
        "loss_after": loss_b,
        "diff": loss_b - loss_a,
    })
