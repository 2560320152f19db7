"""Models: the paper's transformers as TransformerLens ``HookedTransformer``s.

Level: above ``config``/``errors``/``io``; below ``hub``, ``train`` and everything that measures.
It may import ``config``, ``constants`` and ``errors``, never ``hub``, ``train``, ``measures`` or
anything above them.

* :mod:`~induction_lens.models.transformer`: building a ``HookedTransformer`` from a
  :class:`~induction_lens.config.ModelSpec` (smeared keys, the fused training paths) and the
  fused primitives (attention from q/k, the output projection, LayerNorm) that the ablation
  fast path reuses.
* :mod:`~induction_lens.models.fast`: the plain-torch training forward over a
  ``HookedTransformer``'s own parameters, used by the trainer when nothing is hooked.
* :mod:`~induction_lens.models.interventions`: heads ablated, clamped or frozen during training
  (:class:`~induction_lens.config.Intervention`), applied through hooks.
* :mod:`~induction_lens.models.pretrained`, :mod:`~induction_lens.models.reddy`: an imported
  checkpoint series rebuilt, and Reddy 2023's classifier network.
"""

from induction_lens.models.fast import fast_forward_ok, fast_lm_loss, fast_logits
from induction_lens.models.interventions import InterventionHooks
from induction_lens.models.transformer import (
    LensAttention,
    LensEmbed,
    LensLayerNorm,
    LensLayerNormPre,
    build_model,
    fused_attention,
    hooked_config,
    quiet_deprecation,
    smear_keys,
)

__all__ = [
    "InterventionHooks",
    "LensAttention",
    "LensEmbed",
    "LensLayerNorm",
    "LensLayerNormPre",
    "build_model",
    "fast_forward_ok",
    "fast_lm_loss",
    "fast_logits",
    "fused_attention",
    "hooked_config",
    "quiet_deprecation",
    "smear_keys",
]
