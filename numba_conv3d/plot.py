"""``numba-conv3d bench --plot``: one picture of a run, speed against the peer and share of the peak.

Needs matplotlib (the ``plot`` extra); imported only when a plot is asked for.
"""


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("--plot needs matplotlib: pip install 'numba_conv3d[plot]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def _bars(axis, labels, series, title, reference=None):
    """Horizontal bars, one group per label, one bar per (name, values) series; None values are left
    out; ``reference`` draws a vertical line there."""
    series = [(name, values) for name, values in series if any(v is not None for v in values)] or series
    height = 0.8 / len(series)
    for k, (name, values) in enumerate(series):
        positions = [i + k * height for i, value in enumerate(values) if value is not None]
        axis.barh(positions, [value for value in values if value is not None], height, label=name)
    axis.set_yticks([i + height * (len(series) - 1) / 2 for i in range(len(labels))], labels, fontsize=7)
    axis.invert_yaxis()
    axis.set_title(title, fontsize=9)
    if reference is not None:
        axis.axvline(reference, color="black", linewidth=0.8)
    if len(series) > 1:
        axis.legend(fontsize=7)


def _save(pyplot, figure, path, heading):
    figure.suptitle(heading, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def plot_cases(results, path, heading="numba_conv3d vs torch"):
    """Write a PNG of a suite's results (``benchmark.BenchResult``): per case, the ratio torch time /
    ours (and scipy's where timed) and our share of the measured GEMM peak."""
    pyplot = _pyplot()
    labels = [r.case.name for r in results]
    figure, (speed, peak) = pyplot.subplots(1, 2, figsize=(11, 0.3 * len(labels) + 1.5), sharey=True)
    peers = list(dict.fromkeys(name for r in results for name in r.peers))
    _bars(speed, labels, [(name, [r.peers[name] / r.ours_s if name in r.peers else None for r in results])
                          for name in peers] or [("ours", [None] * len(results))],
          "speed-up: peer time / ours (above 1: ours faster)", 1.0)
    _bars(peak, labels, [("ours", [None if r.fraction_of_peak is None else 100 * r.fraction_of_peak
                                   for r in results])], "% of the measured GEMM peak")
    _save(pyplot, figure, path, heading)


def plot_networks(results, path, peak_gflops=None, heading="numba_conv3d vs torch: networks"):
    """Write a PNG of the networks suite (``network_bench.NetworkResult``): per network, the ratio torch
    time / ours forward and forward + backward, and our forward GFLOP/s as a share of ``peak_gflops``."""
    pyplot = _pyplot()
    labels = [f"{n.name} (batch {n.batch})" for n in results]
    figure, (speed, peak) = pyplot.subplots(1, 2, figsize=(11, 0.5 * len(labels) + 1.5), sharey=True)
    _bars(speed, labels, [("forward", [n.ratio("forward") for n in results]),
                          ("forward + backward", [n.ratio("training") for n in results])],
          "speed-up: torch time / ours (above 1: ours faster)", 1.0)
    shares = [None if not peak_gflops else
              100 * 2 * sum(r.layer.macs * r.layer.count for r in n.layers) / n.total("ours_forward_s") / 1e9
              / peak_gflops for n in results]
    _bars(peak, labels, [("forward", shares)], "forward: % of the measured GEMM peak")
    _save(pyplot, figure, path, heading)
