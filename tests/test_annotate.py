"""`phototag annotate`: output formats, failures and exit codes."""

import csv
import io
import json
from pathlib import Path

import pytest

from phototag.app.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes((EXAMPLES / "coffee.jpg").read_bytes())
    (folder / "sub" / "b.jpg").write_bytes((EXAMPLES / "chelsea.jpg").read_bytes())
    (folder / ".hidden.jpg").write_bytes((EXAMPLES / "chelsea.jpg").read_bytes())
    (folder / "notes.txt").write_text("not a photo")
    return folder


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lines_ranked_by_score(photos, prior_model, capsys):
    code, out, _ = run(["annotate", str(photos), "--model", prior_model, "--format", "json",
                        "--top-k", "2"], capsys)  # fmt: skip
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["path"]).name for r in records] == ["a.jpg", "b.jpg"]
    for record in records:
        scores = [t["score"] for t in record["tags"]]
        assert len(scores) == 2 and scores == sorted(scores, reverse=True)
        assert record["tags"][0]["label"] == "sky"


def test_csv_and_table_formats(photos, prior_model, capsys):
    code, out, _ = run(["annotate", str(photos), "--model", prior_model, "--format", "csv",
                        "--threshold", "0.6"], capsys)  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and {r["label"] for r in rows} == {"sky"} and len(rows) == 2
    code, out, _ = run(["annotate", str(photos / "a.jpg"), "--model", prior_model], capsys)
    assert code == 0 and out.startswith(f"{photos / 'a.jpg'}: sky (")


def test_missing_and_unknown_model(photos, prior_model, capsys):
    code, out, err = run(
        ["annotate", str(photos / "a.jpg"), str(photos / "gone.jpg"), "--model", prior_model],
        capsys,
    )
    assert code == 1 and "a.jpg" in out and "gone.jpg" in err and "1 of 2" in err
    code, _, err = run(["annotate", str(photos), "--model", "no-such-model"], capsys)
    assert code == 1 and "'no-such-model'" in err


@pytest.mark.integration
def test_user_vocabulary_without_training(photos, prior_model, tmp_path, capsys):
    words = tmp_path / "words.txt"
    words.write_text("cat\ncoffee\nanimal\nsky\nkitchen\n")
    code, out, err = run(
        ["annotate", str(photos), "--model", prior_model, "--vocabulary", str(words),
         "--format", "json", "--top-k", "2", "--runtime", "torch",
         "--store", str(tmp_path / "store"), "--workers", "0"], capsys,
    )  # fmt: skip
    assert code == 0
    # reported: no ImageNet class below it, and not a word of the model ("sky" is)
    assert "'kitchen'" in err and "warning" in err and "'sky'" not in err
    tags = {
        Path(r["path"]).name: [t["label"] for t in r["tags"]]
        for r in map(json.loads, out.splitlines())
    }
    assert tags["a.jpg"][0] == "coffee"
    assert set(tags["b.jpg"]) == {"cat", "animal"}


@pytest.mark.integration
def test_user_words_are_scored_by_the_default_models_keywords(tmp_path, capsys):
    """ "sky" and "people" have no ImageNet class; the everyday model's Nature|Sky and
    People score them."""
    words = tmp_path / "words.txt"
    words.write_text("sky\npeople\ncats\n")
    code, out, err = run(
        ["annotate", str(EXAMPLES / "rocket.jpg"), str(EXAMPLES / "astronaut.jpg"),
         "--vocabulary", str(words), "--format", "json", "--top-k", "1",
         "--store", str(tmp_path / "store")], capsys,
    )  # fmt: skip
    assert code == 0 and "warning" not in err
    best = [json.loads(line)["tags"][0] for line in out.splitlines()]
    assert [t["label"] for t in best] == ["sky", "people"]
    assert min(t["score"] for t in best) > 0.7
