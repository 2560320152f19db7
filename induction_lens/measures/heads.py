"""Head activation evaluators: prefix matching, copying and previous-token attention.

The paper's appendix "Data Collection", "(3) Head activation evaluators", is the spec; the
"Model Analysis Table" row "Prefix matching score" and "Key Concepts" (the definition of an
induction head: a head that does both prefix matching and copying) say what the scores are for.
Each evaluator is a plain function of a ``HookedTransformer`` and token ids returning one score
per head (``[n_layers, n_heads]``), so it works on any model: trained here, loaded from the hub,
or built by hand. :func:`head_scores` runs all three as the paper does and returns the tidy
frame; :func:`induction_lens.analysis.classify_heads` turns scores into the paper's head types.

Speed: the evaluators read attention patterns through ``hook_pattern`` hooks that reduce each
pattern to the few numbers they need as soon as it is computed (nothing is cached), skip the
unembedding (``return_type=None``), and prefix matching and copying share one forward pass when
the copying input is the first repeat of the prefix-matching input (causal attention makes the
two identical; checked in the tests).
"""

from typing import Literal, get_args

import einops
import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from induction_lens.constants import BOS_TOKEN_ID, HEAD_METRICS, HeadMetric
from induction_lens.data import evaluator_token_pool, repeated_tokens
from induction_lens.errors import EvalError
from induction_lens.frame import head_frame
from induction_lens.measures._checks import (
    check_batch_size,
    check_tokens,
    eval_mode,
    model_device,
)
from induction_lens.models.pretrained import bos_token_id

__all__ = [
    "COPYING_READINGS",
    "HEAD_METRICS",
    "CopyingReading",
    "HeadMetric",
    "copying_scores",
    "head_scores",
    "prefix_matching_scores",
    "previous_token_scores",
    "random_dataset_tokens",
]

CopyingReading = Literal["per_source", "literal"]
"""How :func:`copying_scores` reads the appendix's copying evaluator: "per_source" (the default)
rectifies each attended source's direct-path logits, "literal" rectifies the head's summed
output at each query, as the appendix's text says."""
COPYING_READINGS: tuple[str, ...] = get_args(CopyingReading)


def _pattern_hook_names(model: HookedTransformer) -> list[str]:
    return [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]


def _batches(tokens: Tensor, batch_size: int):
    for start in range(0, tokens.shape[0], batch_size):
        yield tokens[start:start + batch_size]


# --------------------------------------------------------------------------- previous token
def previous_token_scores(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], *,
                          batch_size: int = 32) -> Float[Tensor, "n_layers n_heads"]:
    """Previous-token score of every head: the average attention from token ``i`` to ``i - 1``.

    Appendix "(3) Head activation evaluators", *Previous token*: "Draw an example from the
    training distribution. Compute the attention pattern. The previous token score is the average
    of the entries of all the attention pattern entries attending from token i to token i-1."
    The average runs over every query ``i >= 1`` (including ``i = 1``, whose previous token is
    BOS) of every example, so a head that always attends to the previous token scores exactly 1
    and uniform causal attention scores ``mean_i 1/(i+1)``.

    Args:
        model: any ``HookedTransformer``.
        tokens: examples from the training distribution, ``[batch, pos]``, ``pos >= 2``
            (the paper: 10 examples; ``hub.corpus(run).eval_tokens(10)``).
        batch_size: examples per forward pass.

    Returns:
        ``[n_layers, n_heads]`` scores in [0, 1] (float32, on the CPU).
    """
    tokens = check_tokens(model, tokens)
    check_batch_size(batch_size)
    cfg = model.cfg
    sums = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.float64)

    def hook(pattern: Tensor, hook) -> None:
        diag = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)  # [batch, head_index, pos - 1]
        sums[hook.layer()] += diag.double().sum(dim=(0, 2)).cpu()

    hooks = [(name, hook) for name in _pattern_hook_names(model)]
    device = model_device(model)
    with eval_mode(model):
        for chunk in _batches(tokens, batch_size):
            model.run_with_hooks(chunk.to(device), return_type=None, fwd_hooks=hooks)
    count = tokens.shape[0] * (tokens.shape[1] - 1)
    return (sums / count).float()


# --------------------------------------------------------------------------- prefix matching
def induction_targets(tokens: Int[Tensor, "batch pos"], *,
                      bos_token_id: int | None = BOS_TOKEN_ID) -> Float[Tensor, "batch pos pos"]:
    """Mask of the positions an induction head should attend to: ``[b, i, j] = 1`` iff ``j <= i``
    and the token before ``j`` equals the token at ``i`` (so ``j`` followed an earlier copy of
    token ``i``). Position 0 is never a target and ``bos_token_id`` is never a query token
    (None: no token is excluded, as for a text without BOS).

    On the paper's repeated random tokens this marks, for every token of repeats 2-4, the token
    that followed each of its earlier copies; it is TransformerLens's
    ``get_induction_head_detection_pattern`` computed for a whole batch.
    """
    batch, pos = tokens.shape
    same = tokens[:, :, None] == tokens[:, None, :-1]  # [b, i, j-1]: token i == token j-1
    mask = torch.zeros(batch, pos, pos, dtype=torch.bool, device=tokens.device)
    mask[:, :, 1:] = same
    mask &= torch.ones(pos, pos, dtype=torch.bool, device=tokens.device).tril()
    if bos_token_id is not None:
        mask &= (tokens != bos_token_id)[:, :, None]
    return mask.float()


def _prefix_sums(pattern: Tensor, mask: Tensor) -> Tensor:
    """Per head, the summed attention on induction targets over all queries: ``[head_index]``."""
    return einops.einsum(pattern.double(), mask.double(), "b h q k, b q k -> h")


def prefix_matching_scores(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], *,
                           batch_size: int = 32) -> Float[Tensor, "n_layers n_heads"]:
    """Prefix-matching score of every head on repeated random tokens.

    Appendix "(3) Head activation evaluators", *Prefix matching*: "Generate a sequence of 25
    random tokens, excluding the most common and the least common tokens. Repeat this sequence 4
    times and prepend a 'start of sequence' token. Compute the attention pattern. The prefix
    matching score is the average of all attention pattern entries attending from a given token
    back to the tokens that preceded the same token in earlier repeats."

    The target is a reading, and not the sentence's literal one. Read word for word, "the tokens
    that preceded the same token" are the tokens just *before* each earlier copy of the present
    token; the appendix's summary of the same evaluator ("does the head attend to earlier tokens
    that are followed by a token that matches the present token?") reads the same way, and the
    paper's change log records that this definition was already corrected once ("Corrects the
    definition of Prefix matching in two places"). Everywhere else the paper puts the target one
    token *after* the earlier copy: "Key Concepts", "That is, it attends to the token which
    induction would suggest comes next"; its "Induction Heads" paragraph, "search for a previous
    place in the sequence where the present token A occurred and attends to the next token (call
    it B)"; and the same appendix section, an induction head "attends to previous instances of
    the present token and increases the logit of the token that followed". We score the
    attention on the token that *followed* an earlier copy, the token an induction head copies,
    as every implementation we compared with does; the literal target (the token before an
    earlier copy) would score a perfect induction head 0.

    Our reading of the average, from the Model Analysis Table ("the average fraction of a
    head's attention weight given to the token we expect an induction head to attend to"): for
    each query that has earlier copies, sum its attention on the tokens that followed those copies
    (:func:`induction_targets`), then average over queries and examples. A perfect induction head
    scores 1 whether it attends to the latest copy or spreads over all of them; uniform causal
    attention scores ``mean_i n_targets(i) / (i + 1)``; a pure previous-token head scores 0
    (for sequences of 3 or more distinct tokens its target is never an induction target).

    Args:
        model: any ``HookedTransformer``.
        tokens: ``[batch, pos]`` with repeats, e.g. :func:`induction_lens.data.repeated_tokens`.
        batch_size: examples per forward pass.

    Returns:
        ``[n_layers, n_heads]`` scores in [0, 1].
    """
    tokens = check_tokens(model, tokens)
    check_batch_size(batch_size)
    mask = induction_targets(tokens, bos_token_id=bos_token_id(model))
    n_queries = int((mask.sum(-1) > 0).sum())
    if n_queries == 0:
        raise EvalError("tokens contain no repeated token, so no query has an induction target; "
                        "pass repeated sequences (induction_lens.data.repeated_tokens)")
    cfg = model.cfg
    sums = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.float64)
    device = model_device(model)
    with eval_mode(model):
        for start in range(0, tokens.shape[0], batch_size):
            chunk_mask = mask[start:start + batch_size].to(device)

            def hook(pattern: Tensor, hook, chunk_mask=chunk_mask) -> None:
                sums[hook.layer()] += _prefix_sums(pattern, chunk_mask).cpu()

            model.run_with_hooks(tokens[start:start + batch_size].to(device), return_type=None,
                                 fwd_hooks=[(n, hook) for n in _pattern_hook_names(model)])
    return (sums / n_queries).float()


# --------------------------------------------------------------------------- copying
def _direct_logits(model: HookedTransformer, layer: int, head: int,
                   v: Float[Tensor, "batch pos d_head"]) -> Float[Tensor, "batch pos d_vocab"]:
    """Direct-path logits of head ``(layer, head)`` writing value vector ``v`` in full.

    The head's output ``v W_O`` goes through the final LayerNorm's linear part (centring over
    ``d_model`` for LN/LNPre and the gain ``w``; the division by the LayerNorm scale is a positive
    per-position factor, which the copying ratio does not depend on) and the unembedding. Biases
    (``b_O``, the LayerNorm's ``b``, ``b_U``) are not the head's contribution and are left out.
    """
    out = v @ model.W_O[layer, head]  # [batch, pos, d_model]
    norm = model.cfg.normalization_type
    if norm in ("LN", "LNPre"):
        out = out - out.mean(-1, keepdim=True)
    ln_final = getattr(model, "ln_final", None)
    if norm is not None and ln_final is not None and hasattr(ln_final, "w"):
        out = out * ln_final.w
    return out @ model.W_U


def _copying_ratio(model: HookedTransformer, layer: int, head: int, v: Tensor,
                   tokens: Tensor, sample: slice) -> Tensor:
    """Per sample position ``j``: ``raise(t_j) / (raise(t_j) + sum_k raise(t_k))``, ``[b, j]``."""
    logits = _direct_logits(model, layer, head, v[:, sample])  # [b, s, vocab]
    raised = torch.relu(logits - logits.mean(-1, keepdim=True))
    sample_tokens = tokens[:, sample]  # [b, s]
    index = einops.repeat(sample_tokens, "b k -> b j k", j=sample_tokens.shape[1])
    on_sample = raised.gather(-1, index)  # [b, j, k]: raise of sample token k by source j
    own = on_sample.diagonal(dim1=-2, dim2=-1)  # [b, j]
    total = own + on_sample.sum(-1)
    return torch.where(total > 0, own / total.clamp_min(1e-30), torch.zeros_like(own))


def _literal_ratio(model: HookedTransformer, layer: int, head: int, v: Tensor,
                   pattern: Tensor, tokens: Tensor, sample: slice) -> tuple[Tensor, Tensor]:
    """The literal reading per sample query ``i``: ``(rho_i, w_i)``, each ``[b, i]``.

    ``z_i = sum_j A[i, j] v_j`` over every source (BOS included: it is part of the head's
    output), ``r_i = ReLU(l_i - mean(l_i))`` its direct-path logits, ``w_i`` the attention on
    sample sources and ``a_i = sum_{j in sample} A[i, j] r_i[t_j] / w_i`` the raise of the
    attended tokens; ``rho_i = a_i / (a_i + sum_k r_i[t_k])``.
    """
    z = einops.einsum(pattern[:, sample, :], v, "b i k, b k d -> b i d")
    logits = _direct_logits(model, layer, head, z)  # [b, i, vocab]
    raised = torch.relu(logits - logits.mean(-1, keepdim=True))
    sample_tokens = tokens[:, sample]
    index = einops.repeat(sample_tokens, "b k -> b i k", i=sample_tokens.shape[1])
    on_sample = raised.gather(-1, index)  # [b, i, k]: raise of sample token k at query i
    attn = pattern[:, sample, sample]  # [b, i, j]
    w = attn.sum(-1)
    own = (attn * on_sample).sum(-1) / w.clamp_min(1e-30)
    total = own + on_sample.sum(-1)
    rho = torch.where(total > 0, own / total.clamp_min(1e-30), torch.zeros_like(own))
    return rho, w


def _copying_sums(model: HookedTransformer, layer: int, v: Tensor, pattern: Tensor,
                  tokens: Tensor, sample: slice, reading: CopyingReading = "per_source"
                  ) -> tuple[Tensor, Tensor]:
    """Attention-weighted copying ratio sums and weight sums for every head of ``layer``."""
    num = torch.zeros(model.cfg.n_heads, dtype=torch.float64)
    den = torch.zeros(model.cfg.n_heads, dtype=torch.float64)
    if reading == "literal":
        for head in range(model.cfg.n_heads):
            rho, w = _literal_ratio(model, layer, head, v[:, :, head], pattern[:, head], tokens,
                                    sample)
            num[head] = (w.double() * rho.double()).sum().cpu()
            den[head] = w.double().sum().cpu()
        return num, den
    weights = pattern[:, :, sample, sample].sum(dim=2).double()  # [b, h, j]: received by j
    for head in range(model.cfg.n_heads):
        ratio = _copying_ratio(model, layer, head, v[:, :, head], tokens, sample).double()
        num[head] = (weights[:, head] * ratio).sum().cpu()
    return num, weights.sum(dim=(0, 2)).cpu()


def _check_reading(reading: str) -> None:
    if reading not in COPYING_READINGS:
        raise EvalError(f"copying reading {reading!r} is not one of {COPYING_READINGS}; "
                        "pass reading='per_source' (the default) or 'literal'")


def _check_mha(model: HookedTransformer) -> None:
    if getattr(model.cfg, "n_key_value_heads", None) not in (None, model.cfg.n_heads):
        raise EvalError("copying_scores supports multi-head attention only (this model uses "
                        "grouped-query attention)")


def copying_scores(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], *,
                   bos: bool = True, reading: CopyingReading = "per_source",
                   batch_size: int = 32) -> Float[Tensor, "n_layers n_heads"]:
    """Copying score of every head on random tokens, in [-1, 1].

    Appendix "(3) Head activation evaluators", *Copying*: "Generate a sequence of 25 random
    tokens [...]. Compute this head's contribution to the residual stream, then convert that
    using the unembeddings (i.e. along the 'direct path') to impacts on each logit. Logits are
    transformed by subtracting the mean of the logits and passing through a ReLU [...]. Compute
    the ratio of the amount it raises the logits of the token being attended to, to that of all
    tokens in this sample. This value ranges from 0 (only raises other tokens) to 0.5 (only raises
    the present token), so we scale it into the range of -1 to 1."

    The exact formula we implement. The head's output at query ``i`` is the sum over source
    positions ``j`` of ``A[i, j] v_j W_O``; we apply the paper's transformation to each source's
    term (the decomposition is exact, the ReLU is applied per source): with
    ``r_j = ReLU(l_j - mean(l_j))`` the mean-subtracted, rectified direct-path logits of
    ``v_j W_O`` (see :func:`_direct_logits`),

        ``rho_j = r_j[t_j] / (r_j[t_j] + sum_{k in sample} r_j[t_k])``

    is the ratio for the token being attended to. Reading "the ratio of [the raise of the
    attended token] to that of all tokens in this sample" as a share of a total that counts the
    attended token next to all sample tokens (itself included) is what makes the paper's stated
    range come out: ``rho_j`` lies in [0, 0.5], 0.5 when the head raises only ``t_j`` among the
    sample's tokens, 0 when it raises only other tokens (a source that raises no sample token at
    all counts as 0). The score is the attention-weighted average
    ``rho = sum_{i,j} A[i, j] rho_j / sum_{i,j} A[i, j]`` over sample queries and sources of all
    examples, rescaled ``4 rho - 1`` from [0, 0.5] to [-1, 1]. With one-hot attention this is the
    paper's evaluator applied to the head's actual output; with diffuse attention, rectifying the
    summed output instead would score an exact copier attending evenly to ``n`` tokens
    ``4/(n+1) - 1``, penalising where it looks rather than what it writes. A head raising the
    sample's tokens evenly scores ``4/(n+1) - 1`` (-0.85 for 25 tokens): that, not 0, is the
    chance level.

    Why heads that clearly copy can score below 0 (a consequence of the definition, not a
    defect): ``rho_j > 1/4`` (score > 0) exactly when ``r_j[t_j] > sum_{k != j} r_j[t_k]``, i.e.
    when the attended token's rectified raise exceeds the *summed* rectified raises of the other
    24 sample tokens. A trained head's OV circuit raises its input token most but also raises
    many other tokens a little; after the mean subtraction the ReLU keeps the positive ones, and
    over 24 other sample tokens they add up. On a briefly trained laptop ``attn-only-2l`` the
    layer-1 induction heads raise the attended token more than any other sample token for
    94-98% of sources, but by only about a third of the others' total, so they score -0.15 to
    -0.22 (well above the chance level of -0.85) while their OV-eigenvalue copying
    (:func:`~induction_lens.measures.circuits.ov_copying`, which measures the sign of the
    eigenvalues, not how the diagonal compares with the sum of the off-diagonal) is 1.0. We
    checked the direct path's parts for a defect: the final LayerNorm's centring and gain are
    the head's contribution's true linear image, the mean-logit subtraction is the paper's, BOS
    is outside the sample and carries no weight, and the sign of the ratio is right (an exact
    copier scores 1, its negation -1; both tested).

    Readings (``reading``, our choice of default). The appendix says "Compute this head's
    contribution to the residual stream", i.e. the head's summed output at each query, and
    rectifies that; ``reading="per_source"`` (the default, above) rectifies each attended
    source's term instead. ``reading="literal"`` follows the text: at each sample query ``i``,
    ``z_i = sum_j A[i, j] v_j`` over every source (BOS included, it is part of the head's
    output), ``r_i`` its rectified direct-path logits, the raise of "the token being attended to"
    the attention-weighted ``a_i = sum_{j in sample} A[i, j] r_i[t_j] / w_i`` with
    ``w_i = sum_{j in sample} A[i, j]``, ``rho_i = a_i / (a_i + sum_k r_i[t_k])``, and
    ``rho = sum_i w_i rho_i / sum_i w_i``. Under one-hot attention on a sample token the two
    readings are the same number; under diffuse attention the literal one also penalises where
    a head looks (an exact copier attending evenly to ``n`` tokens scores ``4/(n+1) - 1``), so on
    trained models it is lower (-0.50 to -0.60 for the heads above).

    BOS: the paper omitted the start-of-sequence token here "by mistake" (footnote 31) and says
    it would have been better to include it; our models always see BOS at position 0, so by
    default (``bos=True``) ``tokens`` start with BOS, BOS is not part of the sample and attention
    to it carries no weight. ``bos=False`` treats every position as the sample (the paper's
    literal evaluator).

    Args:
        model: any multi-head-attention ``HookedTransformer``.
        tokens: ``[batch, pos]`` random distinct tokens (``bos=True``: ``tokens[:, 0]`` is BOS).
        bos: whether position 0 is a BOS token outside the sample.
        reading: "per_source" (default) or "literal", see above (:data:`CopyingReading`).
        batch_size: examples per forward pass.
    """
    tokens = check_tokens(model, tokens, min_len=3 if bos else 2)
    check_batch_size(batch_size)
    _check_reading(reading)
    _check_mha(model)
    bos_id = bos_token_id(model)
    if bos and bool((tokens[:, 0] != bos_id).any()):
        raise EvalError(f"copying_scores(bos=True) needs BOS (id {bos_id}, the model's) at "
                        "position 0 of every example; prepend it or pass bos=False")
    num, den = _run_copying(model, tokens, bos=bos, reading=reading, batch_size=batch_size)
    return _copying_from_sums(num, den)


def _copying_from_sums(num: Tensor, den: Tensor) -> Tensor:
    rho = torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))
    return (4 * rho - 1).float()


def _run_copying(model: HookedTransformer, tokens: Tensor, *, bos: bool, batch_size: int,
                 reading: CopyingReading = "per_source", copy_len: int | None = None,
                 prefix_mask: Tensor | None = None
                 ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """One pass over ``tokens`` computing copying sums on the first ``copy_len`` positions and,
    with ``prefix_mask``, prefix-matching sums on all positions in the same forward passes."""
    cfg = model.cfg
    copy_len = tokens.shape[1] if copy_len is None else copy_len
    sample = slice(1 if bos else 0, copy_len)
    num = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.float64)
    den = torch.zeros_like(num)
    prefix = torch.zeros_like(num)
    device = model_device(model)
    with eval_mode(model):
        for start in range(0, tokens.shape[0], batch_size):
            chunk = tokens[start:start + batch_size].to(device)
            values: dict[int, Tensor] = {}

            def v_hook(v: Tensor, hook, values=values) -> None:
                values[hook.layer()] = v[:, :copy_len]

            def pattern_hook(pattern: Tensor, hook, chunk=chunk, start=start,
                             values=values) -> None:
                layer = hook.layer()
                n, d = _copying_sums(model, layer, values.pop(layer),
                                     pattern[:, :, :copy_len, :copy_len], chunk[:, :copy_len],
                                     sample, reading)
                num[layer] += n
                den[layer] += d
                if prefix_mask is not None:
                    mask = prefix_mask[start:start + batch_size].to(device)
                    prefix[layer] += _prefix_sums(pattern, mask).cpu()

            hooks = []
            for layer in range(cfg.n_layers):
                hooks.append((f"blocks.{layer}.attn.hook_v", v_hook))
                hooks.append((f"blocks.{layer}.attn.hook_pattern", pattern_hook))
            model.run_with_hooks(chunk, return_type=None, fwd_hooks=hooks)
    if prefix_mask is not None:
        return num, den, prefix
    return num, den


# --------------------------------------------------------------------------- all three
def random_dataset_tokens(pool: np.ndarray, *, n_examples: int, n_ctx: int, seed: int = 0,
                          bos_token_id: int = BOS_TOKEN_ID) -> Int[Tensor, "batch pos"]:
    """Uniform random tokens from ``pool`` after a BOS token: the stand-in for "an example from
    the training distribution" when a model has no corpus (a model built by hand)."""
    rng = np.random.default_rng(seed)
    body = rng.choice(pool, size=(n_examples, n_ctx - 1))
    tokens = np.concatenate([np.full((n_examples, 1), bos_token_id), body], axis=1)
    return torch.from_numpy(tokens.astype(np.int64))


def head_scores(model: HookedTransformer, *, metrics: tuple[str, ...] | list[str] = HEAD_METRICS,
                token_pool: np.ndarray | None = None,
                dataset_tokens: Int[Tensor, "batch pos"] | None = None,
                n_examples: int = 10, seq_len: int = 25, repeats: int = 4, seed: int = 0,
                copying_bos: bool = True, copying_reading: CopyingReading = "per_source",
                batch_size: int = 32) -> pd.DataFrame:
    """The three head activation evaluators of the appendix for every head of ``model``.

    Inputs follow the paper: ``n_examples`` (10) sequences of ``seq_len`` (25) random tokens
    from ``token_pool`` (see :func:`induction_lens.data.evaluator_token_pool`: the most and least
    common tokens excluded), repeated ``repeats`` (4) times after a BOS token, for prefix
    matching; the first repeat of the same sequences (with BOS, see :func:`copying_scores`) for
    copying; ``dataset_tokens`` (examples of the training distribution) for previous-token
    attention. Prefix matching and copying share one forward pass.

    Args:
        model: any ``HookedTransformer``.
        metrics: which of :data:`HEAD_METRICS` to compute.
        token_pool: token ids to draw from (default: every id but the model's BOS, fine for a
            model built by
            hand; for a trained run pass
            ``evaluator_token_pool(hub.token_frequencies(run), d_vocab)``).
        dataset_tokens: examples for the previous-token score (default: ``n_examples`` sequences
            of uniform random pool tokens after BOS, :func:`random_dataset_tokens`; for a trained
            run pass ``hub.corpus(run).eval_tokens(10)``).
        n_examples, seq_len, repeats, seed: the random sequences
            (:func:`~induction_lens.data.repeated_tokens`).
        copying_bos: prepend BOS to the copying sequences (paper footnote 31; see
            :func:`copying_scores`).
        copying_reading: the copying evaluator's reading (:data:`CopyingReading`, see
            :func:`copying_scores`).
        batch_size: examples per forward pass.

    Returns:
        A frame with columns ``layer, head, metric, value``, one row per head and metric.
    """
    unknown = sorted(set(metrics) - set(HEAD_METRICS))
    if unknown or not metrics:
        raise EvalError(f"unknown head metric(s) {unknown or list(metrics)}; choose from "
                        f"{list(HEAD_METRICS)}")
    cfg = model.cfg
    bos = bos_token_id(model)
    pool = (evaluator_token_pool(None, cfg.d_vocab, special_tokens=(bos,)) if token_pool is None
            else np.asarray(token_pool))
    length = 1 + seq_len * repeats
    if length > cfg.n_ctx:
        raise EvalError(f"1 + seq_len*repeats = {length} tokens do not fit the model's context "
                        f"{cfg.n_ctx}; lower seq_len or repeats")
    scores: dict[str, Tensor] = {}
    needs_repeated = {"prefix_matching", "copying"} & set(metrics)
    if needs_repeated:
        repeated = repeated_tokens(pool, n_examples=n_examples, seq_len=seq_len,
                                   repeats=repeats, seed=seed, bos_token_id=bos)
        scores.update(repeated_head_scores(model, repeated, seq_len=seq_len,
                                           metrics=tuple(needs_repeated),
                                           copying_bos=copying_bos,
                                           copying_reading=copying_reading,
                                           batch_size=batch_size))
    if "previous_token" in metrics:
        if dataset_tokens is None:
            dataset_tokens = random_dataset_tokens(pool, n_examples=n_examples, n_ctx=cfg.n_ctx,
                                                   seed=seed, bos_token_id=bos)
        scores["previous_token"] = previous_token_scores(model, dataset_tokens,
                                                         batch_size=batch_size)
    return head_frame({m: scores[m] for m in metrics})


def repeated_head_scores(model: HookedTransformer, repeated: Int[Tensor, "batch pos"], *,
                         seq_len: int, metrics: tuple[str, ...] = ("prefix_matching", "copying"),
                         copying_bos: bool = True, copying_reading: CopyingReading = "per_source",
                         batch_size: int = 32) -> dict[str, Tensor]:
    """Prefix-matching and copying scores from the repeated-token input (one forward pass).

    ``repeated`` is BOS followed by repeats of ``seq_len`` random tokens; with ``copying_bos``
    the copying input is its first ``1 + seq_len`` positions, read from the same forward pass
    (causal attention: positions ``< 1 + seq_len`` do not see the later repeats). With
    ``copying_bos=False`` copying runs separately on the sequences without BOS (the paper's
    literal evaluator). ``copying_reading`` is :func:`copying_scores`'s ``reading``.
    """
    repeated = check_tokens(model, repeated)
    _check_reading(copying_reading)
    out: dict[str, Tensor] = {}
    want_prefix = "prefix_matching" in metrics
    want_copy = "copying" in metrics
    if want_copy and copying_bos:
        mask = (induction_targets(repeated, bos_token_id=bos_token_id(model)) if want_prefix
                else None)
        if mask is not None and int((mask.sum(-1) > 0).sum()) == 0:
            raise EvalError("the repeated tokens contain no repeat; use repeats >= 2")
        result = _run_copying(model, repeated, bos=True, batch_size=batch_size,
                              reading=copying_reading, copy_len=1 + seq_len, prefix_mask=mask)
        out["copying"] = _copying_from_sums(result[0], result[1])
        if want_prefix:
            n_queries = int((mask.sum(-1) > 0).sum())
            out["prefix_matching"] = (result[2] / n_queries).float()
        return out
    if want_prefix:
        out["prefix_matching"] = prefix_matching_scores(model, repeated, batch_size=batch_size)
    if want_copy:
        out["copying"] = copying_scores(model, repeated[:, 1:1 + seq_len], bos=False,
                                        reading=copying_reading, batch_size=batch_size)
    return out


# --------------------------------------------------------------------------- classification


