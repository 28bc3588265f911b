"""Shared test fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test using the real datasets (`shared_data`, also through `scene`) is marked
    ``integration``; ``slow`` tests run only when ``-m`` names them (``-m slow``)."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
    if "slow" not in (config.getoption("markexpr") or ""):
        slow = [item for item in items if item.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point phototag's cache (features, journals, ONNX exports) at a folder of this test
    session, so tests never read or write the user's own cache; subprocesses inherit it."""
    saved = os.environ.get("PHOTOTAG_CACHE")
    os.environ["PHOTOTAG_CACHE"] = str(tmp_path_factory.mktemp("phototag-cache"))
    yield Path(os.environ["PHOTOTAG_CACHE"])
    if saved is None:
        os.environ.pop("PHOTOTAG_CACHE", None)
    else:
        os.environ["PHOTOTAG_CACHE"] = saved


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets in ``<repo>/../shared/data``; skipped when absent (failed on CI)."""
    path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        message = f"../shared/data not found: {path} (real datasets for integration tests)"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def scene(shared_data: Path):
    """Mulan scene (real features, 6 labels): its train and test splits, per test module."""
    import warnings

    from phototag.data.readers import read_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = read_dataset(f"mulan:{shared_data / 'mulan'}?name=scene")
    return data.split("train"), data.split("test")


@pytest.fixture
def prior_model(tmp_path: Path) -> str:
    """A saved `prior` model over the words sky, sea and cat (no image features needed)."""
    from phototag.data import from_label_sets
    from phototag.models import create_annotator

    train = from_label_sets("t", list("abcd"), [["sky", "sea"], ["sky"], ["sky", "cat"], ["sea"]])
    return str(create_annotator("prior").fit(train).save(tmp_path / "model"))


@pytest.fixture(scope="session")
def lite0_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A JEC model over EfficientNet-Lite0 features (random training vectors)."""
    from phototag.data import from_label_sets
    from phototag.models import create_annotator

    rng = np.random.default_rng(1)
    words = ["sky", "sea", "cat", "cup", "man", "tree"]
    labels = [list(rng.choice(words, size=2, replace=False)) for _ in range(30)]
    train = from_label_sets("t", [f"t{i}" for i in range(30)], labels)
    train.features["efficientnet_lite0"] = rng.random((30, 1280), dtype=np.float32)
    model = create_annotator("jec", features="efficientnet_lite0", k=3).fit(train)
    return str(model.save(tmp_path_factory.mktemp("model") / "jec"))


@pytest.fixture
def fixture_copy(tmp_path: Path):
    """Copy ``tests/fixtures/<name>`` into a temporary folder (to modify it) and return it."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(FIXTURES / name, target)
        return target

    return copy


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mounts a real tmpfs of the given size (``"1m"``) under `tmp_path`; unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill it up needs root")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)
