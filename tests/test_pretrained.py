"""The models shipped inside the package load offline and score as documented."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from phototag.data.sensitive import is_sensitive
from phototag.evaluation.decoding import LabelThresholds, TopK
from phototag.evaluation.metrics import annotation_report
from phototag.models.everyday import read_table
from phototag.pretrained import available_pretrained, load_model


def test_the_default_model_is_the_everyday_model():
    assert {"default", "corel5k"} <= set(available_pretrained())
    model = load_model("default")
    assert list(model.vocabulary_) == [word.path for word in read_table()]
    assert not [path for path in model.vocabulary_ if is_sensitive(path)]
    assert isinstance(model.decoder_, LabelThresholds)
    assert model.decoder_.max_labels == 10
    assert (model.decoder_.thresholds >= 0.5).all()
    assert model.required_inputs().features == ("efficientnet_lite2",)


def test_the_default_model_is_right_on_held_out_mirflickr_photos(shared_data, tmp_path):
    """docs/pretrained.md: on the 200 MIRFLICKR photos of the everyday test split, at
    least 80% of the judged keywords are right (82.7% measured), about 2.2 per photo."""
    from phototag.data.readers import read_dataset
    from phototag.features.attach import with_features

    test = read_dataset(f"everyday:{shared_data}").split("test")
    test = test.subset(np.flatnonzero(test.metadata["dataset"] == "mirflickr"))
    test, _ = with_features(test, "efficientnet_lite2", store_root=tmp_path, progress=False)
    model = load_model("default")
    written = model.decoder_.decode(model.scores(test))
    judged = written & np.array([bool(word.photo_labels("mirflickr")) for word in read_table()])
    right = judged & test.labels.toarray().astype(bool)
    assert right.sum() / judged.sum() == pytest.approx(0.827, abs=0.01)
    assert judged.sum() / test.n_items == pytest.approx(2.17, abs=0.05)


def test_the_corel5k_model_ships_with_the_package():
    model = load_model("corel5k")
    assert len(model.vocabulary_) == 260


def test_the_corel5k_model_reproduces_its_corel5k_row(shared_data, tmp_path):
    """docs/pretrained.md: C-F1 40.4, O-F1 56.4, N+ 162 on the 499 test photos (top 5);
    features are recomputed here from the photos (about 20 s on 2 cores)."""
    from phototag.data.readers import read_dataset
    from phototag.features.attach import with_features

    test = read_dataset(f"corel5k:{shared_data / 'corel5k'}").split("test")
    test, _ = with_features(test, "efficientnet_lite2", store_root=tmp_path, progress=False)
    scores = load_model("corel5k").scores(test)
    report = annotation_report(test.labels, TopK(5).decode(scores), None)
    assert report["C-F1"] == pytest.approx(0.404, abs=0.005)
    assert report["O-F1"] == pytest.approx(0.564, abs=0.005)
    assert report["N+"] == pytest.approx(162, abs=3)


def test_the_readme_shows_what_the_default_model_writes_on_the_examples(
    tmp_path, capsys, monkeypatch
):
    """The README's quickstart output is what `phototag annotate examples` prints."""
    from phototag.app.cli import main

    root = Path(__file__).resolve().parents[1]
    block = re.search(r"It prints:\n\n```\n(.*?)```", (root / "README.md").read_text(), re.S)
    expected = [line for line in block.group(1).splitlines() if line.startswith("examples/")]
    photos = sorted(str(p.relative_to(root)) for p in (root / "examples").glob("*.jpg"))
    monkeypatch.chdir(root)
    assert main(["annotate", *photos, "--store", str(tmp_path), "--restart"]) == 0
    assert capsys.readouterr().out.splitlines() == expected
