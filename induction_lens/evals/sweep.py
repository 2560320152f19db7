"""Run evaluators over the checkpoints of runs; one tidy frame out, cached as parquet per run.

The paper measures every property "on all snapshots of all models across training"
(appendix "Data Collection"). :func:`evaluate_run` does that for one run of a hub:

* **Metric registry.** :data:`METRICS` maps a name to a :class:`Metric`: a function
  ``fn(model, ctx) -> DataFrame`` plus a version string. Register your own with
  :func:`register_metric` (also usable as a decorator)::

      from induction_lens.evals.sweep import register_metric

      @register_metric("qk_trace", version="1", settings=("head_examples",))
      def qk_trace(model, ctx):
          prev = ctx.previous_token_scores(model)   # shared with the built-in metric
          ...
          return pd.DataFrame({"layer": ..., "head": ..., "metric": "qk_trace", "value": ...})

  The function returns rows with ``metric`` and ``value`` and any of ``layer, head, position,
  example``; the sweep adds ``run, step, tokens``. ``ctx`` (:class:`EvalContext`) holds the
  run's evaluation inputs, built once per run: the evaluation set, the fixed random indices,
  the evaluator token pool, the repeated random tokens, the dataset examples for previous-token
  scores, and a per-checkpoint memo so metrics can share forward passes.
* **Cache.** Each metric's rows live in ``RUN/evals/{name}.parquet``, whose parquet metadata
  records the metric's version, the settings it reads and the sha256 of every checkpoint it
  covers. A later call reuses the rows whose metadata still match and computes only missing
  (new, changed or never evaluated) checkpoints; bumping a metric's version or changing a
  setting it reads recomputes it. Files are written atomically (and flushed at least every
  ``flush_seconds`` and on interruption), so a killed sweep keeps what it finished.
* **Built-in metrics**: ``losses`` (per-token losses: ``loss``, ``icl_score``,
  ``loss_by_position``, ``loss_per_example``) and the head evaluators ``prefix_matching``,
  ``copying``, ``previous_token`` (:mod:`~induction_lens.evals.heads`).
"""

import argparse
import dataclasses
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from induction_lens import constants as C
from induction_lens._version import __version__
from induction_lens.data import evaluator_token_pool, repeated_tokens
from induction_lens.evals.common import EvalError, tidy
from induction_lens.evals.heads import (
    previous_token_scores,
    random_dataset_tokens,
    repeated_head_scores,
    scores_frame,
)
from induction_lens.evals.losses import LOGITS_BUDGET, random_token_indices, summarise_losses
from induction_lens.hub import Hub, HubError, atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "EvalContext",
    "EvalSettings",
    "Metric",
    "MetricFn",
    "add_evaluate_parser",
    "cache_path",
    "checkpoint_summary",
    "cmd_evaluate",
    "evaluate_model",
    "evaluate_run",
    "evaluate_runs",
    "register_metric",
]


# ============================================================================ settings
@dataclass(frozen=True)
class EvalSettings:
    """What the built-in evaluators measure on; part of every cache key.

    The laptop defaults keep one checkpoint of the laptop models at about a second on two CPU
    cores; :meth:`paper` gives the paper's sizes (10,000 examples).
    """

    n_examples: int = 512
    """Examples in the per-token-loss evaluation set (the paper: 10,000 of 512 tokens); the
    run's held-out ``corpus.eval_tokens(n_examples)``, the same for every snapshot."""
    index_seed: int = 0
    """Seed of the random-token-per-example indices (:func:`random_token_indices`)."""
    icl_indices: tuple[int, int] | None = None
    """(early, late) context indices of the ICL score; None scales the paper's (50, 500) to
    the example length (:func:`~induction_lens.evals.losses.icl_indices`)."""
    batch_size: int = 64
    """Examples per forward pass."""
    logits_budget: int = LOGITS_BUDGET
    """Most logits held at once by the loss evaluators."""
    head_examples: int = 10
    """Examples of each head evaluator (the paper: 10)."""
    head_seq_len: int = 25
    """Random tokens per repeat (the paper: 25)."""
    head_repeats: int = 4
    """Repeats in the prefix-matching input (the paper: 4)."""
    head_seed: int = 0
    """Seed of the random token sequences."""
    exclude_fraction: float = 0.1
    """Share of the vocabulary excluded as most and least common tokens
    (:func:`~induction_lens.data.evaluator_token_pool`)."""
    copying_bos: bool = True
    """Prepend BOS to the copying input (paper footnote 31; see
    :func:`~induction_lens.evals.heads.copying_scores`)."""

    def __post_init__(self) -> None:
        for name in ("n_examples", "batch_size", "logits_budget", "head_examples",
                     "head_seq_len", "head_repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise EvalError(f"EvalSettings.{name}={value!r} must be a positive integer")
        if self.head_repeats < 2:
            raise EvalError(f"EvalSettings.head_repeats={self.head_repeats} must be >= 2 "
                            "(prefix matching needs a repeat)")
        if self.icl_indices is not None:
            if len(self.icl_indices) != 2:
                raise EvalError(f"EvalSettings.icl_indices={self.icl_indices!r} must be "
                                "(early, late)")
            object.__setattr__(self, "icl_indices", tuple(int(i) for i in self.icl_indices))

    @classmethod
    def paper(cls, **overrides: Any) -> "EvalSettings":
        """The paper's sizes: 10,000 evaluation examples, 10 examples per head evaluator."""
        return cls(**{"n_examples": 10_000, **overrides})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["icl_indices"] is not None:
            out["icl_indices"] = list(out["icl_indices"])
        return out


# ============================================================================ registry
MetricFn = Callable[[HookedTransformer, "EvalContext"], pd.DataFrame]
"""``fn(model, ctx)`` returning rows with ``metric, value`` and any of ``layer, head,
position, example``."""

_ALL_SETTINGS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(EvalSettings))


@dataclass(frozen=True)
class Metric:
    """A registered evaluator."""

    name: str
    """Registry key; also the cache file name ``RUN/evals/{name}.parquet``."""
    fn: MetricFn
    version: str
    """Bump it whenever ``fn``'s output changes: cached rows of another version are dropped."""
    settings: tuple[str, ...] = _ALL_SETTINGS
    """The :class:`EvalSettings` fields ``fn`` reads (changing one of them recomputes it)."""
    description: str = ""
    default: bool = True
    """Whether :func:`evaluate_run` computes it when ``metrics`` is not given."""

    def cache_key(self, settings: EvalSettings) -> dict[str, Any]:
        values = settings.to_dict()
        return {"metric": self.name, "version": self.version,
                "settings": {k: values[k] for k in sorted(self.settings)}}


METRICS: dict[str, Metric] = {}
"""Every registered metric by name."""


def register_metric(name: str, fn: MetricFn | None = None, *, version: str,
                    settings: Iterable[str] | None = None, description: str = "",
                    default: bool = True, replace: bool = False):
    """Register ``fn`` under ``name``; use directly or as a decorator.

    Args:
        name: registry key and cache file name (letters, digits, ``_``, ``-``).
        fn: ``fn(model, ctx) -> DataFrame`` (see :data:`MetricFn`); omit to use as a decorator.
        version: bump whenever the function's output changes, so stale caches are recomputed.
        settings: the :class:`EvalSettings` fields the function reads (default: all of them;
            naming only the ones it reads avoids needless recomputation).
        description: one line for ``induction-lens evaluate --help``.
        default: computed by :func:`evaluate_run` when ``metrics`` is not given.
        replace: allow replacing an existing registration.

    Returns:
        ``fn`` (so the decorator form leaves the function usable).
    """
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise EvalError(f"metric name {name!r} must be non-empty letters, digits, '_' or '-'")
    if not isinstance(version, str) or not version:
        raise EvalError(f"metric {name!r}: version must be a non-empty string")
    keys = _ALL_SETTINGS if settings is None else tuple(settings)
    unknown = sorted(set(keys) - set(_ALL_SETTINGS))
    if unknown:
        raise EvalError(f"metric {name!r} reads unknown settings {unknown}; EvalSettings has "
                        f"{list(_ALL_SETTINGS)}")

    def register(func: MetricFn) -> MetricFn:
        if not callable(func):
            raise EvalError(f"metric {name!r}: fn must be callable")
        if name in METRICS and not replace and METRICS[name].fn is not func:
            raise EvalError(f"metric {name!r} is already registered; pass replace=True to "
                            "replace it")
        METRICS[name] = Metric(name, func, version, tuple(sorted(set(keys))), description,
                               default)
        return func

    return register if fn is None else register(fn)


def _resolve_metrics(metrics: Sequence[str] | str | None) -> list[Metric]:
    if metrics is None:
        return [m for m in METRICS.values() if m.default]
    if isinstance(metrics, str):
        metrics = [metrics]
    names = [n for item in metrics for n in str(item).split(",") if n]
    if names == ["all"]:
        return list(METRICS.values())
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise EvalError(f"unknown metric(s) {unknown or names}; registered: {sorted(METRICS)}")
    return [METRICS[n] for n in dict.fromkeys(names)]


# ============================================================================ context
class EvalContext:
    """The evaluation inputs of one run, built lazily and once, plus a per-checkpoint memo.

    Attributes a metric may read: ``settings``, ``run``, ``hub``, ``d_vocab``, ``n_ctx``,
    ``step`` and ``tokens`` (of the checkpoint being evaluated), and the properties below.
    """

    def __init__(self, settings: EvalSettings, *, d_vocab: int, n_ctx: int,
                 eval_tokens: Callable[[int], Tensor] | Tensor | None = None,
                 token_frequencies: np.ndarray | None = None, hub: Hub | None = None,
                 run: str | None = None):
        self.settings = settings
        self.d_vocab = d_vocab
        self.n_ctx = n_ctx
        self.hub = hub
        self.run = run
        self._eval_source = eval_tokens
        self._frequencies = token_frequencies
        self._cache: dict[str, Any] = {}
        self._memo: dict[Any, Any] = {}
        self.step: int | None = None
        self.tokens: int | None = None

    @classmethod
    def from_hub(cls, hub: Hub, run: str, settings: EvalSettings) -> "EvalContext":
        """The context of a stored run: its corpus's evaluation set and token frequencies."""
        cfg = hub.config(run)
        corpus: list = []  # built on first use (natural text loads a tokenizer), then reused

        def eval_tokens(n: int) -> Tensor:
            if not corpus:
                corpus.append(hub.corpus(run))
            return corpus[0].eval_tokens(n)

        return cls(settings, d_vocab=cfg.model.d_vocab, n_ctx=cfg.model.n_ctx,
                   eval_tokens=eval_tokens, token_frequencies=hub.token_frequencies(run),
                   hub=hub, run=run)

    def begin_checkpoint(self, step: int | None, tokens: int | None) -> None:
        """Start a checkpoint: clears the memo."""
        self.step, self.tokens = step, tokens
        self._memo.clear()

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per checkpoint under ``key``: metrics share forward passes."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def _once(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def eval_tokens(self) -> Int[Tensor, "batch pos"]:
        """The per-token-loss evaluation set: ``settings.n_examples`` held-out examples."""
        def build() -> Tensor:
            source = self._eval_source
            if source is None:
                raise EvalError("this context has no evaluation set; pass eval_tokens= (e.g. "
                                "corpus.eval_tokens) to evaluate losses")
            tokens = source(self.settings.n_examples) if callable(source) else source
            if tokens.shape[0] < self.settings.n_examples:
                raise EvalError(f"the evaluation set has {tokens.shape[0]} examples but "
                                f"n_examples={self.settings.n_examples}")
            return tokens[:self.settings.n_examples]
        return self._once("eval_tokens", build)

    @property
    def random_index(self) -> Int[Tensor, " batch"]:
        """The fixed random context index of each evaluation example."""
        return self._once("random_index", lambda: random_token_indices(
            self.settings.n_examples, self.eval_tokens.shape[1], seed=self.settings.index_seed))

    @property
    def token_pool(self) -> np.ndarray:
        """Token ids for the head evaluators: not special, not the most or least common."""
        return self._once("token_pool", lambda: evaluator_token_pool(
            self._frequencies, self.d_vocab, exclude_fraction=self.settings.exclude_fraction))

    @property
    def repeated_tokens(self) -> Int[Tensor, "batch pos"]:
        """The prefix-matching input: BOS, then ``head_repeats`` copies of ``head_seq_len``
        random tokens."""
        s = self.settings
        length = 1 + s.head_seq_len * s.head_repeats
        if length > self.n_ctx:
            raise EvalError(f"1 + head_seq_len*head_repeats = {length} tokens do not fit the "
                            f"context {self.n_ctx}; lower EvalSettings.head_seq_len or "
                            "head_repeats")
        return self._once("repeated_tokens", lambda: repeated_tokens(
            self.token_pool, n_examples=s.head_examples, seq_len=s.head_seq_len,
            repeats=s.head_repeats, seed=s.head_seed))

    @property
    def dataset_tokens(self) -> Int[Tensor, "batch pos"]:
        """Examples of the training distribution for previous-token scores: the first
        ``head_examples`` of the evaluation stream (uniform random pool tokens without one)."""
        def build() -> Tensor:
            n = self.settings.head_examples
            source = self._eval_source
            if source is None:
                return random_dataset_tokens(self.token_pool, n_examples=n, n_ctx=self.n_ctx,
                                             seed=self.settings.head_seed)
            tokens = source(n) if callable(source) else source
            return tokens[:n]
        return self._once("dataset_tokens", build)

    def previous_token_scores(self, model: HookedTransformer) -> Tensor:
        """``[n_layers, n_heads]`` previous-token scores of this checkpoint (memoised)."""
        return self.memo("previous_token", lambda: previous_token_scores(
            model, self.dataset_tokens, batch_size=self.settings.batch_size))

    def repeated_scores(self, model: HookedTransformer) -> dict[str, Tensor]:
        """Prefix-matching and copying scores of this checkpoint, from one forward pass."""
        s = self.settings
        return self.memo("repeated", lambda: repeated_head_scores(
            model, self.repeated_tokens, seq_len=s.head_seq_len,
            metrics=("prefix_matching", "copying"), copying_bos=s.copying_bos,
            batch_size=s.batch_size))


# ============================================================================ built-ins
def _losses_metric(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
    """Per-token losses (appendix "(1) Per-token losses"): the loss curve value, the ICL score,
    the context-index average and the random-token-per-example vector."""
    s = ctx.settings
    summary = summarise_losses(model, ctx.eval_tokens, random_index=ctx.random_index,
                               indices=s.icl_indices, batch_size=s.batch_size,
                               logits_budget=s.logits_budget)
    by_pos = summary.by_position[1:].double().numpy()
    n = len(summary.per_example)
    return pd.concat([
        pd.DataFrame({"metric": ["loss", "icl_score"],
                      "value": [summary.loss, summary.icl_score]}),
        pd.DataFrame({"metric": "loss_by_position", "value": by_pos,
                      "position": np.arange(1, len(by_pos) + 1)}),
        pd.DataFrame({"metric": "loss_per_example",
                      "value": summary.per_example.double().numpy(),
                      "position": summary.random_index.numpy(), "example": np.arange(n)}),
    ], ignore_index=True)


def _head_metric(name: str) -> MetricFn:
    def fn(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
        if name == "previous_token":
            return scores_frame({name: ctx.previous_token_scores(model)})
        return scores_frame({name: ctx.repeated_scores(model)[name]})

    fn.__name__ = f"{name}_metric"
    fn.__doc__ = f"Head activation evaluator {name!r} (appendix (3))."
    return fn


_HEAD_SETTINGS = ("batch_size", "head_examples", "head_seq_len", "head_repeats", "head_seed",
                  "exclude_fraction")
register_metric("losses", _losses_metric, version="1",
                settings=("n_examples", "index_seed", "icl_indices", "batch_size",
                          "logits_budget"),
                description="loss, icl_score, loss_by_position, loss_per_example")
register_metric("prefix_matching", _head_metric("prefix_matching"), version="1",
                settings=_HEAD_SETTINGS, description="prefix-matching score per head")
register_metric("copying", _head_metric("copying"), version="1",
                settings=_HEAD_SETTINGS + ("copying_bos",),
                description="copying score per head")
register_metric("previous_token", _head_metric("previous_token"), version="1",
                settings=_HEAD_SETTINGS, description="previous-token score per head")

DEFAULT_METRICS: tuple[str, ...] = ("losses", "prefix_matching", "copying", "previous_token")
"""The built-in metrics."""


# ============================================================================ running
def _run_metric(metric: Metric, model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
    frame = metric.fn(model, ctx)
    if not isinstance(frame, pd.DataFrame) or not {"metric", "value"} <= set(frame.columns):
        raise EvalError(f"metric {metric.name!r} must return a DataFrame with 'metric' and "
                        "'value' columns")
    frame = frame.copy()
    frame["run"] = ctx.run
    frame["step"] = ctx.step
    frame["tokens"] = ctx.tokens
    return tidy(frame)


def evaluate_model(model: HookedTransformer, *, metrics: Sequence[str] | str | None = None,
                   eval_tokens: Tensor | Callable[[int], Tensor] | None = None,
                   token_frequencies: np.ndarray | None = None,
                   settings: EvalSettings | None = None) -> pd.DataFrame:
    """Evaluate one model (no hub, no cache): the single-snapshot form of :func:`evaluate_run`.

    Args:
        model: any ``HookedTransformer``.
        metrics: names in :data:`METRICS` (default: the default ones).
        eval_tokens: the evaluation set (a tensor, or ``corpus.eval_tokens``); required by
            ``losses``; also supplies the previous-token examples.
        token_frequencies: for the evaluator token pool (None: every token but BOS).
        settings: evaluation settings.

    Returns:
        The tidy frame with null ``run``/``step``/``tokens``.
    """
    settings = settings if settings is not None else EvalSettings()
    ctx = EvalContext(settings, d_vocab=model.cfg.d_vocab, n_ctx=model.cfg.n_ctx,
                      eval_tokens=eval_tokens, token_frequencies=token_frequencies)
    ctx.begin_checkpoint(None, None)
    frames = [_run_metric(m, model, ctx) for m in _resolve_metrics(metrics)]
    return tidy(pd.concat(frames, ignore_index=True))


def cache_path(hub: Hub | str | Path, run: str, metric: str) -> Path:
    """Where :func:`evaluate_run` caches ``metric`` of ``run``: ``RUN/evals/{metric}.parquet``."""
    hub = Hub.of(hub)
    return hub.run_dir(run) / C.EVAL_DIR / f"{metric}.parquet"


_META_KEY = b"induction_lens"


def _fingerprint(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _read_cache(path: Path, key: dict[str, Any]) -> tuple[pd.DataFrame, dict[int, str]]:
    """Cached rows and ``{step: checkpoint sha256}`` if the file matches ``key``, else empty."""
    empty: tuple[pd.DataFrame, dict[int, str]] = (pd.DataFrame(), {})
    if not path.exists():
        return empty
    try:
        meta = json.loads(pq.read_schema(path).metadata[_META_KEY])
        if meta.get("fingerprint") != _fingerprint(key):
            logger.info("cache %s is stale (metric version or settings changed)", path)
            return empty
        frame = pd.read_parquet(path)
    except Exception as err:  # unreadable or foreign file: recompute rather than fail
        logger.warning("ignoring unreadable evaluation cache %s (%s)", path, err)
        return empty
    return tidy(frame), {int(k): v for k, v in meta["checkpoints"].items()}


def _write_cache(path: Path, frame: pd.DataFrame, key: dict[str, Any],
                 checkpoints: dict[int, str]) -> Path:
    meta = {"fingerprint": _fingerprint(key), **key, "induction_lens_version": __version__,
            "checkpoints": {str(k): v for k, v in sorted(checkpoints.items())}}
    table = pa.Table.from_pandas(tidy(frame), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           _META_KEY: json.dumps(meta).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return atomic_write_bytes(path, buf.getvalue())


@dataclass
class _MetricState:
    metric: Metric
    path: Path
    key: dict[str, Any]
    frames: list[pd.DataFrame] = field(default_factory=list)
    checkpoints: dict[int, str] = field(default_factory=dict)
    dirty: bool = False


def evaluate_run(hub: Hub | str | Path, run: str, *, metrics: Sequence[str] | str | None = None,
                 every: int = 1, steps: Sequence[int] | None = None,
                 settings: EvalSettings | None = None, cache: bool = True,
                 device: str | torch.device | None = None, progress: bool = True,
                 flush_seconds: float = 60.0) -> pd.DataFrame:
    """Evaluate every ``every``-th checkpoint of a run with the chosen metrics.

    Args:
        hub: the hub or its directory.
        run: the run's name.
        metrics: names in :data:`METRICS` (a list, or one comma-separated string; "all" for
            every registered metric). Default: the metrics registered with ``default=True``
            (:data:`DEFAULT_METRICS` and any other engineer's defaults).
        every: evaluate every ``every``-th checkpoint and the newest one (ignored with
            ``steps``; see :meth:`Hub.select_checkpoints`).
        steps: explicit checkpoint steps.
        settings: evaluation settings (default :class:`EvalSettings`: laptop sizes).
        cache: read and write ``RUN/evals/{metric}.parquet``; False computes everything and
            writes nothing (use it on hubs you must not write into).
        device: torch device for the models.
        progress: tqdm progress bar over checkpoints.
        flush_seconds: write the caches at least this often during a long sweep.

    Returns:
        The tidy frame ``run, step, tokens, layer, head, metric, value, position, example`` of
        the requested checkpoints, sorted by metric family order, step and row.
    """
    hub = Hub.of(hub)
    settings = settings if settings is not None else EvalSettings()
    chosen = _resolve_metrics(metrics)
    entries = hub.manifest(run)
    if not entries:
        raise HubError(f"run {run!r} has no complete checkpoint to evaluate")
    if steps is None and (not isinstance(every, int) or every < 1):
        raise EvalError(f"every={every!r} must be a positive integer")
    wanted = hub.select_checkpoints(run, every=every, steps=steps)
    sha = {e.step: e.sha256 for e in wanted}

    states = []
    for metric in chosen:
        key = metric.cache_key(settings)
        state = _MetricState(metric, cache_path(hub, run, metric.name), key)
        if cache:
            frame, ckpts = _read_cache(state.path, key)
            valid = {s for s, h in ckpts.items() if h == sha.get(s, h)}
            if len(frame):
                frame = frame[frame["step"].isin(valid)]
                state.frames.append(frame)
            state.checkpoints = {s: ckpts[s] for s in valid}
        states.append(state)

    todo: dict[int, list[_MetricState]] = {}
    for state in states:
        for step in sha:
            if step not in state.checkpoints:
                todo.setdefault(step, []).append(state)
    if todo:
        ctx = EvalContext.from_hub(hub, run, settings)
        last_flush = time.monotonic()
        bar = tqdm(total=len(todo), desc=f"evaluate {run}", unit="ckpt", disable=not progress,
                   dynamic_ncols=True)
        try:
            for step, tokens, model in hub.iter_checkpoints(run, steps=sorted(todo),
                                                            device=device):
                ctx.begin_checkpoint(step, tokens)
                for state in todo[step]:
                    state.frames.append(_run_metric(state.metric, model, ctx))
                    state.checkpoints[step] = sha[step]
                    state.dirty = True
                bar.update(1)
                if cache and time.monotonic() - last_flush > flush_seconds:
                    _flush(states)
                    last_flush = time.monotonic()
        finally:
            bar.close()
            if cache:
                _flush(states)
    parts = [f[f["step"].isin(sha)] for state in states for f in state.frames if len(f)]
    if not parts:
        return tidy(pd.DataFrame(columns=["metric", "value"]))
    # Metrics in the order asked for, each sorted by step (stable: rows keep their order).
    out = tidy(pd.concat(parts, ignore_index=True))
    return out.sort_values("step", kind="stable").reset_index(drop=True)


def _flush(states: list[_MetricState]) -> None:
    for state in states:
        if not state.dirty:
            continue
        frames = [f for f in state.frames if len(f)]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if len(frame):
            # Every column but the value identifies a row (metrics may add key columns, e.g.
            # the source head of a composition score); a recomputed row replaces the old one.
            frame = frame.drop_duplicates(
                subset=[c for c in frame.columns if c != "value"], keep="last")
            frame = frame.sort_values(["step"], kind="stable")
        state.frames = [frame]
        _write_cache(state.path, frame, state.key, state.checkpoints)
        state.dirty = False


def evaluate_runs(hub: Hub | str | Path, runs: Sequence[str], **kwargs: Any) -> pd.DataFrame:
    """:func:`evaluate_run` for several runs, concatenated (same keyword arguments)."""
    frames = [evaluate_run(hub, run, **kwargs) for run in runs]
    return tidy(pd.concat(frames, ignore_index=True)) if frames else tidy(pd.DataFrame(
        columns=["metric", "value"]))


def checkpoint_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run and checkpoint: ``loss``, ``icl_score`` and the best head scores.

    Columns present depend on the metrics evaluated: ``loss``, ``icl_score``,
    ``max_prefix_matching``, ``max_copying``, ``max_previous_token`` (the highest score over
    all heads at that checkpoint).
    """
    keys = ["run", "step", "tokens"]
    model_level = frame[frame["layer"].isna() & frame["position"].isna()
                        & frame["metric"].isin(["loss", "icl_score"])]
    out = model_level.pivot_table(index=keys, columns="metric", values="value",
                                  aggfunc="first")
    head = frame[frame["layer"].notna() & frame["metric"].isin(["prefix_matching", "copying",
                                                                "previous_token"])]
    if len(head):
        best = head.pivot_table(index=keys, columns="metric", values="value", aggfunc="max")
        best.columns = [f"max_{c}" for c in best.columns]
        out = best if out.empty else out.join(best, how="outer")
    out = out.reset_index()
    out.columns.name = None
    return out.sort_values(["run", "step"]).reset_index(drop=True)


# ============================================================================ CLI
def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``induction-lens evaluate RUN [RUN...] --hub DIR ...`` to a subparsers object."""
    p = subparsers.add_parser(
        "evaluate", help="evaluate the checkpoints of runs; write RUN/evals/*.parquet",
        description="Evaluate every (or every k-th) checkpoint of the runs with the chosen "
                    "metrics, cache the results as RUN/evals/{metric}.parquet in the hub "
                    "(recomputed only when missing or stale), and print ICL and prefix-matching "
                    "scores per checkpoint with the detected phase-change windows.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run name(s) in the hub")
    p.add_argument("--hub", default="hub", help="hub directory (default ./hub)")
    p.add_argument("--metrics", nargs="+", default=None, metavar="METRIC",
                   help="metric names, space- or comma-separated, or 'all' (registered: "
                        f"{', '.join(sorted(METRICS))}; default: the default ones)")
    p.add_argument("--every", type=int, default=1, help="evaluate every k-th checkpoint")
    p.add_argument("--n-examples", type=int, default=None,
                   help=f"evaluation examples for per-token losses (default "
                        f"{EvalSettings().n_examples}; the paper: 10000)")
    p.add_argument("--icl-indices", type=int, nargs=2, default=None, metavar=("EARLY", "LATE"),
                   help="context indices of the ICL score (default: the paper's 50 and 500, "
                        "scaled to shorter contexts)")
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.add_argument("--out", default=None,
                   help="also write the combined tidy frame of all runs to this parquet file")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write RUN/evals")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)
    return p


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``induction-lens evaluate``: evaluates, writes the parquet, prints a summary."""
    from induction_lens.evals.phases import phase_changes

    overrides: dict[str, Any] = {}
    if args.n_examples is not None:
        overrides["n_examples"] = args.n_examples
    if args.icl_indices is not None:
        overrides["icl_indices"] = tuple(args.icl_indices)
    settings = EvalSettings(**overrides)
    hub = Hub(args.hub)
    frames = []
    for run in args.runs:
        frame = evaluate_run(hub, run, metrics=args.metrics, every=args.every, settings=settings,
                             cache=not args.no_cache, device=args.device,
                             progress=not args.quiet)
        frames.append(frame)
        summary = checkpoint_summary(frame)
        with pd.option_context("display.max_rows", 500, "display.width", 160,
                               "display.max_columns", 30, "display.float_format", "{:.3f}".format):
            print(f"run {run!r}:")
            print(summary.drop(columns=["run"]).to_string(index=False))
        windows = phase_changes(frame)
        for row in windows.itertuples():
            if row.detected:
                print(f"  {row.signal}: phase change from step {row.start_step} to "
                      f"{row.end_step} (tokens {row.start_tokens:,} to {row.end_tokens:,}), "
                      f"change {row.change:+.3f}")
            else:
                print(f"  {row.signal}: no phase change")
        if not args.no_cache:
            written = sorted({str(cache_path(hub, run, m.name))
                              for m in _resolve_metrics(args.metrics)})
            print("  cached in " + ", ".join(written))
    if args.out:
        combined = tidy(pd.concat(frames, ignore_index=True))
        buf = io.BytesIO()
        combined.to_parquet(buf, index=False)
        atomic_write_bytes(Path(args.out), buf.getvalue())
        print(f"wrote {args.out}")
    return 0

