"""The ``numba-conv3d`` command line (installed as ``numba_conv3d.cli``)."""
import click

from numba_conv3d import __version__
from numba_conv3d.benchmark import DEFAULT_SUITE, format_report, run_suite


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="numba-conv3d")
def main():
    """numba_conv3d: 3-D convolution with torch.nn.Conv3d's semantics, compiled by Numba.

    \b
    Examples:
      numba-conv3d bench            # the default suite, ours vs torch
    """


@main.command()
@click.option("--repeat", default=5, show_default=True, help="Timed runs per side (medians).")
def bench(repeat):
    """Time the default suite: ours and torch side by side, alternating, medians.

    Prints median milliseconds, the ratio (torch time / ours: above 1 means faster), GFLOP/s, the share
    of the machine's measured GEMM peak and the first-call (compile) time.
    """
    click.echo(format_report(*run_suite(DEFAULT_SUITE, repeat=repeat)))
