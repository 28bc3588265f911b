"""The encoder graph shipped as package data, and what the core install depends on."""

import fnmatch
import os
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from phototag.features.encoders import create_encoder
from phototag.features.encoders.shipped import (
    file_sha256,
    graphs_directory,
    shipped_encoder,
    shipped_graph,
)
from phototag.fileio import DamagedFileError

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted((ROOT / "examples").glob("*.jpg"))
ON_CI = os.environ.get("CI", "").strip().lower() == "true"


def test_shipped_graph_is_described_and_verified():
    graph = shipped_graph("efficientnet_lite2")
    assert graph is not None and graph.path.name == "efficientnet_lite2.onnx"
    assert file_sha256(graph.path) == graph.sha256
    assert graph.verify() == graph.path
    encoder = create_encoder("efficientnet_lite2", runtime="onnx")
    assert encoder.runtime == "onnx" and encoder.num_features == 1280
    # the feature id the stores and the shipped default model were made with
    assert encoder.feature_id == "efficientnet_lite2@a4028718c26e-f3485b5b"
    assert graph.weights_sha256.startswith("a4028718c26e")
    assert shipped_graph("efficientnet_lite0") is None


def test_damaged_graph_is_refused(tmp_path):
    for name in ("efficientnet_lite2.json", "efficientnet_lite2.onnx"):
        shutil.copyfile(graphs_directory() / name, tmp_path / name)
    preprocess = shipped_graph("efficientnet_lite2", tmp_path).preprocess
    data = bytearray((tmp_path / "efficientnet_lite2.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "efficientnet_lite2.onnx").write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match="SHA-256"):
        shipped_encoder("efficientnet_lite2", preprocess, tmp_path)
    (tmp_path / "efficientnet_lite2.onnx").unlink()
    with pytest.raises(DamagedFileError, match="missing"):
        shipped_encoder("efficientnet_lite2", preprocess, tmp_path)


def test_other_input_recipes_do_not_use_the_shipped_graph():
    graph = shipped_graph("efficientnet_lite2")
    other = type(graph.preprocess)(**{**graph.preprocess.to_dict(), "resize": "squash"})
    assert shipped_encoder("efficientnet_lite2", other) is None


def test_shipped_graph_gives_the_torch_encoders_features():
    """The shipped graph computes what the PyTorch network computes, on real photos."""
    try:
        reference = create_encoder("efficientnet_lite2", runtime="torch")
    except ImportError as error:  # the core install: no PyTorch or no weights package
        if ON_CI:
            raise
        pytest.skip(f"needs phototag[train] to compare with PyTorch ({error})")
    shipped = create_encoder("efficientnet_lite2", runtime="onnx")
    assert shipped.feature_id == reference.feature_id
    images = [np.asarray(Image.open(path).convert("RGB")) for path in PHOTOS]
    assert len(images) >= 3
    got, expected = shipped.encode(images), reference.encode(images)
    assert got.dtype == np.float32 and got.shape == (len(images), 1280)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    cosine = (
        (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    )
    assert cosine.min() > 0.99999
    # float batches run the network cut out of the shipped graph (with onnx), no torch model
    x = reference.transform(images[:2])
    pooled = shipped.pooled(x)
    assert isinstance(pooled, np.ndarray) and shipped._model is None
    np.testing.assert_allclose(pooled, got[:2], rtol=1e-4, atol=1e-4)
    # inputs of another size run on the torch network, built on demand
    assert shipped.pooled(reference.transform(images[:1]).narrow(2, 0, 200)).shape == (1, 1280)
    assert shipped._model is not None


def test_core_install_leaves_the_extras_out():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for package in ("torch", "lightning", "opencv", "scikit-image", "pywavelets", "faiss",
                    "liac-arff", "onnx>", "scikit-learn", "pytorch-model", "glove"):  # fmt: skip
        assert package not in core, package
    extras = project["optional-dependencies"]
    assert "torch==2.13.0" in extras["train"] and "phototag[train]" in extras["research"]
    assert any(item.startswith("phototag[research") for item in extras["dev"])
    assert not any("torchvision" in item for items in extras.values() for item in items)


def test_shipped_graph_is_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["phototag"]
    package = ROOT / "src" / "phototag"
    for path in graphs_directory().iterdir():
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
