"""Sweeps over runs: grid cells and run names, the in-process executor, reruns that skip or
resume, a failed or killed cell redone, Ray equal to in-process bit for bit, and bad inputs."""

import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from induction_lens.cli import main
from induction_lens.config import RunConfig, TrainConfig
from induction_lens.errors import ConfigError, EvalError
from induction_lens.frame import TIDY_COLUMNS, check_frame
from induction_lens.hub import Hub
from induction_lens.runs import evaluate_run
from induction_lens.runs import registry as runs_registry
from induction_lens.runs.executors import RayExecutor, check_address
from induction_lens.runs.settings import EvalSettings
from induction_lens.runs.sweeps import SweepGrid, run_name, sweep
from induction_lens.train import train

from .conftest import TINY_DATA, tiny_spec

sweep_mod = importlib.import_module("induction_lens.runs.sweeps")

SETTINGS = EvalSettings(n_examples=8, head_examples=3, head_seq_len=5, head_repeats=4)
BASE = RunConfig(tiny_spec(), TrainConfig(steps=6, batch_size=2, checkpoint_every=2,
                                          warmup_steps=2), TINY_DATA)
GRID = SweepGrid({"tiny": BASE}, seeds=[0, 1], train={"lr": [1e-3, 3e-3]})
METRICS = ["losses", "prefix_matching"]


def _sweep(hub, grid=GRID, **kwargs):
    return sweep(grid, hub=hub, metrics=METRICS, settings=SETTINGS, device="cpu",
                 progress=False, **kwargs)


def _hashes(hub: Hub) -> dict[str, list[str]]:
    return {run: [e.sha256 for e in hub.manifest(run)] for run in hub.runs()}


# ---------------------------------------------------------------- grid and names
def test_sweep_is_exported_at_the_top_level():
    import induction_lens as il

    assert il.sweep is sweep and il.runs.SweepGrid is SweepGrid


def test_run_names_follow_the_cell():
    assert run_name("attn-only-2l", 0, "synthetic") == "attn-only-2l_synthetic_s0"
    assert (run_name("mlp-1l", 3, "synthetic:zipf", [("lr", 0.001), ("steps", 20)])
            == "mlp-1l_synthetic-zipf_s3_lr0.001_steps20")
    # A lossy character gets a hash, so 'a b' and 'a_b' stay apart; long names fit the hub.
    spaced, underscored = run_name("a b", 0, "synthetic"), run_name("a_b", 0, "synthetic")
    assert spaced.startswith("a-b_synthetic_s0-") and underscored == "a_b_synthetic_s0"
    long = run_name("m" * 200, 0, "synthetic")
    assert len(long) <= 128 and long == run_name("m" * 200, 0, "synthetic")


def test_grid_cells_are_the_product_in_order():
    cells = GRID.cells()
    assert [(c.seed, dict(c.overrides)["lr"]) for c in cells] == [
        (0, 1e-3), (0, 3e-3), (1, 1e-3), (1, 3e-3)]
    assert [c.config.train.seed for c in cells] == [0, 0, 1, 1]
    assert [c.config.train.lr for c in cells] == [1e-3, 3e-3, 1e-3, 3e-3]
    assert all(c.config.model == BASE.model and c.config.data == TINY_DATA for c in cells)
    assert len({c.run for c in cells}) == 4
    # A repeated value is one run (cells are deduplicated by name before anything runs).
    assert len(SweepGrid({"tiny": BASE}, seeds=[0, 0]).cells()) == 1
    preset = SweepGrid(["attn-only-1l", "attn-only-2l"], data=["synthetic", "synthetic:zipf"],
                       train={"steps": 20})
    assert [c.run for c in preset.cells()] == [
        "attn-only-1l_synthetic_s0_steps20", "attn-only-1l_synthetic-zipf_s0_steps20",
        "attn-only-2l_synthetic_s0_steps20", "attn-only-2l_synthetic-zipf_s0_steps20"]
    assert preset.cells()[1].config.data.distribution == "zipf"


def test_two_configs_under_one_name_are_refused(monkeypatch):
    monkeypatch.setattr(sweep_mod, "run_name", lambda *a, **k: "same")
    with pytest.raises(ConfigError, match="map to run 'same' with different configs"):
        SweepGrid({"tiny": BASE}, seeds=[0, 1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(models=[]), "models is empty"),
    (dict(models=["attn-only-2l"], seeds=[]), "seeds is empty"),
    (dict(models=["no-such-model"]), "no-such-model"),
    (dict(models=["attn-only-1l"], train={"lr": []}), r"train\['lr'\] is empty"),
    (dict(models=["attn-only-1l"], train={"nope": [1]}), r"fields \['nope'\]"),
    (dict(models=["attn-only-1l"], train={"seed": [1]}), "SweepGrid.seeds"),
    (dict(models=["attn-only-1l"], train={"lr": [-1.0]}), "TrainConfig.lr"),
    (dict(models=["attn-only-1l"], data=["nowhere"]), "not a known source"),
    (dict(models=["attn-only-1l"], seeds=[-1]), "seeds"),
])
def test_bad_grids_fail_at_once_with_one_line(kwargs, match):
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=match) as info:
        SweepGrid(**kwargs)
    assert "\n" not in str(info.value) and time.perf_counter() - t0 < 2


def test_bad_sweep_options_fail_before_any_run(tmp_path):
    with pytest.raises(EvalError, match="unknown metric"):
        sweep(GRID, hub=tmp_path, metrics=["no_such_metric"], progress=False)
    with pytest.raises(ConfigError, match="executor="):
        sweep(GRID, hub=tmp_path, executor="threads", progress=False)
    with pytest.raises(ConfigError, match="need executor='ray'"):
        sweep(GRID, hub=tmp_path, address="127.0.0.1:1", progress=False)
    with pytest.raises(ConfigError, match="set on the SweepGrid"):
        sweep(GRID, hub=tmp_path, seeds=[3], progress=False)
    with pytest.raises(ConfigError, match="threads"):
        sweep(GRID, hub=tmp_path, threads=0, progress=False)
    assert Hub(tmp_path).runs() == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_address_fails_fast(tmp_path, capsys):
    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="cannot reach a Ray cluster"):
        check_address(address)
    with pytest.raises(ConfigError, match="not HOST:PORT"):
        check_address("no-port")
    # Through the CLI: one line, status 2, before Ray is even imported.
    assert main(["sweep", "--preset", "attn-only-1l", "--hub", str(tmp_path), "--executor",
                 "ray", "--address", address, "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot reach a Ray cluster" in err
    assert time.perf_counter() - t0 < 10


# ---------------------------------------------------------------- in-process sweeps
def test_sweep_equals_training_and_evaluating_each_cell(tmp_path):
    frame = _sweep(tmp_path / "sweep")
    check_frame(frame)
    assert list(frame.columns) == [*TIDY_COLUMNS, "model", "seed", "data", "lr"]
    # The truth: each cell trained and evaluated by hand, with one torch thread like the sweep.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        parts = []
        for cell in GRID.cells():
            train(cell.config, hub=tmp_path / "ref", run=cell.run, device="cpu", progress=False)
            part = evaluate_run(tmp_path / "ref", cell.run, metrics=METRICS, settings=SETTINGS,
                                device="cpu", progress=False)
            parts.append(part.assign(model="tiny", seed=cell.seed, data=cell.data,
                                     lr=dict(cell.overrides)["lr"]))
    finally:
        torch.set_num_threads(threads)
    expected = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True, check_dtype=False)
    assert _hashes(Hub(tmp_path / "sweep")) == _hashes(Hub(tmp_path / "ref"))


def test_rerun_skips_finished_runs_and_their_evaluations(tmp_path, monkeypatch):
    monkeypatch.setattr(runs_registry, "METRICS", dict(runs_registry.METRICS))
    monkeypatch.setattr(sweep_mod, "METRICS", runs_registry.METRICS)
    calls = []

    def counted(model, ctx):
        calls.append(ctx.step)
        return pd.DataFrame({"metric": ["one"], "value": [1.0]})

    runs_registry.register_metric("counted", counted, version="1", settings=())
    grid = SweepGrid({"tiny": BASE}, seeds=[0, 1])
    first, cells = sweep(grid, hub=tmp_path, metrics=["counted"], settings=SETTINGS,
                         device="cpu", progress=False, return_cells=True)
    assert list(cells["status"]) == ["trained", "trained"] and len(calls) == 2 * 4
    files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    second, cells = sweep(grid, hub=tmp_path, metrics=["counted"], settings=SETTINGS,
                          device="cpu", progress=False, return_cells=True)
    assert list(cells["status"]) == ["done", "done"] and len(calls) == 8  # nothing recomputed
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == files


def test_a_failed_cell_is_resumed_by_the_next_call(tmp_path, monkeypatch):
    victim = GRID.cells()[2].run
    real_train = sweep_mod.train

    def failing_train(*args, run, **kwargs):
        def stop(step, tokens, model):
            if run == victim and step == 4:
                raise RuntimeError("simulated crash")
        return real_train(*args, run=run, on_checkpoint=stop, **kwargs)

    monkeypatch.setattr(sweep_mod, "train", failing_train)
    with pytest.raises(RuntimeError, match="simulated crash") as info:
        _sweep(tmp_path / "cut")
    assert any(victim in note for note in info.value.__notes__)
    hub = Hub(tmp_path / "cut")
    assert [e.step for e in hub.manifest(victim)] == [0, 2, 4]  # consistent, cut short
    for run in hub.runs():
        assert hub.verify(run)  # raises HubError on any missing or corrupted file
    monkeypatch.setattr(sweep_mod, "train", real_train)
    frame, cells = _sweep(tmp_path / "cut", return_cells=True)
    assert list(cells["status"]) == ["done", "done", "resumed", "done"]
    clean = _sweep(tmp_path / "clean")
    pd.testing.assert_frame_equal(frame, clean, check_exact=True)
    assert _hashes(hub) == _hashes(Hub(tmp_path / "clean"))


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from tests.test_sweep_grid import GRID, _sweep, sweep_mod
    victim, real_train = GRID.cells()[1].run, sweep_mod.train

    def killing_train(*args, run, **kwargs):
        def stop(step, tokens, model):
            if run == victim and step == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_train(*args, run=run, on_checkpoint=stop, **kwargs)

    sweep_mod.train = killing_train
    _sweep(sys.argv[1])
""")


@pytest.mark.slow
def test_a_killed_sweep_leaves_a_consistent_hub_and_is_completed(tmp_path):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "killed")],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    hub = Hub(tmp_path / "killed")
    victim = GRID.cells()[1].run
    assert [e.step for e in hub.manifest(victim)] == [0, 2]
    assert len(hub.runs()) == 2
    for run in hub.runs():
        assert hub.verify(run)  # raises HubError on any missing or corrupted file
    frame, cells = _sweep(tmp_path / "killed", return_cells=True)
    assert list(cells["status"]) == ["done", "resumed", "trained", "trained"]
    pd.testing.assert_frame_equal(frame, _sweep(tmp_path / "clean"), check_exact=True)


def test_cli_sweep_runs_a_grid_and_skips_it_the_second_time(tmp_path, capsys):
    args = ["sweep", "--preset", "attn-only-1l", "--train", "steps=4",
            "--train", "checkpoint_every=2", "--seeds", "0", "1", "--metrics", "icl_score",
            "--n-examples", "8", "--hub", str(tmp_path / "hub"), "--device", "cpu",
            "--out", str(tmp_path / "out.parquet"), "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "attn-only-1l_synthetic_s0_steps4_checkpoint_every2" in out and "trained" in out
    frame = pd.read_parquet(tmp_path / "out.parquet")
    assert sorted(frame["seed"].unique()) == [0, 1] and set(frame["metric"]) == {"icl_score"}
    assert sorted(frame["step"].unique()) == [0, 2, 4]
    assert main(args) == 0
    assert "trained" not in capsys.readouterr().out
    assert main(["sweep", "--preset", "attn-only-1l", "--train", "lr", "-q"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err


# ---------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local 2-CPU Ray whose files (auth token, sessions) live in temporary directories."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
    home = tmp_path_factory.mktemp("home")
    temp = tempfile.mkdtemp(prefix="ilray", dir="/tmp")  # short: Ray's socket paths are limited
    saved = {k: os.environ.get(k) for k in ("HOME", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ray_results_equal_in_process_bit_for_bit(tmp_path, local_ray):
    on_ray, cells = _sweep(tmp_path / "ray", executor="ray", return_cells=True)
    assert list(cells["status"]) == ["trained"] * 4
    in_process = _sweep(tmp_path / "local")
    pd.testing.assert_frame_equal(on_ray, in_process, check_exact=True)
    assert _hashes(Hub(tmp_path / "ray")) == _hashes(Hub(tmp_path / "local"))
    # A second call on Ray trains nothing and returns the same frame.
    again, cells = _sweep(tmp_path / "ray", executor="ray", return_cells=True)
    assert list(cells["status"]) == ["done"] * 4
    pd.testing.assert_frame_equal(again, on_ray, check_exact=True)


@pytest.mark.slow
def test_ray_task_failure_names_its_cell_and_is_redone(tmp_path, local_ray):
    hub = Hub(tmp_path)
    victim = GRID.cells()[0]
    # Another writer holds the victim's run lock: its task fails with the hub's HubError.
    with hub.open_run(victim.run, victim.config):
        with pytest.raises(Exception, match="being written by another process") as info:
            _sweep(tmp_path, executor="ray")
    assert any(victim.run in note for note in info.value.__notes__)
    frame, cells = _sweep(tmp_path, executor="ray", return_cells=True)
    assert list(cells["status"]) == ["resumed", "done", "done", "done"]
    assert sorted(frame["run"].unique()) == sorted(c.run for c in GRID.cells())


def test_ray_executor_without_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'"):
        RayExecutor()


class _FakeRay:
    """Stands in for the ``ray`` module where only its cluster resources matter."""

    def __init__(self, resources):
        self.resources = resources

    def cluster_resources(self):
        return self.resources


@pytest.mark.parametrize("resources, num_gpus, expected", [
    ({"CPU": 16.0, "GPU": 1.0}, None, 1 / 16),   # 16 tasks share one GPU
    ({"CPU": 2.0, "GPU": 4.0}, None, 1.0),       # at most one GPU per task
    ({"CPU": 2.0}, None, 0.0),                   # no GPU: none asked for
    ({"CPU": 8.0, "GPU": 2.0}, 0.5, 0.5),        # explicit fraction
    ({"CPU": 8.0}, 0, 0.0),
])
def test_ray_gpu_share_per_task(monkeypatch, resources, num_gpus, expected):
    monkeypatch.setitem(sys.modules, "ray", _FakeRay(resources))
    assert RayExecutor(num_gpus=num_gpus).gpus_per_task() == pytest.approx(expected)


def test_ray_executor_options_are_checked(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", _FakeRay({"CPU": 2.0}))
    with pytest.raises(ConfigError, match="cluster has no GPU"):
        RayExecutor(num_gpus=1).gpus_per_task()
    with pytest.raises(ConfigError, match="drop one of them"):
        RayExecutor(address="auto", num_cpus=2)
    with pytest.raises(ConfigError, match="num_cpus"):
        RayExecutor(num_cpus=0)
    with pytest.raises(ConfigError, match="num_gpus"):
        RayExecutor(num_gpus=-1)
