"""Request and response bodies of the REST API (they make up its OpenAPI schema)."""

from __future__ import annotations

import unicodedata
from typing import Literal

from pydantic import BaseModel, Field, field_validator

Verdict = Literal["accepted", "rejected"]


class ServiceInfo(BaseModel):
    """What the service runs and accepts."""

    version: str
    model: str = Field(description="the model's name or directory")
    labels: int = Field(description="size of the model's vocabulary")
    folder: bool = Field(description="whether a folder is served (the /api/folder endpoints)")
    max_upload_bytes: int
    max_pixels: int = Field(
        description="most pixels of an image decoded at full size "
        "(baseline JPEGs are decoded at reduced size and may have more)"
    )
    upload_formats: list[str]
    token_required: bool
    write: Literal["xmp", "none"] = Field(
        default="xmp", description="--write: whether decisions on folder photos are written "
        "into their XMP sidecars (uploads always get one in the data folder)",
    )  # fmt: skip


class PhotoOut(BaseModel):
    """A photo known to the service; `id` is stable across restarts."""

    id: int
    name: str = Field(description="the uploaded file's name, or the path inside the folder")
    source: Literal["upload", "folder"]


class Decision(BaseModel):
    """The latest decision on one keyword of one photo."""

    label: str
    decision: Verdict
    score: float | None = Field(description="the suggestion's score; null for a tag you added")
    decided_at: float = Field(description="seconds since 1970 (UTC)")


class Tag(BaseModel):
    """A suggested keyword with its score and, once made, the decision on it."""

    label: str
    score: float
    decision: Verdict | None = None
    in_photo: bool = Field(
        default=False, description="the photo's metadata already has this keyword"
    )


class Suggestions(BaseModel):
    """Suggested keywords of one photo, best first, and every decision on it."""

    photo: PhotoOut
    model: str
    tags: list[Tag]
    decisions: list[Decision] = Field(description="includes keywords the user added")
    existing: list[str] = Field(
        default=[], description="keywords in the photo's metadata that phototag did not write"
    )
    written: list[str] = Field(default=[], description="keywords phototag wrote into it")
    writes: bool = Field(
        default=False, description="whether decisions are written into the photo's XMP sidecar"
    )
    metadata_error: str | None = Field(
        default=None, description="why the photo's keywords cannot be read (nothing is "
        "written into it then)",
    )  # fmt: skip


class Written(BaseModel):
    """What a decision changed in the photo's XMP sidecar."""

    file: str = Field(description="the sidecar, named after the photo")
    added: list[str]
    removed: list[str]


class DecisionSaved(Decision):
    """A stored decision, and what it changed in the photo's metadata."""

    written: Written | None = Field(
        default=None, description="null when the metadata did not change or is not written"
    )


class DecisionsSaved(BaseModel):
    """Stored decisions, and what they changed in the photo's metadata."""

    decisions: list[Decision]
    written: Written | None = None


class LabelIn(BaseModel):
    """A keyword and the score that was shown for it."""

    label: str = Field(min_length=1, max_length=200, examples=["beach"])
    score: float | None = Field(
        default=None, allow_inf_nan=False, description="the score that was shown, if any"
    )

    @field_validator("label")
    @classmethod
    def _printable(cls, label: str) -> str:
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in label if not c.isspace()):
            raise ValueError("a keyword cannot contain control characters or lone surrogates")
        return label


class DecisionIn(LabelIn):
    """Accept or reject a keyword (a suggested one, or one of your own to add)."""

    decision: Verdict


class AcceptIn(BaseModel):
    """Keywords to accept at once (e.g. every suggestion shown)."""

    tags: list[LabelIn] = Field(min_length=1, max_length=200)


class FolderPhotoIn(BaseModel):
    """A photo of the served folder, as a path relative to it."""

    path: str = Field(
        min_length=1, max_length=4096, examples=["holidays/2023/beach.jpg"],
        description="relative to the served folder; '%XX' is one byte of a name ('%25' is '%')",
    )  # fmt: skip


class FolderEntry(BaseModel):
    name: str = Field(description="for display: bytes that are not UTF-8 shown as U+FFFD")
    path: str = Field(
        description="relative to the served folder, with '/' separators and "
        "'%XX' for '%', '\\' and bytes of a name that are not UTF-8"
    )


class FolderListing(BaseModel):
    """One folder level: its subfolders and (a page of) its photos."""

    path: str
    parent: str | None = Field(description="path of the parent folder; null at the top")
    folders: list[FolderEntry]
    photos: list[FolderEntry]
    total_photos: int
    offset: int


class ErrorOut(BaseModel):
    detail: str
