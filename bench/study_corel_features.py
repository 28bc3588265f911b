"""Which EfficientNet-Lite2 features help the kNN annotators on Corel-5k? (a study)

Computes, with eager PyTorch on the best device available (a GPU makes it a minute;
on 2 CPU cores it takes about an hour), several feature variants for the 4,999
Corel-5k photos, then fits 2PKNN and TagProp on the training split of each and
evaluates them once on the test split (top 5; C-P, C-R, C-F1, N+):

- ``pooled``: the standard 260 px pooled features (what `phototag features` stores);
- ``flip``: the mean of the photo's and its mirror image's pooled features;
- ``flip_384``: the same at 384 px input;
- ``flip_both``: the mean of ``flip`` and ``flip_384``;
- ``stage6``: the global average of the sixth MBConv stage (208-d);
- ``finetuned_last`` / ``finetuned_full``: ``flip`` features after fine-tuning the last
  block (stage 7 + head) or the whole network with a 260-way sigmoid classifier (binary
  cross-entropy, AdamW, horizontal flips; the epoch chosen on 10% of the training split);
- TagProp on two features at once (``flip_both`` + ``stage6``; learned weights).

Usage::

    .venv/bin/python bench/study_corel_features.py [--data ../shared/data/corel5k]
        [--weights FILE] [--out bench/results/corel5k_feature_study.json]
    # or compute the features on a GPU machine, then evaluate here:
    python bench/study_corel_features.py --compute-only --features-dir DIR --data ...
    .venv/bin/python bench/study_corel_features.py --features-dir DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from corel_study import fit_and_score  # noqa: E402

from phototag.data.readers import read_dataset  # noqa: E402
from phototag.features.encoders import create_encoder  # noqa: E402
from phototag.features.encoders.preprocess import normalize  # noqa: E402
from phototag.features.extract import load_model_input  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


class Photos:
    """The photos as the encoder sees them, kept as uint8 and normalised per batch."""

    def __init__(self, paths: list[str], encoder) -> None:  # type: ignore[no-untyped-def]
        self.preprocess = encoder.preprocess
        self.pixels = np.stack([load_model_input(p, self.preprocess) for p in paths])

    def __len__(self) -> int:
        return len(self.pixels)

    def batch(self, rows: np.ndarray | slice) -> torch.Tensor:
        return normalize(self.pixels[rows], self.preprocess).to(DEVICE)


def run(model: nn.Module, x: Photos, outputs: list[str]) -> dict[str, np.ndarray]:
    """Pooled features of the photos and of their mirror images, plus stage averages."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for start in range(0, len(x), 64):
            batch = x.batch(slice(start, start + 64))
            out, mirrored = model(batch), model(torch.flip(batch, dims=[3]))
            parts.setdefault("pooled", []).append(out["pooled"].cpu())
            parts.setdefault("flip", []).append(((out["pooled"] + mirrored["pooled"]) / 2).cpu())
            for name in outputs:
                parts.setdefault(name, []).append(out[name].mean(dim=(2, 3)).cpu())
    return {name: torch.cat(p).numpy() for name, p in parts.items()}


def finetune(
    model: nn.Module, x: Photos, y: torch.Tensor, train_rows: np.ndarray, last_block_only: bool
) -> nn.Module:
    """Fine-tune with a sigmoid classifier; keep the epoch with the best held-out loss."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    order = rng.permutation(train_rows)
    held_out, fit = order[: len(x) // 10], order[len(x) // 10 :]
    model = model.to(DEVICE)
    classifier = nn.Linear(model.num_features, y.shape[1]).to(DEVICE)
    tuned = (
        [*model.blocks[-1].parameters(), *model.head.parameters()]
        if last_block_only
        else list(model.parameters())
    )
    for p in model.parameters():
        p.requires_grad_(False)
    for p in tuned:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(
        [{"params": tuned, "lr": 3e-4 if last_block_only else 1e-4},
         {"params": classifier.parameters(), "lr": 1e-3}],
        weight_decay=1e-4,
    )  # fmt: skip
    loss_fn = nn.functional.binary_cross_entropy_with_logits
    best: tuple[float, dict] = (float("inf"), {})
    for _ in range(15):
        model.train()
        if last_block_only:  # the frozen part keeps its batch-norm statistics
            model.eval()
            model.blocks[-1].train()
            model.head.train()
        for start in range(0, len(fit), 64):
            rows = fit[start : start + 64]
            batch, target = x.batch(rows), y[rows].to(DEVICE)
            mirror = torch.rand(len(batch), device=DEVICE) < 0.5
            batch = torch.where(mirror[:, None, None, None], torch.flip(batch, dims=[3]), batch)
            loss = loss_fn(classifier(model(batch)["pooled"]), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        rng.shuffle(fit)
        model.eval()
        with torch.no_grad():
            logits = torch.cat([
                classifier(model(x.batch(held_out[i : i + 128]))["pooled"])
                for i in range(0, len(held_out), 128)
            ])  # fmt: skip
            value = loss_fn(logits, y[held_out].to(DEVICE)).item()
        if value < best[0]:
            best = (value, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    return model


def evaluate(data, key: str | list[str], model_name: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    train, test = data.split("train"), data.split("test")
    return fit_and_score(f"  {model_name:8s} {key}", train, test, model_name, key)[0]


def compute_features(data, weights: str | None) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Every feature variant of the study, rows in the dataset's item order."""
    paths = list(data.image_paths)
    features: dict[str, np.ndarray] = {}
    start = time.perf_counter()
    for size, suffix in ((None, ""), (384, "_384")):
        encoder = create_encoder("efficientnet_lite2", weights=weights, input_size=size)
        outputs = ["stage6"] if size is None else []
        for name, values in run(encoder.model.to(DEVICE), Photos(paths, encoder), outputs).items():
            features[name + suffix] = values
        print(f"{size or 260} px features: {time.perf_counter() - start:.0f} s", flush=True)
    x = Photos(paths, create_encoder("efficientnet_lite2", weights=weights))
    train_rows = np.asarray(data.splits["train"])
    y = torch.from_numpy(data.labels.toarray().astype(np.float32))
    for mode in ("last", "full"):
        model = create_encoder("efficientnet_lite2", weights=weights).model
        model = finetune(model, x, y, train_rows, last_block_only=mode == "last")
        features[f"finetuned_{mode}"] = run(model, x, [])["flip"]
        print(f"fine-tuned ({mode}): {time.perf_counter() - start:.0f} s", flush=True)
    return features


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "corel5k")
    parser.add_argument("--weights", help="EfficientNet-Lite2 weights file (default: package)")
    parser.add_argument(
        "--features-dir", type=Path,
        help="with --compute-only: where to write the features (.npy, float16); otherwise "
        "read them from there instead of computing them (e.g. computed on a GPU machine)",
    )  # fmt: skip
    parser.add_argument("--compute-only", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "corel5k_feature_study.json"
    )
    args = parser.parse_args()
    data = read_dataset(f"corel5k:{args.data}")
    if args.compute_only or args.features_dir is None:
        features = compute_features(data, args.weights)
        if args.compute_only:
            args.features_dir.mkdir(parents=True, exist_ok=True)
            for name, values in features.items():
                if name != "pooled_384":  # not studied on its own; keeps 8 files
                    np.save(args.features_dir / f"{name}.npy", values.astype(np.float16))
            return 0
    else:
        features = {
            f.stem: np.load(f).astype(np.float32) for f in sorted(args.features_dir.glob("*.npy"))
        }
    data.features.update(features)
    data.features["flip_both"] = (data.features["flip"] + data.features["flip_384"]) / 2
    results: dict[str, dict] = {}
    keys = ["pooled", "flip", "flip_384", "flip_both", "stage6", "finetuned_last",
            "finetuned_full"]  # fmt: skip
    for key in keys:
        results[key] = {m: evaluate(data, key, m) for m in ("2pknn", "tagprop")}
    several = ["flip_both", "stage6"]
    results["+".join(several)] = {"tagprop": evaluate(data, several, "tagprop")}
    args.out.write_text(json.dumps({
        "study": "Corel-5k feature variants for the kNN annotators (top 5, test split)",
        "command": "python bench/study_corel_features.py " + " ".join(sys.argv[1:]),
        "features_computed_on": DEVICE if args.features_dir is None else str(args.features_dir),
        "torch": torch.__version__,
        "results": results,
    }, indent=2) + "\n")  # fmt: skip
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
