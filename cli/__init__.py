"""The ``numba-conv3d`` command line (installed as ``numba_conv3d.cli``)."""
import click

from numba_conv3d import __version__

from .bench import bench
from .info import info
from .plan import plan
from .warmup import warmup


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="numba-conv3d")
def main():
    """numba_conv3d: 3-D convolution with torch.nn.Conv3d's semantics, compiled by Numba.

    \b
    Examples:
      numba-conv3d bench                      # the default suite, ours vs torch
      numba-conv3d plan --input 1,16,32,32,32 --weight 32,16,3,3,3 --padding same
      numba-conv3d info
      numba-conv3d warmup                     # compile the common kernels into the on-disk cache
    """


main.add_command(bench)
main.add_command(plan)
main.add_command(info)
main.add_command(warmup)
