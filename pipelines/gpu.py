"""Which GPUs training will use, and, when there are none, why: the check a GPU worker runs
before it trains. TensorFlow without its CUDA libraries does not fail, it trains on the CPU, so
a GPU worker built wrong would take hours on a job it should finish in minutes; this turns that
into one line at start that names what is missing."""

from __future__ import annotations

import ctypes
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# The NVIDIA container runtime mounts the driver's library and nothing else.
DRIVER_LIBRARY = "libcuda.so.1"
# What TensorFlow 2.20 loads from CUDA 12 and cuDNN 9, and the requirements-gpu.lock wheel that
# ships each (they live under site-packages/nvidia/<name>/lib, where TensorFlow looks first).
CUDA_LIBRARIES: dict[str, str] = {
    "libcudart.so.12": "nvidia-cuda-runtime-cu12",
    "libcublas.so.12": "nvidia-cublas-cu12",
    "libcublasLt.so.12": "nvidia-cublas-cu12",
    "libcudnn.so.9": "nvidia-cudnn-cu12",
    "libcufft.so.11": "nvidia-cufft-cu12",
    "libcusparse.so.12": "nvidia-cusparse-cu12",
    "libcusolver.so.11": "nvidia-cusolver-cu12",
    "libnccl.so.2": "nvidia-nccl-cu12",
}
# Set to 1 by the GPU image (infra/Dockerfile, GPU=1) and by the Kubernetes job template: a
# train-component run there refuses to start without a GPU whatever params.yaml says.
REQUIRE_GPU_ENV = "SEAMLINE_REQUIRE_GPU"


class NoGpu(RuntimeError):
    """A GPU was required and none is usable; the message is the one line that says why."""


@dataclass(frozen=True)
class GpuReport:
    backend: str
    devices: tuple[str, ...]
    driver: bool  # the NVIDIA driver's library loads
    missing: tuple[str, ...]  # CUDA libraries found neither in the nvidia wheels nor by the loader

    def problem(self) -> str | None:
        """Why there is no GPU to train on, in one line; None when there is one."""
        if self.devices:
            return None
        if not self.driver:
            return (
                f"no GPU: the NVIDIA driver ({DRIVER_LIBRARY}) is not there; run the worker with the "
                "NVIDIA container runtime (compose's worker-gpu, `docker run --gpus all`) on a host with a GPU"
            )
        if self.missing:
            wheels = sorted({CUDA_LIBRARIES.get(name, name) for name in self.missing})
            return (
                f"no GPU: the driver is there but {self.backend}'s CUDA libraries are not: "
                f"{', '.join(self.missing)} (pip wheels {', '.join(wheels)}); build the GPU image "
                "(docker build --build-arg GPU=1 -f infra/Dockerfile .), which installs requirements-gpu.lock"
            )
        return (
            f"no GPU: the driver and CUDA libraries are there but {self.backend} sees no GPU device; "
            "check NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES and that the driver supports CUDA 12"
        )


def gpu_required(setting: bool) -> bool:
    """A GPU is required when params ask for one or the worker's image does."""
    return setting or os.environ.get(REQUIRE_GPU_ENV, "0").strip().lower() in {"1", "true", "yes"}


def nvidia_library_dirs() -> list[Path]:
    """site-packages/nvidia/*/lib of the installed CUDA wheels (none on a CPU install)."""
    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    return sorted(path for root in roots for path in Path(root).glob("*/lib") if path.is_dir())


def library_found(name: str, wheel_dirs: Sequence[Path]) -> bool:
    """In one of the wheels' folders, or on the dynamic loader's path."""
    if any((folder / name).exists() for folder in wheel_dirs):
        return True
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def gpu_devices(backend: str) -> tuple[str, ...]:
    """The GPUs the Keras backend sees."""
    if backend == "tensorflow":
        import tensorflow as tf

        return tuple(device.name for device in tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return tuple(str(device) for device in jax.devices() if device.platform == "gpu")
    if backend == "torch":
        import torch

        return tuple(f"cuda:{index}" for index in range(torch.cuda.device_count()))
    return ()


def gpu_report(backend: str | None = None, wheel_dirs: Sequence[Path] | None = None) -> GpuReport:
    import keras

    backend = backend or keras.backend.backend()
    folders = nvidia_library_dirs() if wheel_dirs is None else list(wheel_dirs)
    # The driver's library, or its control device where the library sits off the loader's path.
    driver = library_found(DRIVER_LIBRARY, []) or Path("/dev/nvidiactl").exists()
    # No driver, no device: asking the backend anyway only adds its own cuInit error to the log.
    devices = gpu_devices(backend) if driver else ()
    missing = () if devices else tuple(name for name in CUDA_LIBRARIES if not library_found(name, folders))
    return GpuReport(backend, devices, driver, missing)


def require_gpu(report: GpuReport | None = None) -> GpuReport:
    """The report when there is a GPU; NoGpu with the reason otherwise."""
    report = report or gpu_report()
    problem = report.problem()
    if problem is not None:
        raise NoGpu(problem)
    return report
