"""`phototag serve`: the web page and REST API."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def _add_serve(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve", help="web page + REST API: suggested keywords to accept or reject",
        description="Serve a web page and a REST API (OpenAPI docs at /docs) that suggest "
        "keywords for uploaded photos or photos of --folder; accept/reject decisions are "
        "stored for `phototag train --feedback`. Binds to localhost unless --host is given; "
        "any other host requires --token. docs/serve.md.",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument(
        "--model",
        default="default",
        metavar="NAME|DIR",
        help="a shipped model name or a directory from `phototag train`",
    )
    parser.add_argument(
        "--vocabulary",
        type=Path,
        metavar="FILE",
        help="suggest only the words of FILE (one per line), scored without training as "
        "`phototag annotate --vocabulary` does",
    )
    parser.add_argument(
        "--folder",
        type=Path,
        metavar="DIR",
        help="a photo folder to browse (nothing outside it is ever readable)",
    )
    parser.add_argument(
        "--write",
        choices=("xmp", "none"),
        default="xmp",
        help="xmp (default): accepted keywords of --folder photos go into their XMP sidecar "
        "(photo.jpg.xmp), rejected ones phototag wrote come out again (`phototag untag` "
        "removes them all); none: only the decisions database. Uploads always get a sidecar "
        "in the data folder",
    )
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument(
        "--token",
        help="secret every API call must send as 'Authorization: Bearer TOKEN'; required "
        "for a non-localhost --host. Visible to other users in `ps`: prefer --token-file "
        "or $PHOTOTAG_TOKEN",
    )
    secret.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="read the token from FILE (default: the token is $PHOTOTAG_TOKEN, if set)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="where uploads and decisions (feedback.sqlite) are kept "
        "(default: $PHOTOTAG_DATA or ~/.local/share/phototag)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=25.0,
        help="largest accepted upload in MiB (default: 25)",
    )
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=50.0,
        help="largest image decoded at full size, in megapixels; baseline JPEGs are "
        "decoded at reduced size and may be larger (default: 50)",
    )
    parser.add_argument("--store", type=Path, metavar="DIR", help="feature store directory")
    parser.add_argument(
        "--runtime",
        choices=("onnx", "torch"),
        default="onnx",
        help="where the encoder runs (default: onnx, falls back to torch)",
    )
    parser.set_defaults(run=_run_serve)  # fmt: skip


def _run_serve(args: argparse.Namespace) -> int:
    import os

    from phototag.app.server import ServerConfig, serve
    from phototag.app.web.security import read_token_file

    token = args.token
    if args.token_file is not None:
        token = read_token_file(args.token_file)
    elif token is None:
        token = os.environ.get("PHOTOTAG_TOKEN")
    config = ServerConfig(
        model=args.model, vocabulary=args.vocabulary, host=args.host, port=args.port,
        folder=args.folder, write=args.write,
        token=token or None, store=args.store, runtime=args.runtime,
        max_upload_bytes=_scaled("--max-upload-mb", args.max_upload_mb, 2**20),
        max_pixels=_scaled("--max-megapixels", args.max_megapixels, 1e6),
    )  # fmt: skip
    if args.data is not None:
        config.data_dir = args.data
    serve(config)
    return 0


def _scaled(option: str, value: float, unit: float) -> int:
    """`value` (in units of `unit`) as an integer count, refused unless finite and > 0."""
    from phototag.errors import InvalidInputError

    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(option, "a number > 0", repr(value))
    return max(1, int(value * unit))


def register(commands: argparse._SubParsersAction) -> None:
    _add_serve(commands)
