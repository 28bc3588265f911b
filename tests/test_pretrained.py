"""The models shipped inside the package load offline and score as documented."""

from __future__ import annotations

import pytest

from phototag.evaluation.decoding import TopK
from phototag.evaluation.metrics import annotation_report
from phototag.pretrained import available_pretrained, load_model


def test_the_default_model_ships_with_the_package():
    assert "default" in available_pretrained()
    model = load_model("default")
    assert len(model.vocabulary_) == 260
    assert model.required_inputs().features == ("efficientnet_lite2",)


def test_the_default_model_reproduces_its_corel5k_row(shared_data, tmp_path):
    """docs/pretrained.md: C-F1 40.4, O-F1 56.4, N+ 162 on the 499 test photos (top 5);
    features are recomputed here from the photos (about 20 s on 2 cores)."""
    from phototag.data.readers import read_dataset
    from phototag.features.attach import with_features

    test = read_dataset(f"corel5k:{shared_data / 'corel5k'}").split("test")
    test, _ = with_features(test, "efficientnet_lite2", store_root=tmp_path, progress=False)
    scores = load_model("default").scores(test)
    report = annotation_report(test.labels, TopK(5).decode(scores), None)
    assert report["C-F1"] == pytest.approx(0.404, abs=0.005)
    assert report["O-F1"] == pytest.approx(0.564, abs=0.005)
    assert report["N+"] == pytest.approx(162, abs=3)
