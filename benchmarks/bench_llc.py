"""Seconds per checkpoint of the LLC (devinterp 2.x SGLD) on the laptop ``attn-only-2l``, and
the convergence check behind the default sampler settings.

Usage::

    python benchmarks/bench_llc.py --hub hub --run attn-only-2l           # a trained run
    python benchmarks/bench_llc.py                                        # trains one (~2 min)
    python benchmarks/bench_llc.py --steps 0 1000 --lrs 3e-4 1e-3 3e-3 --draws 400

For each checkpoint and SGLD step size it prints the LLC (mean and spread over chains), the
trace drift (:func:`induction_lens.measures.llc.trace_drift`: how much the last quarter of the
draws still moves the estimate; converged when at most 0.1), the LLC from the first half of
the draws next to the whole (a flat trace gives the same), and wall-clock and CPU seconds.
One thread (``torch.set_num_threads(1)``) unless ``--threads``: the 2-core laptop is shared.
The cost of an SGLD step does not depend on the weights; what it costs at another scale
follows from chains x draws x (forward + backward of one batch), see ``docs/beyond.md``.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from induction_lens.hub import Hub
from induction_lens.measures.llc import estimate_llc
from induction_lens.runs.settings import EvalSettings


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hub", default=None)
    p.add_argument("--run", default="attn-only-2l")
    p.add_argument("--steps", type=int, nargs="*", default=None,
                   help="checkpoints (default: 0, a quarter, half and the last)")
    p.add_argument("--lrs", type=float, nargs="*", default=[EvalSettings().llc_lr])
    p.add_argument("--draws", type=int, default=EvalSettings().llc_draws)
    p.add_argument("--chains", type=int, default=EvalSettings().llc_chains)
    p.add_argument("--localization", type=float, default=EvalSettings().llc_localization)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = EvalSettings()

    if args.hub is None:
        from induction_lens.train import train
        args.hub = "bench_llc_hub"
        if args.run not in Hub(args.hub).runs():
            train("attn-only-2l", hub=args.hub, run=args.run, progress=False, device="cpu")
    hub = Hub(args.hub)
    steps = [e.step for e in hub.manifest(args.run)]
    wanted = args.steps if args.steps else sorted({steps[0], steps[len(steps) // 4],
                                                   steps[len(steps) // 2], steps[-1]})
    tokens = hub.corpus(args.run).eval_tokens(settings.n_examples)[:settings.llc_examples]
    rows = []
    print(f"run {args.run}: {len(tokens)} examples of {tokens.shape[1]} tokens, "
          f"{args.chains} chains x {args.draws} draws, batch {settings.llc_batch_size}, "
          f"localization {args.localization}, {torch.get_num_threads()} thread(s)")
    for step in wanted:
        model = hub.load_model(args.run, step, device="cpu")
        for lr in args.lrs:
            t0, c0 = time.perf_counter(), time.process_time()
            res = estimate_llc(model, tokens, lr=lr, localization=args.localization,
                               num_chains=args.chains, num_draws=args.draws,
                               batch_size=settings.llc_batch_size, seed=settings.llc_seed,
                               device="cpu")
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            half = res.loss_trace[:, : args.draws // 2].mean()
            llc_half = res.n_beta * (half - res.init_loss)
            row = {"step": step, "lr": lr, "llc": res.llc, "llc_std": res.llc_std,
                   "llc_first_half": float(llc_half), "drift": res.drift,
                   "converged": res.converged, "init_loss": res.init_loss,
                   "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                   "seconds_per_draw": round(wall / (args.chains * args.draws), 4)}
            rows.append(row)
            print(f"step {step:>5} lr {lr:.0e}: LLC {res.llc:8.2f} +- {res.llc_std:6.2f} "
                  f"(first half {llc_half:8.2f}) drift {res.drift:+.3f} "
                  f"{'converged' if res.converged else 'NOT converged'}; "
                  f"{wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    print(f"mean seconds per checkpoint: {np.mean([r['seconds'] for r in rows]):.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
