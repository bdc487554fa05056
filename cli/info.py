"""``numba-conv3d info``: versions, CPU, threads, cache, CUDA."""
import json

import click

from numba_conv3d.environment import describe


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def info(as_json):
    """Print versions, CPU and SIMD features, threading layer, cache directory and CUDA devices.

    \b
    Examples:
      numba-conv3d info
      numba-conv3d info --json
    """
    record = describe()
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    versions = ", ".join(f"{name} {version or 'not installed'}"
                         for name, version in record["versions"].items())
    click.echo(f"versions     {versions}")
    click.echo(f"cpu          {record['cpu']} (LLVM: {record['llvm_cpu']})")
    click.echo(f"simd         {' '.join(record['simd']) or 'none reported'} (kernels use "
               f"{record['kernel_vector_bits']}-bit vectors)")
    bfloat16 = ("AVX512-BF16 dot products where the planner takes them, else float32"
                if record["bfloat16_dot_products"] else "float32 (no AVX512-BF16 on this CPU)")
    if record["amx_bfloat16_tiles"]:
        bfloat16 = f"AMX tiles (tdpbf16ps) or {bfloat16}"
    click.echo(f"half         float16 computed in float32, bfloat16 by {bfloat16}; rounded once")
    click.echo(f"threads      {record['threads']} ({record['threading_layer']} threading layer)")
    click.echo(f"cache        {record['cache_dir']}")
    click.echo(f"cuda         {', '.join(record['cuda_devices']) or 'no CUDA device available'}")
