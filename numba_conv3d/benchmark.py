"""Side-by-side timing of numba_conv3d and its peer (torch), shared by ``benchmarks/`` and the CLI.

Runs alternate (ours, peer, ours, peer, ...) in one process so that machine noise hits both alike;
medians are reported, with the first call (compilation) timed apart.
"""
import contextlib
import math
import statistics
import time
from dataclasses import dataclass, field

import numba
import numpy as np

from .api import conv3d
from .bench_cases import BenchCase
from .precision import named_dtype, widen
from .steady_memory import keep_freed_memory_mapped


# Pause before each timed run, so that it starts with the other side's worker threads idle: torch's
# libgomp threads spin-wait for milliseconds after each parallel region, and the run that follows at
# once gets less than the machine (on 2 cores: our depthwise case 3.7 ms alone, 6.4 ms right after
# torch). 10 ms is past that spin, and short enough that idle cores do not fall asleep (0.2 s pauses
# slowed both sides 2-4x on this VM).
SETTLE_SECONDS = 0.01


@dataclass
class BenchResult:
    """Timings of one case: medians in seconds, compile (first-call) time, and derived rates.

    ``peers`` maps a peer's name ('torch'; on CUDA also 'torch-tf32', torch's default TF32 mode; on
    one-channel CPU cases also 'scipy', ``scipy.signal.fftconvolve``) to its median seconds; it is empty
    when no peer is installed. ``errors`` maps 'ours' and 'scipy' to their largest error over the
    largest output magnitude, against scipy's float64 result, where scipy runs beside the case.
    """

    case: BenchCase
    flops: int
    ours_s: float
    ours_first_s: float
    peers: dict
    peak_gflops: float | None
    errors: dict = field(default_factory=dict)

    @property
    def gflops(self):
        """Our GFLOP/s at the median."""
        return self.flops / self.ours_s / 1e9

    @property
    def ratio(self):
        """torch's time over ours (exact arithmetic, our semantics): above 1 means we are faster."""
        return self.peers["torch"] / self.ours_s if "torch" in self.peers else None

    @property
    def fraction_of_peak(self):
        """Our GFLOP/s over the measured GEMM peak of the same precision (None when unmeasured)."""
        return self.gflops / self.peak_gflops if self.peak_gflops else None

    def as_dict(self):
        """JSON-ready record: the case, times in ms, ratio, GFLOP/s, fraction of peak."""
        record = {"case": self.case.name, "input": self.case.input_shape,
                  "weight": self.case.weight_shape, "kwargs": self.case.kwargs,
                  "dtype": self.case.dtype, "bias": self.case.bias, "flops": self.flops,
                  "ours_ms": self.ours_s * 1e3, "compile_s": self.ours_first_s, "ratio": self.ratio,
                  "gflops": self.gflops, "peak_gflops": self.peak_gflops,
                  "fraction_of_peak": self.fraction_of_peak}
        record.update({f"{name}_ms": seconds * 1e3 for name, seconds in self.peers.items()})
        record.update({f"{name}_error": error for name, error in self.errors.items()})
        return record


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_tensor(torch, array):
    """``array`` as a CPU torch tensor of its dtype (a bfloat16 array goes through float32, exactly:
    torch cannot read ``ml_dtypes`` arrays)."""
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(widen(array)).to(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(array))


def peak_precision(dtype):
    """The dtype whose square GEMM is ``dtype``'s peak: the real part's; float16's is float32 (torch's
    float16 GEMM takes a slow path on CPUs without float16 arithmetic; ours computes in float32)."""
    real = named_dtype(dtype).type(0).real.dtype.name
    return "float32" if real == "float16" else real


class _Device:
    """Where a benchmark runs: moves operands there, and waits for queued work before a clock read."""

    def __init__(self, backend):
        self.backend = backend
        self.cuda = None
        if backend == "cuda":
            from numba import cuda

            self.cuda = cuda

    def ours(self, array):
        """``array`` as our engine takes it on this device."""
        return array if self.cuda is None or array is None else self.cuda.to_device(array)

    def torch(self, torch, array):
        """``array`` as a torch tensor on this device."""
        tensor = torch_tensor(torch, array)
        return tensor if self.cuda is None else tensor.cuda()

    def synchronize(self):
        """Wait for queued device work (nothing to wait for on the CPU)."""
        if self.cuda is not None:
            self.cuda.synchronize()

    def seconds(self, fn):
        """Wall seconds of ``fn()`` including the device work it queued."""
        self.synchronize()
        start = time.perf_counter()
        fn()
        self.synchronize()
        return time.perf_counter() - start


def _torch_peers(case, device, x, w, b):
    """Callables running torch.nn.Conv3d on the case's operands, by peer name; empty without torch (or
    where the case leaves it out).

    On CUDA, 'torch' runs cuDNN with TF32 off (exact float32, our semantics) and 'torch-tf32' with
    torch's default TF32 convolutions; there is no peer when torch sees no GPU (the simulator).
    """
    torch = _torch()
    if not case.torch or torch is None or (device.cuda is not None and not torch.cuda.is_available()):
        return {}
    module = torch.nn.Conv3d(case.weight_shape[1] * case.kwargs.get("groups", 1),
                             case.weight_shape[0], case.weight_shape[2:], bias=b is not None,
                             dtype=getattr(torch, case.dtype), **case.kwargs)
    with torch.no_grad():
        module.weight.copy_(torch_tensor(torch, w))
        if b is not None:
            module.bias.copy_(torch_tensor(torch, b))
    xt = device.torch(torch, x)
    if device.cuda is not None:
        module = module.cuda()

    def peer(tf32):
        def run():
            torch.backends.cudnn.allow_tf32 = tf32
            with torch.no_grad():
                return module(xt)

        return run

    if device.cuda is None:
        return {"torch": peer(False)}
    default_tf32 = torch.backends.cudnn.allow_tf32
    return {"torch": peer(False), "torch-tf32": peer(default_tf32)}


def _scipy_peer(case, device, x, w, b):
    """scipy.signal.fftconvolve on a one-channel CPU case (the input padded as the case asks, the kernel
    flipped: convolution is correlation with a flipped kernel), or None where it does not apply."""
    plan = case.plan()
    one_channel = plan.batch == 1 and plan.in_channels == 1 and plan.out_channels == 1
    if device.cuda is not None or not one_channel or max(plan.stride + plan.dilation) > 1:
        return None
    try:
        from scipy.signal import fftconvolve
    except ImportError:
        return None
    numpy_modes = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
    kernel = np.ascontiguousarray(w[0, 0, ::-1, ::-1, ::-1])

    def run():
        volume = np.pad(x[0, 0], plan.pads, mode=numpy_modes[plan.padding_mode])
        out = fftconvolve(volume, kernel, mode="valid")
        return out + b[0] if b is not None else out

    return run


def gemm_peak_gflops(dtype, size=2048, repeat=5, backend="cpu"):
    """GFLOP/s of a square GEMM of ``dtype`` (the :func:`peak_precision`): the machine's practical peak.

    Uses torch when installed (its BLAS is what the peer runs on; on CUDA with TF32 off), NumPy's BLAS
    otherwise; None on CUDA where torch sees no GPU, and for bfloat16 without torch.
    """
    precision = peak_precision(dtype)
    a = np.random.default_rng(0).standard_normal((size, size)).astype(named_dtype(precision))
    torch = _torch()
    device = _Device(backend)
    if device.cuda is not None and (torch is None or not torch.cuda.is_available()):
        return None
    if torch is None and precision == "bfloat16":
        return None  # NumPy multiplies bfloat16 matrices element by element: no peak to measure
    if torch:
        a = device.torch(torch, a)
        torch.backends.cuda.matmul.allow_tf32 = False
    matmul = (lambda: torch.mm(a, a)) if torch else (lambda: a @ a)
    matmul()
    best = min(device.seconds(matmul) for _ in range(repeat))
    return 2 * size ** 3 / best / 1e9


def run_case(case, repeat=5, warmup=3, peak_gflops=None, threads=None, backend="cpu",
             settle=SETTLE_SECONDS):
    """Time ``case``: first call apart, then ``repeat`` alternating runs of ours and each peer, each
    timed run after a pause of ``settle`` seconds (see ``SETTLE_SECONDS``).

    Parameters
    ----------
    case : BenchCase
    repeat, warmup : int
        Timed runs and untimed warm-up runs per side.
    peak_gflops : float, optional
        The machine's peak for this precision; measured when None.
    threads : int, optional
        Numba and torch thread count while the case runs (default: as set); restored afterwards.
    backend : {'cpu', 'cuda'}, optional
        Where ours and the peers run; on 'cuda' the clock is read after synchronizing the device.
    settle : float, optional
        Seconds of pause before each timed run.

    Returns
    -------
    BenchResult
    """
    with _thread_count(threads):
        return _time_case(case, repeat, warmup, peak_gflops, _Device(backend), settle)


@contextlib.contextmanager
def _thread_count(threads):
    torch = _torch()
    before = numba.get_num_threads(), torch.get_num_threads() if torch else None
    if threads:
        numba.set_num_threads(threads)
        if torch:
            torch.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(before[0])
        if torch:
            torch.set_num_threads(before[1])


def median_times(sides, repeat, warmup, settle, device):
    """Median seconds of each callable in ``sides`` (by name): ``warmup`` untimed rounds, then
    ``repeat`` rounds in which the sides run in turn, each after a pause of ``settle`` seconds."""
    for _ in range(warmup):
        for run in sides.values():
            run()
    times = {name: [] for name in sides}
    for _ in range(repeat):
        for name, run in sides.items():
            time.sleep(settle)
            times[name].append(device.seconds(run))
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def _time_case(case, repeat, warmup, peak_gflops, device, settle):
    plan = case.plan()
    x, w, b = case.operands()
    xo, wo, bo = (device.ours(array) for array in (x, w, b))
    ours = lambda: conv3d(xo, wo, bo, **case.kwargs)  # noqa: E731
    first = device.seconds(ours)
    sides = {"ours": ours, **_torch_peers(case, device, x, w, b)}
    scipy_peer = _scipy_peer(case, device, x, w, b)
    errors = {}
    if scipy_peer:
        sides["scipy"] = scipy_peer
        errors = _errors({"ours": ours, "scipy": scipy_peer}, case, device, x, w, b)
    medians = median_times(sides, repeat, warmup, settle, device)
    if peak_gflops is None:
        peak_gflops = gemm_peak_gflops(case.dtype, backend=device.backend)
    return BenchResult(case, plan.flops, medians.pop("ours"), first, medians, peak_gflops, errors)


def _errors(sides, case, device, x, w, b):
    """Each side's largest error over the largest output magnitude, against scipy's result on the
    operands in float64 (the sides compute in the case's dtype)."""
    wide = [None if a is None else a.astype(np.result_type(a.dtype, np.float64)) for a in (x, w, b)]
    expected = _scipy_peer(case, device, *wide)()
    scale = np.abs(expected).max()
    return {name: float(np.abs(np.asarray(run()).reshape(expected.shape) - expected).max() / scale)
            for name, run in sides.items()}


def _shapes(case):
    shape = lambda dims: "x".join(map(str, dims))  # noqa: E731
    return f"{shape(case.input_shape)} * {shape(case.weight_shape)} {case.dtype}"


def format_table(results):
    """A plain-text table of results, one row a case, one column of median ms per peer."""
    width = max([len(_shapes(r.case)) for r in results] + [6])
    peers = list(dict.fromkeys(name for r in results for name in r.peers)) or ["torch"]
    header = (f"{'case':24} {'shapes':{width}} {'ours ms':>9} "
              + "".join(f"{name + ' ms':>{max(9, len(name) + 4)}} " for name in peers)
              + f"{'ratio':>6} {'GFLOP/s':>8} {'% peak':>7} {'compile s':>9}")
    errors = list(dict.fromkeys(name for r in results for name in r.errors))
    scipy = any("scipy" in r.peers for r in results)
    header += (" scipy/ours" if scipy else "") + "".join(f" {name + ' error':>12}" for name in errors)
    rows = [header, "-" * len(header)]
    for r in results:
        cells = "".join(f"{r.peers[name] * 1e3:{max(9, len(name) + 4)}.2f} " if name in r.peers
                        else f"{'absent':>{max(9, len(name) + 4)}} " for name in peers)
        ratio = f"{r.ratio:6.2f}" if r.ratio is not None else f"{'-':>6}"
        peak = f"{100 * r.fraction_of_peak:6.1f}%" if r.fraction_of_peak is not None else f"{'-':>7}"
        rows.append(f"{r.case.name:24} {_shapes(r.case):{width}} {r.ours_s * 1e3:9.2f} {cells}{ratio} "
                    f"{r.gflops:8.1f} {peak} {r.ours_first_s:9.2f}"
                    + ((f" {r.peers['scipy'] / r.ours_s:10.2f}" if "scipy" in r.peers else f" {'-':>10}")
                       if scipy else "")
                    + "".join(f" {r.errors[name]:12.2e}" if name in r.errors else f" {'-':>12}"
                              for name in errors))
    return "\n".join(rows)


def run_suite(cases, repeat=5, warmup=3, threads=None, progress=iter, backend="cpu",
              settle=SETTLE_SECONDS):
    """Run ``cases`` on ``backend``; return the GEMM peak per real precision and the results.

    ``progress`` wraps the iteration over cases (a progress bar, say); ``settle`` is
    :func:`run_case`'s. Freed memory stays mapped meanwhile (``steady_memory``).

    Returns
    -------
    peaks : dict of str to float
        GFLOP/s of a square GEMM, keyed by :func:`peak_precision` (None where unmeasured).
    results : list of BenchResult
    """
    keep_freed_memory_mapped()
    peaks, results = {}, []
    for case in progress(cases):
        precision = peak_precision(case.dtype)
        if precision not in peaks:
            peaks[precision] = gemm_peak_gflops(precision, backend=backend)
        results.append(run_case(case, repeat=repeat, warmup=warmup, threads=threads,
                                peak_gflops=peaks[precision], backend=backend, settle=settle))
    return peaks, results


def ratio_summary(results):
    """Geometric mean of the speed ratios over torch (torch's time over ours), with the number of
    cases and the slowest case; None without torch."""
    timed = [r for r in results if r.ratio is not None]
    if not timed:
        return None
    geomean = math.exp(sum(math.log(r.ratio) for r in timed) / len(timed))
    slowest = min(timed, key=lambda r: r.ratio)
    return {"geomean_ratio": geomean, "cases": len(timed), "slowest_case": slowest.case.name,
            "slowest_ratio": slowest.ratio}


def format_report(peaks, results):
    """The peaks line, the peer's presence, the results table and the ratios' geometric mean."""
    line = ", ".join(f"{name} GEMM peak {gflops:.0f} GFLOP/s" if gflops else f"{name} GEMM peak unmeasured"
                     for name, gflops in peaks.items())
    line += ("\nGFLOP/s count a direct convolution's multiply-adds over our time (Winograd and FFT make "
             "fewer, so they can pass the peak)")
    if _torch() is None:
        line += "; torch is not installed: the peer columns are absent"
    report = line + "\n" + format_table(results)
    summary = ratio_summary(results)
    if summary:
        report += (f"\ngeometric mean of the ratio over {summary['cases']} cases: "
                   f"{summary['geomean_ratio']:.2f}; slowest: {summary['slowest_case']} "
                   f"({summary['slowest_ratio']:.2f})")
    return report
