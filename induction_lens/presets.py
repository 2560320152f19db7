"""Named presets for the paper's four model series, each at paper scale and at laptop scale.

Paper scale follows "Model Details": small models (attention-only and with MLPs, 1-6 layers)
have d_model 768, 12 heads of 64, context 8192, vocabulary 2^16, 10,000 steps of ~1M tokens
with a snapshot every 50 steps and a weight-decay reduction at step 4750; the full-scale
family has d_model = 128 * n_layers, heads of 64, snapshots at steps 2^k; smeared-key models
are the small attention-only models with smeared keys. The paper does not give learning rates,
batch composition or weight-decay values: the values below are our choices (documented here
and in the docs), not the paper's.

Laptop scale keeps every architectural choice but shrinks widths so that the 2-layer
attention-only model forms an induction head in about a minute on 2 CPU cores: d_model 64,
4 heads of 16, context 128, vocabulary 512, batch 32, AdamW 3e-3 with 50 warm-up steps, 1000
steps (a recipe measured to form an induction head at step ~600 on the synthetic corpus). The
laptop full-scale family uses d_model = 16 * n_layers with heads of 16 and a linear snapshot
schedule (the phase change would fall between two log-spaced snapshots of a short run).

The models with MLPs and the full-scale family train with AdamW 5e-3 for 1300 steps at laptop
scale (our choice, measured on the synthetic corpus): with the attention-only recipe they form
their induction heads late or not at all in 1000 steps (``mlp-2l`` reaches prefix matching 0.45
only at the last step, ``mlp-3l`` and ``full-4l`` stay below 0.1); at 5e-3 the phase change
comes at step ~870 (``mlp-2l``), ~930 (``mlp-3l``), ~990 (``full-4l``) and ~1450
(``full-6l``), each with a few hundred steps after it (the deeper full-scale models train
longer: :func:`_full_laptop_steps`). A higher rate is not faster (1e-2: ``mlp-2l`` only at
step ~980), nor is a narrower model (``full-4l`` at d_model 32: step ~1450). Until 2026-11-30
these runs were 1500 steps (2000 for ``full-6l``); 200 fewer keep every window's end at least
150 steps before the last checkpoint and bring Argument 6's example under 15 minutes on 2 CPU
cores.
"""

from dataclasses import dataclass, replace
from typing import Literal, get_args

import pandas as pd

from induction_lens.config import (
    ConfigError,
    DataSpec,
    ModelSpec,
    ReddyNetSpec,
    ReddyTaskSpec,
    RunConfig,
    TrainConfig,
)

Scale = Literal["laptop", "paper"]
Family = Literal["attn-only", "mlp", "smeared", "full", "reddy"]

SMALL_LAYERS = (1, 2, 3, 4, 5, 6)
SMEARED_LAYERS = (1, 2)
FULL_LAYERS = (4, 6, 10, 16, 24, 40)

_LAPTOP_SMALL = ModelSpec(n_layers=1, d_model=64, n_heads=4, d_head=16, n_ctx=128, d_vocab=512)
_PAPER_SMALL = ModelSpec(n_layers=1, d_model=768, n_heads=12, d_head=64, n_ctx=8192,
                         d_vocab=2**16)
_LAPTOP_TRAIN = TrainConfig(steps=1000, batch_size=32, lr=3e-3, warmup_steps=50,
                            checkpoint_every=50)
_LAPTOP_MLP_TRAIN = replace(_LAPTOP_TRAIN, steps=1300, lr=5e-3)
"""Laptop training of the models with MLPs and of the full-scale family (module docstring)."""
_PAPER_SMALL_TRAIN = TrainConfig(steps=10_000, batch_size=128, lr=1e-3, warmup_steps=1430,
                                 weight_decay=0.01, weight_decay_steps=((4750, 0.001),),
                                 checkpoint_every=50)
_PAPER_FULL_TRAIN = TrainConfig(steps=2**17, batch_size=128, lr=6e-4, warmup_steps=1430,
                                lr_schedule="cosine", checkpoint_schedule="log")


@dataclass(frozen=True)
class Preset:
    """A named model of one of the paper's series, at both scales."""

    name: str
    family: Family
    description: str
    laptop: RunConfig
    paper: RunConfig

    def at(self, scale: Scale) -> RunConfig:
        if scale not in get_args(Scale):
            raise ConfigError(f"scale={scale!r} is not one of {get_args(Scale)}")
        return self.laptop if scale == "laptop" else self.paper


def _small(name: str, family: Family, n_layers: int, *, attn_only: bool, smeared: bool,
           description: str) -> Preset:
    laptop = replace(_LAPTOP_SMALL, n_layers=n_layers, attn_only=attn_only, smeared_keys=smeared)
    paper = replace(_PAPER_SMALL, n_layers=n_layers, attn_only=attn_only, smeared_keys=smeared)
    laptop_train = _LAPTOP_TRAIN if attn_only else _LAPTOP_MLP_TRAIN
    return Preset(name, family, description,
                  RunConfig(laptop, laptop_train, DataSpec(), preset=name),
                  RunConfig(paper, _PAPER_SMALL_TRAIN, DataSpec(), preset=name))


def _full_laptop_steps(n_layers: int) -> int:
    """Laptop training steps of ``full-{n_layers}l``: 1300 up to 4 layers, 250 more per layer
    beyond (full-6l: 1800). Measured: the phase change needs about 4M tokens at 4 layers
    (step ~990 of 32 x 128 tokens) and 6M at 6 layers (step ~1450), and halving the batch
    halves neither (it comes at the same number of tokens)."""
    return _LAPTOP_MLP_TRAIN.steps + 250 * max(0, n_layers - 4)


def _full(n_layers: int) -> Preset:
    name = f"full-{n_layers}l"
    paper = ModelSpec(n_layers=n_layers, d_model=128 * n_layers, n_heads=2 * n_layers, d_head=64,
                      n_ctx=8192, d_vocab=2**16, attn_only=False)
    laptop = ModelSpec(n_layers=n_layers, d_model=16 * n_layers, n_heads=n_layers, d_head=16,
                       n_ctx=128, d_vocab=512, attn_only=False)
    return Preset(name, "full", f"full-scale family, {n_layers} layers, d_model = 128*{n_layers} "
                  f"at paper scale ({paper.n_params / 1e6:.0f}M non-embedding params)",
                  RunConfig(laptop, replace(_LAPTOP_MLP_TRAIN, steps=_full_laptop_steps(n_layers)),
                            DataSpec(), preset=name),
                  RunConfig(paper, _PAPER_FULL_TRAIN, DataSpec(), preset=name))


def _natural_text() -> Preset:
    """``attn-only-2l-text``: the 2-layer attention-only model on offline natural text.

    Our choice, measured on one CPU core (docs/natural-text.md): the laptop ``attn-only-2l``
    architecture (d_model 64, 4 heads of 16) with a byte-level BPE of 2048 tokens trained on
    the Shakespeare corpus and a context of 256, so that the ICL score's scaled indices (25
    and 250, see :func:`~induction_lens.measures.losses.icl_indices`) lie well inside the
    context; 2000 steps of 32 x 256 tokens (16.4M tokens, about 9 epochs of the 1.8M training
    tokens), so that the run fits in an hour on one busy core, and a checkpoint every 50
    steps (2.5% of the run, enough points for the phase-change window). ``induction-lens
    train --preset attn-only-2l-text`` trains on the preset's data (Shakespeare); ``--data``
    replaces it. The paper scale is ``attn-only-2l``'s paper-scale model on the same corpus
    (its BPE then stops short of 2^16 tokens when the corpus runs out of pairs to merge).
    """
    name = "attn-only-2l-text"
    data = DataSpec(source="shakespeare")
    laptop = replace(_LAPTOP_SMALL, n_layers=2, n_ctx=256, d_vocab=2048)
    train = replace(_LAPTOP_TRAIN, steps=2000, checkpoint_every=50)
    paper = replace(_PAPER_SMALL, n_layers=2)
    return Preset(name, "attn-only", "small attention-only model, 2 layers, on natural text "
                  "(Shakespeare, byte-level BPE; offline)",
                  RunConfig(laptop, train, data, preset=name),
                  RunConfig(paper, _PAPER_SMALL_TRAIN, data, preset=name))


_REDDY_PAPER_TRAIN = TrainConfig(steps=150_000, batch_size=128, lr=0.01, warmup_steps=0,
                                 weight_decay=1e-6, grad_clip=None, checkpoint_every=1000,
                                 optimizer="sgd")
"""Reddy 2023: plain SGD, learning rate 0.01, batch 128, 150k steps, test sets every 1000 steps.
The paper says only "a small weight decay"; 1e-6 is our choice."""
_REDDY_LAPTOP_TRAIN = TrainConfig(steps=3000, batch_size=128, lr=1e-3, warmup_steps=0,
                                  weight_decay=0.0, grad_clip=None, checkpoint_every=100,
                                  optimizer="adamw")
"""Laptop scale (our choice): AdamW at 1e-3 on a network of width 64 (33 position dims, 31
content dims); with these the in-context transition of ``reddy-icl`` comes within ~1000 steps
(about 15 s on one CPU core) instead of the ~30k SGD steps the paper reports."""
_REDDY_LAPTOP_TASK = {"n_pos": 33, "D": 31}


def _reddy(name: str, description: str, **task: object) -> Preset:
    paper_task = ReddyTaskSpec(**task)
    laptop_task = ReddyTaskSpec(**{**task, **_REDDY_LAPTOP_TASK})
    return Preset(name, "reddy", description,
                  RunConfig(ReddyNetSpec.for_task(laptop_task), _REDDY_LAPTOP_TRAIN, laptop_task,
                            preset=name),
                  RunConfig(ReddyNetSpec.for_task(paper_task), _REDDY_PAPER_TRAIN, paper_task,
                            preset=name))


def _reddy_presets() -> list[Preset]:
    """Reddy 2023 (arXiv 2312.03002): the in-context classification task and minimal network."""
    return [
        _reddy("reddy-icl", "Reddy 2023 dynamics setting: K=256, B=1, p_B=1, p_C=0.8 (learns "
               "in-context)", K=256, B=1, p_B=1.0, p_C=0.8),
        _reddy("reddy-iwl", "Reddy 2023, iid sequences: K=256, B=0, p_C=0 (learns in-weights)",
               K=256, B=0, p_B=0.0, p_C=0.0),
        _reddy("reddy-l-eq-n", "Reddy 2023 control: L=N=8, K=256, B=1, p_C=0.8 (no in-context "
               "learning)", K=256, L=8, B=1, p_B=1.0, p_C=0.8),
    ]


def _registry() -> dict[str, Preset]:
    presets: list[Preset] = []
    for n in SMALL_LAYERS:
        presets.append(_small(f"attn-only-{n}l", "attn-only", n, attn_only=True, smeared=False,
                              description=f"small attention-only model, {n} layer(s)"))
    for n in SMALL_LAYERS:
        presets.append(_small(f"mlp-{n}l", "mlp", n, attn_only=False, smeared=False,
                              description=f"small model with MLPs, {n} layer(s)"))
    for n in SMEARED_LAYERS:
        presets.append(_small(f"smeared-{n}l", "smeared", n, attn_only=True, smeared=True,
                              description=f"attention-only with smeared keys, {n} layer(s)"))
    presets.extend(_full(n) for n in FULL_LAYERS)
    presets.append(_natural_text())
    presets.extend(_reddy_presets())
    return {p.name: p for p in presets}


PRESETS: dict[str, Preset] = _registry()
"""Every preset by name (``induction-lens presets`` lists them)."""


def get_preset(name: str, scale: Scale = "laptop") -> RunConfig:
    """The :class:`RunConfig` of preset ``name`` at ``scale`` ("laptop" or "paper")."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; run `induction-lens presets` to list them "
                          f"(e.g. {', '.join(list(PRESETS)[:3])})")
    return PRESETS[name].at(scale)


def list_presets(scale: Scale = "laptop") -> pd.DataFrame:
    """One row per preset with its architecture and training length at ``scale``."""
    rows = []
    for p in PRESETS.values():
        cfg = p.at(scale)
        m = cfg.model
        rows.append({"name": p.name, "family": p.family, "n_layers": m.n_layers,
                     "d_model": m.d_model, "n_heads": m.n_heads, "d_head": m.d_head,
                     "mlp": not m.attn_only, "smeared_keys": m.smeared_keys, "n_ctx": m.n_ctx,
                     "d_vocab": m.d_vocab, "params": m.n_params, "steps": cfg.train.steps,
                     "description": p.description})
    return pd.DataFrame(rows)
