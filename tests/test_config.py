"""Config validation, serialisation and schedules."""

import json

import pytest

from induction_lens.config import ConfigError, DataSpec, ModelSpec, RunConfig, TrainConfig
from induction_lens.presets import PRESETS, get_preset, list_presets

from .conftest import tiny_spec


def test_model_spec_round_trips_through_json():
    spec = tiny_spec(smeared_keys=True, attn_only=False, d_mlp=64)
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert spec.to_dict()["induction_lens_version"]


def test_run_config_round_trips_with_tuples():
    cfg = RunConfig(tiny_spec(), TrainConfig(steps=10, batch_size=2,
                                             weight_decay_steps=((5, 0.001),)),
                    DataSpec(source="files", files=("a.txt", "b.txt")), preset="x")
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


@pytest.mark.parametrize(("overrides", "field"), [
    ({"d_model": 30}, "d_model"),
    ({"n_layers": 0}, "n_layers"),
    ({"normalization_type": "RMS"}, "normalization_type"),
    ({"positional_embedding_type": "rotary"}, "positional_embedding_type"),
    ({"d_mlp": -1}, "d_mlp"),
])
def test_bad_model_spec_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        tiny_spec(**overrides)


def test_from_dict_refuses_unknown_fields():
    data = tiny_spec().to_dict() | {"n_layer": 3}
    with pytest.raises(ConfigError, match="n_layer"):
        ModelSpec.from_dict(data)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"steps": 0}, "steps"),
    ({"lr": -1.0}, "lr"),
    ({"betas": (0.9, 1.5)}, "betas"),
    ({"checkpoint_every": 0}, "checkpoint_every"),
    ({"checkpoint_schedule": "cubic"}, "checkpoint_schedule"),
    ({"grad_clip": 0.0}, "grad_clip"),
    ({"keep_optimizer_states": 0}, "keep_optimizer_states"),
])
def test_bad_train_config_names_the_field(kwargs, field):
    base = {"steps": 10, "batch_size": 2} | kwargs
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**base)


def test_checkpoint_schedules():
    lin = TrainConfig(steps=120, batch_size=1, checkpoint_every=50)
    assert lin.checkpoint_steps() == [0, 50, 100, 120]
    log = TrainConfig(steps=100, batch_size=1, checkpoint_schedule="log")
    assert log.checkpoint_steps() == [0, 1, 2, 4, 8, 16, 32, 64, 100]


def test_learning_rate_and_weight_decay_schedules():
    cfg = TrainConfig(steps=110, batch_size=1, lr=1.0, warmup_steps=10, lr_schedule="cosine",
                      weight_decay=0.1, weight_decay_steps=((50, 0.01),))
    assert cfg.lr_at(0) == pytest.approx(0.1)
    assert cfg.lr_at(9) == pytest.approx(1.0)
    assert cfg.lr_at(10) == pytest.approx(1.0)
    assert cfg.lr_at(110) == pytest.approx(0.1)  # cosine ends at 10% of the peak
    assert cfg.weight_decay_at(49) == 0.1 and cfg.weight_decay_at(50) == 0.01


@pytest.mark.parametrize(("source", "expected"), [
    ("synthetic", DataSpec()),
    ("synthetic:zipf", DataSpec(distribution="zipf")),
    ("hf:NeelNanda/pile-10k", DataSpec(source="huggingface", name="NeelNanda/pile-10k")),
    ("files:a.txt,b.parquet", DataSpec(source="files", files=("a.txt", "b.parquet"))),
    ("shakespeare", DataSpec(source="shakespeare")),
])
def test_data_spec_parse(source, expected):
    assert DataSpec.parse(source) == expected


@pytest.mark.parametrize("source", ["synthetic:gauss", "hf:", "files:", "wikipedia",
                                    "shakespeare:x"])
def test_data_spec_parse_rejects_bad_sources(source):
    with pytest.raises(ConfigError, match="--data"):
        DataSpec.parse(source)


def test_data_spec_requires_fields_for_source():
    with pytest.raises(ConfigError, match="name"):
        DataSpec(source="huggingface")
    with pytest.raises(ConfigError, match="files"):
        DataSpec(source="files")
    with pytest.raises(ConfigError, match="min_segment"):
        DataSpec(min_segment=10, max_segment=5)


def test_presets_cover_the_papers_families():
    names = set(PRESETS)
    for n in range(1, 7):
        assert f"attn-only-{n}l" in names and f"mlp-{n}l" in names
    assert {"smeared-1l", "smeared-2l", "full-4l", "full-40l"} <= names
    full40 = get_preset("full-40l", "paper").model
    assert (full40.d_model, full40.d_head, full40.n_heads) == (5120, 64, 80)
    assert 12e9 < full40.n_params < 14e9  # the paper: 13B
    small = get_preset("attn-only-2l", "paper").model
    assert (small.d_model, small.n_heads, small.n_ctx, small.d_vocab) == (768, 12, 8192, 2**16)
    assert get_preset("smeared-1l").model.smeared_keys
    assert not get_preset("mlp-3l").model.attn_only
    assert len(list_presets()) == len(PRESETS)


def test_unknown_preset_and_scale():
    with pytest.raises(ConfigError, match="unknown preset 'attn-only-9l'"):
        get_preset("attn-only-9l")
    # TypeError: under the tests' runtime type checking, the Literal annotation rejects it first
    with pytest.raises((ConfigError, TypeError), match="scale"):
        get_preset("attn-only-1l", "huge")  # type: ignore[arg-type]


def test_the_legacy_hub_source_means_huggingface():
    """Runs stored before the rename say source "hub" (the HuggingFace hub, not our hub)."""
    spec = DataSpec.from_dict({"source": "hub", "name": "NeelNanda/pile-10k"})
    assert spec.source == "huggingface" and spec == DataSpec(source="huggingface",
                                                             name="NeelNanda/pile-10k")
