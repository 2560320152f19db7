"""Argument 1 (macroscopic co-occurrence): in-context learning, induction heads, the loss bump and
the PCA pivot change in one window of training; nothing of the kind happens with one layer.

Olsson et al. 2022, Argument 1 and its figures "Models with more than one layer have an abrupt
improvement in in-context learning", "Derivative of loss with respect to log token index",
"Induction heads form in phase change", "Loss curves diverge during phase change", "Per-token
loss principal component analysis" and "B - A per-token losses": "the following things all
co-occur during the same abrupt window: capacity for in-context learning sharply improves [...];
induction heads form; loss undergoes a small 'bump' [...]; the model's trajectory abruptly
changes (in the space of per-token losses, as visualized with PCA)", and "the only exception is
the one-layer model".

What runs (embedded synthetic corpus, laptop presets, 1000 steps each unless ``--steps``):

* default: ``attn-only-1l``, ``attn-only-2l``, ``attn-only-3l`` (trained into ``--hub``, or
  reused from it);
* ``--full``: attention-only 1-4 layers and the models with MLPs ``mlp-1l`` to ``mlp-4l``.

Every checkpoint is evaluated (per-token losses, prefix-matching scores; cached in the hub).
Claims, per model with two or more layers (the windows come from
:func:`induction_lens.analysis.phases.detect_phase_change`; "in the window" allows one checkpoint
interval of slack on each side, the resolution of the snapshots):

* ``icl_phase_change``: the ICL score has a detected phase-change window;
* ``induction_heads_form``: the highest prefix-matching score has a detected window whose jump
  (its midpoint) lies in the ICL window, and ends at >= 0.3 (an induction head by
  :func:`~induction_lens.analysis.heads.classify_heads`' threshold);
* ``loss_bump``: the loss against ln(tokens) has a detected "bump" window whose midpoint lies
  in the ICL window;
* ``pca_pivot``: the per-token-loss PCA trajectory (one basis for all models) pivots inside
  the ICL window (:func:`_common.pca_pivot`: the checkpoint interval of the largest
  displacement in the plane of the first two components, at least 5 times the median
  displacement of the other intervals; our threshold, not the paper's);
* ``repeated_tokens_gain``: across the window, tokens that repeat an earlier bigram of their
  example get easier (mean loss change <= -0.5 nats) and more so than the other tokens (the
  paper's "B - A" reading, on held-out synthetic examples instead of Harry Potter);

and for one layer, ``no_phase_change``: no ICL window, no prefix-matching window, no loss bump,
no PCA pivot, and no head above 0.3 prefix matching.

Run: ``python examples/arg1_co_occurrence.py [--hub hub] [--out DIR] [--full] [--tiny]``.
"""

import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from induction_lens.analysis.losses import loss_log_derivative, per_token_loss_pca
from induction_lens.analysis.phases import co_occurrence, detect_phase_change, phase_changes
from induction_lens.measures.losses import token_loss_diff

import _common as C

NAME = "arg1_co_occurrence"
TITLE = "Argument 1: ICL, induction heads, loss bump and PCA pivot co-occur (not with 1 layer)"
PAPER = "Argument 1 (figures: ICL score, induction heads form, loss curves, PCA, B - A losses)"
DEFAULT_PRESETS = ("attn-only-1l", "attn-only-2l", "attn-only-3l")
FULL_PRESETS = ("attn-only-1l", "attn-only-2l", "attn-only-3l", "attn-only-4l",
                "mlp-1l", "mlp-2l", "mlp-3l", "mlp-4l")
INDUCTION_THRESHOLD = 0.3
REPEAT_GAIN = -0.5
DIFF_EXAMPLES = 64


def _interval(frame: pd.DataFrame, run: str) -> float:
    steps = np.sort(frame.loc[frame["run"] == run, "step"].dropna().unique())
    return float(np.median(np.diff(steps))) if len(steps) > 1 else 0.0


def _repeat_flags(tokens: torch.Tensor) -> np.ndarray:
    """Per predicted token (context index 1..): whether its bigram (previous, current) occurred
    earlier in the example (an induction head can predict it)."""
    ids = tokens.tolist()
    seen: set[tuple[int, int]] = set()
    flags = []
    for i in range(1, len(ids)):
        pair = (ids[i - 1], ids[i])
        flags.append(pair in seen)
        seen.add(pair)
    return np.array(flags)


def _loss_change(ex: C.Example, run: str, start: int, end: int) -> tuple[pd.DataFrame, dict]:
    """Per-token loss change across the window on held-out examples; one example's frame."""
    before = ex.hub.load_model(run, start, device=ex.args.device)
    after = ex.hub.load_model(run, end, device=ex.args.device)
    n = 4 if ex.tiny else DIFF_EXAMPLES
    tokens = ex.hub.corpus(run).eval_tokens(n)
    rep, other, first = [], [], None
    for i in range(n):
        diff = token_loss_diff(before, after, tokens[i], prepend_bos=False)
        flags = _repeat_flags(tokens[i])
        rep.extend(diff.loc[flags, "diff"])
        other.extend(diff.loc[~flags, "diff"])
        if first is None:
            first = diff
    return first, {"mean_change_repeated": float(np.mean(rep)) if rep else float("nan"),
                   "mean_change_other": float(np.mean(other)) if other else float("nan"),
                   "n_repeated": len(rep), "n_other": len(other)}


def body(ex: C.Example) -> None:
    presets: Sequence[str] = FULL_PRESETS if ex.full else DEFAULT_PRESETS
    runs = {p: ex.ensure_run(p) for p in presets}
    frame = pd.concat([ex.evaluate(r, ["losses", "prefix_matching"]) for r in runs.values()],
                      ignore_index=True)
    windows = phase_changes(frame)
    ex.facts["windows"] = windows.to_dict(orient="records")
    pca = per_token_loss_pca(frame, n_components=2)
    ex.facts["pca_explained_variance"] = [float(pca["explained_variance_pc1"].iloc[0]),
                                          float(pca["explained_variance_pc2"].iloc[0])]

    for run in runs.values():
        layers = ex.hub.config(run).model.n_layers
        icl = detect_phase_change(frame, signal="icl_score", run=run)
        prefix = detect_phase_change(frame, signal="prefix_matching", run=run)
        bump = detect_phase_change(frame, signal="loss", run=run)
        pivot = C.pca_pivot(pca, run)
        pivoted = pivot["pivoted"]
        rows = frame[(frame["run"] == run) & (frame["metric"] == "prefix_matching")]
        last = rows["step"].max()
        final_prefix = float(rows.loc[rows["step"] == last, "value"].max())
        slack = _interval(frame, run)
        if layers == 1:
            ex.claim(f"no_phase_change[{run}]",
                     "a one-layer model shows no ICL jump, forms no induction head, has no loss "
                     "bump and no PCA pivot", icl is None and prefix is None and bump is None
                     and not pivoted and final_prefix < INDUCTION_THRESHOLD,
                     {"icl_window": icl is not None, "prefix_window": prefix is not None,
                      "loss_bump": bump is not None, "pca_pivot": pivoted,
                      "pivot_ratio": pivot["ratio"],
                      "final_max_prefix_matching": final_prefix},
                     criterion=f"no window detected for icl_score, prefix_matching and loss; "
                               f"no PCA pivot (largest displacement >= 5x the median); "
                               f"every head's final prefix-matching "
                               f"score < {INDUCTION_THRESHOLD}",
                     paper=PAPER)
            continue
        ex.claim(f"icl_phase_change[{run}]",
                 "the in-context-learning score improves abruptly in a narrow window",
                 icl is not None,
                 {"window_steps": None if icl is None else [icl.start_step, icl.end_step],
                  "icl_before": None if icl is None else icl.start_value,
                  "icl_after": None if icl is None else icl.end_value,
                  "final_icl": float(frame[(frame["run"] == run)
                                           & (frame["metric"] == "icl_score")]
                                     .sort_values("step")["value"].iloc[-1])},
                 criterion="detect_phase_change(signal='icl_score') finds a level change "
                           "(>= 0.1 nats and >= 6x the run's step-to-step noise, width <= 30% of "
                           "the run, after a plateau: the tenth of the run before it moves by "
                           "<= 25% of the change)",
                 paper=PAPER)
        inside = icl is not None and prefix is not None and C.within(
            prefix.mid_step, icl.start_step, icl.end_step, slack)
        ex.claim(f"induction_heads_form[{run}]",
                 "induction heads form in the same window", inside
                 and final_prefix >= INDUCTION_THRESHOLD,
                 {"prefix_window_steps": None if prefix is None
                  else [prefix.start_step, prefix.end_step],
                  "prefix_jump_step": None if prefix is None else prefix.mid_step,
                  "lag_steps": co_occurrence(icl, prefix)["lag_steps"],
                  "final_max_prefix_matching": final_prefix},
                 criterion=f"a prefix-matching window is detected, its midpoint lies in the ICL "
                           f"window +/- {slack:.0f} steps, and the best head ends >= "
                           f"{INDUCTION_THRESHOLD}", paper=PAPER)
        bumped = icl is not None and bump is not None and C.within(
            bump.mid_step, icl.start_step, icl.end_step, slack)
        ex.claim(f"loss_bump[{run}]", "the loss curve has a bump in the same window", bumped,
                 {"bump_window_steps": None if bump is None else [bump.start_step, bump.end_step],
                  "bump_step": None if bump is None else bump.mid_step,
                  "abruptness": None if bump is None else bump.abruptness},
                 criterion=f"detect_phase_change(signal='loss') (loss vs ln tokens, a segment "
                           f"at least 2x steeper than both sides) finds a window whose midpoint "
                           f"lies in the ICL window +/- {slack:.0f} steps", paper=PAPER)
        ex.claim(f"pca_pivot[{run}]",
                 "the per-token-loss PCA trajectory pivots in the same window",
                 pivoted and icl is not None and C.within(pivot["step"], icl.start_step,
                                                          icl.end_step, slack),
                 {"pivot_interval": [pivot["start"], pivot["end"]],
                  "displacement": pivot["displacement"], "ratio_to_median": pivot["ratio"]},
                 criterion=f"the interval of largest displacement is >= 5x the median of the "
                           f"others and its midpoint lies in the ICL window +/- {slack:.0f} "
                           f"steps", paper=PAPER)
        # The B - A view across the ICL window (across the whole run when there is none, so
        # that the figure exists and --tiny runs the same code; the claim needs the window).
        steps = sorted(int(x) for x in frame.loc[frame["run"] == run, "step"].unique())
        span = (icl.start_step, icl.end_step) if icl is not None else (steps[0], steps[-1])
        diff, change = _loss_change(ex, run, *span)
        ex.claim(f"repeated_tokens_gain[{run}]",
                 "across the window, repeated text gets much easier, other text does not",
                 icl is not None and change["mean_change_repeated"] <= REPEAT_GAIN
                 and change["mean_change_repeated"] < change["mean_change_other"],
                 {"span_steps": list(span), "span": "icl_window" if icl is not None
                  else "whole run (no ICL window)", **change},
                 criterion=f"an ICL window exists; across it, the mean loss change of tokens "
                           f"whose bigram occurred earlier in the example is <= {REPEAT_GAIN} "
                           f"nats and below that of the other tokens "
                           f"({4 if ex.tiny else DIFF_EXAMPLES} held-out examples)",
                 paper=PAPER)
        ex.figure(f"token_loss_diff_{run}", lambda d=diff: C.plot("token_loss_diff", d),
                  caption=f"{run}: per-token loss change from step {span[0]} to {span[1]} on "
                          "one held-out example (synthetic token ids)")

    multi = [r for p, r in runs.items() if ex.hub.config(r).model.n_layers > 1]
    icl_windows = windows[windows["signal"] == "icl_score"]
    C.training_figures(ex, frame, list(runs.values()), icl_windows)
    ex.figure("pca", lambda: C.plot("pca_trajectories", pca),
              caption="per-token-loss PCA trajectories in one basis")
    if multi:
        ex.figure(f"loss_heatmap_{multi[0]}",
                  lambda: C.plot("loss_heatmap", frame, run=multi[0]),
                  caption="loss by context index over training")
        ex.figure(f"loss_derivative_{multi[0]}",
                  lambda: C.plot("loss_derivative_heatmap", loss_log_derivative(
                      frame[frame["run"] == multi[0]]), run=multi[0]),
                  caption="d loss / d ln(context index) over training")


def main(argv: Sequence[str] | None = None) -> int:
    return C.main(NAME, TITLE, body, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
