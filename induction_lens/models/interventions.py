"""Training-time interventions on single heads, applied through hooks.

Level: ``models`` (imports ``config`` and ``errors``). The trainer
(:func:`induction_lens.train.train`) builds one :class:`InterventionHooks` per run from
``TrainConfig.interventions`` and calls it around every optimizer step; nothing else does.

What each :class:`~induction_lens.config.Intervention` does from its ``start_step`` on:

* ``ablate``: a forward hook on ``blocks.{l}.attn.hook_z`` replaces the head's ``z`` (its
  output before ``W_O``) by zeros, or by its batch mean at each position (detached). ``hook_z``
  runs on the fused attention path too, so ablation keeps the fast path.
* ``clamp_pattern``: a forward hook on ``blocks.{l}.attn.hook_pattern`` replaces the head's
  attention pattern by a fixed one (:func:`clamp_pattern`). A hook on ``hook_pattern`` makes
  :class:`~induction_lens.models.LensAttention` take TransformerLens's reference path (the
  fused kernel never materialises a pattern), so the clamp really applies; the head's query
  and key weights then get no gradient from the loss.
* ``freeze``: after ``backward`` the gradients of the head's slices are zeroed (so they do not
  count in gradient clipping) and after ``optimizer.step`` the slices are written back to the
  values they had at ``start_step`` (AdamW's weight decay and momentum would move them
  otherwise). A resumed run reads those values from its checkpoint, where they are unchanged,
  so resuming is bit-identical.

Hooks are attached only once their step is reached, so a run behaves exactly like an
unintervened one before it (same fused kernels, same numbers).
"""

from collections.abc import Sequence

import einops
import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from induction_lens.config import ClampPattern, Intervention
from induction_lens.errors import ConfigError

__all__ = ["InterventionHooks", "check_interventions", "clamp_pattern", "frozen_parameters"]


def clamp_pattern(kind: ClampPattern, n_pos: int, *, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None
                  ) -> Float[Tensor, "query_pos key_pos"]:
    """The fixed attention pattern of a clamped head (rows: queries; each row sums to 1).

    ``previous_token`` puts all of query ``i``'s attention on key ``i - 1`` (query 0 has only
    itself to attend to), ``bos`` all on key 0, ``self`` on key ``i``, and ``uniform`` spreads
    it evenly over keys ``0..i``. Every pattern is causal.
    """
    idx = torch.arange(n_pos, device=device)
    if kind == "uniform":
        causal = (idx[None, :] <= idx[:, None]).to(dtype)
        return causal / causal.sum(dim=1, keepdim=True)
    target = {"previous_token": (idx - 1).clamp(min=0), "bos": torch.zeros_like(idx),
              "self": idx}.get(kind)
    if target is None:
        raise ConfigError(f"clamp pattern {kind!r} is not one of previous_token, bos, self, "
                          "uniform; pick one of them")
    out = torch.zeros(n_pos, n_pos, dtype=dtype, device=device)
    out[idx, target] = 1.0
    return out


def check_interventions(interventions: Sequence[Intervention], *, n_layers: int,
                        n_heads: int) -> None:
    """Raise :class:`ConfigError` when an intervention names a head the model does not have."""
    for item in interventions:
        if item.layer >= n_layers or item.head >= n_heads:
            raise ConfigError(f"TrainConfig.interventions: {item.label} names a head the model "
                              f"does not have ({n_layers} layers x {n_heads} heads); fix "
                              "layer/head")


def frozen_parameters(item: Intervention) -> dict[str, tuple[int, ...]]:
    """``{parameter name: index}`` of the slices a ``freeze`` intervention holds fixed.

    The index selects the head along the parameter's head axis (``W_Q``: ``[n_heads, d_model,
    d_head]``, ``b_Q``: ``[n_heads, d_head]``, ...). ``b_K`` is not listed: it is frozen at zero
    for every head already (see :func:`~induction_lens.models.build_model`).
    """
    names = ("W_Q", "b_Q", "W_K") if item.weights == "qk" else \
        ("W_Q", "b_Q", "W_K", "W_V", "b_V", "W_O")
    return {f"blocks.{item.layer}.attn.{n}": (item.head,) for n in names}


class InterventionHooks:
    """The declared interventions of one training run, applied step by step.

    Use: ``hooks = InterventionHooks(model, cfg.interventions)``; per step call
    :meth:`before_forward` (attaches the hooks whose step has come), :meth:`after_backward`
    and :meth:`after_step`; :meth:`close` (or the context manager) removes the hooks.
    """

    def __init__(self, model: HookedTransformer, interventions: Sequence[Intervention]):
        check_interventions(interventions, n_layers=model.cfg.n_layers,
                            n_heads=model.cfg.n_heads)
        self.model = model
        self.interventions = tuple(interventions)
        self._params = dict(model.named_parameters())
        self._active: set[int] = set()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._frozen: list[tuple[Tensor, tuple[int, ...], Tensor]] = []

    def __enter__(self) -> "InterventionHooks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def active(self) -> tuple[Intervention, ...]:
        """The interventions attached so far."""
        return tuple(self.interventions[i] for i in sorted(self._active))

    def before_forward(self, step: int) -> None:
        """Attach every intervention whose ``start_step`` is at most ``step`` (once)."""
        for i, item in enumerate(self.interventions):
            if i in self._active or item.start_step > step:
                continue
            self._active.add(i)
            attn = self.model.blocks[item.layer].attn
            if item.kind == "ablate":
                self._handles.append(attn.hook_z.register_forward_hook(self._ablate_hook(item)))
            elif item.kind == "clamp_pattern":
                self._handles.append(
                    attn.hook_pattern.register_forward_hook(self._clamp_hook(item)))
            else:
                for name, index in frozen_parameters(item).items():
                    param = self._params[name]
                    self._frozen.append((param, index, param.detach()[index].clone()))

    @staticmethod
    def _ablate_hook(item: Intervention):
        head = item.head

        def hook(module, inputs, z: Float[Tensor, "batch pos head_index d_head"]) -> Tensor:
            out = z.clone()
            if item.ablation == "zero":
                out[:, :, head] = 0.0
            else:
                mean = einops.reduce(z[:, :, head].detach(), "batch pos d_head -> pos d_head",
                                     "mean")
                out[:, :, head] = mean
            return out

        return hook

    @staticmethod
    def _clamp_hook(item: Intervention):
        head = item.head
        cache: dict[tuple, Tensor] = {}

        def hook(module, inputs,
                 pattern: Float[Tensor, "batch head_index query_pos key_pos"]) -> Tensor:
            n_q, n_k = pattern.shape[-2:]
            key = (n_q, n_k, pattern.dtype, pattern.device)
            if key not in cache:
                cache[key] = clamp_pattern(item.pattern, n_k, dtype=pattern.dtype,
                                           device=pattern.device)[-n_q:]
            out = pattern.clone()
            out[:, head] = cache[key]
            return out

        return hook

    def after_backward(self) -> None:
        """Zero the gradients of the frozen slices (before clipping counts them)."""
        for param, index, _ in self._frozen:
            if param.grad is not None:
                param.grad[index] = 0.0

    @torch.no_grad()
    def after_step(self) -> None:
        """Write the frozen slices back to their values at their ``start_step``."""
        for param, index, value in self._frozen:
            param[index] = value

    def close(self) -> None:
        """Remove every hook (frozen slices stay as they are)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
