"""Does a stronger fine-tune of EfficientNet-Lite2 close the Corel-5k gap? (a study)

Phase 1 (``--compute-only``, on a GPU; about 4 minutes on an H100): the whole photo is
squashed to 384 x 384 px (Corel photos are 192 x 128; the standard centre crop cuts off
a third of them), and

- ``squash384``: the pretrained network's pooled features;
- the whole network is fine-tuned with a 260-way sigmoid classifier on 90% of the
  training split: random resized crops (area 0.5-1, aspect 3/4-4/3) and flips made on
  the GPU, the asymmetric loss of Ridnik et al. 2021 (gamma- 4, gamma+ 0, clip 0.05),
  AdamW (2e-4 network, 2e-3 classifier, weight decay 1e-4), one warm-up epoch then a
  cosine schedule over 40 epochs, batch 64, bf16, and an exponential moving average of
  the weights (0.998) as the final model: `phototag.finetune.finetune_encoder`, the
  recipe of `phototag finetune`. The other 10% (``heldout.npy``) is only scored. Saved:
  the network's weights (``finetuned.safetensors``, float16), which phototag's feature
  names take (``efficientnet_lite2?weights=DIR/finetuned.safetensors&input_size=384&
  resize=squash``), and for every photo ``finetuned.npy`` (its pooled features,
  extracted by the library with those weights into ``DIR/store``) and
  ``finetuned_probs.npy`` (the classifier's probabilities on them).

Until the training engine took over (issue 12) the features and probabilities were the
mean of the photo and its mirror image, computed by the study's own loop on the GPU; the
library extracts the photo's alone (at 260 px the feature study measured the mirror mean
at -0.2 F1 for 2PKNN and -0.4 for TagProp against the photo alone, docs/benchmarks.md).

Phase 2 (here, on the CPU): TagProp and 2PKNN fitted on the training split of each
feature, TagProp on several features at once (neighbours from their equally weighted
distance, weights learned), and the classifier alone; each scored once on the test split
(top 5; C-P, C-R, C-F1, O-F1, N+). Mixing the classifier into TagProp is decided on the
held-out 10% only (TagProp refitted on the other 90%), and so are the weights and the
rare-word exponent of the `ensemble` model (members fitted on the other 90%).

Usage::

    python bench/study_corel_finetune.py --compute-only --features-dir DIR --data CORELDIR \
        [--weights FILE]
    .venv/bin/python bench/study_corel_finetune.py --features-dir DIR [--descriptors]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from corel_study import fit_and_score, top5_row  # noqa: E402

from phototag.data.readers import read_dataset  # noqa: E402
from phototag.features.attach import with_features  # noqa: E402
from phototag.features.extract import create_source  # noqa: E402
from phototag.finetune import (  # noqa: E402
    FinetuneRecipe,
    feature_name,
    finetune_encoder,
    save_network,
)
from phototag.models import create_annotator  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RECIPE = FinetuneRecipe()  # phototag's `finetune` defaults: the recipe of this study
HELD_OUT = 0.1


def pooled(data, feature: str, store: Path) -> np.ndarray:  # type: ignore[no-untyped-def]
    """`feature` of every photo of `data`, through the library's feature store."""
    found, _ = with_features(data, feature, store_root=store, key="x", progress=False)
    if found.n_items != data.n_items:
        raise SystemExit(f"cannot decode: {found.notes[:3]}")
    return found.features["x"]


def compute(data, directory: Path, seed: int, weights: str | None, size: int) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    spec = f"efficientnet_lite2?input_size={size}&resize=squash"
    spec += f"&weights={Path(weights).resolve()}" if weights else ""
    store = directory / "store"
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / f"squash{size}.npy", pooled(data, spec, store).astype(np.float16))
    train_rows = np.asarray(data.splits["train"])
    shuffled = np.random.default_rng(seed).permutation(train_rows)
    n_held = round(HELD_OUT * len(train_rows))
    held, fit = np.sort(shuffled[:n_held]), np.sort(shuffled[n_held:])
    encoder = create_source(spec, runtime="torch")
    result = finetune_encoder(encoder, data.subset(fit), RECIPE, device=DEVICE, seed=seed)
    save_network(result.network, directory / "finetuned.safetensors")
    features = pooled(data, feature_name(spec, directory / "finetuned.safetensors"), store)
    with torch.inference_mode():
        probabilities = torch.sigmoid(result.classifier(torch.from_numpy(features))).numpy()
    np.save(directory / "finetuned.npy", features.astype(np.float16))
    np.save(directory / "finetuned_probs.npy", probabilities.astype(np.float16))
    np.save(directory / "heldout.npy", held)
    (directory / "items.txt").write_text("\n".join(data.item_ids) + "\n")
    print(f"computed in {time.perf_counter() - start:.0f} s on {DEVICE}", flush=True)


def evaluate(data, directory: Path, descriptors: bool) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    items = (directory / "items.txt").read_text().split()
    if items != list(data.item_ids):
        raise SystemExit(f"{directory}: features of another item order or dataset")
    for name in ("squash384", "finetuned", "finetuned_probs"):
        data.features[name] = np.load(directory / f"{name}.npy").astype(np.float32)
    pair = ["finetuned", "squash384"]
    runs: list[tuple[str, str | list[str], list[str] | None]] = [
        (m, f, None) for f in ("squash384", "finetuned") for m in ("tagprop", "2pknn")
    ]
    runs.append(("tagprop", pair, None))
    if descriptors:
        from study_corel_descriptors import DESCRIPTORS, describe

        data.features.update(describe([str(p) for p in data.image_paths]))
        runs.append(("tagprop", [*pair, *DESCRIPTORS], ["cosine"] * 2 + [*DESCRIPTORS.values()]))
    train, test = data.split("train"), data.split("test")
    results: dict[str, dict] = {
        "classifier": top5_row(test.labels, test.features["finetuned_probs"])
    }
    scores_of = {}
    for model_name, features, metric in runs:
        label = f"{model_name} {'+'.join(features) if isinstance(features, list) else features}"
        results[label], scores_of[label] = fit_and_score(
            label, train, test, model_name, features, metric
        )
    # the classifier's share in a mix with TagProp, chosen on the held-out 10% only
    held_mask = np.isin(np.asarray(data.splits["train"]), np.load(directory / "heldout.npy"))
    fit, held = train.subset(np.flatnonzero(~held_mask)), train.subset(np.flatnonzero(held_mask))
    held_scores = create_annotator("tagprop", features=pair).fit(fit).scores(held)
    shares = np.round(np.linspace(0, 1, 11), 1)
    held_f1 = [
        top5_row(held.labels, a * held.features["finetuned_probs"] + (1 - a) * held_scores)["C-F1"]
        for a in shares
    ]
    share = float(shares[int(np.argmax(held_f1))])
    mix = (
        share * test.features["finetuned_probs"]
        + (1 - share) * scores_of["tagprop " + "+".join(pair)]
    )
    results["tagprop + classifier"] = {
        **top5_row(test.labels, mix),
        "classifier_share": share,
        "held_out_f1_by_share": dict(zip(shares.tolist(), held_f1, strict=True)),
    }
    print(f"tagprop + classifier: {results['tagprop + classifier']}", flush=True)
    # the ensemble (2PKNN, KCCA, linear classifier) on the fine-tuned features: members
    # fitted on the 90%, weights and rare-word exponent chosen on the held-out 10%
    for metric in ("C-F1", "O-F1"):
        label = f"ensemble finetuned (chosen by {metric})"
        model = create_annotator("ensemble", features="finetuned", metric=metric).fit(fit, held)
        results[label] = {
            **top5_row(test.labels, model.scores(test)),
            "weights": dict(zip(
                [model.members[i]["model"] for i in model.active_], model.weights_.tolist(),
                strict=True,
            )),
            "prior_exponent": model.prior_exponent_,
        }  # fmt: skip
        print(f"{label}: {results[label]}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "corel5k")
    parser.add_argument("--features-dir", type=Path, required=True)
    parser.add_argument("--compute-only", action="store_true", help="phase 1 (GPU)")
    parser.add_argument("--descriptors", action="store_true", help="add the six classic ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=384, help="input side in pixels")
    parser.add_argument("--weights", help="EfficientNet-Lite2 weights file (default: package)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "corel5k_finetune_study.json"
    )
    args = parser.parse_args()
    data = read_dataset(f"corel5k:{args.data}")
    if args.compute_only:
        compute(data, args.features_dir, args.seed, args.weights, args.size)
        return 0
    results = evaluate(data, args.features_dir, args.descriptors)
    args.out.write_text(
        json.dumps(
            {
                "study": "Corel-5k: fine-tuned EfficientNet-Lite2 (squashed 384 px input, crops, "
                "asymmetric loss, EMA) with TagProp and 2PKNN (top 5, test split)",
                "command": "python bench/study_corel_finetune.py " + " ".join(sys.argv[1:]),
                "recipe": {**dataclasses.asdict(RECIPE), "held_out": HELD_OUT},
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
