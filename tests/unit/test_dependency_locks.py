"""The supply chain, checked from the files: requirements.lock (production) and
requirements-test.lock (what the `test` extra adds) pin every package with its hashes, the test
tools stay out of production, both agree with pyproject.toml, and the image installs only the
production lock with its hashes checked."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_LOCK = ROOT / "requirements.lock"
TEST_LOCK = ROOT / "requirements-test.lock"
GPU_LOCK = ROOT / "requirements-gpu.lock"
# What only the tests and `make lint` use; none of it may ship in the image.
TEST_TOOLS = ("pytest", "pytest-timeout", "pytest-xdist", "moto", "selenium", "ruff", "responses", "trio")
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)(?P<rest>.*)$")


def lock_entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name → (version, hashes) for each requirement of a `pip-compile --generate-hashes` style
    lock; a line that is neither a pin, a hash, a comment nor blank fails the test."""
    entries: dict[str, tuple[str, list[str]]] = {}
    logical = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    for line in logical.splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = PIN.match(text)
        assert match, f"{path.name}: not an exact pin: {line.strip()[:120]}"
        name = canonicalize_name(match["name"])
        assert name not in entries, f"{path.name}: {name} pinned twice"
        hashes = re.findall(r"--hash=(sha256:[0-9a-f]{64})", match["rest"])
        entries[name] = (match["version"], hashes)
    return entries


@pytest.fixture(scope="module")
def production() -> dict[str, tuple[str, list[str]]]:
    return lock_entries(PRODUCTION_LOCK)


@pytest.fixture(scope="module")
def test_only() -> dict[str, tuple[str, list[str]]]:
    return lock_entries(TEST_LOCK)


@pytest.mark.parametrize("lock", [PRODUCTION_LOCK, TEST_LOCK, GPU_LOCK], ids=lambda p: p.name)
def test_every_locked_package_is_pinned_with_its_hashes(lock: Path) -> None:
    entries = lock_entries(lock)
    assert entries, f"{lock.name} pins nothing"
    unhashed = sorted(name for name, (_, hashes) in entries.items() if not hashes)
    assert not unhashed, f"{lock.name}: no --hash for {unhashed}"


def test_the_production_lock_holds_no_test_tool_and_the_test_lock_only_adds(
    production: dict[str, tuple[str, list[str]]], test_only: dict[str, tuple[str, list[str]]]
) -> None:
    assert not {canonicalize_name(tool) for tool in TEST_TOOLS} & set(production)
    assert {canonicalize_name(tool) for tool in TEST_TOOLS} <= set(test_only)
    # One pin per package across both files: the test lock was resolved against production's.
    assert not set(production) & set(test_only), sorted(set(production) & set(test_only))


def test_the_locks_satisfy_pyproject(
    production: dict[str, tuple[str, list[str]]], test_only: dict[str, tuple[str, list[str]]]
) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for spec, allowed in [(line, production) for line in project["dependencies"]] + [
        (line, {**production, **test_only}) for line in project["optional-dependencies"]["test"]
    ]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in allowed, f"{requirement.name} is in pyproject.toml but not locked: run `make lock`"
        version = allowed[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} is outside pyproject.toml's {requirement.specifier}: run `make lock`"
        )
    assert "prefect-kubernetes" in production  # the worker of the `gpu` work pool `seamline deploy` creates


def test_the_image_installs_only_the_production_lock_with_hashes_checked() -> None:
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text(encoding="utf-8")
    instructions = [line for line in re.sub(r"\\\n", " ", dockerfile).splitlines() if not line.startswith("#")]
    installs = [line for line in instructions if "pip install" in line]
    assert installs, "infra/Dockerfile installs nothing"
    assert not any("requirements-test.lock" in line or "[test]" in line for line in instructions)
    assert any("--require-hashes -r requirements.lock" in line for line in installs), installs
    for line in installs:
        # Anything else pip installs in the image is the project itself, without its dependencies.
        assert "-r requirements.lock" in line or ("--no-deps" in line and line.rstrip().endswith("-e .")), line


def test_make_install_checks_the_hashes_of_both_locks() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements.lock -r requirements-test.lock" in makefile
    assert "--generate-hashes" in makefile


def test_the_gpu_lock_adds_only_tensorflows_cuda_libraries_and_only_the_gpu_image_installs_it(
    production: dict[str, tuple[str, list[str]]],
) -> None:
    gpu = lock_entries(GPU_LOCK)
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12"} <= set(gpu)
    assert all(name.startswith("nvidia-") for name in gpu), sorted(gpu)
    assert not set(gpu) & set(production), "a package pinned twice: resolve the gpu extra against requirements.lock"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (extra,) = (Requirement(spec) for spec in project["optional-dependencies"]["gpu"])
    assert extra.extras == {"and-cuda"} and extra.specifier.contains(production["tensorflow"][0])
    dockerfile = re.sub(r"\\\n", " ", (ROOT / "infra" / "Dockerfile").read_text(encoding="utf-8"))
    (install,) = [line for line in dockerfile.splitlines() if "-r requirements-gpu.lock" in line]
    assert '[ "$GPU" = 1 ]' in install and "--require-hashes" in install
    assert "ARG GPU=0" in dockerfile  # the default build is the CPU image
