"""The prepared GPU session of the tensor-core kernels (float16, bfloat16, TF32), in one call of a few
minutes; ``cuda_session.py`` holds the float32 and float64 one, whose helpers this reuses.

1. the machine, and the tensor cores' ceilings: float16, bfloat16 and TF32 matrix products (cuBLAS);
2. correctness: random forward cases in each precision on the tensor-core kernel, against torch in
   float64 on the GPU, each output within its bound (float32 sums of the rounded operands, one rounding
   to the output's dtype; TF32: plus each product's operand rounding, 2**-10 relative), NaN where torch
   gives NaN; and run to run bitwise;
3. a sweep of tensor-core tiles and reduction-split targets over the layer classes (bfloat16), which
   prints the ``cuda_config.CUDA_TENSOR_CORE_CLASSES`` table it measured (the later sections run with it:
   commit it to ``numba_conv3d/cuda_config.py``);
4. ours against cuDNN in the same precision (torch tensors; TF32: ``allow_tf32=True`` against
   ``torch.backends.cudnn.allow_tf32 = True``): the CUDA suite and every distinct forward layer of the
   networks suite, per network weighted by layer counts, with the share of the precision's ceiling.

Usage (on the GPU machine): python benchmarks/cuda_tensor_core_session.py OUT_DIR [--quick]
Writes OUT_DIR/cuda_tensor_core_session.json and prints the tables; each section survives a failure of
another, and the long ones stop at a time limit.
"""
import functools
import json
import math
import sys
import time

import numpy as np
import torch
from cuda_session import (RESULTS, _class_of, _random_case, _torch_conv, alternating_ms, gpu_ms,
                          section, start_session, sweep_layers, sweep_result)

from numba_conv3d import conv3d, cuda_config, plan_cache
from numba_conv3d.bench_cases import CUDA_SUITE
from numba_conv3d.networks import NETWORKS, network_layers
from numba_conv3d.planner import plan_for_arrays

# The precisions: (our kind, torch dtype of the operands, whether cuDNN runs TF32).
PRECISIONS = {"float16": (torch.float16, False), "bfloat16": (torch.bfloat16, False),
              "tfloat32": (torch.float32, True)}
SWEEP_TILES = ((4, 1, 2, 2, 16), (4, 2, 2, 2, 16), (4, 2, 2, 4, 16), (2, 4, 2, 2, 16), (2, 2, 2, 4, 16),
               (4, 2, 2, 2, 32))
SWEEP_TARGETS = (0, 264, 528)


def _ceiling_tflops(dtype, tf32, n=8192):
    """Matrix product rate of cuBLAS on random n x n operands of ``dtype`` (TF32 where ``tf32``)."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a, b = (torch.randn(n, n, device="cuda", dtype=dtype) for _ in range(2))
    rate = 2 * n ** 3 / gpu_ms(functools.partial(torch.matmul, a, b), repeat=5, inner=5) / 1e9
    torch.backends.cuda.matmul.allow_tf32 = False
    return rate


@section("ceilings")
def ceilings():
    found = {kind: _ceiling_tflops(dtype, tf32) for kind, (dtype, tf32) in PRECISIONS.items()}
    print(json.dumps(found, indent=1))
    return found


def _bits(tensor):
    """``tensor``'s bits as integers (NaN equals NaN of the same bits)."""
    return tensor.view(torch.int16 if tensor.element_size() == 2 else torch.int32)


def _ours(kind, x, w, b, kwargs):
    return functools.partial(conv3d, x, w, b, allow_tf32=kind == "tfloat32", **kwargs)


def _theirs(kind, x, w, b, kwargs):
    def run():
        torch.backends.cudnn.allow_tf32 = kind == "tfloat32"
        out = _torch_conv(x, w, b, kwargs)
        torch.backends.cudnn.allow_tf32 = False
        return out

    return run


def _reference(x, w, b, plan, kwargs):
    """torch's float64 result of the (rounded) operands and the float64 magnitude sum |x| |w| + |b|."""
    mode = kwargs.get("padding_mode", "zeros")
    conv_kwargs = {k: v for k, v in kwargs.items() if k != "padding_mode"}
    x = x.double()
    if mode != "zeros":
        x = torch.nn.functional.pad(x, [p for pair in reversed(plan.pads) for p in pair], mode=mode)
        conv_kwargs["padding"] = 0
    ref = torch.nn.functional.conv3d(x, w.double(), b.double(), **conv_kwargs)
    magnitude = torch.nn.functional.conv3d(x.abs(), w.double().abs(), b.double().abs(), **conv_kwargs)
    return ref, magnitude


def _bound(kind, dtype, reduction, ref, magnitude):
    """Per-output bound: float32 sums of ``reduction`` products, TF32's operand rounding, one rounding
    to ``dtype`` (half an ulp, or half the smallest subnormal)."""
    summed = (reduction + 2) * float(np.finfo(np.float32).eps) * magnitude
    if kind == "tfloat32":
        return summed + 2.0 ** -10 * magnitude + float(np.finfo(np.float32).tiny)
    info = torch.finfo(dtype)
    return summed + info.eps / 2 * (ref.abs() + summed) + info.smallest_normal * info.eps / 2


@section("correctness")
def correctness(cases, limit_s=60.0):
    rng = np.random.default_rng(int(time.time()))
    summary = {}
    for kind, (dtype, _) in PRECISIONS.items():
        worst, failures, runs, started = 0.0, [], 0, time.perf_counter()
        for index in range(cases):
            if time.perf_counter() - started > limit_s / len(PRECISIONS):
                break
            input_shape, weight_shape, kwargs = _random_case(rng)
            x, w, b = (torch.randn(shape, device="cuda").to(dtype) for shape in
                       (input_shape, weight_shape, weight_shape[:1]))
            try:
                plan = plan_for_arrays(x, w, b, backend="cuda", allow_tf32=kind == "tfloat32", **kwargs)
            except ValueError:
                continue
            if plan.algorithm != "cuda-tensor-core":
                continue
            try:
                out = conv3d(x, w, b, allow_tf32=kind == "tfloat32", **kwargs)
                ref, magnitude = _reference(x, w, b, plan, kwargs)
                bound = _bound(kind, dtype, weight_shape[1] * math.prod(weight_shape[2:]), ref, magnitude)
                ratio = ((out.double() - ref).abs() / bound).max().item()
                wrong = out.dtype != dtype or out.shape != ref.shape
            except Exception as err:  # noqa: BLE001 - a failing case is a finding, not the end
                ratio, wrong = float("inf"), repr(err)
            runs += 1
            worst = max(worst, ratio)
            if not ratio <= 1 or wrong:
                failures.append(dict(case=index, shapes=[input_shape, weight_shape], kwargs=kwargs,
                                     error_over_bound=ratio, error=wrong))
        x = torch.randn(2, 48, 20, 22, 24, device="cuda").to(dtype)
        w = torch.randn(64, 48, 3, 3, 3, device="cuda").to(dtype)
        x[0, 3, 5, 5, 5] = float("nan")
        outs = [conv3d(x, w, padding=1, allow_tf32=kind == "tfloat32") for _ in range(3)]
        ref = torch.nn.functional.conv3d(x.double(), w.double(), padding=1)
        summary[kind] = dict(runs=runs, failure_count=len(failures), failures=failures[:10],
                             worst_error_over_bound=worst,
                             bitwise_repeatable=all(torch.equal(_bits(outs[0]), _bits(o)) for o in outs[1:]),
                             nan_where_torch=bool(torch.equal(outs[0].isnan(), ref.isnan())))
        print(kind, json.dumps({k: v for k, v in summary[kind].items() if k != "failures"}), flush=True)
    return summary


def _set_classes(classes):
    from numba_conv3d.cuda import tensor_core

    cuda_config.CUDA_TENSOR_CORE_CLASSES = tuple(classes)
    tensor_core._prepared.cache_clear()
    plan_cache.clear()


@section("tensor-core sweep")
def sweep(limit_s=120.0):
    from numba_conv3d.cuda import gemm_plan

    default = cuda_config.CUDA_TENSOR_CORE_CLASSES
    candidates = [(tile, target) for tile in SWEEP_TILES for target in SWEEP_TARGETS]
    rows, seen, started = [], set(), time.perf_counter()
    for name, input_shape, weight_shape, kwargs in sweep_layers():
        key = (input_shape, weight_shape, str(sorted(kwargs.items())))
        if key in seen or time.perf_counter() - started > limit_s:
            continue
        seen.add(key)
        x, w = (torch.randn(shape, device="cuda", dtype=torch.bfloat16)
                for shape in (input_shape, weight_shape))
        plan = plan_for_arrays(x, w, backend="cuda", **kwargs)
        if plan.algorithm != "cuda-tensor-core":
            continue
        cudnn = gpu_ms(_theirs("bfloat16", x, w, None, kwargs), repeat=3, budget_ms=30)
        cells = {}
        for tile, target in candidates:
            _set_classes([(None, None, tile, target)])
            cells[(tile, target)] = gpu_ms(_ours("bfloat16", x, w, None, kwargs), repeat=3, budget_ms=30)
        best = min(cells, key=cells.get)
        positions = gemm_plan.output_positions(plan)
        rows.append(dict(layer=name, flops=plan.flops, cudnn_ms=cudnn, cells=cells, best=best,
                         best_ms=cells[best], **{"class": _class_of(plan.out_per_group, positions)}))
        print(f"{name[:34]:34} opg {plan.out_per_group:4} pos {positions:7} cudnn {cudnn:7.3f} best "
              f"{cells[best]:7.3f} {best}", flush=True)
    return sweep_result("CUDA_TENSOR_CORE_CLASSES", rows, candidates, default, _set_classes)


def _compare(kind, name, input_shape, weight_shape, kwargs, flops, ceiling, bias=False):
    """Ours and cuDNN in precision ``kind`` on one layer, alternating: medians, ratio, share of the
    ceiling."""
    dtype = PRECISIONS[kind][0]
    x, w = (torch.randn(shape, device="cuda", dtype=dtype) for shape in (input_shape, weight_shape))
    b = torch.randn(weight_shape[0], device="cuda", dtype=dtype) if bias else None
    algorithm = plan_for_arrays(x, w, b, backend="cuda", allow_tf32=kind == "tfloat32", **kwargs).algorithm
    ours, theirs = alternating_ms([_ours(kind, x, w, b, kwargs), _theirs(kind, x, w, b, kwargs)], rounds=2,
                                  repeat=3, budget_ms=30)
    return dict(layer=name, kind=kind, algorithm=algorithm, ours_ms=ours, cudnn_ms=theirs,
                ratio=theirs / ours, tflops=flops / ours / 1e9, ceiling_share=flops / ours / 1e9 / ceiling)


@section("tensor-core forward")
def forward(ceiling, limit_s=150.0):
    torch.backends.cudnn.benchmark = True
    started, rows, networks = time.perf_counter(), [], {}
    for kind in PRECISIONS:
        for case in CUDA_SUITE:
            rows.append(_compare(kind, case.name, case.input_shape, case.weight_shape, case.kwargs,
                                 case.plan().flops, ceiling[kind]))
            r = rows[-1]
            print(f"{kind:8} {r['layer'][:30]:30} {r['algorithm']:18} ours {r['ours_ms']:8.3f} cudnn "
                  f"{r['cudnn_ms']:8.3f} x{r['ratio']:5.2f} {r['ceiling_share']:5.1%}", flush=True)
        for name in NETWORKS:
            if time.perf_counter() - started > limit_s:
                print(f"## {kind} {name}: skipped (time limit)")
                continue
            ours = theirs = 0.0
            for layer in network_layers(name):
                if layer.transposed:
                    continue
                r = _compare(kind, f"{name}:{layer.name}", layer.input_shape, layer.weight_shape,
                             layer.kwargs, 2 * layer.macs, ceiling[kind], layer.bias)
                rows.append(dict(r, count=layer.count))
                ours, theirs = ours + layer.count * r["ours_ms"], theirs + layer.count * r["cudnn_ms"]
            networks[f"{kind}:{name}"] = dict(ours_ms=ours, cudnn_ms=theirs, ratio=theirs / max(ours, 1e-9))
            print(f"## {kind} {name} (forward convolutions): ours {ours:.3f} ms cudnn {theirs:.3f} ms "
                  f"x{theirs / max(ours, 1e-9):.2f}", flush=True)
    return dict(layers=rows, networks=networks)


def main():
    args = start_session("cuda_tensor_core_session")
    ceilings()
    if "correctness" not in args.skip:
        correctness(40 if args.quick else 150)
    if "sweep" not in args.skip:
        sweep()
    if "forward" not in args.skip:
        measured = RESULTS.get("ceilings", {})
        forward({kind: measured.get(kind, 990.0) for kind in PRECISIONS})  # 990: H100/H200 dense fp16


if __name__ == "__main__":
    sys.exit(main())
