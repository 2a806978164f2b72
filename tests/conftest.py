"""Shared test set-up: quiet TensorFlow logs, and paths to the shipped project files."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def shipped_params_path() -> Path:
    return PROJECT_ROOT / "params.yaml"


DEMO_SHOP_PRODUCTS = 60  # enough shirts and jeans for a second listing page


@pytest.fixture(scope="session")
def demo_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo shop built for the whole test session (tests only read it)."""
    from crawlers.demo_shop.site import build_shop

    out = tmp_path_factory.mktemp("demo-shop") / "shop"
    build_shop(out, DEMO_SHOP_PRODUCTS, seed=11, difficulty="medium", workers=2)
    return out
