"""CNN-R (`cnn_r`): fine-tuned EfficientNet-Lite0 block + projection into GloVe space."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from phototag.app.cli import main
from phototag.data import from_label_sets
from phototag.data.inputs import MapSpec, ModelInputs
from phototag.errors import InvalidInputError
from phototag.library.inputs import with_inputs
from phototag.models import Annotator, create_annotator
from phototag.models.regression import CNNRAnnotator

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAST = dict(encoder="efficientnet_lite0", batch_size=4, seed=0)
#: How the tests fill the trunk maps (the feature store is the test session's cache).
FILL = dict(runtime="torch", workers=0)
# examples/ (astronaut, chelsea, coffee, rocket) and four Corel-5k training photos
EXAMPLE_LABELS = [["person", "sky"], ["cat"], ["coffee", "cup"], ["rocket", "sky"]]


@pytest.fixture(scope="module")
def photos(shared_data):
    from phototag.data.readers import read_dataset

    corel = read_dataset(f"corel5k:{shared_data / 'corel5k'}").split("train")
    rows = [0, 1, 2, 3]
    paths = sorted(str(p) for p in EXAMPLES.glob("*.jpg"))
    paths += [corel.image_paths[i] for i in rows]
    sets = EXAMPLE_LABELS + [corel.label_sets()[i] for i in rows]
    data = from_label_sets("photos", [Path(p).stem for p in paths], sets)
    data.image_paths = paths
    return data


def fill(data, model, training=False):
    filled, report = with_inputs(data, model.required_inputs(training), **FILL)
    return filled


@pytest.fixture(scope="module")
def maps(photos):
    """`photos` with the trunk maps of both views (what fitting with flips reads)."""
    return fill(photos, CNNRAnnotator(**FAST), training=True)


@pytest.fixture(scope="module")
def fitted(maps):
    return CNNRAnnotator(**FAST, epochs=4, lr=3e-3, block_lr=3e-4).fit(maps)


def test_fit_and_scores_shapes(fitted, maps):
    scores = fitted.scores(maps)
    assert scores.shape == (maps.n_items, maps.n_labels) and scores.dtype == np.float32
    assert np.all(np.abs(scores) <= 1 + 1e-5)  # cosine similarities
    assert fitted.label_vectors_.shape == (maps.n_labels, 50)  # glove50, all words found
    tags = fitted.annotate(maps)
    assert all(len(t) == 5 for t in tags)


def test_inputs_are_the_trunk_maps_of_one_or_both_views(fitted):
    plain = MapSpec("efficientnet_lite0", "stage6")
    assert fitted.required_inputs() == ModelInputs(maps=(plain,))
    both = (plain, MapSpec("efficientnet_lite0", "stage6", "flip"))
    assert fitted.required_inputs(training=True).maps == both
    assert CNNRAnnotator(**FAST, flip=False).required_inputs(training=True).maps == both[:1]


def test_training_loss_decreases_with_the_block_at_its_own_rate(fitted):
    losses = [h["train_loss"] for h in fitted.history_]
    assert len(losses) == 4 and losses[-1] < 0.7 * losses[0]
    first = fitted.history_[0]
    assert first["lr_block"] == pytest.approx(3e-4) and first["lr_rest"] == pytest.approx(3e-3)


def test_trunk_maps_are_the_stored_trunk_outputs_of_both_views(fitted, maps, photos):
    from phototag.features.encoders.preprocess import normalize
    from phototag.features.extract import load_model_input
    from phototag.models.regression import split_backbone

    # EfficientNet-Lite0 stage6: 192 channels at stride 32 of 224 px; view 1 is the mirror
    plain, mirror = (np.asarray(maps.maps[s.key]) for s in fitted.required_inputs(True).maps)
    assert plain.shape == mirror.shape == (photos.n_items, 192, 7, 7)
    assert plain.dtype == np.float16 and maps.item_ids == photos.item_ids
    encoder, _, _ = fitted._parts()
    trunk = split_backbone(encoder.model)[0].eval()
    pixels = np.stack([load_model_input(p, encoder.preprocess) for p in photos.image_paths[:2]])
    with torch.inference_mode():
        x = normalize(pixels, encoder.preprocess)
        expected = [trunk(v).numpy() for v in (x, torch.flip(x, dims=[3]))]
    np.testing.assert_allclose(plain[:2], expected[0], atol=2e-2, rtol=1e-2)  # float16
    np.testing.assert_allclose(mirror[:2], expected[1], atol=2e-2, rtol=1e-2)
    assert not np.allclose(plain, mirror)


def test_trunk_maps_are_computed_once(fitted, maps, photos, monkeypatch):
    from phototag.features.encoders import ImageEncoder

    batches = []
    forward = ImageEncoder.forward_pixels

    def counted(self, pixels, outputs=None):  # type: ignore[no-untyped-def]
        batches.append(len(pixels))
        return forward(self, pixels, outputs)

    monkeypatch.setattr(ImageEncoder, "forward_pixels", counted)
    again = fill(photos, CNNRAnnotator(**FAST), training=True)
    assert batches == [1]  # only the blank pass that reads the map shape: the rest is stored
    for key, stored in maps.maps.items():
        np.testing.assert_array_equal(np.asarray(stored), np.asarray(again.maps[key]))


def test_save_load_round_trip(fitted, maps, tmp_path):
    directory = fitted.save(tmp_path / "model")
    weights = load_file(str(directory / "weights.safetensors"))
    assert set(weights) == {"block_state_", "projection_weight_", "projection_bias_",
                            "label_vectors_"}  # fmt: skip
    # only the fine-tuned block is saved: stage7 (one MBConv 192 -> 1152 -> 320, kernel 3)
    # and head (320 -> 1280), conv weights + 4 numbers per BatchNorm channel
    convs = 192 * 1152 + 1152 * 9 + 1152 * 320 + 320 * 1280
    assert weights["block_state_"].size == convs + 4 * (1152 + 1152 + 320 + 1280)
    config = json.loads((directory / "config.json").read_text())
    assert config["model"] == "cnn_r" and config["config"]["encoder"] == "efficientnet_lite0"
    assert not {"runtime", "device", "workers", "store", "verbose"} & set(config["config"])
    assert config["state"]["encoder_id_"].startswith("efficientnet_lite0@")
    loaded = Annotator.load(directory)
    assert isinstance(loaded, CNNRAnnotator)
    np.testing.assert_array_equal(loaded.scores(maps), fitted.scores(maps))


def test_scores_are_cosines_to_label_embeddings(fitted, maps):
    from phototag.features.embeddings import create_embedding

    predicted = fitted.predict_embeddings(maps)
    glove, _ = create_embedding("glove50").embed_vocabulary(maps.vocabulary.names)
    unit = glove / np.linalg.norm(glove, axis=1, keepdims=True)
    expected = predicted @ unit.T / np.linalg.norm(predicted, axis=1, keepdims=True)
    np.testing.assert_allclose(fitted.scores(maps), expected, atol=1e-5)
    # A prediction equal to the embedding of "cat" ranks "cat" first, then by GloVe cosine.
    cat = maps.vocabulary.index("cat")
    model = CNNRAnnotator(**FAST).fit(maps)
    model.projection_weight_ = np.zeros_like(model.projection_weight_)
    model.projection_bias_ = model.label_vectors_[cat].copy()
    model._network = None  # rebuild from the edited arrays
    scores = model.scores(maps)
    np.testing.assert_allclose(scores[:, cat], 1.0, atol=1e-5)
    np.testing.assert_allclose(scores[0], unit @ unit[cat], atol=1e-5)


def test_targets_are_mean_label_vectors(maps):
    model = CNNRAnnotator(**FAST, epochs=1, embedding="id").fit(maps)
    targets, labelled = model._targets(maps)
    multi_hot = maps.labels.toarray().astype(np.float32)
    np.testing.assert_allclose(targets, multi_hot / multi_hot.sum(axis=1, keepdims=True))
    assert labelled.all()


def test_validation_split_and_early_stopping(maps):
    model = CNNRAnnotator(**FAST, epochs=4, lr=1e-3, validation_fraction=0.25, patience=1)
    model.fit(maps)
    assert all("valid" in h for h in model.history_)
    # the model keeps the weights of the best epoch on the 2 held-out photos (seeded)
    held = maps.subset(np.sort(np.random.default_rng(0).permutation(8)[:2]))
    targets, _ = model._targets(held)
    loss = ((model.predict_embeddings(held) - targets) ** 2).sum(axis=1).mean()
    assert loss == pytest.approx(min(h["valid"] for h in model.history_), rel=1e-4)
    # weights that (all but) stand still: no epoch improves on the first, so it stops
    still = CNNRAnnotator(**FAST, epochs=6, lr=1e-12, block_lr=0.0, validation_fraction=0.25,
                          patience=2).fit(maps)  # fmt: skip
    assert [h["epoch"] for h in still.history_] == [1, 2, 3]


def test_out_of_vocabulary_labels(maps):
    data = from_label_sets("oov", maps.item_ids, [s + ["zzqxv"] for s in maps.label_sets()])
    data.maps = maps.maps
    with pytest.warns(UserWarning, match="zzqxv"):
        model = CNNRAnnotator(**FAST, epochs=1).fit(data)
    row = model.label_vectors_[data.vocabulary.index("zzqxv")]
    assert model.oov_labels_ == ["zzqxv"] and row.shape == (51,)
    assert row[-1] == 1 and not row[:-1].any()
    with pytest.raises(InvalidInputError, match="zzqxv"):
        CNNRAnnotator(**FAST, oov="error").fit(data)


def test_clear_errors(photos, fitted, tmp_path):
    no_maps = from_label_sets("nomaps", ["a"], [["sky"]])
    with pytest.raises(InvalidInputError, match=r"maps\['efficientnet_lite0@stage6#flip'\]"):
        CNNRAnnotator(**FAST).fit(no_maps)
    with pytest.raises(InvalidInputError, match="with_inputs"):
        fitted.scores(no_maps)
    with pytest.raises(InvalidInputError, match="image folder"):
        fill(no_maps, fitted)
    for bad in ({"epochs": 0}, {"oov": "skip"}, {"lr": 0}, {"device": "tpu"}, {"flip": 1}):
        with pytest.raises(InvalidInputError):
            create_annotator("cnn_r", **bad)
    with pytest.raises(InvalidInputError, match="EfficientNet-Lite or ResNet"):
        from phototag.models.regression import split_backbone

        split_backbone(object())  # type: ignore[arg-type]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    data = from_label_sets("b", ["ok", "broken"], [["sky"], ["sky"]])
    data.image_paths = [photos.image_paths[0], str(broken)]
    filled, report = with_inputs(data, fitted.required_inputs(), **FILL)
    assert filled.item_ids == ["ok"] and "broken.jpg" in report.failures[0][1]


def test_annotate_command_with_a_saved_model(fitted, tmp_path, capsys):
    model_dir = fitted.save(tmp_path / "model")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    code = main(["annotate", str(EXAMPLES / "chelsea.jpg"), str(broken), "--model",
                 str(model_dir), "--format", "json", "--top-k", "3", "--runtime", "torch",
                 "--store", str(tmp_path / "store"), "--workers", "0"])  # fmt: skip
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and "broken.jpg" in err  # the unreadable photo is reported and skipped
    assert [Path(r["path"]).name for r in records] == ["chelsea.jpg"]
    assert records[0]["tags"][0]["label"] == "cat"  # trained on this photo as "cat"
