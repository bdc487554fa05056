"""``numba-conv3d warmup``: compile the common kernels into Numba's on-disk cache."""
import click

from numba_conv3d.environment import cache_directory
from numba_conv3d.planner import SUPPORTED_DTYPES
from numba_conv3d.warmup import warm_cache


@click.command()
@click.option("--dtype", "dtypes", multiple=True, type=click.Choice(SUPPORTED_DTYPES),
              help="A dtype to compile for (repeatable) [default: float32 and float64].")
@click.option("--jit", "jitted", is_flag=True,
              help="Also compile what conv3d in your @njit code calls (about a minute per dtype; "
                   "not float16 or bfloat16, which Numba's CPU target cannot hold).")
def warmup(dtypes, jitted):
    """Compile the CPU kernels for C-contiguous operands into Numba's on-disk cache.

    Run it once after installing: later processes then load the kernels instead of compiling them
    (a first call then costs well under a second). Other layouts (strided views) still compile on
    first use.

    \b
    Examples:
      numba-conv3d warmup
      numba-conv3d warmup --dtype float32 --dtype complex64
      numba-conv3d warmup --jit
    """
    total = warm_cache(dtypes or ("float32", "float64"),
                       report=lambda name, seconds: click.echo(f"{name:24} {seconds:6.2f} s"),
                       jitted=jitted)
    click.echo(f"{'total':24} {total:6.2f} s; cache: {cache_directory()}")
