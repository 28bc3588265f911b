#!/usr/bin/env bash
# Set up phototag and run its main job: suggest keywords for the example photos with the
# default model that ships inside the package (nothing is downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/phototag annotate examples
