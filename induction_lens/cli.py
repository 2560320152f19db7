"""The ``induction-lens`` command line: a thin layer over the Python API.

Library code never prints; this module is where results meet the terminal. Every expected
failure (bad config, missing run, corrupted checkpoint, offline hub dataset) is reported as one
line on stderr with exit status 2.
"""

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

import pandas as pd

from induction_lens._version import __version__
from induction_lens.config import ConfigError, DataSpec
from induction_lens.hub import Hub, HubError

Command = Callable[[argparse.Namespace], int]


def _print_frame(frame: pd.DataFrame) -> None:
    with pd.option_context("display.max_rows", 500, "display.width", 160,
                           "display.max_columns", 30):
        print(frame.to_string(index=False))


# ---------------------------------------------------------------------------- presets
def cmd_presets(args: argparse.Namespace) -> int:
    from induction_lens.presets import list_presets

    _print_frame(list_presets(args.scale).drop(columns=["description"]))
    return 0


# ---------------------------------------------------------------------------- train
def _train_overrides(args: argparse.Namespace, cfg):
    updates = {k: getattr(args, k) for k in ("batch_size", "lr", "warmup_steps",
                                              "checkpoint_every", "checkpoint_schedule", "seed")
               if getattr(args, k) is not None}
    return replace(cfg.train, **updates) if updates else None


def cmd_train(args: argparse.Namespace) -> int:
    from induction_lens.presets import get_preset
    from induction_lens.train import train

    cfg = get_preset(args.preset, args.scale)
    data = DataSpec.parse(args.data, seed=args.data_seed)
    result = train(cfg, hub=args.hub, run=args.run or args.preset,
                   train=_train_overrides(args, cfg), data=data, steps=args.steps,
                   resume=args.resume, device=args.device, progress=not args.quiet)
    ckpts = result.hub.checkpoints(result.run)
    last = result.log.iloc[-1] if len(result.log) else None
    print(f"run {result.run!r} in {result.hub.root}: {len(ckpts)} checkpoints"
          + (f", final loss {last['loss']:.3f} at step {int(last['step'])}" if last is not None
             else ""))
    return 0


# ---------------------------------------------------------------------------- hub
def cmd_hub_ls(args: argparse.Namespace) -> int:
    hub = Hub(args.hub)
    if args.run:
        frame = hub.checkpoints(args.run)
        log = hub.log(args.run)
        if len(log):
            frame = frame.merge(log[["step", "loss"]], on="step", how="left")
        _print_frame(frame.drop(columns=["path"]))
        return 0
    rows = []
    for run in hub.runs():
        info = hub.info(run)
        ckpts = hub.manifest(run)
        model = info["config"]["model"]
        rows.append({"run": run, "preset": info["config"].get("preset"),
                     "layers": model["n_layers"], "d_model": model["d_model"],
                     "data": info["config"]["data"]["source"], "checkpoints": len(ckpts),
                     "last_step": ckpts[-1].step if ckpts else None})
    if not rows:
        print(f"hub {hub.root} has no runs")
        return 0
    _print_frame(pd.DataFrame(rows))
    return 0


# ---------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from induction_lens.demo import run_demo

    run_demo(hub=args.hub, steps=args.steps, resume=True, echo=print)
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="induction-lens",
        description="Train small transformers into a local hub and measure induction heads "
                    "(Olsson et al. 2022).")
    parser.add_argument("--version", action="version", version=f"induction-lens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("presets", help="list the model presets")
    p.add_argument("--scale", choices=["laptop", "paper"], default="laptop")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("train", help="train a preset into the hub")
    p.add_argument("--preset", required=True, help="preset name (see `induction-lens presets`)")
    p.add_argument("--scale", choices=["laptop", "paper"], default="laptop")
    p.add_argument("--data", default="synthetic",
                   help="synthetic | synthetic:zipf | shakespeare | hf:NAME | files:PATH[,PATH]")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the example stream")
    p.add_argument("--steps", type=int, help="override the preset's number of steps")
    p.add_argument("--hub", default="hub", help="hub directory (default ./hub)")
    p.add_argument("--run", help="run name (default: the preset name)")
    p.add_argument("--resume", action="store_true", help="continue an existing run")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--checkpoint-schedule", choices=["linear", "log"])
    p.add_argument("--seed", type=int, help="weight-initialisation seed")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("hub", help="inspect a hub")
    hub_sub = p.add_subparsers(dest="hub_command", required=True, metavar="SUBCOMMAND")
    ls = hub_sub.add_parser("ls", help="list runs, or the checkpoints of one run")
    ls.add_argument("run", nargs="?")
    ls.add_argument("--hub", default="hub")
    ls.set_defaults(func=cmd_hub_ls)

    from induction_lens.evals.ablations import add_ablate_parser
    from induction_lens.evals.sweep import add_evaluate_parser
    from induction_lens.report import add_report_parser

    add_evaluate_parser(sub)
    add_ablate_parser(sub)
    add_report_parser(sub)

    p = sub.add_parser("demo", help="train 1- and 2-layer models and watch induction heads form")
    p.add_argument("--hub", default="hub")
    p.add_argument("--steps", type=int, default=1000)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``induction-lens`` script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, HubError) as err:
        print(f"induction-lens: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("induction-lens: interrupted; the hub keeps every complete checkpoint "
              "(continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
