"""What keeps the service safe: who may call it, what may be uploaded, what may be read.

- Bound to a loopback address, the service answers only requests whose ``Host`` is a
  loopback name (so a web page cannot reach it through DNS rebinding); bound to any
  other address it refuses to start without a token.
- With a token, every ``/api`` request must carry ``Authorization: Bearer TOKEN``
  (compared in constant time). A token must look random (`token_problem`).
- No other web site may use the service through a visitor's browser: ``/api`` requests
  and every request that changes something are refused when ``Sec-Fetch-Site``,
  ``Origin`` or ``Referer`` say they come from another origin, and requests that change
  something must carry an ``X-Phototag`` header, which a plain HTML form cannot send
  and a script on another site cannot send without the service's consent (CORS).
- Uploads must declare their size (``Content-Length``; 411 otherwise), stay under the
  limit (413) and be an image format phototag decodes, judged by content (415).
- Paths from requests are opened inside their folder without leaving it
  (`phototag.app.web.files`).
"""

from __future__ import annotations

import collections
import hmac
import ipaddress
import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from phototag.errors import InvalidInputError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MIN_TOKEN_LENGTH = 16
#: Least estimated randomness of a token, in bits (16 random hex digits carry 64).
MIN_TOKEN_BITS = 32
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
#: The header every state-changing request must carry (any value, e.g. 1).
CSRF_HEADER = "X-Phototag"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
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

    @classmethod
    def folder_changed(cls, name: str) -> RequestRefused:
        """409: a folder on the way to `name` was swapped while the request read it."""
        return cls(409, f"{name}: its folder changed while it was read; try again")


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
        "Pass a long random secret with --token-file FILE or the PHOTOTAG_TOKEN "
        f"environment variable (--token shows in `ps`); make one with: {MAKE_TOKEN}"
    )
    if token is None:
        if not is_loopback(host):
            raise InvalidInputError(
                "--token", f"a token when serving on a non-loopback address ({host})",
                "none", fix,
            )  # fmt: skip
        return
    problem = token_problem(token)
    if problem is not None:
        raise InvalidInputError(
            "--token", f"a random secret of at least {MIN_TOKEN_LENGTH} characters",
            f"a token that {problem}", fix,
        )  # fmt: skip


def token_problem(token: str) -> str | None:
    """Why `token` is too easy to guess (never quoting it), or None.

    Refused: fewer than 16 characters, spaces or control characters, one short pattern
    repeated, a long run of equal or consecutive characters (``aaaa``, ``1234``), and an
    estimated randomness (length x Shannon entropy of its characters) under 32 bits.
    Tokens from `secrets` (``token_hex(8)`` and longer) pass, but for about 2 in a
    million 16-digit hex tokens that hold a run of 7.
    """
    size = len(token)
    if size < MIN_TOKEN_LENGTH:
        return f"has only {size} characters"
    if not token.isprintable() or any(c.isspace() for c in token):
        return "contains spaces or control characters"
    if any(token == (token[:p] * (size // p + 1))[:size] for p in range(1, size // 2 + 1)):
        return "repeats one short pattern"
    if _longest_run(token) >= max(7, size / 3):
        return "is mostly a run of equal or consecutive characters"
    counts = collections.Counter(token).values()
    bits = -sum(n * math.log2(n / size) for n in counts)
    if bits < MIN_TOKEN_BITS:
        return f"is too regular (about {bits:.0f} bits of randomness, {MIN_TOKEN_BITS} needed)"
    return None


def _longest_run(text: str) -> int:
    """Length of the longest stretch whose characters step by one fixed -1, 0 or +1."""
    longest = run = 1
    step = None
    for a, b in zip(text, text[1:], strict=False):
        delta = ord(b) - ord(a)
        if delta not in (-1, 0, 1):
            run, step = 1, None
        elif delta == step:
            run += 1
        else:
            run, step = 2, delta
        longest = max(longest, run)
    return longest


def read_token_file(path: Path) -> str:
    """The token kept in a file (surrounding whitespace and the final newline dropped)."""
    try:
        token = path.expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise InvalidInputError(
            "--token-file", "a readable text file holding the token", f"{path} ({reason})"
        ) from None
    if not token:
        raise InvalidInputError("--token-file", "a file holding the token", f"{path} (empty)")
    return token


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


class ApiGuard:
    """ASGI middleware applying the host, origin, token and upload-size rules."""

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
        changes = scope["method"] not in SAFE_METHODS
        if not path.startswith("/api/") and not changes:
            return
        check_same_origin(headers)
        if self.token is not None and not token_matches(headers.get("authorization"), self.token):
            raise RequestRefused(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'")
        if changes and not headers.get(CSRF_HEADER.lower(), "").strip():
            raise RequestRefused(
                403, f"requests that change something must carry the header '{CSRF_HEADER}: 1' "
                "(a form on another web site cannot send it)",
            )  # fmt: skip
        if scope["method"] == "POST" and path in self.upload_paths:
            length = headers.get("content-length")
            if length is None or not length.isdigit():
                raise RequestRefused(411, "uploads must declare their size (Content-Length)")
            if int(length) > self.max_body_bytes:
                raise RequestRefused(413, too_large_message(int(length), self.max_body_bytes))


def check_same_origin(headers: dict[str, str]) -> None:
    """Refuse (403) a request a browser says comes from another origin than the service."""
    site = headers.get("sec-fetch-site", "").strip().lower()
    if site not in ("", "same-origin", "none"):
        raise RequestRefused(403, f"requests from other web sites are refused ({site})")
    origin = headers.get("origin")
    if origin is None and headers.get("referer"):
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(headers["referer"]))
    if origin is not None and _netloc(origin) != headers.get("host", "").strip().lower():
        raise RequestRefused(403, "requests from other web sites are refused (Origin)")


def _netloc(origin: str) -> str | None:
    """``host[:port]`` of an origin, the scheme's default port left out (None if opaque)."""
    try:
        parts = urlsplit(origin.strip().lower())
        default = {"http": 80, "https": 443}.get(parts.scheme)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None  # "null": a sandboxed or privacy-sensitive context
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host if port is None or port == default else f"{host}:{port}"


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
