"""``induction-lens hub ls`` / ``hub verify``: inspect a hub."""

import argparse

import pandas as pd

from induction_lens.cli._common import print_frame
from induction_lens.hub import Hub


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = sub.add_parser("hub", help="inspect a hub")
    hub_sub = p.add_subparsers(dest="hub_command", required=True, metavar="SUBCOMMAND")
    ls = hub_sub.add_parser("ls", help="list runs, or the checkpoints of one run")
    ls.add_argument("run", nargs="?")
    ls.add_argument("--hub", default="hub")
    ls.set_defaults(func=cmd_hub_ls)
    verify = hub_sub.add_parser("verify", help="check every file of a run against its manifest")
    verify.add_argument("run")
    verify.add_argument("--hub", default="hub")
    verify.set_defaults(func=cmd_hub_verify)


def cmd_hub_ls(args: argparse.Namespace) -> int:
    """List the runs of a hub, or the checkpoints of one run."""
    hub = Hub(args.hub, must_exist=True)
    if args.run:
        frame = hub.checkpoints(args.run)
        log = hub.log(args.run)
        if len(log):
            frame = frame.merge(log[["step", "loss"]], on="step", how="left")
        print_frame(frame.drop(columns=["path"]))
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
    print_frame(pd.DataFrame(rows))
    return 0


def cmd_hub_verify(args: argparse.Namespace) -> int:
    """Read and check every file of a run against the manifest's sha256 (exit 2 if one is bad)."""
    hub = Hub(args.hub, must_exist=True)
    names = hub.verify(args.run)
    print(f"run {args.run!r}: {len(names)} files verified")
    return 0
