"""CPU inference speed of the default image encoder (EfficientNet-Lite2, 260 px) under
several runtimes, side by side in one run, with the accuracy each one keeps.

Usage::

    .venv/bin/python bench/bench_encoder_speed.py                 # all variants (~10 min)
    .venv/bin/python bench/bench_encoder_speed.py --quick         # no compile / FX int8
    .venv/bin/python bench/bench_encoder_speed.py --rounds 7 --batch 32 --threads 2

Variants: eager PyTorch (NCHW; the baseline), channels_last, channels_last with
BatchNorm folded into the convolutions, ``torch.compile`` (inductor), dynamic int8
(``quantize_dynamic``: only the Linear classifier is quantised, convolutions stay
fp32), FX graph-mode static int8 (x86 backend, calibrated), ONNX Runtime fp32 (the
library's ``runtime="onnx"`` path), ONNX Runtime dynamic int8, ONNX Runtime static
int8 (QDQ, per-channel, calibrated); plus eager and ONNX Runtime with 1 thread.

Protocol: one batch of ``--batch`` real photos (scikit-image's public-domain photos
plus Corel-5k images from ../shared/data when present) preprocessed once; after one
warm-up per variant, ``--rounds`` rounds each run every variant once, interleaved, so
that load from other jobs on a shared machine hits all variants alike. Reported:
median and best images/s over the rounds (preprocessing excluded), setup time
(export, compile, quantisation), min cosine similarity of pooled features vs eager,
top-1 agreement on the batch, and whether the top-5 ImageNet classes of the two test
photos (cat, espresso) are the same as eager's. A variant is acceptable with cosine
>= 0.999 and identical top-5s. Results: bench/results/encoder_speed.json.
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "bench" / "results" / "encoder_speed.json"
ENCODER = "efficientnet_lite2"
MIN_COSINE = 0.999

Run = Callable[[torch.Tensor], dict[str, torch.Tensor]]  # -> {"pooled", "logits"}


# --------------------------------------------------------------------------- inputs


def photos(batch: int) -> tuple[list[np.ndarray], list[str]]:
    """The two check photos first, then other public-domain / Corel images."""
    import skimage.data as data

    images = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    names = ["chelsea (cat)", "coffee (espresso)", "astronaut", "rocket"]
    for path in sorted(glob.glob(str(SHARED / "corel5k" / "test" / "*.jpeg"))):
        if len(images) >= batch:
            break
        with Image.open(path) as image:  # benchmark code, not library code
            images.append(np.asarray(image.convert("RGB")))
        names.append(f"corel5k/{Path(path).name}")
    while len(images) < batch:  # no shared data: repeat (still measures speed)
        images.append(images[len(images) % 4])
        names.append(names[len(names) % 4])
    return images[:batch], names[:batch]


def calibration_images(count: int = 64) -> list[np.ndarray]:
    """Corel-5k *training* images (disjoint from the measured batch), else noise-free
    crops of the scikit-image photos."""
    paths = sorted(glob.glob(str(SHARED / "corel5k" / "train" / "*.jpeg")))[:count]
    out = []
    for path in paths:
        with Image.open(path) as image:
            out.append(np.asarray(image.convert("RGB")))
    if not out:
        import skimage.data as data

        base = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
        out = [b[i * 7 % 40 :, i * 11 % 60 :] for i, b in enumerate(base * 8)]
    return out


# ------------------------------------------------------------------------ variants


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Copy of an EfficientNet-Lite with every ConvBNAct's BN folded into its conv."""
    from phototag.features.encoders.efficientnet_lite import ConvBNAct

    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, ConvBNAct) and isinstance(module.bn, torch.nn.BatchNorm2d):
            bn, conv = module.bn, module.conv
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight = torch.nn.Parameter(conv.weight * scale[:, None, None, None])
            conv.bias = torch.nn.Parameter(bn.bias - bn.running_mean * scale)
            module.bn = torch.nn.Identity()
    return folded


def torch_run(model: torch.nn.Module, channels_last: bool = False) -> Run:
    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = model(x)
        return {"pooled": out["pooled"], "logits": out["logits"]}

    return run


def ort_run(session: Any) -> Run:
    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled, logits = session.run(["pooled", "logits"], {"image": x.numpy()})
        return {"pooled": torch.from_numpy(pooled), "logits": torch.from_numpy(logits)}

    return run


def with_threads(threads: int, run: Run) -> Run:
    def wrapped(x: torch.Tensor) -> dict[str, torch.Tensor]:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run(x)
        finally:
            torch.set_num_threads(before)

    return wrapped


def build_variants(
    args: argparse.Namespace, encoder: Any, workdir: Path, x: torch.Tensor
) -> list[dict[str, Any]]:
    """[{name, run, setup_s, note}] ; failures are recorded, not raised."""
    from phototag.features import encoders as enc
    from phototag.features.encoders.runtime import export_onnx, make_session

    model = encoder.model
    variants: list[dict[str, Any]] = []

    def add(name: str, note: str, build: Callable[[], Run]) -> None:
        print(f"  building {name} ...", flush=True)
        start = time.perf_counter()
        try:
            run = build()
            error = None
        except Exception as exc:  # report, keep benchmarking the others
            run, error = None, f"{type(exc).__name__}: {exc}"[:300]
            print(f"    failed: {error}", flush=True)
        variants.append(
            {
                "name": name,
                "run": run,
                "setup_s": time.perf_counter() - start,
                "note": note,
                "error": error,
            }
        )

    add("eager", "PyTorch eager, NCHW (baseline)", lambda: torch_run(model))
    add(
        "eager 1 thread",
        "PyTorch eager, NCHW, torch.set_num_threads(1)",
        lambda: with_threads(1, torch_run(model)),
    )

    def channels_last() -> Run:
        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        return torch_run(cl, channels_last=True)

    add("channels_last", "PyTorch eager, channels_last (oneDNN NHWC kernels)", channels_last)

    def folded_cl() -> Run:
        return torch_run(
            fold_batchnorm(model).to(memory_format=torch.channels_last), channels_last=True
        )

    add("channels_last + BN folded", "eager, BatchNorm folded into conv weights", folded_cl)

    if not args.quick:

        def compiled() -> Run:
            # a fresh inductor cache, so setup_s is a cold compile
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(workdir / "inductor")
            compiled_model = torch.compile(copy.deepcopy(model))
            run = torch_run(compiled_model)
            run(x)  # compile now (for this batch shape), so setup_s includes it
            return run

        add("torch.compile", "inductor, default mode (setup = cold compile time)", compiled)

    def dynamic_int8() -> Run:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notice
            quantised = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8
            )
        return torch_run(quantised)

    add(
        "torch dynamic int8",
        "quantize_dynamic: only nn.Linear (the classifier) is int8; convs stay fp32",
        dynamic_int8,
    )

    if not args.quick:

        def fx_static_int8() -> Run:
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

            torch.backends.quantized.engine = "x86"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prepared = prepare_fx(
                    copy.deepcopy(model).eval(),
                    get_default_qconfig_mapping("x86"),
                    example_inputs=(CALIBRATION[:1],),
                )
                with torch.inference_mode():
                    for start in range(0, len(CALIBRATION), 16):
                        prepared(CALIBRATION[start : start + 16])
                quantised = convert_fx(prepared)
            return torch_run(quantised)

        add(
            "torch FX static int8",
            "prepare_fx/convert_fx, x86 backend, 64 calibration images",
            fx_static_int8,
        )

    def onnx_fp32() -> Run:
        fast = enc.create_encoder(ENCODER, runtime="onnx", cache_dir=workdir)
        if fast.runtime != "onnx":
            raise RuntimeError("runtime='onnx' fell back to torch")

        def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
            return fast.forward_features(x, ["pooled", "logits"])

        return run

    add(
        "onnxruntime fp32",
        "create_encoder(..., runtime='onnx'): CPU EP, all graph optimisations, "
        "intra_op threads = torch.get_num_threads() (setup = export + check + session)",
        onnx_fp32,
    )
    fp32_path = workdir / "bench_fp32.onnx"

    def onnx_fp32_one_thread() -> Run:
        if not fp32_path.exists():
            export_onnx(model, encoder.preprocess.input_size, fp32_path, check=False)
        return ort_run(make_session(fp32_path, threads=1))

    add("onnxruntime fp32 1 thread", "as above, intra_op_num_threads=1", onnx_fp32_one_thread)

    def onnx_int8(kind: str) -> Callable[[], Run]:
        def build() -> Run:
            from onnxruntime.quantization import (
                CalibrationDataReader,
                QuantFormat,
                QuantType,
                quantize_dynamic,
                quantize_static,
            )
            from onnxruntime.quantization.shape_inference import quant_pre_process

            # the quantiser logs every tensor it skips (the padding's Slice ops) at WARNING
            logging.getLogger().setLevel(logging.ERROR)
            if not fp32_path.exists():
                export_onnx(model, encoder.preprocess.input_size, fp32_path, check=False)
            pre = workdir / "bench_pre.onnx"
            if not pre.exists():
                quant_pre_process(str(fp32_path), str(pre))
            out = workdir / f"bench_{kind}.onnx"
            if kind == "dynamic":
                quantize_dynamic(str(pre), str(out), weight_type=QuantType.QUInt8)
            else:
                batches = [
                    {"image": CALIBRATION[i : i + 8].numpy()} for i in range(0, len(CALIBRATION), 8)
                ]

                class Reader(CalibrationDataReader):
                    def __init__(self) -> None:
                        self.batches = iter(batches)

                    def get_next(self) -> dict[str, np.ndarray] | None:
                        return next(self.batches, None)

                quantize_static(
                    str(pre),
                    str(out),
                    Reader(),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                )
            return ort_run(make_session(out))

        return build

    add(
        "onnxruntime dynamic int8",
        "onnxruntime.quantization.quantize_dynamic (uint8 weights)",
        onnx_int8("dynamic"),
    )
    add(
        "onnxruntime static int8",
        "quantize_static, QDQ, per-channel int8 weights, uint8 activations, MinMax on 64 "
        "calibration images",
        onnx_int8("static"),
    )
    return variants


CALIBRATION = torch.empty(0)


# ----------------------------------------------------------------------- measuring


def cosine_min(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1).min())


def cpu_busy_fraction(seconds: float = 2.0) -> float:
    """Share of CPU time used by anything (other jobs included) over a short window."""
    try:

        def read() -> list[int]:
            with open("/proc/stat") as f:
                return [int(v) for v in f.readline().split()[1:]]

        first = read()
        time.sleep(seconds)
        second = read()
        delta = [b - a for a, b in zip(first, second, strict=False)]
        idle = delta[3] + delta[4]
        return round(1.0 - idle / max(sum(delta), 1), 3)
    except OSError:
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    global CALIBRATION
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's own default)",
    )
    parser.add_argument("--quick", action="store_true", help="skip torch.compile and FX int8")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    from phototag.features.encoders import create_encoder

    encoder = create_encoder(ENCODER)
    images, names = photos(args.batch)
    x = encoder.transform(images)
    CALIBRATION = encoder.transform(calibration_images())
    print(f"{ENCODER}: batch {tuple(x.shape)}, torch threads {torch.get_num_threads()}")

    busy_before = cpu_busy_fraction()
    with tempfile.TemporaryDirectory(prefix="phototag-bench-") as tmp:
        variants = build_variants(args, encoder, Path(tmp), x)
        ok = [v for v in variants if v["run"] is not None]
        outputs = {}
        for v in ok:  # warm-up, and the outputs compared with eager
            outputs[v["name"]] = v["run"](x)
            v["times"] = []
        for r in range(args.rounds):
            for v in ok:
                start = time.perf_counter()
                v["run"](x)
                v["times"].append(time.perf_counter() - start)
            print(f"  round {r + 1}/{args.rounds} done", flush=True)
    busy_after = cpu_busy_fraction()

    reference = outputs["eager"]
    ref_top5 = torch.topk(reference["logits"][:2], 5).indices
    classes = encoder.class_names
    eager_median = float(np.median([args.batch / t for t in variants[0]["times"]]))
    rows = []
    for v in variants:
        row: dict[str, Any] = {
            "variant": v["name"],
            "note": v["note"],
            "setup_s": round(v["setup_s"], 2),
        }
        if v["run"] is None:
            row.update({"error": v["error"], "acceptable": False})
            rows.append(row)
            continue
        rates = [args.batch / t for t in v["times"]]
        out = outputs[v["name"]]
        top5 = torch.topk(out["logits"][:2], 5).indices
        cosine = cosine_min(out["pooled"], reference["pooled"])
        top5_same = bool(torch.equal(top5, ref_top5))
        row.update(
            {
                "images_per_s_median": round(float(np.median(rates)), 2),
                "images_per_s_best": round(float(np.max(rates)), 2),
                "speedup_vs_eager_median": round(float(np.median(rates)) / eager_median, 2),
                "pooled_cosine_min": round(cosine, 6),
                "top1_agreement": round(
                    float(
                        (out["logits"].argmax(1) == reference["logits"].argmax(1)).float().mean()
                    ),
                    3,
                ),
                "top5_same_on_test_photos": top5_same,
                "top5_test_photos": [[classes[i].name for i in row_] for row_ in top5.tolist()],
                "acceptable": cosine >= MIN_COSINE and top5_same,
            }
        )
        rows.append(row)

    acceptable = [r for r in rows if r.get("acceptable")]
    fastest = max(acceptable, key=lambda r: r["images_per_s_median"]) if acceptable else None
    result = {
        "benchmark": "encoder forward throughput (preprocessing excluded)",
        "command": "python bench/bench_encoder_speed.py " + " ".join(argv or sys.argv[1:]),
        "encoder": ENCODER,
        "input": f"{args.batch} x 3 x 260 x 260 float32",
        "images": names,
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": _version("onnxruntime"),
            "cpu_busy_fraction_before": busy_before,
            "cpu_busy_fraction_after": busy_after,
            "load_average_after": list(os.getloadavg()),
        },
        "acceptance": f"pooled cosine >= {MIN_COSINE} and same top-5 on the 2 test photos",
        "fastest_acceptable": fastest["variant"] if fastest else None,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(rows)
    print(f"\nfastest acceptable: {result['fastest_acceptable']}; written to {args.out}")
    return 0


def print_table(rows: list[dict[str, Any]]) -> None:
    header = f"{'variant':28s} {'img/s med':>9s} {'best':>7s} {'x eager':>7s} {'setup s':>8s} "
    header += f"{'cos min':>9s} {'top5 =':>6s} {'ok':>3s}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:28s} failed: {r['error'][:60]}")
            continue
        print(
            f"{r['variant']:28s} {r['images_per_s_median']:9.2f} {r['images_per_s_best']:7.2f} "
            f"{r['speedup_vs_eager_median']:7.2f} {r['setup_s']:8.1f} "
            f"{r['pooled_cosine_min']:9.5f} {str(r['top5_same_on_test_photos']):>6s} "
            f"{'yes' if r['acceptable'] else 'no':>3s}"
        )


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


if __name__ == "__main__":
    sys.exit(main())
