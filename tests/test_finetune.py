"""Fine-tuning an encoder: crops, a short real run on CPU, the weights file, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from safetensors import safe_open

from phototag.app.cli import main
from phototag.data.readers import read_dataset
from phototag.errors import InvalidInputError
from phototag.features.extract import create_source, load_model_input
from phototag.finetune import (
    WEIGHTS_FORMAT,
    FinetuneRecipe,
    feature_name,
    finetune_encoder,
    random_resized_crops,
    save_network,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SUBJECTS = {"astronaut": "person|space", "chelsea": "cat|animal", "coffee": "cup|drink",
            "rocket": "rocket|space"}  # fmt: skip
TINY = "efficientnet_lite0?input_size=64&resize=squash"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """8 labelled photos (each example and its mirror) and one corrupt file."""
    root = tmp_path_factory.mktemp("finetune")
    rows = ["path,labels,split"]
    for name, labels in SUBJECTS.items():
        image = Image.open(EXAMPLES / f"{name}.jpg").convert("RGB")
        image.thumbnail((160, 160))
        for i, version in enumerate((image, ImageOps.mirror(image))):
            version.save(root / f"{name}-{i}.jpg")
            rows.append(f"{name}-{i}.jpg,{labels},train")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows.append("broken.jpg,cat,train")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_crops_keep_the_shape_and_follow_the_generator():
    x = torch.rand(3, 3, 32, 32)
    one = random_resized_crops(x, 0.5, torch.Generator().manual_seed(1))
    two = random_resized_crops(x, 0.5, torch.Generator().manual_seed(1))
    assert one.shape == x.shape and torch.equal(one, two)
    assert one.min() >= x.min() - 1e-6 and one.max() <= x.max() + 1e-6
    assert not torch.equal(one, x)


def test_recipe_rejects_bad_settings():
    with pytest.raises(InvalidInputError, match="epochs"):
        FinetuneRecipe(epochs=0)
    with pytest.raises(InvalidInputError, match="min_area"):
        FinetuneRecipe(min_area=0)


@pytest.mark.integration
def test_finetuning_changes_the_features_and_saves_a_loadable_network(folder, tmp_path):
    train = read_dataset(f"folder:{folder}").split("train")
    encoder = create_source(TINY, runtime="torch")
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    recipe = FinetuneRecipe(epochs=3, batch_size=4, lr=1e-3)
    result = finetune_encoder(encoder, train, recipe, device="cpu", workers=0, progress=False)
    assert [path for path, _ in result.failures] == [str(folder / "broken.jpg")]
    losses = [h["train_loss"] for h in result.history_]
    assert len(losses) == 3 and all(np.isfinite(losses))
    # 8 photos in batches of 4: 2 steps an epoch, the first epoch warms up (docs/training.md)
    rates = [h["lr_network"] for h in result.history_]
    assert rates[0] == pytest.approx(1e-3 / 3) and rates[1] == pytest.approx(1e-3)
    for key, value in encoder.model.state_dict().items():  # the encoder is left as it was
        assert torch.equal(value, before[key])

    path = save_network(result.network, tmp_path / "tuned.safetensors", {"dataset": "folder"})
    with safe_open(str(path), "pt") as weights:
        assert weights.metadata()["format"] == WEIGHTS_FORMAT
        assert not any(k.startswith("classifier.") for k in weights.keys())  # noqa: SIM118
    name = feature_name(TINY, path)
    assert name.startswith("efficientnet_lite0?") and "input_size=64" in name
    tuned = create_source(name, runtime="torch")
    assert tuned.num_classes == 0 and tuned.feature_id != encoder.feature_id
    pixels = load_model_input(folder / "chelsea-0.jpg", tuned.preprocess)[None]
    new = tuned.forward_pixels(pixels)["pooled"].numpy()
    old = encoder.forward_pixels(pixels)["pooled"].numpy()
    assert np.isfinite(new).all() and not np.allclose(new, old, atol=1e-3)


@pytest.mark.integration
def test_the_command_writes_weights_and_prints_their_feature_name(folder, tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    code = main(["finetune", "--dataset", f"folder:{folder}", "--out", str(out), "--encoder",
                 TINY, "--epochs", "1", "--batch-size", "4", "--workers", "0",
                 "--device", "cpu"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1  # the broken photo is reported, the rest trains
    assert "skipped" in captured.err and "broken.jpg" in captured.err
    assert "train 1/1: " in captured.err and "train_loss" in captured.err
    name = captured.out.strip().splitlines()[-1].strip()
    assert name == feature_name(TINY, out)
    with safe_open(str(out), "pt") as weights:
        recipe = json.loads(weights.metadata()["recipe"])
    assert recipe["epochs"] == 1 and recipe["batch_size"] == 4
    assert create_source(name).num_features == 1280
