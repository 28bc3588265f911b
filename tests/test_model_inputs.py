"""The model input contract: a model declares what it reads (`ModelInputs`) and the
runners fill it from photo files (`with_inputs`): pooled features, stage maps, the
photo's own keywords as user tags, its album; `annotate` and `serve` pass the whole
`Prediction` (quantities too) through."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hostile_corpus import xmp_with

from phototag.data import AnnotationSet, Vocabulary, from_label_sets
from phototag.data.inputs import MapSpec, ModelInputs
from phototag.errors import InvalidInputError
from phototag.evaluation.decoding import Quantity
from phototag.evaluation.predictions import Prediction
from phototag.library.annotation import annotate_files
from phototag.library.inputs import with_inputs
from phototag.metadata import Provenance, write_keywords
from phototag.models.base import Annotator
from phototag.models.registry import register_annotator

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENCODER = "efficientnet_lite0"
STAGE = MapSpec(ENCODER, "stage6")
FILL = dict(runtime="torch", workers=0)


@register_annotator("inputs-probe-test")
class ReadsEverything(Annotator):
    """Scores = the labels its user tags voted for in training (a sparse count matrix)
    + 1 for the label named like the photo's album; quantity = number of user tags;
    the stage map's mean is kept to show the maps arrive."""

    def required_inputs(self, training: bool = False) -> ModelInputs:
        return ModelInputs((ENCODER,), (STAGE,), user_tags=True, metadata=("group",))

    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        self.tag_vocabulary_ = train.tag_vocabulary
        self.votes_ = sp.csr_matrix(train.user_tags.T.astype(np.float32) @ train.labels)

    def _predict(self, inputs: AnnotationSet) -> Prediction:
        tags = inputs.user_tags_in(self.tag_vocabulary_).astype(np.float32)
        scores = np.asarray((tags @ self.votes_).todense(), dtype=np.float32)
        for row, folder in enumerate(inputs.metadata["group"]):
            if Path(folder).name in self.vocabulary_:
                scores[row, self.vocabulary_.index(Path(folder).name)] += 1
        self.map_means_ = np.asarray(inputs.maps[STAGE.key][:]).mean(axis=(1, 2, 3))
        assert inputs.features[ENCODER].shape == (inputs.n_items, 1280)
        return Prediction(scores, quantities=np.asarray(tags.sum(axis=1)).ravel())


@pytest.fixture
def album(tmp_path):
    """Photos in the album folder "sea": one with the user's keywords in a sidecar (and a
    phototag keyword, which is not a user tag), one without, one with a damaged sidecar."""
    folder = tmp_path / "sea"
    folder.mkdir()
    for name in ("tagged.jpg", "plain.jpg", "damaged.jpg"):
        shutil.copyfile(EXAMPLES / "coffee.jpg", folder / name)
    (folder / "tagged.xmp").write_text(xmp_with("Beach", "Sun"))
    write_keywords(folder / "tagged.jpg", [("robot", 0.9)], Provenance("m"))
    (folder / "damaged.xmp").write_text("<x:xmpmeta><rdf:RDF>")
    return folder


def photos(paths) -> AnnotationSet:
    data = from_label_sets("photos", [Path(p).name for p in paths], [[] for _ in paths])
    data.image_paths = [str(p) for p in paths]
    return data


def test_with_inputs_fills_every_declared_part_from_the_photos(album, tmp_path):
    inputs = ReadsEverything().required_inputs()
    paths = [album / n for n in ("tagged.jpg", "plain.jpg", "damaged.jpg")]
    data, report = with_inputs(photos(paths), inputs, store_root=tmp_path / "s", **FILL)
    assert data.item_ids == ["tagged.jpg", "plain.jpg"]  # keywords of damaged unreadable
    assert report.failures[0][0].endswith("damaged.jpg") and "damaged.xmp" in report.failures[0][1]
    assert data.missing_inputs(inputs) == []
    assert data.maps[STAGE.key].shape == (2, 192, 7, 7) and data.maps[STAGE.key].dtype == np.float16
    assert list(data.tag_vocabulary) == ["beach", "sun"]  # lower-cased, phototag's left out
    assert data.user_tags.toarray().tolist() == [[True, True], [False, False]]
    assert data.metadata["group"].tolist() == [str(album)] * 2
    again, _ = with_inputs(data, inputs, store_root=tmp_path / "elsewhere", **FILL)
    assert again is data  # nothing missing: nothing read
    fresh, _ = with_inputs(photos(paths[:2]), ModelInputs(maps=(STAGE,)), store_maps=False,
                           store_root=tmp_path / "unused", **FILL)  # fmt: skip
    np.testing.assert_allclose(np.asarray(fresh.maps[STAGE.key], np.float32),
                               np.asarray(data.maps[STAGE.key], np.float32), atol=2e-2)  # fmt: skip
    assert not (tmp_path / "unused").exists()  # computed in memory, nothing stored


def test_with_inputs_keeps_what_a_dataset_has_and_needs_photos_for_the_rest():
    data = from_label_sets("d", ["a"], [["x"]], features={ENCODER: np.zeros((1, 3))})
    assert with_inputs(data, ModelInputs((ENCODER,)))[0] is data
    with pytest.raises(InvalidInputError, match=r"maps\['efficientnet_lite0@stage6'\]"):
        with_inputs(data, ModelInputs(maps=(STAGE,)))
    with pytest.raises(InvalidInputError, match="metadata a photo file has"):
        with_inputs(photos([EXAMPLES / "coffee.jpg"]), ModelInputs(metadata=("camera",)))


def test_a_model_checks_its_inputs_and_saves_sparse_and_vocabulary_state(album, tmp_path):
    train = from_label_sets("t", ["1", "2"], [["sea"], ["beach", "sun"]])
    with pytest.raises(InvalidInputError, match="user_tags.*with_inputs"):
        ReadsEverything().fit(train)
    train.tag_vocabulary = Vocabulary(["sun", "beach", "dog"])
    train.user_tags = sp.csr_matrix(np.array([[0, 1, 0], [1, 1, 1]], dtype=bool))
    train.features[ENCODER] = np.zeros((2, 1280), np.float32)
    train.maps[STAGE.key] = np.zeros((2, 192, 7, 7), np.float16)
    train.metadata["group"] = np.array(["x", "y"])
    model = ReadsEverything().fit(train)
    loaded = Annotator.load(model.save(tmp_path / "model"))
    assert loaded.tag_vocabulary_ == train.tag_vocabulary
    assert sp.issparse(loaded.votes_) and (loaded.votes_ != model.votes_).nnz == 0
    # beach -> {sea, beach, sun}, sun -> {beach, sun}: "tagged" (beach, sun) votes beach 2,
    # sea 1, sun 2; the album "sea" adds 1 to sea; "plain" has only its album
    (tagged, plain) = annotate_files([album / "tagged.jpg", album / "plain.jpg"], loaded,
                                     store_root=tmp_path / "s", progress=False, **FILL)  # fmt: skip
    assert dict(tagged.tags) == {"beach": 2.0, "sea": 2.0, "sun": 2.0}
    assert plain.tags[0] == ("sea", 1.0)
    assert loaded.map_means_.shape == (2,) and np.all(np.isfinite(loaded.map_means_))


def test_annotate_and_serve_decode_the_models_own_quantities(album, tmp_path):
    from phototag.app.web.tagger import Tagger

    train = from_label_sets("t", ["1"], [["beach", "sea", "sun"]])
    train.tag_vocabulary, train.user_tags = Vocabulary(["beach"]), sp.csr_matrix([[True]])
    train.features[ENCODER] = np.zeros((1, 1280), np.float32)
    train.maps[STAGE.key] = np.zeros((1, 192, 7, 7), np.float16)
    train.metadata["group"] = np.array(["x"])
    model = ReadsEverything().fit(train)
    model.decoder_ = Quantity()  # one keyword per user tag: "tagged" has one known tag
    (result,) = annotate_files([album / "tagged.jpg"], model, store_root=tmp_path / "s",
                               progress=False, **FILL)  # fmt: skip
    assert len(result.tags) == 1
    tagger = Tagger(model, store_root=tmp_path / "s", runtime="torch")
    try:
        prediction = tagger.submit(album / "tagged.jpg").result(timeout=120)
        assert prediction.quantities.tolist() == [1.0]
        import asyncio

        suggested = asyncio.run(tagger.suggest(album / "tagged.jpg"))
        assert [label for label, _ in suggested] == [result.tags[0][0]]
    finally:
        tagger.close()
