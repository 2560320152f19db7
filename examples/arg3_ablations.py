"""Argument 3 (direct ablation): knocking out the induction heads removes most of the in-context
learning of small attention-only models; knocking out the other heads removes little.

Olsson et al. 2022, Argument 3 and its figure (an excerpt of the Model Analysis Table's
ablation rows): "In fact, *almost all* the in-context learning in small attention-only models
appears to come from these induction heads! This begins at the start of the phase change, and
remains true through the end of training." The ablation is the paper's pattern-preserving one
(appendix "(2) Per-token losses (attention head ablations)": the head's result is zeroed while
every attention pattern is forced to its clean value), computed by
:func:`induction_lens.runs.ablate_run` (every checkpoint, every head, cached in the
hub) and :func:`~induction_lens.measures.ablations.ablate` (joint ablations).

What runs (embedded synthetic corpus, laptop presets, 1000 steps unless ``--steps``):
``attn-only-2l`` and ``attn-only-3l``; ``--full`` adds ``attn-only-4l`` and the models with
MLPs ``mlp-2l`` and ``mlp-3l`` (for which the paper calls the evidence only suggestive).

Heads are typed at the last checkpoint by
:func:`~induction_lens.analysis.heads.classify_heads` (induction: prefix matching >= 0.3 and
copying >= -0.5; previous token; other). Claims at the last checkpoint, per model:

* ``induction_heads_carry_icl``: ablating all induction heads together removes at least 75% of
  the ICL score (``(ICL_ablated - ICL_clean) / |ICL_clean| >= 0.75``). Jointly, because a
  model can have several redundant induction heads, each of which alone removes little;
* ``other_heads_carry_little``: ablating all the other heads together removes at most 25%
  (a negative value means the ICL score got *more* negative without them);
* ``induction_heads_rank_first``: every induction head's own ablation changes the ICL score
  more than any other head's (the ordering the paper's per-head plot shows);
* ``phase_change_attribution``: the ICL score has a phase-change window and, projected on the
  before-and-after vector of that window, ablating the induction heads undoes more of the phase
  change than ablating the others (summed projections, the table's second ablation row).

Run: ``python examples/arg3_ablations.py [--hub hub] [--out DIR] [--full] [--tiny]``.
"""

import sys
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import torch

from induction_lens.analysis.phases import detect_phase_change, phase_changes
from induction_lens.measures.ablations import ablate
from induction_lens.measures.losses import icl_indices
from induction_lens.runs.ablations import ablate_run, head_types

import _common as C

NAME = "arg3_ablations"
TITLE = "Argument 3: pattern-preserving ablations put the ICL score in the induction heads"
PAPER = "Argument 3 (figure: ablation attribution per head; Model Analysis Table, ablation rows)"
DEFAULT_PRESETS = ("attn-only-2l", "attn-only-3l")
FULL_PRESETS = ("attn-only-2l", "attn-only-3l", "attn-only-4l", "mlp-2l", "mlp-3l")
CARRY_MOST = 0.75
CARRY_LITTLE = 0.25
KIND = "pattern"


def _joint_icl_delta(ex: C.Example, run: str, heads: list[tuple[int, int]]) -> tuple[float,
                                                                                        float]:
    """(clean ICL score, change of the ICL score when ``heads`` are ablated together)."""
    model = ex.hub.load_model(run, device=ex.args.device)
    tokens = ex.hub.corpus(run).eval_tokens(ex.settings.n_examples)
    early, late = icl_indices(tokens.shape[1], ex.settings.icl_indices)
    idx = torch.tensor([early, late])
    if not heads:
        result = ablate(model, tokens, KIND, heads=[(0, 0)], indices=idx)
        clean = result.clean.double().mean(0)
        return float(clean[1] - clean[0]), float("nan")
    result = ablate(model, tokens, KIND, heads=heads, indices=idx, jointly=True)
    clean = result.clean.double().mean(0)
    delta = result.delta[0].double().mean(0)
    return float(clean[1] - clean[0]), float(delta[1] - delta[0])


def body(ex: C.Example) -> None:
    presets: Sequence[str] = FULL_PRESETS if ex.full else DEFAULT_PRESETS
    runs = [ex.ensure_run(p) for p in presets]
    losses = pd.concat([ex.evaluate(r, "losses") for r in runs], ignore_index=True)
    windows = phase_changes(losses, signals=("icl_score",))
    bars = []
    for run in runs:
        # The before-and-after vector spans the ICL window; without one (e.g. --tiny), the
        # whole run, so that the code runs, but then the attribution claim FAILs.
        icl = detect_phase_change(losses, signal="icl_score", run=run)
        steps = sorted(int(s) for s in losses.loc[losses["run"] == run, "step"].unique())
        span = (icl.start_step, icl.end_step) if icl is not None else (steps[1], steps[-1])
        frame = ablate_run(ex.hub, run, KIND, settings=ex.settings, window=span,
                           device=ex.args.device, progress=not ex.quiet)
        types = head_types(ex.hub, run, settings=ex.settings, device=ex.args.device)
        last = int(frame["step"].max())
        final = frame[frame["step"] == last]
        induction = [(int(r.layer), int(r.head)) for r in types.itertuples()
                     if r.head_type == "induction"]
        others = [(int(r.layer), int(r.head)) for r in types.itertuples()
                  if r.head_type != "induction"]
        clean, d_ind = _joint_icl_delta(ex, run, induction)
        _, d_oth = _joint_icl_delta(ex, run, others)
        removed_ind = C.fraction(d_ind, -clean)
        removed_oth = C.fraction(d_oth, -clean)
        bars.append({"run": run, "clean": clean, "induction": clean + d_ind,
                     "others": clean + d_oth})
        ex.facts[f"head_types[{run}]"] = types.to_dict(orient="records")
        ex.claim(f"induction_heads_carry_icl[{run}]",
                 "knocking out the induction heads removes most of the in-context learning",
                 len(induction) > 0 and removed_ind >= CARRY_MOST,
                 {"step": last, "n_induction_heads": len(induction), "clean_icl": clean,
                  "icl_without_induction_heads": clean + d_ind, "fraction_removed": removed_ind},
                 criterion=f"jointly ablating every induction head (pattern-preserving) removes "
                           f">= {CARRY_MOST:.0%} of the clean ICL score", paper=PAPER)
        ex.claim(f"other_heads_carry_little[{run}]",
                 "knocking out all the other heads removes little in-context learning",
                 len(others) > 0 and removed_oth <= CARRY_LITTLE,
                 {"step": last, "n_other_heads": len(others), "clean_icl": clean,
                  "icl_without_other_heads": clean + d_oth, "fraction_removed": removed_oth},
                 criterion=f"jointly ablating every non-induction head removes <= "
                           f"{CARRY_LITTLE:.0%} of the clean ICL score (negative: the score "
                           "got more negative)", paper=PAPER,
                 note=None if removed_oth >= -CARRY_LITTLE or removed_oth != removed_oth else
                 "without the other heads the ICL score is markedly more negative: they help "
                 "early tokens more than late ones")
        single = final[final["metric"] == "icl_score_delta"]
        single = single.merge(types[["layer", "head", "head_type"]].astype(
            {"layer": "Int64", "head": "Int64"}), on=["layer", "head"])
        ind_vals = single.loc[single["head_type"] == "induction", "value"]
        oth_vals = single.loc[single["head_type"] != "induction", "value"]
        ex.claim(f"induction_heads_rank_first[{run}]",
                 "each induction head's own ablation costs more in-context learning than any "
                 "other head's", len(ind_vals) > 0 and len(oth_vals) > 0
                 and float(ind_vals.min()) > float(oth_vals.max()),
                 {"min_induction_delta": float(ind_vals.min()) if len(ind_vals) else None,
                  "max_other_delta": float(oth_vals.max()) if len(oth_vals) else None,
                  "sum_single_induction_deltas": float(ind_vals.sum()),
                  "joint_induction_delta": d_ind},
                 criterion="min over induction heads of the single-head ICL-score change > max "
                           "over the other heads", paper=PAPER)
        proj = final[final["metric"] == "before_after_projection"]
        if len(proj):
            proj = proj.merge(types[["layer", "head", "head_type"]].astype(
                {"layer": "Int64", "head": "Int64"}), on=["layer", "head"])
            p_ind = float(proj.loc[proj["head_type"] == "induction", "value"].sum())
            p_oth = float(proj.loc[proj["head_type"] != "induction", "value"].sum())
            ex.claim(f"phase_change_attribution[{run}]",
                     "ablating the induction heads undoes more of the phase change than "
                     "ablating the others",
                     icl is not None and p_ind < 0 and abs(p_ind) > abs(p_oth),
                     {"window_steps": list(span), "icl_window_detected": icl is not None,
                      "induction_projection_sum": p_ind, "other_projection_sum": p_oth},
                     criterion="an ICL window exists; the induction heads' summed projection "
                               "on its before-and-after vector is negative and larger in "
                               "magnitude than the other heads' sum", paper=PAPER)
        for metric in ("icl_score_delta", "before_after_projection"):
            if (frame["metric"] == metric).any():
                ex.figure(f"ablation_{metric}_{run}",
                          lambda m=metric, f=frame, t=types, r=run: C.plot(
                              "ablation_attribution", f, metric=m, kind=KIND, run=r, types=t,
                              windows=windows),
                          caption=f"{run}: pattern-preserving ablation, {metric}, per head over "
                                  "training, coloured by head type")

    def joint_bars() -> go.Figure:
        table = pd.DataFrame(bars)
        fig = go.Figure()
        for col, label in (("clean", "clean model"), ("induction", "induction heads ablated"),
                           ("others", "other heads ablated")):
            fig.add_bar(x=table["run"], y=table[col], name=label)
        fig.update_layout(title="ICL score at the last checkpoint, with joint ablations",
                          yaxis_title="ICL score (nats)", barmode="group")
        return fig

    ex.figure("joint_ablations", joint_bars,
              caption="ICL score of each model, and with its induction heads (or all other "
                      "heads) ablated together (pattern-preserving)")


def main(argv: Sequence[str] | None = None) -> int:
    return C.main(NAME, TITLE, body, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
