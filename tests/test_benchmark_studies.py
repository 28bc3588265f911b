"""`phototag benchmark STUDY`: the contract every paper study follows (parts, JSON per
part, tables into the docs between the study's markers), with a toy study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from phototag.app.cli import main
from phototag.app.commands import benchmark

# the toy study: this module itself
PARTS = ("first", "second")
FOLDERS = {"first": "corel5k", "second": "mirflickr"}
EPOCHS = 3


def run_part(part: str, data: Any, *, epochs: int, params: dict, progress: Any) -> list[dict]:
    return [{"name": f"{part} model", "folder": str(data.folder(FOLDERS[part])),
             "epochs": epochs, "params": params}]  # fmt: skip


def markdown(parts: dict[str, dict[str, Any]]) -> str:
    return "".join(f"{part}: {saved['command']}\n" for part, saved in parts.items())


@pytest.fixture
def toy_study(monkeypatch):
    monkeypatch.setitem(benchmark.STUDIES, "toy", __name__)


def test_a_study_saves_each_part_and_writes_its_section(toy_study, tmp_path: Path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- toy:begin -->\nold\n<!-- toy:end -->\nafter\n")
    corel, mirflickr = tmp_path / "corel", tmp_path / "mirflickr"
    results = tmp_path / "results"
    code = main(["benchmark", "toy", "--data", str(corel), "--mirflickr", str(mirflickr),
                 "--part", "first", "--param", "lr=0.5", "--results", str(results),
                 "--docs", str(docs)])  # fmt: skip
    assert code == 0
    saved = json.loads((results / "toy_first.json").read_text())
    assert not (results / "toy_second.json").exists()  # only the asked part ran
    assert saved["rows"] == [
        {"name": "first model", "folder": str(corel), "epochs": 3, "params": {"lr": 0.5}}
    ]
    # the recorded command reproduces the run with every folder it was given
    assert saved["command"] == (
        f"phototag benchmark toy --part first --data {corel} --mirflickr {mirflickr} "
        "--epochs 3 --param lr=0.5"
    )
    text = docs.read_text()
    assert "old" not in text and f"first: {saved['command']}" in text
    assert text.endswith("<!-- toy:end -->\nafter\n")


def test_a_study_without_its_data_names_the_options(toy_study, tmp_path: Path, capsys):
    assert main(["benchmark", "toy", "--results", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "--data" in error and "--mirflickr" in error
