"""`phototag serve`: suggested keywords in a web page and a REST API (FastAPI + uvicorn).

Upload photos or browse a configured folder, see each photo's suggested keywords with
their scores, accept or reject each one. Decisions go to ``feedback.sqlite`` in the
data folder (`phototag.library.feedback`), which ``phototag train --feedback`` learns from.
The security rules are in `phototag.app.web.security`; docs/serve.md explains them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

import anyio
from fastapi import Body, FastAPI, File, Query, Request, Security, UploadFile
from fastapi import Path as PathParameter
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from phototag.app.web import schemas
from phototag.app.web.files import (
    Opened,
    check_pixels,
    decode_path,
    encode_name,
    is_image_name,
    open_beneath,
    shown,
)
from phototag.app.web.keywords import PhotoFile, all_keywords, keyword_key
from phototag.app.web.security import (
    CSRF_HEADER,
    UPLOAD_FORMATS,
    ApiGuard,
    RequestRefused,
    check_token_setting,
    is_loopback,
    too_large_message,
    upload_format,
)
from phototag.app.web.tagger import PhotoUnreadable, Tagger
from phototag.errors import InvalidInputError
from phototag.fileio import DamagedFileError, StorageError, atomic_write
from phototag.imaging import ImageLoadError, load_image
from phototag.library.feedback import (
    DATABASE_FILE,
    Decision,
    FeedbackStore,
    Photo,
    Verdict,
    default_data_dir,
)
from phototag.metadata import KeywordChange, Provenance, sidecar_for_writing

_log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "web" / "static"
UPLOAD_PATH = "/api/photos"
#: Room for the multipart framing around the photo in an upload request.
MULTIPART_OVERHEAD = 64 * 1024
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass
class ServerConfig:
    """Everything `phototag serve` is started with (the CLI options of the same names)."""

    model: str = "default"
    #: A word list: suggest only these words (as `phototag annotate --vocabulary`).
    vocabulary: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    folder: Path | None = None
    token: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    store: Path | None = None
    runtime: str = "onnx"
    max_upload_bytes: int = 25 * 2**20
    max_batch: int = 16
    #: Most pixels of an image decoded at full size (all but baseline JPEGs).
    max_pixels: int = 50_000_000
    #: "xmp": decisions on folder photos go into their XMP sidecars; "none": not.
    write: Literal["xmp", "none"] = "xmp"

    def validate(self) -> None:
        """Raise `InvalidInputError` for a configuration that must not start."""
        check_token_setting(self.host, self.token)
        if not 0 <= self.port <= 65535:
            raise InvalidInputError("--port", "a port number 0-65535", str(self.port))
        if self.max_upload_bytes < 1:
            raise InvalidInputError("--max-upload-mb", "a size > 0", str(self.max_upload_bytes))
        if self.max_pixels < 1:
            raise InvalidInputError("--max-megapixels", "a number > 0", str(self.max_pixels))
        if self.write not in ("xmp", "none"):
            raise InvalidInputError("--write", "'xmp' or 'none'", repr(self.write))
        if self.folder is not None and not Path(self.folder).expanduser().is_dir():
            raise InvalidInputError("--folder", "an existing folder", str(self.folder))


class _Service:
    """The state one running app shares between requests."""

    def __init__(self, config: ServerConfig) -> None:
        from phototag.pretrained import load_model

        self.config = config
        self.model_id = str(config.model)
        model = load_model(config.model)
        if config.vocabulary is not None:
            from phototag.library.annotation import UserVocabulary
            from phototag.models.open_vocabulary import read_word_list

            model = UserVocabulary(read_word_list(config.vocabulary), trained=model)
            self.model_id += f" + {Path(config.vocabulary).name}"
        self.tagger = Tagger(
            model, store_root=config.store, runtime=config.runtime, max_batch=config.max_batch
        )
        self.data_dir = Path(config.data_dir).expanduser().resolve()
        self.uploads = self.data_dir / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.feedback = FeedbackStore(self.data_dir / DATABASE_FILE)
        self.folder = None if config.folder is None else Path(config.folder).expanduser().resolve()
        # One image per core is decoded at once: the tagger's worker, and thumbnails on
        # the other cores, at least one (a request waiting for its turn holds no thread).
        self.thumbnail_slots = anyio.CapacityLimiter(max(1, (os.cpu_count() or 2) - 1))
        # decisions on a photo are written one after the other (read, change, write)
        self.write_lock = threading.Lock()

    # ------------------------------------------------------------- photos
    def save_upload(self, data: bytes, kind: str) -> tuple[Path, bool]:
        """Store an upload under its content hash; True if the file is new."""
        digest = hashlib.blake2b(data, digest_size=32).hexdigest()
        path = self.uploads / f"{digest}{UPLOAD_FORMATS[kind]}"
        if path.is_file():
            return path, False
        atomic_write(path, data)
        return path, True

    def photo(self, photo_id: int) -> Photo:
        photo = self.feedback.photo(photo_id)
        if photo is None:
            raise RequestRefused(404, f"no photo with id {photo_id}")
        return photo

    def root(self, photo: Photo) -> Path:
        """The folder a known photo lies in: the uploads or the served one."""
        return self.uploads if photo.source == "upload" else self.folder_root()

    def open_photo(self, photo: Photo) -> Opened:
        """A known photo's file, opened inside its folder (the uploads or the served one)."""
        root = self.root(photo)
        try:
            relative = Path(photo.path).relative_to(root)
        except ValueError:
            raise RequestRefused(404, f"{photo.name}: no longer inside the served folder") from None
        opened = open_beneath(root, os.fsencode(relative), shown(photo.name))
        if opened.is_dir:
            opened.close()
            raise RequestRefused(404, f"{photo.name}: no longer a photo file")
        return opened

    def open_folder(self, path: str) -> Opened:
        """`path` (API text, relative) opened inside the served folder."""
        return open_beneath(self.folder_root(), decode_path(path), shown(path))

    def open_folder_photo(self, path: str) -> Opened:
        opened = self.open_folder(path)
        if opened.is_dir or not is_image_name(opened.path):
            opened.close()
            raise RequestRefused(400, f"{shown(path)}: not a photo file")
        return opened

    def add_folder_photo(self, target: Path, name: str) -> Photo:
        """Register a folder photo at its resolved path `target` (409 if that changed).

        The feedback database resolves the path again; a folder swapped meanwhile would
        fail that or record another file, so the request is refused instead.
        """
        try:
            photo = self.feedback.add_photo(target, name, "folder")
        except OSError:
            photo = None
        if photo is None or photo.path != str(target):
            raise RequestRefused.folder_changed(name)
        return photo

    def folder_root(self) -> Path:
        if self.folder is None:
            raise RequestRefused(404, "no folder is served (start with --folder DIR)")
        return self.folder

    async def check_pixels(self, path: str, name: str, data: bytes | None = None) -> None:
        """413 for an image with more pixels than the service decodes (`check_pixels`)."""
        await run_in_threadpool(check_pixels, path, name, self.config.max_pixels, data)

    async def tags(self, name: str, path: str, top_k: int | None) -> list[tuple[str, float]]:
        """Suggested ``(label, score)`` pairs of the photo at `path` (422 if unreadable).

        `name` replaces `path` in messages: replies never show the server's paths.
        """
        try:
            return await self.tagger.suggest(path, top_k)
        except PhotoUnreadable as error:
            raise RequestRefused(422, _named(str(error), path, name)) from None

    async def thumbnail(self, open_file: Callable[[], Opened], name: str, size: int) -> Response:
        """A JPEG of the photo `open_file` opens, its longest side at most `size` pixels."""

        def make() -> bytes:
            with open_file() as opened:
                check_pixels(opened.fd_path, name, self.config.max_pixels)
                try:
                    image = load_image(opened.fd_path, max_side=size)
                except ImageLoadError as error:
                    raise RequestRefused(422, _named(str(error), opened.fd_path, name)) from None
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
            return buffer.getvalue()

        data = await anyio.to_thread.run_sync(make, limiter=self.thumbnail_slots)
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip

    def photo_file(self, photo: Photo, opened: Opened) -> PhotoFile:
        return PhotoFile.checked(self.root(photo), opened, photo.name)

    def writes(self, photo: Photo) -> bool:
        """Whether decisions go into the photo's sidecar (uploads: always; else --write)."""
        return photo.source == "upload" or self.config.write == "xmp"

    def existing(self, photo: Photo) -> tuple[list[str], list[str], str | None]:
        """The photo's own keywords, those phototag wrote, and why they cannot be read."""
        try:
            with self.open_photo(photo) as opened:
                found = self.photo_file(photo, opened).keywords()
        except RequestRefused as error:
            return [], [], error.detail
        return list(found.user), [keyword_key(a.label) for a in found.automatic], None

    async def suggestions(self, photo: Photo, tags: list[tuple[str, float]]) -> schemas.Suggestions:
        """`tags` of `photo` with the decisions made on it and the keywords it has."""
        decisions = await run_in_threadpool(self.feedback.decisions, photo.id)
        existing, written, error = await run_in_threadpool(self.existing, photo)
        verdict = {d.label: d.decision for d in decisions}
        present = all_keywords(None, existing + written)
        return schemas.Suggestions(
            photo=schemas.PhotoOut(id=photo.id, name=photo.name, source=photo.source),  # type: ignore[arg-type]
            model=self.model_id,
            tags=[schemas.Tag(label=t, score=s, decision=verdict.get(t),
                              in_photo=keyword_key(t) in present) for t, s in tags],  # fmt: skip
            decisions=[_decision_out(d) for d in decisions],
            existing=existing, written=written, writes=self.writes(photo), metadata_error=error,
        )  # fmt: skip

    def decide(
        self, photo_id: int, items: list[tuple[str, Verdict, float | None]]
    ) -> tuple[list[Decision], schemas.Written | None]:
        """Store decisions on the photo's keywords, written first into its sidecar (see
        `PhotoFile.apply`); a write that fails stores nothing (422)."""
        photo = self.photo(photo_id)
        items = [(_clean_label(label), decision, score) for label, decision, score in items]
        change = None
        with self.write_lock:
            if self.writes(photo):
                with self.open_photo(photo) as opened:
                    file = self.photo_file(photo, opened)
                    change = file.apply(items, Provenance(self.model_id))
            saved = [self.feedback.decide(photo_id, label, decision, score, self.model_id)
                     for label, decision, score in items]  # fmt: skip
        return saved, None if change is None else _written_out(file, change)

    def sidecar(self, photo_id: int) -> Response:
        """The photo's XMP sidecar as a download named after the photo (404 if none)."""
        photo = self.photo(photo_id)
        root = self.root(photo)
        with self.open_photo(photo) as opened:
            file = self.photo_file(photo, opened)
            sidecar = sidecar_for_writing(file.path)
            name = file.shown(sidecar)
            if not sidecar.is_file():
                raise RequestRefused(404, f"{name}: no keywords written into this photo yet")
        relative = os.fsencode(sidecar.relative_to(root))
        with open_beneath(root, relative, name) as opened_sidecar:
            data = Path(opened_sidecar.fd_path).read_bytes()
        disposition = f"attachment; filename*=UTF-8''{quote(Path(name).name)}"
        return Response(data, media_type="application/rdf+xml",
                        headers={"Content-Disposition": disposition})  # fmt: skip


def create_app(config: ServerConfig) -> FastAPI:
    """The FastAPI application: loads the model once, then serves the page and the API."""
    config.validate()
    service = _Service(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(service.tagger.close)

    from phototag import __version__

    app = FastAPIOffline(
        title="phototag",
        version=__version__,
        summary="Suggested keywords for photos; accept or reject them to teach the model.",
        description="Every /api call needs `Authorization: Bearer TOKEN` when the service "
        f"was started with a token; every POST needs the header `{CSRF_HEADER}: 1`. "
        'Errors answer `{"detail": message}`.',
        lifespan=lifespan,
        static_url="/docs-assets",
    )
    app.state.service = service
    app.add_middleware(
        ApiGuard,
        token=config.token,
        loopback_only=is_loopback(config.host),
        upload_paths=frozenset({UPLOAD_PATH}),
        max_body_bytes=config.max_upload_bytes + MULTIPART_OVERHEAD,
    )

    @app.exception_handler(RequestRefused)
    async def refused(request: Request, error: RequestRefused) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(error)}, status_code=422)

    @app.exception_handler(StorageError)
    async def storage(request: Request, error: StorageError) -> JSONResponse:
        # the message names a server folder: the log has it, the client gets the gist
        _log.error("%s", error)
        detail = "the service cannot store this (its data folder is full or not writable)"
        return JSONResponse({"detail": detail}, status_code=507)

    @app.exception_handler(DamagedFileError)
    async def damaged(request: Request, error: DamagedFileError) -> JSONResponse:
        _log.error("%s", error)
        detail = "the service's decisions database is damaged; its log says what to do"
        return JSONResponse({"detail": detail}, status_code=500)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        # The traceback goes to the server's log (uvicorn prints it), never to the client.
        detail = "internal error: the service could not answer; its log says why"
        return JSONResponse({"detail": detail}, status_code=500)

    _add_page(app)
    _add_api(app, service)
    return app


def _add_page(app: FastAPI) -> None:
    headers = {"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff"}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=headers)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


ERRORS = {status: {"model": schemas.ErrorOut} for status in (400, 401, 403, 404, 422)}
IMAGE_ERRORS = {**ERRORS, 413: {"model": schemas.ErrorOut}}
TopK = Annotated[int | None, Query(ge=1, le=200, description="the K best keywords instead "
                                   "of the model's own choice")]  # fmt: skip
ThumbSize = Annotated[int, Query(ge=16, le=1024, description="longest side in pixels")]
PhotoId = Annotated[int, PathParameter(ge=1, le=2**63 - 1, description="the photo's id")]
FolderPath = Annotated[str, Query(max_length=4096, description="relative to the served folder; "
                                  "'%XX' is one byte of a name ('%25' is '%')")]  # fmt: skip


def _add_api(app: FastAPI, service: _Service) -> None:
    bearer = [Security(HTTPBearer(auto_error=False, description="the --token of the service"))]
    changes = bearer + [
        Security(
            APIKeyHeader(
                name=CSRF_HEADER,
                auto_error=False,
                description="any value, e.g. 1 (a form on another site cannot send it)",
            )
        )  # fmt: skip
    ]

    @app.get("/api/info", response_model=schemas.ServiceInfo, tags=["service"],
             dependencies=bearer, responses=ERRORS)  # fmt: skip
    def info() -> schemas.ServiceInfo:
        """What the service runs and accepts."""
        from phototag import __version__

        return schemas.ServiceInfo(
            version=__version__,
            model=service.model_id,
            labels=len(service.tagger.model.vocabulary_),
            folder=service.folder is not None,
            max_upload_bytes=service.config.max_upload_bytes,
            max_pixels=service.config.max_pixels,
            upload_formats=list(UPLOAD_FORMATS),
            token_required=service.config.token is not None,
            write=service.config.write,
        )

    upload_errors = {**IMAGE_ERRORS, 411: {"model": schemas.ErrorOut},
                     415: {"model": schemas.ErrorOut}}  # fmt: skip

    @app.post(UPLOAD_PATH, response_model=schemas.Suggestions, tags=["photos"],
              dependencies=changes, responses=upload_errors)  # fmt: skip
    async def upload(
        file: Annotated[UploadFile, File(description="one photo")], top_k: TopK = None
    ) -> schemas.Suggestions:
        """Upload a photo and get its suggested keywords (the same bytes give the same id).

        413 when larger than the limit (bytes or pixels), 415 when not an image format
        phototag reads, 422 when the image cannot be decoded.
        """
        limit = service.config.max_upload_bytes
        data = await file.read(limit + 1)
        name = _display_name(file.filename)
        if len(data) > limit:
            raise RequestRefused(413, too_large_message(len(data), limit))
        kind = upload_format(data[:32])
        if kind is None:
            raise RequestRefused(
                415, f"{name}: not a supported image; upload one of "
                f"{', '.join(UPLOAD_FORMATS)} (received {file.content_type or 'unknown type'})",
            )  # fmt: skip
        await service.check_pixels(name, name, data)
        path, created = await run_in_threadpool(service.save_upload, data, kind)
        try:
            tags = await service.tags(name, str(path), top_k)
        except RequestRefused:
            if created:
                path.unlink(missing_ok=True)  # keep nothing that could not be read
            raise
        photo = await run_in_threadpool(service.feedback.add_photo, path, name, "upload")
        return await service.suggestions(photo, tags)

    @app.get("/api/photos/{photo_id}/suggestions", response_model=schemas.Suggestions,
             tags=["photos"], dependencies=bearer, responses=IMAGE_ERRORS)  # fmt: skip
    async def suggestions(photo_id: PhotoId, top_k: TopK = None) -> schemas.Suggestions:
        """Suggested keywords of a known photo, with the decisions made on them."""
        photo = await run_in_threadpool(service.photo, photo_id)
        with await run_in_threadpool(service.open_photo, photo) as opened:
            await service.check_pixels(opened.fd_path, photo.name)
            tags = await service.tags(photo.name, opened.fd_path, top_k)
        return await service.suggestions(photo, tags)

    @app.get("/api/photos/{photo_id}/thumbnail", tags=["photos"], dependencies=bearer,
             responses={**IMAGE_ERRORS, 200: {"content": {"image/jpeg": {}}}},
             response_class=Response)  # fmt: skip
    async def photo_thumbnail(photo_id: PhotoId, size: ThumbSize = 256) -> Response:
        """A JPEG of the photo, upright, its longest side at most `size` pixels."""
        photo = await run_in_threadpool(service.photo, photo_id)
        return await service.thumbnail(lambda: service.open_photo(photo), photo.name, size)

    @app.get("/api/photos/{photo_id}/decisions", response_model=list[schemas.Decision],
             tags=["decisions"], dependencies=bearer, responses=ERRORS)  # fmt: skip
    def decisions(photo_id: PhotoId) -> list[schemas.Decision]:
        """Every decision on the photo's keywords (the latest per keyword)."""
        service.photo(photo_id)
        return [_decision_out(d) for d in service.feedback.decisions(photo_id)]

    write_errors = {**ERRORS, 409: {"model": schemas.ErrorOut}}

    @app.post("/api/photos/{photo_id}/decisions", response_model=schemas.DecisionSaved,
              tags=["decisions"], dependencies=changes, responses=write_errors)  # fmt: skip
    def decide(
        photo_id: PhotoId, body: Annotated[schemas.DecisionIn, Body()]
    ) -> schemas.DecisionSaved:
        """Accept or reject a keyword of the photo; a later decision replaces an earlier one.

        With writing on (see `writes` in `Suggestions`), the keyword is first added to
        (accepted) or, where phototag wrote it, removed from (rejected) the photo's XMP
        sidecar; 422, nothing stored, when that fails or the photo's metadata cannot be
        read completely.
        """
        saved, written = service.decide(photo_id, [(body.label, body.decision, body.score)])
        return schemas.DecisionSaved(**_decision_out(saved[0]).model_dump(), written=written)

    @app.post("/api/photos/{photo_id}/accepted", response_model=schemas.DecisionsSaved,
              tags=["decisions"], dependencies=changes, responses=write_errors)  # fmt: skip
    def accept_all(
        photo_id: PhotoId, body: Annotated[schemas.AcceptIn, Body()]
    ) -> schemas.DecisionsSaved:
        """Accept several keywords at once (one write of the sidecar), e.g. all suggestions."""
        items = [(tag.label, "accepted", tag.score) for tag in body.tags]
        saved, written = service.decide(photo_id, items)  # type: ignore[arg-type]
        return schemas.DecisionsSaved(decisions=[_decision_out(d) for d in saved], written=written)

    @app.get("/api/photos/{photo_id}/sidecar", tags=["photos"], dependencies=bearer,
             responses={**ERRORS, 200: {"content": {"application/rdf+xml": {}}}},
             response_class=Response)  # fmt: skip
    def sidecar(photo_id: PhotoId) -> Response:
        """The photo's XMP sidecar with the keywords written into it (e.g. of an upload:
        keep it next to your copy of the photo as ``photo.jpg.xmp``)."""
        return service.sidecar(photo_id)

    @app.get("/api/folder", response_model=schemas.FolderListing, tags=["folder"],
             dependencies=bearer, responses=ERRORS)  # fmt: skip
    def folder(
        path: FolderPath = "",
        offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        keyword: Annotated[
            str | None,
            Query(
                max_length=200,
                description="only photos with this keyword in their metadata or accepted",
            ),
        ] = None,  # fmt: skip
    ) -> schemas.FolderListing:
        """Subfolders and photos of a folder inside the served folder (hidden ones left out).

        With `keyword`, only the photos that have it (case-insensitive, a hierarchical
        keyword by its last level), in their metadata or accepted here.
        """
        return _listing(service, path, offset, limit, keyword)

    @app.get("/api/folder/thumbnail", tags=["folder"], dependencies=bearer,
             responses={**IMAGE_ERRORS, 200: {"content": {"image/jpeg": {}}}},
             response_class=Response)  # fmt: skip
    async def folder_thumbnail(
        path: Annotated[FolderPath, Query(min_length=1)], size: ThumbSize = 256
    ) -> Response:
        """A JPEG of a photo in the served folder, its longest side at most `size` pixels."""
        return await service.thumbnail(lambda: service.open_folder_photo(path), path, size)

    @app.post("/api/folder/photos", response_model=schemas.Suggestions, tags=["folder"],
              dependencies=changes, responses=IMAGE_ERRORS)  # fmt: skip
    async def folder_photo(
        body: Annotated[schemas.FolderPhotoIn, Body()], top_k: TopK = None
    ) -> schemas.Suggestions:
        """Suggested keywords of a photo in the served folder (path relative to it)."""
        with await run_in_threadpool(service.open_folder_photo, body.path) as opened:
            relative = encode_name(opened.path)
            target = service.folder_root() / os.fsdecode(opened.path)
            await service.check_pixels(opened.fd_path, relative)
            tags = await service.tags(relative, opened.fd_path, top_k)
        photo = await run_in_threadpool(service.add_folder_photo, target, relative)
        return await service.suggestions(photo, tags)


def _listing(
    service: _Service, path: str, offset: int, limit: int, keyword: str | None = None
) -> schemas.FolderListing:
    folders: list[schemas.FolderEntry] = []
    photos: list[schemas.FolderEntry] = []
    key = keyword_key(keyword) if keyword and keyword.strip() else None
    with service.open_folder(path) as where:
        if not where.is_dir:
            raise RequestRefused(400, f"{shown(path)}: not a folder")
        with os.scandir(where.fd) as entries:
            for entry in sorted(entries, key=lambda e: e.name.lower()):
                if entry.name.startswith("."):
                    continue
                raw = os.fsencode(entry.name)
                inside = where.path + b"/" + raw if where.path else raw
                kind = _entry_kind(service.folder_root(), entry, inside)
                item = schemas.FolderEntry(
                    name=raw.decode("utf-8", "replace"), path=encode_name(inside)
                )
                if kind == "folder":
                    folders.append(item)
                elif kind == "photo":
                    photos.append(item)
    if key is not None:
        photos = _with_keyword(service, photos, key)
    here = where.path
    return schemas.FolderListing(
        path=encode_name(here),
        parent=encode_name(os.path.dirname(here)) if here else None,
        folders=folders,
        photos=photos[offset : offset + limit],
        total_photos=len(photos),
        offset=offset,
    )


def _with_keyword(
    service: _Service, photos: list[schemas.FolderEntry], key: str
) -> list[schemas.FolderEntry]:
    """The `photos` whose metadata or accepted decisions hold the keyword `key`."""
    root = service.folder_root()
    decided = service.feedback.photos_with_decisions()
    kept = []
    for item in photos:
        file = PhotoFile(root, (root / os.fsdecode(decode_path(item.path))).resolve(), item.path)
        verdicts = decided.get(str(file.path), {})
        if key in all_keywords(None, [k for k, v in verdicts.items() if v == "accepted"]):
            kept.append(item)
            continue
        try:
            file.check_inside()
            found = file.keywords()
        except RequestRefused:
            continue
        if key in all_keywords(found):
            kept.append(item)
    return kept


def _entry_kind(root: Path, entry: os.DirEntry, inside: bytes) -> str | None:
    """The kind of one entry of a listed folder: "folder", "photo" or None (left out)."""
    if entry.is_symlink():
        try:  # listed only where it leads to inside the folder
            with open_beneath(root, inside, "") as target:
                if target.is_dir:
                    return "folder"
                return "photo" if is_image_name(target.path) else None
        except RequestRefused:
            return None
    if entry.is_dir(follow_symlinks=False):
        return "folder"
    if entry.is_file(follow_symlinks=False) and is_image_name(inside):
        return "photo"
    return None


def _named(message: str, path: str, name: str) -> str:
    """`message` about the file at `path`, which it calls `name` instead."""
    message = message.replace(path, name)
    return message if message.startswith(name) else f"{name}: {message}"


def _validation_message(error: RequestValidationError) -> str:
    """One line per invalid part of a request (never quoting the input, which may be long)."""
    kinds = {"query": "query parameter", "path": "path parameter", "body": "body field",
             "header": "header"}  # fmt: skip
    parts = []
    for problem in error.errors():
        where, *names = problem.get("loc") or ("request",)
        field_name = ".".join(str(n) for n in names if not isinstance(n, int))
        kind = kinds.get(str(where), str(where)) if field_name else str(where)
        parts.append(f"{kind} {field_name}: {problem.get('msg')}".replace(" :", ":"))
    return "; ".join(parts) or "invalid request"


def _display_name(filename: str | None) -> str:
    """The base name of an uploaded file, without control characters, at most 200 long."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f\ud800-\udfff]", "", base)
    return name[:200] or "upload"


def _clean_label(label: str) -> str:
    """A keyword from a request with its spaces normalised (422 if only spaces)."""
    label = " ".join(label.split())
    if not label:
        raise RequestRefused(422, "label: expected a keyword, got only spaces")
    return label


def _written_out(file: PhotoFile, change: KeywordChange) -> schemas.Written:
    return schemas.Written(file=file.shown(change.target), added=list(change.added),
                           removed=list(change.removed))  # fmt: skip


def _decision_out(decision: Decision) -> schemas.Decision:
    score = decision.score
    return schemas.Decision(
        label=decision.label, decision=decision.decision,
        score=score if score is None or math.isfinite(score) else None,
        decided_at=decision.decided_at,
    )  # fmt: skip


def serve(config: ServerConfig) -> None:
    """Load the model, then serve until interrupted (Ctrl+C)."""
    import uvicorn

    app = create_app(config)
    shown = "localhost" if is_loopback(config.host) else config.host
    fragment = "/#token=YOUR_TOKEN" if config.token else "/"
    database = app.state.service.feedback.path
    print(f"phototag: serving {config.model} on http://{shown}:{config.port}{fragment} "
          f"(API docs: /docs; decisions: {database})", flush=True)  # fmt: skip
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
