"""Argument 5 (mechanistic plausibility): the weights say what the behaviour says — the QK
circuit's previous-token term predicts prefix matching, the OV circuit's eigenvalues predict
copying, and the induction heads K-compose with the previous-token heads.

Olsson et al. 2022, Argument 5 ("Summary of reverse engineering induction heads": "Copying is
done by the OV circuit [...] most easily characterized by its positive eigenvalues"; "Prefix
matching is implemented with K-composition [...] with an earlier 'previous token head' to create
a QK-circuit term of the form Id ⊗ h_prev ⊗ W where W has positive eigenvalues") and the
appendix "Validating head activation evaluators" (the prefix-matching evaluator "correlates
well with the trace of QK eigenvalues for the previous-token QK-circuit term", the copying
evaluator with the OV eigenvalues). The measures are
:mod:`induction_lens.measures.circuits` (weights only, plus the previous-token scores for the QK
trace); the behavioural scores are the appendix's head activation evaluators.

What runs (embedded synthetic corpus, laptop presets, 1000 steps unless ``--steps``):
``attn-only-2l`` and ``attn-only-3l``; ``--full`` adds ``attn-only-4l`` and ``smeared-2l``.
Every checkpoint is measured (cached in the hub). Claims:

* ``qk_trace_tracks_prefix_matching``: Spearman's rho between the QK trace and the
  prefix-matching score over every head (layers >= 1) x checkpoint of all runs is >= 0.5;
* ``ov_copying_tracks_copying``: Spearman's rho between the OV eigenvalue measure and the copying
  score over every head x checkpoint is >= 0.5;
* per run, at the last checkpoint: ``induction_heads_copy`` (every induction head's OV
  circuit has ``sum Re(lambda) / sum |lambda| >= 0.9``: positive eigenvalues),
  ``induction_heads_prefix_match_by_weights`` (every induction head's QK trace is positive and
  above every non-induction head's in layers >= 1) and ``k_composition_with_previous_token_heads``
  (the mean K-composition score from previous-token heads into induction heads exceeds the
  random baseline and the mean over all other earlier-to-later pairs).

Run: ``python examples/arg5_mechanism.py [--hub hub] [--out DIR] [--full] [--tiny]``.
"""

import sys
from collections.abc import Sequence

import pandas as pd

from induction_lens.analysis.heads import classify_heads
from induction_lens.runs.circuits import validate_circuits

import _common as C

NAME = "arg5_mechanism"
TITLE = "Argument 5: QK trace and OV eigenvalues match prefix matching and copying"
PAPER = ("Argument 5 (reverse engineering induction heads); appendix 'Validating head "
         "activation evaluators'")
DEFAULT_PRESETS = ("attn-only-2l", "attn-only-3l")
FULL_PRESETS = ("attn-only-2l", "attn-only-3l", "attn-only-4l", "smeared-2l")
MIN_RHO = 0.5
MIN_OV_COPYING = 0.9


def body(ex: C.Example) -> None:
    presets: Sequence[str] = FULL_PRESETS if ex.full else DEFAULT_PRESETS
    runs = [ex.ensure_run(p) for p in presets]
    joined, rho = validate_circuits(ex.hub, runs, settings=ex.settings, progress=not ex.quiet)
    ex.facts["spearman"] = rho
    n_qk = int(joined[(joined["layer"] >= 1)][["qk_trace", "prefix_matching"]].dropna().shape[0])
    ex.claim("qk_trace_tracks_prefix_matching",
             "the QK trace of the previous-token term tracks the prefix-matching score",
             rho["qk_trace~prefix_matching"] >= MIN_RHO,
             {"spearman_rho": rho["qk_trace~prefix_matching"], "n_head_snapshots": n_qk,
              **{k: v for k, v in rho.items() if k.endswith(":qk_trace~prefix_matching")}},
             criterion=f"Spearman's rho over every head (layers >= 1) x checkpoint of {runs} "
                       f">= {MIN_RHO}", paper=PAPER)
    ex.claim("ov_copying_tracks_copying",
             "the OV circuit's eigenvalues track the copying score",
             rho["ov_copying~copying"] >= MIN_RHO,
             {"spearman_rho": rho["ov_copying~copying"],
              "n_head_snapshots": int(joined[["ov_copying", "copying"]].dropna().shape[0]),
              **{k: v for k, v in rho.items() if k.endswith(":ov_copying~copying")}},
             criterion=f"Spearman's rho over every head x checkpoint of {runs} >= {MIN_RHO}",
             paper=PAPER)

    for run in runs:
        last = int(joined.loc[joined["run"] == run, "step"].max())
        final = joined[(joined["run"] == run) & (joined["step"] == last)]
        long = final.melt(id_vars=["layer", "head"], value_vars=[
            c for c in ("prefix_matching", "copying", "previous_token") if c in final],
            var_name="metric", value_name="value")
        types = classify_heads(long)
        final = final.merge(types[["layer", "head", "head_type"]], on=["layer", "head"])
        ind = final[final["head_type"] == "induction"]
        later = final[(final["layer"] >= 1) & (final["head_type"] != "induction")]
        ex.claim(f"induction_heads_copy[{run}]",
                 "induction heads' OV circuits copy (positive eigenvalues)",
                 len(ind) > 0 and float(ind["ov_copying"].min()) >= MIN_OV_COPYING,
                 {"step": last, "n_induction_heads": len(ind),
                  "min_ov_copying": float(ind["ov_copying"].min()) if len(ind) else None,
                  "max_ov_copying_other": float(final.loc[final["head_type"] != "induction",
                                                          "ov_copying"].max())},
                 criterion=f"every induction head has ov_copying >= {MIN_OV_COPYING}",
                 paper=PAPER)
        ex.claim(f"induction_heads_prefix_match_by_weights[{run}]",
                 "induction heads' QK circuits carry a positive previous-token (K-composition) "
                 "term, larger than other heads'",
                 len(ind) > 0 and float(ind["qk_trace"].min()) > 0
                 and (later.empty or float(ind["qk_trace"].min()) > float(
                     later["qk_trace"].max())),
                 {"step": last, "min_qk_trace_induction": float(ind["qk_trace"].min())
                  if len(ind) else None,
                  "max_qk_trace_other": float(later["qk_trace"].max()) if len(later) else None},
                 criterion="every induction head's qk_trace > 0 and > every non-induction "
                           "head's in layers >= 1", paper=PAPER)
        comp = ex.evaluate(run, "composition", steps=[last])
        ex.figure(f"k_composition_{run}",
                  lambda f=comp, r=run, s=last: C.plot("composition_heatmap", f,
                                                       kind="k_composition", step=s, run=r),
                  caption=f"{run}: K-composition scores (minus the random baseline) at step "
                          f"{last}")
        k = comp[comp["metric"] == "k_composition"].dropna(subset=["value"])
        baseline = float(comp.loc[comp["metric"] == "composition_baseline", "value"].iloc[0])
        kinds = dict(zip(zip(types["layer"], types["head"], strict=True), types["head_type"],
                         strict=True))
        src = [kinds.get((int(a), int(b))) for a, b in zip(k["source_layer"], k["source_head"],
                                                          strict=True)]
        tgt = [kinds.get((int(a), int(b))) for a, b in zip(k["layer"], k["head"], strict=True)]
        mask = pd.Series([s == "previous_token" and t == "induction" for s, t in
                          zip(src, tgt, strict=True)], index=k.index)
        prev_ind = float(k.loc[mask, "value"].mean()) if mask.any() else float("nan")
        rest = float(k.loc[~mask, "value"].mean()) if (~mask).any() else float("nan")
        ex.claim(f"k_composition_with_previous_token_heads[{run}]",
                 "induction heads K-compose with the previous-token heads",
                 bool(mask.any()) and prev_ind > baseline and (rest != rest or prev_ind > rest),
                 {"step": last, "mean_prev_to_induction": prev_ind, "mean_other_pairs": rest,
                  "baseline": baseline, "n_pairs": int(mask.sum())},
                 criterion="mean K-composition over (previous-token source, induction target) "
                           "pairs > the random baseline 1/sqrt(d_model) and > the mean over all "
                           "other earlier-to-later pairs", paper=PAPER)
        ex.figure(f"copying_vs_prefix_{run}",
                  lambda r=run: C.plot("copying_vs_prefix",
                                       joined[joined["run"] == r], step=None, run=r),
                  caption=f"{run}: copying vs prefix matching at the last checkpoint")

    ex.figure("qk_trace_vs_prefix_matching",
              lambda: C.plot("correlation_scatter", joined, x="qk_trace", y="prefix_matching",
                             coefficient=rho["qk_trace~prefix_matching"]),
              caption="QK trace vs prefix matching over heads x checkpoints")
    ex.figure("ov_copying_vs_copying",
              lambda: C.plot("correlation_scatter", joined, x="ov_copying", y="copying",
                             coefficient=rho["ov_copying~copying"]),
              caption="OV eigenvalue copying vs copying score over heads x checkpoints")


def main(argv: Sequence[str] | None = None) -> int:
    return C.main(NAME, TITLE, body, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
