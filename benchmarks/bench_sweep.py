"""Wall time of a sweep of 8 short runs plus their evaluation: in process vs a local Ray.

Usage::

    pip install -e ".[ray]"
    python benchmarks/bench_sweep.py                 # 8 laptop attn-only-1l runs of 60 steps
    python benchmarks/bench_sweep.py --steps 200 --cpus 2

Both executors run the same grid (attn-only-1l and -2l x 4 seeds by default) into fresh
temporary hubs with one torch thread per run (the sweep's default), so the checkpoints are
bit-identical and only the placement differs: one run after the other in this process, or one
Ray task per run on a local Ray of ``--cpus`` CPUs. The Ray time includes starting Ray and its
workers' imports. It prints both wall times, their ratio, the 1-minute load average before and
after (the machine may be shared), and whether the two frames are equal bit for bit. On 2
cores the ceiling is 2x.
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from induction_lens.runs.executors import RayExecutor
from induction_lens.runs.settings import EvalSettings
from induction_lens.runs.sweeps import SweepGrid, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per preset (2 presets)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    grid = SweepGrid(["attn-only-1l", "attn-only-2l"], seeds=list(range(args.seeds)),
                     train={"steps": args.steps, "checkpoint_every": max(1, args.steps // 3)})
    settings = EvalSettings(n_examples=64)
    options = dict(metrics=["losses", "prefix_matching"], settings=settings, device="cpu",
                   progress=False)
    print(f"{len(grid.cells())} runs of {args.steps} steps, evaluated at "
          f"{len(grid.cells()[0].config.train.checkpoint_steps())} checkpoints each")
    load0 = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench_sweep"))
    ray_tmp = tempfile.mkdtemp(prefix="ilray", dir="/tmp")  # short: Ray's socket paths
    try:
        t0 = time.perf_counter()
        local = sweep(grid, hub=work / "inprocess", **options)
        t_local = time.perf_counter() - t0
        print(f"in process:          {t_local:7.1f} s")
        executor = RayExecutor(num_cpus=args.cpus, init_kwargs={"_temp_dir": ray_tmp})
        t0 = time.perf_counter()
        executor._start()  # timed apart: a long sweep pays it once
        t_start = time.perf_counter() - t0
        on_ray = sweep(grid, hub=work / "ray", executor=executor, **options)
        t_ray = time.perf_counter() - t0
        print(f"Ray ({args.cpus} CPUs):           {t_ray:7.1f} s (of which starting Ray "
              f"{t_start:.1f} s)")
        print(f"ratio in-process / Ray: {t_local / t_ray:.2f}x "
              f"({t_local / (t_ray - t_start):.2f}x without Ray's start)")
        equal = local.equals(on_ray)
        pd.testing.assert_frame_equal(local, on_ray, check_exact=True)
        print(f"frames equal bit for bit: {equal}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print(f"load average (1 min) before {load0:.2f}, after {os.getloadavg()[0]:.2f}, "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
