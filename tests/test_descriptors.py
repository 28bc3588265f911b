"""Classic image descriptors: dimensions, [0, 1] range, hand-checked cases, invariances."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2", reason="descriptors need opencv-python-headless")
pytest.importorskip("pywt", reason="the wavelet texture needs PyWavelets")
pytest.importorskip("skimage", reason="the LBP descriptor needs scikit-image")

from phototag.errors import InvalidInputError, NotFittedError  # noqa: E402
from phototag.features.descriptors import (  # noqa: E402
    GIST,
    PAPER_FEATURES,
    BagOfVisualWords,
    EdgeDirectionHistogram,
    HSVHistogram,
    ImageViews,
    LabMoments,
    LocalBinaryPattern,
    WaveletTexture,
    available_descriptors,
    combined,
    create_descriptor,
    describe_images,
)
from phototag.features.descriptors.color import SKEW_BOUND  # noqa: E402
from phototag.features.descriptors.texture import _detail_bounds  # noqa: E402

BRIEF_NAMES = ["hsv_hist", "lab_moments", "edge_direction", "wavelet", "lbp", "gist", "bovw_sift"]
DIMS = {
    "hsv_hist": 128,
    "lab_moments": 225,
    "edge_direction": 37,
    "wavelet": 36,
    "lbp": 59,
    "gist": 960,
    "bovw_sift": 5000,
}


# ------------------------------------------------------------------ helpers
def textured(seed: int, height: int = 96, width: int = 128) -> np.ndarray:
    """A smooth random colour image with blobs and edges (deterministic)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 12, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def constant(value=(90, 140, 200), height: int = 64, width: int = 80) -> np.ndarray:
    return np.broadcast_to(np.array(value, np.uint8), (height, width, 3)).copy()


def horizontal_stripes(height: int = 64, width: int = 64, period: int = 16) -> np.ndarray:
    rows = (np.arange(height) // (period // 2)) % 2 * 255
    return np.repeat(np.repeat(rows[:, None, None], width, 1), 3, 2).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted_bovw() -> BagOfVisualWords:
    train = [textured(seed) for seed in range(6)]
    return create_descriptor("bovw_sift", vocabulary_size=16).fit(train)


def ready(name: str, fitted_bovw: BagOfVisualWords):
    if name == "bovw_sift":
        return fitted_bovw
    return create_descriptor(name)


@pytest.fixture(scope="module")
def corel_images(request) -> list[np.ndarray]:
    """A few real Corel-5k training images (skipped without ../shared/data; failed on CI)."""
    from PIL import Image

    root = request.getfixturevalue("shared_data") / "corel5k" / "train"
    files = sorted(root.glob("*.jpeg"))[:8]
    if not files:
        message = f"no Corel-5k JPEGs in {root}"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return [np.asarray(Image.open(Path(f)).convert("RGB")) for f in files]


# --------------------------------------------------------- registry and API
def test_registry_has_the_papers_descriptors():
    names = available_descriptors()
    assert set(BRIEF_NAMES) <= set(names)
    assert set(PAPER_FEATURES) <= set(names)
    for name in names:
        descriptor = create_descriptor(name)
        assert descriptor.name == name
        assert descriptor.dim == DIMS.get(name, 5000)


def test_registry_errors():
    with pytest.raises(InvalidInputError, match="descriptor"):
        create_descriptor("sift_hist")
    with pytest.raises(InvalidInputError, match="bins"):
        create_descriptor("hsv_hist", bins=9)
    with pytest.raises(InvalidInputError, match="fixed by the name"):
        create_descriptor("bovw_sift", color="rgb")
    with pytest.raises(InvalidInputError, match="color"):
        BagOfVisualWords(color="hsv")
    with pytest.raises(InvalidInputError, match="grid"):
        LabMoments(grid=0)
    with pytest.raises(InvalidInputError, match="wavelet"):
        WaveletTexture(wavelet="bior2.2")


def test_config_rebuilds_an_equal_descriptor():
    for name in available_descriptors():
        descriptor = create_descriptor(name)
        again = type(descriptor)(**descriptor.get_config())
        assert again.get_config() == descriptor.get_config()
        assert again.descriptor_id == descriptor.descriptor_id
    assert GIST(n_blocks=2).descriptor_id != GIST().descriptor_id


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((32, 32), np.uint8), "shape"),
        (np.zeros((32, 32, 4), np.uint8), "shape"),
        (np.zeros((32, 32, 3), np.float32), "uint8"),
        (np.zeros((8, 32, 3), np.uint8), "at least 16x16"),
        ([[0, 0, 0]], "numpy array"),
    ],
)
def test_bad_images_are_rejected(bad, match):
    with pytest.raises(InvalidInputError, match=match):
        HSVHistogram()(bad)


@pytest.mark.parametrize("name", BRIEF_NAMES)
def test_dimension_dtype_range_and_determinism(name, fitted_bovw):
    descriptor = ready(name, fitted_bovw)
    for image in (textured(7), textured(8, 50, 170), constant(), horizontal_stripes()):
        vector = descriptor(image)
        assert vector.dtype == np.float32 and vector.shape == (descriptor.dim,)
        assert np.all(np.isfinite(vector))
        assert vector.min() >= 0.0 and vector.max() <= 1.0
        np.testing.assert_array_equal(vector, descriptor(image.copy()))


def test_combined_matches_separate_calls(fitted_bovw):
    descriptors = [ready(name, fitted_bovw) for name in BRIEF_NAMES]
    image = textured(3)
    together = combined(image, descriptors)
    assert list(together) == BRIEF_NAMES
    for descriptor in descriptors:
        np.testing.assert_array_equal(together[descriptor.name], descriptor(image))
    batch = describe_images([image, textured(4)], descriptors)
    assert {k: v.shape for k, v in batch.items()} == {d.name: (2, d.dim) for d in descriptors}
    np.testing.assert_array_equal(batch["gist"][0], together["gist"])
    with pytest.raises(InvalidInputError, match="distinct names"):
        combined(image, [HSVHistogram(), HSVHistogram(h_bins=4)])


def test_views_are_converted_once():
    views = ImageViews(textured(0))
    combined(views, [HSVHistogram(), LabMoments(), WaveletTexture()])
    lab = views.lab
    LabMoments().compute(views)
    assert views.lab is lab


def test_descriptors_pickle(fitted_bovw):
    image = textured(5)
    for descriptor in (GIST(), fitted_bovw, HSVHistogram()):
        descriptor(image)  # build caches first: they must not break pickling
        clone = pickle.loads(pickle.dumps(descriptor))
        np.testing.assert_array_equal(clone(image), descriptor(image))


# --------------------------------------------------------------- HSV histogram
def test_hsv_pure_red_is_one_bin():
    vector = HSVHistogram()(constant((255, 0, 0)))
    # hue sector 0 (centred on 0 degrees), top saturation bin 3, top value bin 3
    assert vector[(0 * 4 + 3) * 4 + 3] == 1.0
    assert vector.sum() == pytest.approx(1.0)


def test_hsv_hue_bins_are_centred():
    hsv = HSVHistogram()
    # pure blue (240 degrees) is the centre of sector 240 / 45 = 5.33 -> sector 5
    assert np.argmax(hsv(constant((0, 0, 255)))) == (5 * 4 + 3) * 4 + 3
    # magenta-red just below 360 degrees wraps into sector 0 with pure red
    assert np.argmax(hsv(constant((255, 0, 20)))) == np.argmax(hsv(constant((255, 0, 0))))


def test_hsv_invariant_to_pixel_permutation():
    image = textured(11)
    flat = image.reshape(-1, 3)
    shuffled = flat[np.random.default_rng(0).permutation(len(flat))].reshape(image.shape)
    np.testing.assert_array_equal(HSVHistogram()(image), HSVHistogram()(shuffled))
    assert HSVHistogram()(image).sum() == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------- LAB moments
def test_lab_moments_of_a_constant_image():
    vector = LabMoments()(constant((255, 255, 255))).reshape(5, 5, 3, 3)
    # white: L* = 100 -> 255, a* = b* = 0 -> 128 (8-bit OpenCV Lab)
    np.testing.assert_allclose(
        vector[..., 0], np.broadcast_to([1.0, 128 / 255, 128 / 255], (5, 5, 3))
    )
    assert np.all(vector[..., 1] == 0.0)  # std
    assert np.all(vector[..., 2] == 0.5)  # zero third moment


def test_lab_moments_match_brute_force():
    import cv2

    image = textured(2, 37, 53)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float64)
    rows, cols = (
        np.round(np.linspace(0, 37, 6)).astype(int),
        np.round(np.linspace(0, 53, 6)).astype(int),
    )
    expected = []
    for i in range(5):
        for j in range(5):
            cell = lab[rows[i] : rows[i + 1], cols[j] : cols[j + 1]].reshape(-1, 3)
            for c in range(3):
                x = cell[:, c]
                third = np.mean((x - x.mean()) ** 3)
                expected += [x.mean() / 255, x.std() / 127.5, (np.cbrt(third) / SKEW_BOUND + 1) / 2]
    np.testing.assert_allclose(LabMoments()(image), expected, rtol=1e-5, atol=1e-6)


def test_lab_skew_bound_is_reached_by_the_extreme_two_point_image():
    # black/white pixels with P(white) = (3 - sqrt 3) / 6 maximise the third central
    # moment of the L channel; the scaled value must then be close to 1.
    n = 6000
    white = np.zeros(n, bool)
    white[: round(n * (3 - np.sqrt(3)) / 6)] = True
    pixels = np.where(white[:, None], 255, 0).astype(np.uint8) * np.ones(3, np.uint8)
    image = pixels.reshape(60, 100, 3)
    vector = LabMoments(grid=1)(image).reshape(3, 3)
    assert 0.999 < vector[0, 2] <= 1.0  # L skew
    assert vector[0, 1] == pytest.approx(np.sqrt(white.mean() * (1 - white.mean())) / 0.5, rel=1e-6)


# ------------------------------------------------------ edge direction histogram
def test_edge_direction_of_a_constant_image_is_all_non_edge():
    vector = EdgeDirectionHistogram()(constant())
    assert vector[-1] == 1.0 and not vector[:-1].any()


def test_edge_direction_of_horizontal_stripes_is_vertical_gradient():
    vector = EdgeDirectionHistogram()(horizontal_stripes())
    # gradient up (90 deg, dark above bright... either polarity) or down (270 deg)
    assert vector[9] + vector[27] == pytest.approx(1.0)
    assert vector[9] > 0 and vector[27] > 0
    assert 0 < vector[-1] < 1
    transposed = EdgeDirectionHistogram()(
        np.ascontiguousarray(horizontal_stripes().transpose(1, 0, 2))
    )
    assert transposed[0] + transposed[18] == pytest.approx(1.0)  # vertical stripes: 0 / 180 deg


def test_edge_direction_bins_sum_to_one_on_textured_images():
    vector = EdgeDirectionHistogram()(textured(1))
    assert vector[:-1].sum() == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------------------- wavelet
def test_wavelet_of_a_constant_image_is_zero():
    assert not WaveletTexture()(constant()).any()


def test_wavelet_haar_bounds():
    np.testing.assert_allclose(
        _detail_bounds("haar", 4), [[1, 1, 1], [2, 2, 2], [4, 4, 4], [8, 8, 8]]
    )


def test_wavelet_pixel_checkerboard_is_pure_level1_diagonal():
    yy, xx = np.mgrid[:64, :64]
    board = ((yy + xx) % 2 * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    vector = WaveletTexture()(board).reshape(3, 4, 3)  # channel, level, orientation
    assert vector[0, 0, 2] == pytest.approx(1.0)  # |c| reaches the Haar bound everywhere
    vector[0, 0, 2] = 0
    np.testing.assert_allclose(vector, 0, atol=1e-6)  # a, b are grey; coarser levels flat


def test_wavelet_other_orthogonal_wavelets_stay_in_range():
    vector = WaveletTexture(wavelet="db2", levels=3)(textured(9))
    assert vector.shape == (27,) and vector.min() >= 0 and vector.max() <= 1


# --------------------------------------------------------------------- LBP
def test_lbp_of_a_constant_image_is_one_bin():
    vector = LocalBinaryPattern()(constant())
    assert np.count_nonzero(vector) == 1 and vector.max() == 1.0


def test_lbp_matches_scikit_image_on_the_interior():
    from skimage.feature import local_binary_pattern

    image = textured(4)
    gray = ImageViews(image).gray
    codes = local_binary_pattern(gray, 8, 1, method="nri_uniform")[1:-1, 1:-1]
    expected = np.bincount(codes.astype(int).ravel(), minlength=59) / codes.size
    np.testing.assert_allclose(LocalBinaryPattern()(image), expected, rtol=1e-6)
    assert LocalBinaryPattern(points=16, radius=2).dim == 16 * 15 + 3


# -------------------------------------------------------------------- GIST
def test_gist_is_unit_norm_and_zero_for_flat_images():
    assert np.linalg.norm(GIST()(textured(6))) == pytest.approx(1.0, abs=1e-5)
    assert not GIST()(constant()).any()


def test_gist_mirror_image_permutes_orientations_and_columns():
    gist = GIST()
    image = textured(12, 128, 128)  # already 128 x 128: no resizing
    plain = gist(image).reshape(3, 20, 4, 4)
    mirrored = gist(np.ascontiguousarray(image[:, ::-1])).reshape(3, 20, 4, 4)
    # mirroring maps orientation j of a scale with n orientations to (n - j) mod n
    permutation, start = [], 0
    for n in gist.orientations:
        permutation += [start + (n - j) % n for j in range(n)]
        start += n
    np.testing.assert_allclose(mirrored, plain[:, permutation, :, ::-1], atol=1e-5)
    assert not np.allclose(mirrored, plain, atol=1e-3)  # but the vector does change


def test_gist_channel_order_follows_rgb():
    gist = GIST()
    image = textured(13)
    swapped = gist(np.ascontiguousarray(image[..., ::-1])).reshape(3, -1)
    np.testing.assert_allclose(swapped, gist(image).reshape(3, -1)[::-1], atol=1e-6)


# ------------------------------------------------------------------- BoVW
def test_bovw_needs_fit():
    with pytest.raises(NotFittedError):
        create_descriptor("bovw_sift")(textured(0))
    assert create_descriptor("bovw_sift").state_dict() == {}


def test_bovw_state_round_trip(fitted_bovw):
    state = fitted_bovw.state_dict()
    assert set(state) == {"codebook", "idf"}
    assert state["codebook"].shape == (16, 128) and state["codebook"].dtype == np.float32
    assert state["idf"].shape == (16,) and np.all(state["idf"] >= 1.0)
    clone = create_descriptor("bovw_sift", vocabulary_size=16).load_state_dict(state)
    image = textured(20)
    np.testing.assert_array_equal(clone(image), fitted_bovw(image))
    assert clone.descriptor_id == fitted_bovw.descriptor_id


def test_bovw_rejects_mismatched_state(fitted_bovw):
    state = fitted_bovw.state_dict()
    with pytest.raises(InvalidInputError, match="codebook"):
        create_descriptor("bovw_sift", vocabulary_size=32).load_state_dict(state)
    with pytest.raises(InvalidInputError, match="codebook"):
        create_descriptor("bovw_rgbsift", vocabulary_size=16).load_state_dict(state)
    with pytest.raises(InvalidInputError, match="arrays"):
        create_descriptor("bovw_sift", vocabulary_size=16).load_state_dict({"idf": state["idf"]})


def test_bovw_fit_is_deterministic(fitted_bovw):
    again = create_descriptor("bovw_sift", vocabulary_size=16).fit(
        [textured(seed) for seed in range(6)]
    )
    np.testing.assert_array_equal(
        again.state_dict()["codebook"], fitted_bovw.state_dict()["codebook"]
    )


def test_bovw_pyramid_levels_agree(fitted_bovw):
    vector = fitted_bovw(textured(21)).reshape(5, 16)
    # level 0 (whole image) = sum of the four level-1 cells: same idf, equal weights (1/2)
    np.testing.assert_allclose(vector[0], vector[1:].sum(axis=0), atol=1e-6)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_bovw_local_features_by_sampling():
    image = textured(22)  # 96 x 128: dense grid of patch 16 / step 8 = 11 x 15 points
    dense = BagOfVisualWords(sampling="dense").local_features(image)
    assert dense[0].shape == (11 * 15, 2) and dense[1].shape == (165, 128)
    assert dense[1].dtype == np.uint8
    harris = BagOfVisualWords(sampling="harris", max_harris_points=40).local_features(image)
    assert 0 < len(harris[0]) <= 40
    both = BagOfVisualWords().local_features(image)
    assert len(both[0]) == len(dense[0]) + len(
        BagOfVisualWords(sampling="harris").local_features(image)[0]
    )
    for color in ("rgb", "c"):
        features = BagOfVisualWords(color=color, sampling="dense").local_features(image)[1]
        assert features.shape == (165, 384)
        # the first plane of C-SIFT is the grey SIFT
    np.testing.assert_array_equal(
        BagOfVisualWords(color="c", sampling="dense").local_features(image)[1][:, :128], dense[1]
    )


def test_bovw_needs_enough_features_to_fit():
    with pytest.raises(InvalidInputError, match="local features"):
        create_descriptor("bovw_sift_harris", vocabulary_size=1000).fit([textured(0)])


# --------------------------------------------------------------- real images
def test_real_corel_images(corel_images):
    bovw = create_descriptor("bovw_sift", vocabulary_size=32).fit(corel_images[:6])
    descriptors = [bovw if n == "bovw_sift" else create_descriptor(n) for n in BRIEF_NAMES]
    features = describe_images(corel_images, descriptors)
    for name, matrix in features.items():
        assert matrix.shape == (len(corel_images), DIMS[name] if name != "bovw_sift" else 160)
        assert matrix.dtype == np.float32
        assert matrix.min() >= 0.0 and matrix.max() <= 1.0
        # real photos differ from each other in every descriptor
        assert len({row.tobytes() for row in matrix}) == len(corel_images), name
    assert np.allclose(features["hsv_hist"].sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(features["lbp"].sum(axis=1), 1.0, atol=1e-5)


def test_bovw_dense_sift_sees_only_its_patch():
    image = textured(23, 64, 64)
    bovw = BagOfVisualWords(sampling="dense", step=16)
    points, features = bovw.local_features(image)
    index = int(np.flatnonzero((points == [24, 24]).all(axis=1))[0])
    yy, xx = np.mgrid[:64, :64]
    far = np.maximum(abs(yy - 24), abs(xx - 24)) > 16  # outside the 16 x 16 patch + margin
    changed = image.copy()
    changed[far] = 255 - changed[far]
    np.testing.assert_array_equal(bovw.local_features(changed)[1][index], features[index])
    near = np.maximum(abs(yy - 24), abs(xx - 24)) > 4
    changed[near] = 255 - image[near]
    assert not np.array_equal(bovw.local_features(changed)[1][index], features[index])
