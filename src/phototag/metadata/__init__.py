"""Keywords in photo metadata: read what people wrote, write phototag's suggestions.

Reads XMP ``dc:subject``, ``lr:hierarchicalSubject`` (leaf terms), ``digiKam:TagsList``
and IPTC ``Keywords`` from a photo and its sidecars (``photo.jpg.xmp``, ``photo.xmp``);
writes to a sidecar by default or into the photo, into all of these fields (labels may
be paths, ``Animals|Pets|Cat``), with provenance in the ``phototag`` XMP namespace so
`untag` removes exactly phototag's keywords. A file phototag cannot
read completely, or a read-only one, is never written or deleted. docs/photo-library.md
describes the fields, sidecar naming and safety rules.
"""

from phototag.metadata.batch import KeywordWriter, untag_files
from phototag.metadata.fields import NAMESPACE, PREFIX, AutoKeyword, KeywordFields, MetadataError
from phototag.metadata.reading import (
    PhotoKeywords,
    read_keywords,
    sidecar_for_writing,
    sidecar_paths,
)
from phototag.metadata.writing import (
    KeywordChange,
    Provenance,
    remove_stale_temporaries,
    untag,
    write_keywords,
)

__all__ = [
    "NAMESPACE",
    "PREFIX",
    "AutoKeyword",
    "KeywordChange",
    "KeywordFields",
    "KeywordWriter",
    "MetadataError",
    "PhotoKeywords",
    "Provenance",
    "read_keywords",
    "remove_stale_temporaries",
    "sidecar_for_writing",
    "sidecar_paths",
    "untag",
    "untag_files",
    "write_keywords",
]
