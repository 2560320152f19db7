"""The Model Analysis Table of a public checkpoint series (Pythia), for online users.

    python examples/pretrained_series.py --model pythia-70m --checkpoints 0 512 1000 2000 4000

imports the chosen checkpoints into the hub (skipping those already there), evaluates them
(per-token losses on Pile text, the ICL score, the head evaluators with the model's own BOS)
and writes the report page. It needs the HuggingFace hub (or the checkpoints in the local
HuggingFace cache): offline it stops within seconds and says so; offline, pass ``--model DIR``
(a directory of ``save_pretrained`` revisions ``DIR/step1000/``, ...) with
``--tokens-per-step`` and ``--data files:PATH``.
"""

import argparse
import sys

import torch

from induction_lens.analysis.summary import checkpoint_summary
from induction_lens.errors import InductionLensError
from induction_lens.pretrained import import_pretrained
from induction_lens.runs.evaluate import evaluate_run
from induction_lens.runs.settings import EvalSettings
from induction_lens.viz.report import build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pythia-70m",
                        help="TransformerLens name of a series, or a directory of revisions")
    parser.add_argument("--checkpoints", type=int, nargs="+",
                        default=[0, 64, 256, 512, 1000, 2000, 4000, 8000],
                        help="steps to import (Pythia: 0, 1, 2, 4, ..., 512, 1000, ..., 143000)")
    parser.add_argument("--hub", default="hub", help="hub directory (default ./hub)")
    parser.add_argument("--run", default=None, help="run name (default: the model's name)")
    parser.add_argument("--data", default="hf:NeelNanda/pile-10k",
                        help="evaluation text (default: 10k documents of the Pile)")
    parser.add_argument("--tokens-per-step", type=int, default=None,
                        help="needed for a local directory (Pythia: 2097152)")
    parser.add_argument("--n-examples", type=int, default=256,
                        help="evaluation examples of 512 tokens (the paper: 10000)")
    parser.add_argument("--out", default="pretrained_report.html", help="the report page")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        result = import_pretrained(args.model, checkpoints=args.checkpoints, hub=args.hub,
                                   run=args.run, device=args.device, data=args.data,
                                   tokens_per_step=args.tokens_per_step)
        print(f"run {result.run!r}: imported {list(result.imported)}, "
              f"already there {list(result.skipped)}")
        settings = EvalSettings(n_examples=args.n_examples, batch_size=8)
        frame = evaluate_run(args.hub, result.run, settings=settings, device=args.device)
        print(checkpoint_summary(frame).drop(columns=["run"]).to_string(index=False))
        report = build_report(args.hub, [result.run], args.out, settings=settings,
                              ablations="no", device=args.device)
        print(f"wrote {report}")
    except InductionLensError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
