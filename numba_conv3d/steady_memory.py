"""Keep freed memory mapped while benchmarks time both sides.

glibc's malloc hands blocks above its mmap threshold back to the system when they are freed (and trims
the heap's top above its trim threshold); the next call that allocates them again page-faults every
page in. Both thresholds move with what the process allocated before (glibc raises them as it frees
mapped blocks), so the same call costs more or less by which libraries ran first: torch's 1x1x1
layer over 1x24x13x80x80 (X3D-S res2.0.a) took 4 ms with 0 page faults in a process that had
imported torch alone, 19 ms with 12,000 (48 MB) per call once ``scipy.signal`` or llvmlite had
been imported, and 4 ms again with the thresholds set as here. The benchmarks set them once, before
timing, for both sides alike: freed blocks stay mapped, as in a long-running process that reuses its
buffers. Memory measurements (``benchmarks/bench_memory.py``) do not: they read what a call
allocates.
"""
import ctypes
import ctypes.util

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 << 20
TRIM_THRESHOLD_BYTES = 512 << 20


def keep_freed_memory_mapped():
    """Raise glibc's mmap and trim thresholds for this process (see the module's docstring).

    Returns
    -------
    bool
        Whether both were set (False where the C library is not glibc).
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
