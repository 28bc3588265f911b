"""Reading weight files safely and identifying weights by content.

Only tensors are ever read: ``.safetensors`` through safetensors, ``.pth``/``.pt``/
``.bin``/``.ckpt`` through ``torch.load(..., weights_only=True)``. Nothing pickled
is executed and nothing is downloaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from phototag.errors import InvalidInputError, PhototagError

TORCH_SUFFIXES: Final = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIXES: Final = (".safetensors",)
if TYPE_CHECKING:
    import torch

_WRAPPER_KEYS: Final = ("state_dict", "model", "model_state_dict", "module")


class WeightsError(PhototagError, ValueError):
    """A weights file that cannot be used for the requested architecture."""


def load_state_dict_file(path: str | Path, *, argument: str = "weights") -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt``/``.bin``/``.ckpt`` or ``.safetensors`` file, on CPU.

    A checkpoint that wraps its tensors in one of ``state_dict``, ``model``,
    ``model_state_dict`` or ``module`` is unwrapped, and a ``module.`` prefix left by
    ``DataParallel`` is removed.
    """
    import torch

    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in TORCH_SUFFIXES + SAFETENSORS_SUFFIXES:
        raise InvalidInputError(
            argument,
            f"a file ending in {', '.join(TORCH_SUFFIXES + SAFETENSORS_SUFFIXES)}",
            repr(str(path)),
        )
    if not path.is_file():
        raise InvalidInputError(
            argument, "an existing weights file", repr(str(path)), "Check the path."
        )
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as error:  # safetensors raises its own error types
            raise WeightsError(f"{path}: not a readable safetensors file ({error})") from error
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle/unpickling errors of many kinds
            raise WeightsError(
                f"{path}: not loadable with torch.load(weights_only=True) ({error}). "
                "Only plain tensor state dicts are accepted; re-save the weights with "
                "torch.save(model.state_dict(), path) or as .safetensors."
            ) from error
    return _unwrap(state, path)


def _unwrap(state: object, path: Path) -> dict[str, torch.Tensor]:
    import torch

    for _ in range(2):
        if isinstance(state, Mapping):
            inner = [k for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)]
            if inner and not any(isinstance(v, torch.Tensor) for v in state.values()):
                state = state[inner[0]]
    if not isinstance(state, Mapping) or not state:
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), got {type(state)}")
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        tensors[key.removeprefix("module.")] = value
    return tensors


def state_dict_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' names, dtypes, shapes and values (hex).

    Independent of the file format and key order; BatchNorm's
    ``num_batches_tracked`` counters are ignored because they do not change outputs.
    """
    import torch

    sha = hashlib.sha256()
    for key in sorted(state):
        if key.endswith("num_batches_tracked"):
            continue
        tensor = state[key].detach().cpu().contiguous()
        sha.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def fill_batch_counters(state: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Add BatchNorm ``num_batches_tracked`` entries a file left out (e.g. some exports)."""
    import torch

    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a message that lists what did not match."""
    fill_batch_counters(state, model)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong_shape),
        ):
            if keys:
                shown = ", ".join(keys[:6]) + (
                    f", ... ({len(keys)} in all)" if len(keys) > 6 else ""
                )
                parts.append(f"{label}: {shown}")
        raise WeightsError(
            f"{source}: the weights do not fit {type(model).__name__} ({'; '.join(parts)})"
        )
    model.load_state_dict(state, strict=True)
