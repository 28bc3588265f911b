"""Rebuild the encoder graph that ships with phototag (needs phototag[research]).

    python scripts/ship_encoder.py [efficientnet_lite2]

Exports the torch encoder with the code ``runtime="onnx"`` uses and writes
``src/phototag/features/encoders/graphs/<name>.onnx`` and ``<name>.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from phototag.features.encoders import create_encoder
from phototag.features.encoders.shipped import write_shipped_graph

TARGET = Path(__file__).resolve().parents[1] / "src/phototag/features/encoders/graphs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="efficientnet_lite2")
    args = parser.parse_args()
    graph = write_shipped_graph(create_encoder(args.name, runtime="torch"), TARGET)
    size = graph.path.stat().st_size / 2**20
    print(f"{graph.path} ({size:.1f} MiB, sha256 {graph.sha256[:16]}...)")


if __name__ == "__main__":
    main()
