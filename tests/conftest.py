"""Shared fixtures: deterministic seeding, tiny models, and one briefly trained hub per session.

``trained_hub`` trains the laptop ``attn-only-1l`` (400 steps) and ``attn-only-2l`` (800 steps)
presets once per test session (~1 minute on 2 cores) into a temporary hub; every integration
test reads from it instead of training its own models. Tests must not write into it.
"""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from induction_lens.config import DataSpec, ModelSpec
from induction_lens.hub import Hub
from induction_lens.models import build_model

TRAINED_STEPS = {"attn-only-1l": 400, "attn-only-2l": 800}


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


TINY_DATA = DataSpec(min_segment=4, max_segment=8)
"""Synthetic data whose segments fit the tiny models' 24-token context."""


def tiny_spec(**overrides) -> ModelSpec:
    """A small random model spec (2 layers, d_model 32, 4 heads of 8, ctx 24, vocab 50)."""
    base = dict(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=24, d_vocab=50)
    base.update(overrides)
    return ModelSpec(**base)


@pytest.fixture
def tiny_model():
    """A random 2-layer attention-only model with LayerNorm."""
    return build_model(tiny_spec(), seed=0)


@pytest.fixture(scope="session")
def trained_hub(tmp_path_factory) -> Hub:
    """A hub with briefly trained laptop attn-only-1l and attn-only-2l runs (read-only)."""
    from induction_lens.train import train

    root: Path = tmp_path_factory.mktemp("trained_hub")
    for preset, steps in TRAINED_STEPS.items():
        train(preset, hub=root, run=preset, steps=steps, progress=False)
    return Hub(root)
