"""`phototag annotate --engine ray`: the same records as the local engine, on local Ray."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from phototag.app.cli import main
from phototag.data import from_label_sets
from phototag.errors import InvalidInputError, PhototagError
from phototag.library.annotation import annotate_files
from phototag.models import create_annotator
from phototag.pretrained import load_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# Ray Data warns about its own deprecated settings when it copies its context
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


def _require_ray():
    """The ray module; skipped when it is not installed (failed on CI, where setup installs it)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        message = "ray[data] is not installed (pip install 'phototag[ray]')"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return ray


@pytest.fixture(scope="module")
def ray_local():
    """A light local Ray instance (2 CPUs, no dashboard), shut down after the module."""
    ray = _require_ray()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="warning",
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The example photos in a nested folder, plus a truncated JPEG and a text file."""
    folder = tmp_path_factory.mktemp("ray") / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, source in enumerate(sorted(EXAMPLES.glob("*.jpg"))):
        target = folder / ("sub" if i % 2 else "") / source.name
        target.write_bytes(source.read_bytes())
    (folder / "broken.jpg").write_bytes((EXAMPLES / "coffee.jpg").read_bytes()[:4000])
    (folder / "notes.jpg").write_text("not a photo")
    return folder


def _photo_paths(folder: Path) -> list[str]:
    from phototag.imaging import iter_image_files

    return [str(p) for p in iter_image_files([folder])]


def _assert_same(ray_results, local_results) -> None:
    assert [r.path for r in ray_results] == [r.path for r in local_results]
    for got, expected in zip(ray_results, local_results, strict=True):
        assert got.error == expected.error
        assert [label for label, _ in got.tags] == [label for label, _ in expected.tags]
        assert [s for _, s in got.tags] == pytest.approx([s for _, s in expected.tags], abs=1e-5)


@pytest.mark.integration
def test_same_records_as_local_engine_in_input_order(ray_local, photos, tmp_path):
    from phototag.engines.ray import ModelSource, annotate_files_ray

    paths = _photo_paths(photos)
    assert len(paths) == 6
    local = list(annotate_files(paths, load_model("default"), store_root=tmp_path / "store",
                                workers=0, progress=False))  # fmt: skip
    # batches of 2 on two actors: blocks finish out of order and must be put back in order
    remote = list(annotate_files_ray(paths, ModelSource.of("default"), batch_size=2, actors=2,
                                     progress=False))  # fmt: skip
    _assert_same(remote, local)
    failed = {Path(r.path).name for r in remote if r.error is not None}
    assert failed == {"broken.jpg", "notes.jpg"}
    assert all(r.tags for r in remote if r.error is None)


@pytest.mark.integration
def test_model_directory_without_features(ray_local, photos, tmp_path):
    """A model that reads no pixels (the label prior) decodes nothing, as locally."""
    from phototag.engines.ray import ModelSource, annotate_files_ray
    from phototag.evaluation.decoding import TopK

    train = from_label_sets("t", list("abc"), [["sky", "sea"], ["sky"], ["cat"]])
    directory = create_annotator("prior").fit(train).save(tmp_path / "prior")
    paths = _photo_paths(photos)
    local = list(annotate_files(paths, load_model(directory), TopK(2), progress=False))
    remote = list(annotate_files_ray(paths, ModelSource.of(directory), TopK(2), progress=False))
    _assert_same(remote, local)
    assert remote[0].tags[0][0] == "sky"


@pytest.mark.integration
def test_worker_failure_names_the_cause(ray_local):
    """A model the workers cannot load (not on shared storage) ends in one clear error."""
    from phototag.engines.ray import ModelSource, annotate_files_ray

    missing = ModelSource("/nowhere/model")
    with pytest.raises(PhototagError, match=r"worker failed: .*'/nowhere/model'"):
        list(annotate_files_ray([str(EXAMPLES / "chelsea.jpg")], missing, encoders=()))


@pytest.mark.integration
def test_cli_engine_ray_matches_local(ray_local, photos, tmp_path, capsys):
    words = tmp_path / "words.txt"
    words.write_text("cat\ncoffee\nrocket\nperson\nsky\n")
    outputs = {}
    for engine in ("local", "ray"):
        code = main(["annotate", str(photos), "--engine", engine, "--format", "json",
                     "--vocabulary", str(words), "--top-k", "3", "--workers", "0",
                     "--store", str(tmp_path / "store"),
                     "--journal", str(tmp_path / f"{engine}.journal")])  # fmt: skip
        out, err = capsys.readouterr()
        skipped = sorted(line for line in err.splitlines() if line.startswith("skipped:"))
        outputs[engine] = (code, [json.loads(line) for line in out.splitlines()], skipped)
    code, records, skipped = outputs["local"]
    ray_code, ray_records, ray_skipped = outputs["ray"]
    assert code == ray_code == 1  # two unreadable files
    assert skipped == ray_skipped and len(skipped) == 2
    assert [r["path"] for r in ray_records] == [r["path"] for r in records]
    assert len(records) == 4
    for got, expected in zip(ray_records, records, strict=True):
        assert [t["label"] for t in got["tags"]] == [t["label"] for t in expected["tags"]]
        assert [t["score"] for t in got["tags"]] == pytest.approx(
            [t["score"] for t in expected["tags"]], abs=1e-5
        )
    cat = next(r for r in ray_records if r["path"].endswith("chelsea.jpg"))
    assert cat["tags"][0]["label"] == "cat"


@pytest.mark.integration
def test_the_driver_runs_without_pytorch(ray_local, monkeypatch):
    """`pip install 'phototag[ray]'` has no PyTorch: the driver reads the encoders' input
    recipes from the runtime the workers use (ONNX Runtime), not from PyTorch models."""
    from phototag.engines.ray import ModelSource, annotate_files_ray

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails in this process
    records = list(annotate_files_ray([str(EXAMPLES / "chelsea.jpg")], ModelSource.of("default"),
                                      progress=False))  # fmt: skip
    assert records[0].error is None and records[0].tags


def test_missing_ray_names_the_extra(monkeypatch):
    from phototag.engines.ray import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InvalidInputError, match=r"pip install 'phototag\[ray\]'"):
        import_ray()


def test_no_photos_starts_no_ray():
    ray = _require_ray()
    from phototag.engines.ray import ModelSource, annotate_files_ray

    was_running = ray.is_initialized()
    assert list(annotate_files_ray([], ModelSource(), address="no-such-cluster:1")) == []
    assert ray.is_initialized() == was_running


def test_ray_client_address_is_refused():
    _require_ray()
    from phototag.engines.ray import ModelSource, annotate_files_ray

    with pytest.raises(InvalidInputError, match="Ray Client"):
        list(annotate_files_ray(["a.jpg"], ModelSource(), encoders=(), address="ray://h:10001"))


@pytest.mark.integration
def test_models_reading_descriptors_are_refused_before_ray_starts():
    ray = _require_ray()
    from phototag.engines.ray import ModelSource, annotate_files_ray

    was_running = ray.is_initialized()
    features = ("efficientnet_lite2", "hsv_hist")
    with pytest.raises(InvalidInputError, match="descriptors hsv_hist.*local engine"):
        list(annotate_files_ray(["a.jpg"], ModelSource(), encoders=features, address="x:1"))
    assert ray.is_initialized() == was_running


@pytest.mark.integration
def test_a_model_reading_stage_maps_gives_the_same_records(ray_local, photos, tmp_path):
    """CNN-R declares trunk maps: the actors compute them from the decoded pixels."""
    from phototag.engines.ray import ModelSource, annotate_files_ray
    from phototag.library.inputs import with_inputs

    names = ["astronaut", "chelsea", "coffee", "rocket"]
    train = from_label_sets("t", names, [["person"], ["cat"], ["coffee"], ["rocket"]],
                            image_paths=[str(EXAMPLES / f"{n}.jpg") for n in names])  # fmt: skip
    model = create_annotator("cnn_r", encoder="efficientnet_lite0", epochs=1, batch_size=4)
    store = tmp_path / "store"
    train, _ = with_inputs(train, model.required_inputs(training=True), store_root=store,
                           runtime="torch", workers=0)  # fmt: skip
    directory = model.fit(train).save(tmp_path / "cnn_r")
    paths = _photo_paths(photos)
    local = list(annotate_files(paths, load_model(directory), store_root=store, workers=0,
                                progress=False))  # fmt: skip
    remote = list(annotate_files_ray(paths, ModelSource.of(directory), progress=False))
    _assert_same(remote, local)
    assert sum(r.error is None for r in remote) == 4
