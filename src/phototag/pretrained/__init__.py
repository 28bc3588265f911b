"""Models that ship inside the package (safetensors + JSON), loaded by short name.

Each one is a directory ``phototag/pretrained/<name>/`` written by `Annotator.save`;
``docs/pretrained.md`` gives the command that rebuilds each of them.
"""

from __future__ import annotations

from pathlib import Path

from phototag.errors import InvalidInputError
from phototag.models.base import CONFIG_FILE, Annotator

DEFAULT_MODEL = "default"
_ROOT = Path(__file__).resolve().parent


def available_pretrained() -> list[str]:
    """Names of the models shipped with this installation."""
    return sorted(p.name for p in _ROOT.iterdir() if (p / CONFIG_FILE).is_file())


def pretrained_path(name: str) -> Path:
    """Directory of shipped model `name`."""
    path = _ROOT / name
    if not (path / CONFIG_FILE).is_file():
        shipped = ", ".join(available_pretrained()) or "none"
        raise InvalidInputError(
            "--model", f"a model directory or a shipped model name ({shipped})", repr(name)
        )
    return path


def model_directory(name_or_path: str | Path) -> Path:
    """The directory `load_model` reads: a saved model's, or a shipped model's by name."""
    path = Path(name_or_path).expanduser()
    return path if path.is_dir() else pretrained_path(str(name_or_path))


def load_model(name_or_path: str | Path) -> Annotator:
    """A saved model directory, or a shipped model by name (``"default"``)."""
    return Annotator.load(model_directory(name_or_path))
