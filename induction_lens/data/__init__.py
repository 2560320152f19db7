"""Corpora (synthetic and natural text) and the evaluators' repeated-random-token batches.

Every corpus follows :class:`Corpus`: a deterministic ``batch(step, batch_size)``, a held-out
``eval_tokens(n)``, ``token_frequencies()`` (used to exclude the most and least common tokens
from the evaluators' random sequences) and an optional ``tokenizer``. Token id 0 is BOS in
every corpus, and every example starts with it.

Level: above ``config``/``constants``/``errors``/``io``; below ``hub`` and everything that
measures. It never imports ``hub``, ``models``, ``measures`` or anything above them.
"""

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from induction_lens.config import ConfigError, DataSpec
from induction_lens.data.synthetic import BOS_TOKEN_ID, SyntheticCorpus

__all__ = [
    "BOS_TOKEN_ID",
    "Corpus",
    "SyntheticCorpus",
    "make_corpus",
    "repeated_tokens",
    "evaluator_token_pool",
]


@runtime_checkable
class Corpus(Protocol):
    """What the trainer and the evaluators need from a corpus."""

    spec: DataSpec
    d_vocab: int
    n_ctx: int
    bos_token_id: int

    @property
    def tokenizer(self):  # a ``tokenizers.Tokenizer`` or None (synthetic tokens are not text)
        ...

    def batch(self, step: int, batch_size: int) -> Int[Tensor, "batch pos"]: ...

    def eval_tokens(self, n_examples: int) -> Int[Tensor, "batch pos"]: ...

    def token_frequencies(self) -> np.ndarray: ...


def make_corpus(spec: DataSpec, *, d_vocab: int, n_ctx: int,
                cache_dir: str | Path | None = None, tokenizer_path: str | Path | None = None
                ) -> Corpus:
    """Build the corpus a :class:`DataSpec` describes.

    Args:
        spec: the data spec.
        d_vocab: the model's vocabulary (the BPE tokenizer is trained to this size).
        n_ctx: the model's context; examples are exactly this long.
        cache_dir: where tokenized natural text is cached (the hub passes its own).
        tokenizer_path: a saved ``tokenizer.json`` to reuse instead of training one (resume,
            evaluation of a stored run).
    """
    if spec.source == "synthetic":
        return SyntheticCorpus(spec, d_vocab=d_vocab, n_ctx=n_ctx)
    from induction_lens.data.text import TextCorpus  # heavy imports only for natural text

    return TextCorpus(spec, d_vocab=d_vocab, n_ctx=n_ctx, cache_dir=cache_dir,
                      tokenizer_path=tokenizer_path)


def evaluator_token_pool(token_frequencies: np.ndarray | None, d_vocab: int, *,
                         exclude_fraction: float = 0.1,
                         special_tokens: tuple[int, ...] = (BOS_TOKEN_ID,)) -> np.ndarray:
    """Token ids the head evaluators may draw: not special, not among the most or least common.

    The paper's evaluators use random tokens "excluding the most common and the least common
    tokens" without saying how many; we drop ``exclude_fraction / 2`` of the vocabulary from
    each end of the frequency ranking (ties broken by token id) and never use tokens the corpus
    never produces. Without frequencies (a model built by hand) only special tokens are dropped.
    """
    if not 0 <= exclude_fraction < 1:
        raise ConfigError(f"exclude_fraction={exclude_fraction} must be in [0, 1)")
    ids = np.array([t for t in range(d_vocab) if t not in special_tokens])
    if token_frequencies is None:
        return ids
    freqs = np.asarray(token_frequencies, dtype=np.float64)
    if freqs.shape != (d_vocab,):
        raise ConfigError(f"token_frequencies has shape {freqs.shape}, expected ({d_vocab},); "
                          "pass the frequencies of the model's own vocabulary")
    ids = ids[freqs[ids] > 0]
    order = ids[np.argsort(-freqs[ids], kind="stable")]
    cut = int(len(order) * exclude_fraction / 2)
    kept = order[cut:len(order) - cut]
    if len(kept) < 2:
        raise ConfigError("too few tokens left for the evaluators after excluding common and rare "
                          "ones; lower exclude_fraction")
    return np.sort(kept)


def repeated_tokens(pool: np.ndarray, *, n_examples: int = 10, seq_len: int = 25, repeats: int = 4,
                    bos_token_id: int | None = BOS_TOKEN_ID, seed: int = 0
                    ) -> Int[Tensor, "batch pos"]:
    """The paper's prefix-matching input: ``seq_len`` random tokens repeated ``repeats`` times.

    Appendix "(3) Head activation evaluators": "Generate a sequence of 25 random tokens,
    excluding the most common and the least common tokens. Repeat this sequence 4 times and
    prepend a 'start of sequence' token." Tokens within one sequence are distinct (drawn without
    replacement from ``pool``, see :func:`evaluator_token_pool`) so that every earlier copy of a
    token is unambiguous. ``bos_token_id=None`` omits the BOS token.
    """
    if seq_len < 1 or repeats < 1 or n_examples < 1:
        raise ConfigError("repeated_tokens needs seq_len, repeats and n_examples >= 1")
    if len(pool) < seq_len:
        raise ConfigError(f"the token pool has {len(pool)} tokens but seq_len={seq_len} distinct "
                          "tokens are needed; lower seq_len or exclude fewer tokens")
    rng = np.random.default_rng(seed)
    base = np.stack([rng.choice(pool, size=seq_len, replace=False) for _ in range(n_examples)])
    tokens = np.tile(base, (1, repeats))
    if bos_token_id is not None:
        tokens = np.concatenate([np.full((n_examples, 1), bos_token_id), tokens], axis=1)
    return torch.from_numpy(tokens.astype(np.int64))
