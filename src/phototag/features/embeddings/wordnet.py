"""``wordnet``: word vectors computed from the WordNet 3.0 graph (no corpus needed).

Method ("hypernym-closure PPMI-SVD"), in the spirit of Saedi et al., *WordNet
embeddings* (2018), which the metadata-neighbourhood paper uses, but sparse so that it
runs on all 147k lemmas in 15-30 s on two cores:

1. Every synset is described by the concepts it reaches: itself and all its
   hypernym ancestors (``@``, ``@i``), weighted ``gamma ** distance``, plus, with total
   weight `beta`, the same for its one-hop semantic neighbours (meronyms/holonyms,
   attributes, derivations, similar-to, also-see, antonyms, entailments, causes, verb
   groups, pertainyms, participles and topic/region domains).
2. A lemma is the mixture of its synsets, weighted by sense frequency: SemCor tag
   count (``cntlist.rev``) plus a prior ``2 ** -rank`` over WordNet's sense order.
3. The lemma x concept matrix is turned into positive pointwise mutual information
   (context distribution smoothed with exponent 0.75, Levy et al. 2015), so that
   generic ancestors like *entity* weigh nothing and specific shared ancestors a lot.
4. A truncated SVD keeps `dim` dimensions; vectors are ``U * sqrt(S)``, with each
   component's sign fixed so that its largest entry is positive (deterministic).

The result is cached under ``<cache dir>/wordnet/<key>/`` (``words.txt`` and
``vectors.npy``), keyed by the parameters and the database files' sizes and times.
Look-ups lower-case the word, try it as a lemma, then WordNet's own lemmatiser
(``dogs -> dog``, ``mice -> mouse``), and collocations as ``polar_bear``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from phototag.cache import cache_dir
from phototag.errors import InvalidInputError, check_int
from phototag.features.embeddings._base import TableEmbedding, _check_words
from phototag.features.embeddings.wordnet_db import POS_FILES, WordNetDatabase
from phototag.fileio import TEMPORARY_SUFFIX, atomic_write, fsync_directory

ALGORITHM_VERSION = 1
#: Pointer symbols treated as one-hop semantic neighbours (usage domains are left out:
#: "slang" or "plural" say nothing about meaning).
RELATED_SYMBOLS = frozenset(
    ["!", "#m", "#s", "#p", "%m", "%s", "%p", "=", "+", ";c", "-c", ";r", "-r",
     "*", ">", "^", "$", "&", "<", "\\"]
)  # fmt: skip
HYPERNYM_SYMBOLS = frozenset(["@", "@i"])


class WordNetEmbedding(TableEmbedding):
    """Vectors from the WordNet graph (see the module docstring for the method).

    `lexicon` restricts the rows to the lemmas of those words (the graph stays whole):
    much faster, for tests and experiments; vectors then depend on the lexicon, so
    they are not comparable with the full embedding's. ``cache=False`` skips the disk
    cache (computing every time).
    """

    def __init__(
        self,
        *,
        dim: int = 128,
        gamma: float = 0.7,
        beta: float = 0.5,
        directory: str | Path | None = None,
        lexicon: Iterable[str] | None = None,
        cache: bool = True,
        seed: int = 0,
    ) -> None:
        check_int("dim", dim, 1)
        for argument, value in (("gamma", gamma), ("beta", beta)):
            if not 0 <= value <= 1:
                raise InvalidInputError(argument, "a number between 0 and 1", repr(value))
        self.name = "wordnet"
        self._dim = dim
        self.gamma, self.beta, self.seed, self.cache = gamma, beta, seed, cache
        self.database = WordNetDatabase(directory)
        self.lexicon = None if lexicon is None else sorted(set(_check_words(lexicon, "lexicon")))
        self._rows: dict[str, int] | None = None
        self._vectors: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return self._dim

    def config(self) -> dict[str, Any]:
        config = super().config()
        config.update(dim=self._dim, gamma=self.gamma, beta=self.beta, seed=self.seed)
        if self.lexicon is not None:
            config["lexicon"] = list(self.lexicon)
        return config

    # ------------------------------------------------------------------ look-up
    def words(self) -> list[str]:
        """The lemmas that have a vector (lower-case, ``_`` in collocations)."""
        self._load()
        assert self._rows is not None
        return list(self._rows)

    def _lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        rows, vectors = self._load()
        table: dict[str, np.ndarray] = {}
        for key in keys:
            lemma = key.replace(" ", "_")
            if lemma not in rows:
                lemma = next((f for f in self.database.morphy(lemma) if f in rows), "")
            if lemma:
                table[key] = np.asarray(vectors[rows[lemma]], np.float32)
        return table

    def _load(self) -> tuple[dict[str, int], np.ndarray]:
        if self._rows is None or self._vectors is None:
            if self.cache:
                words, vectors = self._cached()
            else:
                words, vectors = self._compute()
            self._rows = {word: i for i, word in enumerate(words)}
            self._vectors = vectors
        return self._rows, self._vectors

    # ------------------------------------------------------------------ cache
    def cache_key(self) -> str:
        """Digest of everything the vectors depend on."""
        files = sorted(
            p for p in self.database.directory.iterdir()
            if p.name.startswith(("index.", "data.")) or p.name == "cntlist.rev"
            or p.name.endswith(".exc")
        )  # fmt: skip
        description = {
            "version": ALGORITHM_VERSION,
            "dim": self._dim,
            "gamma": self.gamma,
            "beta": self.beta,
            "seed": self.seed,
            "lexicon": self.lexicon,
            "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
        }
        return hashlib.sha256(json.dumps(description).encode()).hexdigest()[:20]

    def cache_path(self) -> Path:
        return cache_dir() / "wordnet" / self.cache_key()

    def _cached(self) -> tuple[list[str], np.ndarray]:
        directory = self.cache_path()
        try:
            return _read_cache(directory)
        except (OSError, ValueError):
            pass  # none yet, or damaged: computed again and replaced
        words, vectors = self._compute()
        with contextlib.suppress(OSError):  # an unwritable cache costs recomputation
            _write_cache(directory, words, vectors, self._description())
        return words, vectors

    def _description(self) -> dict[str, object]:
        return {
            "embedding": "wordnet",
            "version": ALGORITHM_VERSION,
            "dim": self._dim,
            "gamma": self.gamma,
            "beta": self.beta,
            "seed": self.seed,
            "wordnet_dir": str(self.database.directory),
            "restricted_lexicon": self.lexicon is not None,
        }

    # ------------------------------------------------------------------ compute
    def _compute(self) -> tuple[list[str], np.ndarray]:
        graph = _Graph.read(self.database)
        words, senses = graph.lemma_senses(self.database, self.lexicon)
        if self._dim >= min(len(words), len(graph.keys)):
            raise InvalidInputError(
                "dim",
                f"less than the number of lemmas ({len(words)})",
                str(self._dim),
                "Use a smaller dim or a larger lexicon.",
            )
        used = np.unique(senses.indices)  # synsets of the lemmas that get a vector
        contexts = graph.contexts(used, self.gamma, self.beta)
        remap = np.full(len(graph.keys), -1, np.int64)
        remap[used] = np.arange(len(used))
        senses = sp.csr_matrix(
            (senses.data, remap[senses.indices], senses.indptr), shape=(len(words), len(used))
        )
        cooccurrence = (senses @ contexts).tocsr()
        vectors = truncated_svd_embedding(ppmi(cooccurrence), self._dim, self.seed)
        return words, vectors


class _Graph:
    """Synset nodes with hypernym and related-neighbour adjacency matrices."""

    def __init__(self, keys: list[tuple[str, int]], up: sp.csr_matrix, related: sp.csr_matrix):
        self.keys = keys
        self.node = {key: i for i, key in enumerate(keys)}
        self.up = up
        self.related = related

    @classmethod
    def read(cls, database: WordNetDatabase) -> _Graph:
        keys: list[tuple[str, int]] = []
        up_edges: list[tuple[tuple[str, int], tuple[str, int]]] = []
        related_edges: list[tuple[tuple[str, int], tuple[str, int]]] = []
        for pos in POS_FILES:
            for synset in database.iter_synsets(pos):
                keys.append(synset.key)
                for pointer in synset.pointers:
                    target = (pointer.pos, pointer.offset)
                    if pointer.symbol in HYPERNYM_SYMBOLS:
                        up_edges.append((synset.key, target))
                    elif pointer.symbol in RELATED_SYMBOLS:
                        related_edges.append((synset.key, target))
        node = {key: i for i, key in enumerate(keys)}
        n = len(keys)

        def adjacency(edges: list[tuple[tuple[str, int], tuple[str, int]]]) -> sp.csr_matrix:
            pairs = np.array([(node[a], node[b]) for a, b in edges if b in node], np.int64)
            pairs = pairs.reshape(-1, 2)
            matrix = sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
            matrix.data[:] = 1.0  # duplicate pointers (lexical + semantic) count once
            return matrix

        up = adjacency(up_edges)
        related = adjacency(related_edges)
        related = related.maximum(related.T).tocsr()
        related.setdiag(0)
        related.eliminate_zeros()
        return cls(keys, up, related)

    def ancestors(self, sources: np.ndarray, gamma: float) -> sp.csr_matrix:
        """Rows: `sources`; entry ``gamma ** d`` for every ancestor at shortest distance d."""
        n = len(self.keys)
        rows = np.arange(len(sources))
        reached = sp.csr_matrix((np.ones(len(sources)), (rows, sources)), shape=(len(sources), n))
        total = reached.copy()
        frontier = reached
        weight = 1.0
        while frontier.nnz:
            weight *= gamma
            frontier = (frontier @ self.up).tocsr()
            frontier.data[:] = 1.0
            frontier = (frontier - frontier.multiply(reached)).tocsr()
            frontier.eliminate_zeros()
            if not frontier.nnz:
                break
            reached = (reached + frontier).tocsr()
            total = (total + weight * frontier).tocsr()
        return total

    def contexts(self, synsets: np.ndarray, gamma: float, beta: float) -> sp.csr_matrix:
        """Concept profile of each synset: own ancestors + beta * neighbours' ancestors."""
        own = self.ancestors(synsets, gamma)
        if beta == 0:
            return own
        neighbours = self.related[synsets]
        degree = np.asarray(neighbours.sum(axis=1)).ravel()
        scale = sp.diags(np.divide(beta, degree, out=np.zeros_like(degree), where=degree > 0))
        linked = np.unique(neighbours.indices)
        if len(linked) == 0:
            return own
        linked_ancestors = self.ancestors(linked, gamma)
        position = np.full(len(self.keys), -1, np.int64)
        position[linked] = np.arange(len(linked))
        neighbours = sp.csr_matrix(
            (neighbours.data, position[neighbours.indices], neighbours.indptr),
            shape=(len(synsets), len(linked)),
        )
        return (own + scale @ neighbours @ linked_ancestors).tocsr()

    def lemma_senses(
        self, database: WordNetDatabase, lexicon: Sequence[str] | None
    ) -> tuple[list[str], sp.csr_matrix]:
        """Lemmas and their sense weights over synset nodes (rows sum to 1)."""
        counts = database.sense_counts()
        senses: dict[str, list[tuple[int, float]]] = {}
        wanted: set[str] | None = None
        if lexicon is not None:
            wanted = set()
            for word in lexicon:
                lemma = word.lower().replace(" ", "_")
                wanted.update(database.morphy(lemma) or [lemma])
        for pos in POS_FILES:
            for lemma, offsets in database.index(pos).items():
                if wanted is not None and lemma not in wanted:
                    continue
                entry = senses.setdefault(lemma, [])
                for rank, offset in enumerate(offsets):
                    count = counts.get((lemma, pos, rank + 1), 0)
                    entry.append((self.node[(pos, offset)], count + 2.0**-rank))
        words = sorted(senses)
        indptr, indices, data = [0], [], []
        for word in words:
            total = sum(weight for _, weight in senses[word])
            for node, weight in senses[word]:
                indices.append(node)
                data.append(weight / total)
            indptr.append(len(indices))
        matrix = sp.csr_matrix(
            (np.array(data), np.array(indices, np.int64), np.array(indptr, np.int64)),
            shape=(len(words), len(self.keys)),
        )
        matrix.sum_duplicates()
        return words, matrix


def ppmi(counts: sp.csr_matrix, smoothing: float = 0.75) -> sp.csr_matrix:
    """Positive PMI of a non-negative co-occurrence matrix (rows: words, columns: contexts).

    Context probabilities are raised to `smoothing` and renormalised (Levy et al.).
    """
    counts = counts.tocsr().astype(np.float64)
    row_sums = np.asarray(counts.sum(axis=1)).ravel()
    column_sums = np.asarray(counts.sum(axis=0)).ravel() ** smoothing
    context_p = column_sums / column_sums.sum()
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    with np.errstate(divide="ignore"):
        pmi = np.log(counts.data / row_sums[rows] / context_p[counts.indices])
    result = sp.csr_matrix((np.maximum(pmi, 0), counts.indices, counts.indptr), counts.shape)
    result.eliminate_zeros()
    return result


def truncated_svd_embedding(matrix: sp.csr_matrix, dim: int, seed: int = 0) -> np.ndarray:
    """``U[:, :dim] * sqrt(S[:dim])`` of `matrix`, signs fixed, as float32.

    Small matrices use an exact eigendecomposition of ``X X^T``; large ones a seeded
    randomized SVD (Halko, Martinsson & Tropp 2011).
    """
    matrix = matrix.tocsr()
    keep = np.unique(matrix.indices)  # empty columns change nothing
    matrix = matrix[:, keep].astype(np.float64)
    n_rows = matrix.shape[0]
    if n_rows <= 3000:
        gram = (matrix @ matrix.T).toarray()
        values, vectors = np.linalg.eigh(gram)
        order = np.argsort(values)[::-1][:dim]
        singular = np.sqrt(np.clip(values[order], 0, None))
        left = vectors[:, order]
    else:
        left, singular = _randomized_svd(matrix, dim, seed)
    peaks = left[np.abs(left).argmax(axis=0), np.arange(left.shape[1])]
    left = left * np.where(peaks < 0, -1.0, 1.0)
    return (left * np.sqrt(singular)).astype(np.float32)


def _randomized_svd(
    matrix: sp.csr_matrix, dim: int, seed: int, n_iter: int = 5, oversample: int = 24
) -> tuple[np.ndarray, np.ndarray]:
    """Top `dim` left singular vectors and values; LU-normalised power iterations in
    float32 (as scikit-learn's ``randomized_svd``), final projection in float64."""
    import scipy.linalg  # only when vectors are computed

    rng = np.random.default_rng(seed)
    forward = matrix.astype(np.float32)
    backward = forward.T.tocsr()
    width = min(dim + oversample, min(matrix.shape))
    basis = forward @ rng.standard_normal((matrix.shape[1], width), dtype=np.float32)
    for _ in range(n_iter):
        basis = scipy.linalg.lu(basis, permute_l=True, check_finite=False)[0]
        basis = scipy.linalg.lu(backward @ basis, permute_l=True, check_finite=False)[0]
        basis = forward @ basis
    basis = _orthonormalize(_orthonormalize(basis.astype(np.float64)))  # CholeskyQR2
    small = np.asarray(backward @ basis, np.float64).T  # basis^T X: (width, n_columns)
    values, vectors = np.linalg.eigh(small @ small.T)
    order = np.argsort(values)[::-1][:dim]
    return basis @ vectors[:, order], np.sqrt(np.clip(values[order], 0, None))


def _orthonormalize(basis: np.ndarray) -> np.ndarray:
    """Columns of `basis` made orthonormal (Cholesky QR; far faster than Householder QR
    for tall, thin matrices; applied twice it is as accurate)."""
    import scipy.linalg  # only when vectors are computed

    gram = basis.T @ basis
    gram[np.diag_indices_from(gram)] += 1e-12 * np.trace(gram)
    upper = scipy.linalg.cholesky(gram, lower=False, check_finite=False)
    return scipy.linalg.solve_triangular(upper, basis.T, trans="T", check_finite=False).T


def _read_cache(directory: Path) -> tuple[list[str], np.ndarray]:
    words = (directory / "words.txt").read_text(encoding="utf-8").split("\n")[:-1]
    vectors = np.load(directory / "vectors.npy", mmap_mode="r", allow_pickle=False)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError("inconsistent cache")
    return words, vectors


def _write_cache(
    directory: Path, words: list[str], vectors: np.ndarray, description: dict[str, object]
) -> None:
    """Write into a temporary directory, then rename it into place (atomic), replacing a
    cache that `_read_cache` could not read."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    prefix, parent = f".{directory.name}.", directory.parent
    temporary = Path(tempfile.mkdtemp(prefix=prefix, suffix=TEMPORARY_SUFFIX, dir=parent))
    try:
        atomic_write(temporary / "words.txt", "".join(w + "\n" for w in words))
        atomic_write(temporary / "vectors.npy", lambda f: np.save(f, vectors, allow_pickle=False))
        atomic_write(temporary / "meta.json", json.dumps(description, indent=1) + "\n")
        temporary.chmod(0o755)  # mkdtemp makes it private; the cache is not secret
        shutil.rmtree(directory, ignore_errors=True)  # damaged, or there is none
        try:
            os.replace(temporary, directory)
        except OSError:
            if not directory.is_dir():  # not a concurrent writer having won the race
                raise
        fsync_directory(directory.parent)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
