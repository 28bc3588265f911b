"""Where `phototag annotate` runs: in this process (``local``) or on Ray Data (``ray``).

The local engine is `phototag.library.annotation.annotate_files`; `phototag.engines.ray` runs
the same decoding, encoding and scoring on a Ray cluster (or a local Ray instance) and
yields the same `FileAnnotation` records in the same order.
"""

from __future__ import annotations

from typing import Final

ENGINES: Final = ("local", "ray")

__all__ = ["ENGINES"]
