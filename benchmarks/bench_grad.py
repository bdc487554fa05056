"""Forward + backward (input, weight and bias gradients): ours vs torch on the CPU, side by side.

Each step is one forward and every gradient: ours ``conv3d`` then ``grad.conv3d_backward``; torch
``loss = (module(x) * g).sum(); loss.backward()``. The two alternate in one process; the table shows
medians, ours' split into its parts, and torch / ours (above 1: ours is faster). Compile time (our first
call) is reported apart.

Usage: python benchmarks/bench_grad.py [--repeat N] [--threads N] [--case NAME ...] [--json FILE]
"""
import argparse
import json
import statistics
import time

import numba
import numpy as np

from numba_conv3d import conv3d
from numba_conv3d.environment import describe
from numba_conv3d.grad import conv3d_backward, conv3d_input, conv3d_weight
from numba_conv3d.steady_memory import keep_freed_memory_mapped

# name -> (input shape, weight shape, conv3d keyword arguments); float32, with bias
CASES = {
    "dense-k3": ((1, 32, 32, 32, 32), (32, 32, 3, 3, 3), dict(padding=1)),
    "grouped-g4": ((1, 32, 32, 32, 32), (32, 8, 3, 3, 3), dict(padding=1, groups=4)),
    "depthwise-64": ((1, 64, 32, 32, 32), (64, 1, 3, 3, 3), dict(padding=1, groups=64)),
    "dilated-d2": ((1, 32, 32, 32, 32), (32, 32, 3, 3, 3), dict(padding=2, dilation=2)),
    "strided-s2": ((1, 32, 32, 32, 32), (32, 32, 3, 3, 3), dict(padding=1, stride=2)),
}


def _seconds(step):
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _ours(x, w, b, g, kwargs):
    def step():
        conv3d(x, w, b, **kwargs)
        conv3d_backward(x, w, g, **kwargs)

    parts = {"input grad": lambda: conv3d_input(x.shape, w, g, **kwargs),
             "weight grad": lambda: conv3d_weight(x, w.shape, g, **kwargs)}
    return step, parts


def _torch(x, w, b, g, kwargs):
    import torch

    module = torch.nn.Conv3d(x.shape[1], w.shape[0], w.shape[2:], **kwargs)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(w))
        module.bias.copy_(torch.from_numpy(b))
    tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

    def step():
        tx.grad = module.weight.grad = module.bias.grad = None
        (module(tx) * tg).sum().backward()

    return step


def run_case(name, repeat):
    """Time one case; returns a JSON-ready record (seconds)."""
    input_shape, weight_shape, kwargs = CASES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(input_shape, np.float32)
    w = rng.standard_normal(weight_shape, np.float32)
    b = rng.standard_normal(weight_shape[0], np.float32)
    g = rng.standard_normal(conv3d(x, w, b, **kwargs).shape, np.float32)
    ours, parts = _ours(x, w, b, g, kwargs)
    compile_s = _seconds(ours)
    try:
        theirs = _torch(x, w, b, g, kwargs)
        theirs()
    except ImportError:
        theirs = None
    ours_s, torch_s, part_s = [], [], {part: [] for part in parts}
    for _ in range(repeat):
        ours_s.append(_seconds(ours))
        if theirs is not None:
            torch_s.append(_seconds(theirs))
        for part, step in parts.items():
            part_s[part].append(_seconds(step))
    record = {"case": name, "input": input_shape, "weight": weight_shape, "kwargs": kwargs,
              "first_call_s": compile_s, "ours_s": statistics.median(ours_s),
              "torch_s": statistics.median(torch_s) if torch_s else None}
    record.update({f"{part}_s": statistics.median(times) for part, times in part_s.items()})
    record["torch_over_ours"] = record["torch_s"] / record["ours_s"] if torch_s else None
    return record


def format_table(records):
    """The results as a Markdown table."""
    lines = ["| case | ours fwd+bwd (ms) | input grad | weight grad | torch fwd+bwd (ms) | torch / ours | "
             "first call (s) |", "|---|---|---|---|---|---|---|"]
    for r in records:
        torch_ms = "-" if r["torch_s"] is None else f"{1e3 * r['torch_s']:.1f}"
        ratio = "-" if r["torch_over_ours"] is None else f"{r['torch_over_ours']:.2f}"
        lines.append(f"| {r['case']} | {1e3 * r['ours_s']:.1f} | {1e3 * r['input grad_s']:.1f} | "
                     f"{1e3 * r['weight grad_s']:.1f} | {torch_ms} | {ratio} | {r['first_call_s']:.1f} |")
    return "\n".join(lines)


def main():
    """Parse the command line, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="repeatable; default all")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", help="also write the results and the environment to this file")
    args = parser.parse_args()
    if args.threads:
        numba.set_num_threads(args.threads)
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    keep_freed_memory_mapped()
    records = [run_case(name, args.repeat) for name in (args.case or CASES)]
    print(format_table(records))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"environment": describe(), "results": records}, out, indent=2)


if __name__ == "__main__":
    main()
