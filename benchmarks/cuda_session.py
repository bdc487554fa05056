"""The prepared GPU session: everything a lent GPU should run, in one call, within a few minutes.

1. the machine (GPU, driver, packages) and its two ceilings: float32 matrix product (cuBLAS, TF32 off)
   and device-to-device copy bandwidth;
2. correctness: random forward cases for every CUDA algorithm that serves them, against torch in
   float64 on the GPU, outputs poisoned first;
3. a sweep of implicit-GEMM tiles (and reduction splits) over the layer classes;
4. ours against cuDNN (TF32 off, and TF32 on beside it): the CUDA suite's five shapes and every
   distinct forward layer of the networks suite, per network weighted by layer counts; training steps
   (forward and gradients) of the networks where ``--training`` asks;
5. host overhead per call on a tiny layer (cached plan), for each array kind, and a profile of the host
   time of a tiny transposed layer and of each gradient;
6. the weight gradient's tile sweep, then each gradient of the sweep's layers against cuDNN's, and
   the transposed layers by stride phases and by the upsampled correlation (``--skip gradients``
   leaves them out).

Usage (on the GPU machine): python benchmarks/cuda_session.py OUT_DIR [--quick] [--training]
(--quick: fewer random correctness cases)
Writes OUT_DIR/cuda_session.json and prints the tables; each section survives a failure of another, and
the long ones stop at a time limit. The sweep prints the ``cuda_config.CUDA_GEMM_CLASSES`` table it measured
(and the later sections run with it): commit it to ``numba_conv3d/cuda_config.py``.
"""
import argparse
import functools
import json
import math
import platform
import statistics
import subprocess
import sys
import time
import traceback

import numpy as np
import torch

import numba_conv3d
from numba_conv3d import conv3d, conv_transpose3d, cuda_config
from numba_conv3d.bench_cases import CUDA_SUITE
from numba_conv3d.networks import NETWORKS, network_layers
from numba_conv3d.planner import plan_for_arrays

RESULTS = {}
OUT_FILE = []  # where each finished section rewrites the results (a run cut short keeps the rest)


def section(name):
    """Run the decorated section, store its result, print a traceback instead of stopping."""
    def wrap(function):
        def run(*args, **kwargs):
            start = time.perf_counter()
            print(f"\n== {name}", flush=True)
            try:
                RESULTS[name] = function(*args, **kwargs)
            except Exception:  # noqa: BLE001 - a failed section must not cost the others
                RESULTS[name] = {"error": traceback.format_exc()}
                print(RESULTS[name]["error"], flush=True)
            print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)
            for path in OUT_FILE:
                with open(path, "w") as handle:
                    json.dump(RESULTS, handle, indent=1, default=str)
        return run
    return wrap


def gpu_ms(fn, repeat=7, inner=None, budget_ms=150.0):
    """Median milliseconds per call of ``fn`` over ``repeat`` timed loops (CUDA events), each loop of
    ``inner`` back-to-back calls (chosen so that a loop takes about ``budget_ms / repeat``)."""
    fn()
    torch.cuda.synchronize()
    if inner is None:
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        once = max(time.perf_counter() - start, 1e-6) * 1e3
        inner = int(min(200, max(1, budget_ms / repeat / once)))
    times = []
    for _ in range(repeat):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end) / inner)
    return statistics.median(times)


def alternating_ms(fns, rounds=3, **kwargs):
    """Median over ``rounds`` alternating rounds of each callable's ``gpu_ms``."""
    samples = [[] for _ in fns]
    for _ in range(rounds):
        for sample, fn in zip(samples, fns):
            sample.append(gpu_ms(fn, **kwargs))
    return [statistics.median(s) for s in samples]


@section("machine")
def machine():
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,memory.total",
                          "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    import numba
    import numba.cuda

    info = {"gpu": smi, "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "numba": numba.__version__,
            "numba_cuda": getattr(numba.cuda, "__version__", "?"), "python": platform.python_version(),
            "numba_conv3d": numba_conv3d.__version__,
            "multiprocessors": torch.cuda.get_device_properties(0).multi_processor_count}
    torch.backends.cuda.matmul.allow_tf32 = False
    info["fp32_gemm_tflops"] = _gemm_tflops(8192)
    info["copy_tb_s"] = _copy_tb_s(1 << 29)
    torch.cuda.empty_cache()
    print(json.dumps(info, indent=1))
    return info


def _gemm_tflops(n):
    """float32 matrix product rate (TF32 off) on random n x n operands."""
    a, b = (torch.randn(n, n, device="cuda") for _ in range(2))
    return 2 * n ** 3 / gpu_ms(functools.partial(torch.matmul, a, b), repeat=5, inner=5) / 1e9


def _copy_tb_s(elements):
    """Device-to-device copy rate, bytes read plus written."""
    source = torch.randn(elements, device="cuda")
    target = torch.empty_like(source)
    return 2 * elements * 4 / gpu_ms(functools.partial(target.copy_, source), repeat=5, inner=5) / 1e9


def _random_case(rng):
    """A random forward case: (input shape, weight shape, kwargs)."""
    groups = int(rng.choice([1, 1, 1, 2, 4]))
    in_per, out_per = int(rng.integers(1, 24)), int(rng.integers(1, 80))
    kernel = tuple(int(k) for k in rng.integers(1, 6, 3))
    stride = tuple(int(s) for s in rng.integers(1, 4, 3))
    dilation = tuple(int(d) for d in rng.choice([1, 1, 2], 3))
    mode = str(rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"]))
    size = tuple(int(n) for n in rng.integers(6, 30, 3))
    padding = tuple(int(min(p, (k - 1) * d, n - 1)) for p, k, d, n in
                    zip(rng.integers(0, 4, 3), kernel, dilation, size))
    batch = int(rng.integers(1, 4))
    return ((batch, in_per * groups) + size, (out_per * groups, in_per) + kernel,
            dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode))


@section("correctness")
def correctness(cases, limit_s=60.0):
    from numba_conv3d.api import run_plan
    from numba_conv3d.cuda import ALGORITHMS

    rng = np.random.default_rng(int(time.time()))
    worst, failures, runs, by_algorithm = 0.0, [], 0, {}
    started = time.perf_counter()
    for index in range(cases):
        if time.perf_counter() - started > limit_s:
            break
        input_shape, weight_shape, kwargs = _random_case(rng)
        x = torch.randn(input_shape, device="cuda")
        w = torch.randn(weight_shape, device="cuda")
        b = torch.randn(weight_shape[0], device="cuda")
        try:
            plan = plan_for_arrays(x, w, b, backend="cuda", **kwargs)
        except ValueError:
            continue
        mode = kwargs["padding_mode"]
        xd = x.double()
        if mode != "zeros":
            pads = [p for pair in reversed(plan.pads) for p in pair]
            xd = torch.nn.functional.pad(xd, pads, mode=mode)
            ref_kwargs = dict(kwargs, padding=0)
        else:
            ref_kwargs = dict(kwargs)
        ref_kwargs.pop("padding_mode")
        ref = torch.nn.functional.conv3d(xd, w.double(), b.double(), **ref_kwargs)
        reduction = weight_shape[1] * math.prod(weight_shape[2:])
        bound = float(4 * np.finfo(np.float32).eps * math.sqrt(reduction + 1))
        for algorithm in (a.name for a in ALGORITHMS if a.applies(plan)):
            forced = plan_for_arrays(x, w, b, backend="cuda", algorithm=algorithm, **kwargs)
            out = torch.as_tensor(run_plan(forced, x, w, b), device="cuda")
            error = ((out.double() - ref).norm() / ref.norm()).item()
            finite = bool(torch.isfinite(out).all())
            runs += 1
            by_algorithm[algorithm] = by_algorithm.get(algorithm, 0) + 1
            worst = max(worst, error / bound)
            if not finite or error > bound or out.shape != ref.shape:
                failures.append(dict(case=index, algorithm=algorithm, shapes=[input_shape, weight_shape],
                                     kwargs=kwargs, error=error, bound=bound, finite=finite))
    # Operands of other layouts and places: a strided input view, a host weight and bias, a CuPy input.
    specials = {}
    x = torch.randn(2, 32, 12, 14, 20, device="cuda")[..., ::2]
    w, b = np.random.standard_normal((16, 32, 3, 3, 3)).astype(np.float32), np.ones(16, np.float32)
    ref = torch.nn.functional.conv3d(x.double(), torch.from_numpy(w).double().cuda(),
                                     torch.from_numpy(b).double().cuda(), padding=1)
    out = conv3d(x, w, b, padding=1)
    specials["strided input, host weight"] = ((out.double() - ref).norm() / ref.norm()).item()
    try:
        import cupy

        out = conv3d(cupy.asarray(x.contiguous()), w, b, padding=1)
        specials["cupy"] = float(cupy.linalg.norm(out.astype(cupy.float64) - cupy.asarray(ref))
                                 / cupy.linalg.norm(cupy.asarray(ref)))
    except ImportError:
        specials["cupy"] = None
    # Run to run: the same inputs give bitwise the same output.
    x = torch.randn(2, 48, 20, 22, 24, device="cuda")
    w = torch.randn(64, 48, 3, 3, 3, device="cuda")
    outs = [conv3d(x, w, padding=1) for _ in range(3)]
    bitwise = all(bool(torch.equal(outs[0], o)) for o in outs[1:])
    summary = dict(runs=runs, by_algorithm=by_algorithm, failures=failures[:20],
                   failure_count=len(failures), worst_error_over_bound=worst, bitwise_repeatable=bitwise,
                   specials=specials)
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=1))
    for failure in failures[:5]:
        print(failure)
    return summary


def _set_classes(classes, tap_major_padding=None):
    """Planner settings for the sweep: ``cuda_config.CUDA_GEMM_CLASSES`` rows, and the tap-by-tap
    threshold."""
    from numba_conv3d import plan_cache
    from numba_conv3d.cuda import gemm, geometry, operands

    cuda_config.CUDA_GEMM_CLASSES = tuple(classes)
    if tap_major_padding is not None:
        cuda_config.CUDA_GEMM_TAP_MAJOR_PADDING = tap_major_padding
    for cached in (gemm._prepared, geometry.geometry, geometry.taps, operands.device_geometry):
        cached.cache_clear()
    plan_cache.clear()


def _layer_operands(input_shape, weight_shape, bias=False, transposed=False):
    """Random device input, weight and (optional) bias of a layer; a transposed layer's bias has
    weight.shape[1] * groups channels, which its input and weight shapes give as below."""
    x = torch.randn(input_shape, device="cuda")
    w = torch.randn(weight_shape, device="cuda")
    channels = weight_shape[1] * (input_shape[1] // weight_shape[0]) if transposed else weight_shape[0]
    return x, w, torch.randn(channels, device="cuda") if bias else None


def _torch_conv(x, w, b, kwargs):
    kwargs = dict(kwargs)
    mode = kwargs.pop("padding_mode", "zeros")
    if mode != "zeros":
        raise ValueError("the benchmarks use zero padding")
    return torch.nn.functional.conv3d(x, w, b, **kwargs)


SWEEP_TILES = ((128, 32, 8, 4, 4), (128, 64, 8, 8, 4), (64, 128, 8, 4, 8), (64, 64, 8, 4, 4),
               (128, 16, 8, 4, 4), (128, 64, 16, 8, 4))
SWEEP_TARGETS = (0, 264, 528)
# Layer classes of the table the sweep writes: bounds on output channels per group and on positions.
CHANNEL_BOUNDS = (16, 32, 64, 128, None)
POSITION_BOUNDS = (4096, 65536, None)

# Layers the tile sweep times besides the CUDA suite: each class of the networks suite (wide and narrow,
# large and small volumes, strided, pointwise, 5x5x5, few input channels).
SWEEP_PICKS = {
    "r3d_18": ("layer1.0.conv1", "layer2.0.conv1", "layer3.0.conv1", "layer3.0.conv2",
               "layer3.0.downsample", "layer4.0.conv1", "layer4.0.conv2"),
    "mc3_18": ("stem", "layer2.0.conv2"),
    "r2plus1d_18": ("layer1.0.conv1.temporal", "layer4.1.conv1.spatial"),
    "x3d_s": ("res2.0.a", "res5.0.c", "res3.0.c"), "c3d": ("conv1a", "conv3b"),
    "unet3d": ("down0.conv1", "down0.conv2", "up0.conv1", "down3.conv2", "up1.conv2"),
    "vnet": ("input", "down1.conv0", "down3.conv0", "down4.conv0"),
    "residual_unet": ("down0.conv1", "down1.conv1", "bottom.conv2"),
}


def sweep_layers():
    """(name, input shape, weight shape, kwargs) of the layers the tile sweep times."""
    layers = [(case.name, case.input_shape, case.weight_shape, case.kwargs) for case in CUDA_SUITE]
    for network, names in SWEEP_PICKS.items():
        layers += [(f"{network}:{layer.name}", layer.input_shape, layer.weight_shape, layer.kwargs)
                   for layer in network_layers(network) if layer.name in names and not layer.transposed]
    return layers


def _class_of(channels, positions):
    """Indices of the (channel bound, position bound) class holding a layer."""
    first = lambda bounds, value: next(i for i, b in enumerate(bounds) if b is None or value <= b)  # noqa: E731
    return first(CHANNEL_BOUNDS, channels), first(POSITION_BOUNDS, positions)


def _table(rows, candidates):
    """``cuda_config.CUDA_GEMM_CLASSES`` rows from the sweep: per class, the candidate with the least
    geometric mean of its time over the best time, on the class's layers (a class without layers takes
    its nearest measured neighbour's choice, fewer positions first)."""
    scores = {}
    for row in rows:
        best = min(row["cells"].values())
        for candidate in candidates:
            scores.setdefault(row["class"], {}).setdefault(candidate, []).append(
                math.log(row["cells"][candidate] / best))
    chosen = {key: min(per, key=lambda c: sum(per[c]) / len(per[c])) for key, per in scores.items()}
    table = []
    for ci, channels in enumerate(CHANNEL_BOUNDS):
        for pi, positions in enumerate(POSITION_BOUNDS):
            near = sorted(chosen, key=lambda key: (abs(key[0] - ci) * 10 + abs(key[1] - pi), key))
            tile, target = chosen[near[0]]
            table.append((channels, positions, tile, target))
    merged = []
    for row in table:
        if merged and merged[-1][0] == row[0] and merged[-1][2:] == row[2:]:
            merged[-1] = row  # the wider position bound covers both
        else:
            merged.append(row)
    return merged


@section("sweep")
def sweep(limit_s=100.0):
    from numba_conv3d.cuda import gemm_plan

    default_classes = cuda_config.CUDA_GEMM_CLASSES
    started = time.perf_counter()
    candidates = [(tile, target) for tile in SWEEP_TILES for target in SWEEP_TARGETS]
    rows, seen = [], set()
    for name, input_shape, weight_shape, kwargs in sweep_layers():
        key = (input_shape, weight_shape, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
        if key in seen or time.perf_counter() - started > limit_s:
            continue
        seen.add(key)
        x, w, _ = _layer_operands(input_shape, weight_shape)
        plan = plan_for_arrays(x, w, backend="cuda", **kwargs)
        if not gemm_plan.applies(plan):
            continue
        cells = {}
        cudnn = gpu_ms(functools.partial(_torch_conv, x, w, None, kwargs), repeat=3, budget_ms=30)
        for tile, target in candidates:
            _set_classes([(None, None, tile, target)])
            cells[(tile, target)] = gpu_ms(functools.partial(conv3d, x, w, **kwargs), repeat=3, budget_ms=30)
        best = min(cells, key=cells.get)
        _set_classes([(None, None) + best], tap_major_padding=-1.0)
        weight_order = gpu_ms(functools.partial(conv3d, x, w, **kwargs), repeat=3, budget_ms=30)
        _set_classes([(None, None) + best], tap_major_padding=0.25)
        positions = gemm_plan.output_positions(plan)
        rows.append(dict(layer=name, flops=plan.flops, cudnn_ms=cudnn, cells=cells, best=best,
                         best_ms=cells[best], weight_order_ms=weight_order,
                         tap_major=gemm_plan.tap_major(plan, best[0][2]),
                         out_per_group=plan.out_per_group, positions=positions,
                         reduction=gemm_plan.reduction_length(plan),
                         **{"class": _class_of(plan.out_per_group, positions)}))
        print(f"{name[:34]:34} opg {plan.out_per_group:4} pos {positions:7} cudnn {cudnn:7.3f} best "
              f"{cells[best]:7.3f} {best} weight order {weight_order:7.3f}", flush=True)
    return sweep_result("CUDA_GEMM_CLASSES", rows, candidates, default_classes, _set_classes)


def sweep_result(name, rows, candidates, default, set_classes):
    """A tile sweep's result: the class table its ``rows`` choose (``default`` without rows), printed as
    the ``cuda_config`` assignment ``name`` and put in force by ``set_classes``."""
    table = _table(rows, candidates) if rows else default
    print(f"{name} = (")
    for row in table:
        print(f"    {row},")
    print(")", flush=True)
    set_classes(table)
    for row in rows:
        row["cells"] = {str(k): v for k, v in row["cells"].items()}
    return dict(rows=rows, table=[list(r) for r in table], default=[list(r) for r in default])


def _compare(name, layer_shapes, kwargs, flops, peak, bias=False, transposed=False):
    """Ours and cuDNN (TF32 off, and on) on one layer, alternating: medians and ratios."""
    x, w, b = _layer_operands(*layer_shapes, bias, transposed)
    if transposed:
        ours = functools.partial(conv_transpose3d, x, w, b, **kwargs)
        theirs = functools.partial(torch.nn.functional.conv_transpose3d, x, w, b, **kwargs)
        algorithm = "transposed"
    else:
        ours = functools.partial(conv3d, x, w, b, **kwargs)
        theirs = functools.partial(_torch_conv, x, w, b, kwargs)
        algorithm = plan_for_arrays(x, w, b, backend="cuda", **kwargs).algorithm

    def tf32_on():
        torch.backends.cudnn.allow_tf32 = True
        out = theirs()
        torch.backends.cudnn.allow_tf32 = False
        return out

    ours_ms, cudnn, cudnn_tf32 = alternating_ms([ours, theirs, tf32_on], rounds=2, repeat=3, budget_ms=30)
    return dict(layer=name, algorithm=algorithm, ours_ms=ours_ms, cudnn_ms=cudnn, cudnn_tf32_ms=cudnn_tf32,
                ratio=cudnn / ours_ms, gflops=flops / ours_ms / 1e6, peak_share=flops / ours_ms / 1e9 / peak)


@section("forward")
def forward(peak, limit_s=120.0):
    torch.backends.cudnn.benchmark = True
    started = time.perf_counter()
    rows = []
    for case in CUDA_SUITE:
        plan = case.plan()
        rows.append(_compare(case.name, (case.input_shape, case.weight_shape), case.kwargs, plan.flops, peak))
        r = rows[-1]
        print(f"{r['layer'][:30]:30} {r['algorithm']:20} ours {r['ours_ms']:8.3f} cudnn {r['cudnn_ms']:8.3f} "
              f"tf32 {r['cudnn_tf32_ms']:8.3f}  x{r['ratio']:5.2f} {r['peak_share']:5.1%}", flush=True)
    networks = {}
    for name in NETWORKS:
        if time.perf_counter() - started > limit_s:
            print(f"## {name}: skipped (time limit)")
            continue
        totals = dict(ours_ms=0.0, cudnn_ms=0.0, cudnn_tf32_ms=0.0)
        for layer in network_layers(name):
            r = _compare(f"{name}:{layer.name}", (layer.input_shape, layer.weight_shape), layer.kwargs,
                         2 * layer.macs, peak, layer.bias, layer.transposed)
            r["count"] = layer.count
            rows.append(r)
            for key in totals:
                totals[key] += layer.count * r[key]
            print(f"{r['layer'][:34]:34} {r['algorithm']:20} ours {r['ours_ms']:8.3f} cudnn "
                  f"{r['cudnn_ms']:8.3f} x{r['ratio']:5.2f} (x{layer.count})", flush=True)
        networks[name] = dict(totals, ratio=totals["cudnn_ms"] / totals["ours_ms"],
                              ratio_tf32=totals["cudnn_tf32_ms"] / totals["ours_ms"])
        print(f"## {name}: ours {totals['ours_ms']:.3f} ms cudnn {totals['cudnn_ms']:.3f} ms "
              f"x{networks[name]['ratio']:.2f} (tf32 x{networks[name]['ratio_tf32']:.2f})", flush=True)
    return dict(layers=rows, networks=networks)


def _training_steps(layer):
    """Our training step and torch's (autograd) for ``layer`` on fresh random device operands."""
    from numba_conv3d.network_bench import _ours

    x, w, b = _layer_operands(layer.input_shape, layer.weight_shape, layer.bias, layer.transposed)
    g = torch.randn(layer.output_shape, device="cuda")
    _, ours_step = _ours(layer, x, w, b, g)
    function = torch.nn.functional.conv_transpose3d if layer.transposed else torch.nn.functional.conv3d
    xt, wt = x.clone().requires_grad_(layer.input_grad), w.clone().requires_grad_()
    leaves = [xt, wt] if layer.input_grad else [wt]

    def torch_step():
        torch.autograd.grad(function(xt, wt, b, **layer.kwargs), leaves, g)

    return ours_step, torch_step


@section("training")
def training(limit_s=45.0):
    started = time.perf_counter()
    rows = {}
    for name in ("residual_unet", "unet3d", "c3d", "r3d_18", "vnet", "x3d_s", "mc3_18", "r2plus1d_18"):
        if time.perf_counter() - started > limit_s:
            print(f"## {name}: skipped (time limit)")
            continue
        ours_total = torch_total = 0.0
        layers = network_layers(name)
        done = 0
        for layer in layers:
            if time.perf_counter() - started > limit_s:
                break
            ours_ms, torch_ms = alternating_ms(_training_steps(layer), rounds=1, repeat=3, budget_ms=20)
            ours_total += layer.count * ours_ms
            torch_total += layer.count * torch_ms
            done += 1
        rows[name] = dict(ours_ms=ours_total, cudnn_ms=torch_total, ratio=torch_total / ours_total,
                          layers_timed=done, layers=len(layers))
        print(f"## {name}: training step ours {ours_total:.2f} ms cudnn {torch_total:.2f} ms "
              f"x{torch_total / ours_total:.2f} ({done} of {len(layers)} layers)", flush=True)
    return rows


def _gradient_layers():
    """The sweep's layers (``sweep_layers``) whose weight gradient the implicit GEMM serves, as (name,
    input shape, weight shape, torch keywords)."""
    return [layer for layer in sweep_layers()
            if "padding_mode" not in layer[3] and layer[2][0] // layer[3].get("groups", 1)
            >= cuda_config.CUDA_GEMM_MIN_OUT_CHANNELS]


def _gradient_pieces(input_shape, weight_shape, kwargs):
    """{piece: (ours, torch's)} callables of each gradient of a layer, on fresh random operands."""
    from numba_conv3d import conv3d_bias, conv3d_input, conv3d_weight

    x, w, _ = _layer_operands(input_shape, weight_shape)
    g = torch.randn(_torch_conv(x, w, None, kwargs).shape, device="cuda")
    return x, w, g, {
        "weight": (lambda: conv3d_weight(x, w.shape, g, **kwargs),
                   lambda: torch.nn.grad.conv3d_weight(x, w.shape, g, **kwargs)),
        "input": (lambda: conv3d_input(x.shape, w, g, **kwargs),
                  lambda: torch.nn.grad.conv3d_input(x.shape, w, g, **kwargs)),
        "bias": (lambda: conv3d_bias(g), lambda: g.sum((0, 2, 3, 4)))}


@section("gradients")
def gradients(limit_s=60.0):
    """Each gradient of the sweep's layers, ours against cuDNN's (TF32 off), with the weight gradient's
    error against torch's float64 one (relative to its largest magnitude)."""
    started = time.perf_counter()
    rows = []
    for name, input_shape, weight_shape, kwargs in _gradient_layers():
        if time.perf_counter() - started > limit_s:
            print(f"{name}: skipped (time limit)", flush=True)
            continue
        x, w, g, pieces = _gradient_pieces(input_shape, weight_shape, kwargs)
        exact = torch.nn.grad.conv3d_weight(x.double(), w.shape, g.double(), **kwargs)
        error = ((pieces["weight"][0]().double() - exact).abs().max() / exact.abs().max()).item()
        row = dict(layer=name, weight_error=error)
        for piece, fns in pieces.items():
            row[f"{piece}_ours_ms"], row[f"{piece}_cudnn_ms"] = alternating_ms(fns, rounds=2, repeat=3,
                                                                                budget_ms=30)
        rows.append(row)
        print(f"{name[:34]:34} err {error:.1e} " + " ".join(
            f"{piece} {row[f'{piece}_ours_ms']:.3f}/{row[f'{piece}_cudnn_ms']:.3f}" for piece in pieces),
            flush=True)
    return rows


WEIGHT_SWEEP_TILES = ((64, 128, 16, 4, 8), (128, 64, 16, 8, 4), (64, 64, 16, 4, 4), (64, 128, 8, 4, 8))
WEIGHT_SWEEP_BLOCKS = (264, 528, 1056)


@section("weight sweep")
def weight_sweep(limit_s=60.0):
    """The weight gradient's time per tile and block target on the gradient layers (ms), and the
    candidate with the least geometric mean of time over each layer's best."""
    from numba_conv3d.cuda import weight_gemm, weight_gemm_plan

    started = time.perf_counter()
    candidates = [(tile, blocks) for tile in WEIGHT_SWEEP_TILES for blocks in WEIGHT_SWEEP_BLOCKS]
    rows = []
    for name, input_shape, weight_shape, kwargs in _gradient_layers():
        if time.perf_counter() - started > limit_s:
            break
        x, w, g, pieces = _gradient_pieces(input_shape, weight_shape, kwargs)
        ours = pieces["weight"][0]
        cells = {}
        for tile, blocks in candidates:
            cuda_config.CUDA_WEIGHT_GEMM_TILE, cuda_config.CUDA_WEIGHT_GEMM_BLOCKS = tile, blocks
            for cached in (weight_gemm._prepared, weight_gemm_plan.weight_geometry,
                           weight_gemm_plan.column_taps):
                cached.cache_clear()
            cells[(tile, blocks)] = gpu_ms(ours, repeat=3, budget_ms=15)
        rows.append(dict(layer=name, cells={str(key): ms for key, ms in cells.items()}))
        best = min(cells.values())
        print(f"{name[:34]:34} " + " ".join(f"{ms / best:.2f}" for ms in cells.values()), flush=True)
    scores = {key: sum(math.log(row["cells"][str(key)] / min(row["cells"].values())) for row in rows)
              for key in candidates}
    chosen = min(scores, key=scores.get)
    cuda_config.CUDA_WEIGHT_GEMM_TILE, cuda_config.CUDA_WEIGHT_GEMM_BLOCKS = chosen
    for cached in (weight_gemm._prepared, weight_gemm_plan.weight_geometry, weight_gemm_plan.column_taps):
        cached.cache_clear()
    print(f"chosen: CUDA_WEIGHT_GEMM_TILE = {chosen[0]}, CUDA_WEIGHT_GEMM_BLOCKS = {chosen[1]}", flush=True)
    return dict(rows=rows, candidates=[str(key) for key in candidates], chosen=chosen)


@section("stride phases")
def stride_phases(limit_s=60.0):
    """Each transposed layer of the networks suite by stride phases and by the upsampled correlation
    (``cuda_config.CUDA_STRIDE_PHASES_MIN_MACS`` 0 and infinite), beside cuDNN, with the multiply-adds: the
    crossover to commit is the least multiply-adds from which the phases win."""
    started = time.perf_counter()
    rows = []
    seen = set()
    chosen = cuda_config.CUDA_STRIDE_PHASES_MIN_MACS
    for network in ("unet3d", "vnet", "residual_unet"):
        for layer in network_layers(network):
            if not layer.transposed or layer.key in seen or time.perf_counter() - started > limit_s:
                continue
            seen.add(layer.key)
            x, w, b = _layer_operands(layer.input_shape, layer.weight_shape, layer.bias, True)
            # A transposed layer's multiply-adds: each input element times a weight row of its group.
            macs = math.prod(layer.input_shape) * math.prod(layer.weight_shape[1:])
            row = dict(layer=f"{network}:{layer.name}", macs=macs)
            ours = functools.partial(conv_transpose3d, x, w, b, **layer.kwargs)
            for name, threshold in (("phases_ms", 0), ("upsampled_ms", math.inf)):
                cuda_config.CUDA_STRIDE_PHASES_MIN_MACS = threshold
                row[name] = gpu_ms(ours, repeat=3, budget_ms=20)
            row["cudnn_ms"] = gpu_ms(functools.partial(torch.nn.functional.conv_transpose3d, x, w, b,
                                                       **layer.kwargs), repeat=3, budget_ms=20)
            rows.append(row)
            print(f"{row['layer'][:34]:34} {row['macs'] / 1e9:6.2f} G MACs phases {row['phases_ms']:.3f} "
                  f"upsampled {row['upsampled_ms']:.3f} cudnn {row['cudnn_ms']:.3f} ms", flush=True)
    winning = [row["macs"] for row in rows if row["phases_ms"] < row["upsampled_ms"]]
    losing = [row["macs"] for row in rows if row["phases_ms"] >= row["upsampled_ms"]]
    print(f"phases win from {min(winning, default=math.inf):.3g} MACs; lose up to "
          f"{max(losing, default=0):.3g}", flush=True)
    cuda_config.CUDA_STRIDE_PHASES_MIN_MACS = chosen
    return rows


def _host_us(fn, calls=300):
    """Microseconds of host time per call of ``fn`` (the device synchronized before and after)."""
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e6


@section("overhead")
def overhead():
    from numba import cuda

    from numba_conv3d.cuda import arrays, gemm

    x, w, _ = _layer_operands((1, 4, 6, 6, 6), (8, 4, 3, 3, 3))
    plan = plan_for_arrays(x, w, backend="cuda", padding=1)
    rows = {"algorithm": plan.algorithm,
            "conv3d (torch)": _host_us(lambda: conv3d(x, w, padding=1)),
            "conv3d (numba)": _host_us(functools.partial(conv3d, cuda.as_cuda_array(x), cuda.as_cuda_array(w),
                                                         padding=1)),
            "plan (cached)": _host_us(lambda: plan_for_arrays(x, w, backend="cuda", padding=1)),
            "flat view": _host_us(lambda: arrays.flat_view(cuda, "conv3d", "input", x)),
            "output": _host_us(lambda: arrays.empty_like_input(cuda, x, plan.output_shape, plan.dtype)),
            "execute": _host_us(lambda: gemm.execute(plan, x, w, None)),
            "torch conv3d": _host_us(lambda: torch.nn.functional.conv3d(x, w, padding=1))}
    try:
        import cupy

        xc, wc = cupy.asarray(x), cupy.asarray(w)
        rows["conv3d (cupy)"] = _host_us(lambda: conv3d(xc, wc, padding=1))
    except ImportError:
        pass
    kernel, launch, taps = gemm._prepared(plan)
    rows["direct launch"] = bool(kernel.compiled)
    _, out, xf, wf, bf = gemm.flat_operands(plan, x, w, None)
    shape = gemm.device_geometry(plan)
    rows["launch"] = _host_us(lambda: kernel(launch.grid, (launch.tile.threads, 1, 1), xf, wf, bf, out, taps,
                                             shape))
    rows["dispatcher launch"] = _host_us(
        lambda: kernel.dispatcher[launch.grid, (launch.tile.threads, 1, 1)](xf, wf, bf, out, taps, shape))
    print(json.dumps(rows, indent=1))
    return rows


def _host_profile(fn, calls=50, top=12):
    """The host functions that ``calls`` calls of ``fn`` spend most of their own time in (cProfile), as
    (function, calls, own ms per call of ``fn``, cumulative ms per call of ``fn``)."""
    import cProfile
    import pstats

    fn()
    torch.cuda.synchronize()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    profiler.disable()
    rows = []
    for (path, line, name), (_, count, own, total, _) in pstats.Stats(profiler).stats.items():
        rows.append((f"{path.split('/')[-1]}:{line} {name}", count, own / calls * 1e3, total / calls * 1e3))
    rows.sort(key=lambda row: -row[2])
    return rows[:top]


@section("host profile")
def host_profile():
    """Where the host time of a tiny transposed layer and of each tiny gradient goes (they took 1-2 ms
    per call on the H200 against cuDNN's 0.02-0.3 ms), function by function."""
    from numba_conv3d import conv3d_bias, conv3d_input, conv3d_weight

    x, w, _ = _layer_operands((1, 384, 4, 4, 4), (384, 64, 3, 3, 3))
    xf, wf, _ = _layer_operands((1, 64, 8, 8, 8), (384, 64, 3, 3, 3))
    g = torch.randn((1, 384, 4, 4, 4), device="cuda")
    kwargs = dict(stride=2, padding=1)
    calls = {"conv_transpose3d": lambda: conv_transpose3d(x, w, stride=2, padding=1, output_padding=1),
             "conv3d_input": lambda: conv3d_input(xf.shape, wf, g, **kwargs),
             "conv3d_weight": lambda: conv3d_weight(xf, wf.shape, g, **kwargs),
             "conv3d_bias": lambda: conv3d_bias(g)}
    found = {}
    for name, fn in calls.items():
        found[name] = dict(host_us=_host_us(fn, calls=100), functions=_host_profile(fn))
        print(f"## {name}: {found[name]['host_us']:.0f} us per call", flush=True)
        for function, count, own, total in found[name]["functions"]:
            print(f"   {function[:70]:70} x{count:<6} own {own:7.3f} ms cum {total:7.3f} ms", flush=True)
    return found


def start_session(name, *flags):
    """Parse a session script's arguments (OUT, --quick, --skip SECTION ..., and the boolean ``flags``),
    record results to OUT/``name``.json, turn torch's TF32 off and record the machine: the arguments."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    for flag in ("--quick",) + flags:
        parser.add_argument(flag, action="store_true")
    parser.add_argument("--skip", nargs="*", default=())
    args = parser.parse_args()
    OUT_FILE.append(f"{args.out}/{name}.json")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    machine()
    return args


def main():
    args = start_session("cuda_session", "--training")
    peak = RESULTS["machine"].get("fp32_gemm_tflops", 51.0)
    if "correctness" not in args.skip:
        correctness(80 if args.quick else 200)
    if "sweep" not in args.skip:
        sweep()
    if "overhead" not in args.skip:
        overhead()
        host_profile()
    if "forward" not in args.skip:
        forward(peak)
    if "gradients" not in args.skip:
        weight_sweep()
        gradients()
        stride_phases()
    if args.training:
        training()


if __name__ == "__main__":
    sys.exit(main())
