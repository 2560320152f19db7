"""Names in one place: every on-disk name of the local checkpoint hub, the BOS token, the head
evaluators' metric names.

Level: a leaf (imports nothing from the package).

Layout of a hub (a plain directory)::

    HUB/
      RUN/
        run.json                          RUN_CONFIG: model/train/data specs, version, git hash
        tokenizer.json                    TOKENIZER: natural-text runs only
        token_frequencies.safetensors     TOKEN_FREQUENCIES: for the evaluators' token pool
        manifest.json                     MANIFEST: the complete checkpoints, with sha256
        log.parquet                       TRAIN_LOG: training loss per step
        checkpoints/step_00000050.safetensors        weights
        checkpoints/step_00000050.optim.safetensors  optimizer state (newest checkpoints only)
        evals/*.parquet                   evaluator caches
        .lock                             held while a process writes the run
      .cache/                             tokenized natural text, shared by runs
"""

from typing import Literal, get_args


RUN_CONFIG = "run.json"
MANIFEST = "manifest.json"
TRAIN_LOG = "log.parquet"
TOKENIZER = "tokenizer.json"
TOKEN_FREQUENCIES = "token_frequencies.safetensors"
CHECKPOINT_DIR = "checkpoints"
EVAL_DIR = "evals"
LOCK = ".lock"
CACHE_DIR = ".cache"
WEIGHTS_SUFFIX = ".safetensors"
OPTIMIZER_SUFFIX = ".optim.safetensors"
MANIFEST_FORMAT = 1

HeadMetric = Literal["prefix_matching", "copying", "previous_token"]
HEAD_METRICS: tuple[str, ...] = get_args(HeadMetric)
"""The head activation evaluators of the paper's appendix, "(3) Head activation evaluators":
the ``metric`` names :func:`induction_lens.measures.head_scores` writes."""

BOS_TOKEN_ID = 0
"""Token id 0 is the beginning-of-sequence token of every corpus of this package."""

BOS_TOKEN = "<|bos|>"
"""The text of token id 0 in the tokenizers trained by this package."""


def checkpoint_name(step: int) -> str:
    """File name (relative to the run) of the weights of ``step``."""
    return f"{CHECKPOINT_DIR}/step_{step:08d}{WEIGHTS_SUFFIX}"


def optimizer_name(step: int) -> str:
    """File name (relative to the run) of the optimizer state saved with ``step``."""
    return f"{CHECKPOINT_DIR}/step_{step:08d}{OPTIMIZER_SUFFIX}"
