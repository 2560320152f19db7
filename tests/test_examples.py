"""The example scripts (``examples/arg1_...`` to ``arg6_...``) in ``--tiny`` mode.

Each example runs in-process (``main(argv)``) on one module-scoped hub, so the tiny runs that
several examples share (``tiny-attn-only-2l``, ...) are trained once. Tiny runs train 12 steps:
the claims usually FAIL, and the tests check the plumbing, not the verdicts: ``summary.json``
exists with the expected claim keys, boolean verdicts and every figure file it lists; and bad
input ends with one clear ``error:`` line and exit status 2.
"""

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "arg1_co_occurrence": ["no_phase_change[tiny-attn-only-1l]"] + [
        f"{c}[tiny-attn-only-{n}l]" for n in (2, 3)
        for c in ("icl_phase_change", "induction_heads_form", "loss_bump", "pca_pivot",
                  "repeated_tokens_gain")],
    "arg2_smeared_keys": ["smeared_1l_phase_change[tiny-smeared-1l]",
                          "vanilla_1l_no_phase_change[tiny-attn-only-1l]",
                          "smeared_2l_earlier[tiny-smeared-2l vs tiny-attn-only-2l]"],
    "arg3_ablations": [f"{c}[tiny-attn-only-{n}l]" for n in (2, 3)
                       for c in ("induction_heads_carry_icl", "other_heads_carry_little",
                                 "induction_heads_rank_first", "phase_change_attribution")],
    "arg4_generality": [f"{c}[tiny-smeared-2l-taskmix]" for c in (
        "literal_copying", "fuzzy_copying", "pattern_matching_attention",
        "pattern_task_in_context")],
    "arg5_mechanism": ["qk_trace_tracks_prefix_matching", "ov_copying_tracks_copying"] + [
        f"{c}[tiny-attn-only-{n}l]" for n in (2, 3)
        for c in ("induction_heads_copy", "induction_heads_prefix_match_by_weights",
                  "k_composition_with_previous_token_heads")],
    "arg6_continuity": ["phase_change[tiny-mlp-2l]", "phase_change[tiny-mlp-3l]",
                        "phase_change[tiny-full-4l]", "phase_change[tiny-full-6l]",
                        "icl_after_roughly_constant", "icl_before_small_at_every_size"],
}


def _example(name: str):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


def _run(name: str, hub: Path, out: Path, *extra: str) -> tuple[int, dict]:
    code = _example(name).main(["--tiny", "--hub", str(hub), "--out", str(out), "--threads",
                                "1", *extra])
    return code, json.loads((out / "summary.json").read_text())


def _check_summary(summary: dict, expected: list[str]) -> None:
    assert summary["error"] is None
    assert summary["mode"] == "tiny"
    keys = [c["key"] for c in summary["claims"]]
    assert keys == expected
    for claim in summary["claims"]:
        assert isinstance(claim["passed"], bool)
        assert claim["status"] == ("PASS" if claim["passed"] else "FAIL")
        assert claim["criterion"] and claim["paper"] and isinstance(claim["measured"], dict)
    assert summary["passed"] + summary["failed"] == len(keys)
    assert summary["figures"], "every example writes figures"
    for fig in summary["figures"]:
        assert fig.get("error") is None, fig
        assert Path(fig["html"]).is_file()
        if fig["png"] is not None:
            assert Path(fig["png"]).is_file()
    assert summary["runs"] and all(r["steps"] >= 1 for r in summary["runs"])


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    """One hub for every example of this module (tiny runs are shared between them)."""
    return tmp_path_factory.mktemp("examples_hub")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_example_runs_in_tiny_mode(name, hub, tmp_path, capsys):
    # PNG export (kaleido + a browser) is exercised once, on the shortest example.
    extra = () if name == "arg3_ablations" else ("--no-png",)
    code, summary = _run(name, hub, tmp_path / "out", *extra)
    assert code == 0
    _check_summary(summary, EXPECTED[name])
    printed = capsys.readouterr().out
    for key in EXPECTED[name]:
        assert f" {key}" in printed  # one PASS/FAIL line per claim
    assert "summary:" in printed


def test_arg4_analyses_a_local_pretrained_directory(hub, tmp_path):
    """``--weights DIR``: a tiny GPT-2-architecture model saved with ``save_pretrained`` (random
    weights, a BPE trained here), loaded offline through transformers and TransformerLens."""
    import datasets
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from induction_lens.data.tasks import copying_text, pattern_matching_documents
    from induction_lens.data.text import train_bpe

    docs = pattern_matching_documents(50, seed=3) + [copying_text(100, seed=i)
                                                     for i in range(50)]
    tok = train_bpe(datasets.Dataset.from_dict({"text": docs}), 600)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>",
                                     eos_token="<|bos|>")
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=256,
                                       n_ctx=256, vocab_size=tok.get_vocab_size()))
    weights = tmp_path / "tiny-gpt2"
    model.save_pretrained(weights)
    hf_tok.save_pretrained(weights)
    code, summary = _run("arg4_generality", hub, tmp_path / "out", "--no-png", "--weights",
                         str(weights))
    assert code == 0
    _check_summary(summary, EXPECTED["arg4_generality"] + [
        f"{c}[tiny-gpt2]" for c in ("literal_copying", "fuzzy_copying",
                                    "pattern_matching_attention", "pattern_task_in_context")])
    assert "local weights" in summary["facts"]["pretrained"]


def test_arg4_weights_without_a_model_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, summary = _run("arg4_generality", tmp_path / "hub", tmp_path / "out", "--weights",
                         str(tmp_path / "empty"))
    assert code == 2
    assert "no config.json" in summary["error"]
    errors = [line for line in capsys.readouterr().out.splitlines()
              if line.startswith("error:")]
    assert len(errors) == 1 and "save_pretrained" in errors[0]
    assert not (tmp_path / "hub").exists() or not any((tmp_path / "hub").iterdir()), \
        "nothing is trained before the pretrained model is loaded"


def test_a_hub_run_with_another_config_is_a_clear_error(hub, tmp_path, capsys):
    """A run of the same name but another model in the hub: one ``error:`` line, status 2."""
    source = hub / "tiny-attn-only-3l"
    if not source.is_dir():  # this test alone: train the run it copies
        _run("arg3_ablations", hub, tmp_path / "first", "--no-png")
    other = tmp_path / "other_hub"
    other.mkdir()
    shutil.copytree(source, other / "tiny-attn-only-2l")
    capsys.readouterr()
    code, summary = _run("arg3_ablations", other, tmp_path / "out", "--no-png")
    assert code == 2
    errors = [line for line in capsys.readouterr().out.splitlines()
              if line.startswith("error:")]
    assert len(errors) == 1
    assert "run 'tiny-attn-only-2l'" in errors[0] and "different model config" in errors[0]
    assert "--hub" in errors[0]
    assert summary["error"] and summary["claims"] == []


def test_bad_options_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _example("arg6_continuity").main(["--tiny", "--hub", str(tmp_path), "--threads", "0"])
    assert exc.value.code == 2
    assert "--threads 0 must be a positive integer" in capsys.readouterr().err
