"""The embedded default corpus: seeded synthetic sequences that reward in-context copying.

Each sequence starts with the BOS token (id 0) and is then filled with segments whose length is
uniform in ``[min_segment, max_segment]``. With probability ``copy_prob`` a segment copies an
earlier span of the same sequence (when one fits), otherwise it draws fresh tokens from the
token distribution (uniform over ids ``1..d_vocab-1``, or Zipf with ``p(t) ~ t^-s``). A model
can only predict a copied segment from the context, so the corpus rewards exactly the
"[A][B] ... [A] -> [B]" completion that defines an induction head (paper, "Key Concepts").

Determinism: batch ``step`` depends only on ``(seed, step)`` (``numpy.random.default_rng([seed,
0, step])``), so every model trained on the same spec sees the same examples in the same order
(as in the paper) and a resumed run sees the batches it would have seen. The evaluation stream
``default_rng([seed, 1])`` never overlaps the training stream.
"""

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from induction_lens.config import ConfigError, DataSpec
from induction_lens.constants import BOS_TOKEN_ID

_TRAIN_STREAM = 0
_EVAL_STREAM = 1


class SyntheticCorpus:
    """The embedded synthetic corpus (see the module docstring)."""

    bos_token_id = BOS_TOKEN_ID
    tokenizer = None

    def __init__(self, spec: DataSpec, *, d_vocab: int, n_ctx: int):
        if d_vocab < 3:
            raise ConfigError(f"ModelSpec.d_vocab={d_vocab} is too small for the synthetic corpus; "
                              "use at least 3 (BOS plus two tokens)")
        if spec.min_segment >= n_ctx:
            raise ConfigError(
                f"ModelSpec.n_ctx={n_ctx} is too short for DataSpec.min_segment={spec.min_segment};"
                " raise n_ctx or lower min_segment"
            )
        self.spec = spec
        self.d_vocab = d_vocab
        self.n_ctx = n_ctx
        ids = np.arange(1, d_vocab, dtype=np.float64)
        weights = (np.ones_like(ids) if spec.distribution == "uniform"
                   else ids ** -spec.zipf_exponent)
        self._probs = np.concatenate([[0.0], weights / weights.sum()])

    def token_frequencies(self) -> np.ndarray:
        """Probability of each token id under the fresh-token distribution (BOS gets 0)."""
        return self._probs.copy()

    def sample(self, rng: np.random.Generator, n_examples: int) -> np.ndarray:
        """Draw ``n_examples`` sequences of ``n_ctx`` tokens from ``rng``."""
        spec, n_ctx = self.spec, self.n_ctx
        out = np.empty((n_examples, n_ctx), dtype=np.int64)
        out[:, 0] = BOS_TOKEN_ID
        if spec.distribution == "uniform":
            fresh = rng.integers(1, self.d_vocab, size=(n_examples, n_ctx))
        else:
            fresh = rng.choice(self.d_vocab, size=(n_examples, n_ctx), p=self._probs)
        for row in range(n_examples):
            seq, pos = out[row], 1
            while pos < n_ctx:
                length = min(int(rng.integers(spec.min_segment, spec.max_segment + 1)), n_ctx - pos)
                # A copy reads a span lying wholly in [1, pos): the BOS token is never copied.
                if rng.random() < spec.copy_prob and pos - 1 >= length:
                    start = int(rng.integers(1, pos - length + 1))
                    seq[pos:pos + length] = seq[start:start + length]
                else:
                    seq[pos:pos + length] = fresh[row, pos:pos + length]
                pos += length
        return out

    def batch(self, step: int, batch_size: int) -> Int[Tensor, "batch pos"]:
        """The training batch of optimizer step ``step`` (a pure function of seed and step)."""
        rng = np.random.default_rng([self.spec.seed, _TRAIN_STREAM, step])
        return torch.from_numpy(self.sample(rng, batch_size))

    def eval_tokens(self, n_examples: int) -> Int[Tensor, "batch pos"]:
        """A held-out evaluation set; the first k examples are the same for every n >= k."""
        rng_seq = np.random.SeedSequence([self.spec.seed, _EVAL_STREAM])
        rows = [self.sample(np.random.default_rng(child), 1) for child in rng_seq.spawn(n_examples)]
        return torch.from_numpy(np.concatenate(rows) if rows else
                                np.empty((0, self.n_ctx), dtype=np.int64))
