"""The GPU check a GPU worker runs before it trains: one line that names what is missing (the
driver, which CUDA libraries, or a device the backend cannot see), and a training that needs a GPU
stopping on it before it reads or writes anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.gpu import (
    CUDA_LIBRARIES,
    REQUIRE_GPU_ENV,
    GpuReport,
    NoGpu,
    gpu_report,
    gpu_required,
    library_found,
    require_gpu,
)
from tests.conftest import PROJECT_ROOT

HERE = gpu_report()
PARAMS = PROJECT_ROOT / "params.yaml"
needs_no_gpu = pytest.mark.skipif(bool(HERE.devices), reason="this machine has a GPU")


def test_each_missing_piece_is_named_in_one_line() -> None:
    no_driver = GpuReport("tensorflow", (), driver=False, missing=tuple(CUDA_LIBRARIES))
    assert "libcuda.so.1" in no_driver.problem() and "NVIDIA container runtime" in no_driver.problem()
    no_cudnn = GpuReport("tensorflow", (), driver=True, missing=("libcudnn.so.9", "libcublasLt.so.12"))
    line = no_cudnn.problem()
    assert "libcudnn.so.9, libcublasLt.so.12" in line and "nvidia-cublas-cu12, nvidia-cudnn-cu12" in line
    assert "--build-arg GPU=1" in line and "\n" not in line
    hidden = GpuReport("jax", (), driver=True, missing=())
    assert "jax sees no GPU device" in hidden.problem()
    assert GpuReport("tensorflow", ("/physical_device:GPU:0",), True, ()).problem() is None
    with pytest.raises(NoGpu, match="no GPU: the driver is there"):
        require_gpu(no_cudnn)


def test_a_library_counts_as_found_in_a_wheels_folder_or_on_the_loaders_path(tmp_path: Path) -> None:
    (tmp_path / "libcudnn.so.9").write_bytes(b"")
    assert library_found("libcudnn.so.9", [tmp_path])
    assert library_found("libc.so.6", [])  # the C library is always on the loader's path
    assert not library_found("libseamline-nothing.so.1", [tmp_path])


def test_params_or_the_gpu_images_variable_require_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_GPU_ENV, raising=False)
    assert not gpu_required(False) and gpu_required(True)
    monkeypatch.setenv(REQUIRE_GPU_ENV, "1")
    assert gpu_required(False)
    monkeypatch.setenv(REQUIRE_GPU_ENV, "0")
    assert not gpu_required(False)


@needs_no_gpu
def test_seamline_gpu_says_why_there_is_none_and_exits_non_zero() -> None:
    seamline = str(Path(sys.executable).with_name("seamline"))
    result = subprocess.run([seamline, "gpu"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: no GPU:"), result.stderr


@needs_no_gpu
def test_a_training_that_requires_a_gpu_stops_before_it_reads_or_writes(tmp_path: Path) -> None:
    env = {**os.environ, REQUIRE_GPU_ENV: "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.stages.train", "--component", "jeans-color", "--params", str(PARAMS)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("train: no GPU:"), result.stderr
    assert list(tmp_path.iterdir()) == []  # no model, metrics, plots or MLflow store
