"""The local checkpoint hub: a directory of runs, each with many snapshots.

Layout: see :mod:`induction_lens.constants`. What the hub guarantees, and how:

* **Atomic writes.** Every file is written to a temporary name in the same directory, flushed
  and ``fsync``-ed, then ``os.replace``-d into place (:mod:`induction_lens.io`).
* **One commit point.** ``manifest.json`` lists every complete checkpoint (weights and
  optimizer state, by sha256) and, in its ``files`` map, the sha256 of every other file of the
  run (``run.json``, ``log.parquet``, ``tokenizer.json``, ``token_frequencies.safetensors`` and
  any file written with :meth:`Hub.write_file`, such as evaluation caches). A write goes:
  new checkpoint files under new names; new content of existing names to ``.NAME.staged``;
  then the manifest (the commit); then each staged file is renamed over its name. A process
  killed at any instant therefore leaves a manifest that lists only complete, verifiable files:
  files written before the commit are orphans (removed when the run is next opened for
  writing), and staged files the manifest already lists are renamed into place then (until
  then readers read the staged copy). Resuming after a kill starts from the newest listed
  checkpoint and ends bit-identical to a run that was never interrupted (on CPU).
* **Integrity.** Every read recomputes the sha256 and refuses a truncated, altered or
  missing file with a one-line :class:`~induction_lens.errors.HubError` naming the file and
  what to do. Manifests of format 1 (before the ``files`` map) are still read: their
  checkpoints are verified, their other files from the next write on (their content then is
  trusted as found). :meth:`Hub.verify` checks a whole run.
* **No pickles.** Weights and optimizer states are safetensors, everything else JSON or
  parquet. The hub never calls ``torch.load``/``pickle``; a file that is not a valid
  safetensors file is refused, never executed, and a manifest entry that points outside its
  run is refused before anything is read.
* **One writer per run.** A process writing a run holds ``RUN/.lock`` (``filelock``); a second
  writer of the same run gets a :class:`HubError` at once instead of waiting. Runs are
  independent directories, so processes training different runs into one hub never touch each
  other's files. Manifest updates are serialised by ``RUN/.manifest.lock`` (held for
  milliseconds), so an evaluator may record a file while the run is being trained.
* **Versioned.** The hub directory carries ``induction_lens_hub.json`` with its format version,
  written on first use; a hub of a newer format is refused, and a directory that holds other
  things than runs (not a hub) is refused rather than written into. A missing or empty
  directory is a new hub (training creates it).
"""

import contextlib
import dataclasses
import io
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
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
from induction_lens.errors import ConfigError, DataError, HubError
from induction_lens.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,  # noqa: F401  (re-exported: the evaluators import it from here)
    fsync_dir,
    git_hash,
    json_bytes,
    parquet_bytes,
    sha256_bytes,
    sha256_file,
)
from induction_lens.models import build_model

logger = logging.getLogger(__name__)

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MANIFEST_LOCK_TIMEOUT_S = 60.0
"""How long a manifest update waits for another one (each holds the lock for milliseconds)."""
_RUN_ENTRIES = frozenset({*C.CORE_FILES, C.MANIFEST, C.CHECKPOINT_DIR, C.EVAL_DIR})


def _one_line(err: BaseException) -> str:
    """The first line of an exception's message (the CLI prints errors as one line)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_run_name(run: str) -> str:
    """Return ``run`` if it is a safe directory name, else raise a clear error."""
    if not isinstance(run, str) or not _RUN_NAME.match(run) or run == C.HUB_MARKER:
        raise HubError(f"run name {run!r} is invalid; use letters, digits, '.', '_' or '-' "
                       "(starting with a letter or digit, at most 128 characters)")
    return run


def check_file_name(name: str) -> str:
    """Return ``name`` if it may be recorded in a run's ``files`` map, else raise.

    A name is a relative POSIX path inside the run (``evals/losses.parquet``) without ``..``
    or hidden components; the manifest, the locks and ``checkpoints/`` are the hub's own.
    """
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if (not parts or name.startswith("/") or "\\" in name
            or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
            or name in (C.MANIFEST, C.LOCK, C.MANIFEST_LOCK) or parts[0] == C.CHECKPOINT_DIR
            or name.endswith((C.STAGED_SUFFIX, ".tmp"))):
        raise HubError(f"file name {name!r} cannot be stored in a run; use a relative path "
                       "such as 'evals/NAME.parquet' (no '..', no hidden parts, not the "
                       "manifest or checkpoints/)")
    return name


def _staged_path(target: Path) -> Path:
    return target.with_name(f".{target.name}{C.STAGED_SUFFIX}")


def _target_of_staged(staged: Path) -> Path:
    return staged.with_name(staged.name[1:-len(C.STAGED_SUFFIX)])


_META_KEY = "induction_lens"


def save_safetensors(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> bytes:
    """``tensors`` as safetensors bytes with ``meta`` as metadata, byte-for-byte reproducible.

    safetensors writes its metadata map in a random order (a Rust ``HashMap``), so two saves of
    the same state could differ in bytes and sha256; one metadata key holding key-sorted JSON
    makes equal states give equal files (an interrupted and resumed run writes the very files
    of an uninterrupted one).
    """
    return safetensors.torch.save(tensors,
                                  metadata={_META_KEY: json.dumps(meta, sort_keys=True)})


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
    return save_safetensors(tensors, meta)


def optimizer_from_safetensors(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_safetensors`."""
    tensors = safetensors.torch.load(data)
    meta = safetensors_metadata(data)
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, values in json.loads(meta["scalars"]).items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": json.loads(meta["param_groups"])}


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The metadata of safetensors bytes written by :func:`save_safetensors` (or, in files of
    earlier versions, given as plain safetensors metadata)."""
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    meta = header.get("__metadata__", {})
    return json.loads(meta[_META_KEY]) if _META_KEY in meta else meta


@dataclass(frozen=True)
class CheckpointEntry:
    """One complete checkpoint as recorded in the manifest."""

    step: int
    tokens: int
    weights: str
    sha256: str
    optimizer: str | None = None
    optimizer_sha256: str | None = None


@dataclass
class _Manifest:
    """``manifest.json`` as read from disk (``exists`` False: the run has none yet)."""

    format: int
    checkpoints: list[dict[str, Any]]
    files: dict[str, str]
    exists: bool

    def to_json(self) -> dict[str, Any]:
        return {"format": C.MANIFEST_FORMAT, "checkpoints": self.checkpoints, "files": self.files}


def _read_manifest(run_path: Path) -> _Manifest:
    """Parse ``RUN/manifest.json``; a missing one is an empty current-format manifest."""
    path = run_path / C.MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        return _Manifest(C.MANIFEST_FORMAT, [], {}, exists=False)
    try:
        raw = json.loads(text)
        fmt = raw.get("format", 1)
        checkpoints = raw["checkpoints"]
        files = raw.get("files", {})
        if (not isinstance(fmt, int) or not isinstance(checkpoints, list)
                or not isinstance(files, dict)
                or not all(isinstance(v, str) for v in files.values())):
            raise TypeError("unexpected structure")
        for entry in checkpoints:
            CheckpointEntry(**entry)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError) as err:
        raise HubError(f"{path} is unreadable ({_one_line(err)}); restore it or delete the run"
                       ) from None
    if fmt > C.MANIFEST_FORMAT:
        raise HubError(f"{path} has format {fmt}, newer than this induction_lens reads "
                       f"({C.MANIFEST_FORMAT}); upgrade induction-lens (pip install -U "
                       "induction-lens)")
    return _Manifest(fmt, checkpoints, dict(files), exists=True)


def _entry_path_ok(run_path: Path, rel: str) -> bool:
    if not isinstance(rel, str) or not rel.endswith(C.WEIGHTS_SUFFIX):
        return False
    parts = PurePosixPath(rel).parts
    if not parts or rel.startswith("/") or "\\" in rel or ".." in parts:
        return False
    root = run_path.resolve()
    return root in (run_path / rel).resolve().parents


class Hub:
    """A local checkpoint hub rooted at a directory.

    Constructing a :class:`Hub` checks the directory: a file, a hub of a newer format, or a
    directory holding things other than runs (not a hub) is refused. A missing or empty
    directory is a new hub, created by the first run written into it; pass
    ``must_exist=True`` where a missing directory is a mistake (listing or evaluating).

    Example:
        >>> hub = Hub("hub")
        >>> hub.runs()
        ['attn-only-2l']
        >>> hub.checkpoints("attn-only-2l").tail(1)   # step, tokens, path
        >>> model = hub.load_model("attn-only-2l")     # the newest checkpoint
    """

    def __init__(self, root: str | os.PathLike[str], *, must_exist: bool = False):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise HubError(f"hub path {self.root} is a file, not a directory; pass a directory")
        if not self.root.exists():
            if must_exist:
                raise HubError(f"hub directory {self.root} does not exist; check --hub "
                               "(training a run creates the hub)")
            return
        self._check_directory()

    def __repr__(self) -> str:
        return f"Hub({str(self.root)!r})"

    @classmethod
    def of(cls, hub: "Hub | str | os.PathLike[str]") -> "Hub":
        """``hub`` itself if it is a :class:`Hub`, else the hub at that directory (the one
        coercion every function taking "a Hub or its directory" uses)."""
        return hub if isinstance(hub, Hub) else cls(hub)

    # ----------------------------------------------------------------- format
    def _check_directory(self) -> None:
        """Refuse a hub of a newer format, and a directory that is not a hub at all.

        Without the marker (a new directory, or a hub written before the marker existed) the
        directory is a hub when it holds a run (a directory with a ``run.json``), or when every
        visible entry looks like a run being created (only names of a run's layout). Our
        reading: anything else (a project directory, a home directory) is not a hub.
        """
        marker = self.root / C.HUB_MARKER
        if marker.is_file():
            try:
                fmt = json.loads(marker.read_text())["format"]
                if not isinstance(fmt, int):
                    raise TypeError("format is not an integer")
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
                raise HubError(f"hub marker {marker} is unreadable ({_one_line(err)}); restore "
                               f'it (its content is {{"format": {C.HUB_FORMAT}}})') from None
            if fmt > C.HUB_FORMAT:
                raise HubError(f"hub {self.root} has format {fmt}, written by a newer "
                               f"induction_lens (this version reads format {C.HUB_FORMAT}); "
                               "upgrade induction-lens (pip install -U induction-lens) or use "
                               "another --hub")
            return
        entries = [p for p in self.root.iterdir() if not p.name.startswith(".")]
        if any((p / C.RUN_CONFIG).is_file() for p in entries):
            return  # a hub written before the marker existed (stray files are tolerated)
        foreign = sorted(p.name for p in entries if not _looks_like_run(p))
        if foreign:
            shown = ", ".join(repr(n) for n in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise HubError(f"{self.root} is not an induction_lens hub (no {C.HUB_MARKER}, no "
                           f"run, and it holds things that are not runs: {shown}); pass a hub "
                           "directory or a new or empty one")

    def _ensure_marker(self) -> None:
        """Write the hub marker if the hub has none yet (its first write)."""
        marker = self.root / C.HUB_MARKER
        if not marker.is_file():
            atomic_write_json(marker, {"format": C.HUB_FORMAT,
                                       "created_by": f"induction_lens {__version__}"})

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
            if not self.root.is_dir():
                raise HubError(f"hub directory {self.root} does not exist, so run {run!r} is "
                               "not in it; check --hub")
            if (path / C.MANIFEST).is_file() and C.RUN_CONFIG in _read_manifest(path).files:
                raise HubError(f"{path / C.RUN_CONFIG} is missing (the manifest lists it); "
                               "restore it from a backup, or delete the run and train it again")
            known = ", ".join(self.runs()) or "none"
            raise HubError(f"run {run!r} is not in hub {self.root} (runs: {known}); "
                           "train it first or check --hub")
        return path

    def file_hashes(self, run: str) -> dict[str, str]:
        """The manifest's ``files`` map: run-relative name -> sha256 (empty for old runs)."""
        return dict(_read_manifest(self._require_run(run)).files)

    def read_file(self, run: str, name: str) -> bytes:
        """The verified content of a run's file (``run.json``, ``evals/x.parquet``, ...).

        The sha256 is checked against the manifest's ``files`` map. Runs whose manifest
        predates the map (format 1) get the file as it is; in a current manifest a file that
        the map does not list is refused (it was not written through the hub).

        Raises:
            HubError: the file is missing, truncated, altered or unlisted; the message names it.
        """
        path = self._require_run(run)
        return self._read_file(path, check_file_name(name))

    def _read_file(self, run_path: Path, name: str) -> bytes:
        target = run_path / name
        manifest = _read_manifest(run_path)
        data: bytes | None = None
        for _ in range(3):  # a writer may commit between our reads: look again
            expected = manifest.files.get(name)
            try:
                data = target.read_bytes()
            except FileNotFoundError:
                data = None
            if expected is None:
                if manifest.format >= 2 and manifest.exists:
                    if data is None:
                        raise HubError(f"{target} does not exist (the manifest does not list "
                                       "it); write it through the hub first")
                    raise HubError(f"{target} is not listed in {run_path / C.MANIFEST} (it was "
                                   "not written through the hub); delete it or restore the "
                                   "manifest")
                if data is None:
                    raise HubError(f"{target} does not exist; write it through the hub first")
                return data  # format-1 run: verified from its next write on
            if data is not None and sha256_bytes(data) == expected:
                return data
            staged = _staged_path(target)
            with contextlib.suppress(FileNotFoundError):
                staged_data = staged.read_bytes()
                if sha256_bytes(staged_data) == expected:
                    return staged_data  # committed, not yet renamed into place
            again = _read_manifest(run_path)
            if again.files.get(name) == expected:
                break
            manifest = again
        what = "is missing" if data is None else \
            "is corrupted (its sha256 does not match the manifest)"
        raise HubError(f"{target} {what}; restore it from a backup, or delete the run "
                       f"({run_path}) and train it again")

    def _optional_file(self, run_path: Path, name: str) -> bytes | None:
        """:meth:`_read_file`, or None where the run has no such file (listed or present)."""
        manifest = _read_manifest(run_path)
        if name not in manifest.files and not (run_path / name).exists():
            return None
        return self._read_file(run_path, name)

    def has_file(self, run: str, name: str) -> bool:
        """Whether the run holds ``name`` (listed in its manifest, or present in an old run)."""
        path = self._require_run(run)
        return (check_file_name(name) in _read_manifest(path).files
                or (path / name).exists())

    def info(self, run: str) -> dict[str, Any]:
        """The raw, verified ``run.json``: configs, package version, git hash, creation time."""
        path = self._require_run(run)
        data = self._read_file(path, C.RUN_CONFIG)
        try:
            info = json.loads(data)
            if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
                raise TypeError("no 'config' object")
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as err:
            raise HubError(f"{path / C.RUN_CONFIG} is not a valid run config "
                           f"({_one_line(err)}); restore it or delete the run") from None
        return info

    def config(self, run: str) -> RunConfig:
        """The run's :class:`RunConfig`."""
        try:
            return RunConfig.from_dict(self.info(run)["config"])
        except (KeyError, TypeError, ConfigError) as err:
            raise HubError(f"{self.run_dir(run) / C.RUN_CONFIG} holds an invalid config "
                           f"({_one_line(err)}); restore it or delete the run") from None

    def manifest(self, run: str) -> list[CheckpointEntry]:
        """The complete checkpoints of a run, sorted by step."""
        raw = _read_manifest(self._require_run(run))
        return sorted((CheckpointEntry(**e) for e in raw.checkpoints), key=lambda e: e.step)

    def _check_entry(self, run: str, entry: CheckpointEntry) -> None:
        root = self.run_dir(run)
        for rel in (entry.weights, entry.optimizer):
            if rel is not None and not _entry_path_ok(root, rel):
                raise HubError(f"manifest of run {run!r} points at {rel!r}, which is not a "
                               "safetensors file inside the run; refusing to load it")

    def _checked_manifest(self, run: str) -> list[CheckpointEntry]:
        entries = self.manifest(run)
        for e in entries:
            self._check_entry(run, e)
        return entries

    def checkpoints(self, run: str) -> pd.DataFrame:
        """A DataFrame with one row per complete checkpoint: ``step, tokens, path``."""
        root = self.run_dir(run)
        rows = [{"step": e.step, "tokens": e.tokens, "path": str(root / e.weights)}
                for e in self._checked_manifest(run)]
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
        if not _entry_path_ok(root, rel):
            raise HubError(f"manifest of run {run!r} points at {rel!r}, which is not a "
                           "safetensors file inside the run; refusing to load it")
        path = root / rel
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
                           f"safetensors file ({_one_line(err)}); it was not loaded") from None

    def load_optimizer_state(self, run: str, step: int) -> dict[str, Any]:
        """Verified optimizer state saved with ``step`` (for resuming)."""
        entry = self._entry(run, step)
        if entry.optimizer is None or entry.optimizer_sha256 is None:
            raise HubError(f"checkpoint {step} of run {run!r} has no optimizer state; "
                           "resume needs the newest checkpoint's, so start a new --run")
        data = self._read_verified(run, entry.optimizer, entry.optimizer_sha256)
        try:
            return optimizer_from_safetensors(data)
        except Exception as err:
            raise HubError(f"optimizer file {self.run_dir(run) / entry.optimizer} is not valid "
                           f"({_one_line(err)}); it was not loaded") from None

    def verify(self, run: str) -> list[str]:
        """Check every file of a run against the manifest; return the names checked.

        Reads each listed file (``files`` map and every checkpoint's weights and optimizer
        state) and parses the safetensors ones, so a run that passes loads without error.

        Raises:
            HubError: the first missing, corrupted, unlisted or misplaced file.
        """
        path = self._require_run(run)
        manifest = _read_manifest(path)
        names = sorted(set(manifest.files) | {n for n in C.CORE_FILES if (path / n).exists()})
        for name in names:
            self._read_file(path, name)
        self.config(run)
        for entry in self._checked_manifest(run):
            self.load_state_dict(run, entry.step)
            names.append(entry.weights)
            if entry.optimizer is not None:
                self.load_optimizer_state(run, entry.step)
                names.append(entry.optimizer)
        self.token_frequencies(run)
        self.log(run)
        return names

    def tokenizer(self, run: str):
        """The run's ``tokenizers.Tokenizer`` (natural text), or None (synthetic data)."""
        path = self._require_run(run)
        data = self._optional_file(path, C.TOKENIZER)
        if data is None:
            return None
        from tokenizers import Tokenizer

        try:
            return Tokenizer.from_str(data.decode())
        except Exception as err:  # tokenizers raises its own exception type
            raise HubError(f"{path / C.TOKENIZER} is not a valid tokenizer ({_one_line(err)}); "
                           "restore it or delete the run") from None

    def token_frequencies(self, run: str) -> np.ndarray | None:
        """Token frequencies of the run's training distribution, if recorded."""
        path = self._require_run(run)
        data = self._optional_file(path, C.TOKEN_FREQUENCIES)
        if data is None:
            return None
        try:
            return safetensors.torch.load(data)["frequencies"].numpy()
        except Exception as err:  # safetensors raises its own error types
            raise HubError(f"{path / C.TOKEN_FREQUENCIES} is not a valid token-frequency file "
                           f"({_one_line(err)}); restore it or delete the run") from None

    def corpus(self, run: str):
        """The run's corpus, rebuilt from its data spec (and stored, verified tokenizer)."""
        from induction_lens.data import make_corpus

        cfg = self.config(run)
        if isinstance(cfg.model, PretrainedSpec):  # evaluation text in the model's own tokens
            return self._pretrained_corpus(run, cfg)
        path = self._require_run(run)
        has_tokenizer = self._optional_file(path, C.TOKENIZER) is not None  # verifies it
        return make_corpus(cfg.data, d_vocab=cfg.model.d_vocab, n_ctx=cfg.model.n_ctx,
                           cache_dir=self.root / C.CACHE_DIR,
                           tokenizer_path=path / C.TOKENIZER if has_tokenizer else None)

    def _pretrained_corpus(self, run: str, cfg: RunConfig):
        """An imported run's evaluation text (a
        :class:`~induction_lens.data.pretrained.PretrainedCorpus`)."""
        from induction_lens.data.pretrained import DEFAULT_EVAL_CTX, PretrainedCorpus

        if cfg.data.is_synthetic:
            raise DataError(f"run {run!r} was imported without evaluation text; re-import it "
                            "with data='hf:NeelNanda/pile-10k' (online) or data='files:PATH' to "
                            "evaluate losses")
        tokenizer = self.tokenizer(run)
        if tokenizer is None:
            raise HubError(f"run {run!r} has no {C.TOKENIZER}; re-import it")
        return PretrainedCorpus(cfg.data, tokenizer, bos_token_id=self.bos_token_id(run),
                                d_vocab=cfg.model.d_vocab,
                                n_ctx=min(cfg.model.n_ctx, DEFAULT_EVAL_CTX),
                                cache_dir=self.root / C.CACHE_DIR)

    def bos_token_id(self, run: str) -> int:
        """The BOS id the evaluators prepend for ``run``, without building its model.

        :data:`~induction_lens.constants.BOS_TOKEN_ID` (0) for this package's runs; for an
        imported series the stored tokenizer's id of the series' ``bos_token`` (see
        :func:`induction_lens.models.pretrained.bos_token_id`).
        """
        spec = self.config(run).model
        if not isinstance(spec, PretrainedSpec) or "bos_token" not in spec.special_tokens:
            return C.BOS_TOKEN_ID
        tokenizer = self.tokenizer(run)
        bos = tokenizer.token_to_id(spec.special_tokens["bos_token"]) if tokenizer else None
        return int(bos) if bos is not None else C.BOS_TOKEN_ID

    def log(self, run: str) -> pd.DataFrame:
        """The training log: ``step, tokens, loss, lr, grad_norm, seconds`` per step."""
        path = self._require_run(run)
        data = self._optional_file(path, C.TRAIN_LOG)
        if data is None:
            return empty_log()
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as err:  # pyarrow raises its own error types
            raise HubError(f"{path / C.TRAIN_LOG} is not a valid parquet file "
                           f"({_one_line(err)}); restore it or delete the run") from None
        if not len(frame) and "step" not in frame.columns:
            return empty_log()  # the column-less step-0 log of versions before 0.x
        missing = [c for c in C.LOG_COLUMNS if c not in frame.columns]
        if missing:
            raise HubError(f"{path / C.TRAIN_LOG} lacks the columns {missing}; restore it or "
                           "delete the run")
        return frame

    def load_model(self, run: str, step: int | None = None, *,
                   device: str | torch.device | None = None) -> HookedTransformer:
        """A ``HookedTransformer`` with the weights of ``step`` (default: the newest).

        Smeared-key alphas are restored with the rest of the state dict; natural-text runs get
        their tokenizer attached so ``model.to_tokens`` works.
        """
        cfg = self.config(run)
        if isinstance(cfg.model, PretrainedSpec):  # an imported series (induction_lens.pretrained)
            from induction_lens.models.pretrained import build_pretrained_model

            model = build_pretrained_model(cfg.model, tokenizer=self.hf_tokenizer(run),
                                           device=device)
            self._load_into(model, run, step)
            return model
        if cfg.is_reddy:  # Reddy 2023's classifier network
            from induction_lens.models.reddy import build_reddy_network

            model = build_reddy_network(cfg.model, seed=None, device=device)
        else:
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
            from induction_lens.models.pretrained import pretrained_hf_tokenizer

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
        entries = self._checked_manifest(run)
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

    def write_file(self, run: str, name: str, data: bytes) -> Path:
        """Atomically write a file of an existing run and record its sha256 in the manifest.

        For files other layers own, such as evaluation caches (``evals/NAME.parquet``); read
        them back with :meth:`read_file`, which verifies them. Safe while the run is being
        trained (only the manifest update is serialised). ``run.json`` and the checkpoints
        belong to the run's writer and cannot be written here.
        """
        path = self._require_run(run)
        if check_file_name(name) == C.RUN_CONFIG:
            raise HubError(f"{name} is written by the run's writer only; open the run with "
                           "Hub.open_run to change it")
        self._ensure_marker()
        _commit(path, {name: data})
        return path / name

    def delete_run(self, run: str) -> None:
        """Remove a run and everything in it (refused while another process writes it)."""
        path = self._require_run(run)
        with _lock(path):
            shutil.rmtree(path)


def _looks_like_run(path: Path) -> bool:
    if not path.is_dir():
        return False
    if (path / C.RUN_CONFIG).is_file():
        return True
    return all(p.name in _RUN_ENTRIES or p.name.startswith(".") for p in path.iterdir())


def empty_log() -> pd.DataFrame:
    """A training log with no rows but every column, typed (what step 0 stores)."""
    return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("step", "tokens") else "float64")
                         for c in C.LOG_COLUMNS})


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


@contextlib.contextmanager
def _manifest_lock(run_path: Path) -> Iterator[None]:
    lock = FileLock(str(run_path / C.MANIFEST_LOCK), timeout=_MANIFEST_LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        raise HubError(f"the manifest of run {run_path.name!r} stayed locked for "
                       f"{_MANIFEST_LOCK_TIMEOUT_S:.0f} s ({run_path / C.MANIFEST_LOCK}); a "
                       "process holding it hangs: stop it and retry") from None
    try:
        yield
    finally:
        lock.release()


def _recover(run_path: Path) -> None:
    """Finish or undo the commits of killed writers (call with the manifest lock held).

    A staged file whose sha256 the manifest lists was committed: it is renamed into place. Any
    other staged file was never committed: it is removed.
    """
    manifest = _read_manifest(run_path)
    for tmp in run_path.rglob(f"..*{C.STAGED_SUFFIX}.*.tmp"):  # a staged write cut short
        tmp.unlink(missing_ok=True)
    for staged in sorted(run_path.rglob(f".*{C.STAGED_SUFFIX}")):
        target = _target_of_staged(staged)
        name = target.relative_to(run_path).as_posix()
        if manifest.files.get(name) == sha256_file(staged):
            os.replace(staged, target)
            fsync_dir(target.parent)
            logger.info("completed the interrupted write of %s", target)
        else:
            staged.unlink(missing_ok=True)


def _commit(run_path: Path, files: dict[str, bytes],
            update: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
            ) -> None:
    """Write ``files`` and update the manifest as one commit (see the module docstring).

    ``update`` maps the manifest's checkpoint list to the new one (checkpoint files must be
    on disk already). The manifest is re-read under the lock, so updates by other processes
    (an evaluator recording a cache while training runs) are kept.
    """
    with _manifest_lock(run_path):
        _recover(run_path)
        manifest = _read_manifest(run_path)
        if manifest.format < 2:  # a format-1 run: trust its other files as found from now on
            for name in C.CORE_FILES:
                if name not in files and (run_path / name).is_file():
                    manifest.files[name] = sha256_file(run_path / name)
        staged = []
        for name, data in files.items():
            target = run_path / name
            atomic_write_bytes(_staged_path(target), data)
            staged.append(target)
            manifest.files[name] = sha256_bytes(data)
        if update is not None:
            manifest.checkpoints = update(manifest.checkpoints)
        atomic_write_bytes(run_path / C.MANIFEST, json_bytes(manifest.to_json()))  # the commit
        for target in staged:
            os.replace(_staged_path(target), target)
        for parent in {t.parent for t in staged}:
            fsync_dir(parent)


class RunWriter:
    """Writes one run: config, checkpoints, manifest, log. Use as a context manager.

    Opening a run takes its lock (a second writer fails at once), completes or removes what a
    killed writer left (see the module docstring), checks that a resumed run keeps its
    config, and records ``run.json``. ``created`` tells whether it created the run (False: it
    resumes one).
    """

    def __init__(self, hub: Hub, run: str, config: RunConfig, *, resume: bool):
        self.hub, self.run, self.config = hub, check_run_name(run), config
        self.path = hub.run_dir(run)
        if (self.path / C.RUN_CONFIG).is_file() and not resume:
            raise HubError(f"run {run!r} already exists in hub {hub.root}; pass resume=True "
                           "(--resume) to continue it, or choose another --run")
        hub._ensure_marker()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock: contextlib.AbstractContextManager[None] | None = _lock(self.path)
        self._lock.__enter__()
        try:
            with _manifest_lock(self.path):
                _recover(self.path)
            exists = (self.path / C.RUN_CONFIG).is_file()
            if exists and not resume:
                raise HubError(f"run {run!r} already exists in hub {hub.root}; pass resume=True "
                               "(--resume) to continue it, or choose another --run")
            self.created = not exists
            if exists:
                self._check_resumable(hub.info(run))
                hub._checked_manifest(run)
            else:
                self._clear_leftovers()
            self._clean_partial_files()
            if not exists or hub.info(run)["config"] != config.to_dict():
                _commit(self.path, {C.RUN_CONFIG: json_bytes({
                    "config": config.to_dict(),
                    "induction_lens_version": __version__,
                    "git_hash": git_hash(),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                })})
            self._entries = hub.manifest(run)
        except BaseException:
            self.close()
            raise

    def _check_resumable(self, info: dict[str, Any]) -> None:
        """Refuse to resume with a different model, data or train config.

        Only ``steps`` may change, and not under a cosine schedule: its decay spans the stored
        ``steps``, so changing them would change the learning rate of steps already taken and
        the result would match neither run (our choice: refuse rather than splice schedules).
        """
        try:
            stored = RunConfig.from_dict(info["config"])
        except (KeyError, TypeError, ConfigError) as err:
            raise HubError(f"{self.path / C.RUN_CONFIG} holds an invalid config "
                           f"({_one_line(err)}); restore it or delete the run") from None
        for part in ("model", "data", "train"):
            old, new = getattr(stored, part), getattr(self.config, part)
            diff = [f.name for f in dataclasses.fields(old)
                    if getattr(old, f.name) != getattr(new, f.name) and f.name != "steps"]
            if diff:
                raise HubError(f"cannot resume run {self.run!r}: its {part} config differs in "
                               f"{diff}; resume with the stored config (only steps may change) "
                               "or start a new --run")
        old_steps, new_steps = stored.train.steps, self.config.train.steps
        if stored.train.lr_schedule == "cosine" and old_steps != new_steps:
            raise HubError(f"cannot resume run {self.run!r} with steps={new_steps}: its cosine "
                           f"learning-rate schedule decays over steps={old_steps}, and changing "
                           f"it would change steps already taken; resume with --steps "
                           f"{old_steps} or start a new --run")

    def _clear_leftovers(self) -> None:
        """A directory without ``run.json`` is no run yet: drop what an older attempt left."""
        entries = _read_manifest(self.path).checkpoints
        if entries:
            raise HubError(f"{self.path} lists checkpoints but has no {C.RUN_CONFIG}; restore "
                           "it, or delete the directory to start the run again")
        for name in (*C.CORE_FILES, C.MANIFEST):
            (self.path / name).unlink(missing_ok=True)

    def _clean_partial_files(self) -> None:
        """Remove temp files and checkpoint files a killed writer left outside the manifest."""
        listed = set()
        for e in _read_manifest(self.path).checkpoints:
            listed.add(e["weights"])
            if e.get("optimizer"):
                listed.add(e["optimizer"])
        for p in self.path.glob("*.tmp"):
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
        """Atomically write a file of the run (tokenizer, frequencies) and record its sha256.

        The content is verified whenever it is read back (:meth:`Hub.read_file`).
        """
        _commit(self.path, {check_file_name(name): data})
        return self.path / name

    def save_token_frequencies(self, frequencies: np.ndarray) -> Path:
        tensor = torch.as_tensor(np.asarray(frequencies, dtype=np.float64))
        return self.write_file(C.TOKEN_FREQUENCIES, save_safetensors({"frequencies": tensor}, {}))

    def save_checkpoint(self, step: int, tokens: int, model: torch.nn.Module,
                        optimizer_state: dict[str, Any] | None, log: pd.DataFrame | None = None
                        ) -> list[Path]:
        """Write one checkpoint (weights, optional optimizer state, log), then list it.

        Returns the paths written. The weights and optimizer state go to new files and the log
        is staged; the manifest is written last, so a crash at any point leaves the previous
        manifest (and only complete checkpoints, with the log that matches them) in place.
        """
        written = []
        weights = save_safetensors({k: v.detach().cpu().contiguous()
                                    for k, v in model.state_dict().items()},
                                   {"step": str(step), "tokens": str(tokens)})
        written.append(atomic_write_bytes(self.path / C.checkpoint_name(step), weights))
        entry = {"step": step, "tokens": tokens, "weights": C.checkpoint_name(step),
                 "sha256": sha256_bytes(weights), "optimizer": None, "optimizer_sha256": None}
        if optimizer_state is not None:
            optim = optimizer_to_safetensors(optimizer_state)
            written.append(atomic_write_bytes(self.path / C.optimizer_name(step), optim))
            entry.update(optimizer=C.optimizer_name(step), optimizer_sha256=sha256_bytes(optim))
        files = {}
        if log is not None:
            files[C.TRAIN_LOG] = parquet_bytes(log if len(log.columns) else empty_log())
            written.append(self.path / C.TRAIN_LOG)
        keep = self.config.train.keep_optimizer_states
        stale: list[str] = []

        def update(checkpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
            entries = [e for e in checkpoints if e["step"] != step] + [entry]
            entries.sort(key=lambda e: e["step"])
            for e in entries[:-keep]:
                if e.get("optimizer"):
                    stale.append(e["optimizer"])
                    e.update(optimizer=None, optimizer_sha256=None)
            return entries

        _commit(self.path, files, update)
        written.append(self.path / C.MANIFEST)
        for rel in stale:  # only after the manifest no longer lists them
            if _entry_path_ok(self.path, rel):
                (self.path / rel).unlink(missing_ok=True)
        self._entries = self.hub.manifest(self.run)
        return written
