"""Photos -> stored features: the pipeline, failures, reuse and resuming after a kill."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from phototag.data import from_label_sets
from phototag.errors import InvalidInputError
from phototag.features.attach import with_features
from phototag.features.descriptors import create_descriptor
from phototag.features.encoders import create_encoder
from phototag.features.encoders.preprocess import normalize
from phototag.features.extract import (
    DESCRIPTOR_MAX_SIDE,
    create_source,
    extract_features,
    load_model_input,
)
from phototag.features.store import FeatureStore
from phototag.imaging import load_rgb


@pytest.fixture(scope="module")
def encoder():
    return create_encoder("efficientnet_lite0")


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        pixels = rng.integers(0, 255, size=(90 + 10 * i, 120, 3), dtype=np.uint8)
        path = tmp_path / f"photo{i}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(paths[0].read_bytes()[:200])
    return paths, broken


def test_model_input_matches_the_encoder_transform(photos, encoder):
    path = photos[0][3]
    pixels = load_model_input(path, encoder.preprocess)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    direct = encoder.pooled(normalize(pixels[None], encoder.preprocess)).numpy()
    with Image.open(path) as image:
        reference = encoder.encode([image.convert("RGB")])
    cosine = (direct @ reference.T) / (np.linalg.norm(direct) * np.linalg.norm(reference))
    assert cosine.item() > 0.99999  # both crop and resize once


@pytest.mark.parametrize("workers", [0, 1])
def test_extract_stores_features_skips_failures_and_reuses(photos, encoder, tmp_path, workers):
    paths, broken = photos
    files = [*paths[:4], broken, paths[4], paths[0]]  # a duplicate, a broken file
    with FeatureStore(tmp_path / "store", encoder.feature_id, encoder.num_features) as store:
        digests, report = extract_features(
            files, encoder, store, batch_size=2, workers=workers, progress=False
        )
        assert report.n_computed == 5 and len(report.failures) == 1
        assert "broken.jpg" in report.failures[0][1]
        assert digests[4] is None and digests[0] == digests[6]
        vectors, found = store.get([d for d in digests if d])
        assert found.all()
        pixels = load_model_input(paths[1], encoder.preprocess)
        expected = encoder.pooled(normalize(pixels[None], encoder.preprocess)).numpy()
        np.testing.assert_allclose(vectors[1], expected[0], rtol=1e-4, atol=1e-4)
        _, again = extract_features(files, encoder, store, workers=workers, progress=False)
        assert again.n_computed == 0 and again.n_reused == 6


def test_with_features_drops_broken_items(photos, encoder, tmp_path):
    paths, broken = photos
    files = [*paths[:3], broken]
    data = from_label_sets(
        "toy",
        [p.name for p in files],
        [["a"], ["b"], ["a"], ["b"]],
        image_paths=[str(p) for p in files],
        splits={"train": [0, 1, 2, 3]},
    )
    result, report = with_features(
        data, encoder, store_root=tmp_path / "s", workers=0, progress=False
    )
    assert result.n_items == 3 and "broken.jpg" not in result.item_ids
    assert result.features["efficientnet_lite0"].shape == (3, 1280)
    assert any("broken.jpg" in note for note in result.notes)
    assert "efficientnet_lite0" not in data.features  # the input is not modified


def test_descriptors_are_stored_and_reused_like_encoder_features(photos, tmp_path):
    paths, broken = photos
    big = tmp_path / "big.jpg"
    noise = np.random.default_rng(1).integers(0, 255, size=(900, 1200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big, quality=90)
    files = [paths[0], big, broken, paths[1]]
    data = from_label_sets(
        "toy", [p.name for p in files], [["a"], ["b"], ["a"], ["b"]],
        image_paths=[str(p) for p in files], splits={"train": [0, 1, 2, 3]},
    )  # fmt: skip
    store = tmp_path / "s"
    result, report = with_features(data, "lbp", store_root=store, workers=1, progress=False)
    assert report.n_computed == 3 and "broken.jpg" in report.failures[0][1]
    lbp = create_descriptor("lbp")
    expected = [lbp(load_rgb(p, max_side=DESCRIPTOR_MAX_SIDE)) for p in (paths[0], big, paths[1])]
    np.testing.assert_allclose(result.features["lbp"], np.stack(expected), atol=1e-6)
    assert load_rgb(big, max_side=DESCRIPTOR_MAX_SIDE).shape == (384, 512, 3)  # not full size
    again, report = with_features(data, lbp, store_root=store, workers=0, progress=False)
    assert report.n_computed == 0 and report.n_reused == 3
    np.testing.assert_array_equal(again.features["lbp"], result.features["lbp"])


def test_descriptors_that_learn_are_not_features_by_name():
    assert create_source("gist").name == "gist"
    with pytest.raises(InvalidInputError, match="codebook"):
        create_source("bovw_sift_dense")
    with pytest.raises(InvalidInputError, match="efficientnet_lite2"):
        create_source("no_such_encoder")


def test_a_model_on_an_encoder_and_a_descriptor_annotates_files(photos, encoder, tmp_path):
    from phototag.library.annotation import annotate_files
    from phototag.models import create_annotator

    paths, broken = photos
    data = from_label_sets(
        "toy", [p.name for p in paths], [["a"], ["b"], ["a"], ["b"], ["a"], ["b"], ["a"]],
        image_paths=[str(p) for p in paths], splits={"train": list(range(7))},
    )  # fmt: skip
    options = {"store_root": tmp_path / "s", "workers": 0, "progress": False}
    for source in (encoder, "hsv_hist"):
        data, _ = with_features(data, source, **options)
    model = create_annotator(
        "tagprop", features=["efficientnet_lite0", "hsv_hist"], metric=["cosine", "chi2"], k=3
    ).fit(data)
    assert model.required_inputs().features == ("efficientnet_lite0", "hsv_hist")
    results = list(annotate_files([paths[0], broken], model, runtime="torch", **options))
    assert [label for label, _ in results[0].tags][:1] == ["a"] and results[0].error is None
    assert "broken.jpg" in results[1].error


@pytest.mark.integration
def test_feature_names_carry_encoder_options(photos, tmp_path):
    from phototag.features.extract import parse_source_spec
    from phototag.library.annotation import annotate_files
    from phototag.models import create_annotator

    assert parse_source_spec("resnet101?weights=~/r101.pth") == (
        "resnet101", {"weights": str(Path("~/r101.pth").expanduser())}
    )  # fmt: skip
    spec = "efficientnet_lite0?input_size=128&resize=squash"
    name, options = parse_source_spec(spec)
    assert name == "efficientnet_lite0" and options == {"input_size": 128, "resize": "squash"}
    paths, _ = photos
    data = from_label_sets(
        "toy", [p.name for p in paths], [["a"], ["b"]] * 3 + [["a"]],
        image_paths=[str(p) for p in paths], splits={"train": list(range(7))},
    )  # fmt: skip
    options = {"store_root": tmp_path / "s", "workers": 0, "progress": False}
    data, report = with_features(data, spec, runtime="torch", **options)
    assert report.n_computed == 7 and data.features[spec].shape == (7, 1280)
    small = create_encoder("efficientnet_lite0", input_size=128, resize="squash")
    expected = small.forward_pixels(load_model_input(paths[2], small.preprocess)[None])["pooled"]
    np.testing.assert_allclose(data.features[spec][2], expected[0].numpy(), atol=1e-4)
    data, report = with_features(data, "efficientnet_lite0", runtime="torch", **options)
    assert report.n_computed == 7  # another feature id: the plain encoder is stored apart
    model = create_annotator("tagprop", features=spec, k=3).fit(data)
    (result,) = annotate_files([paths[0]], model, runtime="torch", **options)
    assert result.error is None and result.tags[0][0] == "a"
    with pytest.raises(InvalidInputError, match="input_size"):
        create_source("efficientnet_lite0?input_sise=128")


@pytest.mark.integration
def test_a_killed_extraction_resumes_without_recomputing(photos, tmp_path):
    paths, _ = photos
    script = textwrap.dedent(
        f"""
        import os, signal
        from phototag.features.encoders import create_encoder
        from phototag.features.extract import extract_features
        from phototag.features.store import FeatureStore
        encoder = create_encoder("efficientnet_lite0")
        store = FeatureStore({str(tmp_path / "s")!r}, encoder.feature_id, 1280)
        add = store.add
        def add_then_die(digests, vectors):
            add(digests, vectors)
            if len(store) >= 4:
                os.kill(os.getpid(), signal.SIGKILL)
        store.add = add_then_die
        extract_features({[str(p) for p in paths]!r}, encoder, store, batch_size=2,
                         workers=1, progress=False)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, timeout=300)
    assert result.returncode == -9
    encoder = create_encoder("efficientnet_lite0")
    with FeatureStore(tmp_path / "s", encoder.feature_id, 1280) as store:
        assert len(store) == 4
        _, report = extract_features(paths, encoder, store, workers=0, progress=False)
        assert report.n_reused == 4 and report.n_computed == 3 and len(store) == 7


def test_features_command_on_a_folder(photos, tmp_path, capsys):
    from phototag.app.cli import main

    paths, broken = photos
    code = main(
        ["features", "--dataset", f"folder:{paths[0].parent}", "--encoder",
         "efficientnet_lite0", "--store", str(tmp_path / "s"), "--workers", "0",
         "--runtime", "torch"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1  # the whole batch was done, but a file was skipped (docs/batches.md)
    assert "7 computed" in err and "1 failed" in err and "broken.jpg" in err
    code = main(["features", str(paths[0].parent), "--encoder", "wavelet",
                 "--store", str(tmp_path / "s"), "--workers", "1"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "wavelet: 8 files: 7 computed" in err and "broken.jpg" in err


def test_decoding_runs_at_most_a_window_ahead_of_the_consumer():
    """Decoded photos waiting for the forward pass are bounded (flat memory on any size)."""
    import time

    from phototag.features.extract import _Pool, _Window

    handed_out, taken, ahead = [0], [0], []
    window = _Window(8)

    def jobs():
        for i in range(200):
            handed_out[0] += 1
            ahead.append(handed_out[0] - taken[0])
            yield i

    pool = _Pool(1)
    try:
        for result in pool.imap(abs, window.feed(jobs()), chunksize=1):
            window.done()
            taken[0] += 1
            time.sleep(0.001)  # a slow consumer: decoding would otherwise race ahead
            assert result == taken[0] - 1
    finally:
        window.close()
        pool.close()
    assert taken[0] == 200
    assert max(ahead) <= 9  # the window, plus the job being handed out


def test_large_photos_get_a_decoding_process_per_core(tmp_path, monkeypatch):
    from phototag.features import extract

    monkeypatch.setattr(extract.os, "cpu_count", lambda: 4)
    small, large = tmp_path / "small.jpg", tmp_path / "large.jpg"
    small.write_bytes(b"x" * 1000)
    large.write_bytes(b"x" * (extract.LARGE_FILE_BYTES + 1))
    assert extract.default_workers() == 3
    assert extract.default_workers([str(small)] * 10) == 3
    assert extract.default_workers([str(large)] * 10) == 4
    assert extract.default_workers([str(tmp_path / "missing.jpg")]) == 3
    monkeypatch.setattr(extract.os, "cpu_count", lambda: 2)
    assert extract.default_workers([str(small)] * 10) == 0  # decoded between forward passes
    assert extract.default_workers([str(large)] * 10) == 2
