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
from phototag.evaluation.studies import FOLDER_OPTIONS, StudyData
from phototag.fileio import atomic_write

#: Paper studies: `phototag benchmark NAME` runs the study module's parts
#: (`phototag.evaluation.studies` describes the contract).
STUDIES = {"m3": "phototag.models.m3.benchmark",
           "recurrent": "phototag.models.recurrent.benchmark",
           "fusion": "phototag.models.fusion.benchmark",
           "neighbourhood": "phototag.models.neighbourhood.benchmark"}  # fmt: skip


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
        choices=("corel5k", *STUDIES),
        help="which tables to reproduce: corel5k (the CCA-KNN paper's Table 1), m3 (the M3 "
        "paper's ablation, comparison and LQP tables; docs/models/m3.md), recurrent "
        "(CNN-RNN and JVSP, their ablation and small objects; docs/models/recurrent.md), fusion "
        "(modality fusion with EG weights: Hamming loss on scene, Corel-5k, MIRFLICKR; "
        "docs/models/fusion.md), neighbourhood (LTN, RTN, LTwin, LZip on metadata "
        "neighbourhoods: MIRFLICKR tags and photos, Corel-5k CDs; docs/models/neighbourhood.md)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="the Corel-5k folder (e.g. ../shared/data/corel5k)",
    )
    study = parser.add_argument_group("paper studies (m3, recurrent)")
    study.add_argument(
        "--mirflickr",
        type=Path,
        metavar="DIR",
        help="the MIRFLICKR-25k folder (e.g. ../shared/data/mirflickr25k)",
    )
    study.add_argument(
        "--mulan", type=Path, metavar="DIR", help="the Mulan folder (e.g. ../shared/data/mulan)"
    )
    study.add_argument(
        "--part",
        action="append",
        dest="parts",
        metavar="PART",
        help="run only this part of the study (repeatable; default: those "
        "whose data is given); the study's docs list its parts",
    )
    study.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help="training epochs (of each stage; default: the study's own)",
    )
    study.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model setting for every run (e.g. visual_lr=0.01)",
    )
    study.add_argument(
        "--results",
        type=Path,
        default=Path("bench/results"),
        metavar="DIR",
        help="where each part's JSON is written and read back for the tables "
        "(default: bench/results)",
    )
    study.add_argument(
        "--docs",
        type=Path,
        metavar="FILE",
        help="replace the study's section of this markdown file (between "
        "'<!-- STUDY:begin -->' and '<!-- STUDY:end -->') with the tables",
    )
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
    if args.benchmark in STUDIES:
        return _run_study(args)
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


def _run_study(args: argparse.Namespace) -> int:
    """Run the asked parts of a paper study, save each as JSON, then render every saved
    part as tables (on stdout, and into ``--docs``)."""
    from importlib import import_module

    name = args.benchmark
    study = import_module(STUDIES[name])
    folders = {"corel5k": args.data, "mirflickr": args.mirflickr, "mulan": args.mulan}
    parts = args.parts or [p for p in study.PARTS if folders[study.FOLDERS[p]] is not None]
    if not parts:
        options = sorted({FOLDER_OPTIONS[study.FOLDERS[p]] for p in study.PARTS})
        raise InvalidInputError("--part", f"a dataset folder ({', '.join(options)})", "none")
    for part in parts:
        if part not in study.PARTS:
            raise InvalidInputError("--part", f"one of {', '.join(study.PARTS)}", repr(part))
    params = parse_params(args.param)
    epochs = study.EPOCHS if args.epochs is None else args.epochs
    data = StudyData(folders, args.encoder, partial(_read, args=args))
    progress = partial(print, file=sys.stderr)
    for part in parts:
        start = time.perf_counter()
        rows = study.run_part(part, data, epochs=epochs, params=params, progress=progress)
        given = "".join(f" {FOLDER_OPTIONS[f]} {path}" for f, path in folders.items() if path)
        command = (f"phototag benchmark {name} --part {part}{given} --epochs {epochs}"
                   + "".join(f" --param {p}" for p in args.param))  # fmt: skip
        saved = {"part": part, "rows": rows, "epochs": epochs, "params": params,
                 "seconds": time.perf_counter() - start, "command": command}  # fmt: skip
        args.results.mkdir(parents=True, exist_ok=True)
        atomic_write(args.results / f"{name}_{part}.json", json.dumps(saved, indent=1) + "\n")
    saved_parts = {}
    for part in study.PARTS:
        path = args.results / f"{name}_{part}.json"
        if path.is_file():
            saved_parts[part] = json.loads(path.read_text())
    tables = study.markdown(saved_parts)
    print(tables)
    if args.docs is not None:
        replace_section(args.docs, name, tables)
    return 0


def _read(spec: str, inputs: Any, *, args: argparse.Namespace) -> Any:
    """The dataset `spec`, with the model inputs `inputs` filled by the store options."""
    from phototag.data.readers import read_dataset

    dataset = read_dataset(spec)
    return dataset if inputs is None else attach_inputs(dataset, inputs, args)


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


def register(commands: argparse._SubParsersAction) -> None:
    _add_benchmark(commands)
