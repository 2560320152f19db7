"""Measures of Reddy 2023's network: test accuracies, losses and the progress measures.

G. Reddy, *The mechanistic basis of data dependence and abrupt learning in an in-context
classification task*, ICLR 2024 (arXiv 2312.03002). Pure functions of a
:class:`~induction_lens.models.reddy.ReddyNetwork` and a
:class:`~induction_lens.data.reddy.ReddyBatch`; they read attention through TransformerLens hooks
(``blocks.{l}.attn.hook_pattern``), never through the network's internals.

Test sets (section 2): **IC** (novel classes, bursty: pure in-context learning), **IC2** (known
classes, every label shifted by +1 mod L), **IW** (iid known classes: pure in-weights learning)
and the training distribution. Accuracy is the fraction of sequences whose arg-max logit is the
query's label; loss is the mean cross-entropy in nats.

Progress measures (section 3 names ILA1, TILA2, TLA2 and CLA; the definitions are **our
reading** of them). Positions are those of the sequence ``x1, l1, ..., xN, lN, xq``: item i at
``2i``, its label at ``2i + 1``, the query at ``2N`` (0-based).

* **ILA1** (item-label attention, layer 1): the attention of each label token to its own item,
  ``pattern_1[2i + 1, 2i]``, averaged over the N label tokens and the sequences. An ideal
  previous-token head gives 1.
* **TILA2** (target item-label attention, layer 2): the query's layer-2 attention summed over the
  label tokens that follow a context item of the query's class, averaged over the sequences
  that have such an item (the induction head's job). NaN when none has.
* **TLA2** (total label attention, layer 2): the query's layer-2 attention summed over all N
  label tokens, averaged over sequences.
* **CLA** (context-label accuracy): the fraction of predictions that are one of the labels
  present in the context (chance level for a network that ignores the context: N'/L, with N'
  the number of distinct context labels).

Head ablations. :func:`head_ablation` is Olsson et al.'s *pattern-preserving* ablation
("Replace the ablated attention head's result vector with a zero vector, and force all
attention patterns to be the version recorded in the first run") of each head of the network,
read through the classifier: IC accuracy and loss with each head removed. It runs on the
package's ablation engine (:func:`induction_lens.measures.ablations.ablate_readout`, the fast
path the language models use) with :func:`classifier_readout` in place of the unembedding.
Reddy 2023 ablates the induction head in its targeted experiments (section 3) without naming a
kind of ablation; the pattern-preserving kind is **our choice** (the one the Olsson et al.
reproduction uses). For the last layer the kinds coincide with zeroing the head: nothing that
attends follows it.

:func:`ablated_accuracy` is the simpler pattern-free variant: it replaces one layer's head
output (``hook_z``, which equals the head's write to the residual stream as W_O is the
identity) by its mean over the batch at each position ("mean") or by zero ("zero").
"""

import math
from collections.abc import Sequence
from typing import Literal, get_args

import einops
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from induction_lens.config import ReddyTaskSpec
from induction_lens.data.reddy import ReddyBatch, SetName, eval_set, make_world
from induction_lens.errors import EvalError
from induction_lens.frame import model_frame
from induction_lens.measures import ablations

__all__ = ["HEAD_ABLATION_ROWS", "AblationKind", "ablated_accuracy", "accuracy_and_loss", "cla",
           "classifier_readout", "evaluate_reddy", "head_ablation", "ila1", "label_logits",
           "progress_measures", "tila2", "tla2"]

AblationKind = Literal["mean", "zero"]

TEST_SETS: tuple[SetName, ...] = ("ic", "ic2", "iw", "train")
"""The sets :func:`evaluate_reddy` measures, in order."""


def _check(model: HookedTransformer, batch: ReddyBatch) -> None:
    n_pos = batch.inputs.shape[1]
    if n_pos % 2 != 1 or n_pos < 3:
        raise EvalError(f"a Reddy batch has 2N+1 >= 3 tokens per sequence, got {n_pos}; build "
                        "it with induction_lens.data.reddy")
    if batch.inputs.shape[-1] != model.cfg.d_model:
        raise EvalError(f"batch tokens have {batch.inputs.shape[-1]} dims but the network "
                        f"reads {model.cfg.d_model}; use the task the network was trained on")


@torch.no_grad()
def label_logits(model: HookedTransformer, batch: ReddyBatch, *, chunk: int = 4096
                 ) -> Float[Tensor, "batch n_labels"]:
    """The network's label logits for every sequence (in chunks of ``chunk`` sequences)."""
    _check(model, batch)
    device = next(model.parameters()).device
    outs = [model(batch.inputs[i:i + chunk].to(device)).float().cpu()
            for i in range(0, len(batch), chunk)]
    return torch.cat(outs)


def accuracy_and_loss(logits: Float[Tensor, "batch n_labels"], targets: Int[Tensor, " batch"]
                      ) -> tuple[float, float]:
    """Arg-max accuracy and mean cross-entropy (nats)."""
    acc = (logits.argmax(-1) == targets).float().mean().item()
    return acc, F.cross_entropy(logits, targets).item()


def cla(logits: Float[Tensor, "batch n_labels"], context_labels: Int[Tensor, "batch n_items"]
        ) -> float:
    """Context-label accuracy: the fraction of arg-max predictions present in the context."""
    pred = logits.argmax(-1)
    return (context_labels == pred[:, None]).any(dim=1).float().mean().item()


def ila1(pattern: Float[Tensor, "batch head query key"]) -> float:
    """Mean layer-1 attention of each label token (``2i + 1``) to its own item (``2i``)."""
    n_items = (pattern.shape[-1] - 1) // 2
    i = torch.arange(n_items)
    return pattern[:, 0, 2 * i + 1, 2 * i].mean().item()


def _query_label_attention(pattern: Float[Tensor, "batch head query key"]
                           ) -> Float[Tensor, "batch n_items"]:
    n_items = (pattern.shape[-1] - 1) // 2
    return pattern[:, 0, -1, 1:2 * n_items:2]


def tila2(pattern: Float[Tensor, "batch head query key"], matches: Tensor) -> float:
    """Query's layer-2 attention on the labels of its class's items (sequences with one)."""
    attn = (_query_label_attention(pattern) * matches.to(pattern.dtype)).sum(dim=1)
    has = matches.any(dim=1)
    return attn[has].mean().item() if bool(has.any()) else math.nan


def tla2(pattern: Float[Tensor, "batch head query key"]) -> float:
    """Query's layer-2 attention summed over all label tokens, averaged over sequences."""
    return _query_label_attention(pattern).sum(dim=1).mean().item()


@torch.no_grad()
def progress_measures(model: HookedTransformer, batch: ReddyBatch, *, chunk: int = 4096
                      ) -> dict[str, float]:
    """ILA1, TILA2, TLA2 (first and last attention layer, read through ``hook_pattern``) and
    CLA on ``batch`` (see the module docstring for the definitions)."""
    _check(model, batch)
    if model.cfg.n_layers < 2:
        raise EvalError(f"progress measures need two attention layers, the network has "
                        f"{model.cfg.n_layers}")
    first, last = "blocks.0.attn.hook_pattern", f"blocks.{model.cfg.n_layers - 1}.attn.hook_pattern"
    device = next(model.parameters()).device
    p1s, p2s, logits = [], [], []
    for i in range(0, len(batch), chunk):
        out, cache = model.run_with_cache(batch.inputs[i:i + chunk].to(device),
                                          names_filter=lambda n: n in (first, last))
        p1s.append(cache[first].float().cpu())
        p2s.append(cache[last].float().cpu())
        logits.append(out.float().cpu())
    p1, p2 = torch.cat(p1s), torch.cat(p2s)
    return {"ila1": ila1(p1), "tila2": tila2(p2, batch.matches), "tla2": tla2(p2),
            "cla": cla(torch.cat(logits), batch.context_labels)}


@torch.no_grad()
def ablated_accuracy(model: HookedTransformer, batch: ReddyBatch, *,
                     kind: AblationKind = "mean", layer: int | None = None) -> float:
    """Accuracy with one attention layer's head output replaced (default: the last layer).

    ``kind="mean"`` puts in the head's mean output over ``batch`` at each position;
    ``kind="zero"`` removes it. The whole batch is run at once (the mean needs all of it).
    """
    if kind not in get_args(AblationKind):
        raise EvalError(f"kind={kind!r} is not one of {get_args(AblationKind)}; pick one of them")
    _check(model, batch)
    layer = model.cfg.n_layers - 1 if layer is None else layer
    if not 0 <= layer < model.cfg.n_layers:
        raise EvalError(f"layer={layer} is outside 0..{model.cfg.n_layers - 1}")

    def hook(z: Tensor, hook) -> Tensor:
        if kind == "zero":
            return torch.zeros_like(z)
        return z.mean(dim=0, keepdim=True).expand_as(z)

    device = next(model.parameters()).device
    logits = model.run_with_hooks(batch.inputs.to(device),
                                  fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)])
    return (logits.argmax(-1).cpu() == batch.targets).float().mean().item()


@torch.no_grad()
def evaluate_reddy(model: HookedTransformer, task: ReddyTaskSpec, *, n_sequences: int = 2000,
                   sets: tuple[SetName, ...] = TEST_SETS, progress_set: SetName | None = "ic"
                   ) -> dict[str, float]:
    """Every test-set accuracy and loss, plus the progress measures, as ``{name: value}``.

    Names: ``{set}_accuracy`` and ``{set}_loss`` for each of ``sets``, and ``ila1``, ``tila2``,
    ``tla2``, ``cla`` measured on ``progress_set`` (default IC, where only the induction
    circuit can succeed; None skips them). The test sets are the task's own (:func:`~induction_lens.
    data.reddy.eval_set`), so every checkpoint of a run is measured on the same sequences.
    """
    if not isinstance(n_sequences, int) or n_sequences < 1:
        raise EvalError(f"n_sequences={n_sequences!r} must be a positive integer")
    world = make_world(task)
    out: dict[str, float] = {}
    for name in sets:
        batch = eval_set(task, world, name, n_sequences)
        acc, loss = accuracy_and_loss(label_logits(model, batch), batch.targets)
        out[f"{name}_accuracy"], out[f"{name}_loss"] = acc, loss
    if progress_set is not None:
        out.update(progress_measures(model, eval_set(task, world, progress_set, n_sequences)))
    return out


HEAD_ABLATION_ROWS: tuple[str, ...] = ("ablated_accuracy", "ablated_loss", "clean_accuracy",
                                       "clean_loss")
"""The ``metric`` values of :func:`head_ablation`: per head the first two, model level the
others."""


def classifier_readout(model: HookedTransformer, resid: Float[Tensor, " batch *rest d_model"],
                       targets: Int[Tensor, " batch *rest"]) -> Float[Tensor, " batch *rest 2"]:
    """The network's classifier as the ablation engine's readout: per read residual, the
    cross-entropy (nats) of the target label and whether the arg-max label is the target (1.0
    or 0.0), stacked on a last axis (see :data:`induction_lens.measures.ablations.Readout`).

    The classifier is what :meth:`~induction_lens.models.reddy.ReddyNetwork.forward` applies
    to the last position (its ``hook_readout`` and ``hook_logits`` are not run here).
    """
    logits = model.classifier(resid)
    loss = F.cross_entropy(einops.rearrange(logits, "batch ... n_labels -> batch n_labels ..."),
                           targets, reduction="none")
    correct = (logits.argmax(-1) == targets).to(loss.dtype)
    return torch.stack([loss, correct], dim=-1)


@torch.no_grad()
def head_ablation(model: HookedTransformer, batch: ReddyBatch, *,
                  kind: ablations.AblationKind = "pattern",
                  heads: Sequence[tuple[int, int]] | None = None,
                  batch_size: int | None = 1024) -> pd.DataFrame:
    """Accuracy and loss on ``batch`` with each head ablated, read through the classifier.

    Olsson et al.'s pattern-preserving ablation (``kind="pattern"``, the default: the head's
    result zeroed, every attention pattern kept from the clean run) or the full one
    (``"full"``: everything downstream recomputed), one head at a time, on the ablation
    engine's fast path (:func:`~induction_lens.measures.ablations.ablate_readout` with
    :func:`classifier_readout`). Use the IC test set for Reddy 2023's claim that the layer-2
    (induction) head carries in-context classification.

    Args:
        model: a :class:`~induction_lens.models.reddy.ReddyNetwork` (no hooks attached).
        batch: the sequences (e.g. ``eval_set(task, world, "ic", n)``).
        kind: "pattern" or "full".
        heads: ``(layer, head)`` pairs; None: every head (Reddy's network: (0, 0) and (1, 0)).
        batch_size: sequences per pass (speed only; None sizes them from a memory budget).

    Returns:
        A tidy one-model frame ``layer, head, metric, value, kind``: per head
        ``ablated_accuracy`` and ``ablated_loss``; model level ``clean_accuracy`` and
        ``clean_loss`` (:data:`HEAD_ABLATION_ROWS`).
    """
    if not isinstance(getattr(model, "classifier", None), torch.nn.Module):
        raise EvalError(f"head_ablation reads a Reddy network's classifier; "
                        f"{type(model).__name__} has none (build it with build_reddy_network)")
    _check(model, batch)
    result = ablations.ablate_readout(model, batch.inputs, batch.targets, classifier_readout,
                                      kind, heads, batch_size=batch_size)
    clean = result.clean.double().mean(dim=0)  # [loss, correct]
    ablated = result.ablated.double().mean(dim=1)  # [head, (loss, correct)]
    layers = [h[0] for h in result.heads]
    head_ids = [h[1] for h in result.heads]
    frame = model_frame([
        pd.DataFrame({"layer": layers, "head": head_ids, "metric": "ablated_accuracy",
                      "value": ablated[:, 1].numpy()}),
        pd.DataFrame({"layer": layers, "head": head_ids, "metric": "ablated_loss",
                      "value": ablated[:, 0].numpy()}),
        pd.DataFrame({"metric": ["clean_accuracy", "clean_loss"],
                      "value": [float(clean[1]), float(clean[0])]}),
    ])
    frame["kind"] = result.kind
    return model_frame(frame)
