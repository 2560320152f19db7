"""The command line: happy paths and one-line errors."""

import subprocess
import sys

import pytest

from induction_lens.cli import main


def test_presets_lists_every_family(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("attn-only-1l", "attn-only-6l", "mlp-6l", "smeared-2l", "full-40l"):
        assert name in out


def test_train_then_hub_ls(tmp_path, capsys):
    hub = str(tmp_path / "hub")
    assert main(["train", "--preset", "attn-only-1l", "--steps", "4", "--checkpoint-every", "2",
                 "--hub", hub, "--run", "one", "-q"]) == 0
    assert "run 'one'" in capsys.readouterr().out
    assert main(["hub", "ls", "--hub", hub]) == 0
    out = capsys.readouterr().out
    assert "one" in out and "attn-only-1l" in out
    assert main(["hub", "ls", "one", "--hub", hub]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["step", "tokens", "loss"]
    assert [int(line.split()[0]) for line in lines[1:]] == [0, 2, 4]
    # resuming to more steps continues the same run
    assert main(["train", "--preset", "attn-only-1l", "--steps", "6", "--checkpoint-every", "2",
                 "--hub", hub, "--run", "one", "--resume", "-q"]) == 0
    assert main(["hub", "ls", "one", "--hub", hub]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].split()[0] == "6"
    # evaluate writes the parquet caches next to the run and prints the windows
    assert main(["evaluate", "one", "--hub", hub, "--n-examples", "8", "-q",
                 "--metrics", "losses", "prefix_matching"]) == 0
    out = capsys.readouterr().out
    assert "icl_score" in out and "no phase change" in out
    assert (tmp_path / "hub" / "one" / "evals" / "losses.parquet").is_file()
    assert (tmp_path / "hub" / "one" / "evals" / "prefix_matching.parquet").is_file()


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--preset", "attn-only-9l"], "unknown preset 'attn-only-9l'"),
    (["train", "--preset", "attn-only-1l", "--data", "wikipedia"], "is not a known source"),
    (["train", "--preset", "attn-only-1l", "--steps", "0"], "TrainConfig.steps=0"),
    (["train", "--preset", "attn-only-1l", "--run", "../x"], "run name '../x' is invalid"),
    (["hub", "ls", "nope"], "run 'nope' is not in hub"),
])
def test_errors_are_one_line_with_exit_status_2(tmp_path, capsys, argv, message):
    argv = argv + ["--hub", str(tmp_path)] if argv[0] in ("train", "hub") else argv
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and err.startswith("induction-lens: error:")


def test_train_without_data_uses_the_presets_own_data(monkeypatch, capsys):
    """``--data`` left out keeps the preset's data (Shakespeare for ``attn-only-2l-text``);
    given, it replaces it. ``train`` is stubbed: only what the CLI passes is checked."""
    import induction_lens.cli.train as cli_train

    seen = []

    class Stop(Exception):
        pass

    def fake_train(cfg, **kwargs):
        seen.append(kwargs["data"])
        raise Stop

    monkeypatch.setattr(cli_train, "train", fake_train)
    for argv in (["--preset", "attn-only-2l-text"],
                 ["--preset", "attn-only-2l-text", "--data", "synthetic", "--data-seed", "3"]):
        with pytest.raises(Stop):
            main(["train", *argv, "-q"])
    assert seen[0].source == "shakespeare" and seen[0].seed == 0
    assert seen[1].source == "synthetic" and seen[1].seed == 3


def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "induction_lens.cli", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("induction-lens ")


def test_installed_entry_point_runs():
    """The ``induction-lens`` console script that ``pip install`` put next to the interpreter."""
    import os
    from pathlib import Path

    script = Path(sys.executable).parent / ("induction-lens.exe" if os.name == "nt"
                                            else "induction-lens")
    if not script.exists():
        pytest.skip(f"no console script at {script} (package not installed in this venv)")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("induction-lens ")
    bad = subprocess.run([str(script), "hub", "ls", "--hub", "/nonexistent/hub/dir"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("induction-lens: error:") and len(bad.stderr.splitlines()) == 1


@pytest.mark.slow
def test_demo_ablate_and_report_through_main(tmp_path, capsys):
    hub = str(tmp_path / "hub")
    assert main(["demo", "--hub", hub, "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "attn-only-1l" in out and "attn-only-2l" in out and "icl_score" in out
    assert main(["ablate", "attn-only-2l", "--hub", hub, "--examples", "8", "--window",
                 "0", "4", "--context-fraction", "0", "-q"]) == 0
    out = capsys.readouterr().out
    assert "ablation_pattern.parquet" in out and "phase window: steps 0-4" in out
    page = tmp_path / "report.html"
    assert main(["report", "--hub", hub, "--runs", "attn-only-2l", "--out", str(page),
                 "--n-examples", "8", "-q"]) == 0
    assert "wrote" in capsys.readouterr().out and page.stat().st_size > 100_000
    assert main(["hub", "verify", "attn-only-2l", "--hub", hub]) == 0
    assert "files verified" in capsys.readouterr().out


def test_missing_hub_directory_is_a_one_line_error(tmp_path, capsys):
    for argv in (["hub", "ls"], ["evaluate", "r"], ["ablate", "r"], ["report", "--runs", "r"]):
        assert main(argv + ["--hub", str(tmp_path / "nope")]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "nope" in err, (argv, err)


def test_ctrl_c_exits_130_with_a_resume_hint(monkeypatch, capsys):
    from induction_lens.cli import presets

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(presets, "run", interrupted)
    assert main(["presets"]) == 130
    assert "--resume" in capsys.readouterr().err
