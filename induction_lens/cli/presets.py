"""``induction-lens presets``: list the model presets."""

import argparse

from induction_lens.cli._common import print_frame
from induction_lens.presets import list_presets


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = sub.add_parser("presets", help="list the model presets")
    p.add_argument("--scale", choices=["laptop", "paper"], default="laptop")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List the presets of ``--scale``."""
    print_frame(list_presets(args.scale).drop(columns=["description"]))
    return 0
