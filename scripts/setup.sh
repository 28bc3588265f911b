#!/usr/bin/env bash
# Create .venv and install phototag with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# torch is pinned in pyproject.toml (CPU build, 2.13.0); installing it first keeps pip
# from resolving any other torch for a dependency.
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
# WordNet 3.0 (Debian's wordnet-base) backs the `wordnet` tag embedding.
if [ ! -f /usr/share/wordnet/data.noun ] && [ -z "${WORDNET_DIR:-}" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq >/dev/null && apt-get install -y -qq wordnet-base >/dev/null
    else
        echo "note: WordNet 3.0 not found; for the wordnet embedding run" \
             "'sudo apt-get install wordnet-base' or set WORDNET_DIR" >&2
    fi
fi
echo "phototag installed in .venv ($(.venv/bin/phototag --version))"
