"""Do a model's scores mean what they say? Reliability on the Corel-5k test split.

Every (photo, word) pair of the 499 test photos is binned by the model's score; per bin:
the number of pairs, their mean score and the share that are correct labels. A model
whose scores are probabilities has mean score close to share correct in every bin.

Usage (from the repository root)::

    .venv/bin/python bench/study_calibration.py [--model default] [--model DIR ...] \\
        [--out bench/results/calibration.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from phototag.data.readers import read_dataset  # noqa: E402
from phototag.features.attach import with_features  # noqa: E402
from phototag.pretrained import load_model  # noqa: E402

EDGES = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def reliability(scores: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """One row per score bin (the last bin includes 1.0)."""
    rows = []
    for i, (low, high) in enumerate(zip(EDGES[:-1], EDGES[1:], strict=True)):
        upper = scores <= high if i == len(EDGES) - 2 else scores < high
        chosen = (scores >= low) & upper
        n = int(chosen.sum())
        rows.append({
            "bin": f"{low:.1f}-{high:.1f}", "pairs": n,
            "mean_score": round(float(scores[chosen].mean()), 3) if n else None,
            "share_correct": round(float(truth[chosen].mean()), 3) if n else None,
        })  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "corel5k")
    parser.add_argument("--model", action="append", help="shipped name or directory")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "calibration.json")
    args = parser.parse_args()
    test = read_dataset(f"corel5k:{args.data}").split("test")
    truth = test.labels.toarray()
    results = {}
    for name in args.model or ["default"]:
        model = load_model(name)
        data = test
        for feature in model.required_inputs().features:
            data, _ = with_features(data, feature, progress=False)
        results[name] = reliability(model.scores(data), truth)
        for row in results[name]:
            print(name, row)
    payload = {"study": __doc__.split("\n\n")[0], "command": " ".join(sys.argv), "models": results}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
