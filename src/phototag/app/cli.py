"""The `phototag` command: argument parsing and error reporting around the commands
(`phototag.app.commands`, one module each)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from phototag.app.commands import (
    annotate,
    benchmark,
    catalog,
    evaluate,
    features,
    finetune,
    serve,
    train,
)
from phototag.errors import PhototagError


def build_parser() -> argparse.ArgumentParser:
    from phototag import __version__

    parser = argparse.ArgumentParser(
        prog="phototag",
        description="Automatic multi-label image annotation: tag photo libraries, "
        "train and evaluate annotation models.",
    )
    parser.add_argument("--version", action="version", version=f"phototag {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (annotate, train, evaluate, features, finetune, serve, benchmark, catalog):
        command.register(commands)
    return parser


def _show_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    print(f"phototag: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    import warnings

    from phototag.errors import DataDefectWarning

    # handled dataset defects are reported as notes by the commands themselves
    warnings.simplefilter("ignore", DataDefectWarning)
    warnings.showwarning = _show_warning
    try:
        return args.run(args)
    except PhototagError as exc:
        print(f"phototag: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # a package of an extra the install left out
        from phototag.extras import missing_extra

        missing = missing_extra(exc, f"phototag {args.command}")
        if missing is None:
            raise
        print(f"phototag: error: {missing}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("phototag: interrupted", file=sys.stderr)
        return 130
    finally:
        if "torch.distributed" in sys.modules:  # a command trained under torchrun
            from phototag.training import end_distributed

            end_distributed()


if __name__ == "__main__":
    sys.exit(main())
