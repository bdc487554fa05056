"""The benchmark's cases: ``BenchCase`` and the suites that ``benchmarks/`` and ``numba-conv3d bench``
run (``benchmark.py`` times them)."""
from dataclasses import dataclass, field

import numpy as np

from .planner import plan_conv3d
from .precision import named_dtype


@dataclass(frozen=True)
class BenchCase:
    """One benchmark shape: input and weight shapes, keyword arguments of ``conv3d``, dtype; ``torch``
    False leaves torch out (one-channel volumes with large kernels, where its direct convolution takes
    seconds a call and scipy is the peer)."""

    name: str
    input_shape: tuple
    weight_shape: tuple
    kwargs: dict = field(default_factory=dict)
    dtype: str = "float32"
    bias: bool = True
    backend: str = "cpu"
    torch: bool = True

    def plan(self):
        """The plan of this case on its backend (validates it)."""
        return plan_conv3d(self.input_shape, self.weight_shape, bias=self.bias, dtype=self.dtype,
                           backend=self.backend, **self.kwargs)

    def operands(self, seed=0):
        """Random input, weight and bias of the case's shapes and dtype."""
        rng = np.random.default_rng(seed)
        dtype = named_dtype(self.dtype)

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

# Every class of issue 4's suite: dense and strided k3/k5, both doc examples, a 3-channel stem, 1x7x7,
# dilated, grouped, depthwise, pointwise, one-channel volumes (k5/k7/k9 at 96^3 and 192^3, reflect),
# float64 and complex64 variants. scipy.signal.fftconvolve runs beside the one-channel cases.
FULL_SUITE = tuple(BenchCase(*fields) for fields in (
    ("dense-k3-c32-64^3", (1, 32, 64, 64, 64), (32, 32, 3, 3, 3), {"padding": 1}),
    ("dense-k3-c64-32^3", (1, 64, 32, 32, 32), (64, 64, 3, 3, 3), {"padding": 1}),
    ("dense-k5-c32-32^3", (1, 32, 32, 32, 32), (32, 32, 5, 5, 5), {"padding": 2}),
    ("strided-k3-s2", (2, 32, 32, 64, 64), (64, 32, 3, 3, 3), {"padding": 1, "stride": 2}),
    ("strided-k5-s2", (1, 32, 32, 64, 64), (64, 32, 5, 5, 5), {"padding": 2, "stride": 2}),
    ("doc-example", (20, 16, 10, 50, 100), (33, 16, 3, 3, 3), {"stride": 2}),
    ("doc-example-2", (20, 16, 10, 50, 100), (33, 16, 3, 5, 2),
     {"stride": (2, 1, 1), "padding": (4, 2, 0)}),
    ("stem-3ch-k3x7x7", (1, 3, 32, 112, 112), (64, 3, 3, 7, 7),
     {"stride": (1, 2, 2), "padding": (1, 3, 3)}),
    ("anisotropic-1x7x7", (1, 32, 16, 56, 56), (32, 32, 1, 7, 7), {"padding": (0, 3, 3)}),
    ("dilated-k3-d2", (1, 32, 32, 32, 32), (32, 32, 3, 3, 3), {"padding": 2, "dilation": 2}),
    ("grouped-g4", (1, 64, 32, 32, 32), (64, 16, 3, 3, 3), {"padding": 1, "groups": 4}),
    ("depthwise-k3", (1, 64, 32, 32, 32), (64, 1, 3, 3, 3), {"padding": 1, "groups": 64}),
    ("pointwise-64-128", (1, 64, 32, 32, 32), (128, 64, 1, 1, 1), {}),
    *((f"one-channel-k{k}-{n}^3", (1, 1, n, n, n), (1, 1, k, k, k),
       {"padding": "same", "padding_mode": "reflect"}) for n in (96, 192) for k in (5, 7, 9)),
    ("dense-k3-float64", (1, 32, 32, 32, 32), (32, 32, 3, 3, 3), {"padding": 1}, "float64"),
    ("dense-k3-complex64", (1, 16, 32, 32, 32), (16, 16, 3, 3, 3), {"padding": 1}, "complex64"),
    ("one-channel-k7-float64", (1, 1, 96, 96, 96), (1, 1, 7, 7, 7),
     {"padding": "same", "padding_mode": "reflect"}, "float64"),
    ("one-channel-k7-complex64", (1, 1, 96, 96, 96), (1, 1, 7, 7, 7),
     {"padding": "same", "padding_mode": "reflect"}, "complex64"),
))

# One-channel volumes with the large kernels scientists smooth and match-filter with (the FFT
# algorithm's class), in the padding modes scipy.signal.fftconvolve runs beside them (the input padded
# by np.pad), and k7/k9 where the planner's crossover lies.
LARGE_KERNEL_SUITE = tuple(
    BenchCase(f"1ch-k{k}-{mode}-{n}^3", (1, 1, n, n, n), (1, 1, k, k, k),
              {"padding": "same", "padding_mode": mode}, torch=False)
    for n, k, mode in ((128, 7, "reflect"), (128, 9, "reflect"),
                       *((128, k, mode) for k in (15, 21, 31) for mode in ("zeros", "reflect", "replicate")),
                       (96, 31, "reflect")))

CUDA_SUITE = tuple(BenchCase(*fields, backend="cuda") for fields in (
    ("dense-k3-c32-64^3", (1, 32, 64, 64, 64), (32, 32, 3, 3, 3), {"padding": 1}),
    ("dense-k3-c64-48^3", (1, 64, 48, 48, 48), (64, 64, 3, 3, 3), {"padding": 1}),
    ("depthwise-k3", (2, 96, 16, 28, 28), (96, 1, 3, 3, 3), {"padding": 1, "groups": 96}),
    ("dilated-k3-d2", (2, 16, 32, 32, 32), (16, 16, 3, 3, 3), {"padding": 2, "dilation": 2}),
    ("one-channel-k7-256^3", (1, 1, 256, 256, 256), (1, 1, 7, 7, 7), {"padding": 3}),
))

SUITES = {"cpu": DEFAULT_SUITE, "cuda": CUDA_SUITE}

FULL_SUITES = {"cpu": FULL_SUITE, "cuda": CUDA_SUITE}

LARGE_KERNEL_SUITES = {"cpu": LARGE_KERNEL_SUITE}
