"""induction_lens: reproduce Olsson et al. 2022, *In-context Learning and Induction Heads*.

Build the paper's models as TransformerLens ``HookedTransformer``s, train them into a local
checkpoint hub, and measure induction heads over training as tidy pandas DataFrames.
"""

from induction_lens._version import __version__
from induction_lens.config import ConfigError, DataSpec, ModelSpec, RunConfig, TrainConfig
from induction_lens.hub import Hub, HubError
from induction_lens.models import build_model
from induction_lens.presets import PRESETS, get_preset, list_presets
from induction_lens.train import TrainResult, train

__all__ = [
    "__version__",
    "ConfigError",
    "DataSpec",
    "Hub",
    "HubError",
    "ModelSpec",
    "PRESETS",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "get_preset",
    "list_presets",
    "train",
]
