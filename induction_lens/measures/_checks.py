"""Input checks the measures share: token tensors, batch sizes, the model's device, eval mode.

Level: ``measures`` (imports ``errors`` only).
"""


import contextlib
from collections.abc import Iterator

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

from induction_lens.errors import EvalError


def check_tokens(model: HookedTransformer, tokens: Tensor, *, name: str = "tokens",
                 min_len: int = 2) -> Int[Tensor, "batch pos"]:
    """``tokens`` as a ``[batch, pos]`` int64 tensor, or a one-line :class:`EvalError`."""
    if not isinstance(tokens, Tensor):
        raise EvalError(f"{name} must be a torch tensor of token ids, got {type(tokens).__name__}")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise EvalError(f"{name} must hold integer token ids, got dtype {tokens.dtype}")
    if tokens.ndim != 2:
        raise EvalError(f"{name} must have shape [batch, pos], got {tuple(tokens.shape)}; "
                        "add a batch dimension with tokens[None]")
    batch, pos = tokens.shape
    if batch < 1:
        raise EvalError(f"{name} has no examples (shape {tuple(tokens.shape)})")
    if pos < min_len:
        raise EvalError(f"{name} has {pos} positions; this evaluator needs at least {min_len}")
    if pos > model.cfg.n_ctx:
        raise EvalError(f"{name} has {pos} positions but the model's context is "
                        f"{model.cfg.n_ctx}; truncate to tokens[:, :{model.cfg.n_ctx}]")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= model.cfg.d_vocab:
        raise EvalError(f"{name} holds ids in [{lo}, {hi}] but the model's vocabulary is "
                        f"[0, {model.cfg.d_vocab - 1}]")
    return tokens.long()


def check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise EvalError(f"batch_size={batch_size!r} must be a positive integer")
    return batch_size


def model_device(model: HookedTransformer) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def eval_mode(model: HookedTransformer) -> Iterator[HookedTransformer]:
    """No gradients and ``model.eval()`` for the duration; the training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)

