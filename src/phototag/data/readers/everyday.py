"""The photos the everyday model learns from: Corel-5k and MIRFLICKR, labelled with the
everyday keywords (`phototag.data.everyday`) through each keyword's photo labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from phototag.data.annotation_set import AnnotationSet
from phototag.data.everyday import read_table
from phototag.data.readers import read_dataset, register_reader
from phototag.data.readers._common import int_option
from phototag.data.vocabulary import Vocabulary
from phototag.errors import DatasetFormatError

#: Where each source dataset lies under the reader's PATH, as a dataset spec.
SOURCES = {
    "corel5k": "corel5k:{root}/corel5k",
    "mirflickr": "mirflickr:{root}/mirflickr25k?items=photos&test_size=0.2&seed={seed}",
}


@register_reader("everyday")
def read_everyday(
    path: Path, *, seed: str | None = None, table: str | None = None
) -> AnnotationSet:
    """Corel-5k + the MIRFLICKR photos, labelled with the everyday keywords.

    PATH holds ``corel5k/`` (the corel5k reader's layout) and ``mirflickr25k/`` (the
    mirflickr reader's .mat form with ``images/``), as ``../shared/data`` does. A photo
    is a positive for a keyword when it has one of the keyword's photo labels in its
    dataset; ``metadata["dataset"]`` says which dataset each photo comes from, since a
    dataset without labels for a keyword says nothing about it. Splits: Corel-5k's
    official train/test and a seeded 80/20 split of the MIRFLICKR photos.

    Options:
        seed: seed of the MIRFLICKR split (default 0).
        table: a rule table file in the format of ``everyday.tsv`` (default: the shipped one).
    """
    words = read_table(table)
    split_seed = int_option("seed", seed, 0, minimum=0)
    parts = [
        (name, read_dataset(spec.format(root=path, seed=split_seed)))
        for name, spec in SOURCES.items()
    ]
    vocabulary = Vocabulary(word.path for word in words)
    labels, item_ids, image_paths, origin, notes = [], [], [], [], []
    splits: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    offset = 0
    for name, part in parts:
        columns = []
        for word in words:
            wanted = word.photo_labels(name)
            unknown = [label for label in wanted if label not in part.vocabulary]
            if unknown:
                raise DatasetFormatError(
                    path / name,
                    f"has no label {unknown[0]!r}, which the everyday keyword {word.path!r} "
                    "is trained on; fix the rule table",
                )
            hit = part.labels[:, part.vocabulary.indices(wanted)].sum(axis=1) if wanted else None
            columns.append(
                sp.csr_matrix(np.asarray(hit) > 0)
                if hit is not None
                else sp.csr_matrix((part.n_items, 1), dtype=bool)
            )
        labels.append(sp.hstack(columns).tocsr())
        item_ids += [f"{name}/{item}" for item in part.item_ids]
        image_paths += list(part.image_paths or [])
        origin += [name] * part.n_items
        notes += [f"{name}: {note}" for note in part.notes]
        for split in splits:
            splits[split].append(part.splits[split] + offset)
        offset += part.n_items
    return AnnotationSet(
        "everyday",
        item_ids,
        vocabulary,
        sp.vstack(labels).tocsr().astype(bool),
        image_paths=image_paths,
        metadata={"dataset": np.array(origin)},
        splits={split: np.concatenate(rows) for split, rows in splits.items()},
        notes=notes,
    )
