"""Measures: pure functions of a model and its inputs.

Level: above ``models``/``data``/``frame``; below ``analysis``'s consumers, ``runs``, ``viz``
and ``cli``. It may import ``config``, ``constants``, ``data``, ``errors``, ``frame`` and
``models``; never ``hub``, ``train``, ``runs``, ``viz`` or ``cli``. No files, no printing.

Naming rule: ``*_scores(model, tokens)`` returns a ``[n_layers, n_heads]`` tensor (one score
per head); per-token measures return tensors; the few one-model conveniences that return a
DataFrame (``head_scores``, ``circuit_scores``, ``ablation_metrics``, ``pattern_task_scores``,
``literal_copying``, ``fuzzy_copying``, ``token_loss_diff``) say so in their docstrings and
build it through :mod:`induction_lens.frame`, the one schema.

* :mod:`~induction_lens.measures.losses`: per-token losses and the ICL score (appendix "(1)").
* :mod:`~induction_lens.measures.heads`: prefix matching, copying, previous-token attention
  (appendix "(3) Head activation evaluators").
* :mod:`~induction_lens.measures.circuits`: QK-eigenvalue trace, OV copying, composition.
* :mod:`~induction_lens.measures.ablations`: full and pattern-preserving head ablations
  (appendix "(2)").
* :mod:`~induction_lens.measures.llc`: the local learning coefficient (devinterp).
* :mod:`~induction_lens.measures.generality`: Argument 4's pattern-matching and copying probes.
* :mod:`~induction_lens.measures.reddy`: Reddy 2023's accuracies (IC, IC2, IW, training
  distribution) and progress measures (ILA1, TILA2, TLA2, CLA) of its classifier network.
"""

from induction_lens.measures.ablations import (
    AblationResult,
    ReadoutAblation,
    ablate,
    ablate_readout,
    ablation_metrics,
    before_after_vector,
    clean_losses,
)
from induction_lens.measures.circuits import (
    circuit_scores,
    circuit_weights,
    composition_baseline,
    composition_scores,
    ov_copying,
    ov_eigenvalues,
    qk_smear_trace,
    qk_trace,
)
from induction_lens.measures.generality import (
    fuzzy_copying,
    head_attribution,
    literal_copying,
    pattern_attention_scores,
    pattern_task_scores,
)
from induction_lens.measures.heads import (
    copying_scores,
    head_scores,
    prefix_matching_scores,
    previous_token_scores,
)
from induction_lens.measures.llc import estimate_llc, head_llc_scores
from induction_lens.measures.losses import (
    icl_indices,
    icl_score,
    losses_at,
    per_token_losses,
    random_token_indices,
    summarise_losses,
    token_loss_diff,
)

__all__ = [
    "AblationResult",
    "ReadoutAblation",
    "ablate",
    "ablate_readout",
    "ablation_metrics",
    "before_after_vector",
    "circuit_scores",
    "circuit_weights",
    "clean_losses",
    "composition_baseline",
    "composition_scores",
    "copying_scores",
    "estimate_llc",
    "head_attribution",
    "head_llc_scores",
    "head_scores",
    "icl_indices",
    "icl_score",
    "fuzzy_copying",
    "literal_copying",
    "losses_at",
    "ov_copying",
    "ov_eigenvalues",
    "pattern_attention_scores",
    "pattern_task_scores",
    "per_token_losses",
    "prefix_matching_scores",
    "previous_token_scores",
    "qk_smear_trace",
    "qk_trace",
    "random_token_indices",
    "summarise_losses",
    "token_loss_diff",
]
