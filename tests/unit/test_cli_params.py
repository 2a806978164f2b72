"""`seamline params ...` as a user runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

SEAMLINE = str(Path(sys.executable).with_name("seamline"))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SEAMLINE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path, shipped_params_path: Path) -> Path:
    shutil.copy(shipped_params_path, tmp_path / "params.yaml")
    return tmp_path


def test_check_passes_on_the_shipped_file_for_every_profile(project: Path) -> None:
    result = run("params", "check", cwd=project)
    assert result.returncode == 0, result.stderr
    assert (
        "ok (profiles: paper, demo, garment-base, garment-base-annotation, garment-base-gpu, demo-scratch, real, "
        "real-base)" in (result.stdout)
    )


@pytest.mark.parametrize("profile", ["demo", "paper"])
def test_check_one_profile(project: Path, profile: str) -> None:
    result = run("params", "check", "--profile", profile, cwd=project)
    assert result.returncode == 0, result.stderr


def test_check_names_a_typo_in_one_line_and_fails(project: Path) -> None:
    path = project / "params.yaml"
    path.write_text(path.read_text().replace("  early_stopping_patience: 5", "  early_stoping_patience: 5"))
    result = run("params", "check", cwd=project)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "training.early_stoping_patience: unknown key" in lines[0]
    assert "Traceback" not in result.stderr


def test_check_reads_the_profile_from_the_environment(project: Path) -> None:
    result = subprocess.run(
        [SEAMLINE, "params", "check"],
        cwd=project,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "SEAMLINE_PROFILE": "nope"},
        timeout=120,
    )
    assert result.returncode == 2
    assert "unknown profile 'nope'" in result.stderr


def test_show_prints_the_resolved_component_as_json(project: Path) -> None:
    result = run("params", "show", "--profile", "demo", "--component", "jeans-fit", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["classes"] == ["bootcut", "regular", "skinny", "wide"]
    assert shown["training"]["image_size"] == 64
    assert shown["training"]["dropout"] == 0.2


def test_show_whole_paper_profile_as_yaml(project: Path) -> None:
    result = run("params", "show", "--profile", "paper", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "profile: paper" in result.stdout and "weights: imagenet" in result.stdout


def test_show_unknown_component_is_a_clear_error(project: Path) -> None:
    result = run("params", "show", "--component", "shirt-sleeve", cwd=project)
    assert result.returncode == 2
    assert "unknown component 'shirt-sleeve'" in result.stderr


def test_params_file_option_and_missing_file(project: Path) -> None:
    result = run("params", "check", "--params", str(project / "missing.yaml"), cwd=project)
    assert result.returncode == 2
    assert "no such params file" in result.stderr


def test_help_explains_each_option(project: Path) -> None:
    result = run("params", "check", "--help", cwd=project)
    assert result.returncode == 0
    for option in ("--profile", "--params"):
        assert option in result.stdout


@pytest.mark.parametrize(
    "command", ["models", "predict", "retrain", "deploy", "mlflow-ui", "train", "pretrain", "detect"]
)
def test_every_documented_command_is_registered(project: Path, command: str) -> None:
    result = run(command, "--help", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Usage: seamline " + command in " ".join(result.stdout.split())


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m pipelines.cli ARGS`, the way a checkout without the console script runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )


def test_python_dash_m_runs_the_same_cli_with_every_command_registered(project: Path) -> None:
    result = run_module("params", "check", cwd=project)
    assert result.returncode == 0, result.stderr
    assert (
        "ok (profiles: paper, demo, garment-base, garment-base-annotation, garment-base-gpu, demo-scratch, real, "
        "real-base)" in (result.stdout)
    )
    listed = run_module("--help", cwd=project)
    assert listed.returncode == 0, listed.stderr
    assert all(f" {command} " in listed.stdout for command in ("models", "serve", "deploy")), listed.stdout
