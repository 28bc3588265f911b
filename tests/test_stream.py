"""The annotate pipeline: `phototag.features.stream` feeding `phototag.library.annotation`.

Order through the threads, bad files inside a batch, the feature store's reuse, threads
stopping, a killed run resuming from its journal, journaling only what was written, and
`serve` suggesting through the same function. The encoder is a stand-in (a photo's
vector is its mean colour), so that these tests need neither PyTorch nor network files.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import phototag.features.stream as stream
from phototag.features.encoders.preprocess import Preprocess
from phototag.features.extract import load_model_input
from phototag.features.stream import stream_features

FEATURE = "mean_colour"


class MeanColour:
    """A stand-in image encoder: pooled vector = mean R, G, B and 1; counts its batches."""

    runtime = "test"
    feature_id = "mean-colour-test"
    num_features = 4
    preprocess = Preprocess(16, resize="squash")

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[int] = []
        self.fail = fail

    def forward_pixels(self, pixels: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
        if self.fail:
            raise RuntimeError("the encoder broke")
        self.batches.append(len(pixels))
        time.sleep(0.002)
        mean = pixels.reshape(len(pixels), -1, 3).mean(axis=1) / 255.0
        return {"pooled": np.hstack([mean, np.ones((len(pixels), 1))]).astype(np.float32)}


def expected_vector(path: str | Path) -> np.ndarray:
    pixels = load_model_input(path, MeanColour.preprocess)[None]
    return MeanColour().forward_pixels(pixels, ["pooled"])["pooled"][0]


@pytest.fixture
def photos(tmp_path: Path) -> list[str]:
    """23 distinct JPEGs of different sizes (so decoding times differ)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for i in range(23):
        size = int(rng.integers(24, 160))
        colour = rng.integers(0, 256, 3)
        noise = rng.integers(-20, 20, (size, size + i, 3))
        pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
        path = folder / f"p{i:02d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def collect(batches) -> tuple[list[str], list[str | None], dict[str, np.ndarray], int]:
    paths, errors, vectors, computed = [], [], {}, 0
    for batch in batches:
        assert len(batch.paths) == len(batch.errors) and len(batch.vectors) == len(batch.kept)
        paths += batch.paths
        errors += batch.errors
        vectors.update(zip(batch.kept, batch.vectors, strict=True))
        computed += batch.n_computed
    return paths, errors, vectors, computed


def phototag_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("phototag-")]


def test_batches_keep_input_order_whatever_order_decoding_ends(photos, tmp_path, monkeypatch):
    real = stream.load_model_input
    shuffle = random.Random(0)

    def slow_decode(path, preprocess):
        time.sleep(shuffle.random() * 0.01)  # later photos often finish first
        return real(path, preprocess)

    monkeypatch.setattr(stream, "load_model_input", slow_decode)
    encoder = MeanColour()
    batches = stream_features(photos, encoder, store_root=tmp_path / "s", batch_size=4, workers=3)
    paths, errors, vectors, computed = collect(batches)
    assert paths == photos and errors == [None] * 23 and computed == 23
    assert encoder.batches == [4] * 5 + [3]
    for path in photos:
        np.testing.assert_array_equal(vectors[path], expected_vector(path))
    assert phototag_threads() == []


def test_a_bad_file_leaves_the_rest_of_its_batch_and_the_store_is_reused(
    photos, tmp_path, monkeypatch
):
    folder = Path(photos[0]).parent
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "empty.jpg").write_bytes(b"")
    odd = photos[5]
    paths = photos[:3] + [str(folder / "broken.jpg"), str(folder / "gone.jpg"), odd]
    paths += [str(folder / "empty.jpg")] + photos[6:9]
    real = stream.load_model_input

    def decode(path, preprocess):
        if path == odd:
            raise ValueError("a decoder bug met by this one file")
        return real(path, preprocess)

    monkeypatch.setattr(stream, "load_model_input", decode)
    batches = stream_features(paths, MeanColour(), store_root=tmp_path / "s", batch_size=len(paths))
    (batch,) = list(batches)
    failed = {path for path, error in zip(batch.paths, batch.errors, strict=True) if error}
    assert failed == set(paths[3:7])
    assert "gone.jpg" in batch.errors[4] and "ValueError" in batch.errors[5]
    good = [p for p in paths if p not in failed]
    assert batch.kept == good and batch.n_computed == len(good)
    np.testing.assert_array_equal(batch.vectors, [expected_vector(p) for p in good])

    def no_decoding(path, preprocess):
        raise AssertionError(f"{path} decoded again")

    monkeypatch.setattr(stream, "load_model_input", no_decoding)
    encoder = MeanColour()
    (again,) = list(stream_features(good, encoder, store_root=tmp_path / "s", batch_size=4 * 8))
    assert again.n_computed == 0 and encoder.batches == []
    np.testing.assert_array_equal(again.vectors, batch.vectors)


def test_the_same_bytes_twice_are_decoded_once(photos, tmp_path):
    twin = Path(photos[1]).with_name("twin.jpg")
    twin.write_bytes(Path(photos[1]).read_bytes())
    paths = [photos[0], photos[1], str(twin), photos[2]]
    encoder = MeanColour()
    _, errors, vectors, computed = collect(
        stream_features(paths, encoder, store_root=tmp_path / "s", batch_size=4)
    )
    assert errors == [None] * 4 and computed == 3 and encoder.batches == [3]
    np.testing.assert_array_equal(vectors[str(twin)], vectors[photos[1]])


def test_an_encoder_failure_reaches_the_caller_and_stops_the_threads(photos, tmp_path):
    batches = stream_features(photos, MeanColour(fail=True), store_root=tmp_path / "s")
    with pytest.raises(RuntimeError, match="the encoder broke"):
        list(batches)
    assert phototag_threads() == []


def test_closing_the_stream_early_stops_its_threads(photos, tmp_path):
    batches = stream_features(photos, MeanColour(), store_root=tmp_path / "s", batch_size=2)
    first = next(batches)
    assert first.paths == photos[:2]
    batches.close()
    assert phototag_threads() == []


# ------------------------------------------------------------ through the command
@pytest.fixture
def colour_model(tmp_path: Path, monkeypatch) -> str:
    """A saved JEC model over `MeanColour` vectors; the annotate command builds its
    encoder as `MeanColour` (it has no registry name)."""
    import phototag.features.extract as extract
    from phototag.data import from_label_sets
    from phototag.models import create_annotator

    rng = np.random.default_rng(3)
    words = ["sky", "sea", "cat", "cup", "tree"]
    labels = [list(rng.choice(words, size=2, replace=False)) for _ in range(20)]
    train = from_label_sets("t", [f"t{i}" for i in range(20)], labels)
    train.features[FEATURE] = np.hstack([rng.random((20, 3)), np.ones((20, 1))]).astype("f4")
    model = create_annotator("jec", features=FEATURE, k=3).fit(train)
    real = extract.create_sources

    def sources(specs, runtime="onnx"):
        return {s: MeanColour() if s == FEATURE else real([s], runtime)[s] for s in specs}

    monkeypatch.setattr(extract, "create_sources", sources)
    return str(model.save(tmp_path / "colour-model"))


def annotate(folder, model, tmp_path, *extra) -> list[str]:
    return ["annotate", str(folder), "--model", model, "--format", "json", "--top-k", "2",
            "--batch-size", "4", "--store", str(tmp_path / "store"), *extra]  # fmt: skip


def journal_paths(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(row[0] for row in db.execute("SELECT path FROM files"))


def test_a_run_stopped_after_k_photos_resumes_with_identical_output(
    photos, colour_model, tmp_path, monkeypatch, capsys
):
    import phototag.library.annotation as annotation
    from phototag.app.cli import main

    folder = Path(photos[0]).parent
    (folder / "p11.jpg").write_bytes(b"\xff\xd8\xff broken in the middle of a batch")
    clean = annotate(folder, colour_model, tmp_path, "--journal", str(tmp_path / "clean.sqlite"))
    assert main(clean) == 1  # the broken file
    expected = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["path"] for line in expected] == [p for p in photos if "p11" not in p]

    real, calls = annotation.decoded_tags, []

    def dies_after_seven(*args, **kwargs):
        calls.append(1)
        if len(calls) > 7:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    journal = tmp_path / "run.sqlite"
    argv = annotate(folder, colour_model, tmp_path, "--journal", str(journal), "--chunk-size", "3")
    monkeypatch.setattr(annotation, "decoded_tags", dies_after_seven)
    with pytest.raises(RuntimeError, match="killed"):
        main(argv)
    first = capsys.readouterr().out.splitlines()
    assert first == expected[:7] and len(journal_paths(journal)) == 7  # the last 1 on exit
    assert phototag_threads() == []

    monkeypatch.setattr(annotation, "decoded_tags", real)
    assert main(argv) == 1
    second = capsys.readouterr()
    assert second.out.splitlines() == expected
    assert "23 photos, 22 tagged, 1 skipped, 7 resumed from journal" in second.err


def test_photos_are_journaled_only_once_their_output_and_keywords_are_written(
    photos, colour_model, tmp_path, monkeypatch, capsys
):
    from phototag.app.cli import main
    from phototag.metadata import KeywordWriter

    real = KeywordWriter._write

    def write(self, path, tags):
        if path == photos[3]:
            return None  # a failed write, reported, the run goes on
        if path == photos[6]:
            raise OSError("the disk went away")  # a crash while writing
        return real(self, path, tags)

    monkeypatch.setattr(KeywordWriter, "_write", write)
    journal = tmp_path / "run.sqlite"
    argv = annotate(Path(photos[0]).parent, colour_model, tmp_path, "--write", "xmp",
                    "--journal", str(journal))  # fmt: skip
    with pytest.raises(OSError, match="went away"):
        main(argv)
    printed = [json.loads(line)["path"] for line in capsys.readouterr().out.splitlines()]
    # printing runs ahead of the writes; the crash stops the run when photo 6's write is
    # collected, in order, so nothing after it is journaled
    assert printed == photos[: len(printed)] and len(printed) >= 7
    assert journal_paths(journal) == [photos[i] for i in (0, 1, 2, 4, 5)]
    assert [Path(p).with_suffix(".jpg.xmp").exists() for p in photos[:7]] == [True] * 3 + [
        False
    ] + [True] * 2 + [False]


def test_keyword_writes_run_at_once_but_those_sharing_a_sidecar_in_order(photos, tmp_path):
    """`KeywordWriter.submit`: photo.jpg and photo.jpeg share photo.xmp, so the second
    write starts only when the first is over; other photos' writes overlap them."""
    from hostile_corpus import XMP_TEMPLATE

    from phototag.metadata import KeywordWriter, Provenance, read_keywords

    folder = tmp_path / "shoot"
    folder.mkdir()
    names = ["photo.jpg", "photo.jpeg", "other.jpg", "third.jpg"]
    for name in names:
        (folder / name).write_bytes(Path(photos[0]).read_bytes())
    shared = XMP_TEMPLATE.format(items="<rdf:li>holiday</rdf:li>")
    (folder / "photo.xmp").write_text(shared)  # the sidecar of both photo.* files
    running: list[str] = []
    overlaps: set[frozenset[str]] = set()  # pairs of writes that ran at the same time
    lock = threading.Lock()

    class SlowDisk(KeywordWriter):
        def _write(self, path, tags):
            with lock:
                overlaps.update(frozenset((Path(o).name, Path(path).name)) for o in running)
                running.append(path)
            time.sleep(0.2)
            try:
                return super()._write(path, tags)
            finally:
                with lock:
                    running.remove(path)

    with SlowDisk(Provenance("test"), threads=4) as writer:
        futures = [writer.submit(str(folder / n), [(n.split(".")[1], 0.9)]) for n in names]
    assert all(future.result() is not None for future in futures)
    assert frozenset({"photo.jpg", "photo.jpeg"}) not in overlaps  # one after the other
    assert frozenset({"photo.jpg", "other.jpg"}) in overlaps
    assert frozenset({"other.jpg", "third.jpg"}) in overlaps
    assert writer.written == 4 and writer.failed == 0
    # the second write read what the first wrote: phototag's keywords in a sidecar are
    # those of its latest write, the user's stay
    assert futures[1].result().removed == ("jpg",)
    found = read_keywords(folder / "photo.jpg")
    assert [a.label for a in found.automatic] == ["jpeg"] and "holiday" in found.user
    sidecars = ["photo.xmp", "other.jpg.xmp", "third.jpg.xmp"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(names + sidecars)


def test_serve_suggests_through_the_annotate_pipeline(photos, colour_model, tmp_path, monkeypatch):
    import phototag.app.web.tagger as tagger_module
    from phototag.app.web.tagger import Tagger
    from phototag.features.extract import create_sources
    from phototag.library.annotation import annotate_files
    from phototag.pretrained import load_model

    monkeypatch.setattr(tagger_module, "create_sources", create_sources)  # the stand-in
    seen: list[list[str]] = []

    def spy(paths, encoder, **options):
        seen.append([str(p) for p in paths])
        return stream_features(paths, encoder, **options)

    monkeypatch.setattr(stream, "stream_features", spy)
    model = load_model(colour_model)
    (annotated,) = annotate_files([photos[4]], model, store_root=tmp_path / "a", progress=False)
    tagger = Tagger(model, store_root=tmp_path / "b")
    try:
        future = tagger.submit(photos[4])
        prediction = future.result(timeout=60)
    finally:
        tagger.close()
    assert seen == [[photos[4]], [photos[4]]]
    from phototag.models.base import decoded_tags

    served = decoded_tags(prediction, model.vocabulary_, model.decoder_)[0]
    assert tuple(served) == annotated.tags


def test_large_photos_stream_in_small_batches(photos, tmp_path):
    """Decoding a photo over 1 MiB costs as much as encoding it: a few per batch keep
    both going from the first photo to the last; small photos go 16 at a time."""
    from phototag.features import ENCODER_BATCH_SIZE, LARGE_PHOTO_BATCH_SIZE
    from phototag.features.stream import default_batch_size

    large = []
    for i in range(3):
        path = tmp_path / f"big{i}.jpg"
        with open(path, "wb") as f:
            f.truncate(3 << 20)  # only the size is looked at
        large.append(str(path))
    assert default_batch_size(large) == LARGE_PHOTO_BATCH_SIZE
    assert default_batch_size(photos) == ENCODER_BATCH_SIZE
    sizes = [len(b.paths) for b in stream_features(photos, MeanColour(), store_root=tmp_path / "s")]
    assert sizes == [16, 7]
