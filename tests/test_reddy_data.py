"""Reddy 2023's task generator: exact statistics of each kind of sequence, determinism, errors."""

import math

import pytest
import torch

from induction_lens.config import ReddyTaskSpec
from induction_lens.data.reddy import (
    KIND_BURSTY,
    KIND_IID,
    KIND_NOVEL,
    eval_set,
    make_world,
    rank_frequency,
    sample_set,
    train_batch,
)
from induction_lens.errors import ConfigError, DataError

SMALL = dict(K=64, L=8, N=8, D=15, n_pos=20)


def _task(**kw) -> ReddyTaskSpec:
    return ReddyTaskSpec(**{**SMALL, **kw})


def _content(task, batch):
    return batch.inputs[..., task.n_pos:]


def test_same_seed_same_sequences_and_steps_differ():
    task = _task(p_C=0.5, p_B=0.5)
    w1, w2 = make_world(task), make_world(task)
    assert torch.equal(w1.means, w2.means) and torch.equal(w1.labels, w2.labels)
    a, b = train_batch(task, w1, 3, 32), train_batch(task, w2, 3, 32)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, train_batch(task, w1, 4, 32).inputs)
    other = make_world(_task(p_C=0.5, p_B=0.5, seed=1))
    assert not torch.equal(w1.means, other.means)
    assert torch.equal(eval_set(task, w1, "ic", 16).inputs, eval_set(task, w1, "ic", 16).inputs)


@pytest.mark.parametrize("burst", [1, 2, 4, 8])
def test_bursty_sequences_hold_n_over_b_classes_b_times_each(burst):
    task = _task(B=burst, p_B=1.0, p_C=0.0)
    batch = train_batch(task, make_world(task), 0, 200)
    assert (batch.kind == KIND_BURSTY).all()
    for row, query in zip(batch.classes.tolist(), batch.query_class.tolist(), strict=True):
        counts = {c: row.count(c) for c in set(row)}
        assert len(counts) == task.N // burst
        assert set(counts.values()) == {burst}
        assert query in counts
    assert torch.equal(batch.matches.sum(1), torch.full((200,), burst))


def test_labels_are_class_mod_l_and_tokens_are_exact():
    task = _task(eps=0.0, B=2)
    world = make_world(task)
    batch = train_batch(task, world, 0, 50)
    content = _content(task, batch)
    assert torch.equal(batch.context_labels, batch.classes % task.L)
    assert torch.equal(batch.targets, batch.query_class % task.L)
    # eps = 0: items are exactly their class means; label tokens exactly the label vectors.
    assert torch.equal(content[:, 0:2 * task.N:2], world.means[batch.classes])
    assert torch.equal(content[:, 1:2 * task.N:2], world.labels[batch.context_labels])
    assert torch.equal(content[:, -1], world.means[batch.query_class])


def test_item_noise_has_the_stated_scale():
    task = _task(eps=0.5, B=1)
    world = make_world(task)
    batch = train_batch(task, world, 0, 400)
    items = _content(task, batch)[:, 0:2 * task.N:2]
    eta = (items * math.sqrt(1 + 0.25) - world.means[batch.classes]) / 0.5
    # eta ~ N(0, 1/D): variance 1/D within sampling error (400*8*15 draws).
    assert abs(eta.var().item() * task.D - 1) < 0.05


def test_position_one_hot_at_a_random_offset():
    task = _task()
    batch = train_batch(task, make_world(task), 0, 500)
    onehot = batch.inputs[..., :task.n_pos]
    assert torch.equal(onehot.sum(-1), torch.ones(500, task.seq_len))
    expected = batch.offsets[:, None] + torch.arange(task.seq_len)
    assert torch.equal(onehot.argmax(-1), expected)
    assert set(batch.offsets.tolist()) == set(range(task.n_pos - task.seq_len + 1))


def test_ic_set_novel_classes_distinct_labels_query_in_context():
    task = _task(B=2)
    world = make_world(task)
    batch = eval_set(task, world, "ic", 300)
    assert (batch.kind == KIND_NOVEL).all()
    assert (batch.classes < 0).all() and batch.matches.any(1).all()
    for labels, classes in zip(batch.context_labels.tolist(), batch.classes.tolist(),
                               strict=True):
        mapping = dict(zip(classes, labels, strict=True))
        assert len(set(mapping.values())) == len(mapping) == task.N // 2
    hit = batch.context_labels[batch.matches].view(300, 2)
    assert torch.equal(hit[:, 0], batch.targets) and torch.equal(hit[:, 1], batch.targets)
    # Novel items are not the world's classes.
    items = _content(task, batch)[:, 0]
    assert torch.cdist(items, world.means).min() > 0.05


def test_ic2_shifts_every_label_by_one():
    task = _task(B=1)
    batch = eval_set(task, make_world(task), "ic2", 200)
    assert (batch.kind == KIND_BURSTY).all() and (batch.classes >= 0).all()
    assert torch.equal(batch.context_labels, (batch.classes + 1) % task.L)
    assert torch.equal(batch.targets, (batch.query_class + 1) % task.L)


def test_iw_sequences_are_iid_with_the_zipf_law():
    task = _task(alpha=1.0, K=16, L=8)
    n = 20_000
    batch = eval_set(task, make_world(task), "iw", n)
    assert (batch.kind == KIND_IID).all()
    classes = torch.cat([batch.classes, batch.query_class[:, None]], 1)
    expected = rank_frequency(task).double()
    by_hand = 1 / torch.arange(1, 17, dtype=torch.float64)
    assert torch.allclose(expected, by_hand / by_hand.sum(), atol=1e-6)
    total = classes.numel()
    freq = torch.bincount(classes.flatten(), minlength=16).double() / total
    sigma = (expected * (1 - expected) / total).sqrt()
    assert ((freq - expected).abs() < 5 * sigma).all()
    # Independence: the query's class is drawn independently of the first item's.
    same = (batch.query_class == batch.classes[:, 0]).double().mean()
    p_same = (expected ** 2).sum()
    assert abs(same - p_same) < 5 * math.sqrt(p_same * (1 - p_same) / n)


def test_training_mixture_proportions():
    task = _task(p_C=0.3, p_B=0.5)
    n = 20_000
    kind = sample_set(task, make_world(task), n, name="train",
                      generator=torch.Generator().manual_seed(0)).kind.double()
    for value, p in ((KIND_NOVEL, 0.3), (KIND_BURSTY, 0.7 * 0.5), (KIND_IID, 0.7 * 0.5)):
        frac = (kind == value).double().mean().item()
        assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_b_zero_has_no_bursty_training_sequences():
    task = _task(B=0, p_B=1.0, p_C=0.0)
    batch = train_batch(task, make_world(task), 0, 100)
    assert (batch.kind == KIND_IID).all()
    assert eval_set(task, make_world(task), "ic", 10).matches.sum(1).eq(1).all()


@pytest.mark.parametrize("kw, fragment", [
    (dict(K=60), "multiple of L"),
    (dict(B=3), "not divisible by B"),
    (dict(N=4, B=8), "exceeds N"),
    (dict(p_B=1.5), "p_B"),
    (dict(p_C=-0.1), "p_C"),
    (dict(n_pos=10), "too small for the position one-hot"),
    (dict(B=0, p_C=0.5), "needs B >= 1"),
    (dict(D=0), "ReddyTaskSpec.D"),
    (dict(eps=-1.0), "eps"),
    (dict(L=4, K=64, B=1), "distinct labels"),
])
def test_bad_task_specs_fail_with_one_clear_line(kw, fragment):
    with pytest.raises(ConfigError, match=fragment) as err:
        _task(**kw)
    assert "\n" not in str(err.value)


def test_bad_set_name_and_step():
    task = _task()
    world = make_world(task)
    # TypeError: under the runtime type-check hook the Literal annotation rejects it first.
    with pytest.raises((DataError, TypeError), match="not one of|test"):
        eval_set(task, world, "test", 10)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="non-negative"):
        train_batch(task, world, -1, 10)
