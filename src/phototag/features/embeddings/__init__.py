"""Tag / word embeddings behind one interface, and the `create_embedding` registry.

>>> emb = create_embedding("id", vocabulary=["sky", "polar bear"])
>>> result = emb.embed(["Polar-Bear", "sky", "yeti"])
>>> result.vectors.tolist(), result.oov
([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]], ['yeti'])

Specs: ``id`` (one-hot over a vocabulary), ``glove50`` (GloVe 6B 50d), ``minilm``
(all-MiniLM-L6-v2 sentence encoder, optional extra), ``wordnet`` (vectors computed from
the WordNet 3.0 graph) and ``file:PATH`` (word2vec binary/text or GloVe text file).
See ``docs/embeddings.md`` for dimensions, sources, installation and the shared
case / multi-word / OOV rules.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from phototag.cache import cache_dir
from phototag.errors import InvalidInputError
from phototag.features.embeddings._base import (
    EmbeddingReport,
    EmbeddingResult,
    OutOfVocabularyError,
    TableEmbedding,
    WordEmbedding,
    phrase_keys,
    tag_tokens,
)
from phototag.features.embeddings._errors import MissingDependencyError
from phototag.features.embeddings.glove import GloveEmbedding
from phototag.features.embeddings.minilm import MiniLMEmbedding
from phototag.features.embeddings.onehot import OneHotEmbedding
from phototag.features.embeddings.wordfile import FileEmbedding, WordVectorFile
from phototag.features.embeddings.wordnet import WordNetEmbedding
from phototag.features.embeddings.wordnet_db import Synset, WordNetDatabase

__all__ = [
    "EmbeddingReport",
    "EmbeddingResult",
    "FileEmbedding",
    "GloveEmbedding",
    "MiniLMEmbedding",
    "MissingDependencyError",
    "OneHotEmbedding",
    "OutOfVocabularyError",
    "Synset",
    "TableEmbedding",
    "WordEmbedding",
    "WordNetDatabase",
    "WordNetEmbedding",
    "WordVectorFile",
    "available_embeddings",
    "cache_dir",
    "create_embedding",
    "phrase_keys",
    "register_embedding",
    "tag_tokens",
]

_FILE_PREFIX = "file:"
_EMBEDDINGS: dict[str, Callable[..., WordEmbedding]] = {
    "id": OneHotEmbedding,
    "glove50": GloveEmbedding,
    "minilm": MiniLMEmbedding,
    "wordnet": WordNetEmbedding,
}


def register_embedding(name: str, factory: Callable[..., WordEmbedding]) -> None:
    """Make `factory(**options)` available as ``create_embedding(name, **options)``."""
    if not name or ":" in name or name in _EMBEDDINGS:
        raise InvalidInputError(
            "embedding name", "a new name without ':'", repr(name),
            f"Registered: {', '.join(available_embeddings())}.",
        )  # fmt: skip
    _EMBEDDINGS[name] = factory


def available_embeddings() -> list[str]:
    """Registered specs (``file:PATH`` stands for any word-vector file)."""
    return sorted([*_EMBEDDINGS, _FILE_PREFIX + "PATH"])


def create_embedding(
    spec: str, *, vocabulary: Iterable[str] | None = None, **options: Any
) -> WordEmbedding:
    """A new embedding from its spec, e.g. ``"glove50"`` or ``"file:~/w2v.bin"``.

    `options` are the embedding's constructor keywords (``dim=`` for ``wordnet``,
    ``device=`` for ``minilm``, ``preload=`` for files). With `vocabulary`, the
    embedding is also fitted on it (required for ``id``).
    """
    if not isinstance(spec, str):
        raise InvalidInputError("embedding", "a spec string", repr(spec))
    if spec.startswith(_FILE_PREFIX):
        path = spec[len(_FILE_PREFIX) :]
        if not path:
            raise InvalidInputError(
                "embedding", "file:PATH with a path", repr(spec), "Example: file:vectors.bin"
            )
        factory: Callable[..., WordEmbedding] = FileEmbedding
        arguments: tuple[Any, ...] = (path,)
    elif spec in _EMBEDDINGS:
        factory, arguments = _EMBEDDINGS[spec], ()
    else:
        raise InvalidInputError(
            "embedding",
            f"one of {', '.join(available_embeddings())}",
            repr(spec),
            "Use file:/path/to/vectors for a word2vec or GloVe file.",
        )
    _check_options(spec, factory, options)
    embedding = factory(*arguments, **options)
    if vocabulary is not None:
        embedding.fit(vocabulary)
    return embedding


def _check_options(spec: str, factory: Callable[..., WordEmbedding], options: dict) -> None:
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [
        name
        for name, p in parameters.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and name not in ("path", "vocabulary")
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidInputError(
            f"{spec} options", f"any of {accepted or 'no options'}", ", ".join(unknown)
        )
