"""Side-by-side timing of numba_conv3d and its peer (torch), shared by ``benchmarks/`` and the CLI.

Runs alternate (ours, peer, ours, peer, ...) in one process so that machine noise hits both alike;
medians are reported, with the first call (compilation) timed apart.
"""
import contextlib
import statistics
import time
from dataclasses import dataclass, field

import numba
import numpy as np

from .api import conv3d
from .planner import plan_conv3d


@dataclass(frozen=True)
class BenchCase:
    """One benchmark shape: input and weight shapes, keyword arguments of ``conv3d``, dtype."""

    name: str
    input_shape: tuple
    weight_shape: tuple
    kwargs: dict = field(default_factory=dict)
    dtype: str = "float32"
    bias: bool = True

    def plan(self):
        """The plan of this case (validates it)."""
        return plan_conv3d(self.input_shape, self.weight_shape, bias=self.bias, dtype=self.dtype,
                           **self.kwargs)

    def operands(self, seed=0):
        """Random input, weight and bias of the case's shapes and dtype."""
        rng = np.random.default_rng(seed)
        dtype = np.dtype(self.dtype)

        def draw(shape):
            values = rng.standard_normal(shape, dtype=np.float32)
            return (values + 1j * values[::-1] if dtype.kind == "c" else values).astype(dtype)

        bias = draw(self.weight_shape[:1]) if self.bias else None
        return draw(self.input_shape), draw(self.weight_shape), bias


DEFAULT_SUITE = (
    BenchCase("doc-example", (20, 16, 10, 50, 100), (33, 16, 3, 3, 3), {"stride": 2}),
    BenchCase("dense-k3", (1, 32, 32, 32, 32), (32, 32, 3, 3, 3), {"padding": 1}),
    BenchCase("one-channel-k7-reflect", (1, 1, 64, 64, 64), (1, 1, 7, 7, 7),
              {"padding": "same", "padding_mode": "reflect"}),
    BenchCase("depthwise-k3", (1, 64, 32, 32, 32), (64, 1, 3, 3, 3), {"padding": 1, "groups": 64}),
    BenchCase("pointwise", (1, 64, 32, 32, 32), (128, 64, 1, 1, 1)),
    BenchCase("dense-k3-float64", (1, 16, 32, 32, 32), (16, 16, 3, 3, 3), {"padding": 1},
              dtype="float64"),
)


@dataclass
class BenchResult:
    """Timings of one case: medians in seconds, compile (first-call) time, and derived rates."""

    case: BenchCase
    flops: int
    ours_s: float
    ours_first_s: float
    peer_s: float | None
    peak_gflops: float

    @property
    def gflops(self):
        """Our GFLOP/s at the median."""
        return self.flops / self.ours_s / 1e9

    @property
    def ratio(self):
        """Peer time over ours: above 1 means we are faster."""
        return None if self.peer_s is None else self.peer_s / self.ours_s

    @property
    def fraction_of_peak(self):
        """Our GFLOP/s over the machine's measured GEMM peak of the same precision."""
        return self.gflops / self.peak_gflops

    def as_dict(self):
        """JSON-ready record: the case, times in ms, ratio, GFLOP/s, fraction of peak."""
        ms = (lambda s: None if s is None else s * 1e3)  # noqa: E731
        return {"case": self.case.name, "input": self.case.input_shape,
                "weight": self.case.weight_shape, "kwargs": self.case.kwargs,
                "dtype": self.case.dtype, "bias": self.case.bias, "flops": self.flops,
                "ours_ms": ms(self.ours_s), "torch_ms": ms(self.peer_s),
                "compile_s": self.ours_first_s, "ratio": self.ratio, "gflops": self.gflops,
                "peak_gflops": self.peak_gflops, "fraction_of_peak": self.fraction_of_peak}


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _torch_peer(case, x, w, b):
    """A callable running torch.nn.Conv3d on the case's operands, or None without torch."""
    torch = _torch()
    if torch is None:
        return None
    module = torch.nn.Conv3d(case.weight_shape[1] * case.kwargs.get("groups", 1),
                             case.weight_shape[0], case.weight_shape[2:], bias=b is not None,
                             dtype=getattr(torch, case.dtype), **case.kwargs)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(w))
        if b is not None:
            module.bias.copy_(torch.from_numpy(b))
    xt = torch.from_numpy(x)

    def run():
        with torch.no_grad():
            return module(xt)

    return run


def gemm_peak_gflops(dtype, size=2048, repeat=5):
    """GFLOP/s of a square GEMM of ``dtype`` (real part's precision): the machine's practical peak.

    Uses torch when installed (its BLAS is what the peer runs on), NumPy's BLAS otherwise.
    """
    real = np.dtype(dtype).type(0).real.dtype
    a = np.random.default_rng(0).standard_normal((size, size)).astype(real)
    torch = _torch()
    if torch:
        a = torch.from_numpy(a)
    matmul = (lambda: torch.mm(a, a)) if torch else (lambda: a @ a)
    matmul()
    best = min(_seconds(matmul) for _ in range(repeat))
    return 2 * size ** 3 / best / 1e9


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_case(case, repeat=5, warmup=3, peak_gflops=None, threads=None):
    """Time ``case``: first call apart, then ``repeat`` alternating runs of ours and the peer.

    Parameters
    ----------
    case : BenchCase
    repeat, warmup : int
        Timed runs and untimed warm-up runs per side.
    peak_gflops : float, optional
        The machine's peak for this precision; measured when None.
    threads : int, optional
        Numba and torch thread count while the case runs (default: as set); restored afterwards.

    Returns
    -------
    BenchResult
    """
    with _thread_count(threads):
        return _time_case(case, repeat, warmup, peak_gflops)


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


def _time_case(case, repeat, warmup, peak_gflops):
    plan = case.plan()
    x, w, b = case.operands()
    ours = lambda: conv3d(x, w, b, **case.kwargs)  # noqa: E731
    first = _seconds(ours)
    peer = _torch_peer(case, x, w, b)
    for _ in range(warmup):
        ours()
        if peer:
            peer()
    ours_times, peer_times = [], []
    for _ in range(repeat):
        ours_times.append(_seconds(ours))
        if peer:
            peer_times.append(_seconds(peer))
    return BenchResult(case, plan.flops, statistics.median(ours_times), first,
                       statistics.median(peer_times) if peer else None,
                       peak_gflops or gemm_peak_gflops(case.dtype))


def _shapes(case):
    shape = lambda dims: "x".join(map(str, dims))  # noqa: E731
    return f"{shape(case.input_shape)} * {shape(case.weight_shape)} {case.dtype}"


def format_table(results):
    """A plain-text table of results, one row a case."""
    width = max([len(_shapes(r.case)) for r in results] + [6])
    header = (f"{'case':24} {'shapes':{width}} {'ours ms':>9} {'torch ms':>9} {'ratio':>6} "
              f"{'GFLOP/s':>8} {'% peak':>7} {'compile s':>9}")
    rows = [header, "-" * len(header)]
    for r in results:
        peer = f"{r.peer_s * 1e3:9.2f}" if r.peer_s is not None else f"{'absent':>9}"
        ratio = f"{r.ratio:6.2f}" if r.ratio is not None else f"{'-':>6}"
        rows.append(f"{r.case.name:24} {_shapes(r.case):{width}} {r.ours_s * 1e3:9.2f} {peer} {ratio} "
                    f"{r.gflops:8.1f} "
                    f"{100 * r.fraction_of_peak:6.1f}% {r.ours_first_s:9.2f}")
    return "\n".join(rows)


def run_suite(cases, repeat=5, warmup=3, threads=None, progress=iter):
    """Run ``cases``; return the GEMM peak per real precision and the results.

    ``progress`` wraps the iteration over cases (a progress bar, say).

    Returns
    -------
    peaks : dict of str to float
        GFLOP/s of a square GEMM, keyed by 'float32' / 'float64'.
    results : list of BenchResult
    """
    peaks, results = {}, []
    for case in progress(cases):
        precision = np.dtype(case.dtype).type(0).real.dtype.name
        if precision not in peaks:
            peaks[precision] = gemm_peak_gflops(precision)
        results.append(run_case(case, repeat=repeat, warmup=warmup, threads=threads,
                                peak_gflops=peaks[precision]))
    return peaks, results


def format_report(peaks, results):
    """The peaks line, the peer's presence and the results table."""
    line = ", ".join(f"{name} GEMM peak {gflops:.0f} GFLOP/s" for name, gflops in peaks.items())
    if _torch() is None:
        line += "; torch is not installed: the peer columns are absent"
    return line + "\n" + format_table(results)
