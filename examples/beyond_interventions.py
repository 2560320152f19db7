"""Beyond the paper: causal interventions during training move, or stop, the phase change.

Olsson et al. 2022 perturb the architecture (Argument 2, smeared keys) and ablate heads after
training (Argument 3). Here the two-layer attention-only model is trained under declared
interventions (``TrainConfig.interventions``, applied through hooks at every step, see
:mod:`induction_lens.models.interventions`) and evaluated like any other run:

* ``clamp-l0-prev``: every layer-0 head's attention pattern is clamped to perfect
  previous-token attention from step 0. The induction circuit needs a previous-token head in
  layer 0 to K-compose with (the paper's Argument 5 mechanism); handing it one for free should
  make induction heads, and the ICL jump, come earlier.
* ``ablate-l0``: every layer-0 head's output is zeroed from step 0: no previous-token
  information reaches layer 1, so no induction head should form within the budget.
* ``ablate-l0h{k}``: one layer-0 head is zeroed, the one with the lowest previous-token score in
  the unintervened run at its last checkpoint (a control: the phase change should survive).
* ``freeze-l1-qk``: the QK weights (``W_Q``, ``b_Q``, ``W_K``) of every layer-1 head are frozen
  at initialisation: layer 1 cannot learn where to attend, so no phase change.

What runs (embedded synthetic corpus, laptop ``attn-only-2l``, 1000 steps unless ``--steps``):
the baseline ``attn-only-2l`` and the four intervened runs above. ``--full`` adds the local
learning coefficient (metric ``llc``, devinterp; about half a minute per checkpoint) of the
baseline and the clamped run at every other checkpoint, and its figure. ``--tiny``: 12 steps.

Claims (windows from :func:`induction_lens.analysis.phases.detect_phase_change`; induction
threshold: the best layer-1 head's prefix-matching score >= 0.3):

* ``clamp_prev_earlier``: the clamped run's best layer-1 head crosses the threshold at an
  earlier checkpoint than the baseline's, and its ICL score reaches the baseline window's
  half-height earlier;
* ``ablate_l0_no_phase_change``: the run with every layer-0 head ablated has no ICL window and
  no layer-1 head reaching the threshold;
* ``ablate_one_l0_keeps_phase_change``: the run with one non-previous-token layer-0 head
  ablated has an ICL window and a layer-1 induction head;
* ``freeze_l1_qk_no_phase_change``: the run with layer-1 QK frozen at initialisation has no ICL
  window and no layer-1 head reaching the threshold.

Run: ``python examples/beyond_interventions.py [--hub hub] [--out DIR] [--full] [--tiny]``.
"""

import sys
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from induction_lens.analysis.phases import detect_phase_change, phase_changes
from induction_lens.config import Intervention

import _common as C

NAME = "beyond_interventions"
TITLE = "Beyond: interventions during training move or stop the phase change"
PAPER = ("beyond the paper: Argument 5's mechanism (layer-1 induction heads K-compose with "
         "layer-0 previous-token heads) tested by intervening during training")
PRESET = "attn-only-2l"
INDUCTION_THRESHOLD = 0.3


def ensure_intervened(ex: C.Example, suffix: str, interventions: tuple[Intervention, ...],
                      steps: int | None = None) -> str:
    """:meth:`Example.ensure_run` for ``attn-only-2l`` trained under ``interventions``."""
    return ex.ensure_run(PRESET, steps=steps, run=ex.run_name(PRESET, suffix=suffix),
                         train_fields={"interventions": interventions})


def layer1_prefix(frame: pd.DataFrame, run: str) -> pd.DataFrame:
    """``step, train_tokens, value``: the best layer-1 head's prefix matching per checkpoint."""
    rows = frame[(frame["run"] == run) & (frame["metric"] == "prefix_matching")
                 & (frame["layer"] == 1)]
    return (rows.groupby(["step", "train_tokens"], as_index=False)["value"].max()
            .sort_values("step"))


def first_step(curve: pd.DataFrame, test) -> int | None:
    """The first checkpoint whose value passes ``test`` (None: none does)."""
    hits = curve[test(curve["value"])]
    return None if hits.empty else int(hits["step"].iloc[0])


def icl_curve(frame: pd.DataFrame, run: str) -> pd.DataFrame:
    rows = frame[(frame["run"] == run) & (frame["metric"] == "icl_score")]
    return rows[["step", "train_tokens", "value"]].sort_values("step")


def window_facts(window) -> dict:
    if window is None:
        return {"icl_window_steps": None, "icl_jump_step": None}
    return {"icl_window_steps": [window.start_step, window.end_step],
            "icl_jump_step": round(window.mid_step, 1)}


def body(ex: C.Example) -> None:
    base = ex.ensure_run(PRESET)
    base_frame = ex.evaluate(base, ["losses", "prefix_matching", "previous_token"])
    last = base_frame[(base_frame["metric"] == "previous_token") & (base_frame["layer"] == 0)]
    last = last[last["step"] == last["step"].max()].sort_values(["value", "head"])
    quiet_head = int(last["head"].iloc[0])
    ex.facts["baseline_layer0_previous_token"] = last.set_index("head")["value"].to_dict()
    n_heads = ex.hub.config(base).model.n_heads

    runs = {
        "clamp": ensure_intervened(ex, "clamp-l0-prev", tuple(
            Intervention("clamp_pattern", 0, h, pattern="previous_token")
            for h in range(n_heads))),
        "ablate_all": ensure_intervened(ex, "ablate-l0", tuple(
            Intervention("ablate", 0, h) for h in range(n_heads))),
        "ablate_one": ensure_intervened(ex, f"ablate-l0h{quiet_head}",
                                        (Intervention("ablate", 0, quiet_head),)),
        "freeze": ensure_intervened(ex, "freeze-l1-qk", tuple(
            Intervention("freeze", 1, h, weights="qk") for h in range(n_heads))),
    }
    frame = pd.concat([base_frame] + [ex.evaluate(r, ["losses", "prefix_matching",
                                                      "previous_token"])
                                      for r in runs.values()], ignore_index=True)
    windows = phase_changes(frame, signals=("icl_score", "prefix_matching"))
    ex.facts["windows"] = windows.to_dict(orient="records")

    base_win = detect_phase_change(frame, signal="icl_score", run=base)
    facts = {}
    for key, run in {"baseline": base, **runs}.items():
        curve = layer1_prefix(frame, run)
        win = detect_phase_change(frame, signal="icl_score", run=run)
        facts[key] = {"run": run, **window_facts(win),
                      "final_layer1_prefix_matching": float(curve["value"].iloc[-1]),
                      "induction_step": first_step(curve, lambda v: v >= INDUCTION_THRESHOLD),
                      "final_icl_score": float(icl_curve(frame, run)["value"].iloc[-1])}
    # The baseline window's half-height: the ICL level that marks "the jump has happened".
    half = None if base_win is None else (base_win.start_value + base_win.end_value) / 2
    for key in facts:
        facts[key]["icl_half_step"] = None if half is None else first_step(
            icl_curve(frame, facts[key]["run"]), lambda v: v <= half)
    ex.facts["runs"] = facts

    b, c = facts["baseline"], facts["clamp"]
    earlier = (c["induction_step"] is not None and b["induction_step"] is not None
               and c["induction_step"] < b["induction_step"]
               and c["icl_half_step"] is not None and b["icl_half_step"] is not None
               and c["icl_half_step"] < b["icl_half_step"])
    ex.claim(f"clamp_prev_earlier[{runs['clamp']} vs {base}]",
             "clamping every layer-0 head to previous-token attention makes induction heads "
             "and the ICL jump appear earlier", earlier,
             {"clamped_induction_step": c["induction_step"],
              "baseline_induction_step": b["induction_step"],
              "clamped_icl_half_step": c["icl_half_step"],
              "baseline_icl_half_step": b["icl_half_step"],
              "icl_half_height": half, "clamped_icl_window": c["icl_window_steps"],
              "baseline_icl_window": b["icl_window_steps"]},
             criterion=f"the clamped run's best layer-1 head reaches prefix matching "
                       f">= {INDUCTION_THRESHOLD} at an earlier checkpoint, and its ICL score "
                       "falls to the baseline ICL window's half-height at an earlier "
                       "checkpoint, than the baseline's", paper=PAPER)
    for key, claim, statement in (
            ("ablate_all", "ablate_l0_no_phase_change",
             "ablating every layer-0 head during training prevents induction heads in layer 1"),
            ("freeze", "freeze_l1_qk_no_phase_change",
             "freezing the layer-1 heads' QK weights at initialisation prevents the phase "
             "change")):
        f = facts[key]
        ok = f["icl_window_steps"] is None and f["final_layer1_prefix_matching"] < \
            INDUCTION_THRESHOLD
        ex.claim(f"{claim}[{f['run']}]", statement, ok,
                 {**{k: f[k] for k in ("icl_window_steps", "final_layer1_prefix_matching",
                                       "final_icl_score")},
                  "baseline_final_icl_score": b["final_icl_score"]},
                 criterion=f"no ICL window is detected and every layer-1 head ends with prefix "
                           f"matching < {INDUCTION_THRESHOLD}", paper=PAPER)
    f = facts["ablate_one"]
    ok = f["icl_window_steps"] is not None and f["final_layer1_prefix_matching"] >= \
        INDUCTION_THRESHOLD
    ex.claim(f"ablate_one_l0_keeps_phase_change[{f['run']}]",
             f"ablating one layer-0 head that is not a previous-token head (L0H{quiet_head}) "
             "does not prevent the phase change", ok,
             {"ablated_head": quiet_head,
              "its_baseline_previous_token_score": float(last["value"].iloc[0]),
              **{k: f[k] for k in ("icl_window_steps", "final_layer1_prefix_matching",
                                   "induction_step")},
              "baseline_induction_step": b["induction_step"]},
             criterion=f"an ICL window is detected and a layer-1 head ends with prefix matching "
                       f">= {INDUCTION_THRESHOLD}", paper=PAPER)

    icl_windows = windows[windows["signal"] == "icl_score"]
    ex.figure("icl_score", lambda: C.plot("icl_score_curve", frame, windows=icl_windows),
              caption="ICL score over training: baseline and intervened runs")
    for key, run in {"baseline": base, **runs}.items():
        ex.figure(f"prefix_matching_{key}",
                  lambda r=run: C.plot("head_score_curves", frame, metric="prefix_matching",
                                       run=r, windows=icl_windows),
                  caption=f"{run}: prefix-matching score of every head")
    if ex.full or ex.tiny:
        llc_runs = (base, runs["clamp"])
        settings = (replace(ex.settings, llc_chains=1, llc_draws=4) if ex.tiny
                    else ex.settings)
        llc = pd.concat([ex.evaluate(r, ["llc"], settings=settings, every=1 if ex.tiny else 2)
                         for r in llc_runs], ignore_index=True)
        both = pd.concat([frame[frame["run"].isin(llc_runs)], llc], ignore_index=True)
        llc_windows = phase_changes(both, signals=("icl_score", "llc"))
        ex.facts["llc"] = {r: {
            "final_llc": float(llc[(llc["run"] == r) & (llc["metric"] == "llc")]
                               .sort_values("step")["value"].iloc[-1]),
            "max_trace_drift": float(llc[(llc["run"] == r)
                                         & (llc["metric"] == "llc_trace_drift")]["value"]
                                     .abs().max())} for r in llc_runs}
        ex.facts["llc_windows"] = llc_windows.to_dict(orient="records")
        for r in llc_runs:
            ex.figure(f"llc_{r}", lambda r=r: C.plot("llc_curve", both, run=r,
                                                     windows=llc_windows[llc_windows["run"] == r],
                                                     window_signal=None),
                      caption=f"{r}: LLC over training beside prefix matching and ICL score")


def main(argv: Sequence[str] | None = None) -> int:
    return C.main(NAME, TITLE, body, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
