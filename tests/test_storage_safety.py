"""phototag's own files (feature store, saved models, decisions database) on a full disk
and when damaged: one clear error naming the file or folder and what to do, never a
traceback, never a file left half-written, never a damaged file silently accepted.

The full-disk tests mount a real 1 MiB tmpfs (root only) and fill it as ``dd`` would.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from full_disk import NO_SPACE, add_while_the_disk_fills, fill
from safetensors.numpy import load_file, save_file

from phototag.data import from_label_sets
from phototag.features.store import FeatureStore
from phototag.fileio import DamagedFileError, StorageError
from phototag.library.feedback import FeedbackStore
from phototag.models import Annotator, create_annotator

C, W = "config.json", "weights.safetensors"


# ------------------------------------------------------------------------ helpers
def sha256s(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def phototag(*args: str) -> subprocess.CompletedProcess[str]:
    """The real `phototag` command in a new process."""
    command = [sys.executable, "-m", "phototag", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def assert_clean_failure(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("phototag: error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


# ---------------------------------------------------------- feature store, full disk
def test_features_on_a_full_disk_then_after_freeing_space(tmpfs, tmp_path, shared_data):
    """The issue's repro through the real CLI: the first run is one clear message, the
    second (after freeing space) works; the store is never left damaged."""
    photos = tmp_path / "d"
    photos.mkdir()
    shutil.copy(shared_data / "corel5k" / "test" / "100002.jpeg", photos / "a.jpg")
    before = sha256s(photos)
    disk = tmpfs("1m")
    store = disk / "store"
    filler = fill(disk)
    first = phototag("features", str(photos), "--store", str(store))
    assert_clean_failure(first, f"{store}/efficientnet_lite2", NO_SPACE)
    filler.unlink()
    second = phototag("features", str(photos), "--store", str(store))
    assert second.returncode == 0, second.stderr
    assert "1 files: 1 computed" in second.stderr and "Traceback" not in second.stderr
    (folder,) = store.iterdir()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["dim"] == 1280
    assert not list(disk.rglob("*.phototag-tmp"))
    # a store damaged by an earlier version (0-byte meta.json) is named, with the fix
    (folder / "meta.json").write_bytes(b"")
    third = phototag("features", str(photos), "--store", str(store))
    assert_clean_failure(
        third,
        f"{folder}/meta.json: empty or not valid JSON. Delete the folder {folder} to recompute",
    )
    assert sha256s(photos) == before


def test_a_disk_that_fills_up_while_adding_leaves_the_store_consistent(tmpfs):
    """Free space from none to enough: each add either succeeds or raises StorageError
    naming the store's folder and records nothing; both failure points are met (vectors
    cut short, and vectors written whole but the SQLite index full)."""
    dim = 2000

    def open_store(disk):
        return FeatureStore(disk, "enc", dim=dim)

    failures = add_while_the_disk_fills(tmpfs, open_store, (dim,), np.float32, "vectors.bin")
    assert failures == {"index full", "rows cut short"}


# ------------------------------------------------------------- feature store, damaged
def _zero_bytes(folder: Path) -> None:
    (folder / "meta.json").write_bytes(b"")


def _cut_meta(folder: Path) -> None:
    (folder / "meta.json").write_bytes((folder / "meta.json").read_bytes()[:10])


def _garbage_index(folder: Path) -> None:
    (folder / "index.sqlite").write_bytes(b"not a database " * 300)


def _short_vectors(folder: Path) -> None:
    with (folder / "vectors.bin").open("r+b") as handle:
        handle.truncate(2 * 3 * 4 + 5)


@pytest.mark.parametrize(
    ("damage", "name", "problem"),
    [
        (_zero_bytes, "meta.json", "empty or not valid JSON"),
        (_cut_meta, "meta.json", "empty or not valid JSON"),
        (_garbage_index, "index.sqlite", "not a readable SQLite index (file is not a database)"),
        (_short_vectors, "vectors.bin", "29 bytes, but the index lists 3 rows of 12 bytes"),
    ],
)
def test_a_damaged_store_is_named_with_what_to_do(tmp_path, damage, name, problem):
    with FeatureStore(tmp_path, "enc", dim=3) as store:
        store.add(["a", "b", "c"], np.ones((3, 3), np.float32))
    folder = tmp_path / "enc"
    damage(folder)
    before = sha256s(folder)
    with pytest.raises(DamagedFileError) as error:
        FeatureStore(tmp_path, "enc", dim=3)
    assert str(error.value) == (
        f"{folder / name}: {problem}. Delete the folder {folder} to recompute these features"
    )
    after = sha256s(folder)
    assert {key: after[key] for key in before} == before  # nothing rewritten


# ------------------------------------------------------------------ decisions database
def test_decisions_on_a_full_disk_are_refused_and_kept(tmpfs):
    disk = tmpfs("1m")
    store = FeedbackStore(disk / "feedback.sqlite")
    photo = store.add_photo(disk / "a.jpg", "a.jpg", "upload")
    store.decide(photo.id, "sky", "accepted", 0.9, "m")
    filler = fill(disk)
    recorded = 1
    with pytest.raises(StorageError) as error:
        for i in range(10_000):
            store.decide(photo.id, f"keyword {i} " * 20, "rejected", 0.1, "m")
            recorded += 1
    assert str(error.value) == f"{disk}: {NO_SPACE}"
    with pytest.raises(StorageError, match="no space left"):
        FeedbackStore(disk / "other" / "feedback.sqlite")
    filler.unlink()
    assert len(store.decisions()) == recorded
    store.decide(photo.id, "sea", "accepted", 0.8, "m")
    assert [d.label for d in FeedbackStore(store.path).decisions()][-1] == "sea"


def test_a_damaged_decisions_database_is_named_and_left_alone(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    photo = store.add_photo(tmp_path / "a.jpg", "a.jpg", "folder")
    for i in range(100):
        store.decide(photo.id, f"keyword number {i} " * 5, "accepted", 0.5, "m")
    with sqlite3.connect(store.path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = store.path.read_bytes()
    for content in (data[: len(data) // 2], b"not a database " * 100):
        store.path.write_bytes(content)
        before = hashlib.sha256(content).hexdigest()
        with pytest.raises(DamagedFileError) as error:
            FeedbackStore(store.path).decisions()
        assert str(error.value).startswith(f"{store.path}: not a readable decisions database (")
        assert "restore it from a backup, or move it aside" in str(error.value)
        assert hashlib.sha256(store.path.read_bytes()).hexdigest() == before


# ----------------------------------------------------------------- saved models, disk
@pytest.mark.integration
def test_train_on_a_full_disk_keeps_the_saved_model(tmpfs, tmp_path):
    """`phototag train --out` over an existing model on a full disk: one clear message,
    and the old model is still there, whole."""
    labels = [["sky", "sea"], ["sky"], ["sky", "cat"], ["sea"]]
    from_label_sets("t", list("abcd"), labels, splits={"train": [0, 1, 2, 3]}).save(
        tmp_path / "data"
    )
    disk = tmpfs("1m")
    out = disk / "model"
    train = ["train", "--dataset", f"annotations:{tmp_path / 'data'}", "--model", "prior"]
    assert phototag(*train, "--out", str(out)).returncode == 0
    before = sha256s(out)
    filler = fill(disk)
    result = phototag(*train, "--param", "smoothing=2.0", "--out", str(out))
    assert_clean_failure(result, f"{out}: {NO_SPACE}")
    assert sha256s(out) == before
    filler.unlink()
    assert Annotator.load(out).get_config() == {"smoothing": 1.0}


# -------------------------------------------------------------- saved models, damaged
@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny fitted TagProp and an ensemble (TagProp + prior) on random data, saved."""
    rng = np.random.default_rng(0)
    words = ["sky", "sea", "tree", "cat"]
    label_sets = [[w for w in words if rng.random() < 0.4] or ["sky"] for _ in range(16)]
    features = {"f": rng.random((16, 5), dtype=np.float32)}
    train = from_label_sets("toy", [f"i{i}" for i in range(16)], label_sets, features=features)
    root = tmp_path_factory.mktemp("models")
    tagprop = create_annotator("tagprop", features="f", k=4, max_iter=5).fit(train)
    members = [{"model": "tagprop", "features": "f", "k": 3, "max_iter": 5}, {"model": "prior"}]
    ensemble = create_annotator("ensemble", members=members, weights=[1, 1], n_folds=2)
    ensemble.fit(train)
    return {"tagprop": tagprop.save(root / "tagprop"), "ensemble": ensemble.save(root / "ens")}


Damage = Callable[[Path, dict[str, Path]], None]  # (model folder, the saved models)


def _config(edit: Callable[[dict], object]) -> Damage:
    def apply(folder: Path, saved: dict[str, Path]) -> None:
        path = folder / "config.json"
        config = json.loads(path.read_text())
        edit(config)
        path.write_text(json.dumps(config))

    return apply


def _config_text(old: str, new: str) -> Damage:
    def apply(folder: Path, saved: dict[str, Path]) -> None:
        path = folder / "config.json"
        text = json.dumps(json.loads(path.read_text()))
        assert old in text
        path.write_text(text.replace(old, new, 1))

    return apply


def _weights(edit: Callable[[dict[str, np.ndarray]], object]) -> Damage:
    def apply(folder: Path, saved: dict[str, Path]) -> None:
        arrays = load_file(str(folder / W))
        edit(arrays)
        save_file(arrays, str(folder / W))

    return apply


def _write(name: str, content: Callable[[bytes], bytes]) -> Damage:
    def apply(folder: Path, saved: dict[str, Path]) -> None:
        (folder / name).write_bytes(content((folder / name).read_bytes()))

    return apply


def _remove(*names: str) -> Damage:
    def apply(folder: Path, saved: dict[str, Path]) -> None:
        for name in names:
            (folder / name).unlink()

    return apply


def _other_weights(folder: Path, saved: dict[str, Path]) -> None:
    shutil.copy(saved["ensemble"] / W, folder / W)


def _set(container: dict, key: str, value: object) -> None:
    container[key] = value


def _nan(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array.flat[0] = np.nan
    return array


# (model, damage, file named in the error ("" = the folder), what the error says)
MALFORMED = {
    "empty folder": ("tagprop", _remove(C, W), "", "not a saved model: no config.json"),
    "no config": ("tagprop", _remove(C), C, "cannot be read (No such file or directory)"),
    "no weights": ("tagprop", _remove(W), W, "cannot be read (No such file or directory"),
    "0-byte config": ("tagprop", _write(C, lambda b: b""), C, "empty"),
    "config cut short": ("tagprop", _write(C, lambda b: b[: len(b) // 2]), C, "not valid JSON"),
    "config not text": ("tagprop", _write(C, lambda b: bytes(range(256))), C, "not valid JSON"),
    "config a list": ("tagprop", _write(C, lambda b: b"[1, 2]"), C, "not a phototag model"),
    "unknown model": (
        "tagprop", _config(lambda c: _set(c, "model", "nope")), C,
        "field \"model\" is not valid: model: expected one of",
    ),
    "no vocabulary": (
        "tagprop", _config(lambda c: c.pop("vocabulary")), C, 'field "vocabulary" is missing',
    ),
    "config not an object": (
        "tagprop", _config(lambda c: _set(c, "config", [4])), C,
        'field "config" is not a JSON object',
    ),
    "argument of the wrong type": (
        "tagprop", _config(lambda c: _set(c["config"], "k", "four")), C,
        "field \"config\" is not valid: k: expected",
    ),
    "argument out of range": (
        "tagprop", _config(lambda c: _set(c["config"], "k", 0)), C,
        'field "config" is not valid: k: expected an integer at least 1, got 0',
    ),
    "argument not a choice": (
        "tagprop", _config(lambda c: _set(c["config"], "weighting", "nearest")), C,
        "field \"config\" is not valid: weighting: expected 'distance' or 'rank'",
    ),
    "member's argument of the wrong type": (
        "ensemble", _config(lambda c: _set(c["config"]["members"][0], "k", [3])), C,
        'field "state" is not valid: k: expected an integer at least 1, got [3]',
    ),
    "unknown argument": (
        "tagprop", _config(lambda c: _set(c["config"], "bogus", 1)), C,
        'field "config" is not valid: tagprop configuration: expected any of',
    ),
    "n_folds 1e400": (
        "ensemble", _config_text('"n_folds": 2', '"n_folds": 1e400'), C,
        'field "config.n_folds" is inf: not a finite number that fits in 64 bits',
    ),
    "n_folds 10^400": (
        "ensemble", _config_text('"n_folds": 2', '"n_folds": 1' + "0" * 400), C,
        'field "config.n_folds" is a 401-digit integer',
    ),
    "NaN in the state": (
        "ensemble", _config(lambda c: _set(c["state"], "prior_exponent_", float("nan"))), C,
        'field "state.prior_exponent_" is nan',
    ),
    "NaN in a member's state": (
        "ensemble", _config_text('"loglik_initial": ', '"loglik_initial": NaN, "x": '), C,
        'field "state.member_states[0].fit_info_.loglik_initial" is nan',
    ),
    "unknown state": (
        "tagprop", _config(lambda c: _set(c["state"], "bogus_", 1)), C,
        "field \"state\" is not valid: expected the keys ['fit_info_', 'n_neighbors_']",
    ),
    "members' state missing": (
        "ensemble", _config(lambda c: c["state"].pop("member_states")), C,
        "field \"state\" is not valid: 'member_states' is missing",
    ),
    "duplicate label": (
        "tagprop", _config(lambda c: c["vocabulary"].append(c["vocabulary"][0])), C,
        'field "vocabulary" is not valid: vocabulary: expected unique label names',
    ),
    "unknown decoder": (
        "tagprop", _config(lambda c: _set(c["decoder"], "name", "magic")), C,
        'field "decoder" is not valid',
    ),
    "0-byte weights": ("tagprop", _write(W, lambda b: b""), W, "not a readable safetensors"),
    "weights cut short": (
        "tagprop", _write(W, lambda b: b[: len(b) - 7]), W, "not a readable safetensors",
    ),
    "pickle as weights": (
        "tagprop", _write(W, lambda b: pickle.dumps({"weights_": np.ones(2)})), W,
        "not a readable safetensors",
    ),
    "NaN in an array": (
        "tagprop", _weights(lambda a: _set(a, "weights_", _nan(a["weights_"]))), W,
        "array 'weights_' holds NaN or infinite values",
    ),
    "inf in a member's array": (
        "ensemble",
        _weights(lambda a: _set(a, "members.0.word_alpha_", np.full(4, -np.inf))), W,
        "array 'members.0.word_alpha_' holds NaN or infinite values",
    ),
    "weights of another model": (
        "tagprop", _other_weights, W, "array 'active_': config.json lists nothing",
    ),
    "missing array": (
        "tagprop", _weights(lambda a: a.pop("word_alpha_")), W,
        "array 'word_alpha_': config.json lists [\"float64\", [4]], the file holds nothing",
    ),
    "extra array": (
        "tagprop", _weights(lambda a: _set(a, "bogus_", np.ones(2, np.float32))), W,
        "array 'bogus_': config.json lists nothing, the file holds [\"float32\", [2]]",
    ),
    "wrong shape": (
        "tagprop", _weights(lambda a: _set(a, "word_beta_", np.zeros(5))), W,
        "array 'word_beta_': config.json lists [\"float64\", [4]], the file holds "
        '["float64", [5]]',
    ),
    "wrong dtype": (
        "tagprop", _weights(lambda a: _set(a, "word_beta_", a["word_beta_"].astype("f4"))), W,
        "array 'word_beta_': config.json lists [\"float64\", [4]], the file holds "
        '["float32", [4]]',
    ),
}  # fmt: skip


def _malformed(saved: dict[str, Path], kind: str, tmp_path: Path) -> tuple[Path, str]:
    model, damage, name, problem = MALFORMED[kind]
    folder = Path(shutil.copytree(saved[model], tmp_path / "model"))
    damage(folder, saved)
    return folder, f"{folder / name if name else folder}: {problem}"


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_model_folder_is_named_never_accepted(saved_models, tmp_path, kind):
    folder, message = _malformed(saved_models, kind, tmp_path)
    before = sha256s(folder)
    with pytest.raises(DamagedFileError) as error:
        Annotator.load(folder)
    assert str(error.value).startswith(message), str(error.value)
    assert sha256s(folder) == before


def test_the_untouched_folders_and_a_model_saved_without_an_array_list_load(saved_models, tmp_path):
    """The malformed cases fail because of their damage; models saved before config.json
    listed the arrays (the shipped default among them) still load."""
    probe = from_label_sets("p", ["x"], [["sky"]], features={"f": np.full((1, 5), 0.5, "f4")})
    for folder in saved_models.values():
        assert Annotator.load(folder).scores(probe).shape == (1, 4)
    legacy = Path(shutil.copytree(saved_models["tagprop"], tmp_path / "legacy"))
    _config(lambda c: c.pop("arrays"))(legacy, saved_models)
    expected = Annotator.load(saved_models["tagprop"]).scores(probe)
    assert np.array_equal(Annotator.load(legacy).scores(probe), expected)


@pytest.mark.parametrize("kind", ["n_folds 10^400", "NaN in an array", "pickle as weights"])
@pytest.mark.integration
def test_the_cli_names_a_malformed_model_without_a_traceback(
    saved_models, tmp_path, shared_data, kind
):
    folder, message = _malformed(saved_models, kind, tmp_path)
    photo = tmp_path / "a.jpg"
    shutil.copy(shared_data / "corel5k" / "test" / "100002.jpeg", photo)
    features = {"f": np.zeros((1, 5), "f4")}
    probe = from_label_sets("p", ["x"], [["sky"]], features=features, splits={"test": [0]})
    probe.save(tmp_path / "data")
    before = sha256s(tmp_path)
    fix = "Train the model again (`phototag train`), or copy the whole model folder again"
    annotate = phototag("annotate", str(photo), "--model", str(folder))
    assert_clean_failure(annotate, message, fix)
    dataset = f"annotations:{tmp_path / 'data'}"
    evaluate = phototag("evaluate", "--dataset", dataset, "--model", str(folder))
    assert_clean_failure(evaluate, message, fix)
    assert sha256s(tmp_path) == before
