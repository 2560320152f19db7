"""The local hub: round trips, integrity, no pickles, locking, crash safety."""

import hashlib
import json
import multiprocessing as mp
import pickle
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from induction_lens import constants as C
from induction_lens.config import RunConfig, TrainConfig
from induction_lens.hub import Hub, HubError, RunWriter, atomic_write_json
from induction_lens.models import build_model
from induction_lens.train import train

from .conftest import TINY_DATA, tiny_spec

TINY_TRAIN = TrainConfig(steps=6, batch_size=2, checkpoint_every=2, warmup_steps=2)


def tiny_run(root, run="r", steps=6, **train_kwargs):
    cfg = RunConfig(tiny_spec(), TrainConfig(**{**TINY_TRAIN.__dict__, "steps": steps,
                                                **train_kwargs}), TINY_DATA)
    return train(cfg, hub=root, run=run, progress=False, device="cpu")


def test_train_and_round_trip_weights(tmp_path):
    result = tiny_run(tmp_path)
    hub = Hub(tmp_path)
    assert hub.runs() == ["r"]
    ckpts = hub.checkpoints("r")
    assert ckpts["step"].tolist() == [0, 2, 4, 6]
    assert ckpts["tokens"].tolist() == [0, 2 * 2 * 24, 4 * 2 * 24, 6 * 2 * 24]
    loaded = hub.load_model("r")
    for (name, a), b in zip(result.model.state_dict().items(), loaded.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    assert hub.config("r").model == tiny_spec()
    info = hub.info("r")
    assert info["induction_lens_version"] and "git_hash" in info
    log = hub.log("r")
    assert log["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert set(log.columns) >= {"step", "tokens", "loss", "lr", "grad_norm", "seconds"}
    steps = [s for s, _, _ in hub.iter_checkpoints("r", every=2)]
    assert steps == [0, 4, 6]  # every 2nd, plus the newest
    assert [s for s, _, _ in hub.iter_checkpoints("r", every=3)] == [0, 6]


def test_only_newest_checkpoint_keeps_optimizer_state(tmp_path):
    tiny_run(tmp_path)
    entries = Hub(tmp_path).manifest("r")
    assert [e.optimizer is not None for e in entries] == [False, False, False, True]
    files = sorted(p.name for p in (tmp_path / "r" / C.CHECKPOINT_DIR).iterdir())
    assert sum(f.endswith(C.OPTIMIZER_SUFFIX) for f in files) == 1


def test_smeared_alphas_survive_the_hub(tmp_path):
    cfg = RunConfig(tiny_spec(smeared_keys=True), TINY_TRAIN, TINY_DATA)
    result = train(cfg, hub=tmp_path, run="s", progress=False, device="cpu")
    alpha = result.model.blocks[1].attn.smear_alpha
    assert alpha.abs().sum() > 0  # trained away from its initial 0
    loaded = Hub(tmp_path).load_model("s")
    assert torch.equal(loaded.blocks[1].attn.smear_alpha, alpha)


def test_corrupted_checkpoint_is_refused_naming_the_file(tmp_path):
    tiny_run(tmp_path)
    hub = Hub(tmp_path)
    path = tmp_path / "r" / C.checkpoint_name(4)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(HubError, match="step_00000004.safetensors is corrupted"):
        hub.load_model("r", 4)
    path.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(HubError, match="step_00000004.safetensors is corrupted"):
        hub.load_model("r", 4)
    path.unlink()
    with pytest.raises(HubError, match="step_00000004.safetensors is missing"):
        hub.load_model("r", 4)
    hub.load_model("r", 2)  # the others are untouched


class _Payload:
    def __reduce__(self):
        return (open, (str(MARKER), "w"))


MARKER = None


def test_planted_pickle_is_never_executed(tmp_path):
    global MARKER
    tiny_run(tmp_path)
    MARKER = tmp_path / "pwned"
    evil = pickle.dumps(_Payload())
    run_dir = tmp_path / "r"
    # 1. a pickle planted under a checkpoint's name, with a manifest "fixed" to match it
    target = run_dir / C.checkpoint_name(6)
    target.write_bytes(evil)
    manifest = json.loads((run_dir / C.MANIFEST).read_text())
    from induction_lens.hub import sha256_bytes

    manifest["checkpoints"][-1]["sha256"] = sha256_bytes(evil)
    # 2. a manifest entry pointing at a pickle file
    (run_dir / "model.pt").write_bytes(evil)
    manifest["checkpoints"].append({**manifest["checkpoints"][-1], "step": 99,
                                    "weights": "model.pt", "sha256": sha256_bytes(evil)})
    atomic_write_json(run_dir / C.MANIFEST, manifest)
    hub = Hub(tmp_path)
    with pytest.raises(HubError, match="not a valid safetensors file"):
        hub.load_model("r", 6)
    with pytest.raises(HubError, match="not a safetensors file inside the run"):
        hub.load_model("r", 99)
    assert not MARKER.exists()


def test_existing_run_needs_resume_and_matching_config(tmp_path):
    tiny_run(tmp_path, steps=4)
    with pytest.raises(HubError, match="already exists.*--resume"):
        tiny_run(tmp_path, steps=4)
    cfg = RunConfig(tiny_spec(n_layers=1), TINY_TRAIN, TINY_DATA)
    with pytest.raises(HubError, match=r"model config differs in \['n_layers'\]"):
        train(cfg, hub=tmp_path, run="r", resume=True, progress=False)
    cfg = RunConfig(tiny_spec(), TrainConfig(**{**TINY_TRAIN.__dict__, "lr": 0.1}), TINY_DATA)
    with pytest.raises(HubError, match=r"train config differs in \['lr'\]"):
        train(cfg, hub=tmp_path, run="r", resume=True, progress=False)


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    straight = tiny_run(tmp_path / "a", steps=8).model
    tiny_run(tmp_path / "b", steps=4)
    cfg = RunConfig(tiny_spec(), TrainConfig(**{**TINY_TRAIN.__dict__, "steps": 8}), TINY_DATA)
    resumed = train(cfg, hub=tmp_path / "b", run="r", resume=True, progress=False, device="cpu")
    for (name, a), b in zip(straight.state_dict().items(), resumed.model.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    assert Hub(tmp_path / "b").log("r")["step"].tolist() == list(range(1, 9))


def test_crash_between_weights_and_manifest_leaves_a_consistent_run(tmp_path, monkeypatch):
    """The manifest write alone fails while checkpoint 4 of 6 is saved (its weights, optimizer
    state and staged log are already on disk): the run stays at step 2, the new files are
    orphans, and resuming removes them and ends equal to an uninterrupted run."""
    import induction_lens.hub as hub_module

    real_write = hub_module.atomic_write_bytes
    failed = []

    def failing_manifest_write(path, data):
        steps = [e["step"] for e in json.loads(data)["checkpoints"]] \
            if path.name == C.MANIFEST else []
        if steps and max(steps) == 4:
            failed.append(path)
            raise OSError("disk vanished")
        return real_write(path, data)

    monkeypatch.setattr(hub_module, "atomic_write_bytes", failing_manifest_write)
    with pytest.raises(OSError, match="disk vanished"):
        tiny_run(tmp_path, steps=6)
    monkeypatch.undo()
    assert len(failed) == 1
    hub, run_dir = Hub(tmp_path), tmp_path / "r"
    assert hub.checkpoints("r")["step"].tolist() == [0, 2]
    assert hub.log("r")["step"].tolist() == [1, 2]  # the log of step 4 was never committed
    orphans = {C.checkpoint_name(4), C.optimizer_name(4)}
    assert all((run_dir / name).is_file() for name in orphans)
    assert (run_dir / f".{C.TRAIN_LOG}{C.STAGED_SUFFIX}").is_file()  # staged, not listed
    listed = {e.weights for e in hub.manifest("r")} | {e.optimizer for e in hub.manifest("r")}
    assert not orphans & listed
    hub.verify("r")  # everything listed is complete
    cfg = RunConfig(tiny_spec(), TrainConfig(**{**TINY_TRAIN.__dict__, "steps": 6}), TINY_DATA)
    hub.open_run("r", cfg, resume=True).close()  # opening for writing removes the orphans
    assert not any((run_dir / name).exists() for name in orphans)
    assert not (run_dir / f".{C.TRAIN_LOG}{C.STAGED_SUFFIX}").exists()
    assert hub.checkpoints("r")["step"].tolist() == [0, 2]
    resumed = train(cfg, hub=tmp_path, run="r", resume=True, progress=False, device="cpu")
    assert hub.checkpoints("r")["step"].tolist() == [0, 2, 4, 6]
    straight = tiny_run(tmp_path / "straight", steps=6)
    log, straight_log = hub.log("r"), straight.log
    assert log["step"].tolist() == list(range(1, 7))  # continuous: no gap, no repeat
    assert log["loss"].tolist() == straight_log["loss"].tolist()
    assert log["lr"].tolist() == straight_log["lr"].tolist()
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    reloaded = hub.load_state_dict("r")
    assert all(torch.equal(reloaded[k], v) for k, v in straight.model.state_dict().items())


def test_second_writer_of_the_same_run_is_refused(tmp_path):
    cfg = RunConfig(tiny_spec(), TINY_TRAIN, TINY_DATA)
    hub = Hub(tmp_path)
    with hub.open_run("r", cfg):
        with pytest.raises(HubError, match="being written by another process"):
            RunWriter(hub, "r", cfg, resume=True)


HOLDER_SCRIPT = textwrap.dedent("""
    import sys
    from induction_lens.config import DataSpec, ModelSpec, RunConfig, TrainConfig
    from induction_lens.hub import Hub
    spec = ModelSpec(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=24, d_vocab=50)
    cfg = RunConfig(spec, TrainConfig(steps=6, batch_size=2, checkpoint_every=2,
                                      warmup_steps=2), DataSpec(min_segment=4, max_segment=8))
    with Hub(sys.argv[1]).open_run("r", cfg, resume=True):
        print("holding", flush=True)
        sys.stdin.read()  # until the test closes our stdin (or kills us)
""")


@pytest.mark.slow
def test_second_writer_process_is_refused_at_once(tmp_path):
    """A real process holds run 'r': writing it from here fails within a second, naming the
    lock; writing another run of the same hub meanwhile succeeds; once the holder is killed
    (SIGKILL: the OS drops its lock) the run can be resumed."""
    tiny_run(tmp_path, steps=2)
    script = tmp_path / "holder.py"
    script.write_text(HOLDER_SCRIPT)
    holder = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        cfg = RunConfig(tiny_spec(), TrainConfig(**{**TINY_TRAIN.__dict__, "steps": 4}),
                        TINY_DATA)
        t0 = time.perf_counter()
        with pytest.raises(HubError, match=r"run 'r' is being written by another process"):
            train(cfg, hub=tmp_path, run="r", resume=True, progress=False, device="cpu")
        assert time.perf_counter() - t0 < 2.0  # refused at once, not after a wait
        tiny_run(tmp_path, run="other", steps=2)  # another run of the hub is free
    finally:
        holder.kill()
        holder.wait()
    train(cfg, hub=tmp_path, run="r", resume=True, progress=False, device="cpu")
    assert Hub(tmp_path).checkpoints("r")["step"].tolist() == [0, 2, 4]
    assert Hub(tmp_path).runs() == ["other", "r"]


def _train_worker(root: str, run: str) -> None:
    cfg = RunConfig(tiny_spec(), TrainConfig(steps=20, batch_size=2, checkpoint_every=2), TINY_DATA)
    train(cfg, hub=root, run=run, progress=False, device="cpu")


@pytest.mark.slow
def test_two_processes_training_different_runs_into_one_hub(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_train_worker, args=(str(tmp_path), name))
             for name in ("one", "two")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    hub = Hub(tmp_path)
    assert hub.runs() == ["one", "two"]
    for run in ("one", "two"):
        assert hub.checkpoints(run)["step"].tolist() == list(range(0, 21, 2))
        hub.load_model(run)


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 200])
def test_bad_run_names(tmp_path, name):
    with pytest.raises(HubError, match="run name"):
        Hub(tmp_path).checkpoints(name)


def test_missing_run_and_step_errors(tmp_path):
    tiny_run(tmp_path, steps=2)
    hub = Hub(tmp_path)
    with pytest.raises(HubError, match="run 'nope' is not in hub"):
        hub.load_model("nope")
    with pytest.raises(HubError, match="no checkpoint at step 3"):
        hub.load_model("r", 3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(HubError, match="is a file"):
        Hub(tmp_path / "file")


def test_state_dict_must_fit_the_spec(tmp_path):
    tiny_run(tmp_path, steps=2)
    info = json.loads((tmp_path / "r" / C.RUN_CONFIG).read_text())
    info["config"]["model"]["smeared_keys"] = True
    edited = json.dumps(info).encode()
    (tmp_path / "r" / C.RUN_CONFIG).write_bytes(edited)
    with pytest.raises(HubError, match="run.json is corrupted"):  # an edit must be recorded
        Hub(tmp_path).load_model("r")
    manifest = json.loads((tmp_path / "r" / C.MANIFEST).read_text())
    manifest["files"][C.RUN_CONFIG] = hashlib.sha256(edited).hexdigest()
    atomic_write_json(tmp_path / "r" / C.MANIFEST, manifest)
    with pytest.raises(HubError, match="does not fit its model spec"):
        Hub(tmp_path).load_model("r")


def test_build_model_matches_hub_weights_shape(tmp_path):
    tiny_run(tmp_path, steps=2)
    state = Hub(tmp_path).load_state_dict("r", 0)
    fresh = build_model(tiny_spec(), seed=0).state_dict()
    assert state.keys() == fresh.keys()
    assert torch.equal(state["embed.W_E"], fresh["embed.W_E"])  # step 0 is the initialisation


def test_failing_data_source_leaves_no_run_behind(tmp_path):
    from induction_lens.config import ConfigError, DataSpec

    cfg = RunConfig(tiny_spec(), TINY_TRAIN, DataSpec(source="files", files=("missing.txt",)))
    with pytest.raises(ConfigError, match="missing.txt does not exist"):
        train(cfg, hub=tmp_path, run="r", progress=False)
    assert Hub(tmp_path).runs() == []
    assert not (tmp_path / "r").exists()
