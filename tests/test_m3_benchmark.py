"""`phototag benchmark m3`: rows of a fitted model (top-k, LQP, the upper bound with the
true counts), mean ± std over splits, the tables, and the marked docs section."""

from __future__ import annotations

import numpy as np
import pytest
from test_m3 import FAST, synthetic

from phototag.app.commands.benchmark import replace_section
from phototag.errors import InvalidInputError
from phototag.models.m3 import M3Annotator
from phototag.models.m3.benchmark import evaluate_rows, markdown, run_mirflickr_photos


@pytest.fixture(scope="module")
def fitted():
    return M3Annotator(**FAST).fit(synthetic())


def test_rows_decode_by_top_k_by_quantity_and_by_the_true_counts(fitted):
    test = synthetic(seed=1)
    rows = {r["name"]: r for r in evaluate_rows("MS-CNN", fitted, test, 3, lqp=True,
                                                upper_bound=True, train=synthetic())}  # fmt: skip
    assert list(rows) == ["MS-CNN", "MS-CNN+LQP", "Upper bound"]
    bound = rows["Upper bound"]["metrics"]
    assert bound["O-P"] == pytest.approx(bound["O-R"])  # as many labels as the truth
    top3 = rows["MS-CNN"]["metrics"]
    assert top3["O-R"] >= bound["O-R"] - 1e-9 and top3["O-P"] <= bound["O-P"] + 1e-9
    counts = test.label_counts()
    lqp = rows["MS-CNN+LQP"]["lqp"]
    common = np.bincount(synthetic().label_counts()).argmax()
    assert lqp["most_common"] == pytest.approx(np.mean(counts == common))
    assert 0 <= lqp["accuracy"] <= 1 and lqp["mse"] >= 0


def test_splits_give_mean_and_std_and_tables_render(tmp_path):
    data = synthetic(n=40)
    data.splits = {}
    halves = [(data.subset(range(0, 30)), data.subset(range(30, 40))),
              (data.subset(range(10, 40)), data.subset(range(0, 10)))]  # fmt: skip
    settings = {k: v for k, v in FAST.items() if k != "epochs"}
    rows = run_mirflickr_photos(halves, epochs=1, progress=lambda _: None, **settings)
    names = [r["name"] for r in rows]
    assert names == ["MS-CNN", "MS-CNN+LQP", "MS-CNN+Tags", "MS-CNN+Tags+LQP", "Upper bound"]
    assert all(r["runs"] == 2 and r["std"]["C-F1"] >= 0 for r in rows)
    text = markdown({"mirflickr-photos": {"rows": rows, "command": "phototag benchmark m3"}})
    assert "| MS-CNN+Tags+LQP | " in text and " ± " in text and "NUS-WIDE | CNN+WARP" in text
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- m3:begin -->\nold\n<!-- m3:end -->\n\nafter\n")
    replace_section(doc, "m3", text)
    updated = doc.read_text()
    assert "old" not in updated and text in updated and updated.endswith("\n\nafter\n")
    doc.write_text("no markers")
    with pytest.raises(InvalidInputError, match="m3:begin"):
        replace_section(doc, "m3", text)
