"""The networks suite: every convolution layer of real 3-D networks (``networks.py``), ours and torch
side by side, forward and forward + backward, summed per network.

Each distinct layer's first call is timed apart (compilation). Then, by default (``timing="network"``),
each side runs the network's layers back to back in their order, as a network runs them: rounds in
which ours and torch take turns (which goes first alternates) with a pause of ``settle`` before each
side's pass, medians per layer over the rounds. With ``timing="layer"`` each layer is timed alone as
``benchmark.py`` times a case, a pause before every run: each layer then starts with idle threads
(Numba's tbb workers join a parallel call up to milliseconds late after such a pause, torch's OpenMP
threads less so), which makes short layers slower on both sides than inside a network. A network's
time is the sum over its layers of median x count. The training step of a layer is its
forward plus the gradients a training step computes (weight, bias, and input unless the layer reads
the data), on both sides: ours through ``conv3d_input`` / ``conv3d_weight`` / ``conv3d_bias`` (a
transposed layer's input gradient is a forward ``conv3d``), torch's through autograd.
"""
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .api import conv3d
from .benchmark import SETTLE_SECONDS, _Device, _thread_count, _torch, median_times, torch_tensor
from .grad import conv3d_bias, conv3d_input, conv3d_weight
from .networks import NETWORKS, network_layers
from .precision import named_dtype
from .steady_memory import keep_freed_memory_mapped
from .transposed import conv_transpose3d


def _conv_kwargs(layer):
    """The layer's arguments as the forward convolution (of a transposed layer: the one it transposes)
    takes them."""
    return {name: value for name, value in layer.kwargs.items() if name != "output_padding"}


def _operands(layer, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    draw = lambda shape: rng.standard_normal(shape, dtype=np.float32).astype(named_dtype(dtype))  # noqa: E731
    return (draw(layer.input_shape), draw(layer.weight_shape),
            draw(layer.output_shape[1:2]) if layer.bias else None, draw(layer.output_shape))


def _ours(layer, x, w, b, g):
    """Our forward and training-step callables for ``layer``."""
    kwargs = _conv_kwargs(layer)
    if layer.transposed:
        forward = lambda: conv_transpose3d(x, w, b, **layer.kwargs)  # noqa: E731

        def gradients():
            conv3d_weight(g, w.shape, x, **kwargs)
            if layer.input_grad:
                conv3d(g, w, None, **kwargs)
    else:
        forward = lambda: conv3d(x, w, b, **kwargs)  # noqa: E731

        def gradients():
            conv3d_weight(x, w.shape, g, **kwargs)
            if layer.input_grad:
                conv3d_input(x.shape, w, g, **kwargs)

    def training():
        forward()
        gradients()
        if layer.bias:
            conv3d_bias(g)

    return forward, training


def _torch_sides(torch, layer, x, w, b, g):
    """torch's forward (no autograd) and training step (autograd) for ``layer``."""
    function = torch.nn.functional.conv_transpose3d if layer.transposed else torch.nn.functional.conv3d
    xt, wt, gt = (torch_tensor(torch, a) for a in (x, w, g))
    bt = None if b is None else torch_tensor(torch, b)
    leaves = [t.clone().requires_grad_(True) if t is not None else None for t in (xt, wt, bt)]
    wanted = [t for t, needed in zip(leaves, (layer.input_grad, True, True)) if t is not None and needed]

    def forward():
        with torch.no_grad():
            return function(xt, wt, bt, **layer.kwargs)

    def training():
        torch.autograd.grad(function(*leaves, **layer.kwargs), wanted, gt)

    return forward, training


def _milliseconds(seconds):
    """``seconds`` in ms, None where not timed (a JSON null)."""
    return None if seconds is None else seconds * 1e3


@dataclass
class LayerResult:
    """Median seconds of one layer on each side (torch's None without torch), and how far our forward
    result is from torch's (largest absolute difference over torch's largest magnitude)."""

    layer: object
    ours_forward_s: float
    ours_training_s: float | None
    ours_first_s: float
    torch_forward_s: float | None
    torch_training_s: float | None
    max_relative_difference: float | None

    @property
    def forward_ratio(self):
        return self.torch_forward_s / self.ours_forward_s if self.torch_forward_s else None

    @property
    def training_ratio(self):
        return self.torch_training_s / self.ours_training_s if self.torch_training_s else None

    @property
    def forward_gflops(self):
        return 2 * self.layer.macs / self.ours_forward_s / 1e9

    def as_dict(self):
        """JSON-ready record of the layer and its timings in ms."""
        layer = self.layer
        return {"layer": layer.name, "count": layer.count, "input": layer.input_shape,
                "weight": layer.weight_shape, "kwargs": layer.kwargs, "transposed": layer.transposed,
                "bias": layer.bias, "input_grad": layer.input_grad, "macs": layer.macs,
                "ours_forward_ms": _milliseconds(self.ours_forward_s),
                "ours_training_ms": _milliseconds(self.ours_training_s), "compile_s": self.ours_first_s,
                "torch_forward_ms": _milliseconds(self.torch_forward_s),
                "torch_training_ms": _milliseconds(self.torch_training_s),
                "forward_ratio": self.forward_ratio, "training_ratio": self.training_ratio,
                "forward_gflops": self.forward_gflops,
                "max_relative_difference": self.max_relative_difference}


@dataclass
class _PreparedLayer:
    """A layer's operands bound into callables per side (name: (forward, training step)), its first
    call's seconds (ours, compilation included) and our forward's difference from torch's."""

    layer: object
    sides: dict
    first_s: float
    difference: float | None

    def result(self, forward, steps):
        """The LayerResult of median seconds ``forward`` and ``steps`` (by side name)."""
        return LayerResult(self.layer, forward["ours"], steps["ours"], self.first_s, forward.get("torch"),
                           steps.get("torch"), self.difference)


def _prepare(layer, training, dtype):
    """``layer``'s operands in ``dtype`` and its callables per side, our first call (and training step)
    timed, and our forward compared with torch's."""
    x, w, b, g = _operands(layer, dtype)
    ours_forward, ours_training = _ours(layer, x, w, b, g)
    start = time.perf_counter()
    ours_forward()
    if training:
        ours_training()
    first = time.perf_counter() - start
    torch = _torch()
    sides = {"ours": (ours_forward, ours_training)}
    difference = None
    if torch is not None:
        sides["torch"] = _torch_sides(torch, layer, x, w, b, g)
        reference = sides["torch"][0]().double().numpy()
        scale = float(np.abs(reference).max()) or 1.0
        difference = float(np.abs(ours_forward().astype(np.float64) - reference).max()) / scale
    return _PreparedLayer(layer, sides, first, difference)


def time_layer(layer, repeat=5, warmup=2, settle=SETTLE_SECONDS, training=True, dtype="float32"):
    """Time one layer alone on the CPU in ``dtype`` (torch in the same): ours and torch alternating,
    a pause of ``settle`` before each run, forward then training step.

    Returns
    -------
    LayerResult
    """
    device = _Device("cpu")
    prepared = _prepare(layer, training, dtype)
    sides = prepared.sides
    forward = median_times({name: pair[0] for name, pair in sides.items()}, repeat, warmup, settle, device)
    steps = (median_times({name: pair[1] for name, pair in sides.items()}, repeat, warmup, settle, device)
             if training else dict.fromkeys(sides))
    return prepared.result(forward, steps)


def _medians_in_network_order(prepared, which, repeat, warmup, settle, device):
    """Per layer, the median seconds of each side's callable ``which`` (0: forward, 1: training step):
    ``warmup`` untimed then ``repeat`` timed rounds, in which each side in turn (the first alternating)
    runs every layer in order after one pause of ``settle``."""
    names = list(prepared[0].sides)
    times = {name: [[] for _ in prepared] for name in names}
    for round_ in range(warmup + repeat):
        for name in names if round_ % 2 == 0 else names[::-1]:
            time.sleep(settle)
            for at, layer in enumerate(prepared):
                seconds = device.seconds(layer.sides[name][which])
                if round_ >= warmup:
                    times[name][at].append(seconds)
    return [{name: statistics.median(times[name][at]) for name in names} for at in range(len(prepared))]


def time_network(prepared, repeat=5, warmup=2, settle=SETTLE_SECONDS, training=True):
    """Time a network's layers, ``prepared`` in order by ``_prepare``, back to back in network order
    (see the module's docstring).

    Returns
    -------
    list of LayerResult
    """
    device = _Device("cpu")
    forward = _medians_in_network_order(prepared, 0, repeat, warmup, settle, device)
    steps = (_medians_in_network_order(prepared, 1, repeat, warmup, settle, device) if training
             else [dict.fromkeys(layer.sides) for layer in prepared])
    return [layer.result(f, s) for layer, f, s in zip(prepared, forward, steps)]


@dataclass
class NetworkResult:
    """The layers of one network and their sums (median x count)."""

    name: str
    batch: int
    layers: list
    timing: str = "network"

    def total(self, attribute):
        """Sum over the layers of ``attribute`` (a LayerResult's seconds) x count; None where absent."""
        values = [(getattr(r, attribute), r.layer.count) for r in self.layers]
        if any(value is None for value, _ in values):
            return None
        return sum(value * count for value, count in values)

    def ratio(self, kind):
        """torch's total over ours for ``kind`` ('forward' or 'training'); None without torch."""
        theirs = self.total(f"torch_{kind}_s")
        return theirs / self.total(f"ours_{kind}_s") if theirs else None

    def as_dict(self):
        return {"network": self.name, "batch": self.batch, "timing": self.timing,
                "ours_forward_ms": _milliseconds(self.total("ours_forward_s")),
                "ours_training_ms": _milliseconds(self.total("ours_training_s")),
                "forward_ratio": self.ratio("forward"), "training_ratio": self.ratio("training"),
                "layers": [r.as_dict() for r in self.layers]}


TIMINGS = ("network", "layer")
_TIMING_NOTES = {"network": "each side runs a network's layers back to back in network order, a pause "
                            "before each pass",
                 "layer": "each layer alone, a pause before each run"}


def run_networks(names=None, batch=1, repeat=5, warmup=2, threads=None, settle=SETTLE_SECONDS,
                 training=True, progress=iter, dtype="float32", timing="network"):
    """Time every distinct layer of the networks ``names`` (default: all of ``NETWORKS``) at ``batch``,
    in ``dtype``: in network order, or each layer alone (``timing``, see the module's docstring).

    ``progress`` wraps the iteration over (network, layer) pairs; ``threads`` sets Numba's and torch's
    thread count for the run. Without ``training``, only forward passes are timed. Freed memory stays
    mapped meanwhile (``steady_memory``).

    Returns
    -------
    list of NetworkResult
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS}, got {timing!r}")
    names = list(NETWORKS) if names is None else list(names)
    pairs = [(name, layer) for name in names for layer in network_layers(name, batch)]
    layer_counts = Counter(name for name, _ in pairs)
    keep_freed_memory_mapped()
    results = {name: NetworkResult(name, batch, [], timing) for name in names}
    prepared = {name: [] for name in names}
    with _thread_count(threads):
        for name, layer in progress(pairs):
            if timing == "layer":
                results[name].layers.append(time_layer(layer, repeat, warmup, settle, training, dtype))
                continue
            prepared[name].append(_prepare(layer, training, dtype))
            if len(prepared[name]) == layer_counts[name]:
                results[name].layers = time_network(prepared.pop(name), repeat, warmup, settle, training)
    return list(results.values())


def _describe(layer):
    shape = lambda dims: "x".join(map(str, dims))  # noqa: E731
    args = ",".join(f"{key[0]}{value}" for key, value in layer.kwargs.items()
                    if value not in (0, 1, (0, 0, 0), (1, 1, 1))).replace(" ", "")
    kind = "T " if layer.transposed else ""
    return f"{kind}{shape(layer.input_shape)}*{shape(layer.weight_shape[2:])}->{layer.output_shape[1]} {args}"


def _ratio(value):
    return f"{value:6.2f}" if value is not None else f"{'-':>6}"


def _ms(seconds):
    return f"{seconds * 1e3:9.2f}" if seconds is not None else f"{'-':>9}"


def geometric_mean(values):
    """Geometric mean of positive ``values`` (None when any is None or there are none)."""
    values = list(values)
    if not values or any(v is None for v in values):
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def format_networks(results, training=True):
    """Per layer: ours and torch ms, ratio, GFLOP/s (forward; and the training step); per network the
    sums and ratios; then the geometric means over the networks."""
    width = max(len(_describe(r.layer)) for n in results for r in n.layers)
    header = (f"{'layer':22} {'x':>2} {'shape':{width}} {'ours ms':>9} {'torch ms':>9} {'ratio':>6} "
              f"{'GFLOP/s':>8}")
    if training:
        header += f" {'fw+bw ms':>9} {'torch ms':>9} {'ratio':>6}"
    lines = []
    for network in results:
        lines += [f"{network.name} (batch {network.batch})", header, "-" * len(header)]
        for r in network.layers:
            row = (f"{r.layer.name[:22]:22} {r.layer.count:2} {_describe(r.layer):{width}} "
                   f"{_ms(r.ours_forward_s)} {_ms(r.torch_forward_s)} {_ratio(r.forward_ratio)} "
                   f"{r.forward_gflops:8.1f}")
            if training:
                row += f" {_ms(r.ours_training_s)} {_ms(r.torch_training_s)} {_ratio(r.training_ratio)}"
            lines.append(row)
        total = (f"{'total':22} {'':2} {'':{width}} {_ms(network.total('ours_forward_s'))} "
                 f"{_ms(network.total('torch_forward_s'))} {_ratio(network.ratio('forward'))} {'':8}")
        if training:
            total += (f" {_ms(network.total('ours_training_s'))} {_ms(network.total('torch_training_s'))} "
                      f"{_ratio(network.ratio('training'))}")
        lines += [total, ""]
    lines.append(f"{'network':14} {'forward':>8} {'fw+bw':>8}   (torch time / ours)")
    for network in results:
        lines.append(f"{network.name:14} {_ratio(network.ratio('forward')):>8} "
                     f"{_ratio(network.ratio('training') if training else None):>8}")
    forward = geometric_mean(n.ratio("forward") for n in results)
    step = geometric_mean(n.ratio("training") for n in results) if training else None
    lines.append(f"{'geometric mean':14} {_ratio(forward):>8} {_ratio(step):>8}")
    timings = {network.timing for network in results}
    lines.append("timing: " + "; ".join(_TIMING_NOTES[timing] for timing in TIMINGS if timing in timings))
    return "\n".join(lines)
