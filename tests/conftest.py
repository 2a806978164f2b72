"""Shared test set-up: quiet TensorFlow logs, and paths to the shipped project files."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def shipped_params_path() -> Path:
    return PROJECT_ROOT / "params.yaml"
