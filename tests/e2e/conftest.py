"""The e2e workspace, shared by the weekly-retrain and search tests: a toy demo shop served on
127.0.0.1 and a project in a temporary git repository with a local DVC remote and a SQLite MLflow
store, on the `tiny` profile (a tiny detector, 32 px classifiers)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, TINY_DETECTOR, tiny_profile_base

BIN = Path(sys.executable).parent
TINY = {
    "detector": TINY_DETECTOR,
    "crop": {"size": 32, "on_no_detection": "full_image"},
    "training": {  # the demo's weights: the shipped garment base, loaded at 32 px
        "image_size": 32,
        "batch_size": 8,
        "early_stopping_patience": 1,
        "early_stopping_start": 0,
        "batchnorm_momentum": 0.9,
        "frozen": {"epochs": 1, "learning_rate": 1.0e-3, "cached_features": True, "augmented_views": 0},
        "fine_tune": {"epochs": 1, "learning_rate": 1.0e-4, "unfreeze_from": 0},
    },
}


@pytest.fixture(scope="session")
def weekly_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shop big enough that every class of every component reaches the test split."""
    from crawlers.demo_shop.site import build_shop

    out = tmp_path_factory.mktemp("weekly-shop") / "shop"
    build_shop(out, 160, seed=5, difficulty="easy", workers=2)
    return out


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory, weekly_shop: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    demo_shop = weekly_shop
    root = tmp_path_factory.mktemp("weekly") / "project"
    root.mkdir()
    (root / "data").mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", "data/.gitignore", "prefect.yaml"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(PROJECT_ROOT / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local"))
    shutil.copytree(PROJECT_ROOT / "crawlers" / "sources", root / "crawlers" / "sources")
    shutil.copytree(PROJECT_ROOT / "pipelines", root / "pipelines", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT_ROOT / "weights", root / "weights")
    tree = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    tiny = tiny_profile_base(tree)
    for section, values in TINY.items():
        tiny[section] = {**tiny.get(section, {}), **values}
    tiny["pretrain"] = {**tiny.get("pretrain", {}), "epochs": 1}
    # Only jeans-color (the training the test stops) fine-tunes: tracing a DenseNet121 training
    # step costs half a minute on 2 cores, and both phases have their own integration test.
    components = tiny.setdefault("components", {})
    for name in tree["components"]:
        if name != "jeans-color":
            components.setdefault(name, {})["training"] = {"fine_tune": {"epochs": 0}}
    tree["profiles"]["tiny"] = tiny
    tree["profile"] = "tiny"
    tree["validation"]["min_examples_per_class"] = 1  # the session's 60-product shop is small
    tiny["validation"] = {**tiny.get("validation", {}), "min_examples_per_class": 1}
    tree["registry"]["min_class_recall"] = 0.0  # toy models: the first one to load and answer becomes champion
    tree["retrain"]["crawl_max_age_hours"] = 12
    tree["search"]["reload_minutes"] = 0.05  # a served search notices a promotion within seconds
    (root / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))

    origin = tmp_path_factory.mktemp("shop")
    server = subprocess.Popen(
        [str(BIN / "seamline"), "demo-shop", "serve", str(demo_shop), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline()).group(0)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "SEAMLINE_DEMO_SHOP_URL": url,
        "PREFECT_HOME": str(origin / "prefect-home"),
        "GIT_AUTHOR_NAME": "ci",
        "GIT_AUTHOR_EMAIL": "ci@example.com",
        "GIT_COMMITTER_NAME": "ci",
        "GIT_COMMITTER_EMAIL": "ci@example.com",
        "SEAMLINE_USER": "weekly-schedule",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    run(["git", "init", "-q"], root, env)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(origin / "dvc-remote")], root, env)
    run(
        [str(BIN / "seamline"), "annotations", "import", str(demo_shop / "annotations"), "--out", "data/annotations"],
        root,
        env,
    )
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "project"], root, env)
    yield root, env
    server.terminate()
    server.wait(timeout=10)


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, f"{command}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result
