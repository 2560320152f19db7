"""Synthetic in-context tasks written as text with token-level metadata (Argument 4).

The paper's Argument 4 ("Behavior 3: Pattern matching") shows a head of a 40-layer model on
synthetic lines that follow one of four templates, each followed by the label of its template::

    (month) (animal): 0
    (month) (fruit): 1
    (color) (animal): 2
    (color) (fruit): 3

and measures how much attention the ":" tokens pay to earlier lines of the same template ("it
allocates about 65% of its attention from the colons to the correct positions").
:func:`pattern_matching_task` writes such a text, :func:`tokenize_task` maps it onto the tokens
of any tokenizer (through character offsets, so GPT-2's, a BPE trained here, or any fast
tokenizer give the same metadata), and
:func:`induction_lens.measures.generality.pattern_attention_scores` is the metric.

**Labels.** The paper's example uses the fixed labels 0-3 above. A model trained on many such
texts with fixed labels can learn the label of each template *in its weights* and never look
at the context; with ``shuffle_labels=True`` every text draws its own assignment of the labels
to the templates, so a label can only be predicted from earlier lines of the same template
(in-context learning, which is what the task is meant to probe). The default is the paper's
fixed assignment for analysis; training mixtures should shuffle.

:func:`copying_text` writes the literal-copying counterpart: random words in which spans of
earlier words repeat (the text analogue of the embedded synthetic corpus), and
:func:`repeated_passage` a passage followed by its own repeat (the paper's "first paragraph of
Harry Potter, repeated"; we generate our own words instead of copying a book).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from induction_lens.config import ConfigError

__all__ = [
    "ANIMALS",
    "CATEGORIES",
    "COLOURS",
    "FRUITS",
    "MONTHS",
    "PAPER_LABELS",
    "PatternLine",
    "PatternTask",
    "TaskError",
    "TaskTokens",
    "VARIANT_WORDS",
    "copying_text",
    "fuzzy_passage",
    "pattern_matching_documents",
    "pattern_matching_task",
    "repeated_passage",
    "tokenize_task",
    "variant",
    "word_classes",
]

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
ANIMALS = ("cat", "dog", "bird", "fish", "frog", "lion", "bear", "wolf", "snake", "lizard",
           "horse", "mouse")
COLOURS = ("red", "blue", "green", "yellow", "purple", "gray", "black", "white", "pink",
           "brown")
"""No "orange": it would be a colour and a fruit."""
FRUITS = ("apple", "banana", "cherry", "grape", "pineapple", "strawberry", "lemon", "mango",
          "peach", "pear", "plum")

Category = Literal["month-animal", "month-fruit", "colour-animal", "colour-fruit"]
CATEGORIES: tuple[str, ...] = get_args(Category)
"""The four templates, in the order of the paper's labels 0-3."""

_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "month-animal": (MONTHS, ANIMALS),
    "month-fruit": (MONTHS, FRUITS),
    "colour-animal": (COLOURS, ANIMALS),
    "colour-fruit": (COLOURS, FRUITS),
}

PAPER_LABELS: dict[str, str] = {c: str(i) for i, c in enumerate(CATEGORIES)}
"""The paper's labels: month-animal 0, month-fruit 1, colour-animal 2, colour-fruit 3."""


class TaskError(ConfigError):
    """Bad input to a task generator; the message names the argument and the fix."""


@dataclass(frozen=True)
class PatternLine:
    """One line ``"{first} {second}: {label}\\n"`` of a pattern-matching text (offsets in
    characters)."""

    index: int
    """Line number in the text, from 0."""
    category: str
    """Its template, one of :data:`CATEGORIES`."""
    words: tuple[str, str]
    label: str
    start: int
    """Offset of the line's first character."""
    end: int
    """Offset just past the line (its newline included)."""
    colon: int
    """Offset of the ":" character."""
    label_start: int
    """Offset of the label's first character."""


@dataclass(frozen=True)
class PatternTask:
    """A pattern-matching text and where everything is in it (character offsets)."""

    text: str
    lines: tuple[PatternLine, ...]
    labels: dict[str, str]
    """The label of each template in this text."""
    seed: int


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def pattern_matching_task(n_lines: int = 30, *, seed: int | np.random.Generator = 0,
                          shuffle_labels: bool = False,
                          labels: Sequence[str] = ("0", "1", "2", "3")) -> PatternTask:
    """A text of ``n_lines`` lines of the paper's month/animal/colour/fruit task.

    Each line picks a template uniformly at random and fills it with random words, then writes
    ``": "`` and the template's label.

    Args:
        n_lines: number of lines (at least 1).
        seed: a seed or a ``numpy`` generator (the text is a pure function of the seed).
        shuffle_labels: draw a random assignment of ``labels`` to the templates for this text
            (see the module docstring) instead of the paper's fixed one.
        labels: the four label strings, in the order of :data:`CATEGORIES`.

    Returns:
        A :class:`PatternTask` with the text and the character offsets of every line.
    """
    if not isinstance(n_lines, int) or n_lines < 1:
        raise TaskError(f"n_lines={n_lines!r} must be a positive integer")
    labels = tuple(str(label) for label in labels)
    if len(labels) != len(CATEGORIES) or len(set(labels)) != len(labels):
        raise TaskError(f"labels={labels!r} must be {len(CATEGORIES)} distinct strings")
    if any(not label or any(c.isspace() or c == ":" for c in label) for label in labels):
        raise TaskError(f"labels={labels!r} must be non-empty and hold no space or ':'")
    rng = _rng(seed)
    order = rng.permutation(len(labels)) if shuffle_labels else np.arange(len(labels))
    assignment = {c: labels[int(i)] for c, i in zip(CATEGORIES, order, strict=True)}
    parts: list[str] = []
    lines: list[PatternLine] = []
    at = 0
    for index in range(n_lines):
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        first_words, second_words = _WORDS[category]
        words = (first_words[int(rng.integers(len(first_words)))],
                 second_words[int(rng.integers(len(second_words)))])
        head = f"{words[0]} {words[1]}"
        line = f"{head}: {assignment[category]}\n"
        lines.append(PatternLine(index=index, category=category, words=words,
                                 label=assignment[category], start=at, end=at + len(line),
                                 colon=at + len(head), label_start=at + len(head) + 2))
        parts.append(line)
        at += len(line)
    seed_value = seed if isinstance(seed, int) else -1
    return PatternTask(text="".join(parts), lines=tuple(lines), labels=assignment,
                       seed=seed_value)


def pattern_matching_documents(n_documents: int, *, n_lines: int = 20, seed: int = 0,
                               shuffle_labels: bool = True) -> list[str]:
    """``n_documents`` texts of :func:`pattern_matching_task` (for a training corpus).

    Document ``i`` is a pure function of ``(seed, i)``. Labels are shuffled per document by
    default, so the task can only be solved in context (module docstring).
    """
    if not isinstance(n_documents, int) or n_documents < 1:
        raise TaskError(f"n_documents={n_documents!r} must be a positive integer")
    return [pattern_matching_task(n_lines, seed=np.random.default_rng([seed, i]),
                                  shuffle_labels=shuffle_labels).text
            for i in range(n_documents)]


def copying_text(n_words: int = 200, *, seed: int | np.random.Generator = 0,
                 vocabulary: Sequence[str] | None = None, min_segment: int = 4,
                 max_segment: int = 12, copy_prob: float = 0.5,
                 variant_prob: float = 0.0) -> str:
    """Random words in which spans of earlier words repeat: literal copying, as text.

    The text analogue of :class:`~induction_lens.data.SyntheticCorpus`: segments of
    ``min_segment``-``max_segment`` words, each a copy of an earlier span with probability
    ``copy_prob``, else fresh words drawn uniformly from ``vocabulary`` (default: the words of
    the pattern-matching task plus a few hundred made-up ones, see :func:`_default_words`).

    With ``variant_prob > 0`` every written word that has a spelling variant (one of
    :data:`VARIANT_WORDS`, see :func:`variant`) is written, independently of its earlier
    occurrences, as that variant with probability ``variant_prob``: a copied span then repeats
    the *words* of the earlier span but not always the same *tokens*. With 0.5 the two forms of
    a word are used interchangeably, which is what gives a model a reason to treat them alike
    (the "fuzzy" copying of Argument 4, ``[A*] [B*] ... [A] -> [B]``).
    """
    if not isinstance(n_words, int) or n_words < 1:
        raise TaskError(f"n_words={n_words!r} must be a positive integer")
    if not 1 <= min_segment <= max_segment:
        raise TaskError(f"min_segment={min_segment} and max_segment={max_segment} must satisfy "
                        "1 <= min_segment <= max_segment")
    if not 0 <= copy_prob <= 1:
        raise TaskError(f"copy_prob={copy_prob} must be in [0, 1]")
    if not 0 <= variant_prob <= 1:
        raise TaskError(f"variant_prob={variant_prob} must be in [0, 1]")
    words = tuple(vocabulary) if vocabulary is not None else _default_words()
    if len(words) < 2:
        raise TaskError("vocabulary needs at least two words")
    rng = _rng(seed)
    out: list[str] = []
    while len(out) < n_words:
        length = min(int(rng.integers(min_segment, max_segment + 1)), n_words - len(out))
        if rng.random() < copy_prob and len(out) >= length:
            start = int(rng.integers(0, len(out) - length + 1))
            out.extend(out[start:start + length])
        else:
            out.extend(words[int(i)] for i in rng.integers(len(words), size=length))
    if variant_prob > 0:
        flips = rng.random(len(out)) < variant_prob
        variants = set(VARIANT_WORDS)
        out = [variant(w) if flip and w in variants else w
               for w, flip in zip(out, flips, strict=True)]
    return " ".join(out)


def repeated_passage(n_words: int = 40, *, repeats: int = 2, seed: int | np.random.Generator = 0,
                     vocabulary: Sequence[str] | None = None) -> str:
    """A passage of ``n_words`` random words followed by ``repeats - 1`` copies of itself.

    The literal-copying probe of Argument 4, "Behavior 1": on the repeats an induction head
    attends to the word after the previous occurrence of the current word and raises its logit.
    """
    if not isinstance(repeats, int) or repeats < 2:
        raise TaskError(f"repeats={repeats!r} must be at least 2 (the passage and a repeat)")
    passage = copying_text(n_words, seed=seed, vocabulary=vocabulary, copy_prob=0.0)
    return "\n".join([passage] * repeats) + "\n"


def variant(word: str) -> str:
    """The spelling variant of a word: its first letter in the other case (``"ab"`` <->
    ``"Ab"``); a byte-level BPE trained on text using both learns them as separate tokens."""
    if not word or not word[0].isalpha():
        raise TaskError(f"variant({word!r}): the word must start with a letter")
    first = word[0].upper() if word[0].islower() else word[0].lower()
    return first + word[1:]


def fuzzy_passage(n_words: int = 40, *, seed: int | np.random.Generator = 0) -> str:
    """A passage of ``n_words`` random words of :data:`VARIANT_WORDS`, then the same words with
    every one written as its :func:`variant`: the fuzzy probe ``[A*] [B*] ... [A] -> [B]``.

    No token of the repeat occurred in the passage (every word changed case), so a head that
    only matches identical tokens finds nothing to copy; a head that treats a word's two
    spellings alike attends from ``A`` to the token after ``A*`` and raises ``B`` there.
    """
    if not isinstance(n_words, int) or n_words < 2:
        raise TaskError(f"n_words={n_words!r} must be an integer >= 2")
    passage = copying_text(n_words, seed=seed, vocabulary=VARIANT_WORDS, copy_prob=0.0)
    return passage + "\n" + " ".join(variant(w) for w in passage.split(" ")) + "\n"


def word_classes(token_strings: Sequence[str]) -> Int[Tensor, " pos"]:
    """One id per token for the word it spells, case of the first letter ignored (``" Ab"``
    and ``" ab"`` share an id; whitespace around a token is ignored); ids count from 0 in
    order of first appearance. The equivalence :func:`fuzzy_passage` is scored under."""
    ids: dict[str, int] = {}
    out = []
    for s in token_strings:
        key = s.strip()
        key = key[:1].lower() + key[1:]
        out.append(ids.setdefault(key, len(ids)))
    return torch.tensor(out, dtype=torch.long)


_LETTERS = "abcdefghijklmnopqrstuvwxyz"
N_MADE_UP_WORDS = 384
"""How many made-up two-letter words :func:`copying_text` uses by default."""


def _default_words() -> tuple[str, ...]:
    """The task's words plus :data:`N_MADE_UP_WORDS` made-up two-letter words (fixed).

    Two letters, so that a byte-level BPE of ~1000 tokens learns every one of them as a single
    token (with a space: " xy"): literal copying then works on hundreds of distinct tokens,
    like the synthetic corpus, instead of on a few recurring word pieces that make every
    earlier copy of a token ambiguous.
    """
    pairs = [a + b for a in _LETTERS for b in _LETTERS]
    order = np.random.default_rng(0).permutation(len(pairs))[:N_MADE_UP_WORDS]
    made_up = tuple(pairs[int(i)] for i in sorted(order))
    return tuple(w.lower() for w in MONTHS) + ANIMALS + COLOURS + FRUITS + made_up


N_VARIANT_WORDS = 128
"""How many of the made-up words have a spelling variant (:data:`VARIANT_WORDS`)."""
VARIANT_WORDS: tuple[str, ...] = _default_words()[-N_MADE_UP_WORDS:][:N_VARIANT_WORDS]
"""The made-up words whose capitalised :func:`variant` the fuzzy texts use: the first
:data:`N_VARIANT_WORDS` of them, few enough that both spellings of each fit, as one token each,
in a 1024-token BPE next to the other words (our choice)."""


# --------------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class TaskTokens:
    """A pattern-matching text as tokens, with where every line, colon and label is.

    Position 0 is the BOS token when ``bos`` was given to :func:`tokenize_task`.
    """

    tokens: Int[Tensor, " pos"]
    line_of: Int[Tensor, " pos"]
    """The line each token belongs to (-1: BOS or no line)."""
    colon_positions: Int[Tensor, " n_lines"]
    """Token position of each line's ":" token."""
    label_positions: Int[Tensor, " n_lines"]
    """Token position of each line's label token (its first token, if it has several)."""
    categories: tuple[str, ...]
    """Each line's template."""
    task: PatternTask = field(repr=False)

    @property
    def n_lines(self) -> int:
        return len(self.categories)

    def category_ids(self) -> Int[Tensor, " n_lines"]:
        """Each line's template as an index into :data:`CATEGORIES`."""
        return torch.tensor([CATEGORIES.index(c) for c in self.categories], dtype=torch.long)


def _offsets(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character spans of ``text`` (no special tokens added)."""
    if hasattr(tokenizer, "get_vocab_size") and hasattr(tokenizer, "encode"):
        enc = tokenizer.encode(text, add_special_tokens=False)  # tokenizers.Tokenizer
        return list(enc.ids), [tuple(o) for o in enc.offsets]
    if callable(tokenizer):  # a transformers fast tokenizer
        try:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        except NotImplementedError:
            raise TaskError("tokenize_task needs a fast tokenizer (character offsets); "
                            "load it with use_fast=True") from None
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    raise TaskError(f"tokenizer must be a tokenizers.Tokenizer or a transformers fast "
                    f"tokenizer, got {type(tokenizer).__name__}")


def tokenize_task(task: PatternTask, tokenizer, *, bos: int | None = None,
                  max_tokens: int | None = None) -> TaskTokens:
    """Map a :class:`PatternTask` onto a tokenizer's tokens through character offsets.

    A token belongs to the line containing its first non-space character (GPT-2-style tokens
    carry their leading space: " bird" belongs to the line of "bird"); a token of whitespace
    only (a line's newline) belongs to the line of its first character. The ":" token of a line
    is the token whose span contains the colon; its label token is the first token that
    covers the label's first character.

    Args:
        task: the text and its lines.
        tokenizer: a ``tokenizers.Tokenizer`` (the hub's) or a transformers fast tokenizer
            (``model.tokenizer`` of a pretrained TransformerLens model).
        bos: a token id to put at position 0 (our models: 0; GPT-2: 50256), or None.
        max_tokens: keep only the lines whose tokens all fit in this many positions (BOS
            included), e.g. the model's context; at least one line must fit.

    Raises:
        TaskError: the tokenizer gives no offsets, or merges a colon with a word so that a
            line has no ":" token of its own.
    """
    ids, spans = _offsets(tokenizer, task.text)
    text = task.text
    shift = 0 if bos is None else 1
    starts = []
    for a, b in spans:
        first = a
        while first < b and text[first].isspace():
            first += 1
        starts.append(first if first < b else a)
    line_at = np.full(len(text) + 1, -1, dtype=np.int64)
    for line in task.lines:
        line_at[line.start:line.end] = line.index
    line_of = [int(line_at[s]) if s < len(text) else -1 for s in starts]
    colon_pos, label_pos = [], []
    for line in task.lines:
        colon = [i for i, (a, b) in enumerate(spans) if a <= line.colon < b]
        label = [i for i, (a, b) in enumerate(spans) if a <= line.label_start < b]
        if not colon or not label:
            raise TaskError(f"line {line.index} has no token covering its ':' or label; the "
                            "tokenizer's offsets do not match the text")
        if colon[0] == label[0]:
            raise TaskError(f"the tokenizer merges the ':' and the label of line {line.index} "
                            "into one token; the task needs them apart")
        colon_pos.append(colon[0] + shift)
        label_pos.append(label[0] + shift)
    n_keep = len(task.lines)
    if max_tokens is not None:
        if max_tokens < 2:
            raise TaskError(f"max_tokens={max_tokens} must be at least 2")
        last_token = [max(i for i, li in enumerate(line_of) if li == line.index) + shift
                      for line in task.lines]
        n_keep = sum(1 for t in last_token if t < max_tokens)
        if n_keep == 0:
            raise TaskError(f"not even the first line fits in max_tokens={max_tokens}")
        cut = last_token[n_keep - 1] + 1 - shift
        ids, line_of = ids[:cut], line_of[:cut]
    tokens = ([bos] if bos is not None else []) + ids
    line_of = ([-1] if bos is not None else []) + line_of
    return TaskTokens(tokens=torch.tensor(tokens, dtype=torch.long),
                      line_of=torch.tensor(line_of, dtype=torch.long),
                      colon_positions=torch.tensor(colon_pos[:n_keep], dtype=torch.long),
                      label_positions=torch.tensor(label_pos[:n_keep], dtype=torch.long),
                      categories=tuple(line.category for line in task.lines[:n_keep]),
                      task=task)
