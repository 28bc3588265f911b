"""The `folder` reader with labels from the photos' own keywords."""

from __future__ import annotations

import shutil
from pathlib import Path

from phototag.data.readers import read_dataset
from phototag.metadata import KeywordFields, Provenance, _exiv2, write_keywords

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def tag(photo: Path, fields: KeywordFields, sidecar: Path | None = None) -> None:
    """Write keywords as a person's photo manager would (not as phototag suggestions)."""
    image = _exiv2.new_sidecar(sidecar) if sidecar else _exiv2.open_image(photo)
    _exiv2.apply_fields(image, _exiv2.read_fields(image), fields)
    if sidecar:  # created in memory
        sidecar.write_bytes(_exiv2.image_bytes(image))


def test_keywords_are_the_default_labels_and_untagged_photos_are_unlabeled(tmp_path):
    root = tmp_path / "Pictures"
    (root / "2024").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "2024/c.jpg", "d.jpg"):
        shutil.copyfile(EXAMPLES / "coffee.jpg", root / name)
    tag(root / "a.jpg", KeywordFields(subject=("Beach", "sea"),
                                      hierarchical=("Places|Beach", "sea")))  # fmt: skip
    tag(root / "b.jpg", KeywordFields(digikam=("Animals/Cat",)), sidecar=root / "b.xmp")
    tag(root / "2024/c.jpg", KeywordFields(subject=("beach", "SEA", "dog")))
    write_keywords(root / "d.jpg", [("sky", 0.9)], Provenance("m"))  # phototag's: not a label
    write_keywords(root / "a.jpg", [("sky", 0.9)], Provenance("m"), embed=True)
    data = read_dataset(f"folder:{root}")
    assert data.item_ids == ["2024/c.jpg", "a.jpg", "b.jpg", "d.jpg"]
    # first spelling met wins: 2024/c.jpg sorts first
    assert data.label_sets() == [["SEA", "beach", "dog"], ["SEA", "beach"], ["Cat"], []]
    assert {k: v.tolist() for k, v in data.splits.items()} == {"train": [0, 1, 2],
                                                                "unlabeled": [3]}
    assert data.notes == ["1 of 4 images have no keywords: split 'unlabeled'"]
    assert read_dataset(f"folder:{root}?labels=keywords").label_sets() == data.label_sets()
    (root / "labels.csv").write_text("path,labels\nd.jpg,tree\n")
    assert read_dataset(f"folder:{root}").label_sets() == [[], [], [], ["tree"]]
    assert read_dataset(f"folder:{root}?labels=keywords").label_sets()[3] == []
