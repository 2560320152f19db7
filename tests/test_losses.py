"""Per-token losses and their views against plain references and hand-computable answers."""

import contextlib

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from jaxtyping import TypeCheckError

from induction_lens.analysis.losses import loss_by_context, loss_log_derivative, per_token_loss_pca
from induction_lens.measures._checks import EvalError
from induction_lens.measures.losses import (
    ICL_PAPER_INDICES,
    icl_indices,
    icl_score,
    losses_at,
    per_token_losses,
    random_token_indices,
    summarise_losses,
    token_loss_diff,
)
from induction_lens.models import build_model

from .conftest import tiny_spec

ATOL = 1e-5


@contextlib.contextmanager
def clear_error(match: str):
    """Expect a one-line :class:`EvalError` matching ``match``.

    Under runtime type checking (``pytest --jaxtyping-packages=induction_lens,...``) a wrong
    dtype, shape or type is stopped by jaxtyping/beartype before our own check runs; that
    ``TypeCheckError`` is accepted too.
    """
    with pytest.raises((EvalError, TypeCheckError)) as err:
        yield err
    if isinstance(err.value, EvalError):
        assert err.match(match)
        assert "\n" not in str(err.value)


def ref_losses(model, tokens):
    """The plain reference: full logits of the whole set, log-softmax, gather."""
    with torch.no_grad():
        logp = model(tokens).log_softmax(-1)
    return -logp[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]


@pytest.fixture
def tokens():
    torch.manual_seed(1)
    t = torch.randint(1, 50, (7, 24))
    t[:, 0] = 0
    return t


class UnembedSpy:
    """Records how many positions every call of ``model.unembed`` receives."""

    def __init__(self, model):
        self.rows: list[int] = []
        self._orig = model.unembed.forward

        def spy(x):
            self.rows.append(x.shape[0] * x.shape[1])
            return self._orig(x)

        model.unembed.forward = spy


# ----------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("batch_size, budget", [(64, 2**22), (3, 50 * 5), (1, 50)])
def test_per_token_losses_match_reference(tiny_model, tokens, batch_size, budget):
    out = per_token_losses(tiny_model, tokens, batch_size=batch_size, logits_budget=budget)
    assert out.shape == (7, 23)
    torch.testing.assert_close(out, ref_losses(tiny_model, tokens), atol=ATOL, rtol=0)


def test_logits_are_streamed_within_budget(tiny_model, tokens):
    spy = UnembedSpy(tiny_model)
    budget = 50 * 10  # ten positions of a 50-token vocabulary
    per_token_losses(tiny_model, tokens, batch_size=4, logits_budget=budget)
    assert max(spy.rows) * tiny_model.cfg.d_vocab <= budget
    assert sum(spy.rows) == 7 * 23  # every predicted position exactly once


def test_losses_at_unembeds_only_the_requested_positions(tiny_model, tokens):
    positions = torch.tensor([[1, 5], [23, 2], [7, 7], [3, 4], [10, 11], [12, 1], [2, 9]])
    spy = UnembedSpy(tiny_model)
    out = losses_at(tiny_model, tokens, positions, batch_size=3)
    assert sum(spy.rows) == positions.numel()
    ref = ref_losses(tiny_model, tokens).gather(1, positions - 1)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


def test_losses_at_truncates_after_the_last_needed_position(tiny_model, tokens):
    # Causality: the loss at index 5 is the same whatever follows it.
    positions = torch.full((7, 1), 5)
    changed = tokens.clone()
    changed[:, 6:] = 1
    torch.testing.assert_close(losses_at(tiny_model, tokens, positions),
                               losses_at(tiny_model, changed, positions), atol=0, rtol=0)


# ----------------------------------------------------------------------------- summaries
def test_summaries_match_reference_in_both_paths(tiny_model, tokens):
    ref = ref_losses(tiny_model, tokens)
    index = random_token_indices(7, 24, seed=3)
    full = summarise_losses(tiny_model, tokens, random_index=index, batch_size=3)
    fast = summarise_losses(tiny_model, tokens, random_index=index, context_average=False)
    expected_example = ref[torch.arange(7), index - 1]
    torch.testing.assert_close(full.per_example, expected_example, atol=ATOL, rtol=0)
    torch.testing.assert_close(fast.per_example, expected_example, atol=ATOL, rtol=0)
    assert torch.isnan(full.by_position[0])
    torch.testing.assert_close(full.by_position[1:], ref.mean(0), atol=ATOL, rtol=0)
    assert fast.by_position is None
    early, late = full.icl_indices
    assert (early, late) == icl_indices(24)
    expected_icl = (ref[:, late - 1].mean() - ref[:, early - 1].mean()).item()
    assert full.icl_score == pytest.approx(expected_icl, abs=ATOL)
    assert fast.icl_score == pytest.approx(expected_icl, abs=ATOL)
    assert full.loss == pytest.approx(expected_example.mean().item(), abs=ATOL)
    assert icl_score(tiny_model, tokens) == pytest.approx(expected_icl, abs=ATOL)


def test_icl_score_sign_negative_when_later_tokens_are_easier():
    """A model that knows the sequence has period 8 predicts late tokens, not early ones."""
    model = build_model(tiny_spec(n_layers=1, normalization_type=None), seed=0)
    tokens = torch.randint(1, 50, (4, 8)).repeat(1, 3)
    tokens[:, 0] = 0
    with torch.no_grad():
        model.W_E.copy_(F.normalize(torch.randn(50, 32), dim=-1))
        model.unembed.W_U.copy_(50.0 * model.W_E.T)
        model.unembed.b_U.zero_()

    def copy_back(resid, hook):  # position p predicts token p + 1 = token p - 7
        out = torch.zeros_like(resid)
        out[:, 7:] = model.W_E[tokens[:, :resid.shape[1] - 7]]
        return out

    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", copy_back)]):
        score = icl_score(model, tokens, indices=(3, 20))
        losses = per_token_losses(model, tokens)
    assert losses[:, 19].mean() < 0.01 < 3.0 < losses[:, 2].mean()
    assert score < -3.0


def test_random_token_indices_are_fixed_and_in_range():
    a = random_token_indices(1000, 128, seed=0)
    assert a.min() >= 1 and a.max() <= 127
    assert torch.equal(a, random_token_indices(1000, 128, seed=0))
    assert torch.equal(a[:10], random_token_indices(10, 128, seed=0))  # prefix-stable
    assert not torch.equal(a, random_token_indices(1000, 128, seed=1))


@pytest.mark.parametrize("seq_len, expected", [
    (512, ICL_PAPER_INDICES), (2048, ICL_PAPER_INDICES), (128, (12, 125)), (256, (25, 250)),
    (24, (2, 23)), (3, (1, 2)),
])
def test_icl_indices_default_and_scaling(seq_len, expected):
    assert icl_indices(seq_len) == expected


def test_icl_indices_round_halves_to_even():
    """50/512 * 128 = 12.5 -> 12 and 50/512 * 384 = 37.5 -> 38: halves go to the even
    neighbour, not up (rounding half up would give 13 at 128)."""
    assert 50 / 512 * 128 == 12.5 and 50 / 512 * 384 == 37.5  # exact in binary
    assert icl_indices(128)[0] == 12
    assert icl_indices(384) == (38, 375)


@pytest.mark.parametrize("seq_len, indices, message", [
    (128, (50, 500), "late index 500 is outside the context"),
    (128, (0, 100), "early index 0 is outside the context"),
    (128, (100, 50), "early < late"),
    (128, (1, 2, 3), "two context indices"),
    (2, None, "at least 3 tokens"),
])
def test_icl_indices_errors(seq_len, indices, message):
    with pytest.raises(EvalError, match=message) as err:
        icl_indices(seq_len, indices)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("call, message", [
    (lambda m, t: per_token_losses(m, t.float()), "integer token ids"),
    (lambda m, t: per_token_losses(m, t, batch_size=0), "batch_size"),
    (lambda m, t: per_token_losses(m, t, logits_budget=0), "logits_budget"),
    (lambda m, t: losses_at(m, t, torch.zeros(7, 1, dtype=torch.long)), "index 0 is BOS"),
    (lambda m, t: losses_at(m, t, torch.ones(3, 1, dtype=torch.long)), "positions must be"),
    (lambda m, t: summarise_losses(m, t, random_index=torch.ones(3, dtype=torch.long)),
     "random_index must have shape"),
    (lambda m, t: icl_score(m, t, indices=(5, 40)), "outside the context"),
])
def test_bad_inputs_give_one_line_errors(tiny_model, tokens, call, message):
    with clear_error(message):
        call(tiny_model, tokens)


# ----------------------------------------------------------------------------- views
def context_frame(runs=("a",), steps=(0, 10), n_pos=20, fn=lambda step, i: 5 - np.log(i)):
    rows = [{"run": r, "step": s, "train_tokens": 100 * s, "metric": "loss_by_position",
             "position": i, "value": fn(s, i)}
            for r in runs for s in steps for i in range(1, n_pos)]
    return pd.DataFrame(rows)


def test_loss_by_context_and_log_derivative_of_a_log_law():
    # loss = a - b ln(i) has derivative -b wrt ln(i) everywhere; np.gradient is exact on it.
    frame = context_frame(fn=lambda step, i: 5.0 - (0.1 + 0.01 * step) * np.log(i))
    table = loss_by_context(frame)
    assert list(table.columns) == ["run", "step", "train_tokens", "position", "value"]
    assert len(table) == 2 * 19
    deriv = loss_log_derivative(frame)
    for step, b in ((0, 0.1), (10, 0.2)):
        np.testing.assert_allclose(deriv[deriv["step"] == step]["value"], -b, atol=1e-9)


def test_views_need_the_right_rows():
    with pytest.raises(EvalError, match="loss_by_position"):
        loss_by_context(pd.DataFrame({"metric": ["icl_score"], "value": [0.0]}))
    with pytest.raises(EvalError, match="loss_per_example"):
        per_token_loss_pca(pd.DataFrame({"metric": ["icl_score"], "value": [0.0]}))


def example_frame(run, steps, vectors):
    return pd.DataFrame([{"run": run, "step": s, "train_tokens": 10 * s,
                          "metric": "loss_per_example",
                          "example": k, "position": 1, "value": v[k]}
                         for s, v in zip(steps, vectors, strict=True) for k in range(len(v))])


def test_pca_recovers_known_directions_in_one_shared_basis():
    rng = np.random.default_rng(0)
    u, w = np.linalg.qr(rng.normal(size=(30, 2)))[0].T  # orthonormal directions in R^30
    base = rng.normal(size=30)
    steps = np.arange(6)
    t = steps - 2.5  # both runs centred on `base`, so u and w are exactly the components
    run_a = [base + 3.0 * ti * u for ti in t]  # moves along u (large)
    run_b = [base + 1.0 * ti * w for ti in t]  # moves along w (small)
    frame = pd.concat([example_frame("a", steps, run_a), example_frame("b", steps, run_b)])
    pca = per_token_loss_pca(frame)
    assert list(pca.columns) == ["run", "step", "train_tokens", "pc1", "pc2",
                                 "explained_variance_pc1", "explained_variance_pc2"]
    # Reference: eigenvectors of the covariance of the centred matrix.
    x = np.array(run_a + run_b)
    xc = x - x.mean(0)
    _, vecs = np.linalg.eigh(xc.T @ xc)
    ref = xc @ vecs[:, ::-1][:, :2]
    np.testing.assert_allclose(np.abs(pca[["pc1", "pc2"]].to_numpy()), np.abs(ref), atol=1e-8)
    # Run a moves only along pc1, run b only along pc2, in the one shared basis.
    a, b = pca[pca["run"] == "a"], pca[pca["run"] == "b"]
    assert np.ptp(a["pc1"]) == pytest.approx(15.0, rel=1e-6)
    assert np.ptp(a["pc2"]) == pytest.approx(0.0, abs=1e-8)
    assert np.ptp(b["pc2"]) == pytest.approx(5.0, rel=1e-6)
    assert np.ptp(b["pc1"]) == pytest.approx(0.0, abs=1e-8)
    ev = pca[["explained_variance_pc1", "explained_variance_pc2"]].iloc[0]
    assert ev.sum() == pytest.approx(1.0) and ev.iloc[0] > ev.iloc[1]
    again = per_token_loss_pca(frame.sample(frac=1.0, random_state=1))
    pd.testing.assert_frame_equal(pca, again)  # deterministic signs and order


def test_pca_refuses_snapshots_on_different_examples():
    frame = pd.concat([example_frame("a", [0], [np.zeros(5)]),
                       example_frame("b", [0], [np.zeros(4)])])
    with pytest.raises(EvalError, match="different examples"):
        per_token_loss_pca(frame)


# ----------------------------------------------------------------------------- token diffs
def test_token_loss_diff_on_ids_matches_reference(tokens):
    before = build_model(tiny_spec(), seed=0)
    after = build_model(tiny_spec(), seed=1)
    ids = tokens[0, 1:]
    diff = token_loss_diff(before, after, ids)
    assert list(diff.columns) == ["position", "token_id", "token", "loss_before", "loss_after",
                                  "diff"]
    ref_a, ref_b = ref_losses(before, tokens[:1])[0], ref_losses(after, tokens[:1])[0]
    np.testing.assert_allclose(diff["loss_before"], ref_a.numpy(), atol=ATOL)
    np.testing.assert_allclose(diff["loss_after"], ref_b.numpy(), atol=ATOL)
    np.testing.assert_allclose(diff["diff"], (ref_b - ref_a).numpy(), atol=ATOL)
    assert diff["token"].tolist() == [str(t) for t in ids.tolist()]


def test_token_loss_diff_on_text_with_a_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<|bos|>", "Mr", "and", "Mrs", "Dursley", "Potter", "the"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="the"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    model = build_model(tiny_spec(), seed=0)
    diff = token_loss_diff(model, model, "Mr and Mrs Dursley", tokenizer=tok)
    assert diff["token"].tolist() == ["Mr", "and", "Mrs", "Dursley"]
    assert diff["token_id"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(diff["diff"], 0.0, atol=0)


def test_token_loss_diff_errors(tiny_model):
    with pytest.raises(EvalError, match="no tokenizer"):
        token_loss_diff(tiny_model, tiny_model, "some text")
    with pytest.raises(EvalError, match="context is 24"):
        token_loss_diff(tiny_model, tiny_model, list(range(1, 40)))
    with pytest.raises(EvalError, match="different vocabularies"):
        token_loss_diff(tiny_model, build_model(tiny_spec(d_vocab=60)), [1, 2])
