"""Argument 4 (specific examples of generality): induction heads copy literal text, and heads of
the same kind match abstract patterns, on a model trained here and on any pretrained model.

Olsson et al. 2022, Argument 4 ("Specific examples of induction head generality"): heads that
are induction heads by the strict definition (prefix matching and copying on repeated random
tokens) also do "Behavior 1: Literal sequence copying" (on a text and its repeat, the head
attends to the token after the previous occurrence of the current token and its direct-path
"logit attribution" raises the token that comes next) and "Behavior 3: Pattern matching" (on
lines ``(month|colour) (animal|fruit): label``, a head "allocates about 65% of its attention
from the colons to the correct positions", the earlier lines of the same template). The paper
shows heads of a 40-layer model; the measures are
:mod:`induction_lens.measures.generality` and the texts :mod:`induction_lens.data.tasks`.

The paper's thesis is that these heads do a "'fuzzy' or 'nearest neighbor' version of pattern
completion, completing [A*] [B*] ... [A] -> [B], where A* ≈ A and B* ≈ B are similar in some
space". Literal copying is the case A* = A; we add the case a small model can show: A* and A are
two spellings of one word (first letter in either case, separate BPE tokens) in a corpus that
uses them interchangeably (:func:`~induction_lens.measures.generality.fuzzy_copying`).

What runs:

* **Offline, always: a model trained here on a mixture that contains the tasks.** The example
  writes a JSON-lines file of documents into the hub's data cache (``HUB/.cache/examples/``; a
  pure function of the constants below, so it is rewritten identically when missing): three
  kinds, interleaved, 6000 of each (:func:`mixture_documents`): pattern-matching texts of 20
  lines (labels shuffled per document, so that a label can only be known from earlier lines of
  its template, i.e. in context), literal copying texts (120 random words in which spans of
  6-16 earlier words repeat with probability 0.9, like the embedded synthetic corpus, which
  forms induction heads fast) and fuzzy copying texts (the same over the 128 words of
  :data:`~induction_lens.data.tasks.VARIANT_WORDS`, each written as either spelling with
  probability 0.5). The run trains on it as ``--data files:THAT_FILE`` with a byte-level BPE
  trained on the same documents, i.e. through the library's ordinary natural-text path
  (:class:`~induction_lens.data.text.TextCorpus`). Model: the ``smeared-2l`` preset (our
  choice: on this mixture it has three induction heads by step 400, prefix matching 0.80,
  while ``attn-only-2l`` had none at step 700) with a 1024-token vocabulary (every word of the
  texts, both spellings included, is one token), 1500 steps (default; ``--full``:
  ``attn-only-2l`` as well, 3000 steps, not measured). The analysis texts are drawn from seeds
  the training documents never use. Measured on 2 shared CPU cores: literal and fuzzy copying
  PASS; the two pattern-matching claims FAIL at this budget (no head and no prediction uses
  the template: label accuracy about chance, see the docs for the numbers).
* **The shipped checkpoint** (``--fixture``, instead of training): this example's default
  model, exported once into the package (:mod:`induction_lens.fixtures`); seconds, no network.
* **Optionally, a pretrained model**: ``--pretrained NAME`` loads any model
  ``HookedTransformer.from_pretrained`` knows (e.g. ``gpt2``; needs the HuggingFace hub, or the
  model already in the local HuggingFace cache), ``--weights DIR`` a local directory written by
  ``save_pretrained`` (transformers files: ``config.json``, the weights and the tokenizer),
  loaded without any network. Offline, ``--pretrained`` fails at once with a message saying so.
  Never the default.

Per model, the head is chosen by the strict definition: the induction head (prefix matching
>= 0.3 and copying >= -0.5, :func:`~induction_lens.analysis.heads.classify_heads`) with the highest
prefix-matching score on repeated random tokens
(:func:`~induction_lens.analysis.generality.strongest_induction_head`). Claims (thresholds are
ours; the paper shows examples, not thresholds):

* ``literal_copying[M]``: on repeated passages of random words
  (:func:`~induction_lens.data.tasks.repeated_passage`, 8 passages of 40 words, each followed by
  its repeat), that head pays >= 0.3 of its attention, on repeated tokens, to the tokens that
  followed earlier copies of the current token; its direct logit attribution to the correct
  next token is positive there and larger than on first occurrences; and the model's loss is
  lower on repeated tokens than on first occurrences;
* ``fuzzy_copying[M]``: the same head, test and threshold (0.3, fixed before measuring) on
  8 passages of 40 words each followed by the same words with every first letter's case
  flipped (:func:`~induction_lens.data.tasks.fuzzy_passage`; no token repeats), scored where
  no literal token pair repeats;
* ``pattern_matching_attention[M]``: on 16 pattern-matching texts (shuffled labels), some head
  that pays at least 0.2 of its colon attention to earlier lines gives >= 0.5 of that attention
  to lines of the same template (``task_same_category_share``; the paper's head: "about 65%")
  and beats the uniform-attention baseline (``task_chance_share``) by >= 0.2;
* ``pattern_task_in_context[M]``: behaviourally, the model predicts the label after the colon
  of a line whose template appeared earlier with accuracy >= 0.5 (chance: 0.25) and with a lower
  loss than on a template's first line.

The summary's ``facts.models`` says what was run (the trained run, and the pretrained model and
where it came from, or why none was run).

Run: ``python examples/arg4_generality.py [--hub hub] [--out DIR] [--full] [--tiny] [--fixture]
[--pretrained gpt2 | --weights DIR]``.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from induction_lens.analysis.generality import copying_summary, strongest_induction_head
from induction_lens.analysis.heads import classify_heads
from induction_lens.config import DataSpec
from induction_lens.constants import CACHE_DIR
from induction_lens.data import evaluator_token_pool
from induction_lens.data.tasks import (
    VARIANT_WORDS,
    copying_text,
    fuzzy_passage,
    pattern_matching_documents,
    pattern_matching_task,
    repeated_passage,
    tokenize_task,
)
from induction_lens.io import atomic_write_bytes
from induction_lens.measures.generality import (
    fuzzy_copying,
    head_attribution,
    literal_copying,
    pattern_task_scores,
)
from induction_lens.measures.heads import head_scores
from induction_lens.models import quiet_deprecation

import _common as C

NAME = "arg4_generality"
TITLE = "Argument 4: induction heads copy literal text and match abstract patterns"
PAPER = "Argument 4 (Behavior 1: literal sequence copying; Behavior 3: pattern matching)"
DEFAULT_PRESETS = ("smeared-2l",)
FULL_PRESETS = ("smeared-2l", "attn-only-2l")
DEFAULT_STEPS = 1500
FULL_STEPS = 3000
D_VOCAB = 1024
MIX_DOCUMENTS = 6000
"""Documents of each of the three kinds in the training mixture (--tiny: 200)."""
MIX_SEED = 0
TASK_LINES = 20
COPY_WORDS = 120
COPY_PROB = 0.9
COPY_SEGMENT = (6, 16)
VARIANT_PROB = 0.5
"""In the fuzzy copying documents, the chance that a word is written as its other spelling."""
EVAL_SEED = 10_000
"""Analysis texts use seeds from here on (the mixture uses 0-2 as the first seed part)."""
N_PASSAGES = 8
PASSAGE_WORDS = 40
FUZZY_ATTENTION = 0.3
"""Fuzzy claim: the same bar as literal copying's, fixed before measuring (ours)."""
N_TASKS = 16
TASK_ANALYSIS_LINES = 40
INDUCTION_ATTENTION = 0.3
SHARE_MIN = 0.5
SHARE_OVER_CHANCE = 0.2
EARLIER_MIN = 0.2
ACCURACY_MIN = 0.5


@dataclass
class Subject:
    """One model to analyse and how to turn text into its tokens."""

    key: str
    model: Any
    encode: Any
    """text -> list of token ids (no BOS)."""
    decode: Any
    """token id -> display string."""
    tokenizer: Any
    """for :func:`~induction_lens.data.tasks.tokenize_task`."""
    bos: int | None
    token_pool: np.ndarray
    source: str


# ---------------------------------------------------------------------------- the mixture
def mixture_file(ex: C.Example) -> Path:
    """Write (once) the training mixture as JSON lines under the hub's data cache; its path."""
    n = 200 if ex.tiny else MIX_DOCUMENTS
    path = ex.hub.root / CACHE_DIR / "examples" / f"arg4-mixture3-n{n}-seed{MIX_SEED}.jsonl"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    docs = [d for triple in zip(*mixture_documents(n), strict=True) for d in triple]
    atomic_write_bytes(path, "".join(json.dumps({"text": d}) + "\n" for d in docs).encode())
    return path


def mixture_documents(n: int) -> tuple[list[str], list[str], list[str]]:
    """The three kinds of training documents, ``n`` of each (a pure function of ``n``).

    Pattern-matching texts (labels shuffled per text), literal copying texts (random words,
    spans of earlier words repeated with probability 0.9, like the embedded synthetic corpus,
    which forms induction heads fast) and fuzzy copying texts (the same over the words of
    :data:`~induction_lens.data.tasks.VARIANT_WORDS`, each written as its other spelling with
    probability 0.5, so that the two spellings of a word are used interchangeably).
    """
    lo, hi = COPY_SEGMENT
    tasks = pattern_matching_documents(n, n_lines=TASK_LINES, seed=MIX_SEED, shuffle_labels=True)
    literal = [copying_text(COPY_WORDS, seed=np.random.default_rng([MIX_SEED + 1, i]),
                            copy_prob=COPY_PROB, min_segment=lo, max_segment=hi)
               for i in range(n)]
    fuzzy = [copying_text(COPY_WORDS, seed=np.random.default_rng([MIX_SEED + 2, i]),
                          copy_prob=COPY_PROB, min_segment=lo, max_segment=hi,
                          vocabulary=VARIANT_WORDS, variant_prob=VARIANT_PROB)
             for i in range(n)]
    return tasks, literal, fuzzy


def trained_subject(ex: C.Example, preset: str) -> tuple[Subject, str]:
    data = DataSpec(source="files", files=(str(mixture_file(ex)),), tokenizer="bpe")
    steps = FULL_STEPS if ex.full else DEFAULT_STEPS
    run = ex.ensure_run(preset, steps=steps, data=data, model={"d_vocab": D_VOCAB},
                        run=ex.run_name(preset, suffix="taskmix"))
    model = ex.hub.load_model(run, device=ex.args.device)
    tok = ex.hub.tokenizer(run)
    cfg = ex.hub.config(run)
    pool = evaluator_token_pool(ex.hub.token_frequencies(run), cfg.model.d_vocab)
    return Subject(key=run, model=model, encode=lambda text: tok.encode(text).ids,
                   decode=lambda i: tok.decode([int(i)]), tokenizer=tok, bos=0,
                   token_pool=pool, source=f"trained here: run {run!r} ({preset}, d_vocab "
                   f"{D_VOCAB}) on the task mixture {data.files[0]}"), run


def fixture_subject(device: str | None) -> Subject:
    """The checkpoint shipped with the package (:mod:`induction_lens.fixtures`): this example's
    default model, trained once and exported; analysed without training or network."""
    from induction_lens.fixtures import FIXTURE_RUN, fixture_hub

    hub = fixture_hub()
    model = hub.load_model(FIXTURE_RUN, device=device)
    tok = hub.tokenizer(FIXTURE_RUN)
    pool = evaluator_token_pool(hub.token_frequencies(FIXTURE_RUN),
                                hub.config(FIXTURE_RUN).model.d_vocab)
    return Subject(key="fixture", model=model, encode=lambda text: tok.encode(text).ids,
                   decode=lambda i: tok.decode([int(i)]), tokenizer=tok, bos=0,
                   token_pool=pool, source=f"the shipped checkpoint induction_lens.fixtures "
                   f"(run {FIXTURE_RUN!r}, step {hub.manifest(FIXTURE_RUN)[-1].step})")


# ---------------------------------------------------------------------------- pretrained
def load_pretrained(name: str | None, weights: str | None, device: str | None) -> Subject:
    """A pretrained ``HookedTransformer`` from the HuggingFace hub (``name``) or a local
    ``save_pretrained`` directory (``weights``)."""
    from transformer_lens import HookedTransformer

    if weights is not None:
        model, source = _load_local(Path(weights).expanduser(), device)
        key = Path(weights).name or "weights"
    else:
        from induction_lens.data.text import hub_reachable

        source = f"HookedTransformer.from_pretrained({name!r})"
        if not hub_reachable():
            # Still works when the model is in the local HuggingFace cache.
            import huggingface_hub.constants as hf_constants
            import transformers.utils.hub as tf_hub

            saved = hf_constants.HF_HUB_OFFLINE
            hf_constants.HF_HUB_OFFLINE = True
            if hasattr(tf_hub, "_is_offline_mode"):
                tf_hub._is_offline_mode = True
            try:
                model = HookedTransformer.from_pretrained(name, device=device)
            except Exception as err:
                raise C.ExampleError(
                    f"--pretrained {name}: the HuggingFace hub is unreachable from this machine "
                    f"and the model is not in the local HuggingFace cache "
                    f"({type(err).__name__}); run online, or pass --weights DIR (a directory "
                    "written by save_pretrained with the model's config, weights and tokenizer)"
                ) from None
            finally:
                hf_constants.HF_HUB_OFFLINE = saved
            source += " (from the local HuggingFace cache)"
        else:
            try:
                model = HookedTransformer.from_pretrained(name, device=device)
            except ValueError as err:
                raise C.ExampleError(f"--pretrained {name}: {str(err).splitlines()[0][:300]}"
                                     ) from None
        key = name
    tok = model.tokenizer
    if tok is None or not getattr(tok, "is_fast", False):
        raise C.ExampleError("the pretrained model needs a fast tokenizer (character offsets "
                             "for the pattern task)")
    special = set(tok.all_special_ids)
    pool_ids = np.array([i for i in range(min(model.cfg.d_vocab, len(tok))) if i not in special])
    # Drop the lowest and highest ids (BPE merges are roughly ordered by frequency): our stand-in
    # for "excluding the most common and the least common tokens" without frequencies.
    cut = len(pool_ids) // 20
    pool = pool_ids[cut:len(pool_ids) - cut]
    return Subject(key=key, model=model,
                   encode=lambda text: tok(text, add_special_tokens=False)["input_ids"],
                   decode=lambda i: tok.decode([int(i)]), tokenizer=tok,
                   bos=tok.bos_token_id, token_pool=pool, source=source)


def _load_local(path: Path, device: str | None):
    """TransformerLens model from a local ``save_pretrained`` directory, without network."""
    if not (path / "config.json").is_file():
        raise C.ExampleError(f"--weights {path}: no config.json there; pass a directory written "
                             "by save_pretrained (config, weights and tokenizer files)")
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        hf_model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        cfg = loading.get_pretrained_model_config(str(path), hf_cfg=hf_model.config.to_dict(),
                                                  fold_ln=True, device=device)
        state = loading.get_pretrained_state_dict(str(path), cfg, hf_model)
    except (OSError, ValueError, KeyError, AttributeError, NotImplementedError) as err:
        raise C.ExampleError(f"--weights {path}: could not load it as a TransformerLens model "
                             f"({type(err).__name__}: {str(err).splitlines()[0][:200]})"
                             ) from None
    with quiet_deprecation():
        model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(state, fold_ln=True, center_writing_weights=True,
                                      center_unembed=True, fold_value_biases=True)
    model.to(cfg.device)
    model.eval()
    return model, f"local weights {path} (transformers + TransformerLens, offline)"


# ---------------------------------------------------------------------------- analyses
def analyse(ex: C.Example, s: Subject, *, head_frame: pd.DataFrame | None = None) -> None:
    model = s.model
    n_ctx = model.cfg.n_ctx
    seq_len = 25 if 1 + 25 * 4 <= n_ctx else max(2, (n_ctx - 1) // 4)
    if head_frame is None:
        head_frame = head_scores(model, metrics=("prefix_matching", "copying"),
                                 token_pool=s.token_pool, seq_len=seq_len,
                                 n_examples=2 if ex.tiny else 10)
    layer, head = strongest_induction_head(head_frame)
    types = classify_heads(head_frame)
    row = types[(types["layer"] == layer) & (types["head"] == head)].iloc[0]
    is_induction = row["head_type"] == "induction"
    n_induction = int((types["head_type"] == "induction").sum())

    # Behaviour 1: literal copying on repeated passages.
    frames, first = [], None
    n_passages = 2 if ex.tiny else N_PASSAGES
    for i in range(n_passages):
        text = repeated_passage(PASSAGE_WORDS, seed=EVAL_SEED + i)
        ids = ([s.bos] if s.bos is not None else []) + list(s.encode(text))
        ids = ids[:n_ctx]
        tokens = torch.tensor(ids, dtype=torch.long)
        strings = [s.decode(t) for t in ids]
        frame = literal_copying(model, tokens, layer=layer, head=head, token_strings=strings)
        frame.insert(0, "passage", i)
        frames.append(frame)
        if first is None:
            first = (tokens, strings)
    copying = pd.concat(frames, ignore_index=True)
    summary = copying_summary(copying)
    ex.claim(f"literal_copying[{s.key}]",
             "the strongest induction head copies literal text: on a repeated passage it "
             "attends to the token after the earlier copy and raises the correct next token",
             is_induction and summary["induction_attention_repeated"] >= INDUCTION_ATTENTION
             and summary["logit_attribution_repeated"] > 0
             and summary["logit_attribution_repeated"] > summary["logit_attribution_first"]
             and summary["loss_repeated"] < summary["loss_first"],
             {"head": [layer, head], "head_is_induction": bool(is_induction),
              "prefix_matching": float(row["prefix_matching"]),
              "copying_score": float(row.get("copying", float("nan"))),
              "n_induction_heads": n_induction, **summary,
              "n_repeated_tokens": int(copying["repeated"].sum()),
              "n_first_tokens": int((~copying["repeated"]).sum())},
             criterion=f"the head is an induction head; on {n_passages} passages of "
                       f"{PASSAGE_WORDS} words and their repeat: mean induction attention on "
                       f"repeated tokens >= {INDUCTION_ATTENTION}; mean direct logit "
                       "attribution there > 0 and > on first occurrences; the model's loss "
                       "on repeated tokens < on first occurrences", paper=PAPER)
    fuzzy_claim(ex, s, layer, head, is_induction)
    tokens, strings = first
    pattern, attribution, _ = head_attribution(model, tokens, layer=layer, head=head)
    ex.figure(f"copying_attention_{s.key}",
              lambda: C.plot("attention_pattern", pattern, strings,
                             title=f"{s.key}: head {layer}.{head} on a repeated passage"),
              caption=f"{s.key}: attention of head {layer}.{head} on a passage and its repeat "
                      "(the stripe after the diagonal of the repeat is induction)")
    ex.figure(f"copying_logit_attribution_{s.key}",
              lambda: _attribution_figure(attribution, strings, f"{s.key}: head {layer}.{head}"),
              caption=f"{s.key}: direct logit attribution of head {layer}.{head} (row i, "
                      "column j: how much source j raises the logit of token i + 1)")

    # Behaviour 3: pattern matching.
    n_tasks = 2 if ex.tiny else N_TASKS
    metas = [tokenize_task(pattern_matching_task(TASK_ANALYSIS_LINES,
                                                 seed=EVAL_SEED + 100 + i, shuffle_labels=True),
                           s.tokenizer, bos=s.bos, max_tokens=n_ctx) for i in range(n_tasks)]
    scores = pattern_task_scores(model, metas)
    per_head = scores[scores["layer"].notna()].pivot_table(
        index=["layer", "head"], columns="metric", values="value").reset_index()
    eligible = per_head[per_head["task_earlier_line_attention"] >= EARLIER_MIN]
    chance = float(per_head["task_chance_share"].mean())
    if len(eligible):
        best = eligible.sort_values("task_same_category_share", ascending=False).iloc[0]
        best_share = float(best["task_same_category_share"])
        best_head = [int(best["layer"]), int(best["head"])]
        best_earlier = float(best["task_earlier_line_attention"])
    else:
        best_share, best_head, best_earlier = float("nan"), None, float("nan")
    ind = per_head[(per_head["layer"] == layer) & (per_head["head"] == head)].iloc[0]
    ex.claim(f"pattern_matching_attention[{s.key}]",
             "a head sends most of the colons' attention on earlier lines to lines of the same "
             "template (the paper's head: about 65%)",
             best_head is not None and best_share >= SHARE_MIN
             and best_share - chance >= SHARE_OVER_CHANCE,
             {"best_head": best_head, "same_category_share": best_share,
              "earlier_line_attention": best_earlier, "chance_share": chance,
              "induction_head": [layer, head],
              "induction_head_share": float(ind["task_same_category_share"]),
              "n_texts": n_tasks, "n_lines_scored_per_text": float(np.mean(
                  [m.n_lines for m in metas]))},
             criterion=f"max over heads paying >= {EARLIER_MIN} of the colons' attention to "
                       f"earlier lines of task_same_category_share >= {SHARE_MIN} and >= "
                       f"chance + {SHARE_OVER_CHANCE}", paper=PAPER)
    model_rows = scores[scores["layer"].isna()].set_index("metric")["value"]
    acc = float(model_rows["task_label_accuracy_seen"])
    seen, unseen = float(model_rows["task_label_loss_seen"]), float(model_rows[
        "task_label_loss_unseen"])
    ex.claim(f"pattern_task_in_context[{s.key}]",
             "the model predicts a line's label from earlier lines of the same template",
             acc >= ACCURACY_MIN and seen < unseen,
             {"label_accuracy_seen": acc, "label_loss_seen": seen, "label_loss_unseen": unseen},
             criterion=f"top-1 accuracy on labels of lines whose template appeared earlier >= "
                       f"{ACCURACY_MIN} (chance 0.25) and their loss < that of first lines",
             paper=PAPER)
    ex.facts[f"pattern_task_per_head[{s.key}]"] = per_head.to_dict(orient="records")
    ex.figure(f"pattern_share_{s.key}",
              lambda: _head_heatmap(per_head, "task_same_category_share",
                                    f"{s.key}: share of the colons' earlier-line attention on "
                                    f"the same template (chance {chance:.2f})"),
              caption=f"{s.key}: task_same_category_share per head on {n_tasks} texts")
    if best_head is not None:
        meta = metas[0]
        names = [f"blocks.{best_head[0]}.attn.hook_pattern"]
        _, cache = model.run_with_cache(meta.tokens[None].to(next(model.parameters()).device),
                                        names_filter=lambda n: n in names)
        pat = cache[names[0]][0, best_head[1]].cpu()
        ids = meta.tokens.tolist()
        ex.figure(f"pattern_attention_{s.key}",
                  lambda: C.plot("attention_pattern", pat, [s.decode(t) for t in ids],
                                 title=f"{s.key}: head {best_head[0]}.{best_head[1]} on the "
                                       "pattern-matching task"),
                  caption=f"{s.key}: attention of head {best_head[0]}.{best_head[1]} on one "
                          "pattern-matching text")


def fuzzy_claim(ex: C.Example, s: Subject, layer: int, head: int, is_induction: bool) -> None:
    """The fuzzy claim: the same head copies across the two spellings of a word."""
    frames = []
    n_passages = 2 if ex.tiny else N_PASSAGES
    first = None
    for i in range(n_passages):
        text = fuzzy_passage(PASSAGE_WORDS, seed=EVAL_SEED + 50 + i)
        ids = (([s.bos] if s.bos is not None else []) + list(s.encode(text)))[:s.model.cfg.n_ctx]
        tokens = torch.tensor(ids, dtype=torch.long)
        strings = [s.decode(t) for t in ids]
        frame = fuzzy_copying(s.model, tokens, layer=layer, head=head, token_strings=strings)
        frame.insert(0, "passage", i)
        frames.append(frame)
        first = first or (tokens, strings)
    rows = pd.concat(frames, ignore_index=True)
    # Only the tokens whose (word, next word) repeats in other tokens: no literal match.
    summary = copying_summary(rows[~rows["exact_repeated"]])
    ex.claim(f"fuzzy_copying[{s.key}]",
             "the strongest induction head also completes [A*] [B*] ... [A] -> [B] where A* is "
             "another spelling of A: it attends to the token after the earlier spelling and "
             "raises the next word",
             is_induction and summary["induction_attention_repeated"] >= FUZZY_ATTENTION
             and summary["logit_attribution_repeated"] > 0
             and summary["logit_attribution_repeated"] > summary["logit_attribution_first"]
             and summary["loss_repeated"] < summary["loss_first"],
             {"head": [layer, head], "head_is_induction": bool(is_induction), **summary,
              "n_repeated_tokens": int((rows["repeated"] & ~rows["exact_repeated"]).sum()),
              "n_first_tokens": int((~rows["repeated"]).sum())},
             criterion=f"the head is an induction head; on {n_passages} passages of "
                       f"{PASSAGE_WORDS} words followed by the same words with every first "
                       "letter's case flipped (no token repeats): mean attention, on repeated "
                       "words, to the tokens after earlier spellings of the current word >= "
                       f"{FUZZY_ATTENTION}; mean direct logit attribution to the next token "
                       "there > 0 and > on first occurrences; the model's loss on repeated "
                       "words < on first occurrences (thresholds ours, fixed before measuring)",
             paper="Argument 4 and the introduction: the 'fuzzy' or 'nearest neighbor' "
                   "completion [A*] [B*] ... [A] -> [B]")
    tokens, strings = first
    pattern, _, _ = head_attribution(s.model, tokens, layer=layer, head=head)
    ex.figure(f"fuzzy_attention_{s.key}",
              lambda: C.plot("attention_pattern", pattern, strings,
                             title=f"{s.key}: head {layer}.{head} on a passage and its "
                                   "case-flipped repeat"),
              caption=f"{s.key}: attention of head {layer}.{head} on a passage and its repeat "
                      "with every word's first letter in the other case (no token repeats)")


def _attribution_figure(attribution: torch.Tensor, strings: list[str], title: str) -> go.Figure:
    z = attribution.numpy()
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = go.Figure(go.Heatmap(z=z, colorscale="RdBu", zmid=0, zmin=-bound, zmax=bound,
                               colorbar=dict(title="logit attr."),
                               hovertemplate="query %{y}<br>key %{x}<br>%{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"{title}: direct logit attribution", xaxis_title="key position",
                      yaxis_title="query position", yaxis_autorange="reversed")
    return fig


def _head_heatmap(per_head: pd.DataFrame, metric: str, title: str) -> go.Figure:
    table = per_head.pivot_table(index="layer", columns="head", values=metric)
    fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=[str(c) for c in table.columns],
                               y=[str(i) for i in table.index], colorscale="Viridis", zmin=0,
                               zmax=1, colorbar=dict(title="share")))
    fig.update_layout(title=title, xaxis_title="head", yaxis_title="layer",
                      yaxis_autorange="reversed")
    return fig


# ---------------------------------------------------------------------------- body
def body(ex: C.Example) -> None:
    if not ex.data.is_synthetic:
        raise C.ExampleError("arg4 trains on its own task mixture; --data does not apply "
                             "(use --pretrained/--weights to analyse another model)")
    args = ex.args
    models: list[dict[str, Any]] = []
    # Loaded first, so that an unreachable hub or a bad directory fails before any training.
    pretrained = (load_pretrained(args.pretrained, args.weights, args.device)
                  if args.pretrained or args.weights else None)
    presets = FULL_PRESETS if ex.full else DEFAULT_PRESETS
    if args.fixture:
        presets = ()
        subject = fixture_subject(args.device)
        ex.say(f"[{ex.name}] analysing {subject.source}")
        analyse(ex, subject)
        models.append({"model": subject.key, "source": subject.source})
    for preset in presets:
        subject, run = trained_subject(ex, preset)
        # The mixture holds out fewer chunks than the default 512 evaluation examples.
        n_eval = ex.hub.corpus(run).n_eval
        settings = replace(ex.settings, n_examples=min(ex.settings.n_examples, n_eval))
        ex.facts[f"eval_examples[{run}]"] = settings.n_examples
        frame = ex.evaluate(run, ["losses", "prefix_matching", "copying"], settings=settings)
        last = int(frame["step"].max())
        heads = frame[(frame["step"] == last) & frame["metric"].isin(
            ["prefix_matching", "copying"])][["layer", "head", "metric", "value"]]
        icl = frame[(frame["metric"] == "icl_score")].sort_values("step")
        ex.facts[f"final_icl_score[{run}]"] = float(icl["value"].iloc[-1])
        analyse(ex, subject, head_frame=heads)
        models.append({"model": run, "source": subject.source})
        ex.figure(f"prefix_matching_{run}",
                  lambda f=frame, r=run: C.plot("head_score_curves", f,
                                                metric="prefix_matching", run=r),
                  caption=f"{run}: prefix-matching score of every head over training")
        ex.figure(f"icl_score_{run}", lambda f=frame: C.plot("icl_score_curve", f),
                  caption=f"{run}: in-context-learning score over training (mixture text)")
    if pretrained is not None:
        ex.say(f"[{ex.name}] analysing {pretrained.source}")
        analyse(ex, pretrained)
        models.append({"model": pretrained.key, "source": pretrained.source})
        ex.facts["pretrained"] = pretrained.source
    else:
        ex.facts["pretrained"] = ("not run: pass --pretrained NAME (online, e.g. gpt2) or "
                                  "--weights DIR (a local save_pretrained directory)")
        ex.note("no pretrained model analysed (pass --pretrained gpt2 online, or --weights DIR)")
    ex.facts["models"] = models


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fixture", action="store_true",
                   help="analyse the checkpoint shipped with the package instead of training "
                        "(seconds, offline; a positive control)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--pretrained", default=None, metavar="NAME",
                   help="also analyse a pretrained model HookedTransformer.from_pretrained "
                        "knows (e.g. gpt2); needs the HuggingFace hub or its local cache")
    g.add_argument("--weights", default=None, metavar="DIR",
                   help="also analyse a local model directory written by save_pretrained "
                        "(config, weights, tokenizer), loaded offline")


def main(argv: Sequence[str] | None = None) -> int:
    return C.main(NAME, TITLE, body, argv, description=__doc__, add_arguments=add_arguments)


if __name__ == "__main__":
    sys.exit(main())
