"""Spatial feature maps in the feature store: encoder stage x file content x view.

Multi-scale and attention models read an encoder's per-stage maps ``[C, H, W]``, and
CNN-R fine-tunes on top of one stage; computing them costs a forward pass per photo and
epoch. `phototag features --maps STAGES` computes them once, next to the pooled vectors
and in the same pass (one decode per photo), as float16 rows that training reads
through a memory map::

    ROOT/<encoder id>/maps/<stage>.<view>/   meta.json, maps.bin, index.sqlite

A *view* is what the encoder saw: ``plain`` (the model input) or ``flip`` (its mirror
image, the flip augmentation CNN-R trains with). Each (stage, view) is a store of its
own with the layout, locking and safety rules of `phototag.features.store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from phototag.data.inputs import VIEWS, MapSpec
from phototag.errors import InvalidInputError
from phototag.features.encoders import ImageEncoder
from phototag.features.store import RowStore, encoder_directory, safe_name


class FeatureMapStore(RowStore):
    """Float16 feature maps ``[C, H, W]`` of one encoder stage and view, by content digest.

    >>> store = FeatureMapStore("features", encoder.feature_id, "stage6", "plain",
    ...                         (208, 9, 9))                        # doctest: +SKIP
    >>> store.add(digests, maps)                                     # doctest: +SKIP
    >>> batch = store.mapped(digests)[0:64]  # reads 64 maps only   # doctest: +SKIP
    """

    data_name = "maps.bin"
    rows_name = "maps"

    def __init__(
        self, root: str | Path, encoder_id: str, stage: str, view: str, shape: Sequence[int]
    ) -> None:
        if view not in VIEWS:
            raise InvalidInputError("view", f"one of {', '.join(VIEWS)}", repr(view))
        shape = tuple(shape)
        if len(shape) != 3 or not all(isinstance(n, int) and n > 0 for n in shape):
            raise InvalidInputError("shape", "three positive sizes (C, H, W)", repr(shape))
        self.encoder_id = encoder_id
        self.stage = stage
        self.view = view
        directory = encoder_directory(root, encoder_id) / "maps" / f"{safe_name(stage)}.{view}"
        meta = {"encoder": encoder_id, "stage": stage, "view": view, "shape": list(shape),
                "dtype": "float16"}  # fmt: skip
        super().__init__(directory, meta, shape, "float16")


def view_pixels(pixels: np.ndarray, view: str) -> np.ndarray:
    """Model inputs uint8 ``[N, S, S, 3]`` as `view` shows them (``flip``: mirrored)."""
    return pixels[:, :, ::-1] if view == "flip" else pixels


def stage_maps(
    encoder: ImageEncoder, pixels: np.ndarray, specs: Sequence[MapSpec], *, pooled: bool = False
) -> dict[str, np.ndarray]:
    """The float16 maps of `specs` (stages and views of `encoder`) for uint8 model inputs
    ``[N, S, S, 3]``, by ``MapSpec.key``: one forward pass per view. With `pooled`, the
    pooled float32 vectors of the plain view too, under the key ``POOLED``."""
    from phototag.features.encoders.base import POOLED, as_array

    out: dict[str, np.ndarray] = {}
    for view in dict.fromkeys([*(["plain"] if pooled else []), *(s.view for s in specs)]):
        wanted = [spec for spec in specs if spec.view == view]
        names = [*dict.fromkeys(spec.stage for spec in wanted)]
        if view == "plain" and pooled:
            names.append(POOLED)
        computed = encoder.forward_pixels(view_pixels(pixels, view), names)
        if view == "plain" and pooled:
            out[POOLED] = as_array(computed[POOLED]).astype(np.float32, copy=False)
        out |= {spec.key: as_array(computed[spec.stage]).astype(np.float16) for spec in wanted}
    return out


def parse_stages(spec: str | Sequence[str], encoder: ImageEncoder) -> tuple[str, ...]:
    """The stage names a ``--maps`` value asks for, in the encoder's order.

    Comma-separated items, each a stage name (``stage3``), its position in the
    encoder's stage list (``3``; EfficientNet-Lite: ``0`` stem, ``1``..``7`` stages,
    ``8`` head), ``scales`` (the five multi-scale maps at strides 2..32, the M3 paper's
    set) or ``all``.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = encoder.stage_names
    chosen: set[str] = set()
    for item in (i.strip() for i in items):
        if item == "all":
            chosen.update(names)
        elif item == "scales":
            chosen.update(encoder.scales)
        elif item.isdigit() and int(item) < len(names):
            chosen.add(names[int(item)])
        elif item in names:
            chosen.add(item)
        else:
            raise InvalidInputError(
                "--maps",
                f"stage names or positions of {encoder.name} (0..{len(names) - 1}: "
                f"{', '.join(names)}), 'scales' or 'all', comma-separated",
                repr(item),
            )
    return tuple(name for name in names if name in chosen)


def parse_views(spec: str | Sequence[str]) -> tuple[str, ...]:
    """The views a ``--views`` value asks for (comma-separated, among `VIEWS`)."""
    items = [i.strip() for i in (spec.split(",") if isinstance(spec, str) else spec)]
    for item in items:
        if item not in VIEWS:
            raise InvalidInputError("--views", f"views among {', '.join(VIEWS)}", repr(item))
    return tuple(view for view in VIEWS if view in items)


def map_shapes(encoder: ImageEncoder, stages: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """``[C, H, W]`` of each stage's map at the encoder's input size (one blank forward)."""
    size = encoder.preprocess.input_size
    out = encoder.forward_pixels(np.zeros((1, size, size, 3), np.uint8), list(stages))
    return {stage: tuple(int(n) for n in out[stage].shape[1:]) for stage in stages}  # type: ignore[misc]


def open_map_stores(
    root: str | Path,
    encoder: ImageEncoder,
    stages: Sequence[str],
    views: Sequence[str] = ("plain",),
) -> list[FeatureMapStore]:
    """The map stores of `encoder`'s `stages` x `views` under the store root `root`."""
    shapes = map_shapes(encoder, stages) if stages else {}
    stores: list[FeatureMapStore] = []
    try:
        for stage in stages:
            for view in views:
                stores.append(FeatureMapStore(root, encoder.feature_id, stage, view, shapes[stage]))
    except BaseException:
        for store in stores:
            store.close()
        raise
    return stores
