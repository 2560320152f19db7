"""Names in one place: every on-disk name of the local checkpoint hub, the BOS token, the head
evaluators' metric names.

Level: a leaf (imports nothing from the package).

Layout of a hub (a plain directory)::

    HUB/
      induction_lens_hub.json             HUB_MARKER: {"format": HUB_FORMAT}, written on first use
      RUN/
        run.json                          RUN_CONFIG: model/train/data specs, version, git hash
        tokenizer.json                    TOKENIZER: natural-text runs only
        token_frequencies.safetensors     TOKEN_FREQUENCIES: for the evaluators' token pool
        manifest.json                     MANIFEST: the complete checkpoints and every other
                                          file of the run (``files``), with sha256
        log.parquet                       TRAIN_LOG: training loss per step
        checkpoints/step_00000050.safetensors        weights
        checkpoints/step_00000050.optim.safetensors  optimizer state (newest checkpoints only)
        evals/*.parquet                   evaluator caches
        .lock                             held while a process writes the run
        .manifest.lock                    held for the moment a process updates the manifest
        .NAME.staged                      the next content of NAME, until the manifest lists it
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
MANIFEST_FORMAT = 2
"""Version 2 added the ``files`` map (sha256 of every file besides the checkpoints); version 1
manifests are still read (their other files are verified from the next write on)."""
HUB_MARKER = "induction_lens_hub.json"
HUB_FORMAT = 1
"""The hub layout version this package writes and reads; a newer hub is refused."""
MANIFEST_LOCK = ".manifest.lock"
STAGED_SUFFIX = ".staged"
CORE_FILES = (RUN_CONFIG, TRAIN_LOG, TOKENIZER, TOKEN_FREQUENCIES)
"""The files every run may hold besides its checkpoints; all are listed in the manifest."""
LOG_COLUMNS = ("step", "tokens", "loss", "lr", "grad_norm", "seconds")
"""The columns of ``log.parquet``, one row per optimizer step."""

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
