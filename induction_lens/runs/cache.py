"""The one evaluation cache: ``RUN/evals/{metric}.parquet``, one file per metric and run.

Level: ``runs`` (imports ``constants``, ``frame``, ``hub``, ``io`` and ``runs.registry``).

Each file holds the metric's tidy rows; its parquet metadata records the cache key (metric
version, schema version, the settings the metric reads and, for run-dependent metrics such as
the ablations, e.g. the phase window), the sha256 of every checkpoint it covers and the sha256
of its rows. A reader uses only rows whose key and checkpoint hashes still match; a file that
is unreadable, foreign, or whose rows do not hash to the recorded value (truncated or edited)
is ignored with a warning and recomputed: a cache never makes a result wrong, only faster.
Files are replaced atomically (:func:`induction_lens.io.atomic_write_bytes`).
"""

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from induction_lens import constants as C
from induction_lens._version import __version__
from induction_lens.frame import tidy
from induction_lens.hub import Hub
from induction_lens.io import atomic_write_bytes, fingerprint, sha256_bytes
from induction_lens.runs.registry import Metric

logger = logging.getLogger(__name__)

__all__ = ["cache_path", "read_cache", "write_cache"]

_META_KEY = b"induction_lens"


def cache_path(hub: Hub | str | Path, run: str, metric: str) -> Path:
    """Where :func:`~induction_lens.runs.evaluate_run` caches ``metric`` of ``run``:
    ``RUN/evals/{metric}.parquet``."""
    return Hub.of(hub).run_dir(run) / C.EVAL_DIR / f"{metric}.parquet"


def _rows_sha(frame: pd.DataFrame) -> str:
    """sha256 of the rows' values (index-free; independent of parquet's encoding)."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return sha256_bytes(hashed.tobytes() + json.dumps(list(frame.columns)).encode())


def read_cache(path: Path, key: dict[str, Any]) -> tuple[pd.DataFrame, dict[int, str]]:
    """Cached rows and ``{step: checkpoint sha256}`` if the file matches ``key``, else empty."""
    empty: tuple[pd.DataFrame, dict[int, str]] = (pd.DataFrame(), {})
    if not path.exists():
        return empty
    try:
        meta = json.loads(pq.read_schema(path).metadata[_META_KEY])
        if meta.get("fingerprint") != fingerprint(key):
            logger.info("cache %s is stale (metric version or settings changed)", path)
            return empty
        frame = tidy(pd.read_parquet(path))
        if meta.get("rows_sha256") != _rows_sha(frame):
            raise ValueError("its rows do not match the sha256 it recorded")
    except Exception as err:  # unreadable, foreign or altered file: recompute rather than fail
        logger.warning("ignoring evaluation cache %s (%s); recomputing it", path, err)
        return empty
    return frame, {int(k): v for k, v in meta["checkpoints"].items()}


def write_cache(path: Path, frame: pd.DataFrame, key: dict[str, Any],
                checkpoints: dict[int, str]) -> Path:
    """Atomically write ``frame`` with its key, checkpoint hashes and row hash."""
    frame = tidy(frame)
    meta = {"fingerprint": fingerprint(key), **key, "induction_lens_version": __version__,
            "checkpoints": {str(k): v for k, v in sorted(checkpoints.items())},
            "rows_sha256": _rows_sha(frame)}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           _META_KEY: json.dumps(meta).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())


@dataclass
class MetricState:
    """One metric's rows of one run while :func:`~induction_lens.runs.evaluate_run` works."""

    metric: Metric
    path: Path
    key: dict[str, Any]
    frames: list[pd.DataFrame] = field(default_factory=list)
    checkpoints: dict[int, str] = field(default_factory=dict)
    dirty: bool = False

    def load(self, sha: dict[int, str], *, keep: Iterable[int] | None = None) -> None:
        """Take the cached rows of the checkpoints whose hashes still match ``sha`` (the
        requested checkpoints), dropping requested ones not in ``keep`` (None: keep all) so
        that they are recomputed; rows of other checkpoints stay in the file."""
        frame, ckpts = read_cache(self.path, self.key)
        valid = {s for s, h in ckpts.items() if h == sha.get(s, h)}
        if keep is not None:
            valid -= set(sha) - set(keep)
        if len(frame):
            self.frames.append(frame[frame["step"].isin(valid)])
        self.checkpoints = {s: ckpts[s] for s in valid}

    def flush(self) -> None:
        """Write the rows if anything changed since the last write."""
        if not self.dirty:
            return
        frames = [f for f in self.frames if len(f)]
        frame = pd.concat(frames, ignore_index=True) if frames else tidy(pd.DataFrame())
        if len(frame):
            # Every column but the value identifies a row (metrics may add key columns, e.g.
            # the source head of a composition score); a recomputed row replaces the old one.
            frame = frame.drop_duplicates(
                subset=[c for c in frame.columns if c != "value"], keep="last")
            frame = frame.sort_values(["step"], kind="stable")
        self.frames = [frame]
        write_cache(self.path, frame, self.key, self.checkpoints)
        self.dirty = False
