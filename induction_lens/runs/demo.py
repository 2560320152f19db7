"""``induction-lens demo``: watch an induction head form, and not form, in a few minutes.

Trains the laptop ``attn-only-1l`` and ``attn-only-2l`` presets on the embedded synthetic corpus
into a hub (runs already there are resumed or reused), evaluates every checkpoint, and reports
per checkpoint the loss, the in-context-learning score and the best prefix-matching score, then
the detected phase-change windows. The paper's Argument 1 in miniature: the 2-layer model's
ICL score drops abruptly in the same window in which a layer-1 head starts prefix matching; the
1-layer model has no such window.

Level: ``runs`` (trains, then evaluates; the CLI prints what ``echo`` receives).
"""

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from induction_lens.analysis.phases import co_occurrence, detect_phase_change
from induction_lens.analysis.summary import checkpoint_summary
from induction_lens.hub import Hub
from induction_lens.runs.evaluate import evaluate_run
from induction_lens.train import train

DEMO_RUNS = ("attn-only-1l", "attn-only-2l")


def run_demo(hub: str | Path = "hub", *, steps: int = 1000, resume: bool = True,
             progress: bool = True, echo: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Train and evaluate the demo runs; return the per-checkpoint summary of both.

    Args:
        hub: hub directory (created if missing).
        steps: training steps per model (the laptop presets form the induction head around
            step 600).
        resume: continue runs already in the hub instead of refusing them.
        progress: tqdm progress bars.
        echo: where the report lines go (the CLI passes ``print``); None reports nothing.
    """
    say = echo or (lambda line: None)
    hub = Hub.of(hub)
    frames = []
    for preset in DEMO_RUNS:
        exists = preset in hub.runs()
        train(preset, hub=hub, run=preset, steps=steps, resume=resume and exists,
              progress=progress)
        frame = evaluate_run(hub, preset, metrics=["losses", "prefix_matching"],
                             progress=progress)
        frames.append(frame)
        summary = checkpoint_summary(frame)
        say(f"\n{preset}: loss and in-context learning per checkpoint "
            "(ICL score = loss at a late token minus an early one; negative = learns in context)")
        table = summary[["step", "train_tokens", "loss", "icl_score", "max_prefix_matching"]]
        say(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    combined = pd.concat(frames, ignore_index=True)
    say("")
    for preset in DEMO_RUNS:
        icl = detect_phase_change(combined, signal="icl_score", run=preset)
        prefix = detect_phase_change(combined, signal="prefix_matching", run=preset)
        if icl is None:
            say(f"{preset}: no phase change detected (as the paper finds for one layer)")
            continue
        overlap = co_occurrence(icl, prefix)
        say(f"{preset}: phase change in steps {icl.start_step}-{icl.end_step} "
            f"(tokens {icl.start_tokens:,}-{icl.end_tokens:,}); ICL score "
            f"{icl.start_value:.2f} -> {icl.end_value:.2f}"
            + ("" if prefix is None else
               f"; prefix-matching window {prefix.start_step}-{prefix.end_step}, "
               f"lag {overlap['lag_steps']:+.0f} steps"))
    return checkpoint_summary(combined)
