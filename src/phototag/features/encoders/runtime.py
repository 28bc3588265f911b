"""Where an encoder's forward pass runs: eager PyTorch or ONNX Runtime.

``runtime="onnx"`` exports the network once (TorchScript-based ``torch.onnx.export``,
fixed input size, dynamic batch) into the cache directory, keyed by encoder name,
weights digest and input size, and then runs it with ONNX Runtime's CPU provider
(graph optimisations on: Conv+BN+ReLU fusion, NCHWc layouts). On 2 CPU cores that is
several times faster than eager PyTorch with the same outputs (cosine 1.0). Missing
``onnxruntime`` or a failed export falls back to eager PyTorch with a warning.

Cache directory: the ``cache_dir`` argument, else `phototag.cache.cache_dir()`; files go
under ``encoders/``. Exporting needs the ``onnx``
package (the TorchScript exporter writes through it); running a cached file needs only
``onnxruntime``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import torch
from torch import nn

from phototag.cache import cache_dir as default_cache_dir
from phototag.errors import InvalidInputError
from phototag.features.encoders.base import Backbone, ImageEncoder, TorchBackend, warn_fallback

RUNTIMES: Final = ("torch", "onnx")
ONNX_OPSET: Final = 17
#: Bump when the exported graph changes for the same weights (invalidates caches).
EXPORT_VERSION: Final = 1
INPUT_NAME: Final = "image"


def attach_runtime(encoder: ImageEncoder, runtime: str, cache_dir: str | Path | None) -> None:
    """Give ``encoder`` the requested runtime (or eager torch, with a warning, if it
    cannot be had)."""
    if runtime not in RUNTIMES:
        raise InvalidInputError("runtime", f"one of {', '.join(RUNTIMES)}", repr(runtime))
    encoder._set_backend(TorchBackend(encoder.model))
    if runtime == "torch":
        return
    try:
        import onnxruntime  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        warn_fallback(
            f"{encoder.name}: runtime='onnx' needs the onnxruntime package (pip install "
            "onnxruntime); running eager PyTorch instead."
        )
        return
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = onnx_model_path(encoder, directory)
    if not path.is_file() and importlib.util.find_spec("onnx") is None:
        warn_fallback(
            f"{encoder.name}: exporting for runtime='onnx' needs the onnx package (pip "
            "install onnx); running eager PyTorch instead."
        )
        return
    try:
        if not path.is_file():
            export_onnx(encoder.model, encoder.preprocess.input_size, path)
        backend = OnnxBackend(path, encoder.model, encoder.preprocess.input_size)
    except Exception as error:  # export/runtime failures of many kinds
        warn_fallback(
            f"{encoder.name}: could not set up ONNX Runtime ({type(error).__name__}: "
            f"{error}); running eager PyTorch instead."
        )
        return
    encoder._set_backend(backend)


def onnx_model_path(encoder: ImageEncoder, directory: Path) -> Path:
    """Cache file of ``encoder``'s exported graph."""
    name = (
        f"{encoder.name}-{encoder.weights_sha256[:16]}-{encoder.preprocess.input_size}px"
        f"-opset{ONNX_OPSET}-v{EXPORT_VERSION}.onnx"
    )
    return directory / "encoders" / name


class _TupleOutputs(nn.Module):
    """The backbone with its dict outputs as a tuple in ``output_names`` order."""

    def __init__(self, model: Backbone) -> None:
        super().__init__()
        self.model = model
        self.names = model.output_names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[name] for name in self.names)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def export_onnx(model: Backbone, input_size: int, path: Path, *, check: bool = True) -> Path:
    """Export ``model`` to ``path`` (atomically), batch dimension dynamic.

    With ``check``, the exported graph must reproduce the torch outputs on a random
    input before the file is kept.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(model.output_names)
    example = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    handle, temporary = tempfile.mkstemp(suffix=".onnx.part", dir=path.parent)
    os.close(handle)
    try:
        with _eval_mode(model), torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter's deprecation notice, and tracer notes about the
            # padding arithmetic (fixed by design: the graph has one input size).
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _TupleOutputs(model),
                (example,),
                temporary,
                input_names=[INPUT_NAME],
                output_names=names,
                dynamic_axes={n: {0: "batch"} for n in [INPUT_NAME, *names]},
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        if check:
            _check_export(model, temporary, example)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return path


def _check_export(model: Backbone, file: str, example: torch.Tensor) -> None:
    session = make_session(file)
    with _eval_mode(model), torch.no_grad():
        expected = model(example)
    got = session.run([n for n in model.output_names], {INPUT_NAME: example.numpy()})
    for name, value in zip(model.output_names, got, strict=True):
        reference = expected[name]
        scale = float(reference.abs().max()) or 1.0
        error = float((torch.from_numpy(value) - reference).abs().max()) / scale
        if error > 1e-3:
            raise RuntimeError(f"exported graph differs from torch on {name!r} ({error:.2e})")


def make_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with all graph optimisations.

    ``threads`` defaults to ``torch.get_num_threads()`` (PyTorch's default: the
    physical cores), so both runtimes use the machine the same way.
    """
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxBackend:
    """Runs the exported graph; other input sizes (or an empty batch) run in torch."""

    runtime = "onnx"

    def __init__(self, path: Path, model: Backbone, input_size: int) -> None:
        self.path = path
        self.input_size = input_size
        self.session = make_session(path)
        self._torch = TorchBackend(model)

    def run(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size) or len(x) == 0:
            return self._torch.run(x, names)
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        outputs = self.session.run(list(names), {INPUT_NAME: array})
        return {name: torch.from_numpy(value) for name, value in zip(names, outputs, strict=True)}
