"""`phototag benchmark`: reproduce a paper's table."""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from phototag.app.options import add_store_options, attach_inputs, parse_params
from phototag.errors import InvalidInputError
from phototag.fileio import atomic_write


def _add_benchmark(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "benchmark",
        help="reproduce a paper's benchmark table",
        description="Train every model on a benchmark's training split (hyperparameters "
        "chosen on the training split only), evaluate each once on the test split, and print "
        "the table next to the published numbers. docs/benchmarks.md records the results.",
    )
    parser.add_argument(
        "benchmark",
        choices=("corel5k", "m3"),
        help="which tables to reproduce: corel5k (the CCA-KNN paper's Table 1) or m3 (the "
        "M3 paper's ablation, comparison and LQP tables; docs/models/m3.md)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="the Corel-5k folder (e.g. ../shared/data/corel5k)",
    )
    m3 = parser.add_argument_group("m3")
    m3.add_argument("--mirflickr", type=Path, metavar="DIR",
                    help="the MIRFLICKR-25k folder (e.g. ../shared/data/mirflickr25k)")  # fmt: skip
    m3.add_argument("--part", action="append", dest="parts", metavar="PART",
                    help="run only this part: corel5k, mirflickr-tags or mirflickr-photos "
                    "(repeatable; default: those whose data is given)")  # fmt: skip
    m3.add_argument("--epochs", type=int, default=10, help="epochs of each training stage")
    m3.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="an M3 setting for every run (e.g. visual_lr=0.01)")  # fmt: skip
    m3.add_argument("--results", type=Path, default=Path("bench/results"), metavar="DIR",
                    help="where each part's JSON is written and read back for the tables "
                    "(default: bench/results)")  # fmt: skip
    m3.add_argument("--docs", type=Path, metavar="FILE",
                    help="replace the M3 section of this markdown file (between "
                    "'<!-- m3:begin -->' and '<!-- m3:end -->') with the tables")  # fmt: skip
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME[=JSON]",
        dest="models",
        help="model to run (default: all); with =JSON that configuration is used as given, "
        "otherwise the cross-validated grid of the benchmark",
    )
    parser.add_argument("--encoder", default="efficientnet_lite2", help="image features")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    add_store_options(parser)
    parser.set_defaults(run=_run_benchmark)


def _run_benchmark(args: argparse.Namespace) -> int:
    if args.benchmark == "m3":
        return _run_m3(args)
    if args.data is None:
        raise InvalidInputError("--data", "the Corel-5k folder", "nothing")
    return _run_corel5k(args)


def _run_corel5k(args: argparse.Namespace) -> int:
    import inspect

    from phototag.data.readers import read_dataset
    from phototag.evaluation.benchmark import (
        COREL5K_MODELS,
        ModelSpec,
        markdown_table,
        rows_as_json,
        run_benchmark,
    )
    from phototag.models import annotator_class, create_annotator

    models: dict[str, ModelSpec] = {}
    for spec in args.models or COREL5K_MODELS:
        name, _, config = spec.partition("=")
        model = ModelSpec(json.loads(config)) if config else COREL5K_MODELS.get(name, ModelSpec())
        parameters = inspect.signature(annotator_class(model.model or name).__init__).parameters
        models[name] = (
            model.with_image_features(args.encoder) if "features" in parameters else model
        )
    descriptors = dict.fromkeys(d for m in models.values() for d in m.descriptors)
    features = [args.encoder, *descriptors]
    dataset = read_dataset(f"corel5k:{args.data}")
    from phototag.data.inputs import ModelInputs

    inputs = ModelInputs(features=tuple(features))
    train = attach_inputs(dataset.split("train"), inputs, args)
    test = attach_inputs(dataset.split("test"), inputs, args)
    rows = run_benchmark(
        train,
        test,
        models,
        factory=create_annotator,
        progress=lambda line: print(line, file=sys.stderr),
    )
    print(markdown_table(rows))
    if args.json:
        atomic_write(args.json, json.dumps(rows_as_json(rows), indent=2) + "\n")
    return 0


def _run_m3(args: argparse.Namespace) -> int:
    """Run the asked parts of the M3 study, save each as JSON, then render every saved
    part as tables (on stdout, and into ``--docs``)."""
    from phototag.models.m3 import benchmark

    given = {"corel5k": args.data, "mirflickr-tags": args.mirflickr,
             "mirflickr-photos": args.mirflickr}  # fmt: skip
    parts = args.parts or [part for part, folder in given.items() if folder is not None]
    for part in parts:
        if part not in benchmark.PARTS:
            raise InvalidInputError("--part", f"one of {', '.join(benchmark.PARTS)}", repr(part))
    m3 = parse_params(args.param)
    progress = partial(print, file=sys.stderr)
    for part in parts:
        start = time.perf_counter()
        rows = _M3_PARTS[part](args, m3, progress)
        saved = {"part": part, "rows": rows, "epochs": args.epochs, "params": m3,
                 "seconds": time.perf_counter() - start,
                 "command": _m3_command(args, part)}  # fmt: skip
        args.results.mkdir(parents=True, exist_ok=True)
        atomic_write(args.results / f"m3_{part}.json", json.dumps(saved, indent=1) + "\n")
    saved_parts = {}
    for part in benchmark.PARTS:
        path = args.results / f"m3_{part}.json"
        if path.is_file():
            saved_parts[part] = json.loads(path.read_text())
    tables = benchmark.markdown(saved_parts)
    print(tables)
    if args.docs is not None:
        replace_section(args.docs, "m3", tables)
    return 0


def replace_section(path: Path, name: str, text: str) -> None:
    """Put `text` between the ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` lines of
    the markdown file `path` (atomically), keeping the rest as it is."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    content = path.read_text(encoding="utf-8")
    if (
        content.count(begin) != 1
        or content.count(end) != 1
        or content.index(begin) > content.index(end)
    ):
        raise InvalidInputError(
            "--docs", f"a markdown file with one {begin} line, then one {end} line",
            str(path), "Add the two lines where the tables belong.",
        )  # fmt: skip
    head, rest = content.split(begin)
    tail = rest.split(end)[1]
    atomic_write(path, f"{head}{begin}\n{text}{end}{tail}")


def _m3_command(args: argparse.Namespace, part: str) -> str:
    data = {"corel5k": f"--data {args.data}"}.get(part, f"--mirflickr {args.mirflickr}")
    params = "".join(f" --param {p}" for p in args.param)
    return f"phototag benchmark m3 --part {part} {data} --epochs {args.epochs}{params}"


def _m3_corel5k(args: argparse.Namespace, m3: dict, progress: Any) -> list:
    from phototag.data.inputs import ModelInputs
    from phototag.data.readers import read_dataset
    from phototag.models.m3 import M3Annotator, benchmark

    if args.data is None:
        raise InvalidInputError("--data", "the Corel-5k folder for the corel5k part", "nothing")
    dataset = read_dataset(f"corel5k:{args.data}")
    inputs = M3Annotator(**m3).required_inputs() | ModelInputs(features=(args.encoder,))
    train = attach_inputs(dataset.split("train"), inputs, args)
    test = attach_inputs(dataset.split("test"), inputs, args)
    return benchmark.run_corel5k(train, test, features=args.encoder, epochs=args.epochs,
                                 progress=progress, **m3)  # fmt: skip


def _m3_mirflickr_tags(args: argparse.Namespace, m3: dict, progress: Any) -> list:
    from phototag.data.readers import read_dataset
    from phototag.models.m3 import benchmark

    dataset = read_dataset(f"mirflickr:{_mirflickr(args)}?test_size=0.2&seed=0")
    train, test = dataset.split("train"), dataset.split("test")
    progress(f"mirflickr tags: {train.n_items} training and {test.n_items} test rows")
    return benchmark.run_mirflickr_tags(train, test, epochs=args.epochs, **m3)


def _m3_mirflickr_photos(args: argparse.Namespace, m3: dict, progress: Any) -> list:
    from phototag.data.readers import read_dataset
    from phototag.models.m3 import M3Annotator, benchmark

    inputs = M3Annotator(**m3, tags=True).required_inputs()
    splits = []
    for seed in range(5):
        spec = f"mirflickr:{_mirflickr(args)}?missing_images=drop&test_size=0.2&seed={seed}"
        dataset = attach_inputs(read_dataset(spec), inputs, args)
        splits.append((dataset.split("train"), dataset.split("test")))
    return benchmark.run_mirflickr_photos(splits, epochs=args.epochs, progress=progress, **m3)


def _mirflickr(args: argparse.Namespace) -> Path:
    if args.mirflickr is None:
        raise InvalidInputError("--mirflickr", "the MIRFLICKR-25k folder", "nothing")
    return args.mirflickr


_M3_PARTS = {"corel5k": _m3_corel5k, "mirflickr-tags": _m3_mirflickr_tags,
             "mirflickr-photos": _m3_mirflickr_photos}  # fmt: skip


def register(commands: argparse._SubParsersAction) -> None:
    _add_benchmark(commands)
