"""Property test: SIGKILL training at random moments; the hub stays consistent and resumes.

One long-lived child process imports the package once (importing TransformerLens costs seconds)
and, for each trial, forks a grandchild that trains a tiny run into a fresh hub. The child
kills the grandchild with SIGKILL after a seeded random delay, anywhere from just after the
fork to just before the end of an uninterrupted run (measured first). With a checkpoint at
every step, most of the time goes into checkpoint writes, so many kills land inside one.

After every kill the test checks, from this process, that the manifest lists only complete,
verifiable checkpoints with the log that matches them; then the child resumes the run to the
end and every checkpoint must equal the uninterrupted run's byte for byte.
"""

import json
import os
import random
import subprocess
import sys
import textwrap

import pytest

from induction_lens import constants as C
from induction_lens.hub import Hub

STEPS = 24
TRIALS = 20
SEED = 20220308  # the paper's arXiv date; any fixed seed works

SERVER = textwrap.dedent(f"""
    import json, os, signal, sys, time
    import torch
    torch.set_num_threads(1)  # no OpenMP pool before fork()
    from induction_lens.config import DataSpec, ModelSpec, RunConfig, TrainConfig
    from induction_lens.train import train

    spec = ModelSpec(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=16, d_vocab=32)
    cfg = RunConfig(spec, TrainConfig(steps={STEPS}, batch_size=4, checkpoint_every=1,
                                      warmup_steps=4), DataSpec(min_segment=2, max_segment=6))

    def run(hub, resume):
        train(cfg, hub=hub, run="k", resume=resume, progress=False, device="cpu")

    run(sys.argv[1], False)  # warm-up: every lazy import happens here, before any fork
    print(json.dumps({{"ready": True}}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run(cmd["hub"], cmd["resume"])
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            os._exit(code)
        killed = False
        if cmd.get("kill_after") is not None:
            time.sleep(cmd["kill_after"])
            if os.waitpid(pid, os.WNOHANG) == (0, 0):  # still running (not yet reaped)
                os.kill(pid, signal.SIGKILL)
                killed = True
                os.waitpid(pid, 0)
        else:
            os.waitpid(pid, 0)
        print(json.dumps({{"killed": killed, "seconds": time.perf_counter() - t0}}),
              flush=True)
""")


def _send(server: subprocess.Popen, **cmd) -> dict:
    server.stdin.write(json.dumps(cmd) + "\n")
    server.stdin.flush()
    line = server.stdout.readline()
    assert line, "the training server died"
    return json.loads(line)


def _check_consistent(hub_dir) -> tuple[int | None, set[str]]:
    """Assert the killed run is consistent; return its newest step and the partial writes."""
    run_dir = hub_dir / "k"
    leftovers = set()
    if run_dir.is_dir():
        files = [p for p in run_dir.rglob("*") if p.is_file()]
        if any(p.name.endswith(".tmp") for p in files):
            leftovers.add("tmp")
        if any(p.name.endswith(C.STAGED_SUFFIX) for p in files):
            leftovers.add("staged")
    hub = Hub(hub_dir)
    if "k" not in hub.runs():  # killed before run.json was committed: nothing to check
        return None, leftovers
    hub.verify("k")  # every listed file is there, complete and matches its sha256
    entries = hub.manifest("k")
    steps = [e.step for e in entries]
    assert steps == list(range(len(steps))), steps  # a prefix of the schedule (every step)
    listed = {e.weights for e in entries} | {e.optimizer for e in entries if e.optimizer}
    ckpt_dir = run_dir / C.CHECKPOINT_DIR
    on_disk = {f"{C.CHECKPOINT_DIR}/{p.name}" for p in ckpt_dir.iterdir()
               if not p.name.startswith(".")} if ckpt_dir.is_dir() else set()
    assert listed <= on_disk
    if on_disk - listed:
        leftovers.add("orphans")
    if not entries:
        assert hub.log("k").empty
        return None, leftovers
    assert entries[-1].optimizer is not None  # resume needs it
    assert hub.log("k")["step"].tolist() == list(range(1, steps[-1] + 1))
    return steps[-1], leftovers


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the training server forks (POSIX only)")
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted(tmp_path):
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path / "warmup")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(server.stdout.readline()) == {"ready": True}
        ref_dir = tmp_path / "reference"
        ref = _send(server, hub=str(ref_dir), resume=False)
        assert not ref["killed"]
        reference = Hub(ref_dir)
        ref_entries = reference.manifest("k")
        assert [e.step for e in ref_entries] == list(range(STEPS + 1))
        ref_log = reference.log("k")
        # the shortest uninterrupted run bounds the kill moments (timings vary on shared CPUs)
        duration = min(ref["seconds"], _send(server, hub=str(tmp_path / "timing"),
                                             resume=False)["seconds"])

        rng = random.Random(SEED)
        trials = []
        for i in range(TRIALS):
            hub_dir = tmp_path / f"trial{i:02d}"
            delay = rng.uniform(0.02, 0.98) * duration
            done = _send(server, hub=str(hub_dir), resume=False, kill_after=delay)
            killed = done["killed"]
            if not killed:  # finished first: aim the next kills within its time
                duration = min(duration, done["seconds"])
            last, leftovers = _check_consistent(hub_dir)
            trials.append((round(delay, 3), killed, last, sorted(leftovers)))
            assert not _send(server, hub=str(hub_dir), resume=True)["killed"]
            hub = Hub(hub_dir)
            hub.verify("k")
            entries = hub.manifest("k")
            assert [(e.step, e.sha256) for e in entries] == \
                [(e.step, e.sha256) for e in ref_entries], f"trial {i} differs: {trials[-1]}"
            assert entries[-1].optimizer_sha256 == ref_entries[-1].optimizer_sha256
            log = hub.log("k")
            assert log["step"].tolist() == list(range(1, STEPS + 1))
            assert log["loss"].tolist() == ref_log["loss"].tolist()
            run_dir = hub_dir / "k"
            assert not [p for p in run_dir.rglob("*")
                        if p.name.endswith((".tmp", C.STAGED_SUFFIX))]
            assert len(list((run_dir / C.CHECKPOINT_DIR).iterdir())) == STEPS + 2  # + 1 optim
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    print(f"reference run {duration:.2f} s; trials (delay, killed, last step, partial writes):")
    for trial in trials:
        print("  ", trial)
    mid_run = [t for t in trials if t[1] and t[2] is not None and t[2] < STEPS]
    assert len(mid_run) >= TRIALS // 2, trials  # most kills land while training runs
    assert any(t[3] for t in trials), trials  # some land inside a write
