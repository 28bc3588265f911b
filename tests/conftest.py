"""Shared test fixtures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets in ``<repo>/../shared/data``; skipped when absent (failed on CI)."""
    path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        message = f"../shared/data not found: {path} (real datasets for integration tests)"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def fixture_copy(tmp_path: Path):
    """Copy ``tests/fixtures/<name>`` into a temporary folder (to modify it) and return it."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(FIXTURES / name, target)
        return target

    return copy
