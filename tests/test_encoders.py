"""Image encoders: registry, EfficientNet-Lite vs its reference package, pretrained
predictions on public-domain photos, preprocessing, ResNet weights round trips, ONNX."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from phototag.errors import InvalidInputError, PhototagError
from phototag.features.encoders import (
    Preprocess,
    WeightsError,
    available_encoders,
    create_encoder,
    default_encoder,
    encoder_arguments,
    imagenet_class,
    imagenet_classes,
)
from phototag.features.encoders.efficientnet_lite import package_weights_path
from phototag.features.encoders.preprocess import transform

CAT_WNIDS = {  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "n02123045",
    "n02123159",
    "n02123394",
    "n02123597",
    "n02124075",
}
COFFEE_WNIDS = {"n07920052", "n07930864", "n03063599"}  # espresso, cup, coffee mug


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a 2-core machine shared with other jobs, OpenMP's
    2-thread barriers make small CPU forwards 5-20x slower (measured); alone, 1 thread
    costs under 2x. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lite0():
    return create_encoder("efficientnet_lite0")


@pytest.fixture(scope="module")
def lite2():
    return create_encoder("efficientnet_lite2")


@pytest.fixture(scope="module")
def photos():
    data = pytest.importorskip("skimage.data")
    return {"cat": data.chelsea(), "coffee": data.coffee()}


@pytest.fixture(scope="module")
def resnet101_random():
    torch.manual_seed(0)
    return create_encoder("resnet101", weights=None, pretrained=False)


# ----------------------------------------------------------------------------- registry


def test_registry_lists_encoders_and_default():
    assert {"efficientnet_lite0", "efficientnet_lite2", "resnet101"} <= set(available_encoders())
    assert default_encoder() == "efficientnet_lite2"
    args = encoder_arguments("efficientnet_lite2")
    assert args["runtime"] == "torch" and args["pretrained"] is True


def test_registry_rejects_unknown_names_and_arguments():
    with pytest.raises(InvalidInputError, match="encoder"):
        create_encoder("vgg16")
    with pytest.raises(InvalidInputError, match="colour"):
        create_encoder("efficientnet_lite0", colour=True)
    with pytest.raises(InvalidInputError, match="runtime"):
        create_encoder("efficientnet_lite0", runtime="tensorrt")


# ------------------------------------------------------------- architecture equivalence


@pytest.mark.parametrize(
    ("name", "input_size"),
    [("efficientnet_lite0", None), ("efficientnet_lite2", None), ("efficientnet_lite0", 97)],
)
@pytest.mark.integration
def test_lite_matches_reference_package(name, input_size, photos):
    """Same weights in the package's own model give the same logits (incl. odd sizes,
    where TF-SAME padding is symmetric, and even ones, where it is not)."""
    reference_lib = pytest.importorskip("efficientnet_lite_pytorch")
    kwargs = {} if input_size is None else {"input_size": input_size}
    encoder = create_encoder(name, **kwargs)
    size = encoder.preprocess.input_size
    reference = reference_lib.EfficientNet.from_name(name.replace("_", "-"), image_size=size)
    state = torch.load(package_weights_path(name), map_location="cpu", weights_only=True)
    reference.load_state_dict(state, strict=True)
    reference.eval()
    noise = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    x = torch.cat([noise, encoder.transform(list(photos.values()))])
    with torch.inference_mode():
        expected = reference(x)
    got = encoder.forward_features(x, ["logits"])["logits"]
    assert (got - expected).abs().max().item() < 1e-4


# -------------------------------------------------------------------- pretrained check


@pytest.mark.parametrize("which", ["lite0", "lite2"])
def test_pretrained_recognises_cat_and_espresso(which, request, photos):
    encoder = request.getfixturevalue(which)
    x = encoder.transform([photos["cat"], photos["coffee"]])
    top = encoder.top_classes(x, k=5)
    assert top[0][0][0].wnid in CAT_WNIDS, top[0]
    assert top[1][0][0].wnid in COFFEE_WNIDS, top[1]
    probs = encoder.class_probabilities(x)
    assert probs.shape == (2, 1000)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))


def test_imagenet_class_list():
    classes = imagenet_classes()
    assert len(classes) == 1000
    wnids = [c.wnid for c in classes]
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000
    assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in wnids)
    assert imagenet_class(281).name == "tabby" and imagenet_class(281).lemmas == (
        "tabby",
        "tabby cat",
    )
    assert imagenet_class("n07920052").index == 967
    assert imagenet_class(0).wordnet_offset == 1440764
    with pytest.raises(InvalidInputError):
        imagenet_class(1000)


# ------------------------------------------------------------------------ outputs


def test_lite0_output_shapes(lite0, photos):
    x = lite0.transform([photos["cat"], photos["coffee"], photos["cat"]])
    assert x.shape == (3, 3, 224, 224) and x.dtype == torch.float32
    out = lite0.forward_features(x)
    assert list(out) == [*lite0.stage_names, "pooled", "logits"]
    for spec in lite0.stages:
        side = math.ceil(224 / spec.reduction)
        assert out[spec.name].shape == (3, spec.channels, side, side), spec
    assert [s.channels for s in lite0.stages] == [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert out["pooled"].shape == (3, 1280) and out["logits"].shape == (3, 1000)
    torch.testing.assert_close(out["pooled"], out["head"].mean((2, 3)))
    reductions = {s.name: s.reduction for s in lite0.stages}
    assert [reductions[n] for n in lite0.scales] == [2, 4, 8, 16, 32]
    # selecting outputs, and the helpers, agree with the full dict
    torch.testing.assert_close(lite0.pooled(x), out["pooled"])
    maps = lite0.feature_maps(x, ["stage3"])
    assert list(maps) == ["stage3"]
    np.testing.assert_allclose(
        lite0.encode([photos["cat"], photos["coffee"]], batch_size=1),
        out["pooled"][:2].numpy(),
        rtol=1e-5,
        atol=1e-5,
    )
    with pytest.raises(InvalidInputError, match="outputs"):
        lite0.forward_features(x, ["stage9"])
    with pytest.raises(InvalidInputError, match="x"):
        lite0.forward_features(torch.zeros(2, 224, 224))


def test_features_can_feed_training_code(lite0, photos):
    """Extracted features are ordinary tensors (not inference tensors): a trainable head
    on top of them back-propagates."""
    x = lite0.transform([photos["cat"], photos["coffee"]])
    head = torch.nn.Linear(1280, 3)
    out = lite0.forward_features(x, ["pooled", "stage7"])
    loss = head(out["pooled"]).sum() + out["stage7"].mean() * head.bias.sum()
    loss.backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


def test_lite2_stage_channels(lite2):
    assert lite2.preprocess.input_size == 260 and lite2.num_features == 1280
    assert [s.channels for s in lite2.stages] == [32, 16, 24, 48, 88, 120, 208, 352, 1280]
    assert len(lite2.model.blocks) == 7
    assert [len(stage) for stage in lite2.model.blocks] == [1, 3, 3, 4, 4, 5, 1]


def test_feature_extraction_leaves_training_mode_alone(lite0, photos):
    x = lite0.transform([photos["cat"]])
    expected = lite0.pooled(x)
    lite0.model.train()
    try:
        torch.testing.assert_close(lite0.pooled(x), expected)
        assert lite0.model.training
    finally:
        lite0.model.eval()


def test_config_is_json_and_preprocess_round_trips(lite2):
    config = json.loads(json.dumps(lite2.config()))
    assert config["name"] == "efficientnet_lite2" and config["num_features"] == 1280
    assert Preprocess.from_dict(config["preprocess"]) == lite2.preprocess
    assert lite2.preprocess.mean == (127.0, 127.0, 127.0)
    assert lite2.preprocess.std == (128.0, 128.0, 128.0)
    assert lite2.preprocess.crop_fraction == pytest.approx(260 / 292)
    assert lite2.feature_id.startswith("efficientnet_lite2@")


# ------------------------------------------------------------------- preprocessing


def test_preprocess_odd_sizes_grey_and_alpha():
    recipe = Preprocess(input_size=32)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 81, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (50, 19), dtype=np.uint8)
    images = [
        np.zeros((1, 1, 3), np.uint8),  # one pixel
        rng.integers(0, 256, (3, 500, 3), dtype=np.uint8),  # thin panorama
        rng.integers(0, 256, (501, 7), dtype=np.uint8),  # thin grey
        grey,
        grey[:, :, None],
        np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),  # opaque RGBA
        Image.fromarray(rgb).convert("P"),
        Image.fromarray(grey),  # mode L
        torch.from_numpy(rgb).permute(2, 0, 1).contiguous(),  # CHW uint8 tensor
        rgb,
    ]
    x = transform(images, recipe)
    assert x.shape == (len(images), 3, 32, 32) and torch.isfinite(x).all()
    # grey input is repeated to 3 identical channels, the same as converting it to RGB
    torch.testing.assert_close(x[3, 0], x[3, 2])
    torch.testing.assert_close(x[3], x[4])
    torch.testing.assert_close(x[3], x[7])
    grey_rgb = np.asarray(Image.fromarray(grey).convert("RGB"))
    torch.testing.assert_close(x[3], transform([grey_rgb], recipe)[0])
    # opaque alpha changes nothing; a CHW tensor equals its HWC array
    torch.testing.assert_close(x[5], x[9])
    torch.testing.assert_close(x[8], x[9])


def test_preprocess_alpha_is_flattened_on_white():
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    x = transform([rgba], Preprocess(input_size=16, mean=(0, 0, 0), std=(1, 1, 1)))
    torch.testing.assert_close(x, torch.full_like(x, 255.0))


def test_center_crop_versus_squash():
    # 300 x 100: black | white | black thirds. The centre square is all white (its
    # outermost output pixels may blend in a little black: the resampling filter
    # reads just past the crop box, as resize-then-crop does).
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 100:200] = 255
    identity = {"mean": (0, 0, 0), "std": (1, 1, 1), "crop_fraction": 1.0}
    crop = transform([image], Preprocess(input_size=20, resize="center_crop", **identity))
    squash = transform([image], Preprocess(input_size=30, resize="squash", **identity))
    assert crop[..., 1:-1].min() > 250 and crop.min() > 200
    assert squash[0, :, :, :5].max() < 5 and squash[0, :, :, 12:18].min() > 250


def test_preprocess_rejects_bad_inputs():
    recipe = Preprocess(input_size=32)
    with pytest.raises(InvalidInputError, match="uint8"):
        transform([np.zeros((8, 8, 3), np.float32)], recipe)
    with pytest.raises(InvalidInputError, match="list"):
        transform(np.zeros((8, 8, 3), np.uint8), recipe)
    with pytest.raises(InvalidInputError, match="shape"):
        transform([np.zeros((8, 8, 2), np.uint8)], recipe)
    with pytest.raises(InvalidInputError, match="empty"):
        transform([np.zeros((0, 8, 3), np.uint8)], recipe)
    with pytest.raises(InvalidInputError):
        transform(["photo.jpg"], recipe)
    with pytest.raises(InvalidInputError, match="resize"):
        Preprocess(input_size=32, resize="stretch")
    with pytest.raises(InvalidInputError, match="crop_fraction"):
        Preprocess(input_size=32, crop_fraction=0)
    with pytest.raises(InvalidInputError, match="preprocess"):
        Preprocess.from_dict({"input_size": 32, "colour": "rgb"})


# ------------------------------------------------------------------------- ResNet


def test_resnet101_needs_weights():
    with pytest.raises(InvalidInputError, match="weights"):
        create_encoder("resnet101")


@pytest.mark.integration
def test_resnet101_scales_match_the_paper(resnet101_random):
    encoder = resnet101_random
    assert encoder.scales == ("conv1", "conv2_3", "conv3_4", "conv4_23", "conv5_3")
    assert encoder.num_features == 2048 and encoder.preprocess.input_size == 224
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    out = encoder.forward_features(x)
    shapes = {name: tuple(out[name].shape[1:]) for name in encoder.scales}
    assert shapes == {
        "conv1": (64, 112, 112),
        "conv2_3": (256, 56, 56),
        "conv3_4": (512, 28, 28),
        "conv4_23": (1024, 14, 14),
        "conv5_3": (2048, 7, 7),
    }
    assert out["pooled"].shape == (1, 2048) and out["logits"].shape == (1, 1000)
    assert out["conv1"].min() >= 0  # after ReLU


@pytest.mark.integration
def test_resnet101_weights_round_trip(resnet101_random, tmp_path):
    from safetensors.torch import save_file

    encoder = resnet101_random
    state = encoder.model.state_dict()
    pth, st = tmp_path / "r101.pth", tmp_path / "r101.safetensors"
    torch.save(state, pth)
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    expected = encoder.forward_features(x)
    for path in (pth, st):
        loaded = create_encoder("resnet101", weights=path)
        got = loaded.forward_features(x)
        for name in expected:
            assert torch.equal(got[name], expected[name]), (path.suffix, name)
        assert loaded.weights_sha256 == encoder.weights_sha256
        assert loaded.class_names is not None  # 1000-way fc -> ImageNet names
    assert got["conv5_3"].shape == (2, 2048, 2, 2)


@pytest.mark.integration
def test_resnet_weights_without_fc_and_broken_files(resnet101_random, tmp_path):
    state = {
        k: v for k, v in resnet101_random.model.state_dict().items() if not k.startswith("fc.")
    }
    headless = tmp_path / "headless.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, headless)
    encoder = create_encoder("resnet101", weights=headless)
    assert encoder.num_classes == 0 and "logits" not in encoder.output_names
    with pytest.raises(PhototagError, match="classifier"):
        encoder.class_probabilities(torch.zeros(1, 3, 32, 32))

    state.pop("layer3.22.conv2.weight")
    missing = tmp_path / "missing.pth"
    torch.save(state, missing)
    with pytest.raises(WeightsError, match="layer3.22.conv2.weight"):
        create_encoder("resnet101", weights=missing)
    with pytest.raises(WeightsError, match="resnet50|missing|unexpected"):
        create_encoder("resnet50", weights=headless)

    pickled = tmp_path / "pickled.pth"
    torch.save({"conv1.weight": torch.zeros(1), "hook": Preprocess(input_size=32)}, pickled)
    with pytest.raises(WeightsError, match="weights_only"):
        create_encoder("resnet101", weights=pickled)
    with pytest.raises(InvalidInputError, match="weights"):
        create_encoder("resnet101", weights=tmp_path / "absent.safetensors")


def test_lite_user_weights_file(lite0, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "lite0.safetensors"
    save_file(dict(lite0.model.state_dict()), str(path))
    again = create_encoder("efficientnet_lite0", weights=path)
    assert again.weights_sha256 == lite0.weights_sha256
    assert again.feature_id == lite0.feature_id
    random = create_encoder("efficientnet_lite0", pretrained=False)
    assert random.weights_sha256 != lite0.weights_sha256 and random.class_names is None


# --------------------------------------------------------------------------- ONNX


@pytest.mark.integration
def test_onnx_runtime_matches_eager(lite0, photos, tmp_path):
    pytest.importorskip("onnxruntime")
    fast = create_encoder("efficientnet_lite0", runtime="onnx", cache_dir=tmp_path)
    assert fast.runtime == "onnx"
    files = list((tmp_path / "encoders").glob("*.onnx"))
    assert len(files) == 1 and lite0.weights_sha256[:16] in files[0].name
    x = lite0.transform([photos["cat"], photos["coffee"]])
    expected, outputs = lite0.forward_features(x), fast.forward_features(x)
    assert list(outputs) == list(expected)
    assert all(isinstance(v, np.ndarray) for v in outputs.values())  # ONNX gives numpy
    got = {name: torch.from_numpy(value) for name, value in outputs.items()}
    for name in expected:
        scale = expected[name].abs().max().item()
        assert (got[name] - expected[name]).abs().max().item() <= 1e-4 * max(scale, 1.0), name
    cosine = torch.nn.functional.cosine_similarity(got["pooled"], expected["pooled"])
    assert cosine.min().item() > 0.99999
    assert [c for c, _ in fast.top_classes(x)[0]] == [c for c, _ in lite0.top_classes(x)[0]]
    # other input sizes run in torch; a second encoder reuses the cached file
    small = fast.pooled(torch.zeros(1, 3, 64, 64))
    assert isinstance(small, np.ndarray) and small.shape == (1, 1280)
    mtime = files[0].stat().st_mtime_ns
    create_encoder("efficientnet_lite0", runtime="onnx", cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == mtime


@pytest.mark.integration
def test_forward_pixels_normalises_inside_the_onnx_graph(lite0, photos, tmp_path, monkeypatch):
    from phototag.features.encoders.preprocess import normalize, resize_to_input

    pytest.importorskip("onnxruntime")
    fast = create_encoder("efficientnet_lite0", runtime="onnx", cache_dir=tmp_path)
    pixels = np.stack(
        [
            np.asarray(resize_to_input(Image.fromarray(photos[n]), lite0.preprocess))
            for n in ("cat", "coffee")
        ]
    )
    expected = lite0.forward_features(normalize(pixels, lite0.preprocess), ["pooled", "logits"])
    for encoder in (lite0, fast):  # torch normalises in numpy, ONNX inside the graph
        got = {
            name: torch.as_tensor(value)
            for name, value in encoder.forward_pixels(pixels, ["pooled", "logits"]).items()
        }
        for name in expected:
            scale = max(expected[name].abs().max().item(), 1.0)
            assert (got[name] - expected[name]).abs().max().item() <= 1e-4 * scale, name
    graphs = sorted(p.name for p in (tmp_path / "encoders").glob("*.onnx"))
    pixel_graph = f"{graphs[1][:-5]}-pixels-{lite0.preprocess.digest()}.onnx"
    assert graphs == [pixel_graph, graphs[1]]
    # without the onnx package no pixel graph can be built: normalised here, same outputs
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    fast._backend._pixel_sessions.clear()
    (tmp_path / "encoders" / pixel_graph).unlink()
    got = torch.from_numpy(fast.forward_pixels(pixels, ["pooled"])["pooled"])
    assert (got - expected["pooled"]).abs().max().item() <= 1e-4
    assert not (tmp_path / "encoders" / pixel_graph).exists()
    with pytest.raises(InvalidInputError, match="pixels"):
        fast.forward_pixels(pixels.astype(np.float32))
    with pytest.raises(InvalidInputError, match="pixels"):
        fast.forward_pixels(pixels[:, :100])


@pytest.mark.parametrize("missing", ["onnxruntime", "onnx"])
def test_onnx_runtime_falls_back_without_packages(missing, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, missing, None)  # import fails
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = create_encoder(
            "efficientnet_lite0", pretrained=False, runtime="onnx", cache_dir=tmp_path
        )
    assert encoder.runtime == "torch"
    assert any(f"pip install {missing}" in str(w.message) for w in caught)


def test_onnx_sessions_take_the_threads_asked_for_let_idle_ones_sleep_and_plan_no_memory():
    from phototag.features.encoders.runtime import make_session
    from phototag.features.encoders.shipped import shipped_graph

    graph = shipped_graph("efficientnet_lite2")
    assert graph is not None
    options = make_session(graph.path, threads=2).get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert not options.enable_mem_pattern
