"""Weight-based circuit measures (paper, appendix "(4) Trace of QK eigenvalues", "Validating head
activation evaluators" and Argument 5; composition scores from "A Mathematical Framework for
Transformer Circuits").

Three families of measures, all computed from the weights alone (plus, for the QK trace, the
previous-token scores of the earlier heads measured on an example text):

* ``qk_trace`` — the paper's mathematical prefix-matching measure. For a head ``h`` in layer
  ``l >= 1``: the trace (sum of eigenvalues) of the token-space matrix of the pure
  K-composition terms of its QK circuit with every earlier head ``h_k``, weighted by the
  previous-token score ``p(h_k)`` of that head::

      W = sum_k p(h_k) W_E W_QK^h (W_OV^{h_k})^T W_E^T        (row-vector convention)
      qk_trace(h) = trace(W)

  (the paper writes the same matrix in column-vector convention as ``W_E^T W_QK^h W_OV^{h_k}
  W_E``). ``W[a, b]`` is how much a query on token ``a`` attends to a key position whose
  ``h_k``-source token is ``b``; when ``h_k`` attends to the previous token, a positive
  diagonal ("same-matching") attends to positions *preceded* by the current token, which is
  prefix matching. Undefined (NaN) for layer 0 and therefore for 1-layer models.
* ``ov_copying`` and ``ov_positive_fraction`` — the eigenvalues of the full OV circuit
  ``W_E W_OV^h W_U`` (appendix "Validating head activation evaluators", "Copying"):
  ``sum(Re lambda) / sum(|lambda|)`` (in [-1, 1]; 1 for a head whose OV circuit only has
  positive eigenvalues) and the fraction of non-zero eigenvalues with a positive real part.
* ``q_composition``, ``k_composition``, ``v_composition`` — the Framework paper's composition
  scores ``||W_A W_B||_F / (||W_A||_F ||W_B||_F)`` for every pair (earlier head writing,
  later head reading), with ``composition_baseline`` = the score expected for random matrices.

**No vocabulary-sized matrix is ever built.** Every measure is a trace, eigenvalues or a
Frobenius norm of a product whose two ends are the (un)embedding, so it can be cycled
(``trace(AB) = trace(BA)``, ``eig(AB) = eig(BA)`` apart from zeros) until the vocabulary only
appears inside the two ``d_model x d_model`` Gram matrices ``W_E^T W_E`` and ``W_U W_E``
(:class:`CircuitWeights`). The largest tensors built are those Grams and per-head products of
``d_head x d_head``; the tests prove it by watching every tensor any torch operation returns.

**LayerNorm.** The models apply LayerNorm (``x -> (x - mean(x)) / scale(x) * w + b``) before
each attention layer and the unembedding. Its linear part, the centring projection
``P = I - 11^T/d_model`` followed by the gain ``diag(w)``, is folded into the weights that read
the normalised stream (``W_Q, W_K, W_V <- P diag(w_ln1) W_{Q,K,V}``, ``W_U <- P diag(w_lnf)
W_U``), exactly as TransformerLens's ``fold_ln`` would (which we cannot call: it breaks on
shortformer models, TL issue #204). The division by ``scale(x)`` is dropped: it is a positive
scalar per position that depends on the input, not on the weights, so it rescales a token
pair's term but never flips its sign. The LN bias ``b`` (like ``b_Q``, ``b_K``, ``b_V``,
``b_O``, ``b_U``) only adds query-only, key-only or constant terms, never a token-token term,
so it drops out of every measure here. ``LNPre`` folds ``P`` only; no normalisation folds
nothing. (RMSNorm is refused: the package never builds it.)

**Shortformer positions.** Positions are added to the query/key inputs after LayerNorm and
never enter the residual stream, so they give only position-token and position-position terms
of the QK circuit and never reach the OV circuits: the token-token terms measured here contain
no positional part. The previous-token behaviour of the earlier heads — which in a shortformer
model comes from those positional terms — enters the QK trace through its measured
previous-token scores (step 1), as in the paper. Standard positional embeddings are handled the
same way (the token-token terms are measured; the positional ones are not).

**Smeared keys** (Argument 2). A smeared head's key at position ``j`` is ``s k_j + (1 - s)
k_{j-1}`` with ``s = sigmoid(alpha)``. Smearing mixes positions, not residual directions, so
the OV measures and the composition scores are unchanged. For the QK trace the key that
K-composes with the earlier heads' outputs at position ``j`` carries weight ``s``, so the
paper's term is multiplied by ``s`` (the ``1 - s`` share reads position ``j-1``, where a
previous-token head carries token ``j-2``: not a prefix-matching term). The smear itself
creates a previous-token term on the direct path — the key at ``j`` reads the embedding of
token ``j-1`` with weight ``1 - s`` — which is how a 1-layer smeared model can prefix-match.
It is reported separately as ``qk_smear_trace = (1 - s) trace(W_E W_QK^h W_E^T)`` for every
head of a smeared model (all layers, layer 0 included), so ``qk_trace`` keeps the paper's
definition for every model.

**Not included in the measures.** Attention scores are divided by ``sqrt(d_head)`` in the
forward pass; like TransformerLens's ``model.QK`` the measures use the raw ``W_Q W_K^T``.
In models with MLPs the measures follow the direct (attention-only) paths, as the paper's
validation does on attention-only models.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import einops
import pandas as pd
import torch
from jaxtyping import Complex, Float, Int
from torch import Tensor
from transformer_lens import FactoredMatrix, HookedTransformer
from transformer_lens.components import LayerNorm, LayerNormPre

from induction_lens.errors import EvalError
from induction_lens.frame import head_frame, model_frame
from induction_lens.measures.heads import previous_token_scores

__all__ = [
    "CIRCUIT_METRICS",
    "CircuitError",
    "CircuitMetric",
    "CircuitWeights",
    "circuit_scores",
    "circuit_weights",
    "composition_baseline",
    "composition_scores",
    "ov_copying",
    "ov_eigenvalues",
    "qk_smear_trace",
    "qk_trace",
    "qk_trace_terms",
]

CircuitMetric = Literal[
    "qk_trace",
    "qk_smear_trace",
    "ov_copying",
    "ov_positive_fraction",
    "q_composition",
    "k_composition",
    "v_composition",
    "composition_baseline",
]
"""Metric names written by :func:`circuit_scores` (the ``metric`` column)."""

CIRCUIT_METRICS: tuple[str, ...] = get_args(CircuitMetric)
"""Every metric of this module, in a stable order."""

CompositionMode = Literal["Q", "K", "V"]

PAIR_METRICS = ("q_composition", "k_composition", "v_composition")
"""Metrics with one row per (source head, target head) pair (``source_layer``/``source_head``)."""

EIGENVALUE_RTOL = 1e-6
"""Eigenvalues with modulus below ``EIGENVALUE_RTOL * max |lambda|`` (of the same head) count as
zero for ``ov_positive_fraction`` (the Grams are computed in the model's float32, whose relative
rounding is ~1e-7)."""


class CircuitError(EvalError):
    """Bad input to a circuit measure; the message says what to pass instead (one line)."""


@dataclass(frozen=True)
class CircuitWeights:
    """Everything the circuit measures read, LayerNorm-folded, in float64, without the vocabulary.

    Built by :func:`circuit_weights`. The vocabulary appears only inside the two
    ``d_model x d_model`` Gram matrices, so this object is small for any vocabulary size.
    """

    W_Q: Float[Tensor, "n_layers n_heads d_model d_head"]
    """Query weights with the layer's ``ln1`` linear part folded in (``P diag(w) W_Q``)."""
    W_K: Float[Tensor, "n_layers n_heads d_model d_head"]
    """Key weights, ``ln1`` folded in."""
    W_V: Float[Tensor, "n_layers n_heads d_model d_head"]
    """Value weights, ``ln1`` folded in."""
    W_O: Float[Tensor, "n_layers n_heads d_head d_model"]
    """Output weights (they write the raw residual stream: nothing to fold)."""
    gram_embed: Float[Tensor, "d_model d_model"]
    """``W_E^T W_E``: the embedding's Gram matrix (the QK terms' two embedding ends)."""
    gram_unembed_embed: Float[Tensor, "d_model d_model"]
    """``P diag(w_lnf) W_U W_E``: the unembedding (``ln_final`` folded in) times the embedding,
    which closes every full OV circuit once its ends are cycled together."""
    smear: Float[Tensor, "n_layers n_heads"] | None
    """``sigmoid(alpha)`` per head for smeared-key models (the key's share of its own
    position), else None."""

    @property
    def n_layers(self) -> int:
        return self.W_Q.shape[0]

    @property
    def n_heads(self) -> int:
        return self.W_Q.shape[1]

    @property
    def d_model(self) -> int:
        return self.W_Q.shape[2]


ModelLike = HookedTransformer | CircuitWeights


def _ln_linear(ln: torch.nn.Module, d_model: int, where: str) -> Float[Tensor, "d_model d_model"]:
    """The linear part of a normalisation module as a matrix acting on row vectors."""
    eye = torch.eye(d_model, dtype=torch.float64)
    if isinstance(ln, LayerNorm | LayerNormPre):
        centre = eye - 1.0 / d_model  # P = I - 11^T/d (symmetric)
        if isinstance(ln, LayerNorm):
            return centre * ln.w.detach().to(torch.float64)[None, :]  # P diag(w)
        return centre
    if isinstance(ln, torch.nn.Identity):
        return eye
    raise CircuitError(f"{where} is a {type(ln).__name__}; circuit measures support LayerNorm "
                       "'LN', 'LNPre' or no normalisation")


@torch.no_grad()
def circuit_weights(model: HookedTransformer) -> CircuitWeights:
    """Extract the LayerNorm-folded weights and Gram matrices the circuit measures need.

    See the module docstring for how LayerNorm, positions and smeared keys are treated. The two
    Gram matrices are computed in the model's dtype, at least float32 (a ``d_vocab``-long
    contraction, the only step whose cost grows with the vocabulary), everything else in
    float64.

    Args:
        model: a ``HookedTransformer`` built by this package (or any TransformerLens model with
            ``LN``/``LNPre``/no normalisation).

    Returns:
        The weights as a :class:`CircuitWeights`; pass it instead of the model to compute
        several measures without re-extracting.
    """
    if not isinstance(model, HookedTransformer):
        raise CircuitError(f"expected a transformer_lens HookedTransformer, got "
                           f"{type(model).__name__}; load one with Hub.load_model")
    cfg = model.cfg
    d = cfg.d_model
    f64 = torch.float64
    folds = torch.stack([_ln_linear(b.ln1, d, f"blocks.{i}.ln1")
                         for i, b in enumerate(model.blocks)]).to(model.W_Q.device)
    final = _ln_linear(getattr(model, "ln_final", torch.nn.Identity()), d, "ln_final")
    final = final.to(model.W_Q.device)

    def fold(w: Tensor) -> Tensor:  # [layer, head, d_model, d_head], row-vector convention
        return folds[:, None] @ w.detach().to(f64)

    # At least float32 for the vocabulary-long contractions (half precision would lose them).
    gram_dtype = torch.promote_types(model.W_E.dtype, torch.float32)
    W_E = model.W_E.detach().to(gram_dtype)
    W_U = model.W_U.detach().to(gram_dtype)
    gram_embed = (W_E.T @ W_E).to(f64)
    gram_ue = final @ (W_U @ W_E).to(f64)  # fold ln_final after the contraction: no copy of W_U
    smear = None
    if any(getattr(b.attn, "smeared", False) for b in model.blocks):
        smear = torch.sigmoid(torch.stack([b.attn.smear_alpha.detach().to(f64)
                                           for b in model.blocks]))
    return CircuitWeights(W_Q=fold(model.W_Q), W_K=fold(model.W_K), W_V=fold(model.W_V),
                          W_O=model.W_O.detach().to(f64), gram_embed=gram_embed,
                          gram_unembed_embed=gram_ue, smear=smear)


def _weights(model: ModelLike) -> CircuitWeights:
    return model if isinstance(model, CircuitWeights) else circuit_weights(model)


# --------------------------------------------------------------------------------- QK trace
def qk_trace_terms(model: ModelLike) -> Float[Tensor, "n_layers n_heads n_layers n_heads"]:
    """Trace of every pure K-composition term, unweighted: ``T[l, h, k, g]`` (NaN unless k < l).

    ``T[l, h, k, g] = trace(W_E W_QK^{lh} (W_OV^{kg})^T W_E^T)`` — step 2 and 4 of the paper's
    appendix "(4) Trace of QK eigenvalues" for the single term of target head ``(l, h)`` and
    earlier head ``(k, g)``, before the previous-token weighting of step 3. Cycling the trace
    gives the Frobenius inner product of two ``d_head x d_head`` matrices::

        trace(W_E W_Q W_K^T W_O^T W_V^T W_E^T)
            = < W_O^{kg} W_K^{lh}, W_V^{kg T} (W_E^T W_E) W_Q^{lh} >_F

    For smeared-key target heads the term is *not* multiplied by ``s`` here (:func:`qk_trace`
    does that).
    """
    w = _weights(model)
    L, H = w.n_layers, w.n_heads
    out = torch.full((L, H, L, H), float("nan"), dtype=torch.float64, device=w.W_Q.device)
    # Sources flattened to rows "(k g d_src)" and targets to columns "(h d_tgt)", so each target
    # layer is two matrix products; the source side W_V^T G is shared by all target layers.
    o_rows = einops.rearrange(w.W_O, "k g d m -> (k g d) m")
    vg_rows = einops.rearrange(w.W_V, "k g m d -> (k g d) m") @ w.gram_embed
    rows_per_layer = H * w.W_O.shape[2]
    for layer in range(1, L):
        k_cols = einops.rearrange(w.W_K[layer], "h m e -> m (h e)")
        q_cols = einops.rearrange(w.W_Q[layer], "h n e -> n (h e)")
        src = slice(0, layer * rows_per_layer)
        product = (o_rows[src] @ k_cols) * (vg_rows[src] @ q_cols)  # <W_O W_K, W_V^T G W_Q>
        out[layer, :, :layer] = einops.reduce(product, "(k g d) (h e) -> h k g", "sum",
                                              k=layer, g=H, h=H)
    return out


def _check_prev_scores(prev_scores: Tensor, n_layers: int, n_heads: int) -> Tensor:
    if not isinstance(prev_scores, Tensor):
        raise CircuitError(f"prev_scores must be a torch tensor of shape [n_layers, n_heads], "
                           f"got {type(prev_scores).__name__}")
    if tuple(prev_scores.shape) != (n_layers, n_heads):
        raise CircuitError(f"prev_scores has shape {tuple(prev_scores.shape)}, expected "
                           f"({n_layers}, {n_heads}) = (n_layers, n_heads) of the model")
    if not torch.isfinite(prev_scores[:-1]).all():
        raise CircuitError("prev_scores of the layers below the last contain NaN/inf; measure "
                           "them on a real example text (previous_token_scores)")
    return prev_scores.detach().to(torch.float64).clone()


def qk_trace(
    model: ModelLike,
    prev_scores: Float[Tensor, "n_layers n_heads"],
) -> Float[Tensor, "n_layers n_heads"]:
    """The paper's QK-eigenvalue trace of the previous-token K-composition term (NaN for layer 0).

    Appendix "(4) Trace of QK eigenvalues": (1) ``prev_scores`` are the previous-token scores of
    the heads (the mean attention on the previous-token off-diagonal over an example text;
    ``induction_lens.measures.heads.previous_token_scores``); (2) the matrix of each pure
    K-composition term with an earlier head (:func:`qk_trace_terms`); (3) their sum weighted by
    the earlier heads' previous-token scores; (4) its trace. A head whose previous-token score
    is 0 contributes nothing. Smeared-key target heads get the factor ``s = sigmoid(alpha)``
    (module docstring). Layer 0 has no earlier heads: its values (and every value of a 1-layer
    model) are NaN — undefined, not zero.

    Args:
        model: the model or its :func:`circuit_weights`.
        prev_scores: previous-token score of every head (only layers below the last are read).
    """
    w = _weights(model)
    p = _check_prev_scores(prev_scores, w.n_layers, w.n_heads).to(w.W_Q.device)
    p[-1] = 0.0  # the last layer has no later head to K-compose with (and may be NaN)
    terms = qk_trace_terms(w)
    # Sum over earlier heads only: NaN terms (k >= l) are masked out, and layer 0 stays NaN.
    weighted = torch.nan_to_num(terms) * p[None, None]
    out = einops.reduce(weighted, "l h k g -> l h", "sum")
    if w.smear is not None:
        out = out * w.smear
    out[0] = float("nan")
    return out


def qk_smear_trace(model: ModelLike) -> Float[Tensor, "n_layers n_heads"] | None:
    """Trace of the previous-token term that smeared keys create on the direct path (Argument 2).

    ``(1 - s) trace(W_E W_QK^h W_E^T) = (1 - s) <(W_E^T W_E) W_Q^h, W_K^h>`` for every head,
    layer 0 included: the key at position ``j`` reads token ``j - 1``'s embedding with weight
    ``1 - s``, so positive same-matching eigenvalues make the head attend to positions preceded
    by the current token (a prefix-matching head in a 1-layer model). None for models without
    smeared keys (the term does not exist there).
    """
    w = _weights(model)
    if w.smear is None:
        return None
    direct = ((w.gram_embed @ w.W_Q) * w.W_K).sum(dim=(-2, -1))  # <G W_Q, W_K>
    return (1 - w.smear) * direct


# --------------------------------------------------------------------------------- OV copying
def ov_eigenvalues(model: ModelLike) -> Complex[Tensor, "n_layers n_heads d_head"]:
    """Eigenvalues of every head's full OV circuit ``W_E W_OV W_U`` (its ``d_head`` non-zero ones).

    ``W_E W_V W_O W_U`` is a ``FactoredMatrix`` with factors ``W_E W_V`` and ``W_O W_U``; its
    non-zero eigenvalues are those of the reversed product ``W_O (W_U W_E) W_V``
    (``d_head x d_head``, TransformerLens's ``FactoredMatrix.eigenvalues``), built here from the
    ``W_U W_E`` Gram so that the vocabulary is contracted once for all heads.
    """
    w = _weights(model)
    # A B = W_V W_O (W_U W_E): the full circuit with W_E cycled from the front to the back (same
    # non-zero eigenvalues); .eigenvalues takes those of B A = W_O (W_U W_E) W_V.
    factored = FactoredMatrix(w.W_V, w.W_O @ w.gram_unembed_embed)
    return factored.eigenvalues


def ov_copying(model: ModelLike) -> tuple[Float[Tensor, "n_layers n_heads"],
                                          Float[Tensor, "n_layers n_heads"]]:
    """The OV copying measure and the positive-eigenvalue fraction of every head.

    Appendix "Validating head activation evaluators", "Copying": "the sum of the eigenvalues,
    divided by the absolute value of the eigenvalues". Exactly::

        ov_copying = sum_i Re(lambda_i) / sum_i |lambda_i|        (|.| the complex modulus)
        ov_positive_fraction = #{i : Re(lambda_i) > 0} / #{i : lambda_i != 0}

    over the eigenvalues of :func:`ov_eigenvalues`. ``sum lambda`` of a real matrix is real
    (complex eigenvalues come in conjugate pairs), so taking its real part only drops rounding
    error; using the modulus in the denominator bounds the measure in [-1, 1], with 1 for a
    circuit whose eigenvalues are all positive reals (copying), -1 for all negative
    (anti-copying) and 0 for, e.g., a pure rotation. An eigenvalue counts as zero when its
    modulus is below :data:`EIGENVALUE_RTOL` times the head's largest. A head whose OV circuit
    is zero gets NaN for both.
    """
    lam = ov_eigenvalues(model)
    mod = lam.abs()
    total = mod.sum(-1)
    copying = lam.real.sum(-1) / total
    nonzero = mod > EIGENVALUE_RTOL * mod.amax(-1, keepdim=True)
    positive = (lam.real > 0) & nonzero
    fraction = positive.sum(-1).to(torch.float64) / nonzero.sum(-1).to(torch.float64)
    zero = total == 0
    copying = copying.masked_fill(zero, float("nan"))
    fraction = fraction.masked_fill(zero, float("nan"))
    return copying, fraction


# ------------------------------------------------------------------------ composition scores
def composition_baseline(d_model: int) -> float:
    """Composition score of random matrices: ``1 / sqrt(d_model)``.

    For independent random matrices whose distribution is unchanged by rotations of the
    residual stream (e.g. Gaussian factors of the heads' shapes, whatever their rank),
    ``E ||A B||_F^2 = ||A||_F^2 ||B||_F^2 / d_model`` exactly (average ``B B^T`` over rotations:
    ``||B||_F^2 I / d_model``). The root-mean-square score of such pairs is therefore
    ``1 / sqrt(d_model)``; scores concentrate around it (the tests check it against sampled
    Gaussian heads), so a score well above it reads "above chance".
    """
    if not isinstance(d_model, int) or d_model < 1:
        raise CircuitError(f"d_model={d_model!r} must be a positive integer")
    return 1.0 / math.sqrt(d_model)


def _factor_pair(w: CircuitWeights, mode: CompositionMode) -> tuple[Tensor, Tensor]:
    """Factors (A, B) of the reading matrix ``A B`` of every target head for ``mode``."""
    if mode == "Q":  # x_q W_QK: the query side reads the source's output
        return w.W_Q, w.W_K.transpose(-2, -1)
    if mode == "K":  # (W_QK)^T: the key side reads it
        return w.W_K, w.W_Q.transpose(-2, -1)
    if mode == "V":
        return w.W_V, w.W_O
    raise CircuitError(f"mode={mode!r} is not one of {get_args(CompositionMode)}")


def composition_scores(
    model: ModelLike, mode: CompositionMode
) -> Float[Tensor, "n_layers n_heads n_layers n_heads"]:
    """Q-, K- or V-composition score of every (earlier, later) pair of heads.

    "A Mathematical Framework for Transformer Circuits": ``||W_OV^{src} W^{tgt}||_F /
    (||W_OV^{src}||_F ||W^{tgt}||_F)`` with ``W^{tgt} = W_QK`` (Q), ``W_QK^T`` (K) or ``W_OV``
    (V), in TransformerLens's row-vector convention (``model.OV @ model.QK`` as in
    ``HookedTransformer.all_composition_scores``), on the LayerNorm-folded weights. Indexed
    ``[src_layer, src_head, tgt_layer, tgt_head]`` like TransformerLens, but pairs that are not
    in strictly increasing layers are NaN (TransformerLens writes 0, which reads as a score),
    and so is a pair with a zero (dead) head, whose score is 0/0.

    Computed on ``d_head``-sized reduced factors, never on ``d_model x d_model`` products: with
    the thin QR decompositions ``A_1 = Q_1 R_1`` (source ``W_V``) and ``B_2^T = Q_2 R_2``
    (the target's right factor), ``||A_1 B_1 A_2 B_2||_F = ||(R_1 B_1)(A_2 R_2^T)||_F`` because
    ``Q_1``, ``Q_2`` have orthonormal columns; likewise for the two norms in the denominator.
    Compare with :func:`composition_baseline`.
    """
    if mode not in get_args(CompositionMode):
        raise CircuitError(f"mode={mode!r} is not one of {get_args(CompositionMode)}")
    return _composition_scores(_weights(model), (mode,))[mode]


def _composition_scores(w: CircuitWeights, modes: Sequence[str]) -> dict[str, Tensor]:
    """:func:`composition_scores` for several modes, sharing the source side."""
    L, H = w.n_layers, w.n_heads
    flat = "l h a b -> (l h) a b"
    r_src = torch.linalg.qr(einops.rearrange(w.W_V, flat), mode="r").R
    x = r_src @ einops.rearrange(w.W_O, flat)  # [src, d_head, d_model]: W_OV = Q_1 x
    x_rows = einops.rearrange(x, "s d m -> (s d) m")
    x_norm = einops.reduce(x**2, "s d m -> s", "sum").sqrt()
    later = (torch.arange(L)[:, None] < torch.arange(L)[None, :]).to(x.device)
    out = {}
    for mode in modes:
        A2, B2 = (einops.rearrange(f, flat) for f in _factor_pair(w, mode))
        r_tgt = torch.linalg.qr(B2.transpose(-2, -1), mode="r").R
        y = A2 @ r_tgt.transpose(-2, -1)  # [tgt, d_model, d_head]: A2 B2 = y Q_2^T
        y_cols = einops.rearrange(y, "t m e -> m (t e)")
        y_norm = einops.reduce(y**2, "t m e -> t", "sum").sqrt()
        prod = einops.reduce((x_rows @ y_cols) ** 2, "(s d) (t e) -> s t", "sum",
                             s=L * H, t=L * H).sqrt()
        scores = prod / (x_norm[:, None] * y_norm[None, :])
        scores = einops.rearrange(scores, "(k g) (l h) -> k g l h", k=L, l=L)
        out[mode] = scores.masked_fill(~later[:, None, :, None], float("nan"))
    return out


# ------------------------------------------------------------------------------ tidy frames
def _previous_token_scores(model: HookedTransformer, tokens: Tensor) -> Tensor:
    return previous_token_scores(model, tokens)


def circuit_scores(
    model: HookedTransformer,
    *,
    prev_scores: Float[Tensor, "n_layers n_heads"] | None = None,
    tokens: Int[Tensor, "batch pos"] | None = None,
    metrics: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Every circuit measure of one model as a tidy long-form DataFrame.

    Schema: ``layer, head, metric, value, source_layer, source_head`` (the sweep adds ``run,
    step, tokens``). Per-head metrics have null ``source_*``; the pairwise composition scores
    have one row per (source = earlier writing head, target = ``layer``/``head`` reading head)
    pair in strictly increasing layers; ``composition_baseline`` is model-level (null
    ``layer``/``head``). Undefined values (``qk_trace`` in layer 0) are rows with a NaN
    ``value``, so "undefined" is never confused with "absent" or 0. ``qk_smear_trace`` rows
    exist only for smeared-key models. Layer/head columns are pandas nullable ``Int64``.

    Args:
        model: the model to measure.
        prev_scores: previous-token score of every head (step 1 of the QK trace).
        tokens: an example text from the training distribution (``[batch, pos]``); used to
            measure ``prev_scores`` with ``heads.previous_token_scores`` when they are not
            given. Ignored when ``prev_scores`` is given.
        metrics: the subset of :data:`CIRCUIT_METRICS` to compute (default: all).
    """
    wanted = _check_metrics(metrics)
    w = circuit_weights(model)
    rows: list[pd.DataFrame] = []
    L, H = w.n_layers, w.n_heads

    def per_head(name: str, values: Tensor) -> None:
        rows.append(head_frame({name: values}))

    if "qk_trace" in wanted:
        if L == 1:
            per_head("qk_trace", torch.full((L, H), float("nan")))
        else:
            if prev_scores is None:
                if tokens is None:
                    raise CircuitError("qk_trace needs previous-token scores: pass prev_scores= "
                                       "or tokens= (an example text of the training data)")
                prev_scores = _previous_token_scores(model, tokens)
            per_head("qk_trace", qk_trace(w, prev_scores))
    if "qk_smear_trace" in wanted:
        smear = qk_smear_trace(w)
        if smear is not None:
            per_head("qk_smear_trace", smear)
    if wanted & {"ov_copying", "ov_positive_fraction"}:
        copying, fraction = ov_copying(w)
        if "ov_copying" in wanted:
            per_head("ov_copying", copying)
        if "ov_positive_fraction" in wanted:
            per_head("ov_positive_fraction", fraction)
    modes = {mode: name for name, mode in zip(PAIR_METRICS, get_args(CompositionMode),
                                              strict=True) if name in wanted and L > 1}
    # Every (source, target) pair in strictly increasing layers, in [src_l, src_h, tgt_l, tgt_h]
    # order; a pair with a zero head keeps its row (NaN value: the score is 0/0, undefined).
    later = torch.arange(L)[:, None, None, None] < torch.arange(L)[None, None, :, None]
    src_l, src_h, tgt_l, tgt_h = torch.nonzero(later.expand(L, H, L, H), as_tuple=True)
    for mode, all_scores in (_composition_scores(w, tuple(modes)).items() if modes else ()):
        name, scores = modes[mode], all_scores.cpu()
        rows.append(pd.DataFrame({
            "layer": tgt_l.numpy(), "head": tgt_h.numpy(), "metric": name,
            "value": scores[src_l, src_h, tgt_l, tgt_h].numpy(),
            "source_layer": src_l.numpy(), "source_head": src_h.numpy()}))
    if "composition_baseline" in wanted:
        rows.append(pd.DataFrame({"metric": ["composition_baseline"],
                                  "value": [composition_baseline(w.d_model)]}))
    return model_frame(rows, columns=("source_layer", "source_head"))


FRAME_COLUMNS = ("layer", "head", "metric", "value", "source_layer", "source_head")
"""Columns of :func:`circuit_scores`' frame (the tidy schema's one-model form with the
pairwise source columns)."""


def _check_metrics(metrics: Iterable[str] | None) -> set[str]:
    if metrics is None:
        return set(CIRCUIT_METRICS)
    if isinstance(metrics, str):
        metrics = [metrics]
    wanted = set(metrics)
    unknown = sorted(wanted - set(CIRCUIT_METRICS))
    if unknown:
        raise CircuitError(f"unknown circuit metric(s) {unknown}; choose from {CIRCUIT_METRICS}")
    return wanted


