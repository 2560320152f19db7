"""``induction-lens import``: a pretrained checkpoint series (Pythia, a local dir) as a run."""

import argparse

from induction_lens.pretrained import import_pretrained


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``induction-lens import NAME_OR_DIR --checkpoints ... --hub DIR --run RUN``."""
    p = subparsers.add_parser(
        "import", help="import a pretrained checkpoint series (Pythia, a local directory)",
        description="Import checkpoints of a pretrained series into the hub as an ordinary run "
                    "(unprocessed HookedTransformer weights, tokens per checkpoint, the "
                    "tokenizer). Checkpoints already in the run are skipped. Online for "
                    "TransformerLens names (pythia-70m); offline for a local directory of "
                    "save_pretrained revisions DIR/step1000/, DIR/step2000/, ...")
    p.add_argument("source", help="TransformerLens model name (pythia-70m) or a directory")
    p.add_argument("--checkpoints", type=int, nargs="+", default=None, metavar="STEP",
                   help="steps to import (default: every checkpoint of the series)")
    p.add_argument("--hub", default="hub", help="hub directory (default ./hub)")
    p.add_argument("--run", default=None, help="run name (default: the series' name)")
    p.add_argument("--tokens-per-step", type=int, default=None,
                   help="training tokens per step (known for Pythia; required for local dirs)")
    p.add_argument("--data", default=None,
                   help="evaluation text: hf:NAME, files:PATH[,PATH] or shakespeare")
    p.add_argument("--device", default="cpu", help="torch device of the conversion")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``induction-lens import``: imports, prints what it did."""
    result = import_pretrained(args.source, checkpoints=args.checkpoints, hub=args.hub,
                               run=args.run, device=args.device,
                               tokens_per_step=args.tokens_per_step, data=args.data,
                               progress=not args.quiet)
    print(f"run {result.run!r}: imported {len(result.imported)} checkpoint(s) "
          f"{list(result.imported)}, skipped {len(result.skipped)} already present")
    return 0
