"""The synthetic corpus and the evaluators' repeated-random-token batches."""

import numpy as np
import pytest
import torch

from induction_lens.config import ConfigError, DataSpec
from induction_lens.data import (
    BOS_TOKEN_ID,
    Corpus,
    SyntheticCorpus,
    evaluator_token_pool,
    make_corpus,
    repeated_tokens,
)


def corpus(**kwargs) -> SyntheticCorpus:
    return make_corpus(DataSpec(**kwargs), d_vocab=64, n_ctx=96)


def test_synthetic_corpus_follows_the_protocol():
    assert isinstance(corpus(), Corpus)


def test_batches_are_a_pure_function_of_seed_and_step():
    a, b = corpus(seed=1), corpus(seed=1)
    assert torch.equal(a.batch(7, 4), b.batch(7, 4))
    assert not torch.equal(a.batch(7, 4), a.batch(8, 4))
    assert not torch.equal(a.batch(7, 4), corpus(seed=2).batch(7, 4))


def test_examples_start_with_bos_and_stay_in_vocab():
    tokens = corpus().batch(0, 16)
    assert tokens.shape == (16, 96)
    assert (tokens[:, 0] == BOS_TOKEN_ID).all()
    assert (tokens[:, 1:] != BOS_TOKEN_ID).all()
    assert tokens.min() >= 0 and tokens.max() < 64


def _copied_fraction(tokens: torch.Tensor, span: int = 8) -> float:
    """Share of positions whose preceding `span`-gram already appeared earlier in the row."""
    hits = total = 0
    for row in tokens.tolist():
        seen = set()
        for i in range(1, len(row) - span):
            gram = tuple(row[i:i + span])
            total += 1
            hits += gram in seen
            seen.add(gram)
    return hits / total


def test_copy_probability_controls_repetition():
    # With 63 tokens, a random 8-gram repeating by chance is vanishingly rare.
    assert _copied_fraction(corpus(copy_prob=0.0).batch(0, 32)) < 0.01
    assert _copied_fraction(corpus(copy_prob=0.9).batch(0, 32)) > 0.3


def test_eval_set_is_a_stable_prefix_and_differs_from_training():
    c = corpus()
    small, large = c.eval_tokens(3), c.eval_tokens(10)
    assert torch.equal(small, large[:3])
    train_rows = {tuple(r) for s in range(5) for r in c.batch(s, 8).tolist()}
    assert not any(tuple(r) in train_rows for r in large.tolist())


def test_zipf_distribution_prefers_low_ids():
    c = corpus(distribution="zipf", copy_prob=0.0)
    counts = np.bincount(c.batch(0, 64)[:, 1:].flatten().numpy(), minlength=64)
    assert counts[1] > 5 * counts[50]
    freqs = c.token_frequencies()
    assert freqs[0] == 0 and freqs.sum() == pytest.approx(1.0)


def test_context_too_short_for_segments_is_refused():
    with pytest.raises(ConfigError, match="n_ctx"):
        make_corpus(DataSpec(min_segment=8), d_vocab=64, n_ctx=8)


def test_repeated_tokens_structure():
    pool = evaluator_token_pool(None, 64)
    tokens = repeated_tokens(pool, n_examples=10, seq_len=25, repeats=4, seed=3)
    assert tokens.shape == (10, 1 + 25 * 4)
    assert (tokens[:, 0] == BOS_TOKEN_ID).all()
    body = tokens[:, 1:].reshape(10, 4, 25)
    assert (body == body[:, :1]).all()
    for row in body[:, 0]:
        assert len(set(row.tolist())) == 25  # distinct within one sequence
    assert torch.equal(tokens, repeated_tokens(pool, seed=3))
    assert repeated_tokens(pool, bos_token_id=None).shape == (10, 100)


def test_token_pool_excludes_most_and_least_common_tokens():
    freqs = np.zeros(20)
    freqs[1:] = np.arange(19, 0, -1)  # token 1 most common, token 19 least common
    pool = evaluator_token_pool(freqs, 20, exclude_fraction=0.2)
    assert 0 not in pool  # BOS
    assert 1 not in pool and 19 not in pool
    assert 10 in pool
    assert len(pool) == 19 - 2 * int(19 * 0.1)


def test_token_pool_bad_inputs():
    with pytest.raises(ConfigError, match="shape"):
        evaluator_token_pool(np.ones(5), 20)
    with pytest.raises(ConfigError, match="exclude_fraction"):
        evaluator_token_pool(None, 20, exclude_fraction=1.0)
    with pytest.raises(ConfigError, match="seq_len"):
        repeated_tokens(np.arange(1, 10), seq_len=25)
