"""The evaluation inputs of one run, built once and shared by every metric of a checkpoint.

Level: ``runs`` (imports ``data``, ``errors``, ``hub``, ``measures`` and ``runs.settings``).
"""

from collections.abc import Callable
from typing import Any

import numpy as np
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

from induction_lens.config import PretrainedSpec, RunConfig
from induction_lens.constants import BOS_TOKEN_ID
from induction_lens.data import evaluator_token_pool, repeated_tokens
from induction_lens.data.pretrained import pretrained_token_pool
from induction_lens.errors import EvalError
from induction_lens.hub import Hub
from induction_lens.measures.heads import (
    previous_token_scores,
    random_dataset_tokens,
    repeated_head_scores,
)
from induction_lens.measures.losses import random_token_indices
from induction_lens.runs.settings import EvalSettings

__all__ = ["EvalContext"]


class EvalContext:
    """The evaluation inputs of one run, built lazily and once, plus a per-checkpoint memo.

    Attributes a metric may read: ``settings``, ``run``, ``hub``, ``d_vocab``, ``n_ctx``,
    ``step`` and ``train_tokens`` (of the checkpoint being evaluated), and the properties below.
    """

    def __init__(self, settings: EvalSettings, *, d_vocab: int, n_ctx: int,
                 eval_tokens: Callable[[int], Tensor] | Tensor | None = None,
                 token_frequencies: np.ndarray | None = None, hub: Hub | None = None,
                 run: str | None = None, config: RunConfig | None = None, cache: bool = True):
        self.settings = settings
        self.d_vocab = d_vocab
        self.n_ctx = n_ctx
        self.hub = hub
        self.run = run
        self.config = config
        """The run's config (None for a model outside a hub)."""
        self.cache = cache
        """Whether metrics that evaluate other metrics of the run (the ablations' phase
        window) may read and write the run's caches."""
        self._eval_source = eval_tokens
        self._frequencies = token_frequencies
        self._cache: dict[str, Any] = {}
        self._memo: dict[Any, Any] = {}
        self.step: int | None = None
        self.train_tokens: int | None = None

    @classmethod
    def from_hub(cls, hub: Hub, run: str, settings: EvalSettings, *,
                 cache: bool = True) -> "EvalContext":
        """The context of a stored run: its corpus's evaluation set and token frequencies."""
        cfg = hub.config(run)
        corpus: list = []  # built on first use (natural text loads a tokenizer), then reused

        def eval_tokens(n: int) -> Tensor:
            if not corpus:
                corpus.append(hub.corpus(run))
            return corpus[0].eval_tokens(n)

        return cls(settings, d_vocab=getattr(cfg.model, "d_vocab", 0), n_ctx=cfg.model.n_ctx,
                   eval_tokens=eval_tokens, token_frequencies=hub.token_frequencies(run),
                   hub=hub, run=run, config=cfg, cache=cache)

    @property
    def task(self) -> str:
        """The kind of run: "reddy" for Reddy 2023's classifier, else "language"."""
        return "reddy" if self.config is not None and self.config.is_reddy else "language"

    def begin_checkpoint(self, step: int | None, train_tokens: int | None) -> None:
        """Start a checkpoint: clears the memo."""
        self.step, self.train_tokens = step, train_tokens
        self._memo.clear()

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per checkpoint under ``key``: metrics share forward passes."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per run under ``key`` (inputs every checkpoint shares)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def eval_tokens(self) -> Int[Tensor, "batch pos"]:
        """The per-token-loss evaluation set: ``settings.n_examples`` held-out examples."""
        def build() -> Tensor:
            source = self._eval_source
            if source is None:
                raise EvalError("this context has no evaluation set; pass eval_tokens= (e.g. "
                                "corpus.eval_tokens) to evaluate losses")
            tokens = source(self.settings.n_examples) if callable(source) else source
            if tokens.shape[0] < self.settings.n_examples:
                raise EvalError(f"the evaluation set has {tokens.shape[0]} examples but "
                                f"n_examples={self.settings.n_examples}")
            return tokens[:self.settings.n_examples]
        return self.once("eval_tokens", build)

    @property
    def random_index(self) -> Int[Tensor, " batch"]:
        """The fixed random context index of each evaluation example."""
        return self.once("random_index", lambda: random_token_indices(
            self.settings.n_examples, self.eval_tokens.shape[1], seed=self.settings.index_seed))

    @property
    def token_pool(self) -> np.ndarray:
        """Token ids for the head evaluators: not special, not the most or least common."""
        def build() -> np.ndarray:
            if self.config is not None and isinstance(self.config.model, PretrainedSpec):
                # An imported series: the tokenizer's special tokens and the ids it cannot
                # produce are left out (with or without frequencies of its evaluation text).
                return pretrained_token_pool(
                    self.d_vocab, self.hub.hf_tokenizer(self.run),
                    token_frequencies=self._frequencies,
                    exclude_fraction=self.settings.exclude_fraction)
            return evaluator_token_pool(self._frequencies, self.d_vocab,
                                        exclude_fraction=self.settings.exclude_fraction,
                                        special_tokens=(self.bos_token_id,))

        return self.once("token_pool", build)

    @property
    def bos_token_id(self) -> int:
        """The BOS the evaluator inputs start with: the run's (an imported series has its own,
        :meth:`~induction_lens.hub.Hub.bos_token_id`), else this package's id 0."""
        if self.hub is None or self.run is None:
            return BOS_TOKEN_ID
        return self.once("bos_token_id", lambda: self.hub.bos_token_id(self.run))

    @property
    def repeated_tokens(self) -> Int[Tensor, "batch pos"]:
        """The prefix-matching input: BOS, then ``head_repeats`` copies of ``head_seq_len``
        random tokens."""
        s = self.settings
        length = 1 + s.head_seq_len * s.head_repeats
        if length > self.n_ctx:
            raise EvalError(f"1 + head_seq_len*head_repeats = {length} tokens do not fit the "
                            f"context {self.n_ctx}; lower EvalSettings.head_seq_len or "
                            "head_repeats")
        return self.once("repeated_tokens", lambda: repeated_tokens(
            self.token_pool, n_examples=s.head_examples, seq_len=s.head_seq_len,
            repeats=s.head_repeats, seed=s.head_seed, bos_token_id=self.bos_token_id))

    @property
    def dataset_tokens(self) -> Int[Tensor, "batch pos"]:
        """Examples of the training distribution for previous-token scores: the first
        ``head_examples`` of the evaluation stream (uniform random pool tokens without one)."""
        def build() -> Tensor:
            n = self.settings.head_examples
            source = self._eval_source
            if source is None:
                return random_dataset_tokens(self.token_pool, n_examples=n, n_ctx=self.n_ctx,
                                             seed=self.settings.head_seed,
                                             bos_token_id=self.bos_token_id)
            tokens = source(n) if callable(source) else source
            return tokens[:n]
        return self.once("dataset_tokens", build)

    def previous_token_scores(self, model: HookedTransformer) -> Tensor:
        """``[n_layers, n_heads]`` previous-token scores of this checkpoint (memoised)."""
        return self.memo("previous_token", lambda: previous_token_scores(
            model, self.dataset_tokens, batch_size=self.settings.batch_size))

    def repeated_scores(self, model: HookedTransformer) -> dict[str, Tensor]:
        """Prefix-matching and copying scores of this checkpoint, from one forward pass."""
        s = self.settings
        return self.memo("repeated", lambda: repeated_head_scores(
            model, self.repeated_tokens, seq_len=s.head_seq_len,
            metrics=("prefix_matching", "copying"), copying_bos=s.copying_bos,
            copying_reading=s.copying_reading, batch_size=s.batch_size))
