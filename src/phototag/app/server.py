"""`phototag serve`: suggested keywords in a web page and a REST API (FastAPI + uvicorn).

Upload photos or browse a configured folder, see each photo's suggested keywords with
their scores, accept or reject each one. Decisions go to ``feedback.sqlite`` in the
data folder (`phototag.feedback`), which ``phototag train --feedback`` learns from.
The security rules are in `phototag.app.web.security`; docs/serve.md explains them.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Body, FastAPI, File, Query, Request, Security, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from phototag.app.web import schemas
from phototag.app.web.security import (
    UPLOAD_FORMATS,
    ApiGuard,
    RequestRefused,
    check_token_setting,
    is_loopback,
    resolve_inside,
    too_large_message,
    upload_format,
)
from phototag.app.web.tagger import PhotoUnreadable, Tagger
from phototag.errors import InvalidInputError
from phototag.feedback import (
    DATABASE_FILE,
    Decision,
    FeedbackStore,
    Photo,
    default_data_dir,
)
from phototag.fileio import atomic_write
from phototag.imaging import IMAGE_EXTENSIONS, ImageLoadError, load_image

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
    host: str = "127.0.0.1"
    port: int = 8000
    folder: Path | None = None
    token: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    store: Path | None = None
    runtime: str = "onnx"
    max_upload_bytes: int = 25 * 2**20
    max_batch: int = 16

    def validate(self) -> None:
        """Raise `InvalidInputError` for a configuration that must not start."""
        check_token_setting(self.host, self.token)
        if not 0 <= self.port <= 65535:
            raise InvalidInputError("--port", "a port number 0-65535", str(self.port))
        if self.max_upload_bytes < 1:
            raise InvalidInputError("--max-upload-mb", "a size > 0", str(self.max_upload_bytes))
        if self.folder is not None and not Path(self.folder).expanduser().is_dir():
            raise InvalidInputError("--folder", "an existing folder", str(self.folder))


class _Service:
    """The state one running app shares between requests."""

    def __init__(self, config: ServerConfig) -> None:
        from phototag.pretrained import load_model

        self.config = config
        self.model_id = str(config.model)
        self.tagger = Tagger(
            load_model(config.model), store_root=config.store, runtime=config.runtime,
            max_batch=config.max_batch,
        )  # fmt: skip
        self.data_dir = Path(config.data_dir).expanduser().resolve()
        self.uploads = self.data_dir / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.feedback = FeedbackStore(self.data_dir / DATABASE_FILE)
        self.folder = None if config.folder is None else Path(config.folder).expanduser().resolve()

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

    def readable(self, path: str | Path) -> Path:
        """`path` resolved, if it lies in the uploads or the served folder (else 404)."""
        try:
            resolved = Path(path).resolve(strict=True)
        except (OSError, RuntimeError):
            raise RequestRefused(404, "the photo's file no longer exists") from None
        roots = [self.uploads] + ([self.folder] if self.folder is not None else [])
        if not any(resolved.is_relative_to(root) for root in roots):
            raise RequestRefused(404, "the photo is outside the uploads and the served folder")
        return resolved

    def folder_root(self) -> Path:
        if self.folder is None:
            raise RequestRefused(404, "no folder is served (start with --folder DIR)")
        return self.folder

    async def tags(self, name: str, path: str | Path, top_k: int | None) -> list[tuple[str, float]]:
        """Suggested ``(label, score)`` pairs of the photo at `path` (422 if unreadable)."""
        try:
            return await self.tagger.suggest(path, top_k)
        except PhotoUnreadable as error:
            raise RequestRefused(422, f"{name}: {error}") from None

    async def suggestions(
        self, photo: Photo, tags: list[tuple[str, float]]
    ) -> schemas.Suggestions:
        """`tags` of `photo` with the decisions made on it."""
        decisions = await run_in_threadpool(self.feedback.decisions, photo.id)
        verdict = {d.label: d.decision for d in decisions}
        return schemas.Suggestions(
            photo=schemas.PhotoOut(id=photo.id, name=photo.name, source=photo.source),  # type: ignore[arg-type]
            model=self.model_id,
            tags=[schemas.Tag(label=t, score=s, decision=verdict.get(t)) for t, s in tags],
            decisions=[_decision_out(d) for d in decisions],
        )


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
        "was started with a token. Errors answer `{\"detail\": message}`.",
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
TopK = Annotated[int | None, Query(ge=1, le=200, description="the K best keywords instead "
                                   "of the model's own choice")]  # fmt: skip
ThumbSize = Annotated[int, Query(ge=16, le=1024, description="longest side in pixels")]


def _add_api(app: FastAPI, service: _Service) -> None:
    bearer = [Security(HTTPBearer(auto_error=False, description="the --token of the service"))]

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
            upload_formats=list(UPLOAD_FORMATS),
            token_required=service.config.token is not None,
        )

    upload_errors = {**ERRORS, 411: {"model": schemas.ErrorOut}, 413: {"model": schemas.ErrorOut},
                     415: {"model": schemas.ErrorOut}}  # fmt: skip

    @app.post(UPLOAD_PATH, response_model=schemas.Suggestions, tags=["photos"],
              dependencies=bearer, responses=upload_errors)  # fmt: skip
    async def upload(
        file: Annotated[UploadFile, File(description="one photo")], top_k: TopK = None
    ) -> schemas.Suggestions:
        """Upload a photo and get its suggested keywords (the same bytes give the same id).

        413 when larger than the limit, 415 when not an image format phototag reads,
        422 when the image cannot be decoded.
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
        path, created = await run_in_threadpool(service.save_upload, data, kind)
        try:
            tags = await service.tags(name, path, top_k)
        except RequestRefused:
            if created:
                path.unlink(missing_ok=True)  # keep nothing that could not be read
            raise
        photo = await run_in_threadpool(service.feedback.add_photo, path, name, "upload")
        return await service.suggestions(photo, tags)

    @app.get("/api/photos/{photo_id}/suggestions", response_model=schemas.Suggestions,
             tags=["photos"], dependencies=bearer, responses=ERRORS)  # fmt: skip
    async def suggestions(photo_id: int, top_k: TopK = None) -> schemas.Suggestions:
        """Suggested keywords of a known photo, with the decisions made on them."""
        photo = await run_in_threadpool(service.photo, photo_id)
        path = await run_in_threadpool(service.readable, photo.path)
        return await service.suggestions(photo, await service.tags(photo.name, path, top_k))

    @app.get("/api/photos/{photo_id}/thumbnail", tags=["photos"], dependencies=bearer,
             responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}},
             response_class=Response)  # fmt: skip
    def photo_thumbnail(photo_id: int, size: ThumbSize = 256) -> Response:
        """A JPEG of the photo, upright, its longest side at most `size` pixels."""
        return _thumbnail(service.readable(service.photo(photo_id).path), size)

    @app.get("/api/photos/{photo_id}/decisions", response_model=list[schemas.Decision],
             tags=["decisions"], dependencies=bearer, responses=ERRORS)  # fmt: skip
    def decisions(photo_id: int) -> list[schemas.Decision]:
        """Every decision on the photo's keywords (the latest per keyword)."""
        service.photo(photo_id)
        return [_decision_out(d) for d in service.feedback.decisions(photo_id)]

    @app.post("/api/photos/{photo_id}/decisions", response_model=schemas.Decision,
              tags=["decisions"], dependencies=bearer, responses=ERRORS)  # fmt: skip
    def decide(photo_id: int, body: Annotated[schemas.DecisionIn, Body()]) -> schemas.Decision:
        """Accept or reject a keyword of the photo; a later decision replaces an earlier one."""
        service.photo(photo_id)
        label = " ".join(body.label.split())
        if not label:
            raise RequestRefused(422, "label: expected a keyword, got only spaces")
        decision = service.feedback.decide(
            photo_id, label, body.decision, body.score, service.model_id
        )
        return _decision_out(decision)

    @app.get("/api/folder", response_model=schemas.FolderListing, tags=["folder"],
             dependencies=bearer, responses=ERRORS)  # fmt: skip
    def folder(
        path: Annotated[str, Query(max_length=4096)] = "",
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> schemas.FolderListing:
        """Subfolders and photos of a folder inside the served folder (hidden ones left out)."""
        root = service.folder_root()
        where = resolve_inside(root, path) if path else root
        if not where.is_dir():
            raise RequestRefused(400, f"{path!r}: not a folder")
        return _listing(root, where, offset, limit)

    @app.get("/api/folder/thumbnail", tags=["folder"], dependencies=bearer,
             responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}},
             response_class=Response)  # fmt: skip
    def folder_thumbnail(
        path: Annotated[str, Query(min_length=1, max_length=4096)], size: ThumbSize = 256
    ) -> Response:
        """A JPEG of a photo in the served folder, its longest side at most `size` pixels."""
        return _thumbnail(_folder_photo(service, path), size)

    @app.post("/api/folder/photos", response_model=schemas.Suggestions, tags=["folder"],
              dependencies=bearer, responses=ERRORS)  # fmt: skip
    async def folder_photo(
        body: Annotated[schemas.FolderPhotoIn, Body()], top_k: TopK = None
    ) -> schemas.Suggestions:
        """Suggested keywords of a photo in the served folder (path relative to it)."""
        target = await run_in_threadpool(_folder_photo, service, body.path)
        relative = target.relative_to(service.folder_root()).as_posix()
        tags = await service.tags(relative, target, top_k)
        photo = await run_in_threadpool(service.feedback.add_photo, target, relative, "folder")
        return await service.suggestions(photo, tags)


def _folder_photo(service: _Service, path: str) -> Path:
    target = resolve_inside(service.folder_root(), path)
    if not target.is_file() or target.suffix.lower() not in IMAGE_EXTENSIONS:
        raise RequestRefused(400, f"{path!r}: not a photo file")
    return target


def _listing(root: Path, where: Path, offset: int, limit: int) -> schemas.FolderListing:
    folders: list[schemas.FolderEntry] = []
    photos: list[schemas.FolderEntry] = []
    with os.scandir(where) as entries:
        for entry in sorted(entries, key=lambda e: e.name.lower()):
            if entry.name.startswith("."):
                continue
            target = Path(entry.path)
            if entry.is_symlink():
                target = target.resolve()
                if not target.is_relative_to(root):
                    continue  # never offer a way out of the folder
            relative = Path(entry.path).relative_to(root).as_posix()
            item = schemas.FolderEntry(name=entry.name, path=relative)
            if target.is_dir():
                folders.append(item)
            elif target.is_file() and target.suffix.lower() in IMAGE_EXTENSIONS:
                photos.append(item)
    here = where.relative_to(root).as_posix() if where != root else ""
    parent = None if where == root else where.parent.relative_to(root).as_posix()
    return schemas.FolderListing(
        path=here,
        parent="" if parent == "." else parent,
        folders=folders,
        photos=photos[offset : offset + limit],
        total_photos=len(photos),
        offset=offset,
    )


def _thumbnail(path: Path, size: int) -> Response:
    try:
        image = load_image(path, max_side=size)
    except ImageLoadError as error:
        raise RequestRefused(422, str(error).replace(str(path), path.name)) from None
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return Response(buffer.getvalue(), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip


def _display_name(filename: str | None) -> str:
    """The base name of an uploaded file, without control characters, at most 200 long."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", (filename or "").replace("\\", "/").rsplit("/", 1)[-1])
    return name[:200] or "upload"


def _decision_out(decision: Decision) -> schemas.Decision:
    return schemas.Decision(
        label=decision.label, decision=decision.decision, score=decision.score,
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
