"""What the built-in evaluators measure on: :class:`EvalSettings`, part of every cache key.

Level: ``runs`` (imports ``errors`` and the size constants of ``measures``).
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, get_args

from induction_lens.errors import EvalError
from induction_lens.measures.ablations import DEFAULT_CONTEXT_FRACTION
from induction_lens.measures.heads import COPYING_READINGS, CopyingReading
from induction_lens.measures.llc import LLCSampler
from induction_lens.measures.losses import LOGITS_BUDGET

__all__ = ["ALL_SETTINGS", "KEYED_WHEN_SET", "EvalSettings"]


@dataclass(frozen=True)
class EvalSettings:
    """What the built-in evaluators measure on; part of every cache key.

    The laptop defaults keep one checkpoint of the laptop models at about a second on two CPU
    cores; :meth:`paper` gives the paper's sizes (10,000 examples).
    """

    n_examples: int = 512
    """Examples in the per-token-loss evaluation set (the paper: 10,000 of 512 tokens); the
    run's held-out ``corpus.eval_tokens(n_examples)``, the same for every snapshot."""
    index_seed: int = 0
    """Seed of the random-token-per-example indices (:func:`random_token_indices`)."""
    icl_indices: tuple[int, int] | None = None
    """(early, late) context indices of the ICL score; None scales the paper's (50, 500) to
    the example length (:func:`~induction_lens.measures.losses.icl_indices`)."""
    batch_size: int = 64
    """Examples per forward pass."""
    logits_budget: int = LOGITS_BUDGET
    """Most logits held at once by the loss evaluators."""
    head_examples: int = 10
    """Examples of each head evaluator (the paper: 10)."""
    head_seq_len: int = 25
    """Random tokens per repeat (the paper: 25)."""
    head_repeats: int = 4
    """Repeats in the prefix-matching input (the paper: 4)."""
    head_seed: int = 0
    """Seed of the random token sequences."""
    exclude_fraction: float = 0.1
    """Share of the vocabulary excluded as most and least common tokens
    (:func:`~induction_lens.data.evaluator_token_pool`)."""
    copying_bos: bool = True
    """Prepend BOS to the copying input (paper footnote 31; see
    :func:`~induction_lens.measures.heads.copying_scores`)."""
    copying_reading: CopyingReading = "per_source"
    """The copying evaluator's reading: "per_source" (rectify each attended source's
    direct-path logits) or "literal" (rectify the head's summed output, as the appendix's text
    says); see :func:`~induction_lens.measures.heads.copying_scores`. Part of the cache key
    only when it is not the default (:data:`KEYED_WHEN_SET`)."""
    ablation_window: tuple[int, int] | str = "detect"
    """Ablations: the phase-change window ``(start_step, end_step)`` whose before-and-after
    vector the ablation reports project on; "detect" finds it from the run's ICL score
    (:func:`~induction_lens.analysis.detect_phase_change`), "none" leaves the projection out."""
    context_fraction: float = DEFAULT_CONTEXT_FRACTION
    """Ablations: share of the examples whose every context index feeds ``context_loss_delta``
    (:data:`~induction_lens.measures.ablations.DEFAULT_CONTEXT_FRACTION`)."""
    ablation_batch_size: int | None = None
    """Ablations: examples per pass (None: from the model's size; speed only, not in the key)."""
    heads_per_pass: int = 1
    """Ablations: heads of one layer stacked into one pass (for GPUs; speed only)."""
    llc_sampler: LLCSampler = "sgmcmc_sgld"
    """LLC: devinterp's sampling method (:func:`~induction_lens.measures.llc.estimate_llc`)."""
    llc_lr: float = 3e-3
    """LLC: SGLD step size. 3e-3 is the one of 3e-4, 1e-3 and 3e-3 whose trace flattened
    (:func:`~induction_lens.measures.llc.trace_drift` within 0.1) at every checkpoint of the
    laptop ``attn-only-2l`` with the other defaults; ``benchmarks/bench_llc.py`` measures it."""
    llc_n_beta: float | None = None
    """LLC: inverse temperature times sample size; None: ``llc_batch_size / ln(llc_batch_size)``
    (devinterp's default)."""
    llc_localization: float = 100.0
    """LLC: pull ``gamma`` towards the measured weights."""
    llc_chains: int = 2
    """LLC: independent SGLD chains."""
    llc_draws: int = 200
    """LLC: draws (SGLD steps) per chain."""
    llc_batch_size: int = 32
    """LLC: examples per SGLD step."""
    llc_examples: int = 256
    """LLC: examples of the evaluation set the chains sample on (the first ones)."""
    llc_seed: int = 0
    """LLC: devinterp's ``init_seed`` (chain ``c`` uses ``llc_seed + c``)."""

    def __post_init__(self) -> None:
        for name in ("n_examples", "batch_size", "logits_budget", "head_examples",
                     "head_seq_len", "head_repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise EvalError(f"EvalSettings.{name}={value!r} must be a positive integer")
        if self.head_repeats < 2:
            raise EvalError(f"EvalSettings.head_repeats={self.head_repeats} must be >= 2 "
                            "(prefix matching needs a repeat)")
        if self.icl_indices is not None:
            if len(self.icl_indices) != 2:
                raise EvalError(f"EvalSettings.icl_indices={self.icl_indices!r} must be "
                                "(early, late)")
            object.__setattr__(self, "icl_indices", tuple(int(i) for i in self.icl_indices))
        window = self.ablation_window
        if not isinstance(window, str):
            try:
                start, end = (int(s) for s in window)
            except (TypeError, ValueError):
                raise EvalError(f"EvalSettings.ablation_window={window!r} must be (start_step, "
                                "end_step), 'detect' or 'none'") from None
            object.__setattr__(self, "ablation_window", (start, end))
        elif window not in ("detect", "none"):
            raise EvalError(f"EvalSettings.ablation_window={window!r} must be (start_step, "
                            "end_step), 'detect' or 'none'")
        if not isinstance(self.context_fraction, int | float) or not \
                0 <= self.context_fraction <= 1:
            raise EvalError(f"EvalSettings.context_fraction={self.context_fraction!r} must be a "
                            "number in [0, 1] (1: every example feeds the context-index average)")
        if self.ablation_batch_size is not None and (
                not isinstance(self.ablation_batch_size, int) or self.ablation_batch_size < 1):
            raise EvalError(f"EvalSettings.ablation_batch_size={self.ablation_batch_size!r} must "
                            "be a positive integer or None")
        if self.copying_reading not in COPYING_READINGS:
            raise EvalError(f"EvalSettings.copying_reading={self.copying_reading!r} is not one "
                            f"of {COPYING_READINGS}; use 'per_source' (the default) or 'literal'")
        if self.llc_sampler not in get_args(LLCSampler):
            raise EvalError(f"EvalSettings.llc_sampler={self.llc_sampler!r} is not one of "
                            f"{get_args(LLCSampler)}")
        for name in ("llc_chains", "llc_draws", "llc_batch_size", "llc_examples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise EvalError(f"EvalSettings.{name}={value!r} must be a positive integer")
        if self.llc_examples < self.llc_batch_size:
            raise EvalError(f"EvalSettings.llc_examples={self.llc_examples} must be at least "
                            f"llc_batch_size={self.llc_batch_size} (one SGLD batch)")
        for name, floor in (("llc_lr", 0.0), ("llc_localization", None), ("llc_n_beta", 0.0)):
            value = getattr(self, name)
            if value is None and name == "llc_n_beta":
                continue
            ok = isinstance(value, int | float) and math.isfinite(value) and (
                value > floor if floor is not None else value >= 0)
            if not ok:
                sign = "positive" if floor is not None else "non-negative"
                raise EvalError(f"EvalSettings.{name}={value!r} must be a {sign} number")
        if not isinstance(self.heads_per_pass, int) or self.heads_per_pass < 1:
            raise EvalError(f"EvalSettings.heads_per_pass={self.heads_per_pass!r} must be a "
                            "positive integer")

    @classmethod
    def paper(cls, **overrides: Any) -> "EvalSettings":
        """The paper's sizes: 10,000 evaluation examples, 10 examples per head evaluator."""
        return cls(**{"n_examples": 10_000, **overrides})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("icl_indices", "ablation_window"):
            if isinstance(out[key], tuple):
                out[key] = list(out[key])
        return out


ALL_SETTINGS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(EvalSettings))
"""Every field of :class:`EvalSettings`."""

KEYED_WHEN_SET: dict[str, Any] = {"copying_reading": "per_source"}
"""Fields added after caches existed, with their default: a metric's cache key names such a
field only when its value differs from this default, so caches written before the field
existed stay valid."""
