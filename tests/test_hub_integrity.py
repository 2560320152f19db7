"""Every file of a run is verified; hubs carry a format marker; bad files fail as one CLI line."""

import hashlib
import json
import shutil

import pytest
import torch

from induction_lens import constants as C
from induction_lens.cli import main
from induction_lens.config import RunConfig, TrainConfig
from induction_lens.hub import Hub, HubError, atomic_write_json, safetensors_metadata
from induction_lens.train import train

from .conftest import TINY_DATA, tiny_spec

TINY = RunConfig(tiny_spec(), TrainConfig(steps=4, batch_size=2, checkpoint_every=2,
                                          warmup_steps=2), TINY_DATA)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A hub with one tiny run 'r' (steps 0, 2, 4), trained once and copied by each test."""
    root = tmp_path_factory.mktemp("template")
    train(TINY, hub=root, run="r", progress=False, device="cpu")
    return root


@pytest.fixture
def hub_dir(template, tmp_path):
    shutil.copytree(template, tmp_path / "hub")
    return tmp_path / "hub"


def manifest_of(hub_dir) -> dict:
    return json.loads((hub_dir / "r" / C.MANIFEST).read_text())


# ------------------------------------------------------------------ every file is recorded
def test_manifest_records_the_sha256_of_every_file(hub_dir):
    files = manifest_of(hub_dir)["files"]
    run = hub_dir / "r"
    assert set(files) == {C.RUN_CONFIG, C.TRAIN_LOG, C.TOKEN_FREQUENCIES}  # synthetic: no tokenizer
    for name, digest in files.items():
        assert digest == sha(run / name), name
    assert manifest_of(hub_dir)["format"] == C.MANIFEST_FORMAT == 2
    assert Hub(hub_dir).file_hashes("r") == files
    checked = Hub(hub_dir).verify("r")
    assert set(checked) >= set(files) | {C.checkpoint_name(s) for s in (0, 2, 4)}


READERS = {
    C.RUN_CONFIG: lambda hub: hub.config("r"),
    C.TRAIN_LOG: lambda hub: hub.log("r"),
    C.TOKEN_FREQUENCIES: lambda hub: hub.token_frequencies("r"),
}


@pytest.mark.parametrize("name", sorted(READERS))
@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_run_file_is_refused_naming_it(hub_dir, name, damage):
    path = hub_dir / "r" / name
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])
    else:
        path.unlink()
    what = "is missing" if damage == "delete" else "is corrupted"
    with pytest.raises(HubError, match=rf"{name} {what}") as info:
        READERS[name](Hub(hub_dir))
    assert "\n" not in str(info.value) and "delete the run" in str(info.value)
    with pytest.raises(HubError, match=name):
        Hub(hub_dir).verify("r")


def test_truncated_token_frequencies_fail_as_one_cli_line(hub_dir, capsys):
    path = hub_dir / "r" / C.TOKEN_FREQUENCIES
    path.write_bytes(path.read_bytes()[:20])
    assert main(["evaluate", "r", "--hub", str(hub_dir), "--n-examples", "4", "-q",
                 "--metrics", "losses"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("induction-lens: error:") and len(err.splitlines()) == 1
    assert f"{C.TOKEN_FREQUENCIES} is corrupted" in err


def test_write_file_and_read_file_verify_any_file(hub_dir):
    hub = Hub(hub_dir)
    path = hub.write_file("r", "evals/extra.bin", b"payload")
    assert path == hub_dir / "r" / "evals" / "extra.bin" and path.read_bytes() == b"payload"
    assert hub.file_hashes("r")["evals/extra.bin"] == hashlib.sha256(b"payload").hexdigest()
    assert hub.read_file("r", "evals/extra.bin") == b"payload"
    assert hub.has_file("r", "evals/extra.bin") and not hub.has_file("r", "evals/none.bin")
    hub.write_file("r", "evals/extra.bin", b"second")  # rewriting updates the record
    assert hub.read_file("r", "evals/extra.bin") == b"second"
    assert set(hub.file_hashes("r")) > set(READERS)  # the other records are kept
    path.write_bytes(b"secund")
    with pytest.raises(HubError, match="extra.bin is corrupted"):
        hub.read_file("r", "evals/extra.bin")
    (hub_dir / "r" / "evals" / "planted.bin").write_bytes(b"x")
    with pytest.raises(HubError, match="planted.bin is not listed"):
        hub.read_file("r", "evals/planted.bin")
    with pytest.raises(HubError, match="written by the run's writer only"):
        hub.write_file("r", C.RUN_CONFIG, b"{}")


@pytest.mark.parametrize("name", ["../x", "/abs", ".hidden", "evals/../../x", "manifest.json",
                                  ".lock", "checkpoints/step_00000099.safetensors", "",
                                  "evals/a.staged"])
def test_bad_file_names_are_refused(hub_dir, name):
    with pytest.raises(HubError, match="cannot be stored in a run"):
        Hub(hub_dir).write_file("r", name, b"x")
    with pytest.raises(HubError, match="cannot be stored in a run"):
        Hub(hub_dir).read_file("r", name)


def test_planted_tokenizer_in_a_synthetic_run_is_refused(hub_dir):
    (hub_dir / "r" / C.TOKENIZER).write_text("{}")
    with pytest.raises(HubError, match=f"{C.TOKENIZER} is not listed"):
        Hub(hub_dir).tokenizer("r")


def test_committed_but_unrenamed_file_is_read_from_its_staged_copy(hub_dir):
    """A writer killed between the manifest commit and the rename: readers read the staged
    copy, and the next writer renames it into place."""
    run = hub_dir / "r"
    good = (run / C.TRAIN_LOG).read_bytes()
    (run / f".{C.TRAIN_LOG}{C.STAGED_SUFFIX}").write_bytes(good)
    (run / C.TRAIN_LOG).write_bytes(b"the old content")
    hub = Hub(hub_dir)
    assert hub.log("r")["step"].tolist() == [1, 2, 3, 4]
    hub.open_run("r", TINY, resume=True).close()
    assert (run / C.TRAIN_LOG).read_bytes() == good
    assert not (run / f".{C.TRAIN_LOG}{C.STAGED_SUFFIX}").exists()
    (run / f".{C.TOKEN_FREQUENCIES}{C.STAGED_SUFFIX}").write_bytes(b"never committed")
    hub.open_run("r", TINY, resume=True).close()  # an uncommitted staged file is dropped
    assert not (run / f".{C.TOKEN_FREQUENCIES}{C.STAGED_SUFFIX}").exists()
    hub.verify("r")


def test_old_manifest_without_files_map_still_reads_then_gets_verified(hub_dir):
    """Format 1 (before the files map): files are read as they are; the next write records
    them, and from then on they are verified."""
    run = hub_dir / "r"
    old = manifest_of(hub_dir)
    atomic_write_json(run / C.MANIFEST, {"format": 1, "checkpoints": old["checkpoints"]})
    hub = Hub(hub_dir)
    freqs = hub.token_frequencies("r")
    assert freqs is not None and freqs.shape == (tiny_spec().d_vocab,)
    assert hub.file_hashes("r") == {} and hub.log("r")["step"].tolist() == [1, 2, 3, 4]
    hub.verify("r")
    hub.write_file("r", "evals/x.bin", b"x")  # any write records the run's files
    assert set(hub.file_hashes("r")) == set(old["files"]) | {"evals/x.bin"}
    assert manifest_of(hub_dir)["format"] == 2
    path = run / C.TOKEN_FREQUENCIES
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(HubError, match="is corrupted"):
        hub.token_frequencies("r")


def test_newer_manifest_format_is_refused(hub_dir):
    atomic_write_json(hub_dir / "r" / C.MANIFEST, {**manifest_of(hub_dir), "format": 3})
    with pytest.raises(HubError, match="format 3, newer than this induction_lens reads"):
        Hub(hub_dir).checkpoints("r")


def test_checkpoint_files_are_reproducible_bytes(hub_dir, tmp_path):
    """Equal states give equal files (so the sha256 of a resumed run's checkpoints equal an
    uninterrupted run's): metadata sits under one key as sorted JSON."""
    train(TINY, hub=tmp_path / "again", run="r", progress=False, device="cpu")
    ours, theirs = Hub(hub_dir).manifest("r"), Hub(tmp_path / "again").manifest("r")
    assert [(e.sha256, e.optimizer_sha256) for e in ours] == \
        [(e.sha256, e.optimizer_sha256) for e in theirs]
    data = (hub_dir / "r" / C.checkpoint_name(2)).read_bytes()
    assert safetensors_metadata(data) == {"step": "2", "tokens": str(2 * 2 * 24)}


# ------------------------------------------------------------------ the hub directory itself
def test_new_hub_gets_a_format_marker_on_first_write(tmp_path):
    Hub(tmp_path / "new")  # a missing directory is a new hub: nothing written yet
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    assert Hub(tmp_path / "empty").runs() == []
    train(TINY, hub=tmp_path / "empty", run="r", progress=False, device="cpu")
    marker = json.loads((tmp_path / "empty" / C.HUB_MARKER).read_text())
    assert marker["format"] == C.HUB_FORMAT == 1
    assert Hub(tmp_path / "empty").runs() == ["r"]  # the marker is no run


def test_missing_hub_directory_says_so(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    with pytest.raises(HubError, match="hub directory .*nowhere does not exist"):
        Hub(missing, must_exist=True)
    with pytest.raises(HubError, match="nowhere does not exist, so run 'r' is not in it"):
        Hub(missing).load_model("r")
    assert main(["hub", "ls", "r", "--hub", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1


def test_hub_of_a_newer_format_is_refused(hub_dir, capsys):
    atomic_write_json(hub_dir / C.HUB_MARKER, {"format": C.HUB_FORMAT + 1})
    with pytest.raises(HubError, match="written by a newer induction_lens.*upgrade"):
        Hub(hub_dir)
    assert main(["hub", "ls", "--hub", str(hub_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("induction-lens: error:") and "newer" in err
    assert len(err.splitlines()) == 1
    (hub_dir / C.HUB_MARKER).write_text("not json")
    with pytest.raises(HubError, match="hub marker .* is unreadable"):
        Hub(hub_dir)


def test_foreign_directory_is_not_a_hub(tmp_path, capsys):
    (tmp_path / "README.md").write_text("my project")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print(1)")
    with pytest.raises(HubError, match="not an induction_lens hub .*not runs: 'README.md', 'src'"):
        Hub(tmp_path)
    with pytest.raises(HubError, match="not an induction_lens hub"):
        train(TINY, hub=tmp_path, run="r", progress=False, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "src"]  # untouched
    assert main(["hub", "ls", "--hub", str(tmp_path)]) == 2
    assert "not an induction_lens hub" in capsys.readouterr().err


def test_hub_written_before_the_marker_still_opens(hub_dir):
    (hub_dir / C.HUB_MARKER).unlink()
    (hub_dir / "notes.txt").write_text("a stray file next to the runs is tolerated")
    (hub_dir / "half").mkdir()  # a run being created: only names of a run's layout
    (hub_dir / "half" / C.LOCK).write_text("")
    assert Hub(hub_dir).runs() == ["r"]
    Hub(hub_dir).write_file("r", "evals/x.bin", b"x")  # the first write adds the marker
    assert (hub_dir / C.HUB_MARKER).is_file()


def test_marker_name_is_no_run_name(tmp_path):
    with pytest.raises(HubError, match="run name"):
        Hub(tmp_path).run_dir(C.HUB_MARKER)


# ------------------------------------------------------------------ one-line errors via the CLI
@pytest.fixture(scope="module")
def cli_template(tmp_path_factory):
    """A run 'c' of the laptop attn-only-1l preset trained through the CLI (steps 0, 1, 2)."""
    root = tmp_path_factory.mktemp("cli")
    assert main(["train", "--preset", "attn-only-1l", "--steps", "2", "--checkpoint-every", "1",
                 "--hub", str(root), "--run", "c", "--device", "cpu", "-q"]) == 0
    return root


@pytest.fixture
def cli_hub(cli_template, tmp_path):
    shutil.copytree(cli_template, tmp_path / "hub")
    return tmp_path / "hub"


RESUME = ["train", "--preset", "attn-only-1l", "--steps", "3", "--checkpoint-every", "1",
          "--run", "c", "--device", "cpu", "-q", "--resume"]


def cli_error(capsys, argv, hub) -> str:
    capsys.readouterr()
    assert main([*argv, "--hub", str(hub)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("induction-lens: error:") and len(err.splitlines()) == 1, err
    return err


def test_cli_corrupted_manifest(cli_hub, capsys):
    (cli_hub / "c" / C.MANIFEST).write_text('{"checkpoints": [')
    for argv in (["hub", "ls", "c"], RESUME, ["evaluate", "c", "--metrics", "losses", "-q"]):
        assert "manifest.json is unreadable" in cli_error(capsys, argv, cli_hub)


def test_cli_corrupted_run_config(cli_hub, capsys):
    path = cli_hub / "c" / C.RUN_CONFIG
    path.write_bytes(path.read_bytes()[:-40])
    for argv in (["hub", "ls"], RESUME, ["evaluate", "c", "--metrics", "losses", "-q"]):
        assert "run.json is corrupted" in cli_error(capsys, argv, cli_hub)


def test_cli_tampered_optimizer_state_on_resume(cli_hub, capsys):
    path = cli_hub / "c" / C.optimizer_name(2)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40
    path.write_bytes(bytes(data))
    assert "step_00000002.optim.safetensors is corrupted" in cli_error(capsys, RESUME, cli_hub)
    # a valid optimizer file of another model, with the manifest's sha256 forged to match
    other = Hub(cli_hub).load_state_dict("c", 2)
    from induction_lens.hub import optimizer_to_safetensors

    forged = optimizer_to_safetensors({"state": {0: {"step": torch.tensor(2.0),
                                                     "exp_avg": torch.zeros(3)}},
                                       "param_groups": [{"params": [0], "lr": 1.0}]})
    path.write_bytes(forged)
    manifest = json.loads((cli_hub / "c" / C.MANIFEST).read_text())
    manifest["checkpoints"][-1]["optimizer_sha256"] = hashlib.sha256(forged).hexdigest()
    atomic_write_json(cli_hub / "c" / C.MANIFEST, manifest)
    err = cli_error(capsys, RESUME, cli_hub)
    assert "checkpoint 2 of run 'c' does not fit its model and optimizer" in err
    assert Hub(cli_hub).load_state_dict("c", 2).keys() == other.keys()  # nothing was written


def test_cli_manifest_entry_escaping_the_run(cli_hub, capsys):
    evil = cli_hub / "x" / "evil.safetensors"
    evil.parent.mkdir()
    shutil.copy(cli_hub / "c" / C.checkpoint_name(1), evil)
    manifest = json.loads((cli_hub / "c" / C.MANIFEST).read_text())
    manifest["checkpoints"][1]["weights"] = "../../x/evil.safetensors"
    manifest["checkpoints"][1]["sha256"] = sha(evil)
    atomic_write_json(cli_hub / "c" / C.MANIFEST, manifest)
    for argv in (["hub", "ls", "c"], RESUME, ["evaluate", "c", "--metrics", "losses", "-q"]):
        err = cli_error(capsys, argv, cli_hub)
        assert "points at '../../x/evil.safetensors', which is not a safetensors file inside " \
               "the run" in err
