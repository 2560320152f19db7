"""Data of pretrained runs: the evaluation text in the model's own tokens and its token pool.

Level: ``data`` (imports ``config``, ``constants``, ``errors`` and ``data``).
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from induction_lens import constants as C
from induction_lens.config import DataSpec
from induction_lens.data import evaluator_token_pool
from induction_lens.errors import ConfigError, DataError

__all__ = ["DEFAULT_EVAL_CTX", "PretrainedCorpus", "pretrained_token_pool", "special_token_ids"]

DEFAULT_EVAL_CTX = 512
"""Length of the loss evaluators' examples of a pretrained run, at most the model's context:
the paper's evaluation examples are 512 tokens long (appendix "(1) Per-token losses")."""

SPECIAL_ROLES = ("bos_token", "eos_token", "pad_token", "unk_token")


def special_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """Ids of every special token of a ``transformers`` tokenizer (BOS, EOS, PAD, UNK and the
    added special tokens), sorted."""
    ids = set(getattr(tokenizer, "all_special_ids", None) or ())
    for role in SPECIAL_ROLES:
        value = getattr(tokenizer, f"{role}_id", None)
        if value is not None:
            ids.add(int(value))
    return tuple(sorted(ids))


def pretrained_token_pool(d_vocab: int, tokenizer: Any = None, *,
                          token_frequencies: np.ndarray | None = None,
                          exclude_fraction: float = 0.1) -> np.ndarray:
    """Token ids the head evaluators may draw for a model of ``d_vocab`` ids with its own
    (``transformers``) ``tokenizer``, e.g. ``pretrained_token_pool(m.cfg.d_vocab, m.tokenizer)``.

    The paper draws random tokens "excluding the most common and the least common tokens".
    With ``token_frequencies`` (of the model's vocabulary, e.g. the run's stored
    ``token_frequencies.safetensors``) this is
    :func:`~induction_lens.data.evaluator_token_pool` with the tokenizer's special tokens
    excluded. Without them (our choice, a proxy): ids the tokenizer can produce (Pythia's
    embedding has 50304 rows for 50277 tokens; the padding rows were never trained), minus
    the special tokens, minus ``exclude_fraction / 2`` of them at each end of the id order. A
    BPE numbers its tokens in the order it learned them, byte tokens and the most frequent
    merges first and the rarest merges last, so the id order stands in for the frequency
    ranking. Without a tokenizer: every id but BOS (0).
    """
    specials = special_token_ids(tokenizer) if tokenizer is not None else (C.BOS_TOKEN_ID,)
    if token_frequencies is not None or tokenizer is None:
        return evaluator_token_pool(token_frequencies, d_vocab, exclude_fraction=exclude_fraction,
                                    special_tokens=specials)
    if not 0 <= exclude_fraction < 1:
        raise ConfigError(f"exclude_fraction={exclude_fraction} must be in [0, 1)")
    size = min(d_vocab, len(tokenizer))
    ids = np.setdiff1d(np.arange(size), np.asarray(specials, dtype=np.int64))
    cut = int(len(ids) * exclude_fraction / 2)
    kept = ids[cut:len(ids) - cut]
    if len(kept) < 2:
        raise ConfigError("too few tokens left for the evaluators after excluding special, "
                          "common and rare ones; lower exclude_fraction")
    return kept


class PretrainedCorpus:
    """Evaluation text of a pretrained run, tokenized with the model's own tokenizer.

    Follows the :class:`~induction_lens.data.Corpus` protocol as far as evaluation needs:
    documents from a :class:`~induction_lens.config.DataSpec` (``hub``, ``files`` or
    ``shakespeare``, read by :mod:`induction_lens.data.text`), joined with the model's BOS
    token between documents and cut into examples of BOS + ``n_ctx - 1`` tokens, in document
    order. Every example is evaluation data (nothing here is trained), so ``eval_tokens(n)`` is
    the first ``n`` examples; ``batch`` refuses.
    """

    def __init__(self, spec: DataSpec, tokenizer: Any, *, bos_token_id: int, d_vocab: int,
                 n_ctx: int, cache_dir: str | Path | None = None):
        from induction_lens.data.text import _LOADERS, default_cache_dir

        if spec.source not in _LOADERS:
            raise DataError(f"the evaluation text of a pretrained run must be natural text "
                            f"(hf:NAME, files:PATH or shakespeare), not {spec.source!r}; "
                            "re-import with data=")
        self.spec, self.d_vocab, self.n_ctx = spec, d_vocab, n_ctx
        self.bos_token_id = bos_token_id
        self._tokenizer = tokenizer
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._docs = _LOADERS[spec.source](spec, self.cache_dir)
        self._chunks: list[np.ndarray] = []
        self._pending = np.empty(0, dtype=np.int64)
        self._next_doc = 0

    @property
    def tokenizer(self):
        """The model's ``tokenizers.Tokenizer``."""
        return self._tokenizer

    def _encode(self, start: int, stop: int) -> np.ndarray:
        texts = [t for t in self._docs[start:stop]["text"] if t]
        if not texts:
            return np.empty(0, dtype=np.int64)
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        parts = []
        for enc in encodings:
            parts += [np.asarray(enc.ids, dtype=np.int64),
                      np.array([self.bos_token_id], dtype=np.int64)]
        return np.concatenate(parts)

    def _documents(self, batch: int = 256) -> Iterator[np.ndarray]:
        for start in range(0, len(self._docs), batch):
            yield self._encode(start, start + batch)

    def _fill(self, n_examples: int) -> None:
        span = self.n_ctx - 1
        while len(self._chunks) < n_examples and self._next_doc < len(self._docs):
            stream = np.concatenate([self._pending, self._encode(self._next_doc,
                                                                 self._next_doc + 256)])
            self._next_doc += 256
            n = len(stream) // span
            body = stream[:n * span].reshape(n, span)
            bos = np.full((n, 1), self.bos_token_id, dtype=np.int64)
            self._chunks.extend(np.concatenate([bos, body], axis=1))
            self._pending = stream[n * span:]

    def eval_tokens(self, n_examples: int) -> Int[Tensor, "batch pos"]:
        """The first ``n_examples`` examples of the text.

        Raises:
            DataError: the text makes fewer examples.
        """
        self._fill(n_examples)
        if len(self._chunks) < n_examples:
            raise DataError(f"the evaluation text {self.spec.source!r} makes only "
                            f"{len(self._chunks)} examples of {self.n_ctx} tokens, fewer than "
                            f"{n_examples}; add text or lower n_examples")
        return torch.from_numpy(np.stack(self._chunks[:n_examples]))

    def token_frequencies(self) -> np.ndarray:
        """Relative frequency of each id in the whole text, shape ``(d_vocab,)`` (BOS: 0)."""
        counts = np.zeros(self.d_vocab, dtype=np.int64)
        for ids in self._documents():
            counts += np.bincount(ids, minlength=self.d_vocab)[:self.d_vocab]
        counts[self.bos_token_id] = 0
        return counts / max(1, counts.sum())

    def batch(self, step: int, batch_size: int) -> Tensor:
        raise DataError("a pretrained run is imported, not trained; its corpus only evaluates")
