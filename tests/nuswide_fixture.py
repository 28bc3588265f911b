"""A small NUS-WIDE in the official layout, with tiny generated JPEG photos, for tests.

``make_nuswide_fixture(root)`` writes the files the ``nuswide`` reader reads (ground
truth for the official split and for all images, concept list, image lists, the user-tag
matrix with its tag list, and ``Flickr/<concept>/<file>.jpg``) and returns what it wrote,
so a test can check a reader or train a model end to end on images + user tags::

    fixture = make_nuswide_fixture(tmp_path / "nuswide")
    data = read_dataset(fixture.spec)     # images, user tags, labels, train/test splits

Each photo is drawn from its labels (blue sky at the top, white clouds, a yellow sun, a
blue-green sea band, sand or grass at the bottom; another concept gets a patch of its own
colour), and its user tags are words of its labels plus an occasional unrelated one, so
a model can learn something from either.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CONCEPTS = ("beach", "clouds", "grass", "ocean", "sky", "sun")
TAGS = (
    "nature",
    "sky",
    "blue",
    "clouds",
    "green",
    "sea",
    "beach",
    "summer",
    "sun",
    "grass",
    "ocean",
    "sand",
)
# The user tags a photo of a concept gets (those in the tag list).
TAG_WORDS = {
    "beach": ("beach", "sand", "summer"),
    "clouds": ("clouds",),
    "grass": ("grass", "green"),
    "ocean": ("ocean", "sea", "blue"),
    "sky": ("sky", "blue"),
    "sun": ("sun", "summer"),
}


@dataclass(frozen=True)
class NuswideFixture:
    """What `make_nuswide_fixture` wrote. Ids are ``<concept>/<file>.jpg`` (the reader's)."""

    root: Path
    concepts: tuple[str, ...]
    tags: tuple[str, ...]
    train: tuple[str, ...]
    test: tuple[str, ...]
    labels: dict[str, frozenset[str]]
    user_tags: dict[str, frozenset[str]]

    @property
    def spec(self) -> str:
        """The dataset spec that reads it: ``nuswide:ROOT``."""
        return f"nuswide:{self.root}"

    @property
    def item_ids(self) -> tuple[str, ...]:
        """The reader's item order: train, then test."""
        return self.train + self.test


def _colour(k: int) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb((k * 0.618) % 1.0, 0.7, 0.9)
    return int(red * 255), int(green * 255), int(blue * 255)


def draw_photo(
    labels: set[str] | frozenset[str],
    concepts: Sequence[str],
    size: tuple[int, int],
    rng: np.random.Generator,
) -> Image.Image:
    """A small RGB scene showing `labels`, with sensor-like noise."""
    width, height = size
    pixels = np.empty((height, width, 3), dtype=np.float32)
    pixels[:] = (120, 115, 110)
    if "sky" in labels:
        shade = np.linspace(0, 1, height // 2)[:, None, None]
        pixels[: height // 2] = (90, 140, 230) * (1 - shade) + (170, 200, 240) * shade
    if "ocean" in labels:
        pixels[height // 2 : 3 * height // 4] = (30, 110, 150)
    if "beach" in labels and "grass" in labels:
        pixels[3 * height // 4 :, : width // 2] = (220, 195, 140)
        pixels[3 * height // 4 :, width // 2 :] = (60, 150, 50)
    elif "beach" in labels:
        pixels[3 * height // 4 :] = (220, 195, 140)
    elif "grass" in labels:
        pixels[3 * height // 4 :] = (60, 150, 50)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(image)
    if "sun" in labels:
        x, y, r = int(0.8 * width), int(0.15 * height), max(2, height // 10)
        pen.ellipse((x - r, y - r, x + r, y + r), fill=(250, 220, 60))
    if "clouds" in labels:
        for _ in range(2):
            x, y = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 4))
            pen.ellipse((x, y, x + width // 3, y + height // 8), fill=(245, 245, 245))
    for k, concept in enumerate(concepts):  # concepts without a drawing of their own
        if concept in labels and concept not in TAG_WORDS:
            x, y = int(rng.integers(0, width // 2)), int(rng.integers(height // 4, height // 2))
            pen.rectangle((x, y, x + width // 3, y + height // 4), fill=_colour(k))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _write_lines(path: Path, lines: Sequence[str], end: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + end for line in lines).encode())


def _pick_labels(concepts: Sequence[str], n: int, rng: np.random.Generator) -> list[set[str]]:
    """1-3 labels per item; the first items cover every concept once where n allows."""
    chosen = []
    for i in range(n):
        count = int(rng.integers(1, 4))
        picked = {
            str(c) for c in rng.choice(concepts, size=min(count, len(concepts)), replace=False)
        }
        if i < len(concepts):
            picked.add(concepts[i])
        chosen.append(picked)
    return chosen


def make_nuswide_fixture(
    root: Path,
    *,
    n_train: int = 8,
    n_test: int = 4,
    concepts: Sequence[str] = CONCEPTS,
    tags: Sequence[str] = TAGS,
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
) -> NuswideFixture:
    """Write a NUS-WIDE of `n_train` + `n_test` photos (``size`` = width, height) under
    `root` in the official layout, with `concepts` as Concepts81 and `tags` as TagList1k."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    label_sets = _pick_labels(concepts, n, rng)
    tag_set = set(tags)
    items = []
    for i, labels in enumerate(label_sets):
        folder = sorted(labels)[0]
        name = f"{folder}/{i + 1:04d}_{int(rng.integers(10**8, 10**10))}.jpg"
        words = {w for label in labels for w in TAG_WORDS.get(label, (label,)) if w in tag_set}
        if rng.random() < 0.4:
            words.add(str(rng.choice(tags)))
        items.append((name, frozenset(labels), frozenset(words), i < n_train))
    items.sort()  # Imagelist.txt is in folder, then file order; the split lists follow it
    for name, labels, _, _ in items:
        path = root / "Flickr" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        draw_photo(labels, concepts, size, rng).save(path, quality=90)

    def windows(name: str) -> str:
        return name.replace("/", "\\")

    train = [item for item in items if item[3]]
    test = [item for item in items if not item[3]]
    _write_lines(
        root / "ImageList" / "Imagelist.txt",
        [f"C:\\ImageData\\Flickr\\{windows(i[0])}" for i in items],
        "\r\n",
    )
    _write_lines(root / "ImageList" / "TrainImagelist.txt", [windows(i[0]) for i in train], "\r\n")
    _write_lines(root / "ImageList" / "TestImagelist.txt", [windows(i[0]) for i in test], "\r\n")
    _write_lines(root / "ConceptsList" / "Concepts81.txt", list(concepts), "\r\n")
    truth = root / "Groundtruth"
    for concept in concepts:
        _write_lines(
            truth / "AllLabels" / f"Labels_{concept}.txt",
            [str(int(concept in i[1])) for i in items],
        )
        for part, members in (("Train", train), ("Test", test)):
            path = truth / "TrainTestLabels" / f"Labels_{concept}_{part}.txt"
            _write_lines(path, [str(int(concept in i[1])) for i in members])
    _write_lines(root / "NUS_WID_Tags" / "TagList1k.txt", list(tags), "\r\n")
    rows = ["".join(f"{int(tag in i[2])}\t" for tag in tags) for i in items]
    _write_lines(root / "NUS_WID_Tags" / "AllTags1k.txt", rows)
    return NuswideFixture(
        root=root,
        concepts=tuple(concepts),
        tags=tuple(tags),
        train=tuple(i[0] for i in train),
        test=tuple(i[0] for i in test),
        labels={i[0]: i[1] for i in items},
        user_tags={i[0]: i[2] for i in items},
    )
