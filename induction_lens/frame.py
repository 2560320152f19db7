"""The one tidy schema every measurement is reported in, and the one per-head frame builder.

Level: a leaf (imports ``errors`` only). Measures, analysis, runs and viz all build and read
frames through it.

Long form, one row per value (the same for every metric, registered or not):

=================  ========  ===========================================================
column             dtype     meaning
=================  ========  ===========================================================
``run``            string    run name in the hub (null for a model outside a hub)
``step``           Int64     optimizer step of the checkpoint
``train_tokens``   Int64     training tokens seen at that checkpoint
``layer``          Int64     layer of the head; null for model-level values
``head``           Int64     head index; null for model-level values
``metric``         string    what the value is (e.g. ``icl_score``, ``prefix_matching``)
``value``          float64   the number
``position``       Int64     context index the value belongs to (optional, else null)
``example``        Int64     evaluation example the value belongs to (optional, else null)
``source_layer``   Int64     pairwise metrics: the earlier (writing) head's layer (optional)
``source_head``    Int64     pairwise metrics: the earlier head's index (optional)
``kind``           string    a variant of the metric, e.g. the ablation kind (optional)
=================  ========  ===========================================================

A frame over checkpoints (:func:`tidy`) always has the first nine columns; the last three appear
when a metric uses them. A frame of one model (:func:`model_frame`, what ``head_scores`` or
``circuit_scores`` return) has ``layer, head, metric, value`` plus the optional columns it uses;
the run sweep adds ``run, step, train_tokens``. Extra columns (e.g. a joined ``head_type``) are
kept after the schema's.
"""

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from induction_lens.errors import EvalError

__all__ = [
    "CHECKPOINT_COLUMNS",
    "INT_COLUMNS",
    "OPTIONAL_COLUMNS",
    "SCHEMA_VERSION",
    "TIDY_COLUMNS",
    "check_frame",
    "head_frame",
    "model_frame",
    "tidy",
]

SCHEMA_VERSION = 2
"""Bumped when a column is renamed or changes meaning; part of every cache key (version 2:
``tokens`` became ``train_tokens`` and the ablation kind a column)."""

CHECKPOINT_COLUMNS = ("run", "step", "train_tokens")
"""The columns that say which checkpoint a row was measured on."""

TIDY_COLUMNS = ("run", "step", "train_tokens", "layer", "head", "metric", "value", "position",
                "example")
"""The columns every frame over checkpoints has, in this order."""

OPTIONAL_COLUMNS = ("source_layer", "source_head", "kind")
"""Schema columns present only where a metric uses them, after :data:`TIDY_COLUMNS`."""

INT_COLUMNS = ("step", "train_tokens", "layer", "head", "position", "example", "source_layer",
               "source_head")
"""Nullable ``Int64`` columns."""

_STRING_COLUMNS = ("run", "metric", "kind")
_MODEL_COLUMNS = ("layer", "head", "metric", "value")
_ORDER = TIDY_COLUMNS + OPTIONAL_COLUMNS


def _typed(out: pd.DataFrame) -> pd.DataFrame:
    for col in out.columns:
        if col in INT_COLUMNS:
            out[col] = out[col].astype("Int64")
        elif col in _STRING_COLUMNS:
            out[col] = out[col].astype("string")
        elif col == "value":
            out[col] = out[col].astype("float64")
    return out.reset_index(drop=True)


def _ordered(frame: pd.DataFrame, always: Iterable[str]) -> pd.DataFrame:
    out = frame.copy()
    always = tuple(always)
    for col in always:
        if col not in out.columns:
            out[col] = pd.NA
    schema = [c for c in _ORDER if c in always or c in out.columns]
    extra = [c for c in out.columns if c not in _ORDER]
    return _typed(out[schema + extra])


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` in the schema over checkpoints: every column of :data:`TIDY_COLUMNS` (missing
    ones null), then the optional columns it has, then any extra columns; schema dtypes."""
    return _ordered(frame, TIDY_COLUMNS)


def model_frame(parts: Iterable[pd.DataFrame] | pd.DataFrame, *,
                columns: Iterable[str] = ()) -> pd.DataFrame:
    """Rows measured on one model: ``layer, head, metric, value`` plus ``columns`` (optional
    schema columns the builder always reports, null where unused) and any optional column the
    rows carry. Empty parts are dropped."""
    if isinstance(parts, pd.DataFrame):
        parts = [parts]
    parts = [p for p in parts if len(p)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=list(_MODEL_COLUMNS))
    return _ordered(frame, _MODEL_COLUMNS + tuple(columns))


def head_frame(scores: Mapping[str, Tensor | np.ndarray], *, columns: Iterable[str] = (),
               **constants: Any) -> pd.DataFrame:
    """``{metric: [n_layers, n_heads] scores}`` as rows ``layer, head, metric, value``.

    The one builder of per-head frames: every ``*_scores`` tensor of :mod:`induction_lens.measures`
    becomes a frame through it. A 0-d value (a model-level number) becomes one row with null
    ``layer``/``head``. ``constants`` are added as columns (e.g. ``kind="pattern"``).
    """
    frames = []
    for metric, values in scores.items():
        arr = (values.detach().double().cpu().numpy() if isinstance(values, Tensor)
               else np.asarray(values, dtype=np.float64))
        if arr.ndim == 0:
            frames.append(pd.DataFrame({"layer": [pd.NA], "head": [pd.NA], "metric": [metric],
                                        "value": [float(arr)]}))
            continue
        if arr.ndim != 2:
            raise EvalError(f"scores of {metric!r} have shape {arr.shape}; head_frame takes "
                            "[n_layers, n_heads] (or 0-d for a model-level value)")
        n_layers, n_heads = arr.shape
        layer, head = np.meshgrid(np.arange(n_layers), np.arange(n_heads), indexing="ij")
        frames.append(pd.DataFrame({"layer": layer.ravel(), "head": head.ravel(),
                                    "metric": metric, "value": arr.ravel()}))
    frame = model_frame(frames, columns=columns)
    for name, value in constants.items():
        frame[name] = value
    return _ordered(frame, _MODEL_COLUMNS + tuple(columns))


def check_frame(frame: pd.DataFrame, *, checkpoint: bool = True) -> None:
    """Raise :class:`~induction_lens.errors.EvalError` unless ``frame`` follows the schema
    (column order and dtypes); ``checkpoint=False`` checks a one-model frame."""
    cols = list(frame.columns)
    required = list(TIDY_COLUMNS if checkpoint else _MODEL_COLUMNS)
    if cols[:len(required)] != required:
        raise EvalError(f"frame columns {cols} do not start with the schema's {required}")
    schema = [c for c in cols if c in _ORDER]
    if schema != [c for c in _ORDER if c in cols]:
        raise EvalError(f"frame columns {cols} are not in the schema's order {list(_ORDER)}")
    for col in schema:
        want = ("Int64" if col in INT_COLUMNS else "string" if col in _STRING_COLUMNS
                else "float64")
        if str(frame[col].dtype) != want:
            raise EvalError(f"column {col!r} has dtype {frame[col].dtype}, the schema's is {want}")

