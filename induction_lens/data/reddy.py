"""Reddy 2023's bursty in-context classification task: a seeded, vectorised generator.

G. Reddy, *The mechanistic basis of data dependence and abrupt learning in an in-context
classification task*, ICLR 2024 (arXiv 2312.03002), section 2. The task is described by a
:class:`~induction_lens.config.ReddyTaskSpec`; this module turns it into tensors.

* The **world** (:func:`make_world`): K class means and L label vectors, each entry
  N(0, 1/D), drawn once from the task's seed. Class k has label k mod L.
* A **sequence** ``x1, l1, ..., xN, lN, xq``: items ``(mu_k + eps eta) / sqrt(1 + eps^2)``
  (eta ~ N(0, I/D)), each followed by its class's label vector, then the query item. Every
  token is a one-hot position of ``n_pos`` dims (the sequence starts at a random offset
  ``s`` in ``0 .. n_pos - (2N + 1)``) followed by the D content dims. The target is the
  query's label index.
* **Kinds** of sequence: *bursty* (N/B distinct classes, each B times, shuffled; the query's
  class is one of them), *iid* (items and query drawn independently from the rank-frequency
  law f(k) ~ k^-alpha) and *novel* (bursty, with fresh class means drawn per sequence and
  labels from the L existing label vectors).
* **Sets** (:data:`SetName`): ``train`` (novel with probability p_C, else bursty with
  probability p_B, else iid), ``ic`` (novel classes, bursty: pure in-context learning),
  ``ic2`` (known classes, bursty, every label shifted to (k + 1) mod L: in-context learning
  must override what the weights know), ``iw`` (iid known classes: the query's class is
  usually absent from the context, so only in-weights learning helps).

Our readings where the paper leaves a choice (each documented at its use):

* the N/B classes of a bursty known-class sequence are drawn without replacement with weights
  f(k) (at alpha = 0, the default, this is uniform);
* the N/B novel classes of a sequence get *distinct* labels, drawn uniformly from the L
  labels, so that the query's label is determined by the context;
* B = 0 means no bursty sequences in training (p_B is then ignored); the ``ic`` and ``ic2``
  test sets use B = 1 in that case;
* the progress-measure bookkeeping (which context items share the query's class) is returned
  with every batch, so measures never re-derive it.

Determinism: every draw uses a ``torch.Generator`` seeded from ``(task.seed, stream, index)``
through :class:`numpy.random.SeedSequence`; training batch ``s`` depends only on the task
and ``s``, each test set only on the task, its name and its size. Everything is generated on
CPU in float32 and moved afterwards, so the same seed gives the same sequences on any device.
"""

import math
from dataclasses import dataclass
from typing import Literal, get_args

import einops
import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from induction_lens.config import ReddyTaskSpec
from induction_lens.errors import DataError

__all__ = ["KIND_BURSTY", "KIND_IID", "KIND_NOVEL", "ReddyBatch", "ReddyWorld", "SetName",
           "make_world", "rank_frequency", "sample_set", "eval_set", "train_batch"]

SetName = Literal["train", "ic", "ic2", "iw"]
"""The sequence distributions: training, in-context, in-context with shifted labels, in-weights."""

KIND_IID, KIND_BURSTY, KIND_NOVEL = 0, 1, 2
"""Values of :attr:`ReddyBatch.kind`."""

_STREAM_WORLD, _STREAM_TRAIN = 0, 1
_STREAM_TEST = {"train": 2, "ic": 3, "ic2": 4, "iw": 5}


def _generator(*entropy: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of non-negative integers (independent streams)."""
    seed = int(np.random.SeedSequence(list(entropy)).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class ReddyWorld:
    """The fixed class means and label vectors of one task seed."""

    means: Float[Tensor, "K D"]
    """Class means mu_k, entries N(0, 1/D)."""
    labels: Float[Tensor, "L D"]
    """Label vectors l_m, entries N(0, 1/D)."""


def make_world(task: ReddyTaskSpec) -> ReddyWorld:
    """Draw the K class means and L label vectors of ``task`` (the same for the same seed)."""
    gen = _generator(task.seed, _STREAM_WORLD)
    scale = 1.0 / math.sqrt(task.D)
    means = torch.randn(task.K, task.D, generator=gen) * scale
    labels = torch.randn(task.L, task.D, generator=gen) * scale
    return ReddyWorld(means=means, labels=labels)


def rank_frequency(task: ReddyTaskSpec) -> Float[Tensor, " K"]:
    """The class probabilities f(k) ~ k^-alpha (rank k = 1..K), normalised."""
    ranks = torch.arange(1, task.K + 1, dtype=torch.float64)
    weights = ranks ** (-task.alpha)
    return (weights / weights.sum()).to(torch.float32)


@dataclass
class ReddyBatch:
    """A batch of sequences with the bookkeeping the measures need."""

    inputs: Float[Tensor, "batch pos d_input"]
    """The tokens fed to the network: position one-hot then content."""
    targets: Int[Tensor, " batch"]
    """Label index of the query (what the network must output)."""
    context_labels: Int[Tensor, "batch n_items"]
    """Label index of each context item (the label token that follows it)."""
    matches: Bool[Tensor, "batch n_items"]
    """Whether context item i has the query's class."""
    classes: Int[Tensor, "batch n_items"]
    """Class of each context item (novel classes: ``-1 - slot``, never a known class)."""
    query_class: Int[Tensor, " batch"]
    """Class of the query (same convention)."""
    offsets: Int[Tensor, " batch"]
    """Position-one-hot offset of each sequence."""
    kind: Int[Tensor, " batch"]
    """:data:`KIND_IID`, :data:`KIND_BURSTY` or :data:`KIND_NOVEL`."""

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def to(self, device: str | torch.device) -> "ReddyBatch":
        """The same batch on ``device``."""
        return ReddyBatch(**{k: v.to(device) for k, v in self.__dict__.items()})

    def slice(self, start: int, stop: int) -> "ReddyBatch":
        """Sequences ``start:stop``."""
        return ReddyBatch(**{k: v[start:stop] for k, v in self.__dict__.items()})


def _bursty_slots(n: int, m: int, burst: int, gen: torch.Generator
                  ) -> tuple[Int[Tensor, "n n_items"], Int[Tensor, " n"]]:
    """Slots 0..m-1 each repeated ``burst`` times in a random order, and the query's slot."""
    slots = einops.repeat(torch.arange(m), "m -> n (m b)", n=n, b=burst)
    perm = torch.rand(n, m * burst, generator=gen).argsort(dim=1)
    query = torch.randint(0, m, (n,), generator=gen)
    return slots.gather(1, perm), query


def sample_set(task: ReddyTaskSpec, world: ReddyWorld, n: int, *, name: SetName,
               generator: torch.Generator) -> ReddyBatch:
    """Draw ``n`` sequences of distribution ``name`` (see the module docstring).

    Vectorised: every kind of sequence is drawn for the whole batch (so the random stream
    consumed does not depend on which kinds were picked) and each sequence takes its kind's.
    """
    if name not in get_args(SetName):
        raise DataError(f"set name {name!r} is not one of {get_args(SetName)}; pick one of them")
    if not isinstance(n, int) or n < 1:
        raise DataError(f"n={n!r} sequences must be a positive integer")
    K, L, N, D = task.K, task.L, task.N, task.D
    burst = task.B if task.B >= 1 else 1
    m = N // burst
    gen = generator
    weights = rank_frequency(task)

    # Which kind each sequence is.
    if name == "train":
        u_novel = torch.rand(n, generator=gen)
        u_bursty = torch.rand(n, generator=gen)
        p_bursty = task.p_B if task.B >= 1 else 0.0
        kind = torch.where(u_novel < task.p_C, KIND_NOVEL,
                           torch.where(u_bursty < p_bursty, KIND_BURSTY, KIND_IID))
    else:
        kind = torch.full((n,), {"ic": KIND_NOVEL, "ic2": KIND_BURSTY, "iw": KIND_IID}[name])

    # Bursty sequences of known classes: m distinct classes (weighted, without replacement;
    # our reading), each `burst` times.
    distinct = torch.multinomial(weights.expand(n, K), m, replacement=False, generator=gen)
    slots, q_slot = _bursty_slots(n, m, burst, gen)
    bursty_classes = distinct.gather(1, slots)
    bursty_query = distinct.gather(1, q_slot[:, None])[:, 0]

    # iid sequences: items and query independently from f(k).
    iid = torch.multinomial(weights, n * (N + 1), replacement=True, generator=gen)
    iid = iid.view(n, N + 1)
    iid_classes, iid_query = iid[:, :N], iid[:, N]

    # Novel sequences: fresh means per sequence, m distinct labels (our reading).
    novel_means = torch.randn(n, m, D, generator=gen) / math.sqrt(D)
    novel_labels = torch.rand(n, L, generator=gen).argsort(dim=1)[:, :m]
    n_slots, n_qslot = _bursty_slots(n, m, burst, gen)

    known_classes = torch.where((kind == KIND_BURSTY)[:, None], bursty_classes, iid_classes)
    known_query = torch.where(kind == KIND_BURSTY, bursty_query, iid_query)
    shift = 1 if name == "ic2" else 0
    known_ctx_labels = (known_classes + shift) % L
    known_target = (known_query + shift) % L
    novel = kind == KIND_NOVEL

    ctx_labels = torch.where(novel[:, None], novel_labels.gather(1, n_slots), known_ctx_labels)
    targets = torch.where(novel, novel_labels.gather(1, n_qslot[:, None])[:, 0], known_target)
    classes = torch.where(novel[:, None], -1 - n_slots, known_classes)
    query_class = torch.where(novel, -1 - n_qslot, known_query)

    # Item means: known classes from the world, novel ones from this batch's fresh means.
    idx = torch.cat([n_slots, n_qslot[:, None]], dim=1)                       # [n, N+1]
    novel_item_means = novel_means.gather(1, einops.repeat(idx, "n i -> n i d", d=D))
    known_item_means = world.means[torch.cat([known_classes, known_query[:, None]], dim=1)]
    item_means = torch.where(novel[:, None, None], novel_item_means, known_item_means)
    eta = torch.randn(n, N + 1, D, generator=gen) / math.sqrt(D)
    items = (item_means + task.eps * eta) / math.sqrt(1 + task.eps ** 2)

    label_vecs = world.labels[ctx_labels]                                     # [n, N, D]
    pairs = einops.rearrange(torch.stack([items[:, :N], label_vecs], dim=2),
                             "n i two d -> n (i two) d")
    content = torch.cat([pairs, items[:, N:]], dim=1)                         # [n, 2N+1, D]

    offsets = torch.randint(0, task.n_pos - task.seq_len + 1, (n,), generator=gen)
    positions = offsets[:, None] + torch.arange(task.seq_len)
    onehot = F.one_hot(positions, task.n_pos).to(content.dtype)
    inputs = torch.cat([onehot, content], dim=2)
    return ReddyBatch(inputs=inputs, targets=targets, context_labels=ctx_labels,
                      matches=classes == query_class[:, None], classes=classes,
                      query_class=query_class, offsets=offsets, kind=kind)


def train_batch(task: ReddyTaskSpec, world: ReddyWorld, step: int, batch_size: int
                ) -> ReddyBatch:
    """Training batch ``step``: fresh sequences every step, a pure function of task and step."""
    if not isinstance(step, int) or step < 0:
        raise DataError(f"step={step!r} must be a non-negative integer")
    return sample_set(task, world, batch_size, name="train",
                      generator=_generator(task.seed, _STREAM_TRAIN, step))


def eval_set(task: ReddyTaskSpec, world: ReddyWorld, name: SetName, n: int) -> ReddyBatch:
    """The test set ``name`` of ``n`` sequences (the same every call; disjoint stream from
    training)."""
    if name not in get_args(SetName):
        raise DataError(f"test set {name!r} is not one of {get_args(SetName)}; pick one of them")
    return sample_set(task, world, n, name=name,
                      generator=_generator(task.seed, _STREAM_TEST[name], n))
