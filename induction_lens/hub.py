"""The local checkpoint hub: a directory of runs, each with many snapshots.

Layout: see :mod:`induction_lens.constants`. The rules that keep it safe:

* **Atomic writes.** Every file is written to a temporary name in the same directory, flushed
  and ``fsync``-ed, then ``os.replace``-d into place. A checkpoint enters ``manifest.json`` only
  after its files are complete, and the manifest is itself replaced atomically, so a process
  killed at any instant leaves a manifest that lists only complete checkpoints.
* **Integrity.** The manifest records the sha256 of every file; loading recomputes it and
  refuses a truncated or altered file with an error naming it.
* **No pickles.** Weights and optimizer states are safetensors, everything else JSON or
  parquet. The hub never calls ``torch.load``/``pickle``; a file that is not a valid
  safetensors file is refused, never executed.
* **One writer per run.** A process writing a run holds ``RUN/.lock`` (``filelock``); runs are
  independent directories, so processes training different runs into one hub never touch each
  other's files.
"""

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import safetensors
import safetensors.torch
import torch
from filelock import FileLock, Timeout
from transformer_lens import HookedTransformer

from induction_lens import constants as C
from induction_lens._version import __version__
from induction_lens.config import PretrainedSpec, RunConfig
from induction_lens.errors import HubError
from induction_lens.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    git_hash,
    sha256_bytes,
)
from induction_lens.models import build_model

logger = logging.getLogger(__name__)

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_run_name(run: str) -> str:
    """Return ``run`` if it is a safe directory name, else raise a clear error."""
    if not isinstance(run, str) or not _RUN_NAME.match(run):
        raise HubError(f"run name {run!r} is invalid; use letters, digits, '.', '_' or '-' "
                       "(starting with a letter or digit, at most 128 characters)")
    return run


def optimizer_to_safetensors(state: dict[str, Any]) -> bytes:
    """Serialise a ``torch.optim`` state dict as safetensors (tensors) + JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    meta = {"param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars)}
    return safetensors.torch.save(tensors, metadata=meta)


def optimizer_from_safetensors(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_safetensors`."""
    tensors = safetensors.torch.load(data)
    meta = _safetensors_metadata(data)
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, values in json.loads(meta["scalars"]).items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": json.loads(meta["param_groups"])}


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    return header.get("__metadata__", {})


@dataclass(frozen=True)
class CheckpointEntry:
    """One complete checkpoint as recorded in the manifest."""

    step: int
    tokens: int
    weights: str
    sha256: str
    optimizer: str | None = None
    optimizer_sha256: str | None = None


class Hub:
    """A local checkpoint hub rooted at a directory.

    Example:
        >>> hub = Hub("hub")
        >>> hub.runs()
        ['attn-only-2l']
        >>> hub.checkpoints("attn-only-2l").tail(1)   # step, tokens, path
        >>> model = hub.load_model("attn-only-2l")     # the newest checkpoint
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise HubError(f"hub path {self.root} is a file, not a directory; pass a directory")

    def __repr__(self) -> str:
        return f"Hub({str(self.root)!r})"

    @classmethod
    def of(cls, hub: "Hub | str | os.PathLike[str]") -> "Hub":
        """``hub`` itself if it is a :class:`Hub`, else the hub at that directory (the one
        coercion every function taking "a Hub or its directory" uses)."""
        return hub if isinstance(hub, Hub) else cls(hub)

    # ----------------------------------------------------------------- reading
    def run_dir(self, run: str) -> Path:
        return self.root / check_run_name(run)

    def runs(self) -> list[str]:
        """Names of the runs in the hub (directories with a ``run.json``), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and (p / C.RUN_CONFIG).is_file())

    def _require_run(self, run: str) -> Path:
        path = self.run_dir(run)
        if not (path / C.RUN_CONFIG).is_file():
            known = ", ".join(self.runs()) or "none"
            raise HubError(f"run {run!r} is not in hub {self.root} (runs: {known}); "
                           "train it first or check --hub")
        return path

    def info(self, run: str) -> dict[str, Any]:
        """The raw ``run.json``: configs, package version, git hash, creation time."""
        path = self._require_run(run) / C.RUN_CONFIG
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise HubError(f"{path} is not valid JSON ({err}); restore or delete the run") from None

    def config(self, run: str) -> RunConfig:
        """The run's :class:`RunConfig`."""
        return RunConfig.from_dict(self.info(run)["config"])

    def manifest(self, run: str) -> list[CheckpointEntry]:
        """The complete checkpoints of a run, sorted by step."""
        path = self._require_run(run) / C.MANIFEST
        if not path.exists():
            return []
        try:
            raw = json.loads(path.read_text())
            entries = [CheckpointEntry(**e) for e in raw["checkpoints"]]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise HubError(f"{path} is unreadable ({err}); restore it or delete the run") from None
        return sorted(entries, key=lambda e: e.step)

    def checkpoints(self, run: str) -> pd.DataFrame:
        """A DataFrame with one row per complete checkpoint: ``step, tokens, path``."""
        root = self.run_dir(run)
        rows = [{"step": e.step, "tokens": e.tokens, "path": str(root / e.weights)}
                for e in self.manifest(run)]
        return pd.DataFrame(rows, columns=["step", "tokens", "path"])

    def _entry(self, run: str, step: int | None) -> CheckpointEntry:
        entries = self.manifest(run)
        if not entries:
            raise HubError(f"run {run!r} has no complete checkpoint yet")
        if step is None:
            return entries[-1]
        for e in entries:
            if e.step == step:
                return e
        steps = [e.step for e in entries]
        raise HubError(f"run {run!r} has no checkpoint at step {step}; "
                       f"available: {steps[:5]}{' ...' if len(steps) > 5 else ''} {steps[-1]}")

    def _read_verified(self, run: str, rel: str, sha: str) -> bytes:
        root = self.run_dir(run)
        path = (root / rel).resolve()
        if root.resolve() not in path.parents or not rel.endswith(C.WEIGHTS_SUFFIX):
            raise HubError(f"manifest of run {run!r} points at {rel!r}, which is not a "
                           "safetensors file inside the run; refusing to load it")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise HubError(f"checkpoint file {path} is missing; restore it or delete the run"
                           ) from None
        if sha256_bytes(data) != sha:
            raise HubError(f"checkpoint file {path} is corrupted (sha256 does not match the "
                           "manifest); restore it or retrain from an earlier checkpoint")
        return data

    def load_state_dict(self, run: str, step: int | None = None) -> dict[str, torch.Tensor]:
        """Verified weights of one checkpoint (the newest when ``step`` is None)."""
        entry = self._entry(run, step)
        data = self._read_verified(run, entry.weights, entry.sha256)
        try:
            return safetensors.torch.load(data)
        except Exception as err:  # safetensors raises its own error types
            raise HubError(f"checkpoint file {self.run_dir(run) / entry.weights} is not a valid "
                           f"safetensors file ({err}); it was not loaded") from None

    def load_optimizer_state(self, run: str, step: int) -> dict[str, Any]:
        """Verified optimizer state saved with ``step`` (for resuming)."""
        entry = self._entry(run, step)
        if entry.optimizer is None or entry.optimizer_sha256 is None:
            raise HubError(f"checkpoint {step} of run {run!r} has no optimizer state")
        data = self._read_verified(run, entry.optimizer, entry.optimizer_sha256)
        try:
            return optimizer_from_safetensors(data)
        except Exception as err:
            raise HubError(f"optimizer file {self.run_dir(run) / entry.optimizer} is not valid "
                           f"({err}); it was not loaded") from None

    def tokenizer(self, run: str):
        """The run's ``tokenizers.Tokenizer`` (natural text), or None (synthetic data)."""
        path = self._require_run(run) / C.TOKENIZER
        if not path.exists():
            return None
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path))

    def token_frequencies(self, run: str) -> np.ndarray | None:
        """Token frequencies of the run's training distribution, if recorded."""
        path = self._require_run(run) / C.TOKEN_FREQUENCIES
        if not path.exists():
            return None
        return safetensors.torch.load_file(str(path))["frequencies"].numpy()

    def corpus(self, run: str):
        """The run's corpus, rebuilt from its data spec (and stored tokenizer)."""
        from induction_lens.data import make_corpus

        cfg = self.config(run)
        if isinstance(cfg.model, PretrainedSpec):  # evaluation text in the model's own tokens
            from induction_lens.pretrained import pretrained_corpus

            return pretrained_corpus(self, run)
        tok = self._require_run(run) / C.TOKENIZER
        return make_corpus(cfg.data, d_vocab=cfg.model.d_vocab, n_ctx=cfg.model.n_ctx,
                           cache_dir=self.root / C.CACHE_DIR,
                           tokenizer_path=tok if tok.exists() else None)

    def log(self, run: str) -> pd.DataFrame:
        """The training log: ``step, tokens, loss, lr, grad_norm, seconds`` per step."""
        path = self._require_run(run) / C.TRAIN_LOG
        if not path.exists():
            return pd.DataFrame(columns=["step", "tokens", "loss", "lr", "grad_norm", "seconds"])
        return pd.read_parquet(path)

    def load_model(self, run: str, step: int | None = None, *,
                   device: str | torch.device | None = None) -> HookedTransformer:
        """A ``HookedTransformer`` with the weights of ``step`` (default: the newest).

        Smeared-key alphas are restored with the rest of the state dict; natural-text runs get
        their tokenizer attached so ``model.to_tokens`` works.
        """
        cfg = self.config(run)
        if isinstance(cfg.model, PretrainedSpec):  # an imported series (induction_lens.pretrained)
            from induction_lens.pretrained import build_pretrained_model

            model = build_pretrained_model(cfg.model, tokenizer=self.hf_tokenizer(run),
                                           device=device)
            self._load_into(model, run, step)
            return model
        model = build_model(cfg.model, seed=None, device=device)
        self._load_into(model, run, step)
        hf_tok = self.hf_tokenizer(run)
        if hf_tok is not None:
            model.set_tokenizer(hf_tok)
        model.eval()
        return model

    def hf_tokenizer(self, run: str):
        """The run's tokenizer wrapped for TransformerLens (``PreTrainedTokenizerFast``)."""
        tok = self.tokenizer(run)
        if tok is None:
            return None
        spec = self.config(run).model
        if isinstance(spec, PretrainedSpec):  # the series' own special tokens
            from induction_lens.pretrained import pretrained_hf_tokenizer

            return pretrained_hf_tokenizer(tok, spec)
        from transformers import PreTrainedTokenizerFast

        # name_or_path and add_bos_token keep TransformerLens's set_tokenizer from trying to
        # re-download a tokenizer by name (which would hang offline).
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=C.BOS_TOKEN,
                                       eos_token=C.BOS_TOKEN, pad_token=C.BOS_TOKEN,
                                       name_or_path="induction_lens", add_bos_token=True)

    def _load_into(self, model: HookedTransformer, run: str, step: int | None) -> None:
        state = self.load_state_dict(run, step)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise HubError(f"checkpoint of run {run!r} does not fit its model spec (missing "
                           f"{missing[:3]}, unexpected {unexpected[:3]}); was run.json edited?")

    def select_checkpoints(self, run: str, *, every: int = 1, steps: list[int] | None = None
                           ) -> list[CheckpointEntry]:
        """The checkpoints a sweep visits: the given ``steps``, or every ``every``-th one.

        With ``every > 1`` the newest checkpoint is always included, so a sweep ends where
        training ended.
        """
        entries = self.manifest(run)
        if steps is not None:
            wanted = set(steps)
            absent = sorted(wanted - {e.step for e in entries})
            if absent:
                raise HubError(f"run {run!r} has no checkpoint at steps {absent}")
            return [e for e in entries if e.step in wanted]
        if not isinstance(every, int) or every < 1:
            raise HubError(f"every={every!r} must be a positive integer")
        picked = entries[::every]
        if entries and picked[-1] is not entries[-1]:
            picked.append(entries[-1])
        return picked

    def iter_checkpoints(self, run: str, *, every: int = 1, steps: list[int] | None = None,
                         device: str | torch.device | None = None
                         ) -> Iterator[tuple[int, int, HookedTransformer]]:
        """Yield ``(step, tokens, model)`` for the checkpoints :meth:`select_checkpoints` picks.

        One model object is reused and reloaded for each checkpoint: do not keep references
        to it across iterations (``copy.deepcopy`` if you must).
        """
        entries = self.select_checkpoints(run, every=every, steps=steps)
        if not entries:
            return
        model = self.load_model(run, entries[0].step, device=device)
        for i, e in enumerate(entries):
            if i:
                self._load_into(model, run, e.step)
            yield e.step, e.tokens, model

    # ----------------------------------------------------------------- writing
    def open_run(self, run: str, config: RunConfig, *, resume: bool = False) -> "RunWriter":
        """Create (or, with ``resume``, reopen) a run for writing; holds the run's lock."""
        return RunWriter(self, run, config, resume=resume)

    def delete_run(self, run: str) -> None:
        """Remove a run and everything in it (refused while another process writes it)."""
        path = self._require_run(run)
        with _lock(path):
            shutil.rmtree(path)


@contextlib.contextmanager
def _lock(run_path: Path) -> Iterator[None]:
    lock = FileLock(str(run_path / C.LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise HubError(f"run {run_path.name!r} is being written by another process (lock "
                       f"{run_path / C.LOCK}); wait for it or choose another --run") from None
    try:
        yield
    finally:
        lock.release()


class RunWriter:
    """Writes one run: config, checkpoints, manifest, log. Use as a context manager."""

    def __init__(self, hub: Hub, run: str, config: RunConfig, *, resume: bool):
        self.hub, self.run, self.config = hub, check_run_name(run), config
        self.path = hub.run_dir(run)
        exists = (self.path / C.RUN_CONFIG).is_file()
        if exists and not resume:
            raise HubError(f"run {run!r} already exists in hub {hub.root}; pass resume=True "
                           "(--resume) to continue it, or choose another --run")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.path)
        self._lock.__enter__()
        try:
            if exists:
                self._check_resumable(hub.info(run))
            self._clean_partial_files()
            if not exists or hub.info(run)["config"] != config.to_dict():
                atomic_write_json(self.path / C.RUN_CONFIG, {
                    "config": config.to_dict(),
                    "induction_lens_version": __version__,
                    "git_hash": git_hash(),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                })
            self._entries = hub.manifest(run)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise

    def _check_resumable(self, info: dict[str, Any]) -> None:
        """Refuse to resume with a different model, data or train config (steps may change)."""
        stored = RunConfig.from_dict(info["config"])
        for part in ("model", "data", "train"):
            old, new = getattr(stored, part), getattr(self.config, part)
            diff = [f.name for f in dataclasses.fields(old)
                    if getattr(old, f.name) != getattr(new, f.name) and f.name != "steps"]
            if diff:
                raise HubError(f"cannot resume run {self.run!r}: its {part} config differs in "
                               f"{diff}; resume with the stored config (only steps may change) "
                               "or start a new --run")

    def _clean_partial_files(self) -> None:
        """Remove temp files and checkpoint files a killed writer left outside the manifest."""
        listed = set()
        entries = self.hub.manifest(self.run) if (self.path / C.RUN_CONFIG).is_file() else []
        for e in entries:
            listed.add(e.weights)
            if e.optimizer:
                listed.add(e.optimizer)
        for p in self.path.rglob("*.tmp"):
            p.unlink(missing_ok=True)
        ckpt_dir = self.path / C.CHECKPOINT_DIR
        if ckpt_dir.is_dir():
            for p in ckpt_dir.iterdir():
                if f"{C.CHECKPOINT_DIR}/{p.name}" not in listed:
                    p.unlink(missing_ok=True)

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    @property
    def last_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self._entries[-1].step if self._entries else None

    def write_file(self, name: str, data: bytes) -> Path:
        """Atomically write an auxiliary file of the run (tokenizer, frequencies)."""
        return atomic_write_bytes(self.path / name, data)

    def save_token_frequencies(self, frequencies: np.ndarray) -> Path:
        tensor = torch.as_tensor(np.asarray(frequencies, dtype=np.float64))
        return self.write_file(C.TOKEN_FREQUENCIES, safetensors.torch.save({"frequencies": tensor}))

    def save_checkpoint(self, step: int, tokens: int, model: torch.nn.Module,
                        optimizer_state: dict[str, Any] | None, log: pd.DataFrame | None = None
                        ) -> list[Path]:
        """Write one checkpoint (weights, optional optimizer state, log), then list it.

        Returns the paths written. The manifest is updated last, so a crash at any point
        leaves the previous manifest (and only complete checkpoints) in place.
        """
        written = []
        weights = safetensors.torch.save({k: v.detach().cpu().contiguous()
                                          for k, v in model.state_dict().items()},
                                         metadata={"step": str(step), "tokens": str(tokens)})
        written.append(atomic_write_bytes(self.path / C.checkpoint_name(step), weights))
        entry = {"step": step, "tokens": tokens, "weights": C.checkpoint_name(step),
                 "sha256": sha256_bytes(weights), "optimizer": None, "optimizer_sha256": None}
        if optimizer_state is not None:
            optim = optimizer_to_safetensors(optimizer_state)
            written.append(atomic_write_bytes(self.path / C.optimizer_name(step), optim))
            entry.update(optimizer=C.optimizer_name(step), optimizer_sha256=sha256_bytes(optim))
        if log is not None:
            written.append(atomic_write_parquet(self.path / C.TRAIN_LOG, log))
        entries = [e for e in self._entries if e.step != step] + [CheckpointEntry(**entry)]
        entries.sort(key=lambda e: e.step)
        keep = self.config.train.keep_optimizer_states
        stale = [e for e in entries[:-keep] if e.optimizer] if keep else []
        entries = [CheckpointEntry(**{**e.__dict__, "optimizer": None, "optimizer_sha256": None})
                   if e in stale else e for e in entries]
        atomic_write_json(self.path / C.MANIFEST, {
            "format": C.MANIFEST_FORMAT,
            "checkpoints": [e.__dict__ for e in entries],
        })
        written.append(self.path / C.MANIFEST)
        for e in stale:  # only after the manifest no longer lists them
            (self.path / e.optimizer).unlink(missing_ok=True)
        self._entries = entries
        return written
