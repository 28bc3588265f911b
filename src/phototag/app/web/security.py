"""What keeps the service safe: who may call it, what may be uploaded, what may be read.

- Bound to a loopback address, the service answers only requests whose ``Host`` is a
  loopback name (so a web page cannot reach it through DNS rebinding); bound to any
  other address it refuses to start without a token.
- With a token, every ``/api`` request must carry ``Authorization: Bearer TOKEN``
  (compared in constant time).
- Uploads must declare their size (``Content-Length``; 411 otherwise), stay under the
  limit (413) and be an image format phototag decodes, judged by content (415).
- A folder path from a request is resolved (``..`` and symlinks followed) and refused
  unless the result lies inside the configured folder.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path, PurePosixPath
from typing import Any

from phototag.errors import InvalidInputError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
#: Formats accepted for upload: name -> file extension the upload is stored with.
UPLOAD_FORMATS: dict[str, str] = {
    "JPEG": ".jpg", "PNG": ".png", "WebP": ".webp", "TIFF": ".tif", "GIF": ".gif",
    "BMP": ".bmp", "HEIC": ".heic", "AVIF": ".avif",
}  # fmt: skip
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})


class RequestRefused(Exception):
    """A request the guards refuse: HTTP `status` and a message for the user."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_token_setting(host: str, token: str | None) -> None:
    """Refuse a configuration that would expose the service without a (strong) token."""
    fix = (
        "Pass --token (or set PHOTOTAG_TOKEN) to a long random secret, e.g. the output "
        "of: python -c 'import secrets; print(secrets.token_urlsafe())'"
    )
    if token is None:
        if not is_loopback(host):
            raise InvalidInputError(
                "--token", f"a token when serving on a non-loopback address ({host})",
                "none", fix,
            )  # fmt: skip
        return
    if len(token) < MIN_TOKEN_LENGTH or not token.isprintable() or " " in token:
        raise InvalidInputError(
            "--token", f"at least {MIN_TOKEN_LENGTH} printable characters without spaces",
            f"{len(token)} characters", fix,
        )  # fmt: skip


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries `token` (constant-time compare)."""
    scheme, _, value = (header or "").partition(" ")
    matches = hmac.compare_digest(value.strip().encode(), token.encode())
    return scheme.lower() == "bearer" and matches


def upload_format(head: bytes) -> str | None:
    """The format of an upload judged by its first bytes (a key of `UPLOAD_FORMATS`)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM" and len(head) >= 18:
        return "BMP"
    if head[4:8] == b"ftyp":
        if head[8:12] in (b"avif", b"avis"):
            return "AVIF"
        if head[8:12] in _HEIF_BRANDS:
            return "HEIC"
    return None


def resolve_inside(root: Path, relative: str) -> Path:
    """``root / relative`` resolved, if it exists and lies inside `root`.

    `root` must already be resolved. Raises `RequestRefused`: 400 for an absolute or
    malformed path, 403 for a path leading outside `root` (``..``, symlinks), 404 for
    one that does not exist.
    """
    text = relative.replace("\\", "/")
    if "\x00" in text or PurePosixPath(text).is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise RequestRefused(400, f"{relative!r}: expected a path relative to the folder")
    try:
        path = (root / text).resolve(strict=True)
    except FileNotFoundError:
        raise RequestRefused(404, f"{relative!r}: no such file or folder") from None
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
        raise RequestRefused(404, f"{relative!r}: cannot be opened ({error})") from None
    if path != root and not path.is_relative_to(root):
        raise RequestRefused(403, f"{relative!r}: outside the served folder")
    return path


class ApiGuard:
    """ASGI middleware applying the host, token and upload-size rules to every request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        loopback_only: bool,
        upload_paths: frozenset[str],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only
        self.upload_paths = upload_paths
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self._check(scope)
            except RequestRefused as refused:
                await _send_error(send, refused)
                return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.loopback_only and not is_loopback(_hostname(headers.get("host", ""))):
            raise RequestRefused(400, "this service only answers requests for localhost")
        path: str = scope["path"]
        if not path.startswith("/api/"):
            return
        if self.token is not None and not token_matches(headers.get("authorization"), self.token):
            raise RequestRefused(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'")
        if scope["method"] == "POST" and path in self.upload_paths:
            length = headers.get("content-length")
            if length is None or not length.isdigit():
                raise RequestRefused(411, "uploads must declare their size (Content-Length)")
            if int(length) > self.max_body_bytes:
                raise RequestRefused(413, too_large_message(int(length), self.max_body_bytes))


def too_large_message(size: int, limit: int) -> str:
    return (
        f"upload too large: {size / 2**20:.1f} MiB, the limit is {limit / 2**20:.1f} MiB "
        "(start the service with a larger --max-upload-mb to allow it)"
    )


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _send_error(send: Send, refused: RequestRefused) -> None:
    body = json.dumps({"detail": refused.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if refused.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
