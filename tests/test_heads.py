"""Head activation evaluators against answers computable by hand, plain references, and
TransformerLens's own detection-pattern helpers."""

import numpy as np
import pandas as pd
import pytest
import torch
from transformer_lens.head_detector import (
    compute_head_attention_similarity_score,
    get_induction_head_detection_pattern,
    get_previous_token_head_detection_pattern,
)

from induction_lens.analysis.heads import classify_heads
from induction_lens.constants import BOS_TOKEN_ID
from induction_lens.data import evaluator_token_pool, repeated_tokens
from induction_lens.measures._checks import EvalError
from induction_lens.measures.heads import (
    HEAD_METRICS,
    copying_scores,
    head_scores,
    induction_targets,
    prefix_matching_scores,
    previous_token_scores,
    repeated_head_scores,
)
from induction_lens.models import build_model

from .conftest import tiny_spec
from .test_losses import clear_error

ATOL = 1e-5


# ----------------------------------------------------------------------------- helpers
def pattern_hooks(model, make_pattern):
    """Hooks replacing every head's attention pattern with ``make_pattern(q_len)`` [q, k]."""

    def hook(pattern, hook):
        fixed = make_pattern(pattern.shape[-1]).to(pattern.dtype)
        return fixed.expand_as(pattern).clone()

    return [(f"blocks.{layer}.attn.hook_pattern", hook) for layer in range(model.cfg.n_layers)]


def previous_token_pattern(n: int) -> torch.Tensor:
    p = torch.zeros(n, n)
    p[0, 0] = 1.0
    p[torch.arange(1, n), torch.arange(n - 1)] = 1.0
    return p


def uniform_pattern(n: int) -> torch.Tensor:
    p = torch.ones(n, n).tril()
    return p / p.sum(-1, keepdim=True)


def repeated(model, seq_len=5, repeats=4, n_examples=3, seed=0):
    pool = evaluator_token_pool(None, model.cfg.d_vocab)
    return repeated_tokens(pool, n_examples=n_examples, seq_len=seq_len, repeats=repeats,
                           seed=seed)


def ref_previous_token(model, tokens):
    _, cache = model.run_with_cache(tokens)
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        p = cache["pattern", layer]
        for h in range(model.cfg.n_heads):
            vals = [p[b, h, i, i - 1].item() for b in range(tokens.shape[0])
                    for i in range(1, tokens.shape[1])]
            out[layer, h] = float(np.mean(vals))
    return out


def ref_prefix(model, tokens):
    _, cache = model.run_with_cache(tokens)
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        p = cache["pattern", layer]
        for h in range(model.cfg.n_heads):
            vals = []
            for b in range(tokens.shape[0]):
                t = tokens[b].tolist()
                for i in range(tokens.shape[1]):
                    targets = [j for j in range(1, i + 1)
                               if t[j - 1] == t[i] and t[i] != BOS_TOKEN_ID]
                    if targets:
                        vals.append(p[b, h, i, targets].sum().item())
            out[layer, h] = float(np.mean(vals))
    return out


def ref_copying(model, tokens, bos):
    """The documented formula, one source position at a time."""
    _, cache = model.run_with_cache(tokens)
    first = 1 if bos else 0
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        v, p = cache["v", layer], cache["pattern", layer]
        for h in range(model.cfg.n_heads):
            num = den = 0.0
            for b in range(tokens.shape[0]):
                sample = tokens[b, first:].tolist()
                for j in range(first, tokens.shape[1]):
                    o = v[b, j, h] @ model.W_O[layer, h]
                    o = o - o.mean()
                    logits = (o * model.ln_final.w) @ model.W_U
                    r = torch.relu(logits - logits.mean())
                    own = r[tokens[b, j]].item()
                    total = own + sum(r[t].item() for t in sample)
                    rho = own / total if total > 0 else 0.0
                    w = p[b, h, first:, j].sum().item()
                    num += w * rho
                    den += w
            out[layer, h] = 4 * num / den - 1
    return out


def ref_copying_literal(model, tokens, bos):
    """The literal reading, one query at a time: rectify the head's summed output at query i."""
    _, cache = model.run_with_cache(tokens)
    first = 1 if bos else 0
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        v, p = cache["v", layer], cache["pattern", layer]
        for h in range(model.cfg.n_heads):
            num = den = 0.0
            for b in range(tokens.shape[0]):
                sample = tokens[b, first:].tolist()
                for i in range(first, tokens.shape[1]):
                    z = sum(p[b, h, i, j] * v[b, j, h] for j in range(i + 1))  # BOS included
                    o = z @ model.W_O[layer, h]
                    o = o - o.mean()
                    logits = (o * model.ln_final.w) @ model.W_U
                    r = torch.relu(logits - logits.mean())
                    w = sum(p[b, h, i, j].item() for j in range(first, i + 1))
                    if w == 0:
                        continue
                    own = sum(p[b, h, i, j].item() * r[tokens[b, j]].item()
                              for j in range(first, i + 1)) / w
                    total = own + sum(r[t].item() for t in sample)
                    num += w * (own / total if total > 0 else 0.0)
                    den += w
            out[layer, h] = 4 * num / den - 1
    return out


# ----------------------------------------------------------------------------- previous token
def test_exact_previous_token_pattern_scores_one(tiny_model):
    tokens = repeated(tiny_model)
    with tiny_model.hooks(fwd_hooks=pattern_hooks(tiny_model, previous_token_pattern)):
        scores = previous_token_scores(tiny_model, tokens)
    assert scores.shape == (2, 4)
    torch.testing.assert_close(scores, torch.ones(2, 4), atol=ATOL, rtol=0)


def test_uniform_attention_scores_chance_on_previous_token(tiny_model):
    tokens = repeated(tiny_model)
    n = tokens.shape[1]
    expected = np.mean([1 / (i + 1) for i in range(1, n)])
    with tiny_model.hooks(fwd_hooks=pattern_hooks(tiny_model, uniform_pattern)):
        scores = previous_token_scores(tiny_model, tokens)
    torch.testing.assert_close(scores, torch.full((2, 4), expected, dtype=torch.float32),
                               atol=ATOL, rtol=0)


def test_previous_token_matches_reference_and_batches(tiny_model):
    tokens = torch.randint(0, 50, (5, 20))
    ref = ref_previous_token(tiny_model, tokens)
    torch.testing.assert_close(previous_token_scores(tiny_model, tokens, batch_size=2), ref,
                               atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- prefix matching
def test_previous_token_head_scores_its_computable_value_on_prefix_matching(tiny_model):
    # With >= 3 distinct tokens per repeat, i-1 never followed an earlier copy of token i: 0.
    with tiny_model.hooks(fwd_hooks=pattern_hooks(tiny_model, previous_token_pattern)):
        assert prefix_matching_scores(tiny_model, repeated(tiny_model, seq_len=5)).abs().max() \
            < ATOL
        # With a period of 2 ([a b a b ...]) token i-1 is exactly the induction target: 1.
        torch.testing.assert_close(
            prefix_matching_scores(tiny_model, repeated(tiny_model, seq_len=2)),
            torch.ones(2, 4), atol=ATOL, rtol=0)


def test_uniform_attention_scores_chance_on_prefix_matching(tiny_model):
    seq_len, repeats = 5, 4
    tokens = repeated(tiny_model, seq_len=seq_len, repeats=repeats)
    # By hand: query at position p (1-based in the repeats) has floor((p-1)/seq_len) earlier
    # copies, each with one target, and attends uniformly to p + 1 positions (BOS included).
    fractions = [((p - 1) // seq_len) / (p + 1) for p in range(1, 1 + seq_len * repeats)
                 if (p - 1) // seq_len > 0]
    with tiny_model.hooks(fwd_hooks=pattern_hooks(tiny_model, uniform_pattern)):
        scores = prefix_matching_scores(tiny_model, tokens)
    torch.testing.assert_close(scores, torch.full((2, 4), float(np.mean(fractions))),
                               atol=ATOL, rtol=0)


def test_perfect_induction_pattern_scores_one(tiny_model):
    tokens = repeated(tiny_model, seq_len=5)
    mask = induction_targets(tokens)[0]
    latest = torch.zeros_like(mask)
    for i in range(mask.shape[0]):
        hits = mask[i].nonzero()
        latest[i, hits.max() if len(hits) else 0] = 1.0  # the latest copy, else BOS
    with tiny_model.hooks(fwd_hooks=pattern_hooks(tiny_model, lambda n: latest[:n, :n])):
        scores = prefix_matching_scores(tiny_model, tokens)
    torch.testing.assert_close(scores, torch.ones(2, 4), atol=ATOL, rtol=0)


def test_prefix_matching_matches_reference(tiny_model):
    tokens = repeated(tiny_model, seq_len=5, n_examples=4)
    torch.testing.assert_close(prefix_matching_scores(tiny_model, tokens, batch_size=3),
                               ref_prefix(tiny_model, tokens), atol=ATOL, rtol=0)


def test_induction_targets_equal_transformer_lens_detection_pattern():
    tokens = repeated_tokens(np.arange(1, 40), n_examples=3, seq_len=6, repeats=3, seed=1)
    mask = induction_targets(tokens)
    for b in range(tokens.shape[0]):
        torch.testing.assert_close(mask[b], get_induction_head_detection_pattern(tokens[b:b + 1]))


def test_scores_are_tl_similarity_scores_rescaled(tiny_model):
    """Our scores equal TransformerLens's "mul" similarity scores up to a known factor.

    TL divides the attention on the detection pattern by the whole pattern's sum (one per
    query row); we average over the queries that have a target. So, per example of length T,
    previous-token = TL * T / (T - 1) and prefix matching = TL * T / n_queries_with_targets.
    """
    tokens = repeated(tiny_model, seq_len=5, n_examples=1)
    n = tokens.shape[1]
    _, cache = tiny_model.run_with_cache(tokens)
    prev_det = get_previous_token_head_detection_pattern(tokens)
    ind_det = get_induction_head_detection_pattern(tokens)
    n_queries = int((ind_det.sum(-1) > 0).sum())
    prev = previous_token_scores(tiny_model, tokens)
    prefix = prefix_matching_scores(tiny_model, tokens)
    for layer in range(2):
        for h in range(4):
            pattern = cache["pattern", layer][0, h]
            tl_prev = compute_head_attention_similarity_score(
                pattern, prev_det, exclude_bos=False, exclude_current_token=False,
                error_measure="mul")
            tl_ind = compute_head_attention_similarity_score(
                pattern, ind_det, exclude_bos=False, exclude_current_token=False,
                error_measure="mul")
            assert prev[layer, h].item() == pytest.approx(tl_prev * n / (n - 1), abs=ATOL)
            assert prefix[layer, h].item() == pytest.approx(tl_ind * n / n_queries, abs=ATOL)


# ----------------------------------------------------------------------------- copying
def copier(sign: float = 1.0, d_vocab: int = 20):
    """One layer, one head, d_model 32: one-hot embeddings, W_V = I, W_O = sign * I, W_U = W_E^T.

    Its direct path raises exactly the attended token (sign +1) or lowers it (sign -1),
    whatever the attention pattern.
    """
    model = build_model(tiny_spec(n_layers=1, n_heads=1, d_head=32, d_vocab=d_vocab, n_ctx=32),
                        seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.blocks[0].ln1.w.fill_(1.0)
        model.ln_final.w.fill_(1.0)
        model.W_E[:, :d_vocab].copy_(torch.eye(d_vocab))
        model.blocks[0].attn.W_V[0].copy_(torch.eye(32))
        model.blocks[0].attn.W_O[0].copy_(sign * torch.eye(32))
        model.unembed.W_U.copy_(model.W_E.T)
    return model


def copy_tokens(d_vocab, seq_len=8, n_examples=4, bos=True):
    pool = np.arange(1, d_vocab)
    return repeated_tokens(pool, n_examples=n_examples, seq_len=seq_len, repeats=1,
                           bos_token_id=BOS_TOKEN_ID if bos else None)


@pytest.mark.parametrize("bos", [True, False])
def test_exact_copying_ov_scores_one_and_its_negation_minus_one(bos):
    tokens = copy_tokens(20, bos=bos)
    assert copying_scores(copier(+1.0), tokens, bos=bos).item() == pytest.approx(1.0, abs=ATOL)
    assert copying_scores(copier(-1.0), tokens, bos=bos).item() == pytest.approx(-1.0, abs=ATOL)


def test_copying_chance_level_is_4_over_n_plus_1_minus_1():
    """A head raising every non-BOS token equally: rho = 1/(n+1) with n sample tokens."""
    d_vocab, n = 26, 25
    model = copier(+1.0, d_vocab=d_vocab)
    with torch.no_grad():
        model.blocks[0].attn.W_V.zero_()
        u = torch.zeros(32)
        u[0], u[1] = 1.0, -1.0  # zero-mean, so the final LayerNorm's centring keeps it
        model.blocks[0].attn.b_V[0].copy_(u)
        model.unembed.W_U.zero_()
        model.unembed.W_U[0, 1:] = 1.0  # u -> logit 1 on every token but BOS
    tokens = copy_tokens(d_vocab, seq_len=n, n_examples=2)
    assert copying_scores(model, tokens).item() == pytest.approx(4 / (n + 1) - 1, abs=ATOL)


def test_copying_ignores_attention_to_bos():
    model = copier(+1.0)
    tokens = copy_tokens(20)

    def mostly_bos(n):  # 90% on BOS, 10% on the current token
        p = torch.eye(n) * 0.1
        p[:, 0] += 0.9
        p[0, 0] = 1.0
        return p

    with model.hooks(fwd_hooks=pattern_hooks(model, mostly_bos)):
        assert copying_scores(model, tokens).item() == pytest.approx(1.0, abs=ATOL)


@pytest.mark.parametrize("bos", [True, False])
def test_copying_matches_reference(tiny_model, bos):
    tokens = copy_tokens(50, seq_len=6, n_examples=3, bos=bos)
    torch.testing.assert_close(copying_scores(tiny_model, tokens, bos=bos, batch_size=2),
                               ref_copying(tiny_model, tokens, bos), atol=1e-4, rtol=0)


def test_a_copier_that_also_raises_the_other_sample_tokens_scores_below_zero():
    """Why trained induction heads score negative: the score is above 0 only when the attended
    token's raise exceeds the summed raise of all other sample tokens.

    Tokens 1-8 form the sample; the direct path of a source with token t raises t by a = 2 and
    every other sample token by b = 1 (vocabulary 20, so the mean logit is m = (a + 7b)/20):
    the attended token is by far the most raised, yet
    rho = (a - m) / (2(a - m) + 7(b - m)) = 1.55 / 6.95 and the score 4 rho - 1 < 0.
    """
    a, b, n, d_vocab = 2.0, 1.0, 8, 20
    model = copier(+1.0, d_vocab=d_vocab)
    with torch.no_grad():
        w_u = model.unembed.W_U
        w_u[1:n + 1, 1:n + 1] = b
        w_u[range(1, n + 1), range(1, n + 1)] = a
        w_u[31] = w_u[:31].sum(0).max() - w_u[:31].sum(0)  # equal column sums: the LayerNorm
        # centring of the one-hot residual then shifts every logit equally
    tokens = repeated_tokens(np.arange(1, n + 1), n_examples=3, seq_len=n, repeats=1)
    m = (a + (n - 1) * b) / d_vocab
    rho = (a - m) / (2 * (a - m) + (n - 1) * (b - m))
    score = copying_scores(model, tokens).item()
    assert score == pytest.approx(4 * rho - 1, abs=ATOL)
    assert 4 / (n + 1) - 1 < score < 0  # above the chance level, below zero


@pytest.mark.parametrize("bos", [True, False])
def test_literal_copying_matches_reference(tiny_model, bos):
    tokens = copy_tokens(50, seq_len=6, n_examples=3, bos=bos)
    torch.testing.assert_close(
        copying_scores(tiny_model, tokens, bos=bos, reading="literal", batch_size=2),
        ref_copying_literal(tiny_model, tokens, bos), atol=1e-4, rtol=0)


def test_readings_of_an_exact_copier_under_uniform_attention():
    """Uniform causal attention over BOS and the ``i`` sample tokens seen so far.

    The copier's summed output at query ``i`` is ``(e_BOS + sum_j e_{t_j}) / (i + 1)``: after
    the mean-logit subtraction it raises each of the ``i`` seen tokens by ``1/(i+1) - 1/20``
    (vocabulary 20) and no other sample token, so the literal ratio is ``rho_i = 1/(i+1)``,
    weighted by the sample attention ``w_i = i/(i+1)``; every single source raises only its own
    token, so the per-source reading scores 1.
    """
    model = copier(+1.0)
    tokens = copy_tokens(20, seq_len=8, n_examples=2)
    assert all(len(set(row[1:].tolist())) == 8 for row in tokens)  # distinct sample tokens
    i = np.arange(1, 9)
    w, rho = i / (i + 1), 1 / (i + 1)
    expected = 4 * (w * rho).sum() / w.sum() - 1
    with model.hooks(fwd_hooks=pattern_hooks(model, uniform_pattern)):
        literal = copying_scores(model, tokens, reading="literal").item()
        per_source = copying_scores(model, tokens, reading="per_source").item()
    assert literal == pytest.approx(expected, abs=ATOL)
    assert per_source == pytest.approx(1.0, abs=ATOL)


def test_readings_agree_under_one_hot_attention(tiny_model):
    """Each query attends only to itself: the summed output is one source's, so the readings
    are the same number."""
    tokens = copy_tokens(50, seq_len=6, n_examples=3)
    with tiny_model.hooks(fwd_hooks=pattern_hooks(tiny_model, torch.eye)):
        literal = copying_scores(tiny_model, tokens, reading="literal")
        per_source = copying_scores(tiny_model, tokens, reading="per_source")
    torch.testing.assert_close(literal, per_source, atol=ATOL, rtol=0)
    assert not torch.allclose(literal, torch.full_like(literal, literal[0, 0].item()))


def test_literal_reading_threads_through_the_shared_pass(tiny_model):
    tokens = repeated(tiny_model, seq_len=5, n_examples=3)
    for copying_bos, copy_input, bos in ((True, tokens[:, :6], True),
                                         (False, tokens[:, 1:6], False)):
        shared = repeated_head_scores(tiny_model, tokens, seq_len=5, copying_bos=copying_bos,
                                      copying_reading="literal")
        torch.testing.assert_close(
            shared["copying"], copying_scores(tiny_model, copy_input, bos=bos, reading="literal"),
            atol=ATOL, rtol=0)
    frame = head_scores(tiny_model, metrics=["copying"], seq_len=5, copying_reading="literal")
    torch.testing.assert_close(
        torch.tensor(frame["value"].to_numpy(), dtype=torch.float32),
        repeated_head_scores(tiny_model, repeated_tokens(
            evaluator_token_pool(None, 50, special_tokens=(BOS_TOKEN_ID,)), n_examples=10,
            seq_len=5, repeats=4, seed=0), seq_len=5, metrics=("copying",),
            copying_reading="literal")["copying"].flatten(), atol=ATOL, rtol=0)


def test_shared_forward_equals_separate_evaluators(tiny_model):
    tokens = repeated(tiny_model, seq_len=5, n_examples=3)
    shared = repeated_head_scores(tiny_model, tokens, seq_len=5)
    torch.testing.assert_close(shared["prefix_matching"],
                               prefix_matching_scores(tiny_model, tokens), atol=ATOL, rtol=0)
    torch.testing.assert_close(shared["copying"],
                               copying_scores(tiny_model, tokens[:, :6], bos=True),
                               atol=ATOL, rtol=0)
    literal = repeated_head_scores(tiny_model, tokens, seq_len=5, copying_bos=False)
    torch.testing.assert_close(literal["copying"],
                               copying_scores(tiny_model, tokens[:, 1:6], bos=False),
                               atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- head_scores
def test_head_scores_frame(tiny_model):
    frame = head_scores(tiny_model, seq_len=5, repeats=4)
    assert list(frame.columns) == ["layer", "head", "metric", "value"]
    assert len(frame) == 2 * 4 * len(HEAD_METRICS)
    assert set(frame["metric"]) == set(HEAD_METRICS)
    copying = frame[frame["metric"] == "copying"]["value"]
    assert copying.between(-1, 1).all()
    only = head_scores(tiny_model, metrics=["previous_token"], seq_len=5)
    assert set(only["metric"]) == {"previous_token"}
    pd.testing.assert_frame_equal(
        only.reset_index(drop=True),
        frame[frame["metric"] == "previous_token"].reset_index(drop=True))


@pytest.mark.parametrize("call, message", [
    (lambda m: head_scores(m, metrics=["nope"]), "unknown head metric"),
    (lambda m: head_scores(m, seq_len=25, repeats=4), "do not fit the model's context"),
    (lambda m: prefix_matching_scores(m, torch.arange(1, 11)[None]), "no repeated token"),
    (lambda m: copying_scores(m, torch.arange(1, 11)[None], bos=True), "needs BOS"),
    (lambda m: copying_scores(m, copy_tokens(50), reading="nope"), "copying reading 'nope'"),
    (lambda m: head_scores(m, seq_len=5, copying_reading="sum"), "copying reading 'sum'"),
    (lambda m: previous_token_scores(m, torch.zeros(3, 5)), "integer token ids"),
    (lambda m: previous_token_scores(m, torch.zeros(5, dtype=torch.long)), r"shape \[batch, pos\]"),
    (lambda m: previous_token_scores(m, torch.full((1, 5), 99)), "vocabulary"),
    (lambda m: previous_token_scores(m, torch.zeros(1, 30, dtype=torch.long)), "context"),
    (lambda m: previous_token_scores(m, torch.zeros(1, 5, dtype=torch.long), batch_size=0),
     "batch_size"),
])
def test_bad_inputs_give_one_line_errors(tiny_model, call, message):
    with clear_error(message):
        call(tiny_model)


# ----------------------------------------------------------------------------- classify
def test_classify_heads_thresholds():
    rows = []
    values = {  # (prefix, copying, previous) -> expected type
        (0, 0): ((0.9, 0.5, 0.0), "induction"),
        (0, 1): ((0.9, -0.9, 0.0), "other"),  # anti-copying prefix search
        (0, 2): ((0.3, -0.5, 0.9), "induction"),  # on both thresholds: inclusive
        (1, 0): ((0.0, 0.0, 0.9), "previous_token"),
        (1, 1): ((0.05, 0.0, 0.05), "other"),
    }
    for (layer, head), ((prefix, copy, prev), _) in values.items():
        for metric, value in (("prefix_matching", prefix), ("copying", copy),
                              ("previous_token", prev)):
            rows.append({"layer": layer, "head": head, "metric": metric, "value": value})
    types = classify_heads(pd.DataFrame(rows))
    got = {(r.layer, r.head): r.head_type for r in types.itertuples()}
    assert got == {k: v[1] for k, v in values.items()}
    loose = classify_heads(pd.DataFrame(rows), copying_threshold=None)
    assert loose.set_index(["layer", "head"]).loc[(0, 1), "head_type"] == "induction"


def test_classify_heads_groups_by_step_and_rejects_bad_frames():
    rows = [{"run": "r", "step": s, "train_tokens": s, "layer": 0, "head": 0,
             "metric": "prefix_matching", "value": v} for s, v in ((0, 0.0), (100, 0.8))]
    types = classify_heads(pd.DataFrame(rows))
    assert types["head_type"].tolist() == ["other", "induction"]
    with pytest.raises(EvalError, match="lacks columns"):
        classify_heads(pd.DataFrame({"layer": [0]}))
    with pytest.raises(EvalError, match="needs prefix_matching"):
        classify_heads(pd.DataFrame(rows).assign(metric="copying"))


# ----------------------------------------------------------------------------- trained models
@pytest.mark.slow
def test_trained_two_layer_model_has_a_layer_one_induction_head(trained_hub):
    run = "attn-only-2l"
    model = trained_hub.load_model(run)
    pool = evaluator_token_pool(trained_hub.token_frequencies(run), model.cfg.d_vocab)
    data = trained_hub.corpus(run).eval_tokens(10)
    frame = head_scores(model, token_pool=pool, dataset_tokens=data)
    prefix = frame[frame["metric"] == "prefix_matching"]
    assert prefix[prefix["layer"] == 1]["value"].max() > 0.5
    assert prefix[prefix["layer"] == 0]["value"].max() < 0.2
    types = classify_heads(frame)
    assert (types[types["layer"] == 1]["head_type"] == "induction").any()
    # Induction heads copy well above the chance level of 4/26 - 1 = -0.85.
    copying = frame[(frame["metric"] == "copying") & (frame["layer"] == 1)]["value"]
    assert copying.max() > -0.5


@pytest.mark.slow
@pytest.mark.parametrize("run", ["attn-only-1l", "attn-only-2l"])
def test_rankings_agree_with_transformer_lens_detection_patterns(trained_hub, run):
    """Previous-token and induction rankings equal those of TL's detection-pattern scores."""
    model = trained_hub.load_model(run)
    pool = evaluator_token_pool(trained_hub.token_frequencies(run), model.cfg.d_vocab)
    rep = repeated_tokens(pool)
    data = trained_hub.corpus(run).eval_tokens(10)

    def tl_scores(tokens, detector):
        _, cache = model.run_with_cache(tokens)
        out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
        for b in range(tokens.shape[0]):
            det = detector(tokens[b:b + 1])
            for layer in range(model.cfg.n_layers):
                for h in range(model.cfg.n_heads):
                    out[layer, h] += compute_head_attention_similarity_score(
                        cache["pattern", layer][b, h], det, exclude_bos=False,
                        exclude_current_token=False, error_measure="mul")
        return out.flatten()

    ours_prev = previous_token_scores(model, data).flatten()
    ours_prefix = prefix_matching_scores(model, rep).flatten()
    tl_prev = tl_scores(data, get_previous_token_head_detection_pattern)
    tl_prefix = tl_scores(rep, get_induction_head_detection_pattern)
    # Identical up to a positive factor (the test above), hence identical rankings.
    assert torch.argsort(ours_prev).tolist() == torch.argsort(tl_prev).tolist()
    assert torch.argsort(ours_prefix).tolist() == torch.argsort(tl_prefix).tolist()


# ----------------------------------------------------------------------------- settings
def test_copying_reading_setting_keys_the_cache_only_when_set():
    from induction_lens.runs import METRICS, EvalSettings

    copying = METRICS["copying"]
    default = copying.cache_key(EvalSettings())
    assert "copying_reading" not in default["settings"]  # caches written before stay valid
    assert "copying_bos" in default["settings"]
    literal = copying.cache_key(EvalSettings(copying_reading="literal"))
    assert literal["settings"]["copying_reading"] == "literal"
    assert literal != default
    prefix = METRICS["prefix_matching"]
    assert prefix.cache_key(EvalSettings(copying_reading="literal")) == prefix.cache_key(
        EvalSettings())
    with clear_error("EvalSettings.copying_reading='sum'"):
        EvalSettings(copying_reading="sum")
