"""``induction-lens evaluate``: evaluate the checkpoints of runs into the hub's cache."""

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from induction_lens.analysis.phases import phase_changes
from induction_lens.analysis.summary import checkpoint_summary
from induction_lens.frame import tidy
from induction_lens.hub import Hub
from induction_lens.io import atomic_write_parquet
from induction_lens.runs import METRICS, EvalSettings, cache_path, evaluate_run
from induction_lens.runs.registry import resolve_metrics


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``induction-lens evaluate RUN [RUN...] --hub DIR ...`` to a subparsers object."""
    p = subparsers.add_parser(
        "evaluate", help="evaluate the checkpoints of runs; write RUN/evals/*.parquet",
        description="Evaluate every (or every k-th) checkpoint of the runs with the chosen "
                    "metrics, cache the results as RUN/evals/{metric}.parquet in the hub "
                    "(recomputed only when missing or stale), and print ICL and prefix-matching "
                    "scores per checkpoint with the detected phase-change windows.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run name(s) in the hub")
    p.add_argument("--hub", default="hub", help="hub directory (default ./hub)")
    p.add_argument("--metrics", nargs="+", default=None, metavar="METRIC",
                   help="metric names, space- or comma-separated, or 'all' (registered: "
                        f"{', '.join(sorted(METRICS))}; default: the default ones)")
    p.add_argument("--every", type=int, default=1, help="evaluate every k-th checkpoint")
    p.add_argument("--n-examples", type=int, default=None,
                   help=f"evaluation examples for per-token losses (default "
                        f"{EvalSettings().n_examples}; the paper: 10000)")
    p.add_argument("--icl-indices", type=int, nargs=2, default=None, metavar=("EARLY", "LATE"),
                   help="context indices of the ICL score (default: the paper's 50 and 500, "
                        "scaled to shorter contexts)")
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.add_argument("--out", default=None,
                   help="also write the combined tidy frame of all runs to this parquet file")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write RUN/evals")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``induction-lens evaluate``: evaluates, writes the parquet, prints a summary."""
    overrides: dict[str, Any] = {}
    if args.n_examples is not None:
        overrides["n_examples"] = args.n_examples
    if args.icl_indices is not None:
        overrides["icl_indices"] = tuple(args.icl_indices)
    settings = EvalSettings(**overrides)
    hub = Hub(args.hub, must_exist=True)
    frames = []
    for run in args.runs:
        frame = evaluate_run(hub, run, metrics=args.metrics, every=args.every, settings=settings,
                             cache=not args.no_cache, device=args.device,
                             progress=not args.quiet)
        frames.append(frame)
        summary = checkpoint_summary(frame)
        with pd.option_context("display.max_rows", 500, "display.width", 160,
                               "display.max_columns", 30, "display.float_format", "{:.3f}".format):
            print(f"run {run!r}:")
            print(summary.drop(columns=["run"]).to_string(index=False))
        windows = phase_changes(frame)
        for row in windows.itertuples():
            if row.detected:
                print(f"  {row.signal}: phase change from step {row.start_step} to "
                      f"{row.end_step} (tokens {row.start_tokens:,} to {row.end_tokens:,}), "
                      f"change {row.change:+.3f}")
            else:
                print(f"  {row.signal}: no phase change")
        if not args.no_cache:
            written = sorted({str(cache_path(hub, run, m.name))
                              for m in resolve_metrics(args.metrics)})
            print("  cached in " + ", ".join(written))
    if args.out:
        combined = tidy(pd.concat(frames, ignore_index=True))
        atomic_write_parquet(Path(args.out), combined)
        print(f"wrote {args.out}")
    return 0
