"""nuswide reader: a fixture in the official layout (folders and zips), defects, the generated
fixture with photos (make_nuswide_fixture), real data."""

from __future__ import annotations

import io
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from nuswide_fixture import NuswideFixture, make_nuswide_fixture
from PIL import Image

from phototag.data.annotation_set import AnnotationSet
from phototag.data.readers import read_dataset
from phototag.data.readers._common import read_binary_table
from phototag.data.readers.nuswide import nuswide_id, read_nuswide
from phototag.errors import DatasetFormatError

FIXTURES = Path(__file__).parent / "fixtures"
TRAIN = [
    "actor/0001_2124494179.jpg",
    "lake/0001_2650393734.jpg",
    "lake/0007_318291932.jpg",
    "zoos/0596_391097803.jpg",
]
TEST = ["actor/0002_174174086.jpg", "sky/0003_44213893.jpg"]
LABELS = {  # as in AllLabels (the lake defect is on actor/0001, a 0 there)
    TRAIN[0]: {"sky"},
    TRAIN[1]: {"lake", "sky"},
    TRAIN[2]: {"lake"},
    TRAIN[3]: {"airport"},
    TEST[0]: set(),
    TEST[1]: {"airport", "sky"},
}
TAGS = {
    TRAIN[0]: {"sky", "blue"},
    TRAIN[1]: {"water", "lake", "nature"},
    TRAIN[2]: {"lake"},
    TRAIN[3]: {"nature"},
    TEST[0]: set(),
    TEST[1]: {"sky"},
}


def tag_sets(data) -> list[set[str]]:
    names = data.tag_vocabulary.names
    return [{names[j] for j in row.indices} for row in data.user_tags]


def read_fixture(root: Path, **options):
    with pytest.warns(UserWarning, match="Labels_lake_Train.txt"):
        return read_nuswide(root, **options)


def test_nuswide_ids():
    assert nuswide_id("actor\\0002_174174086.jpg") == "actor/0002_174174086.jpg"
    assert nuswide_id("C:\\ImageData\\Flickr\\actor\\0002_174174086.jpg\r") == (
        "actor/0002_174174086.jpg"
    )
    assert nuswide_id("close-up_0001_2602829500.jpg") == "close-up/0001_2602829500.jpg"
    assert nuswide_id("aircraft_cabin_0001_1.jpg") == "aircraft_cabin/0001_1.jpg"


def test_official_split_fixture():
    data = read_fixture(FIXTURES / "nuswide")
    assert data.item_ids == TRAIN + TEST
    assert {k: v.tolist() for k, v in data.splits.items()} == {
        "train": [0, 1, 2, 3],
        "test": [4, 5],
    }
    assert data.vocabulary.names == ("airport", "lake", "sky")
    assert [set(s) for s in data.label_sets()] == [LABELS[i] for i in data.item_ids]
    # user tags: AllTags1k rows are in Imagelist order, mapped through the image lists
    assert data.tag_vocabulary.names == ("nature", "sky", "blue", "water", "lake")
    assert tag_sets(data) == [TAGS[i] for i in data.item_ids]
    assert data.image_paths is None
    (note,) = [n for n in data.notes if "other than 0/1" in n]
    assert "TrainTestLabels/Labels_lake_Train.txt" in note
    assert "line 1: '-1130179'" in note and "read as 0" in note


def test_all_labels_fixture():
    data = read_nuswide(FIXTURES / "nuswide", split="none")
    assert data.splits == {}
    assert data.n_items == 6 and data.item_ids[1] == TEST[0]
    assert [set(s) for s in data.label_sets()] == [LABELS[i] for i in data.item_ids]
    assert tag_sets(data) == [TAGS[i] for i in data.item_ids]
    assert data.notes == []


def _zip_folder(root: Path, folder: str, top_level: bool) -> None:
    with zipfile.ZipFile(root / f"{folder}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted((root / folder).rglob("*")):
            relative = file.relative_to(root if top_level else root / folder)
            archive.write(file, relative.as_posix())
    shutil.rmtree(root / folder)


@pytest.mark.parametrize("top_level", [False, True])
def test_distributed_zip_files(fixture_copy, top_level):
    root = fixture_copy("nuswide")
    _zip_folder(root, "Groundtruth", top_level)
    _zip_folder(root, "ConceptsList", top_level)
    data = read_fixture(root)
    assert data.item_ids == TRAIN + TEST
    assert [set(s) for s in data.label_sets()] == [LABELS[i] for i in data.item_ids]
    assert any("Groundtruth.zip/" in n and "Labels_lake_Train.txt" in n for n in data.notes)


def test_without_image_lists(fixture_copy):
    root = fixture_copy("nuswide")
    shutil.rmtree(root / "ImageList")
    with pytest.raises(DatasetFormatError, match=r"Imagelist\.txt: file not found.*tags=false"):
        read_fixture(root)
    data = read_fixture(root, tags="false")
    assert data.item_ids[:2] == ["train/000000", "train/000001"]
    assert data.item_ids[4:] == ["test/000000", "test/000001"]
    assert data.user_tags is None
    (root / "test_image_names.txt").write_text("".join(n.replace("/", "_") + "\n" for n in TEST))
    data = read_fixture(root, tags="false")
    assert data.item_ids[4:] == TEST
    assert any("test ids from test_image_names.txt" in n for n in data.notes)
    with pytest.raises(DatasetFormatError, match=r"ImageList: image lists not found"):
        read_fixture(root, tags="false", images=str(root))


def test_tags_need_the_lists_only_to_reorder(fixture_copy):
    root = fixture_copy("nuswide")
    (root / "ImageList" / "TrainImagelist.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"TrainImagelist\.txt: file not found.*train"):
        read_fixture(root)
    shutil.rmtree(root / "ImageList")
    # all images: AllTags1k.txt rows are already in AllLabels order
    data = read_nuswide(root, split="none")
    assert data.item_ids[0] == "all/000000"
    assert tag_sets(data)[2] == {"water", "lake", "nature"}


def test_images(fixture_copy):
    root = fixture_copy("nuswide")
    for item in TRAIN + TEST:
        (root / "Flickr" / item).parent.mkdir(parents=True, exist_ok=True)
        (root / "Flickr" / item).write_bytes(b"")
    data = read_fixture(root)
    assert data.image_paths[0] == str(root / "Flickr" / TRAIN[0])
    (root / "Flickr" / TEST[1]).unlink()
    with pytest.raises(DatasetFormatError, match=r"0003_44213893\.jpg: image not found"):
        read_fixture(root)
    data = read_fixture(root, missing_images="drop")
    assert data.item_ids == TRAIN + TEST[:1]
    assert data.user_tags.shape == (5, 5)
    assert data.splits["test"].tolist() == [4]
    # images=DIR may name the Flickr folder or its parent
    with pytest.warns(UserWarning):
        assert read_dataset(f"nuswide:{root}?images={root}&missing_images=drop").n_items == 5


def test_non_binary_token_is_an_error(fixture_copy):
    root = fixture_copy("nuswide")
    path = root / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Test.txt"
    path.write_text("0\nx\n")
    with pytest.raises(DatasetFormatError) as error:
        read_fixture(root)
    assert error.value.path == Path(str(path)) and error.value.line == 2
    assert "Labels_sky_Test.txt, line 2: expected 0 or 1, found 'x'" in str(error.value)


def test_other_integers_read_as_zero_and_noted(fixture_copy):
    root = fixture_copy("nuswide")
    (root / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Test.txt").write_text("0\n2\n")
    with pytest.warns(UserWarning) as caught:
        data = read_nuswide(root)
    assert len(caught) == 2
    assert data.label_sets()[5] == ["airport"]
    assert any(
        "Labels_sky_Test.txt: 1 value(s) other than 0/1 (line 2: '2')" in n for n in data.notes
    )


def test_label_files_of_different_lengths(fixture_copy):
    root = fixture_copy("nuswide")
    (root / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Test.txt").write_text("0\n1\n0\n")
    with pytest.raises(DatasetFormatError, match=r"Labels_sky_Test\.txt: expected 2 lines"):
        read_fixture(root)


def test_image_list_length_must_match(fixture_copy):
    root = fixture_copy("nuswide")
    (root / "ImageList" / "TestImagelist.txt").write_text("actor\\0002_174174086.jpg\n")
    with pytest.raises(DatasetFormatError, match=r"TestImagelist\.txt: lists 1 images, but"):
        read_fixture(root)


def test_tag_rows_with_wrong_column_count(fixture_copy):
    root = fixture_copy("nuswide")
    path = root / "NUS_WID_Tags" / "AllTags1k.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = "1\t0\t0\n"
    path.write_text("".join(lines))
    with pytest.raises(DatasetFormatError) as error:
        read_fixture(root)
    assert error.value.line == 4
    assert "AllTags1k.txt, line 4: expected 5 whitespace-separated 0/1 values, found 3" in str(
        error.value
    )


def test_missing_ground_truth_names_layout(fixture_copy):
    root = fixture_copy("nuswide")
    (root / "Groundtruth" / "TrainTestLabels" / "Labels_lake_Test.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"Labels_lake_Test\.txt: label file of concept"):
        read_fixture(root)


# ----------------------------------- generated fixture with photos (make_nuswide_fixture)


def check_reads_back(fixture: NuswideFixture) -> AnnotationSet:
    """The reader returns exactly what the fixture wrote: items, splits, labels, user
    tags over TagList1k, and decodable photos."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean official layout: no defect to report
        data = read_dataset(fixture.spec)
    assert data.item_ids == list(fixture.item_ids)
    assert {k: len(v) for k, v in data.splits.items()} == {
        "train": len(fixture.train),
        "test": len(fixture.test),
    }
    assert data.vocabulary.names == fixture.concepts
    assert data.tag_vocabulary.names == fixture.tags
    assert [set(s) for s in data.label_sets()] == [fixture.labels[i] for i in data.item_ids]
    assert tag_sets(data) == [fixture.user_tags[i] for i in data.item_ids]
    assert data.image_paths == [str(fixture.root / "Flickr" / i) for i in data.item_ids]
    assert data.notes == []
    return data


def test_generated_fixture(tmp_path):
    fixture = make_nuswide_fixture(tmp_path / "nuswide")
    data = check_reads_back(fixture)
    assert (data.n_items, len(data.vocabulary), len(data.tag_vocabulary)) == (12, 6, 12)
    assert data.label_counts().min() >= 1  # every concept occurs
    assert all(data.user_tags.getnnz(axis=1))  # every photo has tags
    for path, labels in zip(data.image_paths, data.label_sets(), strict=True):
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 48))
            top = np.asarray(image, dtype=float)[:12].mean(axis=(0, 1))
        assert (top[2] > top[0] + 40) == ("sky" in labels)  # a sky photo is blue at the top
    everything = read_nuswide(fixture.root, split="none")  # AllLabels, Imagelist order
    assert sorted(everything.item_ids) == everything.item_ids == sorted(fixture.item_ids)
    assert tag_sets(everything) == [fixture.user_tags[i] for i in everything.item_ids]


def test_generated_fixture_with_the_official_vocabularies(tmp_path, shared_data):
    lists = shared_data / "nuswide"
    concepts = (lists / "Concepts81.txt").read_text().split()
    tags = (lists / "TagList1k.txt").read_text().split()
    fixture = make_nuswide_fixture(
        tmp_path / "nuswide", n_train=10, n_test=5, concepts=concepts, tags=tags, seed=3
    )
    data = check_reads_back(fixture)
    assert (len(data.vocabulary), data.user_tags.shape) == (81, (15, 1_000))


# ------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def real(shared_data):
    with pytest.warns(UserWarning, match="Labels_lake_Train.txt"):
        official = read_nuswide(shared_data / "nuswide")
    return official


def test_real_official_split(real, shared_data):
    assert real.n_items == 269_648
    assert {k: len(v) for k, v in real.splits.items()} == {"train": 161_789, "test": 107_859}
    assert len(real.vocabulary) == 81
    names = (shared_data / "nuswide" / "Concepts81.txt").read_text().split()
    assert list(real.vocabulary) == names
    (note,) = [n for n in real.notes if "other than 0/1" in n]
    assert "Groundtruth.zip/TrainTestLabels/Labels_lake_Train.txt" in note
    assert "line 78373: '-1130179'" in note
    test_names = (shared_data / "nuswide" / "test_image_names.txt").read_text().split()
    assert real.split("test").item_ids == [nuswide_id(n) for n in test_names]
    assert real.item_ids[0] == "train/000000"
    assert real.user_tags is None  # no AllTags1k.txt in the shared copy


def test_real_all_labels_agree_with_train_test(real, shared_data):
    everything = read_nuswide(shared_data / "nuswide", split="none")
    assert everything.n_items == 269_648 and everything.splits == {}
    assert everything.notes == [
        "no ImageList/Imagelist.txt: ids are synthetic (all/000000 = row 1)"
    ]
    # Same positives per concept (the lake defect read as 0 matches AllLabels).
    assert np.array_equal(everything.label_frequencies(), real.label_frequencies())


# ------------------------------------------------------- the 0/1 table parser


def _brute_force(text: str) -> tuple[list[list[int]], list[tuple[int, int, str]]]:
    rows, anomalies = [], []
    for number, line in enumerate(text.rstrip().splitlines(), start=1):
        tokens = line.split()
        rows.append([int(t == "1") for t in tokens])
        anomalies += [(number, k + 1, t) for k, t in enumerate(tokens) if t not in ("0", "1")]
    return rows, anomalies


@pytest.mark.parametrize("seed", range(8))
def test_binary_table_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_rows, n_columns = int(rng.integers(1, 40)), int(rng.integers(1, 6))
    values = rng.integers(0, 2, size=(n_rows, n_columns)).astype(str).astype(object)
    if seed % 2:  # a few odd integers, as in the official lake file
        for _ in range(3):
            values[rng.integers(n_rows), rng.integers(n_columns)] = str(rng.integers(-9999, 99))
    separator = ["\t", " ", "  "][seed % 3]
    end = ["\n", "\r\n", "\t\n"][seed % 3]
    text = "".join(separator.join(row) + end for row in values)
    table = read_binary_table(io.BytesIO(text.encode()), "t", chunk_bytes=int(rng.integers(1, 64)))
    rows, anomalies = _brute_force(text)
    assert table.rows.toarray().astype(int).tolist() == rows
    assert table.anomalies == [a for a in anomalies if a[2] not in ("0", "1")]
