"""``induction-lens report``: the Model Analysis Table of runs as one offline HTML page."""

import argparse
import dataclasses

from induction_lens.hub import Hub
from induction_lens.runs import EvalSettings
from induction_lens.viz.report import build_report


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``induction-lens report --hub DIR --runs R1 R2 ... --out report.html``."""
    p = subparsers.add_parser(
        "report", help="write the Model Analysis Table of runs as one offline HTML page",
        description="Evaluate what is missing (cached in RUN/evals) and write one "
                    "self-contained HTML page laid out like the paper's Model Analysis Table: "
                    "a row per measurement, a column per run. It opens offline.")
    p.add_argument("--hub", default="hub", help="hub directory (default ./hub)")
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN",
                   help="run names, one column each")
    p.add_argument("--out", default="report.html", help="HTML file (default report.html)")
    p.add_argument("--every", type=int, default=1, help="use every k-th checkpoint")
    p.add_argument("--ablations", choices=["auto", "yes", "no"], default="auto",
                   help="auto: draw cached ablations where present (default); yes: compute "
                        "missing ones (slow); no: leave the ablation rows out")
    p.add_argument("--kind", choices=["pattern", "full"], default="pattern",
                   help="ablation kind (pattern-preserving is the paper's)")
    p.add_argument("--n-examples", type=int, default=None,
                   help="evaluation examples for per-token losses (default: the sweep's)")
    p.add_argument("--title", default=None, help="page title")
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``induction-lens report``: builds the page, prints where and what it wrote."""
    settings = EvalSettings()
    if args.n_examples is not None:
        settings = dataclasses.replace(settings, n_examples=args.n_examples)
    hub = Hub(args.hub, must_exist=True)
    report = build_report(hub, args.runs, args.out, every=args.every, settings=settings,
                          ablations=args.ablations, kind=args.kind, title=args.title,
                          device=args.device, progress=not args.quiet)
    print(f"wrote {report.path} ({len(report.runs)} runs, {len(report.rows)} rows, "
          f"{report.figures} figures, {report.size_bytes / 2**20:.1f} MiB) in "
          f"{report.seconds:.1f} s")
    for note in report.notes:
        print(f"  note: {note}")
    return 0
