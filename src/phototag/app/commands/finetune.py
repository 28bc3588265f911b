"""`phototag finetune`: fine-tune an image encoder on a labelled dataset, for its features."""

from __future__ import annotations

import argparse
from pathlib import Path

from phototag.app.options import EPILOG

DEFAULT_ENCODER = "efficientnet_lite2?input_size=384&resize=squash"


def _add_finetune(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "finetune",
        help="fine-tune an image encoder on labelled photos (a GPU is advised)",
        description="Train the whole encoder network with a classifier over the dataset's "
        "labels (random crops and flips, asymmetric loss, AdamW, cosine schedule, moving "
        "average of the weights), then save the network's weights. Use them through the "
        "feature name this command prints: every model then trains and annotates on the "
        "fine-tuned features. About 4 minutes for Corel-5k on a GPU; hours on CPU cores.",
        epilog=EPILOG,
    )
    parser.add_argument("--dataset", required=True, metavar="NAME:PATH")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE",
                        help="weights file to write (.safetensors)")  # fmt: skip
    parser.add_argument("--split", default="train", help="split to train on (default: train)")
    parser.add_argument(
        "--encoder",
        default=DEFAULT_ENCODER,
        help=f"encoder and input options as NAME?key=value&... (default: {DEFAULT_ENCODER}: "
        "the whole photo squashed to 384 px)",
    )
    parser.add_argument("--epochs", type=int, default=40, help="passes over the photos (40)")
    parser.add_argument("--batch-size", type=int, default=64, help="photos per step (64)")
    parser.add_argument("--lr", type=float, default=2e-4, help="network learning rate (2e-4)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where to train (auto: CUDA when available)")  # fmt: skip
    parser.add_argument("--workers", type=int, metavar="N",
                        help="photo-decoding processes (default: as `features` picks)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of crops, order and init")
    parser.set_defaults(run=_run_finetune)


def _run_finetune(args: argparse.Namespace) -> int:
    import sys
    import time

    from phototag.data.readers import read_dataset
    from phototag.errors import InvalidInputError
    from phototag.features.extract import create_source, is_descriptor
    from phototag.finetune import (
        FinetuneRecipe,
        feature_name,
        finetune_encoder,
        recipe_metadata,
        save_network,
    )

    if is_descriptor(args.encoder):
        raise InvalidInputError("--encoder", "an image encoder", repr(args.encoder))
    recipe = FinetuneRecipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    encoder = create_source(args.encoder, runtime="torch")
    train = read_dataset(args.dataset).split(args.split)
    print(f"fine-tuning {args.encoder} on {train.n_items} photos of {train.name}", flush=True)
    start = time.perf_counter()
    result = finetune_encoder(
        encoder, train, recipe, device=args.device, seed=args.seed, workers=args.workers
    )  # each epoch on stderr: "train 3/40: lr ..., train_loss ..., ... s"
    if not result.is_global_zero:  # under torchrun, the first process reports and saves
        return 0
    for path, reason in result.failures:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    save_network(result.network, args.out, recipe_metadata(recipe, args.encoder, args.dataset))
    seconds = time.perf_counter() - start
    print(f"saved {args.out} ({seconds:.0f} s); its features are named:")
    print(f"  {feature_name(args.encoder, args.out)}")
    return 1 if result.failures else 0


def register(commands: argparse._SubParsersAction) -> None:
    _add_finetune(commands)
