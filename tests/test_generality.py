"""Argument 4 evaluators: the pattern-matching attention metric and the literal-copying analysis,
checked on hand-built attention patterns and against TransformerLens's own head results."""

import math

import pandas as pd
import pytest
import torch

from induction_lens.analysis.generality import copying_summary, strongest_induction_head
from induction_lens.data.tasks import pattern_matching_task, tokenize_task
from induction_lens.measures._checks import EvalError
from induction_lens.measures.generality import (
    COPYING_METRICS,
    TASK_METRICS,
    fuzzy_copying,
    head_attribution,
    induction_mask,
    literal_copying,
    pattern_attention_scores,
    pattern_task_scores,
)

from .conftest import tiny_spec
from .test_tasks import word_tokenizer

ATOL = 1e-6


@pytest.fixture
def task_meta():
    """12 lines of the paper's task, tokenized one word per token after BOS."""
    task = pattern_matching_task(12, seed=4)
    return tokenize_task(task, word_tokenizer([task.text]), bos=0)


def _lines(meta):
    return [torch.nonzero(meta.line_of == i)[:, 0] for i in range(meta.n_lines)]


def _scored(meta):
    cats = meta.categories
    return [i for i in range(meta.n_lines) if cats[i] in cats[:i]]


def _uniform_causal(n):
    return torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]


def test_colons_attending_to_the_latest_same_category_label_score_one(task_meta):
    n = len(task_meta.tokens)
    pattern = torch.zeros(n, n)
    pattern[:, 0] = 1.0  # every other query parks on BOS
    for i in _scored(task_meta):
        j = max(k for k in range(i) if task_meta.categories[k] == task_meta.categories[i])
        colon = task_meta.colon_positions[i]
        pattern[colon] = 0
        pattern[colon, task_meta.label_positions[j]] = 1.0
    scores = pattern_attention_scores(pattern, task_meta)
    assert set(scores) == set(TASK_METRICS)
    for metric in ("task_same_category_attention", "task_same_category_label_attention",
                   "task_earlier_line_attention", "task_same_category_share"):
        assert scores[metric].item() == pytest.approx(1.0, abs=ATOL)


def test_uniform_attention_over_earlier_lines_scores_chance(task_meta):
    n = len(task_meta.tokens)
    lines = _lines(task_meta)
    pattern = _uniform_causal(n)
    expected_share, expected_chance, expected_same = [], [], []
    for i in _scored(task_meta):
        colon = int(task_meta.colon_positions[i])
        earlier = torch.cat(lines[:i])
        same = torch.cat([lines[k] for k in range(i)
                          if task_meta.categories[k] == task_meta.categories[i]])
        pattern[colon] = 0
        pattern[colon, earlier] = 0.5 / len(earlier)  # half on earlier lines, evenly
        pattern[colon, 0] = 0.5  # half on BOS
        expected_share.append(len(same) / len(earlier))
        expected_chance.append(len(same) / len(earlier))
        expected_same.append(0.5 * len(same) / len(earlier))
    scores = pattern_attention_scores(pattern, task_meta)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert scores["task_same_category_share"].item() == pytest.approx(mean(expected_share))
    assert scores["task_chance_share"].item() == pytest.approx(mean(expected_chance))
    assert scores["task_same_category_attention"].item() == pytest.approx(mean(expected_same))
    assert scores["task_earlier_line_attention"].item() == pytest.approx(0.5)


def test_attention_to_the_wrong_category_scores_zero_and_heads_are_batched(task_meta):
    n = len(task_meta.tokens)
    good = torch.zeros(n, n)
    bad = torch.zeros(n, n)
    good[:, 0] = bad[:, 0] = 1.0
    for i in _scored(task_meta):
        colon = task_meta.colon_positions[i]
        right = max(k for k in range(i) if task_meta.categories[k] == task_meta.categories[i])
        wrong = [k for k in range(i) if task_meta.categories[k] != task_meta.categories[i]]
        good[colon] = 0
        good[colon, task_meta.label_positions[right]] = 1.0
        if wrong:
            bad[colon] = 0
            bad[colon, task_meta.label_positions[wrong[-1]]] = 1.0
    scores = pattern_attention_scores(torch.stack([good, bad]), task_meta)
    share = scores["task_same_category_share"]
    assert share.shape == (2,)
    assert share[0].item() == pytest.approx(1.0)
    assert share[1].item() == pytest.approx(0.0)
    assert scores["task_chance_share"][0] == scores["task_chance_share"][1]


def test_attention_only_on_bos_has_no_share(task_meta):
    n = len(task_meta.tokens)
    pattern = torch.zeros(n, n)
    pattern[:, 0] = 1.0
    scores = pattern_attention_scores(pattern, task_meta)
    assert scores["task_same_category_attention"].item() == 0.0
    assert math.isnan(scores["task_same_category_share"].item())


def test_a_prefix_pattern_scores_only_its_colons(task_meta):
    cut = int(task_meta.colon_positions[5]) + 1
    pattern = _uniform_causal(cut)
    scores = pattern_attention_scores(pattern, task_meta)
    assert torch.isfinite(scores["task_chance_share"]).all()


def test_no_colon_with_an_earlier_same_category_line_gives_nan():
    task = pattern_matching_task(1, seed=0)
    meta = tokenize_task(task, word_tokenizer([task.text]), bos=0)
    scores = pattern_attention_scores(_uniform_causal(len(meta.tokens)), meta)
    assert all(math.isnan(v.item()) for v in scores.values())


def test_pattern_attention_scores_bad_input(task_meta):
    n = len(task_meta.tokens)
    with pytest.raises(EvalError, match="square"):
        pattern_attention_scores(torch.zeros(3, n, n + 1), task_meta)
    with pytest.raises(EvalError, match="covers"):
        pattern_attention_scores(torch.zeros(n + 5, n + 5), task_meta)
    with pytest.raises(EvalError):
        pattern_attention_scores(torch.zeros(n), task_meta)


def test_induction_mask_known_answer():
    tokens = torch.tensor([0, 5, 6, 7, 5, 6, 7])
    mask = induction_mask(tokens)
    expected = torch.zeros(7, 7, dtype=torch.float64)
    expected[4, 2] = 1  # the second 5 should look at the 6 after the first 5
    expected[5, 3] = 1
    expected[6, 4] = 1  # the second 7: position 4 followed the first 7
    assert torch.equal(mask, expected)


# --------------------------------------------------------------------------- on a model
@pytest.fixture
def model():
    from induction_lens.models import build_model

    return build_model(tiny_spec(n_ctx=40, d_vocab=60), seed=1)


def _reference_direct_effect(model, tokens, layer, head):
    """The head's direct effect on each next-token logit, from TransformerLens's hook_result."""
    model.set_use_attn_result(True)
    try:
        _, cache = model.run_with_cache(tokens[None])
    finally:
        model.set_use_attn_result(False)
    result = cache[f"blocks.{layer}.attn.hook_result"][0, :, head].double()  # [pos, d_model]
    result = result - result.mean(-1, keepdim=True)
    result = result / cache["ln_final.hook_scale"][0].double() * model.ln_final.w.double()
    w_u = model.W_U.double()
    directions = w_u[:, tokens[1:]] - w_u.mean(1, keepdim=True)
    return (result[:-1] * directions.T).sum(-1), cache[f"blocks.{layer}.attn.hook_pattern"][0, head]


@pytest.mark.parametrize("layer,head", [(0, 1), (1, 3)])
def test_attribution_rows_sum_to_the_heads_direct_effect(model, layer, head):
    tokens = torch.tensor([0] + [3, 9, 4, 12, 7, 3, 9, 4, 12, 7] * 2)
    pattern, attribution, loss = head_attribution(model, tokens, layer=layer, head=head)
    reference, ref_pattern = _reference_direct_effect(model, tokens, layer, head)
    assert torch.allclose(pattern, ref_pattern.double(), atol=1e-6)
    assert torch.allclose(attribution[:-1].nansum(-1), reference, atol=1e-5)
    assert torch.isnan(attribution[-1]).all() and torch.isnan(loss[-1])
    # The attribution is zero wherever the head does not attend (causal mask).
    assert (attribution[:-1].triu(1).abs() < 1e-12).all()
    logits = model(tokens[None])[0].double()
    expected = -torch.log_softmax(logits, -1)[:-1].gather(-1, tokens[1:, None])[:, 0]
    assert torch.allclose(loss[:-1], expected, atol=1e-5)


def test_literal_copying_frame(model):
    tokens = torch.tensor([0, 5, 6, 7, 5, 6, 7, 8])
    frame = literal_copying(model, tokens, layer=1, head=0,
                            token_strings=[str(t) for t in tokens.tolist()])
    assert len(frame) == 7
    assert frame["repeated"].tolist() == [False, False, False, False, True, True, False]
    assert frame["seen"].tolist() == [False, False, False, False, True, True, True]
    assert frame["token"].tolist() == ["0", "5", "6", "7", "5", "6", "7"]
    assert frame["induction_attention"].between(0, 1).all()
    assert (frame.loc[~frame["seen"], "induction_attention"] == 0).all()
    summary = copying_summary(frame)
    assert set(summary) == set(COPYING_METRICS)
    assert summary["induction_attention_first"] == pytest.approx(
        frame.loc[~frame["repeated"], "induction_attention"].mean())


def test_head_attribution_bad_input(model):
    tokens = torch.tensor([0, 1, 2, 3])
    with pytest.raises(EvalError, match="layer"):
        head_attribution(model, tokens, layer=5, head=0)
    with pytest.raises(EvalError, match="head"):
        head_attribution(model, tokens, layer=0, head=-1)
    with pytest.raises(EvalError, match="one sequence"):
        head_attribution(model, torch.zeros(2, 5, dtype=torch.long), layer=0, head=0)
    with pytest.raises(EvalError, match="vocabulary"):
        head_attribution(model, torch.tensor([0, 999]), layer=0, head=0)
    with pytest.raises(EvalError, match="token_strings"):
        literal_copying(model, tokens, layer=0, head=0, token_strings=["a"])


def test_copying_summary_needs_the_frame():
    with pytest.raises(EvalError, match="literal_copying"):
        copying_summary(pd.DataFrame({"x": [1]}))


# --------------------------------------------------------------------------- fuzzy copying
def test_fuzzy_copying_matches_spellings_not_tokens(model):
    # 5/15, 6/16 and 7/17 are two spellings of the same three words; the repeat uses the
    # other spelling of every word, so no token pair repeats.
    tokens = torch.tensor([0, 5, 6, 7, 15, 16, 17, 8])
    strings = ["<|bos|>", " ab", " cd", " ef", " Ab", " Cd", " Ef", " gh"]
    frame = fuzzy_copying(model, tokens, layer=1, head=2, token_strings=strings)
    pattern, attribution, loss = head_attribution(model, tokens, layer=1, head=2)
    assert frame["repeated"].tolist() == [False, False, False, False, True, True, False]
    assert not frame["exact_repeated"].any()
    assert frame["seen"].tolist() == [False] * 4 + [True] * 3
    # By hand: " Ab" (4) should look at " cd" (2), the token after the earlier " ab";
    # " Cd" (5) at " ef" (3); " Ef" (6) at " Ab" (4).
    expected = {4: 2, 5: 3, 6: 4}
    for i in range(7):
        want = float(pattern[i, expected[i]]) if i in expected else 0.0
        assert frame.loc[i, "induction_attention"] == pytest.approx(want, abs=1e-9)
        assert frame.loc[i, "logit_attribution"] == pytest.approx(
            float(attribution[i].nansum()), abs=1e-9)
        assert frame.loc[i, "loss"] == pytest.approx(float(loss[i]), abs=1e-9)
    # The literal view of the same text sees no repeat at all.
    literal = literal_copying(model, tokens, layer=1, head=2)
    assert not literal["repeated"].any() and (literal["induction_attention"] == 0).all()


def test_literal_copying_with_classes_and_exact_repeats(model):
    tokens = torch.tensor([0, 5, 6, 5, 6, 9])
    frame = literal_copying(model, tokens, layer=0, head=0,
                            classes=torch.tensor([0, 1, 2, 1, 2, 2]))
    assert frame["repeated"].tolist() == [False, False, False, True, False]
    assert frame["exact_repeated"].tolist() == [False, False, False, True, False]
    # Position 4: (class 2, class 2) never occurred before (9 is of class 2, like 6).
    with pytest.raises(EvalError, match="classes"):
        literal_copying(model, tokens, layer=0, head=0, classes=torch.tensor([0, 1]))


def test_pattern_task_scores_on_a_model(model):
    tasks = []
    for seed in range(3):
        task = pattern_matching_task(12, seed=seed, shuffle_labels=True)
        # Every task word, ":" and the labels: at most 52 ids, inside the model's 60.
        tok = word_tokenizer([pattern_matching_task(300, seed=99).text, task.text])
        tasks.append(tokenize_task(task, tok, bos=0, max_tokens=40))
    frame = pattern_task_scores(model, tasks)
    heads = frame[frame["layer"].notna()]
    assert set(heads["metric"]) == set(TASK_METRICS)
    assert len(heads) == len(TASK_METRICS) * 2 * 4
    share = heads[heads["metric"] == "task_same_category_share"]["value"]
    assert share.between(0, 1).all()
    model_rows = frame[frame["layer"].isna()].set_index("metric")["value"]
    assert {"task_label_loss_seen", "task_label_loss_unseen",
            "task_label_accuracy_seen"} <= set(model_rows.index)
    assert model_rows["task_label_loss_seen"] > 0


def test_pattern_task_scores_bad_input(model):
    with pytest.raises(EvalError, match="at least one"):
        pattern_task_scores(model, [])
    task = pattern_matching_task(20, seed=0)
    meta = tokenize_task(task, word_tokenizer([task.text]), bos=0)
    with pytest.raises(EvalError, match="max_tokens"):
        pattern_task_scores(model, [meta])


def _scores(rows):
    return pd.DataFrame([{"layer": layer, "head": h, "metric": m, "value": v}
                         for layer, h, m, v in rows])


def test_strongest_induction_head_prefers_copying_prefix_matchers():
    scores = _scores([
        (0, 0, "prefix_matching", 0.05), (0, 0, "copying", 0.2),
        (1, 0, "prefix_matching", 0.9), (1, 0, "copying", -0.9),  # anti-copying: not induction
        (1, 1, "prefix_matching", 0.7), (1, 1, "copying", 0.1),
        (1, 2, "prefix_matching", 0.4), (1, 2, "copying", 0.3),
    ])
    assert strongest_induction_head(scores) == (1, 1)
    fallback = _scores([(0, 0, "prefix_matching", 0.05), (0, 1, "prefix_matching", 0.2)])
    assert strongest_induction_head(fallback) == (0, 1)
    with pytest.raises(EvalError, match="prefix_matching"):
        strongest_induction_head(_scores([(0, 0, "copying", 0.1)]))
    several = _scores([(0, 0, "prefix_matching", 0.5)]).assign(step=[1])
    several = pd.concat([several, several.assign(step=[2])])
    with pytest.raises(EvalError, match="several"):
        strongest_induction_head(several)


# --------------------------------------------------------------------------- shipped checkpoint
@pytest.fixture(scope="module")
def shipped():
    from induction_lens.fixtures import FIXTURE_RUN, fixture_hub

    hub = fixture_hub()
    return hub, FIXTURE_RUN, hub.load_model(FIXTURE_RUN, device="cpu")


def test_shipped_checkpoint_loads_offline_and_is_verified(shipped, monkeypatch):
    import socket

    from induction_lens.fixtures import FIXTURE_RUN, load_fixture

    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub, run, _ = shipped
    model = load_fixture()
    checked = hub.verify(run)  # raises unless every file matches its recorded sha256
    assert {"run.json", "tokenizer.json", hub.manifest(run)[-1].weights} <= set(checked)
    assert model.tokenizer is not None and model.cfg.d_vocab == hub.config(run).model.d_vocab
    assert run == FIXTURE_RUN
    files = [p for p in hub.run_dir(run).rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 1_100_000  # a small fixture


def test_shipped_checkpoint_is_an_induction_model(shipped):
    from induction_lens.analysis.heads import classify_heads
    from induction_lens.data import evaluator_token_pool
    from induction_lens.measures.heads import head_scores

    hub, run, model = shipped
    torch.manual_seed(0)
    pool = evaluator_token_pool(hub.token_frequencies(run), model.cfg.d_vocab)
    scores = head_scores(model, metrics=("prefix_matching", "copying"), token_pool=pool,
                         n_examples=4)
    types = classify_heads(scores)
    assert (types["head_type"] == "induction").sum() >= 1
    layer, head = strongest_induction_head(scores)
    best = types[(types["layer"] == layer) & (types["head"] == head)].iloc[0]
    assert best["head_type"] == "induction" and best["prefix_matching"] >= 0.5


def test_shipped_checkpoint_copies_literally_and_fuzzily(shipped):
    from induction_lens.data import evaluator_token_pool
    from induction_lens.data.tasks import fuzzy_passage, repeated_passage
    from induction_lens.measures.heads import head_scores

    hub, run, model = shipped
    tok = hub.tokenizer(run)

    pool = evaluator_token_pool(hub.token_frequencies(run), model.cfg.d_vocab)
    layer, head = strongest_induction_head(head_scores(
        model, metrics=("prefix_matching", "copying"), token_pool=pool, n_examples=4))
    for text, measure in ((repeated_passage(40, seed=123), literal_copying),
                          (fuzzy_passage(40, seed=123), fuzzy_copying)):
        ids = [0] + tok.encode(text).ids
        strings = [tok.decode([i]) for i in ids]
        frame = measure(model, torch.tensor(ids), layer=layer, head=head, token_strings=strings)
        summary = copying_summary(frame[~frame["exact_repeated"]] if measure is fuzzy_copying
                                  else frame)
        assert summary["induction_attention_repeated"] >= 0.3
        assert summary["loss_repeated"] < summary["loss_first"]
        assert summary["logit_attribution_repeated"] > max(0.0,
                                                           summary["logit_attribution_first"])
