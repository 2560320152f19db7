"""Atomic writes and hashing: the one implementation the hub, the caches and the report share.

Level: a leaf next to :mod:`induction_lens.constants`; it imports no other package module.

Every file is written to a temporary name in its own directory, flushed and ``fsync``-ed, then
``os.replace``-d into place, so a reader (or a process killed at any instant) sees the old file
or the new one, never half of one.
"""

import contextlib
import hashlib
import io
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "fingerprint",
    "git_hash",
    "sha256_bytes",
    "sha256_file",
]


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename) to disk where the filesystem allows it."""
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def json_bytes(obj: Any) -> bytes:
    """``obj`` as the indented, key-sorted JSON every file of the package uses."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def atomic_write_json(path: Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write_bytes(path, json_bytes(obj))


def parquet_bytes(frame: pd.DataFrame, **kwargs: Any) -> bytes:
    """``frame`` serialised as parquet (no index)."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, **kwargs)
    return buf.getvalue()


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    """Atomically write a DataFrame as parquet."""
    return atomic_write_bytes(path, parquet_bytes(frame))


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (large corpora never sit in memory whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(obj: Any, length: int = 16) -> str:
    """A short stable hash of a JSON-able ``obj`` (key order does not matter): cache keys."""
    return sha256_bytes(json.dumps(obj, sort_keys=True).encode())[:length]


def git_hash() -> str | None:
    """The git commit of the installed package's checkout, or None outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
