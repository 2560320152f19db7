"""``induction-lens sweep``: train and evaluate a grid of runs, in process or on Ray."""

import argparse
import json
from pathlib import Path
from typing import Any

from induction_lens.cli._common import print_frame
from induction_lens.errors import ConfigError
from induction_lens.io import atomic_write_parquet
from induction_lens.runs import METRICS, EvalSettings, SweepGrid, sweep
from induction_lens.runs.executors import EXECUTORS


def _value(text: str) -> Any:
    """A grid value from the command line: a JSON number, bool or list, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_train(items: list[str] | None, *, flag: str = "--train",
                example: str = "lr=1e-3,3e-3") -> dict[str, list[Any]]:
    """``["steps=200", "lr=1e-3,3e-3"]`` -> ``{"steps": [200], "lr": [0.001, 0.003]}``.

    Also parses ``--task B=0,1,2,4`` (``flag`` and ``example`` name the option in errors).
    """
    out: dict[str, list[Any]] = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ConfigError(f"{flag} {item!r} must be FIELD=VALUE[,VALUE...], e.g. "
                              f"{flag} {example}")
        out[key] = [_value(v) for v in values.split(",")]
    return out


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``induction-lens sweep --preset P [P...] ...`` to a subparsers object."""
    p = subparsers.add_parser(
        "sweep", help="train and evaluate a grid of runs (presets x seeds x data x overrides)",
        description="Train every missing run of a grid into the hub (run names derived from "
                    "the cell), resume runs that were cut, evaluate every checkpoint (cached), "
                    "and print one line per run. Rerunning skips what is done. Runs in this "
                    "process by default, or as Ray tasks (--executor ray; pip install -e "
                    "'.[ray]'), on a local Ray or an existing cluster (--address).")
    p.add_argument("--preset", nargs="+", required=True, metavar="PRESET",
                   help="model presets (see `induction-lens presets`)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="init seeds (default 0)")
    p.add_argument("--data", nargs="+", default=None, metavar="SPEC",
                   help="data specs, e.g. synthetic synthetic:zipf (default: the presets')")
    p.add_argument("--train", action="append", metavar="FIELD=V[,V...]",
                   help="a TrainConfig override axis, repeatable: --train steps=200 "
                        "--train lr=1e-3,3e-3")
    p.add_argument("--task", action="append", metavar="FIELD=V[,V...]",
                   help="Reddy presets only: a ReddyTaskSpec override axis, repeatable: "
                        "--task B=0,1,2,4 --task K=128,512 (the data-dependence sweep)")
    p.add_argument("--scale", choices=["laptop", "paper"], default="laptop")
    p.add_argument("--hub", default="hub", help="hub directory (default ./hub)")
    p.add_argument("--metrics", nargs="+", default=None, metavar="METRIC",
                   help=f"metric names or 'all' (registered: {', '.join(sorted(METRICS))}; "
                        "default: the default ones)")
    p.add_argument("--every", type=int, default=1, help="evaluate every k-th checkpoint")
    p.add_argument("--n-examples", type=int, default=None,
                   help=f"evaluation examples (default {EvalSettings().n_examples})")
    p.add_argument("--executor", choices=list(EXECUTORS), default="inprocess")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (HOST:PORT from `ray start --head`, or auto)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray")
    p.add_argument("--num-gpus", type=float, default=None,
                   help="GPUs per Ray task (fractions allowed; default: shared when present)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per run (default 1: identical across executors)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    p.add_argument("--out", default=None, help="write the tidy frame of all runs (parquet)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``induction-lens sweep``: runs the grid, prints the cells, writes --out."""
    if args.address is not None and args.executor != "ray":
        raise ConfigError("--address needs --executor ray")
    settings = EvalSettings(**({} if args.n_examples is None
                               else {"n_examples": args.n_examples}))
    grid = SweepGrid(args.preset, seeds=args.seeds, data=args.data,
                     train=parse_train(args.train), scale=args.scale,
                     task=parse_train(args.task, flag="--task", example="B=0,1,2,4"))
    frame, cells = sweep(grid, hub=args.hub, metrics=args.metrics, every=args.every,
                         settings=settings, executor=args.executor, address=args.address,
                         num_cpus=args.num_cpus, num_gpus=args.num_gpus, device=args.device,
                         threads=args.threads, progress=not args.quiet, return_cells=True)
    print_frame(cells)
    print(f"{len(cells)} run(s), {len(frame)} rows in hub {args.hub}")
    if args.out:
        atomic_write_parquet(Path(args.out), frame)
        print(f"wrote {args.out}")
    return 0
