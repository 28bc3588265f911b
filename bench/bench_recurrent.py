"""JVSP and CNN-RNN from cached maps: training time to convergence and decoding speed.

Issue 15's performance targets, on Corel-5k's stored EfficientNet-Lite2 ``head`` maps
(run ``phototag features --dataset corel5k:DATA --maps head`` once): training JVSP to
convergence (the default settings: early stopping on held-out C-F1) under 20 minutes
on 2 cores, and decoding at least 200 photos/s (top-5, beam 1 and 3, through
``predict``: reading the float16 maps, converting, beam search). The decoding models
are the trained JVSP and a CNN-RNN trained for `--cnn-rnn-epochs` (its weights do not
change the work of top-k decoding).

    .venv/bin/python bench/bench_recurrent.py --out bench/results/recurrent_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "corel5k"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=3, help="decoding repeats (best kept)")
    parser.add_argument("--cnn-rnn-epochs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import torch

    from phototag.data.readers import read_dataset
    from phototag.library.inputs import with_inputs
    from phototag.models.recurrent import CNNRNNAnnotator, JVSPAnnotator
    from phototag.models.recurrent.benchmark import decoding_speed

    dataset = read_dataset(f"corel5k:{args.data}")
    train, test = dataset.split("train"), dataset.split("test")
    jvsp = JVSPAnnotator(verbose=True)
    train = with_inputs(train, jvsp.required_inputs(training=True))[0]
    test = with_inputs(test, jvsp.required_inputs())[0]
    start = time.perf_counter()
    jvsp.fit(train)
    training = {"seconds": time.perf_counter() - start, "epochs": len(jvsp.history_)}
    cnn_rnn = CNNRNNAnnotator(epochs=args.cnn_rnn_epochs, validation_fraction=0.0).fit(train)
    speed: dict[str, dict[str, float]] = {}
    for name, model in (("JVSP", jvsp), ("CNN-RNN", cnn_rnn)):
        for beam in (1, 3):
            decoder = model.clone(keep_state=True, beam=beam)
            decoding_speed(decoder, test.subset(range(64)))  # warm-up
            speed.setdefault(name, {})[f"beam {beam}"] = decoding_speed(decoder, train, args.rounds)
    result = {
        "train_photos": train.n_items,
        "decoded_photos": train.n_items,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "jvsp_training": training,
        "photos_per_second": speed,
        "command": "bench/bench_recurrent.py",
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
