"""What this process runs on: versions, CPU and SIMD, threads, cache, CUDA (for ``info`` and benchmarks)."""
import ctypes
import functools
import importlib.metadata
import os
import platform
import sys
from pathlib import Path

import llvmlite.binding
import numba

from .config import VECTOR_BYTES, target_cpu_features
from .parallelism import threading_layer

SIMD_PREFIXES = ("avx", "fma", "sse4", "neon", "sve")
# Linux's arch_prctl call, its request for an extended state component, and AMX's tile data component.
_SYS_ARCH_PRCTL = 158
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_name():
    """The CPU's marketing name where the OS tells it, else LLVM's name for the host."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or llvmlite.binding.get_host_cpu_name()


def cache_directory():
    """Where Numba caches this package's compiled kernels.

    ``NUMBA_CACHE_DIR`` when set; otherwise the ``__pycache__`` beside the kernels when writable, else
    Numba's per-user fallback (Numba's own locator rules).
    """
    if numba.config.CACHE_DIR:
        return numba.config.CACHE_DIR
    kernels = Path(__file__).parent / "cpu"
    if os.access(kernels, os.W_OK):
        return str(kernels / "__pycache__")
    return "per-user cache (the package directory is not writable)"


def cuda_devices():
    """The CUDA devices Numba sees, as 'name (compute capability x.y)', with ', tensor cores' where the
    float16, bfloat16 and TF32 kernels run on them (8.0 and up); empty when numba-cuda or a GPU is
    missing. Under the simulator (``NUMBA_ENABLE_CUDASIM=1``) the simulated device is listed."""
    try:
        from numba import cuda

        if not cuda.is_available():
            return []
        devices = []
        for device in cuda.gpus:
            name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
            major, minor = getattr(device, "compute_capability", ("?", "?"))
            cores = ", tensor cores" if isinstance(major, int) and major >= 8 else ""
            devices.append(f"{name} (compute capability {major}.{minor}{cores})")
        return devices
    except Exception:  # noqa: BLE001 - any CUDA driver failure means "no usable GPU" here
        return []


@functools.lru_cache(maxsize=None)
def has_bfloat16_dot():
    """Whether the CPU Numba compiles for has AVX512-BF16's dot products (``vdpbf16ps``)."""
    return bool(llvmlite.binding.get_host_cpu_features().get("avx512bf16"))


@functools.lru_cache(maxsize=None)
def has_amx_bfloat16():
    """Whether the CPU Numba compiles for has AMX tiles with bfloat16 products (``tdpbf16ps``) and
    512-bit vectors, and Linux (x86-64) lets this process use the tiles: their state is lent to a
    process only on request (``arch_prctl(ARCH_REQ_XCOMP_PERM)``), which this makes, once."""
    if (VECTOR_BYTES != 64 or not {"+amx-tile", "+amx-bf16"} <= target_cpu_features()
            or sys.platform != "linux" or platform.machine() != "x86_64"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError, TypeError):
        return False


def describe():
    """A JSON-ready record of the environment.

    Returns
    -------
    dict
        Versions (numba_conv3d, numba, llvmlite, numpy, torch or None), Python, CPU name, LLVM CPU and
        its SIMD features, the width of the CPU kernels' vectors, whether the CPU has bfloat16 dot
        products (AVX512-BF16), threading layer and thread count, the kernel cache directory, CUDA
        devices.
    """
    from . import __version__

    features = llvmlite.binding.get_host_cpu_features()
    return {
        "versions": {"numba_conv3d": __version__, "numba": numba.__version__,
                     "llvmlite": llvmlite.__version__, "numpy": _version("numpy"),
                     "numba-cuda": _version("numba-cuda"),
                     "torch": _version("torch"), "python": platform.python_version()},
        "cpu": cpu_name(),
        "llvm_cpu": llvmlite.binding.get_host_cpu_name(),
        "simd": sorted(name for name, on in features.items() if on and name.startswith(SIMD_PREFIXES)),
        "kernel_vector_bits": 8 * VECTOR_BYTES,
        "bfloat16_dot_products": has_bfloat16_dot(),
        "amx_bfloat16_tiles": has_amx_bfloat16(),
        "threading_layer": threading_layer(),
        "threads": numba.get_num_threads(),
        "cache_dir": cache_directory(),
        "cuda_devices": cuda_devices(),
    }
