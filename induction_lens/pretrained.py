"""Pretrained checkpoint series (Pythia, or any local series) as ordinary hub runs.

The paper's Argument 4 and Model Analysis Table measure models "across training": a series
of snapshots. :func:`import_pretrained` brings a series trained elsewhere into the hub as a
run like any other, so every evaluator, ablation and the report work on it unchanged:

* **Sources.** A TransformerLens model name whose checkpoints TransformerLens knows
  (``"pythia-70m"``, ``"EleutherAI/pythia-160m-deduped"``, ``"stanford-crfm/..."``; online,
  or from the local HuggingFace cache), or a local directory of HuggingFace ``save_pretrained``
  revisions, one subdirectory per checkpoint: ``DIR/step1000/``, ``DIR/step2000/`` (or the
  Trainer's ``DIR/checkpoint-1000/``), with the tokenizer saved in ``DIR`` itself, in
  ``DIR/tokenizer/`` or in the revisions. A local directory never touches the network.
* **Conversion.** We follow TransformerLens's own loader step by step (what
  ``HookedTransformer.from_pretrained`` does): ``get_pretrained_model_config`` with
  ``checkpoint_value=step`` (not ``checkpoint_label``, which did not select a checkpoint in
  some versions), ``get_pretrained_state_dict`` (for a local revision, with the
  ``transformers.AutoModelForCausalLM`` we loaded as ``hf_model``), a ``HookedTransformer``
  built from that config and ``load_and_process_state_dict``. We call the steps ourselves
  instead of ``from_pretrained`` because it prints and reloads the tokenizer per checkpoint.
* **No processing (our choice).** ``from_pretrained`` folds LayerNorm weights into the next
  layer, centres the writing weights and the unembedding and folds value biases by default. We
  store the weights *unprocessed* (``from_pretrained_no_processing``'s flags): the stored
  model computes the same logits as the checkpoint it came from (checked in the tests), its
  parameters are the ones the series' authors published, and nothing depends on a processing
  step changing between TransformerLens versions. The evaluators do not need the processed
  form: attention patterns do not change under it, and the copying score's direct path
  already applies the final LayerNorm's centring and gain and subtracts the mean logit
  (:func:`~induction_lens.evals.heads.copying_scores`), which is what folding and centring
  would have done; the tests check head scores equal on both forms.
* **The run.** Weights are the ``HookedTransformer`` state dict as safetensors with the
  manifest's sha256, ``tokens = step * tokens_per_step`` (Pythia: 1024 sequences x 2048
  tokens = 2,097,152 per step), the tokenizer's ``tokenizer.json`` and a ``run.json`` whose
  model spec is a :class:`~induction_lens.config.PretrainedSpec`: the source, the
  TransformerLens config, the revision template, the special tokens and the TransformerLens
  version. :meth:`Hub.load_model <induction_lens.hub.Hub.load_model>` rebuilds the same
  ``HookedTransformer`` from it, offline.
* **Resumable and idempotent.** A checkpoint already in the manifest is skipped without
  loading anything; an interrupted import continues where it stopped. Importing into a run
  with another source, config or TransformerLens version is refused.
* **Evaluation text.** ``data`` (e.g. ``"hf:NeelNanda/pile-10k"`` or ``"files:PATH"``) is
  the text the loss evaluators read, tokenized with the model's own tokenizer into examples
  of the model's BOS and ``min(n_ctx, 512)`` - 1 tokens (the paper's 512-token examples); its
  token frequencies are stored so the head evaluators' token pool excludes the most and least
  common tokens of the model's vocabulary as the paper says.
* **Offline.** A model name is checked against TransformerLens's table without the network;
  the HuggingFace endpoint is probed for at most a few seconds
  (:func:`~induction_lens.data.text.hub_reachable`), and when it does not answer only the
  local HuggingFace cache is read, failing at once with a :class:`PretrainedOfflineError`
  that names the offline alternative (a local directory).

The BOS token: the head evaluators prepend "a 'start of sequence' token" (appendix "(3) Head
activation evaluators"). For this package's own models that is id 0; for a pretrained model it
is the model's own tokenizer's BOS (Pythia: ``<|endoftext|>``, also id 0; GPT-2: 50256).
:func:`induction_lens.models.pretrained.bos_token_id`,
:meth:`induction_lens.hub.Hub.bos_token_id` and
:func:`induction_lens.data.pretrained.pretrained_token_pool` give the evaluators the right
token and pool for any model.

Level: like ``train`` (imports ``hub``, ``models``, ``data``, ``config``); the CLI is
:mod:`induction_lens.cli.pretrained`.
"""

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, HookedTransformerConfig

from induction_lens import constants as C
from induction_lens.config import ConfigError, DataSpec, PretrainedSpec, RunConfig, TrainConfig
from induction_lens.data.pretrained import SPECIAL_ROLES, special_token_ids
from induction_lens.errors import DataError, HubError
from induction_lens.models import quiet_deprecation
from induction_lens.models.pretrained import hooked_config_dict

logger = logging.getLogger(__name__)

__all__ = [
    "PYTHIA_TOKENS_PER_STEP",
    "ImportResult",
    "PretrainedOfflineError",
    "import_pretrained",
    "local_revisions",
]

PYTHIA_TOKENS_PER_STEP = 1024 * 2048
"""Pythia's batch: 1024 sequences of 2048 tokens = 2,097,152 tokens per optimizer step."""

TOKENS_PER_STEP: dict[str, int] = {
    "EleutherAI/pythia": PYTHIA_TOKENS_PER_STEP,
    "stanford-crfm/": 512 * 1024,
}
"""Training tokens per step of the checkpoint series TransformerLens knows, by name prefix
(the Stanford CRFM GPT-2 runs: 512 sequences of 1024 tokens). Other series need
``tokens_per_step=``."""


_REVISION_DIRS = (("step{step}", re.compile(r"^step(\d+)$")),
                  ("checkpoint-{step}", re.compile(r"^checkpoint-(\d+)$")))
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_RUN_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class PretrainedOfflineError(HubError):
    """A pretrained series is not reachable (offline) and not in the local HuggingFace cache."""


# ============================================================================ BOS and pool


# ============================================================================ the model


# ============================================================================ sources
def local_revisions(directory: str | os.PathLike[str]) -> tuple[str, dict[int, Path]]:
    """The revision template and ``{step: path}`` of a local directory of revisions.

    Subdirectories named ``step{N}`` (Pythia's branch names) or, failing those,
    ``checkpoint-{N}`` (the ``transformers`` Trainer's), each holding a ``config.json``.

    Raises:
        DataError: the directory is missing or holds no revision.
    """
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise DataError(f"pretrained directory {root} does not exist; pass a directory of "
                        "save_pretrained revisions (DIR/step1000/, DIR/step2000/, ...) or a "
                        "TransformerLens model name")
    children = [p for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    for template, pattern in _REVISION_DIRS:
        found = {int(m.group(1)): p for p in children if (m := pattern.match(p.name))}
        if found:
            return template, dict(sorted(found.items()))
    raise DataError(f"pretrained directory {root} holds no revision: expected subdirectories "
                    "step{N}/ (or checkpoint-{N}/) each saved with model.save_pretrained")


def _local_tokenizer(root: Path, revisions: dict[int, Path]):
    from transformers import AutoTokenizer

    candidates = [root, root / "tokenizer", *revisions.values()]
    for path in candidates:
        if any((path / name).is_file() for name in _TOKENIZER_FILES):
            try:
                return AutoTokenizer.from_pretrained(str(path), use_fast=True)
            except (OSError, ValueError) as err:
                raise DataError(f"the tokenizer in {path} does not load ({err}); save it with "
                                "tokenizer.save_pretrained") from None
    raise DataError(f"no tokenizer in {root}, {root / 'tokenizer'} or the revisions; save the "
                    "series' tokenizer with tokenizer.save_pretrained(DIR)")


def _official_name(name: str) -> str:
    from transformer_lens import loading_from_pretrained as loading

    try:
        return loading.get_official_model_name(name)
    except ValueError:
        raise ConfigError(f"{name!r} is neither a local directory nor a model TransformerLens "
                          "knows; pass a directory of save_pretrained revisions or a name such "
                          "as 'pythia-70m'") from None


def _checkpoint_labels(official: str, offline: bool) -> tuple[list[int], str]:
    from transformer_lens import loading_from_pretrained as loading

    from induction_lens.data.text import _hf_offline

    try:
        with _hf_offline(offline):
            return loading.get_checkpoint_labels(official)
    except ValueError:
        raise ConfigError(f"TransformerLens has no checkpoint series of {official!r}; use a "
                          "series such as 'pythia-70m', or a local directory of revisions"
                          ) from None
    except Exception as err:  # hub errors of the NeelNanda series' file listing
        raise _offline_error(official, offline, err) from None


def _offline_error(what: str, offline: bool, err: BaseException) -> HubError:
    from huggingface_hub import constants

    if offline:
        return PretrainedOfflineError(
            f"{what}: the HuggingFace hub ({constants.ENDPOINT}) is unreachable or "
            "HF_HUB_OFFLINE is set, and it is not in the local HuggingFace cache; offline, "
            "import a local directory of save_pretrained revisions (DIR/step1000/, ...) instead")
    return HubError(f"{what}: loading from the HuggingFace hub failed ({err}); check the name "
                    "and the connection, or import a local directory of revisions")


def _is_offline() -> bool:
    from huggingface_hub import constants

    from induction_lens.data.text import hub_reachable

    if constants.HF_HUB_OFFLINE:
        return True
    if not hub_reachable():
        logger.warning("the HuggingFace hub is unreachable: looking in the local cache only")
        return True
    return False


@dataclass(frozen=True)
class _Loaded:
    model: HookedTransformer
    config: dict[str, Any]


class _Source:
    """Loads one checkpoint at a time of a local directory or a TransformerLens series."""

    def __init__(self, name_or_dir: str | os.PathLike[str], *, tokens_per_step: int | None,
                 device: str | torch.device):
        self.device = device
        path = Path(name_or_dir).expanduser()
        # An existing path, or one written as a path (absolute, ./, ~/), is a local series.
        self.local = path.exists() or str(name_or_dir).startswith((os.sep, ".", "~"))
        self._tokenizer = None
        if self.local:
            self.root = path.absolute()
            self.template, self.revisions = local_revisions(self.root)
            self.name = str(self.root)
            self.steps = list(self.revisions)
            self.offline = True
            if tokens_per_step is None:
                raise ConfigError(f"tokens_per_step is required for the local series {self.root} "
                                  "(training tokens per optimizer step, e.g. Pythia's "
                                  f"{PYTHIA_TOKENS_PER_STEP}); pass tokens_per_step=")
        else:
            self.name = _official_name(str(name_or_dir))
            self.template = "step{step}"
            self.offline = _is_offline()
            labels, label_type = _checkpoint_labels(self.name, self.offline)
            self.steps = list(labels)
            if label_type == "token":  # NeelNanda series label checkpoints by tokens seen
                tokens_per_step = tokens_per_step or 1
            known = next((v for k, v in TOKENS_PER_STEP.items() if self.name.startswith(k)), None)
            tokens_per_step = tokens_per_step or known
            if tokens_per_step is None:
                raise ConfigError(f"tokens_per_step of {self.name!r} is not known; pass "
                                  "tokens_per_step= (training tokens per optimizer step)")
        self.tokens_per_step = int(tokens_per_step)

    @property
    def default_run(self) -> str:
        base = Path(self.name).name if self.local else self.name.split("/")[-1]
        return _RUN_NAME_CHARS.sub("-", base).strip("-._") or "pretrained"

    def tokenizer(self, cfg: HookedTransformerConfig):
        """The series' ``transformers`` tokenizer (loaded once)."""
        if self._tokenizer is None:
            if self.local:
                self._tokenizer = _local_tokenizer(self.root, self.revisions)
            else:
                from transformers import AutoTokenizer

                from induction_lens.data.text import _hf_offline

                try:
                    with _hf_offline(self.offline):
                        self._tokenizer = AutoTokenizer.from_pretrained(
                            cfg.tokenizer_name or self.name, use_fast=True)
                except Exception as err:
                    raise _offline_error(f"tokenizer of {self.name!r}", self.offline,
                                         err) from None
        return self._tokenizer

    def load(self, step: int) -> _Loaded:
        """The unprocessed ``HookedTransformer`` of checkpoint ``step``."""
        from transformer_lens import loading_from_pretrained as loading

        from induction_lens.data.text import _hf_offline

        what = f"{self.name}@{self.template.format(step=step)}"
        try:
            with _hf_offline(self.offline), quiet_deprecation():
                if self.local:
                    from transformers import AutoModelForCausalLM

                    path = str(self.revisions[step])
                    hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
                    cfg = loading.get_pretrained_model_config(
                        path, hf_cfg=hf_model.config.to_dict(), fold_ln=False,
                        device=self.device, dtype=torch.float32)
                    state = loading.get_pretrained_state_dict(path, cfg, hf_model,
                                                              dtype=torch.float32)
                    del hf_model
                else:
                    cfg = loading.get_pretrained_model_config(
                        self.name, checkpoint_value=step, fold_ln=False, device=self.device,
                        dtype=torch.float32)
                    state = loading.get_pretrained_state_dict(self.name, cfg, None,
                                                              dtype=torch.float32)
        except (ConfigError, HubError):
            raise
        except Exception as err:  # transformers/huggingface_hub raise many types (OSError...)
            if self.local:
                raise DataError(f"{what} does not load ({type(err).__name__}: {err}); check the "
                                "revision directory") from None
            raise _offline_error(what, self.offline, err) from None
        tokenizer = self.tokenizer(cfg)
        with quiet_deprecation():
            model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
        # from_pretrained_no_processing's flags: the weights stay as published.
        model.load_and_process_state_dict(state, fold_ln=False, center_writing_weights=False,
                                          center_unembed=False, fold_value_biases=False,
                                          refactor_factored_attn_matrices=False)
        model.eval()
        model_name = self.default_run if self.local else self.name.split("/")[-1]
        return _Loaded(model, hooked_config_dict(cfg, model_name=model_name))


# ============================================================================ evaluation text


# ============================================================================ import
@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_pretrained` did."""

    run: str
    """The run written."""
    imported: tuple[int, ...]
    """Steps loaded and written by this call."""
    skipped: tuple[int, ...]
    """Steps already in the run (left untouched)."""


def _parse_data(data: DataSpec | str | None) -> DataSpec:
    if data is None:
        return DataSpec()
    return data if isinstance(data, DataSpec) else DataSpec.parse(data)


def import_pretrained(name_or_dir: str | os.PathLike[str], *,
                      checkpoints: Sequence[int] | None = None, hub: Any = "hub",
                      run: str | None = None, device: str | torch.device = "cpu",
                      tokens_per_step: int | None = None, data: DataSpec | str | None = None,
                      progress: bool = True) -> ImportResult:
    """Import checkpoints of a pretrained series into the hub as an ordinary run.

    See the module docstring for the sources, the conversion and its choices.

    Args:
        name_or_dir: a TransformerLens model name with a checkpoint series (``"pythia-70m"``)
            or a local directory of revisions (``DIR/step1000/``, ...).
        checkpoints: the steps to import (Pythia: 0, 1, 2, 4, ..., 512, 1000, 2000, ...,
            143000); None imports every checkpoint of the series.
        hub: the hub or its directory.
        run: the run's name (default: the series' name, e.g. ``pythia-70m``).
        device: where the conversion runs.
        tokens_per_step: training tokens per optimizer step; known for Pythia and the
            Stanford CRFM series, required otherwise.
        data: evaluation text for the loss evaluators and the token pool's frequencies
            (``"hf:NeelNanda/pile-10k"``, ``"files:PATH"``, ``"shakespeare"`` or a
            :class:`~induction_lens.config.DataSpec`); None stores no text (head evaluators
            only).
        progress: a tqdm bar over checkpoints.

    Returns:
        The run and the steps imported and skipped.

    Raises:
        ConfigError: unknown name, a step that is not a checkpoint, missing tokens_per_step.
        DataError: a missing directory, one without revisions or tokenizer.
        PretrainedOfflineError: offline and not in the local HuggingFace cache.
        HubError: the run exists with another source or config.
    """
    from induction_lens.hub import Hub, check_run_name

    hub = Hub.of(hub)
    source = _Source(name_or_dir, tokens_per_step=tokens_per_step, device=device)
    run = check_run_name(run or source.default_run)
    data_spec = _parse_data(data)
    if checkpoints is None:
        steps = list(source.steps)
    else:
        steps = sorted({int(s) for s in checkpoints})
        absent = [s for s in steps if s not in source.steps]
        if absent or not steps:
            shown = source.steps[:6]
            raise ConfigError(f"checkpoints {absent or steps} are not checkpoints of "
                              f"{source.name!r} (it has {len(source.steps)}: {shown} ...); "
                              "pass steps from that list")
    done: set[int] = set()
    if run in hub.runs():  # checked before skipping anything: a run holds one series
        stored = hub.config(run).model
        mine = (source.name, source.tokens_per_step, source.template)
        if not isinstance(stored, PretrainedSpec) or mine != (
                stored.source, stored.tokens_per_step, stored.revision_template):
            held = (f"{stored.source!r} (tokens_per_step={stored.tokens_per_step})"
                    if isinstance(stored, PretrainedSpec) else "a model trained here")
            raise HubError(f"run {run!r} holds {held}, not {source.name!r} "
                           f"(tokens_per_step={source.tokens_per_step}); import into another run")
        done = {e.step for e in hub.manifest(run)}
    todo = [s for s in steps if s not in done]
    skipped = tuple(s for s in steps if s in done)
    if not todo:
        logger.info("run %r already holds every requested checkpoint", run)
        return ImportResult(run, (), skipped)

    exists = run in hub.runs()
    writer = None
    imported = []
    try:
        for step in tqdm(todo, desc=f"import {run}", unit="ckpt", disable=not progress,
                         dynamic_ncols=True):
            loaded = source.load(step)
            if writer is None:
                tokenizer = loaded.model.tokenizer
                spec = PretrainedSpec(
                    source=source.name, hooked_config=loaded.config,
                    tokens_per_step=source.tokens_per_step, revision_template=source.template,
                    special_tokens={r: str(getattr(tokenizer, r)) for r in SPECIAL_ROLES
                                    if getattr(tokenizer, r, None) is not None},
                    transformer_lens_version=_tl_version())
                last = max([*steps, *done])
                config = RunConfig(model=spec, data=data_spec, train=TrainConfig(
                    steps=max(1, last), batch_size=max(1, source.tokens_per_step // spec.n_ctx),
                    warmup_steps=0))
                writer = hub.open_run(run, config, resume=exists)
                _write_tokenizer(writer, tokenizer, hub, run)
                if not data_spec.is_synthetic and not (writer.path / C.TOKEN_FREQUENCIES).exists():
                    _write_frequencies(writer, hub, run, tokenizer)
            elif loaded.config != writer.config.model.hooked_config:
                raise HubError(f"{source.name} revision {source.template.format(step=step)} has "
                               "another architecture than the run's earlier checkpoints; "
                               "import it into another run")
            writer.save_checkpoint(step, step * source.tokens_per_step, loaded.model, None)
            imported.append(step)
            del loaded
    finally:
        if writer is not None:
            writer.close()
    return ImportResult(run, tuple(imported), skipped)


def _tl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformer-lens")
    except PackageNotFoundError:
        return "unknown"


def _write_tokenizer(writer: Any, tokenizer: Any, hub: Any, run: str) -> None:
    data = tokenizer.backend_tokenizer.to_str().encode()
    path = writer.path / C.TOKENIZER
    if not path.exists() or path.read_bytes() != data:
        writer.write_file(C.TOKENIZER, data)


def _write_frequencies(writer: Any, hub: Any, run: str, hf_tokenizer: Any) -> None:
    """Token frequencies of the evaluation text, special tokens and ids the tokenizer cannot
    produce set to 0 (so :func:`~induction_lens.data.evaluator_token_pool` never draws them)."""
    corpus = hub.corpus(run)
    freqs = corpus.token_frequencies()
    freqs[list(special_token_ids(hf_tokenizer))] = 0
    freqs[len(hf_tokenizer):] = 0
    tensor = torch.as_tensor(np.asarray(freqs, dtype=np.float64))
    writer.write_file(C.TOKEN_FREQUENCIES, safetensors.torch.save({"frequencies": tensor}))


# ============================================================================ CLI (for cli/)


