"""Argument 4: induction heads beyond random tokens — literal copying of text and abstract
pattern matching.

The paper's Argument 4 ("Specific examples of induction head generality") shows heads of a
large model that are induction heads by the strict definition (prefix matching and copying on
repeated random tokens) and that also

* **Behavior 1, literal sequence copying**: on a text followed by its repeat, the head attends
  to the token after the previous occurrence of the current token ("Attention") and, through
  the direct path, raises the logit of the token that comes next ("Logit attr", footnote 21:
  "direct-path" logit attribution). :func:`head_attribution` computes both matrices for one
  head, :func:`literal_copying` the per-token view and :func:`copying_summary` its averages.
* **Fuzzy copying**, the paper's ``[A*] [B*] ... [A] -> [B]`` with ``A* ≈ A``, at a scale a
  small model can show: :func:`fuzzy_copying` is :func:`literal_copying` with the tokens
  grouped by word (the two spellings of a word count as the same), on texts that repeat their
  words in the other spelling (:func:`~induction_lens.data.tasks.fuzzy_passage`).
* **Behavior 3, pattern matching**: on lines of four templates with their labels
  (:mod:`induction_lens.data.tasks`), the head "allocates about 65% of its attention from the
  colons to the correct positions". :func:`pattern_attention_scores` is that metric on any
  attention pattern (hand-built ones in the tests), :func:`pattern_task_scores` runs it over
  every head of a model on several texts and adds the label losses, the behavioural side.

Everything works on any ``HookedTransformer``: one trained here, or a pretrained one loaded
with ``HookedTransformer.from_pretrained`` (GPT-2's LayerNorm is folded by TransformerLens; the
direct path below handles both).

Conventions: ``tokens`` are one sequence (``[pos]`` or ``[1, pos]``); position ``i``'s target
is token ``i + 1``, so the last position has none (NaN attribution).
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from induction_lens.data.tasks import TaskTokens
from induction_lens.frame import head_frame
from induction_lens.measures._checks import EvalError, check_tokens, eval_mode, model_device
from induction_lens.measures.heads import induction_targets

__all__ = [
    "COPYING_METRICS",
    "TASK_METRICS",
    "fuzzy_copying",
    "head_attribution",
    "induction_mask",
    "literal_copying",
    "pattern_attention_scores",
    "pattern_task_scores",
]

TASK_METRICS: tuple[str, ...] = (
    "task_same_category_attention",
    "task_same_category_label_attention",
    "task_earlier_line_attention",
    "task_same_category_share",
    "task_chance_share",
)
"""Per-head metric names of :func:`pattern_task_scores` (see :func:`pattern_attention_scores`)."""

COPYING_METRICS: tuple[str, ...] = (
    "induction_attention_repeated",
    "induction_attention_first",
    "logit_attribution_repeated",
    "logit_attribution_first",
    "loss_repeated",
    "loss_first",
)
"""Keys of :func:`copying_summary`."""


# --------------------------------------------------------------------------- pattern matching
def _task_masks(meta: TaskTokens, n_pos: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For every line: masks over key positions of the earlier lines of the same category, of
    their label tokens, and of all earlier lines; and whether the line's colon is scored."""
    line_of = meta.line_of[:n_pos]
    cats = meta.category_ids()
    n_lines = meta.n_lines
    pos_cat = torch.where(line_of >= 0, cats[line_of.clamp_min(0)], torch.full_like(line_of, -1))
    same = torch.zeros(n_lines, n_pos, dtype=torch.bool)
    label = torch.zeros(n_lines, n_pos, dtype=torch.bool)
    earlier = torch.zeros(n_lines, n_pos, dtype=torch.bool)
    is_label = torch.zeros(n_pos, dtype=torch.bool)
    is_label[meta.label_positions[meta.label_positions < n_pos]] = True
    for i in range(n_lines):
        earlier[i] = (line_of >= 0) & (line_of < i)
        same[i] = earlier[i] & (pos_cat == cats[i])
        label[i] = same[i] & is_label
    scored = same.any(dim=1)
    return same, label, earlier, scored


def pattern_attention_scores(
    pattern: Float[Tensor, "*heads query_pos key_pos"], meta: TaskTokens
) -> dict[str, Float[Tensor, "*heads"]]:
    """How much attention the ":" tokens pay to earlier lines of their own template.

    Argument 4, "Behavior 3: Pattern matching": the paper's head "allocates about 65% of its
    attention from the colons to the correct positions". For the colon of every line that has
    at least one earlier line of the same template (the other colons have no correct position
    and are not scored), with ``A`` the colon's attention row:

    * ``task_same_category_attention``: ``A`` summed over every token of the earlier lines of
      the same template (the fraction of the colon's whole attention, BOS included);
    * ``task_same_category_label_attention``: the same over those lines' label tokens only (the
      token an induction-style head would copy);
    * ``task_earlier_line_attention``: ``A`` summed over every token of all earlier lines;
    * ``task_same_category_share``: the first divided by the third, i.e. the share of the
      attention paid to earlier lines that goes to lines of the right template (colons paying
      no attention to earlier lines are skipped); the paper's 65% reads most naturally as this
      share, because heads also park attention on BOS;
    * ``task_chance_share``: the share the same colons would give under uniform attention over
      the tokens of the earlier lines (the baseline for ``task_same_category_share``).

    Each value is the mean over the scored colons.

    Args:
        pattern: attention pattern(s) ``[..., query_pos, key_pos]`` (rows sum to 1) of one
            sequence, e.g. ``cache["pattern", layer][0]`` with shape ``[head_index, q, k]``.
        meta: the tokens' metadata (:func:`~induction_lens.data.tasks.tokenize_task`); the
            pattern may cover a prefix of them.

    Returns:
        ``{metric: tensor of shape [...]}`` (NaN when no colon is scored).
    """
    if not isinstance(pattern, Tensor) or pattern.ndim < 2:
        raise EvalError("pattern must be a tensor [..., query_pos, key_pos]")
    n_q, n_k = pattern.shape[-2:]
    if n_q != n_k:
        raise EvalError(f"pattern must be square in its last two axes, got {n_q} x {n_k}")
    if n_q > len(meta.tokens):
        raise EvalError(f"pattern covers {n_q} positions but the task has {len(meta.tokens)} "
                        "tokens; pass the metadata of the sequence the pattern was computed on")
    same, label, earlier, scored = _task_masks(meta, n_q)
    colons = meta.colon_positions
    scored &= colons < n_q
    batch_shape = pattern.shape[:-2]
    nan = torch.full(batch_shape, float("nan"), dtype=torch.float64)
    if not bool(scored.any()):
        return {m: nan.clone() for m in TASK_METRICS}
    lines = torch.nonzero(scored)[:, 0]
    rows = pattern[..., colons[lines], :].double()  # [..., n_scored, key_pos]

    def mass(mask: Tensor) -> Tensor:
        return (rows * mask[lines].double()).sum(-1)  # [..., n_scored]

    m_same, m_label, m_earlier = mass(same), mass(label), mass(earlier)
    with torch.no_grad():
        share = torch.where(m_earlier > 0, m_same / m_earlier.clamp_min(1e-30),
                            torch.full_like(m_same, float("nan")))
    chance = same[lines].sum(-1).double() / earlier[lines].sum(-1).double()
    return {
        "task_same_category_attention": m_same.mean(-1),
        "task_same_category_label_attention": m_label.mean(-1),
        "task_earlier_line_attention": m_earlier.mean(-1),
        "task_same_category_share": share.nanmean(-1),
        "task_chance_share": chance.mean().expand(batch_shape).clone(),
    }


def _as_sequence(model: HookedTransformer, tokens: Tensor, name: str = "tokens"
                 ) -> Int[Tensor, "1 pos"]:
    if isinstance(tokens, Tensor) and tokens.ndim == 1:
        tokens = tokens[None]
    tokens = check_tokens(model, tokens, name=name)
    if tokens.shape[0] != 1:
        raise EvalError(f"{name} must be one sequence ([pos] or [1, pos]), got batch "
                        f"{tokens.shape[0]}")
    return tokens


def pattern_task_scores(model: HookedTransformer, tasks: Sequence[TaskTokens]) -> pd.DataFrame:
    """:func:`pattern_attention_scores` of every head, and the label losses, over several texts.

    Each text is truncated to the model's context (at a line boundary, so build the metadata
    with ``tokenize_task(..., max_tokens=model.cfg.n_ctx)``). Per-head values are the means
    over texts; the model-level rows say whether the model uses the context on the task:

    * ``task_label_loss_seen``: mean loss (nats) of the label tokens of lines whose template
      appeared earlier in the text (predictable in context);
    * ``task_label_loss_unseen``: the same for first occurrences of a template (with shuffled
      labels, predictable only up to the labels not used yet);
    * ``task_label_accuracy_seen``: how often the model's top prediction at a seen line's colon
      is its label token.

    Returns:
        A tidy frame ``layer, head, metric, value`` (null layer/head for model-level rows).
    """
    if not tasks:
        raise EvalError("pattern_task_scores needs at least one task (tokenize_task output)")
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    sums = {m: torch.zeros(n_layers, n_heads, dtype=torch.float64) for m in TASK_METRICS}
    counts = {m: torch.zeros(n_layers, n_heads, dtype=torch.float64) for m in TASK_METRICS}
    seen_loss, unseen_loss, seen_hits = [], [], []
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    device = model_device(model)
    for meta in tasks:
        if len(meta.tokens) > model.cfg.n_ctx:
            raise EvalError(f"a task has {len(meta.tokens)} tokens but the context is "
                            f"{model.cfg.n_ctx}; build it with tokenize_task(..., "
                            f"max_tokens={model.cfg.n_ctx})")
        tokens = _as_sequence(model, meta.tokens)
        patterns: dict[int, Tensor] = {}

        def hook(pattern: Tensor, hook, patterns=patterns) -> None:
            patterns[hook.layer()] = pattern[0].detach().cpu()

        with eval_mode(model):
            logits = model.run_with_hooks(tokens.to(device), return_type="logits",
                                          fwd_hooks=[(n, hook) for n in names])
        for layer in range(n_layers):
            scores = pattern_attention_scores(patterns[layer], meta)
            for m, v in scores.items():
                ok = torch.isfinite(v)
                sums[m][layer] += torch.where(ok, v, torch.zeros_like(v))
                counts[m][layer] += ok.double()
        logp = torch.log_softmax(logits[0].float().cpu(), dim=-1)
        cats = meta.category_ids()
        for i in range(meta.n_lines):
            colon, label = int(meta.colon_positions[i]), int(meta.label_positions[i])
            if label != colon + 1:
                continue  # the label is not the token right after the colon
            loss = -float(logp[colon, tokens[0, label]])
            if bool((cats[:i] == cats[i]).any()):
                seen_loss.append(loss)
                seen_hits.append(float(int(logp[colon].argmax()) == int(tokens[0, label])))
            else:
                unseen_loss.append(loss)
    means = {m: torch.where(counts[m] > 0, sums[m] / counts[m].clamp_min(1),
                            torch.full_like(sums[m], float("nan"))) for m in TASK_METRICS}

    def avg(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    model_level = {"task_label_loss_seen": avg(seen_loss),
                   "task_label_loss_unseen": avg(unseen_loss),
                   "task_label_accuracy_seen": avg(seen_hits)}
    return head_frame({**means, **{k: np.float64(v) for k, v in model_level.items()}})


# --------------------------------------------------------------------------- literal copying
def induction_mask(tokens: Int[Tensor, " pos"]) -> Float[Tensor, "pos pos"]:
    """``[i, j] = 1`` iff ``0 < j <= i`` and token ``j - 1`` equals token ``i``: the positions
    an induction head at ``i`` attends to (those that followed an earlier copy of token ``i``).

    :func:`~induction_lens.measures.heads.induction_targets` of one text, with no token
    excluded as a query (a text's BOS, if any, only ever sits at position 0)."""
    return induction_targets(tokens.reshape(1, -1).cpu(), bos_token_id=None)[0].double()


def _head_indices(model: HookedTransformer, layer: int, head: int) -> tuple[int, int]:
    if not (isinstance(layer, int) and 0 <= layer < model.cfg.n_layers):
        raise EvalError(f"layer={layer!r} must be in [0, {model.cfg.n_layers - 1}]")
    if not (isinstance(head, int) and 0 <= head < model.cfg.n_heads):
        raise EvalError(f"head={head!r} must be in [0, {model.cfg.n_heads - 1}]")
    if getattr(model.cfg, "n_key_value_heads", None) not in (None, model.cfg.n_heads):
        raise EvalError("head_attribution supports multi-head attention only (this model uses "
                        "grouped-query attention)")
    return layer, head


@torch.no_grad()
def head_attribution(model: HookedTransformer, tokens: Int[Tensor, " pos"], *, layer: int,
                     head: int) -> tuple[Float[Tensor, "query_pos key_pos"],
                                         Float[Tensor, "query_pos key_pos"], Float[Tensor, " pos"]]:
    """Attention pattern and direct-path logit attribution of one head on one sequence.

    Argument 4, "Behavior 1" and footnote 21: the attribution ``D[i, j]`` is how much the head's
    output at position ``i`` coming from source ``j`` raises the logit of the token that comes
    next (``tokens[i + 1]``) along the direct path to the unembedding::

        D[i, j] = A[i, j] * LN_i(v_j W_O) . (W_U[:, t_{i+1}] - mean_t W_U[:, t])

    where ``LN_i`` is the final LayerNorm's linear part at position ``i`` (centring, gain, and
    the division by the scale actually measured at ``i`` in the forward pass), and the mean over
    the vocabulary is subtracted so that a push on every logit alike counts as nothing. Rows sum
    to the head's direct effect on the correct token's logit (relative to the mean logit);
    biases are not the head's and are left out. The last row is NaN (no next token).

    Returns:
        ``(pattern, attribution, loss)``: two ``[pos, pos]`` float64 matrices on the CPU and the
        model's own next-token loss at each position (NaN at the last).
    """
    tokens = _as_sequence(model, tokens)
    layer, head = _head_indices(model, layer, head)
    device = model_device(model)
    names = {f"blocks.{layer}.attn.hook_v", f"blocks.{layer}.attn.hook_pattern",
             "ln_final.hook_scale"}
    with eval_mode(model):
        logits, cache = model.run_with_cache(tokens.to(device),
                                             names_filter=lambda n: n in names)
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0, head].double()  # [q, k]
    v = cache[f"blocks.{layer}.attn.hook_v"][0, :, head].double()  # [k, d_head]
    out = v @ model.W_O[layer, head].double()  # [k, d_model]
    norm = model.cfg.normalization_type
    if norm in ("LN", "LNPre"):
        out = out - out.mean(-1, keepdim=True)
    ln_final = getattr(model, "ln_final", None)
    if norm is not None and ln_final is not None and hasattr(ln_final, "w"):
        out = out * ln_final.w.double()
    pos = tokens.shape[1]
    w_u = model.W_U.double()
    targets = tokens[0, 1:].to(w_u.device)
    directions = w_u[:, targets] - w_u.mean(dim=1, keepdim=True)  # [d_model, pos - 1]
    per_source = out @ directions  # [k, q]: source k's push on query q's target
    scale = torch.ones(pos, dtype=torch.float64, device=out.device)
    if "ln_final.hook_scale" in cache:
        scale = cache["ln_final.hook_scale"][0, :, 0].double()
    attribution = torch.full((pos, pos), float("nan"), dtype=torch.float64, device=out.device)
    attribution[:-1] = pattern[:-1] * per_source.T / scale[:-1, None]
    logp = torch.log_softmax(logits[0].double(), dim=-1)
    loss = torch.full((pos,), float("nan"), dtype=torch.float64, device=out.device)
    loss[:-1] = -logp[:-1].gather(-1, targets[:, None])[:, 0]
    return pattern.cpu(), attribution.cpu(), loss.cpu()


def literal_copying(model: HookedTransformer, tokens: Int[Tensor, " pos"], *, layer: int,
                    head: int, token_strings: Sequence[str] | None = None,
                    classes: Int[Tensor, " pos"] | None = None) -> pd.DataFrame:
    """Per position: what one head does on a (partly) repeated text (Argument 4, Behavior 1).

    Columns: ``position``, ``token_id``, ``target_id`` (the next token), ``token`` (its text
    when ``token_strings`` is given), ``repeated`` (the pair (current token, next token)
    occurred earlier, so an induction head can predict the next token), ``exact_repeated``
    (the same, on token ids even when ``classes`` is given), ``seen`` (the current token
    occurred earlier), ``induction_attention`` (attention on the positions that followed
    earlier copies of the current token, :func:`induction_mask`), ``logit_attribution`` (the
    row sum of :func:`head_attribution`: the head's direct push on the correct next token,
    in logits), ``top_source`` (the position the head attends to most) and ``loss`` (the whole
    model's loss on the next token, nats). The last position has no target and is left out.

    Args:
        classes: optional, one id per token saying which tokens count as "the same" (e.g.
            :func:`~induction_lens.data.tasks.word_classes`: the two spellings of a word).
            ``repeated``, ``seen`` and the induction mask then compare classes instead of token
            ids: the fuzzy ``[A*] [B*] ... [A] -> [B]`` of :func:`fuzzy_copying`.
    """
    tokens = _as_sequence(model, tokens)[0].cpu()
    pattern, attribution, loss = head_attribution(model, tokens, layer=layer, head=head)
    pos = len(tokens)
    if token_strings is not None and len(token_strings) != pos:
        raise EvalError(f"token_strings has {len(token_strings)} entries for {pos} tokens")
    if classes is None:
        keys = tokens
    else:
        keys = torch.as_tensor(classes).reshape(-1).cpu()
        if len(keys) != pos:
            raise EvalError(f"classes has {len(keys)} entries for {pos} tokens; pass one class "
                            "id per token (e.g. word_classes of the token strings)")
    mask = induction_mask(keys)
    pairs: set[tuple[int, int]] = set()
    exact_pairs: set[tuple[int, int]] = set()
    seen_keys: set[int] = set()
    rows = []
    ids, kid = tokens.tolist(), keys.tolist()
    for i in range(pos - 1):
        pair, exact = (kid[i], kid[i + 1]), (ids[i], ids[i + 1])
        rows.append({"position": i, "token_id": ids[i], "target_id": ids[i + 1],
                     "repeated": pair in pairs, "exact_repeated": exact in exact_pairs,
                     "seen": kid[i] in seen_keys,
                     "induction_attention": float((pattern[i] * mask[i]).sum()),
                     "logit_attribution": float(attribution[i].nansum()),
                     "top_source": int(pattern[i].argmax()), "loss": float(loss[i])})
        pairs.add(pair)
        exact_pairs.add(exact)
        seen_keys.add(kid[i])
    frame = pd.DataFrame(rows)
    if token_strings is not None:
        frame.insert(3, "token", list(token_strings[:-1]))
    return frame


def fuzzy_copying(model: HookedTransformer, tokens: Int[Tensor, " pos"], *, layer: int,
                  head: int, token_strings: Sequence[str]) -> pd.DataFrame:
    """Per position: what one head does where a text repeats its *words* in other *tokens*.

    The paper's thesis (Argument 4 and the introduction) is that induction heads "perform a
    'fuzzy' or 'nearest neighbor' version of pattern completion, completing ``[A*] [B*] ...
    [A] -> [B]``, where A* ≈ A and B* ≈ B are similar in some space" (the pattern set as code
    here, so that the docs do not read its brackets as links). At a scale a small model can
    show, ``A*`` and ``A`` are the two spellings of one word (:func:`~induction_lens.data.
    tasks.variant`: first letter in either case), separate tokens that a corpus using them
    interchangeably teaches the model to treat alike. This is :func:`literal_copying` with
    the tokens grouped by :func:`~induction_lens.data.tasks.word_classes` of ``token_strings``:
    ``repeated`` means the *words* (current, next) occurred earlier, ``induction_attention``
    is the attention on the tokens after earlier spellings of the current word, and
    ``exact_repeated`` still says whether the *tokens* repeat (on
    :func:`~induction_lens.data.tasks.fuzzy_passage` they never do in the repeat, so no
    literal match can explain what the head does there). ``logit_attribution`` and ``loss``
    are for the token that actually comes next.
    """
    from induction_lens.data.tasks import word_classes

    return literal_copying(model, tokens, layer=layer, head=head, token_strings=token_strings,
                           classes=word_classes(token_strings))


