"""Pretrained models (an imported checkpoint series) rebuilt as stock ``HookedTransformer``s.

Level: ``models`` (imports ``config``, ``constants``, ``errors`` and ``models.transformer``).
The import itself is :mod:`induction_lens.pretrained`.
"""

from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from induction_lens import constants as C
from induction_lens.config import PretrainedSpec
from induction_lens.errors import HubError
from induction_lens.models.transformer import quiet_deprecation

__all__ = ["bos_token_id", "build_pretrained_model", "hooked_config_dict",
           "pretrained_hf_tokenizer"]

def bos_token_id(model: HookedTransformer) -> int:
    """The BOS id the evaluators must prepend for ``model``.

    ``model.tokenizer.bos_token_id`` when the model has a tokenizer with a BOS token (an
    imported pretrained model, or a natural-text run of this package, whose ``<|bos|>`` is id
    0); otherwise :data:`~induction_lens.constants.BOS_TOKEN_ID` (0), the BOS of every corpus
    of this package (synthetic runs have no tokenizer).
    """
    tokenizer = getattr(model, "tokenizer", None)
    bos = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
    return int(bos) if bos is not None else C.BOS_TOKEN_ID


def hooked_config_dict(cfg: HookedTransformerConfig, *, model_name: str) -> dict[str, Any]:
    """``cfg.to_dict()`` made JSON-safe and the same for every checkpoint of a series.

    The dtype becomes its name, the device and the checkpoint label are dropped (a run holds
    many checkpoints; the device is chosen at load time), ``tokenizer_name`` becomes None (the
    run's stored tokenizer is attached instead of a download) and ``model_name`` is the
    series' name rather than a revision directory's.
    """
    out: dict[str, Any] = {}
    for key, value in cfg.to_dict().items():
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        elif isinstance(value, torch.device):
            value = str(value)
        out[key] = value
    out.update(device=None, n_devices=1, from_checkpoint=False, checkpoint_index=None,
               checkpoint_value=None, checkpoint_label_type=None, tokenizer_name=None,
               model_name=model_name, init_weights=False)
    bad = sorted(k for k, v in out.items() if not _json_safe(v))
    if bad:
        raise HubError(f"the TransformerLens config of {model_name!r} has values that cannot be "
                       f"stored as JSON ({bad}); this architecture is not supported by the import")
    return out


def _json_safe(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_json_safe(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_safe(v) for k, v in value.items())
    return False


def build_pretrained_model(spec: PretrainedSpec, *, tokenizer: Any = None,
                           device: str | torch.device | None = None) -> HookedTransformer:
    """An (uninitialised) ``HookedTransformer`` of ``spec``'s config; load weights into it.

    Stock TransformerLens modules throughout (no fused paths: they are for this package's own
    architectures). ``tokenizer`` (:func:`pretrained_hf_tokenizer`) is attached without any
    download.
    """
    data = dict(spec.hooked_config)
    dtype = data.get("dtype") or "float32"
    data["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    data["device"] = str(device) if device is not None else "cpu"
    data["tokenizer_name"] = None
    try:
        cfg = HookedTransformerConfig.from_dict(data)
    except (TypeError, ValueError, AssertionError) as err:
        raise HubError(f"the stored TransformerLens config of {spec.source!r} does not load in "
                       f"this TransformerLens version ({err}); re-import the run") from None
    with quiet_deprecation():
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    if device is not None:
        model.to(torch.device(device), print_details=False)
    model.eval()
    return model


def pretrained_hf_tokenizer(tokenizer: Any, spec: PretrainedSpec):
    """A run's stored ``tokenizers.Tokenizer`` wrapped for TransformerLens with the series'
    special tokens (``name_or_path`` and ``add_bos_token`` keep ``set_tokenizer`` from
    re-downloading it by name)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, name_or_path=spec.source,
                                   add_bos_token=True, **spec.special_tokens)
