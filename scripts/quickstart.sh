#!/usr/bin/env bash
# Set up phototag and run its main job on real data.
# Until the default annotation model lands, the main job is: describe Corel-5k,
# train the label-prior baseline on its training split, and evaluate it on the test split.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${PHOTOTAG_DATA:-../shared/data}
.venv/bin/phototag datasets info "corel5k:$DATA/corel5k"
.venv/bin/phototag train --dataset "corel5k:$DATA/corel5k" --model prior --out runs/prior
.venv/bin/phototag evaluate --dataset "corel5k:$DATA/corel5k" --model runs/prior --protocol top5
