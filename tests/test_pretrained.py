"""Importing pretrained checkpoint series (induction_lens.pretrained), offline.

A tiny GPT-NeoX-shaped series (2 layers, d_model 64, 4 heads, rotary, parallel attention and
MLP like Pythia) is built with ``transformers`` from random weights, three "revisions" with
different seeds saved with ``save_pretrained`` as ``DIR/step{N}/`` next to a small byte-level
BPE saved as a fast tokenizer whose BOS is *not* id 0, then imported into a hub in tmp_path.
"""

import json
import time

import numpy as np
import pytest
import torch

from induction_lens import constants as C
from induction_lens.config import ConfigError, DataSpec, PretrainedSpec, RunConfig, TrainConfig
from induction_lens.data.pretrained import pretrained_token_pool, special_token_ids
from induction_lens.errors import DataError, HubError, InductionLensError
from induction_lens.hub import Hub
from induction_lens.models.pretrained import bos_token_id
from induction_lens.pretrained import (
    PYTHIA_TOKENS_PER_STEP,
    PretrainedOfflineError,
    import_pretrained,
    local_revisions,
)

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

STEPS = (0, 1000, 2000)
TOKENS_PER_STEP = 4096
SPECIALS = ["<|pad|>", "<|endoftext|>"]  # pad is id 0, BOS/EOS id 1: BOS is not 0 here
WORDS = [f"w{i}x" for i in range(120)] + ["the", "cat", "sat", "on", "a", "mat", "and", "dog"]


def _text(seed: int, n_words: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, size=n_words))


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """``DIR/step0``, ``DIR/step1000``, ``DIR/step2000`` and ``DIR/tokenizer``, plus a text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("series")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([_text(s, 200) for s in range(20)], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", pad_token="<|pad|>")
    fast.save_pretrained(str(root / "tokenizer"))
    cfg = GPTNeoXConfig(vocab_size=320, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=256,
                        max_position_embeddings=128, rotary_pct=0.25, bos_token_id=1,
                        eos_token_id=1, tie_word_embeddings=False)
    for step in STEPS:
        torch.manual_seed(step + 1)
        GPTNeoXForCausalLM(cfg).save_pretrained(str(root / f"step{step}"))
    text = root.parent / "eval.txt"
    text.write_text("\n".join(_text(100 + i, 300) for i in range(8)))
    return {"dir": root, "text": text, "vocab": tok.get_vocab_size()}


@pytest.fixture(scope="module")
def imported(series, tmp_path_factory):
    """The series imported into a fresh hub with evaluation text (read-only for tests)."""
    hub = Hub(tmp_path_factory.mktemp("hub"))
    result = import_pretrained(series["dir"], hub=hub, run="neox", tokens_per_step=TOKENS_PER_STEP,
                               data=f"files:{series['text']}", progress=False)
    return hub, result


def _hf_logits(path, tokens):
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(tokens).logits


def test_imported_checkpoints_reproduce_the_transformers_logits(series, imported):
    hub, result = imported
    assert result.imported == STEPS and result.skipped == ()
    tokens = torch.randint(0, series["vocab"], (2, 40), generator=torch.Generator().manual_seed(0))
    for step in STEPS:
        model = hub.load_model("neox", step)
        with torch.no_grad():
            ours = model(tokens)
        expected = _hf_logits(series["dir"] / f"step{step}", tokens)
        torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    # different seeds make different checkpoints (the comparison above is not vacuous)
    a, b = hub.load_state_dict("neox", 0), hub.load_state_dict("neox", 1000)
    assert not torch.equal(a["embed.W_E"], b["embed.W_E"])


def test_manifest_tokens_tokenizer_and_run_json(series, imported):
    hub, _ = imported
    ckpts = hub.checkpoints("neox")
    assert ckpts["step"].tolist() == list(STEPS)
    assert ckpts["tokens"].tolist() == [s * TOKENS_PER_STEP for s in STEPS]
    cfg = hub.config("neox")
    assert isinstance(cfg.model, PretrainedSpec)
    assert cfg.model.source == str(series["dir"].absolute())
    assert cfg.model.revision(1000) == "step1000"
    assert cfg.model.special_tokens["bos_token"] == "<|endoftext|>"
    assert (cfg.model.n_layers, cfg.model.d_model, cfg.model.n_heads, cfg.model.n_ctx,
            cfg.model.d_vocab) == (2, 64, 4, 128, 320)
    assert cfg.model.transformer_lens_version
    raw = json.loads((hub.run_dir("neox") / C.RUN_CONFIG).read_text())
    assert raw["config"]["model"]["hooked_config"]["original_architecture"] == "GPTNeoXForCausalLM"
    assert hub.tokenizer("neox").get_vocab_size() == series["vocab"]
    model = hub.load_model("neox")
    text = "the cat sat on a mat"
    ids = hub.tokenizer("neox").encode(text, add_special_tokens=False).ids
    assert model.to_tokens(text, prepend_bos=True)[0].tolist() == [1] + ids  # its own BOS
    # TransformerLens's own default for GPT-NeoX (Pythia was trained without BOS) is kept
    assert cfg.model.hooked_config["default_prepend_bos"] is False
    assert model.to_tokens(text)[0].tolist() == ids


def test_reimport_is_a_noop_and_an_interrupted_import_resumes(series, tmp_path):
    hub = Hub(tmp_path / "hub")
    first = import_pretrained(series["dir"], checkpoints=[1000], hub=hub, run="r",
                              tokens_per_step=TOKENS_PER_STEP, progress=False)
    assert first.imported == (1000,)
    weights = hub.run_dir("r") / C.checkpoint_name(1000)
    stamp = weights.stat().st_mtime_ns
    rest = import_pretrained(series["dir"], hub=hub, run="r", tokens_per_step=TOKENS_PER_STEP,
                             progress=False)
    assert rest.imported == (0, 2000) and rest.skipped == (1000,)
    assert weights.stat().st_mtime_ns == stamp
    t0 = time.monotonic()
    again = import_pretrained(series["dir"], hub=hub, run="r", tokens_per_step=TOKENS_PER_STEP,
                              progress=False)
    assert again.imported == () and again.skipped == STEPS
    assert time.monotonic() - t0 < 5
    assert hub.config("r").train.steps == 2000
    with pytest.raises(HubError, match="run 'r' holds .*import into another run"):
        import_pretrained(series["dir"], checkpoints=[0], hub=Hub(tmp_path / "hub"), run="r",
                          tokens_per_step=TOKENS_PER_STEP * 2, progress=False)


def _one_line_error(exc_type, fn, match):
    t0 = time.monotonic()
    with pytest.raises(exc_type, match=match) as info:
        fn()
    assert time.monotonic() - t0 < 10
    assert "\n" not in str(info.value)
    assert isinstance(info.value, InductionLensError)


def test_bad_inputs_fail_fast_with_one_line_errors(series, tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    _one_line_error(DataError, lambda: import_pretrained(tmp_path / "missing", hub=hub,
                                                         tokens_per_step=1), "does not exist")
    (tmp_path / "empty").mkdir()
    _one_line_error(DataError, lambda: import_pretrained(tmp_path / "empty", hub=hub,
                                                         tokens_per_step=1), "holds no revision")
    _one_line_error(ConfigError, lambda: import_pretrained(series["dir"], hub=hub),
                    "tokens_per_step is required")
    _one_line_error(ConfigError, lambda: import_pretrained(
        series["dir"], checkpoints=[1500], hub=hub, tokens_per_step=1), r"\[1500\]")
    _one_line_error(ConfigError, lambda: import_pretrained("no-such-model-xyz", hub=hub),
                    "neither a local directory nor a model TransformerLens knows")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    _one_line_error(PretrainedOfflineError, lambda: import_pretrained(
        "pythia-14m", checkpoints=[0], hub=hub, progress=False), "local directory")
    assert not (hub / "pythia-14m").exists()


def test_local_revisions_reads_step_and_trainer_layouts(tmp_path):
    for name in ("checkpoint-10", "checkpoint-2", "other"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    template, found = local_revisions(tmp_path)
    assert template == "checkpoint-{step}" and list(found) == [2, 10]
    (tmp_path / "step5").mkdir()
    (tmp_path / "step5" / "config.json").write_text("{}")
    assert local_revisions(tmp_path)[0] == "step{step}"


def test_bos_token_and_token_pool_follow_the_models_tokenizer(series, imported, tiny_model):
    hub, _ = imported
    model = hub.load_model("neox")
    assert bos_token_id(model) == 1 == hub.bos_token_id("neox")
    assert bos_token_id(tiny_model) == C.BOS_TOKEN_ID  # our own models: id 0, no tokenizer
    specials = special_token_ids(model.tokenizer)
    assert specials == (0, 1)
    vocab = series["vocab"]
    pool = pretrained_token_pool(model.cfg.d_vocab, model.tokenizer, exclude_fraction=0.1)
    ids = np.arange(2, vocab)  # every id the tokenizer produces but the two special tokens
    cut = int(len(ids) * 0.05)
    np.testing.assert_array_equal(pool, ids[cut:len(ids) - cut])
    freqs = hub.token_frequencies("neox")
    assert freqs.shape == (320,) and freqs[[0, 1]].sum() == 0 and freqs[vocab:].sum() == 0
    by_freq = pretrained_token_pool(model.cfg.d_vocab, model.tokenizer, token_frequencies=freqs,
                                    exclude_fraction=0.0)
    np.testing.assert_array_equal(by_freq, np.flatnonzero(freqs > 0))
    assert pretrained_token_pool(tiny_model.cfg.d_vocab).tolist() == list(range(1, 50))


def test_the_run_token_pool_without_frequencies_uses_the_tokenizer(imported, tmp_path):
    """An imported run without evaluation text has no token frequencies: the evaluators' pool
    then leaves out the tokenizer's special tokens and the ids it cannot produce."""
    import shutil

    from induction_lens.runs.context import EvalContext
    from induction_lens.runs.settings import EvalSettings

    hub, _ = imported
    shutil.copytree(hub.run_dir("neox"), tmp_path / "neox")
    bare = Hub(tmp_path)
    (tmp_path / "neox" / C.TOKEN_FREQUENCIES).unlink()
    manifest = json.loads((tmp_path / "neox" / C.MANIFEST).read_text())
    manifest["files"].pop(C.TOKEN_FREQUENCIES, None)
    (tmp_path / "neox" / C.MANIFEST).write_text(json.dumps(manifest))
    assert bare.token_frequencies("neox") is None
    ctx = EvalContext.from_hub(bare, "neox", EvalSettings(exclude_fraction=0.1))
    model = hub.load_model("neox")
    expected = pretrained_token_pool(model.cfg.d_vocab, model.tokenizer, exclude_fraction=0.1)
    np.testing.assert_array_equal(ctx.token_pool, expected)
    assert not set(ctx.token_pool.tolist()) & {0, 1}


def test_evaluators_run_on_the_imported_run(imported):
    from induction_lens.runs.context import EvalContext
    from induction_lens.runs.evaluate import evaluate_run
    from induction_lens.runs.settings import EvalSettings

    hub, _ = imported
    settings = EvalSettings(n_examples=4, head_examples=3, batch_size=4)
    frame = evaluate_run(hub, "neox", metrics=["losses", "prefix_matching", "copying",
                                               "previous_token"], settings=settings,
                         cache=False, progress=False)
    assert sorted(frame["step"].unique()) == list(STEPS)
    assert set(frame["metric"]) >= {"loss", "icl_score", "prefix_matching", "copying",
                                    "previous_token"}
    losses = frame[frame["metric"] == "loss"]["value"]
    assert np.isfinite(losses).all() and (losses > 0).all()
    ctx = EvalContext.from_hub(hub, "neox", settings)
    eval_tokens = ctx.eval_tokens
    assert eval_tokens.shape == (4, 128) and (eval_tokens[:, 0] == 1).all()  # the model's BOS
    assert set(ctx.token_pool.tolist()) <= set(np.flatnonzero(hub.token_frequencies("neox")))


def test_head_evaluator_inputs_start_with_the_models_bos(imported):
    from induction_lens.runs.context import EvalContext
    from induction_lens.runs.settings import EvalSettings

    hub, _ = imported
    ctx = EvalContext.from_hub(hub, "neox", EvalSettings(head_examples=3))
    assert (ctx.repeated_tokens[:, 0] == hub.bos_token_id("neox")).all()


def test_head_scores_are_the_same_on_the_processed_form(series, imported):
    """Why storing unprocessed weights is safe: TransformerLens's default processing (fold
    LayerNorm, centre writing weights and unembedding, fold value biases) leaves the head
    evaluators' scores unchanged."""
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading

    from induction_lens.measures.heads import head_scores

    hub, _ = imported
    ours = hub.load_model("neox", 2000)
    path = str(series["dir"] / "step2000")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    # HookedTransformer.from_pretrained's steps with its default processing flags
    cfg = loading.get_pretrained_model_config(path, hf_cfg=hf_model.config.to_dict(),
                                              fold_ln=True, device="cpu")
    state = loading.get_pretrained_state_dict(path, cfg, hf_model)
    processed = HookedTransformer(cfg, tokenizer=ours.tokenizer, move_to_device=False)
    processed.load_and_process_state_dict(state, fold_ln=True, center_writing_weights=True,
                                          center_unembed=True, fold_value_biases=True)
    assert processed.cfg.normalization_type == "LNPre"  # it really was folded
    pool = pretrained_token_pool(ours.cfg.d_vocab, ours.tokenizer)
    a = head_scores(ours, token_pool=pool, n_examples=3)
    b = head_scores(processed, token_pool=pool, n_examples=3)
    assert len(a) == 2 * 4 * 3
    np.testing.assert_allclose(a["value"].to_numpy(), b["value"].to_numpy(), atol=1e-4)


def test_pretrained_spec_round_trips_and_validates(imported):
    hub, _ = imported
    cfg = hub.config("neox")
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    spec = cfg.model
    with pytest.raises(ConfigError, match="tokens_per_step"):
        PretrainedSpec(source="x", hooked_config=spec.hooked_config, tokens_per_step=0)
    with pytest.raises(ConfigError, match="lacks"):
        PretrainedSpec(source="x", hooked_config={"n_layers": 1}, tokens_per_step=1)
    with pytest.raises(ConfigError, match="revision_template"):
        PretrainedSpec(source="x", hooked_config=spec.hooked_config, tokens_per_step=1,
                       revision_template="main")
    assert PYTHIA_TOKENS_PER_STEP == 1024 * 2048 == 2_097_152
    mixed = RunConfig(model=spec, train=TrainConfig(steps=1, batch_size=1), data=DataSpec())
    assert isinstance(RunConfig.from_dict(mixed.to_dict()).model, PretrainedSpec)
