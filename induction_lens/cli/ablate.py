"""``induction-lens ablate``: ablate every head at every checkpoint of a run (Argument 3)."""

import argparse
import dataclasses
from typing import get_args

import pandas as pd

from induction_lens.hub import Hub
from induction_lens.measures.ablations import DEFAULT_CONTEXT_FRACTION, AblationKind
from induction_lens.runs import EvalSettings, ablate_run, ablation_path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``induction-lens ablate RUN --hub DIR --kind pattern [--every K]``."""
    p = subparsers.add_parser(
        "ablate", help="ablate every head at every checkpoint of a run (Argument 3)",
        description="Full or pattern-preserving ablation of each attention head at each "
                    "checkpoint; writes RUN/evals/ablation_KIND.parquet.")
    p.add_argument("run", help="run name in the hub")
    p.add_argument("--hub", default="hub", help="hub directory (default ./hub)")
    p.add_argument("--kind", choices=list(get_args(AblationKind)), default="pattern",
                   help="pattern: pattern-preserving (the paper's table); full: recompute all")
    p.add_argument("--every", type=int, default=1, help="use every K-th checkpoint")
    p.add_argument("--window", type=int, nargs=2, metavar=("START", "END"),
                   help="phase-change window in steps (default: detected from the ICL score)")
    p.add_argument("--examples", type=int, help="evaluation examples (default: the sweep's "
                   "laptop 512; --paper: 10,000)")
    p.add_argument("--paper", action="store_true", help="the paper's 10,000 examples")
    p.add_argument("--context-fraction", type=float, default=DEFAULT_CONTEXT_FRACTION,
                   help="share of examples averaged per context index (1: all)")
    p.add_argument("--batch-size", type=int, help="examples per pass (default: from memory)")
    p.add_argument("--heads-per-pass", type=int, default=1,
                   help="heads of one layer stacked into one pass (for GPUs)")
    p.add_argument("--device", help="torch device (default cpu)")
    p.add_argument("--force", action="store_true", help="recompute even if cached")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """CLI handler: run :func:`ablate_run`, print where it wrote and the newest checkpoint."""
    settings = EvalSettings.paper() if args.paper else EvalSettings()
    if args.examples is not None:
        settings = dataclasses.replace(settings, n_examples=args.examples)
    hub = Hub(args.hub, must_exist=True)
    frame = ablate_run(hub, args.run, args.kind, every=args.every, window=args.window,
                       settings=settings, context_fraction=args.context_fraction,
                       batch_size=args.batch_size, heads_per_pass=args.heads_per_pass,
                       device=args.device, progress=not args.quiet, force=args.force)
    path = ablation_path(hub, args.run, args.kind)
    last = frame[frame["step"] == frame["step"].max()]
    names = ("icl_score_delta", "before_after_projection", "random_token_loss_delta")
    table = (last[last["metric"].isin(names)]
             .pivot_table(index=["layer", "head"], columns="metric", values="value"))
    clean = last.loc[last["metric"] == "clean_icl_score", "value"]
    window = frame.attrs.get("window")
    print(f"{args.kind} ablations of {frame['step'].nunique()} checkpoints of run "
          f"{args.run!r} -> {path}")
    span = f"steps {window[0]}-{window[1]}" if window else "none"
    print(f"phase window: {span}; step "
          f"{int(last['step'].iloc[0])}: clean ICL score {float(clean.iloc[0]):.3f} nats")
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(table.round(4).to_string())
    return 0
