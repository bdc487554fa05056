"""``numba-conv3d bench``: ours and torch side by side."""
import json
import sys

import click
import numba

from numba_conv3d.bench_cases import FULL_SUITES, LARGE_KERNEL_SUITES, SUITES, BenchCase
from numba_conv3d.benchmark import SETTLE_SECONDS, format_report, gemm_peak_gflops, peak_precision, run_suite
from numba_conv3d.environment import cuda_devices, describe
from numba_conv3d.network_bench import TIMINGS, format_networks, run_networks
from numba_conv3d.networks import NETWORKS, network_layers

from .options import checked, conv_kwargs, problem_options

CASE_NAMES = sorted({case.name for suites in (SUITES, FULL_SUITES, LARGE_KERNEL_SUITES)
                     for suite in suites.values()
                     for case in suite})


def _chosen_cases(suite, names, input_shape, weight_shape, no_bias, dtype, kwargs, backend):
    if (input_shape is None) != (weight_shape is None):
        raise click.UsageError("a custom case needs both --input and --weight")
    if input_shape is not None:
        return [checked(BenchCase("custom", input_shape, weight_shape, kwargs, dtype, not no_bias,
                                  backend))]
    by_name = {case.name: case for case in suite}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} not in the {backend} suite; see --list",
                                 param_hint="--case")
    return [by_name[name] for name in names] if names else list(suite)


def _progress(quiet):
    if quiet or not sys.stderr.isatty():
        return iter

    def bar(cases):
        with click.progressbar(cases, label="benchmarking", file=sys.stderr,
                               item_show_func=lambda c: c.name if c else "") as shown:
            yield from shown

    return bar


@click.command()
@click.option("--case", "names", multiple=True, type=click.Choice(CASE_NAMES),
              help="A case of the backend's suite (repeatable); see --list.")
@click.option("--list", "list_cases", is_flag=True, help="List the backend's suite and exit.")
@click.option("--full", is_flag=True,
              help="The full CPU suite: every convolution class, float64 and complex64 variants, "
                   "scipy beside one-channel volumes (several minutes); same as --suite full.")
@click.option("--suite", type=click.Choice(["default", "full", "networks", "large-kernels"]),
              default="default", show_default=True,
              help="'large-kernels': one-channel 96^3-128^3 volumes with k7-k31 kernels beside "
                   "scipy.signal.fftconvolve (torch left out: seconds a call), with each side's "
                   "float32 error (CPU, a few minutes). "
                   "'networks': every convolution layer of real 3-D networks (video ResNets, X3D, C3D, "
                   "U-Nets, V-Net; CPU, float32), forward and forward + backward, summed per network "
                   "(about 15 minutes on 2 cores; pick some with --network).")
@click.option("--network", "network_names", multiple=True, type=click.Choice(sorted(NETWORKS)),
              help="With --suite networks: a network to run (repeatable) [default: all].")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --suite networks: the batch size of the networks' input.")
@click.option("--forward-only", is_flag=True, help="With --suite networks: time forward passes only.")
@click.option("--timing", type=click.Choice(TIMINGS), default="network", show_default=True,
              help="With --suite networks: 'network' times each side's layers back to back in network "
                   "order, as a network runs them (a pause of --settle before each pass); 'layer' times "
                   "each layer alone, a pause before every run (threads then wake for every layer).")
@problem_options(required=False)
@click.option("--backend", type=click.Choice(sorted(SUITES)), default="cpu", show_default=True,
              help="Run on the CPU (NumPy arrays) or a CUDA GPU (device arrays; the peer is torch "
                   "CUDA with TF32 off, and with its TF32 default).")
@click.option("--threads", type=click.IntRange(min=1), help="Threads for ours and torch [default: all].")
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed runs per side; medians are reported.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed runs per side after the first (compiling) call.")
@click.option("--settle", type=click.FloatRange(min=0), default=SETTLE_SECONDS, show_default=True,
              help="Seconds of pause before each timed run, so that the other side's threads are idle.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True),
              help="Also write the results and the environment as JSON to this file.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, writable=True),
              help="Also draw the run as a PNG: speed against the peer per case (per network with "
                   "--suite networks) and % of the measured GEMM peak; needs matplotlib (the 'plot' "
                   "extra).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench(names, list_cases, full, suite, network_names, batch, forward_only, timing, input_shape,
          weight_shape, stride, padding, dilation, groups, padding_mode, no_bias, dtype, backend, threads,
          repeat, warmup, settle, json_path, plot_path, quiet):
    """Time convolutions: ours and torch alternating in one process (a pause of --settle before each
    timed run; with --suite networks, by default before each pass over a network's layers), medians.

    With no options, runs the CPU suite (about a minute on 2 cores, compilation included). The table
    shows median ms of ours and torch (absent when torch is not installed), the ratio torch/ours
    (above 1: we are faster), GFLOP/s (a direct convolution's multiply-adds over our time: Winograd
    and FFT make fewer, so they can pass the peak), the share of a GEMM peak measured at start, and the
    first-call (compile) time. With --backend cuda, runs the GPU suite, timing after device synchronization.

    \b
    Examples:
      numba-conv3d bench
      numba-conv3d bench --list
      numba-conv3d bench --case dense-k3 --case pointwise --repeat 9
      numba-conv3d bench --input 1,32,64,64,64 --weight 32,32,3,3,3 --padding same --json out.json
      numba-conv3d bench --backend cuda
      numba-conv3d bench --full --case one-channel-k7-96^3
      numba-conv3d bench --suite networks --network r3d_18 --batch 2 --json r3d.json
      numba-conv3d bench --suite networks --dtype bfloat16 --forward-only
    """
    if plot_path:
        _check_matplotlib()
    if suite == "networks":
        _networks(network_names, batch, forward_only, timing, list_cases, backend, threads, repeat, warmup,
                  settle, json_path, plot_path, quiet, dtype)
        return
    suites = {"full": FULL_SUITES, "large-kernels": LARGE_KERNEL_SUITES}.get("full" if full else suite,
                                                                             SUITES)
    if backend not in suites:
        raise click.UsageError(f"--suite {suite} runs on the CPU only")
    suite = suites[backend]
    if list_cases:
        for case in suite:
            click.echo(f"{case.name:24} input {case.input_shape} weight {case.weight_shape} "
                       f"{case.kwargs} {case.dtype}")
        return
    cases = _chosen_cases(suite, names, input_shape, weight_shape, no_bias, dtype,
                          conv_kwargs(stride, padding, dilation, groups, padding_mode), backend)
    if backend == "cuda" and not cuda_devices():
        raise click.UsageError("--backend cuda: no CUDA GPU is available (see numba-conv3d info)")
    if threads is not None and threads > numba.config.NUMBA_NUM_THREADS:
        raise click.BadParameter(f"{threads} exceeds the {numba.config.NUMBA_NUM_THREADS} threads "
                                 f"Numba started with", param_hint="--threads")
    try:
        peaks, results = run_suite(cases, repeat=repeat, warmup=warmup, threads=threads,
                                   progress=_progress(quiet), backend=backend, settle=settle)
    except Exception as err:  # noqa: BLE001 - report the reason, not a traceback
        raise click.ClickException(f"the benchmark failed: {type(err).__name__}: {err}") from None
    click.echo(format_report(peaks, results))
    if plot_path:
        from numba_conv3d.plot import plot_cases

        plot_cases(results, plot_path)
    if json_path:
        record = {"environment": describe(), "peak_gflops": peaks,
                  "results": [r.as_dict() for r in results]}
        with open(json_path, "w") as out:
            json.dump(record, out, indent=2)


def _check_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.UsageError("--plot needs matplotlib: pip install 'numba_conv3d[plot]'") from None


def _networks(names, batch, forward_only, timing, list_layers, backend, threads, repeat, warmup, settle,
              json_path, plot_path, quiet, dtype):
    if backend != "cpu":
        raise click.UsageError("--suite networks runs on the CPU only")
    names = names or tuple(NETWORKS)
    if list_layers:
        for name in names:
            for layer in network_layers(name, batch):
                click.echo(f"{name:14} {layer.name:22} x{layer.count:<2} input {layer.input_shape} weight "
                           f"{layer.weight_shape} {layer.kwargs}{' transposed' if layer.transposed else ''}")
        return
    progress = _progress(quiet)
    try:
        results = run_networks(names, batch, repeat, warmup, threads, settle, not forward_only,
                               lambda pairs: progress(_Named(pairs)), dtype, timing)
    except Exception as err:  # noqa: BLE001 - report the reason, not a traceback
        raise click.ClickException(f"the benchmark failed: {type(err).__name__}: {err}") from None
    click.echo(format_networks(results, not forward_only))
    peak = gemm_peak_gflops(dtype) if plot_path or json_path else None
    if plot_path:
        from numba_conv3d.plot import plot_networks

        plot_networks(results, plot_path, peak)
    if json_path:
        with open(json_path, "w") as out:
            json.dump({"environment": describe(), "dtype": dtype,
                       "peak_gflops": {peak_precision(dtype): peak},
                       "networks": [r.as_dict() for r in results]}, out, indent=2)


class _Named(list):
    """(network, layer) pairs that the progress bar shows by name."""

    def __iter__(self):
        return (_Pair(pair) for pair in list.__iter__(self))


class _Pair(tuple):
    @property
    def name(self):
        return f"{self[0]} {self[1].name}"
