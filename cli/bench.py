"""``numba-conv3d bench``: ours and torch side by side."""
import json
import sys

import click
import numba

from numba_conv3d.benchmark import DEFAULT_SUITE, BenchCase, format_report, run_suite
from numba_conv3d.environment import describe

from .options import checked, conv_kwargs, problem_options

SUITE = {case.name: case for case in DEFAULT_SUITE}


def _chosen_cases(names, input_shape, weight_shape, no_bias, dtype, kwargs):
    if (input_shape is None) != (weight_shape is None):
        raise click.UsageError("a custom case needs both --input and --weight")
    if input_shape is not None:
        return [checked(BenchCase("custom", input_shape, weight_shape, kwargs, dtype, not no_bias))]
    return [SUITE[name] for name in names] if names else list(DEFAULT_SUITE)


def _progress(quiet):
    if quiet or not sys.stderr.isatty():
        return iter

    def bar(cases):
        with click.progressbar(cases, label="benchmarking", file=sys.stderr,
                               item_show_func=lambda c: c.name if c else "") as shown:
            yield from shown

    return bar


@click.command()
@click.option("--case", "names", multiple=True, type=click.Choice(sorted(SUITE)),
              help="A case of the default suite (repeatable); see --list.")
@click.option("--list", "list_cases", is_flag=True, help="List the default suite and exit.")
@problem_options(required=False)
@click.option("--backend", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="Threads for ours and torch [default: all].")
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed runs per side; medians are reported.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed runs per side after the first (compiling) call.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True),
              help="Also write the results and the environment as JSON to this file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench(names, list_cases, input_shape, weight_shape, stride, padding, dilation, groups,
          padding_mode, no_bias, dtype, backend, threads, repeat, warmup, json_path, quiet):
    """Time convolutions: ours and torch alternating in one process, medians.

    With no options, runs the default suite (about a minute on 2 cores, compilation included). The
    table shows median ms of ours and torch (absent when torch is not installed), the ratio torch/ours
    (above 1: we are faster), GFLOP/s, the share of a GEMM peak measured at start, and the first-call
    (compile) time.

    \b
    Examples:
      numba-conv3d bench
      numba-conv3d bench --list
      numba-conv3d bench --case dense-k3 --case pointwise --repeat 9
      numba-conv3d bench --input 1,32,64,64,64 --weight 32,32,3,3,3 --padding same --json out.json
    """
    if list_cases:
        for case in DEFAULT_SUITE:
            click.echo(f"{case.name:24} input {case.input_shape} weight {case.weight_shape} "
                       f"{case.kwargs} {case.dtype}")
        return
    cases = _chosen_cases(names, input_shape, weight_shape, no_bias, dtype,
                          conv_kwargs(stride, padding, dilation, groups, padding_mode))
    if backend == "cuda":
        raise click.UsageError("--backend cuda: this version of numba_conv3d has no CUDA backend")
    if threads is not None and threads > numba.config.NUMBA_NUM_THREADS:
        raise click.BadParameter(f"{threads} exceeds the {numba.config.NUMBA_NUM_THREADS} threads "
                                 f"Numba started with", param_hint="--threads")
    try:
        peaks, results = run_suite(cases, repeat=repeat, warmup=warmup, threads=threads,
                                   progress=_progress(quiet))
    except Exception as err:  # noqa: BLE001 - report the reason, not a traceback
        raise click.ClickException(f"the benchmark failed: {type(err).__name__}: {err}") from None
    click.echo(format_report(peaks, results))
    if json_path:
        record = {"environment": describe(), "peak_gflops": peaks,
                  "results": [r.as_dict() for r in results]}
        with open(json_path, "w") as out:
            json.dump(record, out, indent=2)
