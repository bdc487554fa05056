"""Each CPU algorithm forced on the forward layers of the networks suite that it serves, beside the
planner's choice and torch: the data the planner's crossovers (``crossovers.py``) are fitted on.

Usage: python benchmarks/sweep_algorithms.py [--algorithm NAME ...] [--network NAME ...] [--batch N ...]
[--repeat N] [--json FILE]

Per layer, our sides run ``repeat`` times in turns (which goes first rotating), after two untimed
runs, then torch as many times on its own: its threads spin for a while after each call, and would
slow whichever of ours ran next. The table gives medians in ms, and each side's speed over the
planner's choice.
"""
import argparse
import json
import time

import numpy as np

from numba_conv3d import conv3d, plan_conv3d
from numba_conv3d.cpu import ALGORITHMS
from numba_conv3d.environment import describe
from numba_conv3d.networks import NETWORKS, network_layers
from numba_conv3d.steady_memory import keep_freed_memory_mapped


def _sides(layer, algorithms):
    """The callables to time for ``layer``: ours (the planner's choice and each algorithm that serves
    it), and torch's where installed."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(layer.input_shape, dtype=np.float32)
    w = rng.standard_normal(layer.weight_shape, dtype=np.float32)
    sides = {"auto": lambda: conv3d(x, w, None, **layer.kwargs)}
    for name in algorithms:
        try:
            plan_conv3d(x.shape, w.shape, algorithm=name, **layer.kwargs)
        except ValueError:
            continue
        sides[name] = lambda name=name: conv3d(x, w, None, algorithm=name, **layer.kwargs)
    try:
        import torch
    except ImportError:
        return sides, {}
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    return sides, {"torch": lambda: torch.nn.functional.conv3d(xt, wt, None, **layer.kwargs)}


def _medians(sides, repeat):
    """Median milliseconds per side, sides taking turns."""
    times = {name: [] for name in sides}
    names = list(sides)
    for round_ in range(repeat + 2 if names else 0):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            start = time.perf_counter()
            sides[name]()
            if round_ >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) * 1e3 for name, t in times.items()}


def main():
    """Parse the command line, run, print the table."""
    names = [a.name for a in ALGORITHMS if a.name not in ("direct", "bfloat16-dot")]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", action="append", choices=names)
    parser.add_argument("--network", action="append", choices=sorted(NETWORKS))
    parser.add_argument("--batch", action="append", type=int)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    keep_freed_memory_mapped()
    rows = []
    for network in args.network or sorted(NETWORKS):
        for batch in args.batch or (1,):
            for layer in network_layers(network, batch):
                if layer.transposed:
                    continue
                ours, peers = _sides(layer, args.algorithm or names)
                if len(ours) == 1:
                    continue
                chosen = plan_conv3d(layer.input_shape, layer.weight_shape, **layer.kwargs).algorithm
                medians = {**_medians(ours, args.repeat), **_medians(peers, args.repeat)}
                rows.append({"network": network, "batch": batch, "layer": layer.name, "chosen": chosen,
                             "input": layer.input_shape, "weight": layer.weight_shape,
                             "kwargs": layer.kwargs, "ms": medians})
                print(f"{network:14s} {batch} {layer.name:28s} {chosen:18s} "
                      + " ".join(f"{name} {ms:.2f} ({medians['auto'] / ms:.2f})"
                                 for name, ms in medians.items()), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"environment": describe(), "layers": rows}, out, indent=2)


if __name__ == "__main__":
    main()
