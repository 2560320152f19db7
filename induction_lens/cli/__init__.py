"""The ``induction-lens`` command line: a thin layer over the Python API.

Level: the top. It may import every other level; nothing imports it. Library code never
prints; this package is where results meet the terminal: argparse and every ``print`` live here,
one module per subcommand (``add_parser(sub)`` registers it, ``run(args)`` runs it). Every
expected failure (an :class:`~induction_lens.errors.InductionLensError`: bad config, missing
run, corrupted checkpoint, offline dataset) is reported as one line on stderr with exit status
2; Ctrl-C exits with 130.
"""

import argparse
import logging
import sys
from collections.abc import Sequence

from induction_lens._version import __version__
from induction_lens.cli import (
    ablate,
    demo,
    evaluate,
    hub,
    presets,
    pretrained,
    report,
    sweep,
    train,
)
from induction_lens.errors import InductionLensError

SUBCOMMANDS = (presets, train, hub, evaluate, sweep, ablate, report, pretrained, demo)
"""The subcommand modules, in ``--help`` order."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="induction-lens",
        description="Train small transformers into a local hub and measure induction heads "
                    "(Olsson et al. 2022).")
    parser.add_argument("--version", action="version", version=f"induction-lens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``induction-lens`` script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except InductionLensError as err:
        print(f"induction-lens: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("induction-lens: interrupted; the hub keeps every complete checkpoint "
              "(continue with --resume)", file=sys.stderr)
        return 130


