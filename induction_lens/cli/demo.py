"""``induction-lens demo``: train 1- and 2-layer models and watch an induction head form."""

import argparse

from induction_lens.runs.demo import run_demo


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = sub.add_parser("demo", help="train 1- and 2-layer models and watch induction heads form")
    p.add_argument("--hub", default="hub")
    p.add_argument("--steps", type=int, default=1000)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train (or resume) the demo runs, evaluate them and print the report."""
    run_demo(hub=args.hub, steps=args.steps, resume=True, echo=print)
    return 0
