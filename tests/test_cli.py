"""The command line, run in-process through `main` and once as a real subprocess."""

import json
import subprocess
import sys

import numpy as np
import pytest

from phototag.app.cli import main
from phototag.data import Vocabulary, from_label_sets

REPORT_KEYS = [
    "C-P",
    "C-R",
    "C-F1",
    "O-P",
    "O-R",
    "O-F1",
    "I-P",
    "I-R",
    "I-F1",
    "H-F1",
    "N+",
    "mAP_label",
    "mAP_image",
    "hamming_loss",
]


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    vocab = Vocabulary([f"label{j}" for j in range(6)])
    sets = [[vocab[j] for j in np.flatnonzero(rng.random(6) < 0.3)] for _ in range(40)]
    data = from_label_sets(
        "toy",
        [f"{i}.jpg" for i in range(40)],
        sets,
        vocabulary=vocab,
        splits={"train": range(30), "test": range(30, 40)},
    )
    data.save(tmp_path / "toy")
    return f"annotations:{tmp_path / 'toy'}", data


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_datasets_lists_readers(capsys):
    code, out, _ = run(["datasets"], capsys)
    assert code == 0
    for name in ("corel5k", "nuswide", "mulan", "coco", "mirflickr", "folder", "annotations"):
        assert name in out


def test_datasets_info(dataset, capsys):
    code, out, _ = run(["datasets", "info", dataset[0]], capsys)
    assert code == 0 and "label cardinality" in out and "test" in out
    code, out, _ = run(["datasets", "info", dataset[0], "--json"], capsys)
    assert json.loads(out)["splits"] == {"test": 10, "train": 30}


def test_evaluate_json_has_exactly_the_documented_keys(dataset, tmp_path, capsys):
    spec, data = dataset
    test = data.split("test")
    np.save(tmp_path / "scores.npy", test.labels.toarray() + 0.1 * np.arange(6))
    code, out, _ = run(
        ["evaluate", "--dataset", spec, "--predictions", str(tmp_path / "scores.npy"), "--json"],
        capsys,
    )
    assert code == 0
    report = json.loads(out)
    assert list(report) == REPORT_KEYS
    assert isinstance(report["N+"], int)
    assert all(0.0 <= v <= 1.0 for k, v in report.items() if k != "N+")
    assert report["mAP_label"] == pytest.approx(1.0)  # the true labels always rank first


def test_evaluate_protocols_change_the_label_sets(dataset, tmp_path, capsys):
    spec, data = dataset
    scores = np.random.default_rng(1).random((10, 6))
    np.save(tmp_path / "s.npy", scores)
    reports = {}
    for protocol in ("top1", "top5", "threshold:0.5"):
        code, out, _ = run(
            [
                "evaluate",
                "--dataset",
                spec,
                "--predictions",
                str(tmp_path / "s.npy"),
                "--protocol",
                protocol,
                "--json",
            ],
            capsys,
        )
        assert code == 0
        reports[protocol] = json.loads(out)
    assert reports["top5"]["O-R"] >= reports["top1"]["O-R"]
    assert reports["top1"]["mAP_image"] == reports["top5"]["mAP_image"]


def test_train_then_evaluate_a_saved_model(dataset, tmp_path, capsys):
    spec, _ = dataset
    code, out, _ = run(
        [
            "train",
            "--dataset",
            spec,
            "--model",
            "prior",
            "--out",
            str(tmp_path / "m"),
            "--param",
            "smoothing=0",
        ],
        capsys,
    )
    assert code == 0 and (tmp_path / "m" / "weights.safetensors").is_file()
    code, out, _ = run(["evaluate", "--dataset", spec, "--model", str(tmp_path / "m")], capsys)
    assert code == 0 and "C-F1" in out and "%" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--dataset", "nope:/x", "--predictions", "p.npy"], "reader name"),
        (["evaluate", "--dataset", "corel5k", "--predictions", "p.npy"], "NAME:PATH"),
        (["datasets", "info", "annotations:/does/not/exist"], "not found"),
        (["train", "--dataset", "annotations:.", "--model", "nope", "--out", "x"], "'nope'"),
    ],
)
def test_bad_arguments_exit_non_zero_with_a_clear_message(argv, message, capsys):
    code, _, err = run(argv, capsys)
    assert code == 1
    assert message in err and err.startswith("phototag: error:")


def test_bad_predictions_exit_non_zero(dataset, tmp_path, capsys):
    spec, _ = dataset
    np.save(tmp_path / "bad.npy", np.zeros((3, 6)))
    code, _, err = run(
        ["evaluate", "--dataset", spec, "--predictions", str(tmp_path / "bad.npy")], capsys
    )
    assert code == 1 and "shape (10, 6)" in err


def test_console_script_runs_as_a_process(dataset):
    result = subprocess.run(
        [sys.executable, "-m", "phototag.app.cli", "datasets", "info", dataset[0], "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["items"] == 40


#: Every registered model that learns from stored features (cnn_r reads pixels and
#: imagenet_wordnet needs no training; their own tests cover them).
TRAINED_FROM_FEATURES = [
    "prior", "jec", "tagprop", "mlknn", "2pknn", "2pknn_ml", "cca", "kcca", "cca_knn",
]  # fmt: skip


@pytest.mark.parametrize("model", TRAINED_FROM_FEATURES)
def test_every_feature_model_trains_and_evaluates_on_real_data(
    model, shared_data, tmp_path, capsys
):
    """`phototag train` then `phototag evaluate --model` on Mulan scene (real features)."""
    spec = f"mulan:{shared_data / 'mulan'}?name=scene"
    features = [] if model == "prior" else ["--param", "features=arff"]
    if model == "kcca":
        features += ["--param", "n_landmarks=300"]
    code, _, err = run(
        ["train", "--dataset", spec, "--model", model, "--out", str(tmp_path / "m"), *features],
        capsys,
    )
    assert code == 0, err
    code, out, err = run(
        ["evaluate", "--dataset", spec, "--model", str(tmp_path / "m"), "--protocol", "top2",
         "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    # every trained model beats the label prior's best possible N+ of 2 on this 6-label set
    assert report["N+"] >= (2 if model == "prior" else 5), report
    if model != "prior":
        assert report["C-F1"] > 0.5, report
