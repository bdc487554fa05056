"""conv3d of a Dask array on a LocalCluster vs the in-memory call: throughput and memory per chunk size.

Usage: python benchmarks/bench_dask.py [--size 256] [--kernel 7] [--padding-mode reflect]
       [--chunks 64,128,256] [--workers 2] [--repeat 3] [--json]

A one-channel float32 volume of ``size``^3, a ``kernel``^3 kernel with 'same' padding, on a LocalCluster
of ``workers`` processes x 1 thread (Numba 1 thread each, so both sides use the same cores). The volume
is drawn on the workers and gathered once; the in-memory call runs in this process (Numba's default
thread count) while the workers idle. Then, per chunk size, the volume is rechunked and persisted on the
workers, and ``conv3d(x).persist()`` is timed until every output chunk is in the workers' memory (the
result is not gathered). Times are medians of ``repeat`` runs after one warm-up run;
throughput is output voxels per second. Peak memory per worker is the largest peak RSS (Linux
``VmHWM``, reset before each chunk size through ``/proc/self/clear_refs``) over the workers; it includes
the worker's own footprint and its share of the persisted input. Each chunk size's result is checked
bitwise against the in-memory one. First, the time to build the graph of a lazy 16 GiB volume.
"""
import argparse
import json
import resource
import statistics
import time

import numpy as np

from numba_conv3d import conv3d

MIB = 2 ** 20


def median_seconds(call, repeat):
    """Median wall time of ``repeat`` calls of ``call`` after one warm-up call."""
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reset_peak_rss():
    """Reset this process's peak-RSS mark (Linux); run on each worker."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def peak_rss():
    """This process's peak RSS in bytes since the last reset (Linux ``VmHWM``); run on each worker."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def in_memory_record(x, w, kwargs, repeat):
    """Time the in-memory call; its record and result."""
    seconds = median_seconds(lambda: conv3d(x, w, **kwargs), repeat)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"chunk": "in-memory", "seconds": seconds, "peak_mib": peak / MIB}, conv3d(x, w, **kwargs)


def dask_record(client, volume, w, kwargs, chunk, repeat, expected):
    """Time ``conv3d`` of the Dask array ``volume`` persisted in ``chunk``^3 chunks; its record."""
    from distributed import wait

    data = volume.rechunk((1, 1, chunk, chunk, chunk)).persist()
    wait(data)
    client.run(reset_peak_rss)

    kernels = np.random.default_rng(2)

    def run(weight=None):
        # a fresh kernel per run: the same graph again would find its results still on the workers
        weight = kernels.standard_normal(w.shape, dtype=w.dtype) if weight is None else weight
        result = conv3d(data, weight, **kwargs).persist()
        wait(result)
        return result

    seconds = median_seconds(run, repeat)
    peak = max(client.run(peak_rss).values())
    exact = bool(np.array_equal(run(w).compute(), expected))
    return {"chunk": chunk, "seconds": seconds, "peak_mib": peak / MIB, "tasks": data.npartitions,
            "exact": exact}


def graph_record(kernel, padding_mode):
    """Seconds to build the graph of ``conv3d`` of a lazy 16 GiB float32 volume (256^3 chunks), and
    the number of tasks it adds."""
    import dask.array as da

    x = da.zeros((1, 1, 2048, 2048, 1024), chunks=(1, 1, 256, 256, 256), dtype=np.float32)
    w = np.ones((1, 1) + (kernel,) * 3, np.float32)
    start = time.perf_counter()
    y = conv3d(x, w, padding="same", padding_mode=padding_mode)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tasks": len(y.__dask_graph__()) - len(x.__dask_graph__())}


def print_table(records, voxels):
    """The records as a table: chunk, median ms, Mvoxel/s, peak MiB, exact."""
    print(f"{'chunk':>10} {'tasks':>6} {'median ms':>10} {'Mvoxel/s':>9} {'peak MiB':>9} {'exact':>6}")
    for r in records:
        print(f"{r['chunk']:>10} {r.get('tasks', ''):>6} {r['seconds'] * 1e3:>10.1f} "
              f"{voxels / r['seconds'] / 1e6:>9.1f} {r['peak_mib']:>9.0f} {str(r.get('exact', '')):>6}")


def main():
    """Parse the command line, time the in-memory call and each chunk size, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="volume edge (default 256)")
    parser.add_argument("--kernel", type=int, default=7, help="kernel edge (default 7)")
    parser.add_argument("--padding-mode", default="reflect")
    parser.add_argument("--chunks", default="64,128,256", help="comma-separated chunk edges")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead")
    args = parser.parse_args()

    import dask.array as da
    from distributed import Client, LocalCluster

    graph = graph_record(args.kernel, args.padding_mode)
    shape = (1, 1) + (args.size,) * 3
    w = np.random.default_rng(1).standard_normal((1, 1) + (args.kernel,) * 3, dtype=np.float32)
    kwargs = dict(padding="same", padding_mode=args.padding_mode)
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"}) as cluster, \
            Client(cluster) as client:
        volume = da.random.default_rng(0).standard_normal(shape, dtype=np.float32).persist()
        x = volume.compute()
        record, expected = in_memory_record(x, w, kwargs, args.repeat)
        records = [record]
        for chunk in (int(c) for c in args.chunks.split(",")):
            records.append(dask_record(client, volume, w, kwargs, chunk, args.repeat, expected))

    setup = {"size": args.size, "kernel": args.kernel, "padding_mode": args.padding_mode,
             "workers": args.workers, "repeat": args.repeat}
    if args.json:
        print(json.dumps({"setup": setup, "graph_16gib": graph, "records": records}))
        return
    print(f"graph of a lazy 16 GiB volume (256^3 chunks): built in {graph['seconds']:.2f} s, "
          f"{graph['tasks']} tasks")
    print(f"1x1x{args.size}^3 float32, k{args.kernel} same {args.padding_mode}; "
          f"{args.workers} workers x 1 thread; medians of {args.repeat}")
    print_table(records, x.size)


if __name__ == "__main__":
    main()
