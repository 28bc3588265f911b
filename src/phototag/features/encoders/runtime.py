"""Where an encoder's forward pass runs: eager PyTorch or ONNX Runtime, on which device.

The default encoder's graph ships with the package (`phototag.features.encoders.shipped`),
so it runs on ONNX Runtime without PyTorch and without exporting anything. For the
other encoders (or weights of your own) ``runtime="onnx"`` exports the network once
(TorchScript-based ``torch.onnx.export``, fixed input size, dynamic batch) into the cache
directory, keyed by encoder name, weights digest and input size, and then runs it with
ONNX Runtime's CPU provider (graph optimisations on: Conv+BN+ReLU fusion, NCHWc layouts).
On 2 CPU cores that is several times faster than eager PyTorch with the same outputs
(cosine 1.0); outputs are numpy arrays. Missing ``onnxruntime`` or a failed export falls
back to eager PyTorch with a warning.

Cache directory: the ``cache_dir`` argument, else `phototag.cache.cache_dir()`; files go
under ``encoders/``. Exporting needs PyTorch and the ``onnx`` package (the TorchScript
exporter writes through it), i.e. ``phototag[research]``; running a graph needs only
``onnxruntime``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from phototag.cache import cache_dir as default_cache_dir
from phototag.errors import InvalidInputError
from phototag.features.encoders.base import (
    Backend,
    ImageEncoder,
    as_array,
    torch_loaded,
    warn_fallback,
)
from phototag.features.encoders.preprocess import Preprocess, normalize

if TYPE_CHECKING:
    import torch

    from phototag.features.encoders.network import Backbone

RUNTIMES: Final = ("torch", "onnx")
ONNX_OPSET: Final = 17
#: Bump when the exported graph changes for the same weights (invalidates caches).
EXPORT_VERSION: Final = 1
INPUT_NAME: Final = "image"
PIXELS_NAME: Final = "pixels"


def torch_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"`` as a torch device."""
    import torch

    if name not in ("auto", "cpu", "cuda"):
        raise InvalidInputError("device", "auto, cpu or cuda", repr(name))
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(
            "device", "a device this machine has", "'cuda' (no GPU)", "Use 'cpu' or 'auto'."
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def attach_runtime(encoder: ImageEncoder, runtime: str, cache_dir: str | Path | None) -> None:
    """Give ``encoder`` the requested runtime (or eager torch, with a warning, if it
    cannot be had)."""
    from phototag.features.encoders.network import TorchBackend

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
        model = encoder.model
        backend = OnnxBackend(path, lambda: TorchBackend(model), encoder.preprocess.input_size)
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


def _tuple_outputs(model: Backbone) -> torch.nn.Module:
    """The backbone with its dict outputs as a tuple in ``output_names`` order."""
    from torch import nn

    class TupleOutputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.model(x)
            return tuple(out[name] for name in model.output_names)

    return TupleOutputs()


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
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
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(model.output_names)
    example = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with _written_atomically(path) as temporary:
        with _eval_mode(model), torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter's deprecation notice, and tracer notes about the
            # padding arithmetic (fixed by design: the graph has one input size).
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _tuple_outputs(model),
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
    return path


@contextlib.contextmanager
def _written_atomically(target: Path) -> Iterator[str]:
    """A temporary file next to `target` that replaces it if the block succeeds."""
    handle, temporary = tempfile.mkstemp(suffix=".onnx.part", dir=target.parent)
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _check_export(model: Backbone, file: str, example: torch.Tensor) -> None:
    import torch

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


def float_graph(pixels_path: Path) -> bytes:
    """The network inside a pixels graph (`pixel_graph`) with its float ``[N, 3, S, S]``
    input back: the normalisation nodes dropped, the rest as it is (needs ``onnx``)."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(str(pixels_path))
    outputs = [output.name for output in model.graph.output]
    return Extractor(model).extract_model([INPUT_NAME], outputs).SerializeToString()


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity; all cores where the platform
    has no affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_session(path: str | Path | bytes, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with all graph optimisations, its idle threads asleep
    and no memory pattern.

    ``threads`` defaults to ``torch.get_num_threads()`` when PyTorch is imported, so both
    runtimes use the machine the same way, else to the cores this process may run on
    (`usable_cores`; ONNX Runtime's own default counts the host's physical cores and
    ignores CPU affinity, so it oversubscribes a pinned process or a container).
    """
    import onnxruntime as ort  # type: ignore[import-untyped]

    if threads is None and torch_loaded():
        import torch

        threads = torch.get_num_threads()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or usable_cores()
    options.log_severity_level = 3  # errors only
    # Idle worker threads sleep instead of spinning: spinning took 8% more CPU per photo
    # for no faster forward pass, CPU that the decoding and writing threads next to the
    # encoder need (annotate on 2 cores: 8.2 s instead of 8.6 s for 499 photos).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # No memory pattern (one block planned per input shape, its pages faulted in afresh):
    # a 16-photo pass then peaks at 0.54 GB instead of 0.9 GB, with 6 page faults per
    # photo instead of 150, at the same speed; 32-photo passes are 15% faster.
    options.enable_mem_pattern = False
    graph = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def pixel_graph(path: Path, preprocess: Preprocess) -> Path:
    """The exported graph at `path` behind a uint8 ``[N, S, S, 3]`` input, normalised
    per `preprocess` inside the graph (cast, transpose, ``(x - mean) / std``); cached
    next to it."""
    import onnx
    from onnx import compose, helper, numpy_helper

    target = path.with_name(f"{path.stem}-pixels-{preprocess.digest()}.onnx")
    if target.is_file():
        return target
    network = onnx.load(str(path))
    size = preprocess.input_size
    mean = np.asarray(preprocess.mean, np.float32).reshape(1, 3, 1, 1)
    scale = 1.0 / np.asarray(preprocess.std, np.float32).reshape(1, 3, 1, 1)
    nodes = [
        helper.make_node("Cast", [PIXELS_NAME], ["as_float"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Transpose", ["as_float"], ["channels_first"], perm=[0, 3, 1, 2]),
        helper.make_node("Sub", ["channels_first", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "scale"], [INPUT_NAME]),
    ]
    uint8, float32 = onnx.TensorProto.UINT8, onnx.TensorProto.FLOAT
    normalise = helper.make_graph(
        nodes,
        "normalise",
        [helper.make_tensor_value_info(PIXELS_NAME, uint8, ["batch", size, size, 3])],
        [helper.make_tensor_value_info(INPUT_NAME, float32, ["batch", 3, size, size])],
        initializer=[numpy_helper.from_array(v, k) for k, v in (("mean", mean), ("scale", scale))],
    )
    prefix = helper.make_model(
        normalise, opset_imports=network.opset_import, ir_version=network.ir_version
    )
    merged = compose.merge_models(prefix, network, io_map=[(INPUT_NAME, INPUT_NAME)])
    with _written_atomically(target) as temporary:
        onnx.save(merged, temporary)
    return target


class OnnxBackend:
    """Runs an ONNX graph with ONNX Runtime; outputs are numpy arrays.

    `path` is the exported graph (float ``[N, 3, S, S]`` input), `pixels_path` a graph
    behind a uint8 ``[N, S, S, 3]`` input (`pixel_graph`; built on first use from
    `path` when not given, or the pixels are normalised here when the ``onnx`` package
    that builds it is missing). With only the pixels graph (a shipped one), float inputs
    run the network cut out of it (`float_graph`, needs ``onnx``). Inputs of other sizes
    (or an empty batch), and float inputs without ``onnx``, run on `fallback`, eager
    PyTorch made on first need.
    """

    runtime = "onnx"

    def __init__(
        self,
        path: Path | None,
        fallback: Callable[[], Backend],
        input_size: int,
        pixels_path: Path | None = None,
    ) -> None:
        if path is None and pixels_path is None:
            raise ValueError("OnnxBackend needs a graph")
        self.path = path
        self.input_size = input_size
        self.session = make_session(path) if path is not None else None
        self._fallback_factory = fallback
        self._fallback: Backend | None = None
        self._pixel_sessions: dict[str, Any] = {}
        self._pixels_path = pixels_path

    def run(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, np.ndarray]:
        if self.session is None and importlib.util.find_spec("onnx") is not None:
            assert self._pixels_path is not None
            self.session = make_session(float_graph(self._pixels_path))
        if (
            self.session is None
            or tuple(x.shape[-2:]) != (self.input_size, self.input_size)
            or len(x) == 0
        ):
            return self._run_fallback(lambda backend: backend.run(x, names))
        array = as_array(x.detach().float())
        return self._outputs(self.session, names, {INPUT_NAME: np.ascontiguousarray(array)})

    def run_pixels(
        self, pixels: np.ndarray, preprocess: Preprocess, names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        if pixels.shape[1] != self.input_size or len(pixels) == 0:
            return self._run_fallback(lambda backend: backend.run_pixels(pixels, preprocess, names))
        session = self._pixel_session(preprocess)
        if session is None:
            return self.run(normalize(pixels, preprocess), names)
        return self._outputs(session, names, {PIXELS_NAME: pixels})

    def _run_fallback(self, run: Callable[[Backend], dict[str, Any]]) -> dict[str, np.ndarray]:
        if self._fallback is None:
            self._fallback = self._fallback_factory()
        return {name: as_array(value) for name, value in run(self._fallback).items()}

    def _pixel_session(self, preprocess: Preprocess) -> Any:
        key = preprocess.digest()
        if key not in self._pixel_sessions:
            if self._pixels_path is not None:
                self._pixel_sessions[key] = make_session(self._pixels_path)
            elif self.path is not None and importlib.util.find_spec("onnx") is not None:
                self._pixel_sessions[key] = make_session(pixel_graph(self.path, preprocess))
            else:
                self._pixel_sessions[key] = None
        return self._pixel_sessions[key]

    @staticmethod
    def _outputs(session: Any, names: Sequence[str], feed: dict) -> dict[str, np.ndarray]:  # type: ignore[type-arg]
        outputs = session.run(list(names), feed)
        return dict(zip(names, outputs, strict=True))
