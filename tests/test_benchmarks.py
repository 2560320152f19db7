"""The benchmark scripts run and refuse bad input (their timings are printed, never asserted)."""

import re
import subprocess
import sys
from pathlib import Path

BENCH_TRAIN = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"


def _bench_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH_TRAIN), *args], capture_output=True,
                          text=True, timeout=300)


def test_bench_train_refuses_a_run_of_no_steps():
    done = _bench_train("--steps", "0")
    assert done.returncode == 2
    assert "--steps 0 and --repeats 3 must be at least 1" in done.stderr


def test_bench_train_prints_the_ratio_and_a_floor_within_our_profiled_step():
    done = _bench_train("--preset", "attn-only-1l", "--steps", "2", "--repeats", "1",
                        "--threads", "1", "--floor")
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"ratio induction_lens / transformer_lens, attn-only-1l: [0-9.]+x",
                     done.stdout)
    floor = re.search(r"floor, attn-only-1l: matrix products \+ attention kernels ([0-9.]+) ms "
                      r"of our profiled ([0-9.]+) ms step", done.stdout)
    assert floor, done.stdout
    kernels, total = map(float, floor.groups())
    assert 0 < kernels <= total
