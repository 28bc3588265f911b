#!/usr/bin/env bash
# Create .venv and install phototag with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# torch is pinned in pyproject.toml's train extra (CPU build, 2.13.0); installing it first
# keeps pip from resolving any other torch for a dependency. ".[dev]" is everything: the
# train and research extras and the test tools (`pip install phototag` alone is the
# photographer's install, without PyTorch: README "Install").
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
# System packages from Debian, installed when missing (as root, e.g. in CI); otherwise a
# note says what to install. One line per package: the file it provides, then its name.
need_system_package() {
    local provides=$1 package=$2 purpose=$3
    [ -e "$provides" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; APT_UPDATED=1; fi
        apt-get install -y -qq "$package" >/dev/null
    else
        echo "note: $purpose needs Debian's $package: run 'sudo apt-get install $package'" >&2
    fi
}
# WordNet 3.0 backs the `wordnet` tag embedding (or set WORDNET_DIR).
[ -n "${WORDNET_DIR:-}" ] || need_system_package /usr/share/wordnet/data.noun wordnet-base "the wordnet embedding"
# ExifTool is the independent reader the keyword-writing tests check phototag's XMP with.
need_system_package /usr/bin/exiftool libimage-exiftool-perl "the metadata tests"
# Headless Chromium drives the web UI end-to-end test (Playwright uses this binary).
need_system_package /usr/bin/chromium chromium "the browser test"
echo "phototag installed in .venv ($(.venv/bin/phototag --version))"
