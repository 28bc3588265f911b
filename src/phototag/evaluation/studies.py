"""The contract between `phototag benchmark STUDY` and a model family's paper study.

A study module (``phototag.models.<family>.benchmark``) reproduces one paper's tables on
the data we have. It defines:

- ``PARTS``: its parts, by name, each saved as one JSON file
  (``bench/results/<study>_<part>.json``);
- ``FOLDERS``: for each part, the dataset folder it reads (a key of `StudyData.folders`:
  ``"corel5k"``, ``"mirflickr"``, ``"mulan"``), so the command runs the parts whose data
  is given;
- ``EPOCHS``: the default number of epochs;
- ``run_part(part, data, *, epochs, params, progress) -> list[dict]``: the part's rows;
- ``markdown(parts) -> str``: every saved part (by name) as tables for docs/benchmarks.md.

`StudyData` is what the command hands to ``run_part``: the folders given on the command
line and a reader that fills a dataset's model inputs from the feature stores (the
command's store options), so a study never touches argparse or the stores itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phototag.errors import InvalidInputError

#: Command-line option naming each study folder.
FOLDER_OPTIONS = {"corel5k": "--data", "mirflickr": "--mirflickr", "mulan": "--mulan"}


@dataclass(frozen=True)
class StudyData:
    """The data a study reads.

    Attributes:
        folders: dataset folders by kind (``"corel5k"``, ``"mirflickr"``, ``"mulan"``);
            None where not given.
        encoder: the image encoder whose features and maps the study uses.
        reader: ``reader(spec, inputs)``: the dataset of a reader spec (e.g.
            ``"corel5k:DIR"``) with the `ModelInputs` `inputs` filled (None: none).
    """

    folders: Mapping[str, Path | None]
    encoder: str
    reader: Callable[[str, Any], Any]

    def folder(self, kind: str) -> Path:
        """The folder of `kind`, or a clear error naming the option that gives it."""
        folder = self.folders.get(kind)
        if folder is None:
            option = FOLDER_OPTIONS.get(kind, kind)
            raise InvalidInputError(option, f"the {kind} folder for this part", "nothing")
        return folder

    def read(self, spec: str, inputs: Any = None) -> Any:
        """The dataset `spec` with the model inputs `inputs` attached."""
        return self.reader(spec, inputs)
