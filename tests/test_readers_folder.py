"""folder reader: a folder of images with a CSV or JSON label file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phototag.data.readers import read_dataset
from phototag.data.readers.folder import list_images, read_folder
from phototag.errors import DatasetFormatError, InvalidInputError

FILES = [
    "beach/a.jpg",
    "beach/b.JPEG",
    "city/night/c.png",
    "d.heic",
    "e.webp",
    ".hidden.jpg",
    ".trash/f.jpg",
    "notes.txt",
    "beach/Thumbs.db",
]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "Pictures"
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    return root


def test_images_only(photos):
    assert list_images(photos) == [
        "beach/a.jpg",
        "beach/b.JPEG",
        "city/night/c.png",
        "d.heic",
        "e.webp",
    ]
    data = read_folder(photos)
    assert data.name == "Pictures"
    assert data.n_items == 5 and len(data.vocabulary) == 0
    assert data.labels.shape == (5, 0)
    assert data.image_paths[2] == str(photos / "city" / "night" / "c.png")
    # no label file: labels come from the photos' keywords; these empty files have none
    assert {k: v.tolist() for k, v in data.splits.items()} == {"unlabeled": [0, 1, 2, 3, 4]}
    assert data.notes == ["keywords of 5 of 5 images could not be read, e.g. beach/a.jpg "
                          "(cannot read its metadata: the file is empty): no labels"]
    none = read_folder(photos, labels="none")
    assert none.splits == {} and none.notes == [] and none.n_items == 5


def test_csv_labels_with_both_separators_and_splits(photos):
    (photos / "labels.csv").write_text(
        "path,labels,split\n"
        'beach/a.jpg,"sea; sand ;sky",train\n'
        "city/night/c.png,city|night|city,test\n"
        "d.heic,,train\n"
        "\n"
    )
    data = read_folder(photos)
    assert data.vocabulary.names == ("city", "night", "sand", "sea", "sky")
    assert data.label_sets() == [["sand", "sea", "sky"], [], ["city", "night"], [], []]
    assert {k: v.tolist() for k, v in data.splits.items()} == {"train": [0, 3], "test": [2]}
    assert data.notes == ["2 of 5 images are not in labels.csv: no labels"]


def test_json_labels_and_labels_option(photos, tmp_path):
    labels = tmp_path / "my-labels.json"
    labels.write_text(json.dumps({"beach/b.JPEG": ["sea"], "./e.webp": ["flower", "sea"]}))
    data = read_dataset(f"folder:{photos}?labels={labels}")
    assert data.label_sets() == [[], ["sea"], [], [], ["flower", "sea"]]
    (photos / "tags.json").write_text(json.dumps({"d.heic": ["x"]}))
    assert read_folder(photos, labels="tags.json").label_sets()[3] == ["x"]  # relative to PATH


def test_missing_image_names_csv_line(photos):
    (photos / "labels.csv").write_text("path,labels\nbeach/a.jpg,sea\nbeach/zz.jpg,sea\n")
    with pytest.raises(DatasetFormatError) as error:
        read_folder(photos)
    assert error.value.path == photos.resolve() / "labels.csv" and error.value.line == 3
    assert "labels.csv, line 3: image 'beach/zz.jpg' not found" in str(error.value)


def test_listed_file_that_is_not_read_as_an_image(photos):
    (photos / "labels.csv").write_text("path,labels\nnotes.txt,sea\n")
    with pytest.raises(DatasetFormatError, match=r"line 2: 'notes.txt' is not an image"):
        read_folder(photos)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("file,labels\n", 1, "header must name the columns path, labels"),
        ("path,labels\na.jpg,sea,extra\n", 2, "expected 2 columns (as the header), found 3"),
        ("path,labels\nbeach/a.jpg,sea\nbeach/a.jpg,sky\n", 3, "listed again (first on line 2)"),
        ("path,labels\n../outside.jpg,sea\n", 2, "expected an image path relative to"),
    ],
)
def test_malformed_csv(photos, text, line, message):
    (photos / "labels.csv").write_text(text)
    with pytest.raises(DatasetFormatError) as error:
        read_folder(photos)
    assert error.value.line == line and message in str(error.value)


def test_malformed_json(photos):
    (photos / "labels.json").write_text('{\n "beach/a.jpg": ["sea"],\n "e.webp": "sea"\n}')
    with pytest.raises(
        DatasetFormatError, match=r"labels\.json, line 3: 'e.webp': expected a list"
    ):
        read_folder(photos)
    (photos / "labels.json").write_text('{\n "beach/a.jpg": ["sea"\n')
    with pytest.raises(DatasetFormatError, match=r"labels\.json, line 3: invalid JSON"):
        read_folder(photos)


def test_label_option_must_be_a_label_file_keywords_or_none(photos):
    # labels from the photos' keywords: tests/test_metadata_folder.py
    with pytest.raises(InvalidInputError, match="a .csv or .json label file, 'keywords' or "
                       "'none', got 'tags.txt'"):  # fmt: skip
        read_folder(photos, labels="tags.txt")
    with pytest.raises(InvalidInputError, match="an existing label file"):
        read_folder(photos, labels="nope.csv")
