"""The networks suite: every convolution layer of real 3-D networks (``networks.py``), ours and torch
side by side, forward and forward + backward, summed per network.

Each distinct layer is timed as ``benchmark.py`` times a case: first call apart, warm-up runs, then
runs of ours and torch alternating in one process (a pause of ``settle`` before each), medians; a
network's time is the sum over its layers of median x count. The training step of a layer is its
forward plus the gradients a training step computes (weight, bias, and input unless the layer reads
the data), on both sides: ours through ``conv3d_input`` / ``conv3d_weight`` / ``conv3d_bias`` (a
transposed layer's input gradient is a forward ``conv3d``), torch's through autograd.
"""
import math
import time
from dataclasses import dataclass

import numpy as np

from .api import conv3d
from .benchmark import SETTLE_SECONDS, _Device, _thread_count, _torch, median_times, torch_tensor
from .grad import conv3d_bias, conv3d_input, conv3d_weight
from .networks import NETWORKS, network_layers
from .precision import named_dtype
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


def time_layer(layer, repeat=5, warmup=2, settle=SETTLE_SECONDS, training=True, dtype="float32"):
    """Time one layer on the CPU in ``dtype`` (torch in the same): ours and torch alternating, forward
    then training step.

    Returns
    -------
    LayerResult
    """
    device = _Device("cpu")
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
    forward = median_times({name: pair[0] for name, pair in sides.items()}, repeat, warmup, settle, device)
    steps = (median_times({name: pair[1] for name, pair in sides.items()}, repeat, warmup, settle, device)
             if training else dict.fromkeys(sides))
    return LayerResult(layer, forward["ours"], steps["ours"], first, forward.get("torch"), steps.get("torch"),
                       difference)


@dataclass
class NetworkResult:
    """The layers of one network and their sums (median x count)."""

    name: str
    batch: int
    layers: list

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
        return {"network": self.name, "batch": self.batch,
                "ours_forward_ms": _milliseconds(self.total("ours_forward_s")),
                "ours_training_ms": _milliseconds(self.total("ours_training_s")),
                "forward_ratio": self.ratio("forward"), "training_ratio": self.ratio("training"),
                "layers": [r.as_dict() for r in self.layers]}


def run_networks(names=None, batch=1, repeat=5, warmup=2, threads=None, settle=SETTLE_SECONDS,
                 training=True, progress=iter, dtype="float32"):
    """Time every distinct layer of the networks ``names`` (default: all of ``NETWORKS``) at ``batch``,
    in ``dtype``.

    ``progress`` wraps the iteration over (network, layer) pairs; ``threads`` sets Numba's and torch's
    thread count for the run. Without ``training``, only forward passes are timed.

    Returns
    -------
    list of NetworkResult
    """
    names = list(NETWORKS) if names is None else list(names)
    pairs = [(name, layer) for name in names for layer in network_layers(name, batch)]
    results = {name: NetworkResult(name, batch, []) for name in names}
    with _thread_count(threads):
        for name, layer in progress(pairs):
            results[name].layers.append(time_layer(layer, repeat, warmup, settle, training, dtype))
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
    return "\n".join(lines)
