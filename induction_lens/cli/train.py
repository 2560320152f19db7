"""``induction-lens train``: train a preset into the hub."""

import argparse
from dataclasses import replace

from induction_lens.config import DataSpec, RunConfig, TrainConfig
from induction_lens.presets import get_preset
from induction_lens.train import train


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = sub.add_parser("train", help="train a preset into the hub")
    p.add_argument("--preset", required=True, help="preset name (see `induction-lens presets`)")
    p.add_argument("--scale", choices=["laptop", "paper"], default="laptop")
    p.add_argument("--data", default=None,
                   help="synthetic | synthetic:zipf | shakespeare | hf:NAME | files:PATH[,PATH] "
                        "(default: the preset's own data, e.g. shakespeare for attn-only-2l-text)")
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
    p.set_defaults(func=run)


def _train_overrides(args: argparse.Namespace, cfg: RunConfig) -> TrainConfig | None:
    updates = {k: getattr(args, k) for k in ("batch_size", "lr", "warmup_steps",
                                              "checkpoint_every", "checkpoint_schedule", "seed")
               if getattr(args, k) is not None}
    return replace(cfg.train, **updates) if updates else None


def run(args: argparse.Namespace) -> int:
    """Train the preset into the hub and print where it went."""
    cfg = get_preset(args.preset, args.scale)
    data = (DataSpec.parse(args.data, seed=args.data_seed) if args.data is not None
            else replace(cfg.data, seed=args.data_seed))
    result = train(cfg, hub=args.hub, run=args.run or args.preset,
                   train=_train_overrides(args, cfg), data=data, steps=args.steps,
                   resume=args.resume, device=args.device, progress=not args.quiet)
    ckpts = result.hub.checkpoints(result.run)
    last = result.log.iloc[-1] if len(result.log) else None
    print(f"run {result.run!r} in {result.hub.root}: {len(ckpts)} checkpoints"
          + (f", final loss {last['loss']:.3f} at step {int(last['step'])}" if last is not None
             else ""))
    return 0
