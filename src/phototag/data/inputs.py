"""What a model reads besides labels, declared by the model and filled by the runners.

A model's `Annotator.required_inputs` returns a `ModelInputs`; `phototag annotate`,
`serve`, `evaluate`, `train` and the Ray engine fill each part into the `AnnotationSet`
they pass it (`phototag.library.inputs.with_inputs`): pooled features into
``features[name]``, spatial maps into ``maps[spec.key]``, the photo's own keywords into
``user_tags`` and album metadata into ``metadata[key]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

from phototag.errors import InvalidInputError

#: The views of a photo whose maps can be stored: the model input, its mirror image.
VIEWS: Final = ("plain", "flip")
#: Per-item metadata the runners can fill from a photo file: ``group`` is its album,
#: the folder it is in.
PHOTO_METADATA: Final = ("group",)

_T = TypeVar("_T")


@dataclass(frozen=True)
class MapSpec:
    """The spatial feature maps ``[C, H, W]`` of one encoder stage, as one view shows them.

    `encoder` is a feature name as `phototag features` takes it (``efficientnet_lite2``,
    or ``NAME?weights=FILE``); `stage` one of its ``stage_names``; `view` one of `VIEWS`.
    """

    encoder: str
    stage: str
    view: str = "plain"

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise InvalidInputError("view", f"one of {', '.join(VIEWS)}", repr(self.view))

    @property
    def key(self) -> str:
        """The key of these maps in `AnnotationSet.maps`: ``ENCODER@STAGE[#flip]``."""
        suffix = "" if self.view == "plain" else f"#{self.view}"
        return f"{self.encoder}@{self.stage}{suffix}"


@dataclass(frozen=True)
class ModelInputs:
    """The inputs a model reads from an `AnnotationSet`.

    Attributes:
        features: pooled feature names (keys of ``features``), e.g. ``("efficientnet_lite2",)``.
        maps: spatial maps by encoder stage and view (keys ``MapSpec.key`` of ``maps``).
        user_tags: the items' own tags (``user_tags``; for a photo: its keywords).
        metadata: per-item metadata keys (``metadata``; for a photo: `PHOTO_METADATA`).
    """

    features: tuple[str, ...] = ()
    maps: tuple[MapSpec, ...] = ()
    user_tags: bool = False
    metadata: tuple[str, ...] = ()

    def __or__(self, other: ModelInputs) -> ModelInputs:
        """Everything either of two models reads (an ensemble's inputs), in order."""
        return ModelInputs(
            _union(self.features, other.features),
            _union(self.maps, other.maps),
            self.user_tags or other.user_tags,
            _union(self.metadata, other.metadata),
        )

    @property
    def sources(self) -> tuple[str, ...]:
        """The feature sources (encoders, descriptors) filling these inputs reads photos
        with, by feature name."""
        return _union(self.features, (spec.encoder for spec in self.maps))


def _union(first: Iterable[_T], second: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys([*first, *second]))
