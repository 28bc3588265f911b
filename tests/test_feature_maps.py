"""Spatial feature maps in the feature store: `phototag features --maps`, exact float16
round trips, reuse, stages and views kept apart, memory-mapped reads, and the store's
safety rules (killed writer, full disk, damaged files)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from full_disk import add_while_the_disk_fills
from PIL import Image

from phototag.app.cli import main
from phototag.errors import InvalidInputError
from phototag.features.encoders import create_encoder
from phototag.features.extract import load_model_input
from phototag.features.maps import FeatureMapStore, map_shapes, parse_stages, parse_views
from phototag.features.store import encoder_directory
from phototag.fileio import DamagedFileError
from phototag.imaging import file_digest


@pytest.fixture(scope="module")
def encoder():
    return create_encoder("efficientnet_lite0", runtime="torch")


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """Five small JPEG photos (smooth gradients and noise, two sizes, both orientations)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for i, (h, w) in enumerate([(128, 192), (192, 128), (96, 160), (128, 192), (150, 150)]):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (h + w)], axis=-1)
        noise = rng.integers(-30, 30, size=(h, w, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        path = folder / f"p{i}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def features(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`phototag features` in this process (Lite0, eager torch): exit status, stderr."""
    code = main(["features", "--encoder", "efficientnet_lite0", "--runtime", "torch", *args])
    return code, capsys.readouterr().err


def expected_maps(encoder, paths: list[Path], stage: str, view: str) -> np.ndarray:
    """The maps the encoder gives for `paths` as one batch (as the run computes them)."""
    pixels = np.stack([load_model_input(p, encoder.preprocess) for p in paths])
    if view == "flip":
        pixels = pixels[:, :, ::-1]
    return encoder.forward_pixels(pixels, [stage])[stage].numpy().astype(np.float16)


def sha256s(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


# ------------------------------------------------------------------------ the command
def test_features_maps_round_trip_exactly_and_keep_stages_and_views_apart(
    photos, encoder, tmp_path, capsys
):
    store = tmp_path / "store"
    code, err = features(
        str(photos[0].parent), "--store", str(store), "--maps", "3,stage6",
        "--views", "plain,flip", "--batch-size", "8", capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "5 computed" in err
    digests = [file_digest(p) for p in photos]
    shapes = map_shapes(encoder, ["stage3", "stage6"])
    assert shapes == {"stage3": (40, 28, 28), "stage6": (192, 7, 7)}
    maps_root = encoder_directory(store, encoder.feature_id) / "maps"
    folders = sorted(p.name for p in maps_root.iterdir())
    assert folders == ["stage3.flip", "stage3.plain", "stage6.flip", "stage6.plain"]
    for stage in ("stage3", "stage6"):
        for view in ("plain", "flip"):
            with FeatureMapStore(store, encoder.feature_id, stage, view, shapes[stage]) as maps:
                assert len(maps) == 5
                stored = maps.mapped(digests)[:]
                assert stored.dtype == np.float16 and stored.shape == (5, *shapes[stage])
                assert np.array_equal(stored, expected_maps(encoder, photos, stage, view))
    plain, flip = (
        FeatureMapStore(store, encoder.feature_id, "stage3", v, shapes["stage3"]).get(digests)[0]
        for v in ("plain", "flip")
    )
    assert not np.array_equal(plain, flip)
    # the same stage with another shape is another store's business: refused, not mixed
    with pytest.raises(InvalidInputError, match="delete this one"):
        FeatureMapStore(store, encoder.feature_id, "stage3", "plain", (40, 14, 14))


def test_a_rerun_computes_nothing_and_new_stages_come_without_new_pooled_vectors(
    photos, encoder, tmp_path, capsys
):
    store = tmp_path / "store"
    folder = str(photos[0].parent)
    assert features(folder, "--store", str(store), capsys=capsys)[0] == 0
    pooled = sha256s(store)
    code, err = features(folder, "--store", str(store), "--maps", "stage3", capsys=capsys)
    assert code == 0 and "5 computed" in err, err  # a new journal: the maps were missing
    assert {k: v for k, v in sha256s(store).items() if k in pooled} == pooled
    before = sha256s(store)
    code, err = features(
        folder, "--store", str(store), "--maps", "stage3", "--restart", capsys=capsys
    )
    assert code == 0 and "0 computed" in err and "5 already stored" in err, err
    assert sha256s(store) == before


def test_stage_and_view_choices(photos, encoder, capsys):
    assert parse_stages("3,stage6, 0", encoder) == ("stem", "stage3", "stage6")
    assert parse_stages("scales", encoder) == encoder.scales
    assert parse_stages("all", encoder) == encoder.stage_names
    assert parse_views("flip,plain") == ("plain", "flip")
    for bad in ("9", "stage9", "conv5_3", ""):
        with pytest.raises(InvalidInputError, match="'scales' or 'all'"):
            parse_stages(bad, encoder)
    with pytest.raises(InvalidInputError, match="views among plain, flip"):
        parse_views("mirror")
    code, err = features(str(photos[0]), "--views", "flip", capsys=capsys)
    assert code != 0 and "--maps STAGES with it" in err


# ---------------------------------------------------------------------- the store API
def test_mapped_rows_are_read_from_the_file_when_indexed(tmp_path):
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((6, 4, 3, 5)).astype(np.float16)
    digests = [f"d{i}" for i in range(6)]
    with FeatureMapStore(tmp_path, "enc", "stage2", "plain", (4, 3, 5)) as store:
        store.add(digests, maps)
        picked = store.mapped(["d4", "d1", "d5"])
        assert picked.shape == (3, 4, 3, 5) and picked.dtype == np.float16
        assert isinstance(picked.source, np.memmap)
        assert Path(picked.source.filename) == store.directory / "maps.bin"
        assert np.array_equal(picked[[2, 0]], maps[[5, 4]])
        # the file changes under the map: the next read sees it, so nothing was copied
        row_bytes = maps[0].nbytes
        with (store.directory / "maps.bin").open("r+b") as handle:
            handle.seek(1 * row_bytes)
            handle.write(np.full((4, 3, 5), 7, np.float16).tobytes())
        assert (picked[1] == 7).all()
        assert np.array_equal(np.asarray(picked)[0], maps[4])
        with pytest.raises(InvalidInputError, match="1 of 2 not stored"):
            store.mapped(["d0", "nope"])


def test_rows_without_index_entries_and_a_killed_writer_leave_a_consistent_store(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal, numpy as np
        from phototag.features.maps import FeatureMapStore
        store = FeatureMapStore({str(tmp_path)!r}, "enc", "head", "flip", (8, 2, 2))
        for i in range(200):
            store.add([f"d{{i}}"], np.full((1, 8, 2, 2), i, dtype=np.float16))
            if i == 120:
                os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == -9
    folder = tmp_path / "enc" / "maps" / "head.flip"
    with (folder / "maps.bin").open("ab") as handle:  # a writer killed before its commit
        handle.write(np.full((3, 8, 2, 2), 5, np.float16).tobytes())
    with FeatureMapStore(tmp_path, "enc", "head", "flip", (8, 2, 2)) as store:
        assert len(store) == 121
        store.add(["new"], np.full((1, 8, 2, 2), -1, np.float16))
        maps, found = store.get([f"d{i}" for i in range(122)] + ["new"])
        assert found[:121].all() and not found[121] and found[122]
        assert np.array_equal(maps[:121, 0, 0, 0], np.arange(121))
        assert (maps[122] == -1).all()


def test_a_disk_that_fills_up_while_adding_maps_leaves_the_store_consistent(tmpfs):
    """Each add either succeeds or raises StorageError naming the folder and records
    nothing; both failure points are met (maps cut short, index full)."""
    shape = (16, 25, 10)  # 8,000 bytes a row

    def open_store(disk):
        return FeatureMapStore(disk, "enc", "stage3", "plain", shape)

    failures = add_while_the_disk_fills(tmpfs, open_store, shape, np.float16, "maps.bin")
    assert failures == {"index full", "rows cut short"}


def test_a_damaged_maps_file_is_named_by_the_command(photos, encoder, tmp_path, capsys):
    store = tmp_path / "store"
    folder = str(photos[0].parent)
    assert features(folder, "--store", str(store), "--maps", "stage6", capsys=capsys)[0] == 0
    maps_folder = encoder_directory(store, encoder.feature_id) / "maps" / "stage6.plain"
    with (maps_folder / "maps.bin").open("r+b") as handle:
        handle.truncate(1000)
    code, err = features(
        folder, "--store", str(store), "--maps", "stage6", "--restart", capsys=capsys
    )
    row_bytes = 192 * 7 * 7 * 2
    assert code == 1
    assert err.startswith(
        f"phototag: error: {maps_folder}/maps.bin: 1000 bytes, but the index lists 5 rows "
        f"of {row_bytes} bytes. Delete the folder {maps_folder} to recompute these features"
    ), err
    with pytest.raises(DamagedFileError) as error:
        FeatureMapStore(store, encoder.feature_id, "stage6", "plain", (192, 7, 7))
    assert error.value.path == maps_folder / "maps.bin"
