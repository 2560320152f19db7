"""Argument 2 (macroscopic co-perturbation): smeared keys let one layer form induction heads
and make two layers form them earlier; the jump in in-context learning moves with them.

Olsson et al. 2022, Argument 2 and its figure (an excerpt of the Model Analysis Table's
smeared-key series): "when we use the smeared-key architecture, in-context learning does indeed
form for one-layer models (when it didn't before), and it forms earlier for two-layer and larger
models", and the table's caption "(1) a one-layer smeared-key model experiences the phase change,
while a regular one-layer model does not; and (2) the two-layer smeared-key model experiences a
phase change earlier than a baseline model."

What runs (embedded synthetic corpus, laptop presets, 1000 steps unless ``--steps``): the
smeared-key models ``smeared-1l`` and ``smeared-2l`` and their vanilla controls
``attn-only-1l`` and ``attn-only-2l`` (same data, same order, same everything but the smear).
``--full`` repeats the two-layer comparison with a second weight-initialisation seed (runs
``smeared-2l-s1`` and ``attn-only-2l-s1``), since "earlier" from one pair of runs could be luck.

Claims (windows from :func:`induction_lens.analysis.phases.detect_phase_change`):

* ``smeared_1l_phase_change``: the smeared one-layer model has an ICL phase-change window and
  ends with an induction head (prefix matching >= 0.3);
* ``vanilla_1l_no_phase_change``: the vanilla one-layer model has no ICL window and no head
  reaching 0.3 prefix matching;
* ``smeared_2l_earlier[...]``: both two-layer models have an ICL window and the smeared one's
  jump (the window's midpoint, in training tokens) comes first.

Run: ``python examples/arg2_smeared_keys.py [--hub hub] [--out DIR] [--full] [--tiny]``.
"""

import sys
from collections.abc import Sequence

import pandas as pd

from induction_lens.analysis.losses import per_token_loss_pca
from induction_lens.analysis.phases import detect_phase_change, phase_changes

import _common as C

NAME = "arg2_smeared_keys"
TITLE = "Argument 2: smeared keys move the phase change (1 layer gets it, 2 layers earlier)"
PAPER = "Argument 2 (figure: smeared-key vs vanilla models; Model Analysis Table, smeared series)"
INDUCTION_THRESHOLD = 0.3


def _final_prefix(frame: pd.DataFrame, run: str) -> float:
    rows = frame[(frame["run"] == run) & (frame["metric"] == "prefix_matching")]
    return float(rows.loc[rows["step"] == rows["step"].max(), "value"].max())


def _window_facts(window) -> dict:
    if window is None:
        return {"window_steps": None, "jump_tokens": None, "icl_after": None}
    return {"window_steps": [window.start_step, window.end_step],
            "jump_tokens": window.mid_tokens, "icl_after": window.end_value}


def body(ex: C.Example) -> None:
    runs = {p: ex.ensure_run(p) for p in ("attn-only-1l", "smeared-1l", "attn-only-2l",
                                          "smeared-2l")}
    pairs = [("smeared-2l", "attn-only-2l", runs["smeared-2l"], runs["attn-only-2l"])]
    if ex.full:
        s1 = {p: ex.ensure_run(p, seed=1) for p in ("attn-only-2l", "smeared-2l")}
        pairs.append(("smeared-2l", "attn-only-2l", s1["smeared-2l"], s1["attn-only-2l"]))
        runs.update({f"{p}-s1": r for p, r in s1.items()})
    frame = pd.concat([ex.evaluate(r, ["losses", "prefix_matching"]) for r in runs.values()],
                      ignore_index=True)
    windows = phase_changes(frame, signals=("icl_score", "prefix_matching"))
    ex.facts["windows"] = windows.to_dict(orient="records")

    smeared_1l, vanilla_1l = runs["smeared-1l"], runs["attn-only-1l"]
    win = detect_phase_change(frame, signal="icl_score", run=smeared_1l)
    prefix = _final_prefix(frame, smeared_1l)
    ex.claim(f"smeared_1l_phase_change[{smeared_1l}]",
             "a one-layer model with smeared keys goes through the phase change and forms "
             "induction heads", win is not None and prefix >= INDUCTION_THRESHOLD,
             {**_window_facts(win), "final_max_prefix_matching": prefix},
             criterion=f"an ICL window is detected and the best head ends with prefix matching "
                       f">= {INDUCTION_THRESHOLD}", paper=PAPER)
    win = detect_phase_change(frame, signal="icl_score", run=vanilla_1l)
    prefix = _final_prefix(frame, vanilla_1l)
    ex.claim(f"vanilla_1l_no_phase_change[{vanilla_1l}]",
             "the vanilla one-layer control has no phase change and no induction head",
             win is None and prefix < INDUCTION_THRESHOLD,
             {**_window_facts(win), "final_max_prefix_matching": prefix},
             criterion=f"no ICL window is detected and every head ends with prefix matching "
                       f"< {INDUCTION_THRESHOLD}", paper=PAPER)
    for _, _, smeared, vanilla in pairs:
        a = detect_phase_change(frame, signal="icl_score", run=smeared)
        b = detect_phase_change(frame, signal="icl_score", run=vanilla)
        earlier = a is not None and b is not None and a.mid_tokens < b.mid_tokens
        ex.claim(f"smeared_2l_earlier[{smeared} vs {vanilla}]",
                 "the two-layer smeared-key model goes through the phase change earlier than "
                 "its vanilla control", earlier,
                 {"smeared_window_steps": None if a is None else [a.start_step, a.end_step],
                  "vanilla_window_steps": None if b is None else [b.start_step, b.end_step],
                  "smeared_jump_tokens": None if a is None else a.mid_tokens,
                  "vanilla_jump_tokens": None if b is None else b.mid_tokens,
                  "ratio": None if a is None or b is None else C.fraction(a.mid_tokens,
                                                                          b.mid_tokens)},
                 criterion="both have an ICL window and the smeared model's jump (window "
                           "midpoint, training tokens) comes before the vanilla one's",
                 paper=PAPER)

    icl_windows = windows[windows["signal"] == "icl_score"]
    ex.figure("icl_score", lambda: C.plot("icl_score_curve", frame, windows=icl_windows),
              caption="ICL score over training, smeared-key models and vanilla controls")
    ex.figure("loss", lambda: C.plot("loss_curve", frame, windows=icl_windows),
              caption="loss over training")
    for run in (smeared_1l, runs["smeared-2l"]):
        ex.figure(f"prefix_matching_{run}",
                  lambda r=run: C.plot("head_score_curves", frame, metric="prefix_matching",
                                       run=r, windows=icl_windows),
                  caption=f"{run}: prefix-matching score of every head")
    ex.figure("pca", lambda: C.plot("pca_trajectories", per_token_loss_pca(frame)),
              caption="per-token-loss PCA trajectories in one basis")


def main(argv: Sequence[str] | None = None) -> int:
    return C.main(NAME, TITLE, body, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
