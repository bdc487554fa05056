"""``numba-conv3d plan``: the lowered plan of one convolution."""
import json

import click
import numba

from numba_conv3d.bench_cases import BenchCase

from .options import checked, conv_kwargs, problem_options


@click.command()
@problem_options(required=True)
@click.option("--backend", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Plan for the CPU or a CUDA GPU (needs no GPU).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(input_shape, weight_shape, stride, padding, dilation, groups, padding_mode, no_bias, dtype,
         backend, as_json):
    """Print the plan of a convolution: output shape, pads, algorithm and why, workspace, FLOPs.

    \b
    Examples:
      numba-conv3d plan --input 20,16,10,50,100 --weight 33,16,3,3,3 --stride 2
      numba-conv3d plan --input 1,1,96,96,96 --weight 1,1,7,7,7 --padding same --padding-mode reflect
      numba-conv3d plan --input 4,8,8,8 --weight 8,1,3,3,3 --groups 8 --json
      numba-conv3d plan --input 1,32,64,64,64 --weight 32,32,3,3,3 --padding 1 --backend cuda
    """
    case = checked(BenchCase("plan", input_shape, weight_shape,
                             conv_kwargs(stride, padding, dilation, groups, padding_mode), dtype,
                             not no_bias, backend))
    lowered = case.plan()
    if as_json:
        click.echo(json.dumps(lowered.as_dict(), indent=2))
        return
    pads = ", ".join(f"{axis} {front}+{back}" for axis, (front, back) in zip("DHW", lowered.pads))
    click.echo(f"input        {lowered.input_shape} {lowered.dtype}")
    click.echo(f"weight       {lowered.weight_shape}{'' if lowered.has_bias else ' (no bias)'}")
    click.echo(f"output       {lowered.output_shape}")
    click.echo(f"pads         {pads} (front+back), mode {lowered.padding_mode}")
    click.echo(f"stride       {lowered.stride}, dilation {lowered.dilation}, groups {lowered.groups}")
    click.echo(f"algorithm    {lowered.algorithm}: {lowered.algorithm_reason}")
    merged = lowered.rows_merged()
    if lowered.backend == "cpu" and merged is not lowered:
        click.echo(f"rows         pointwise in (H, W): the kernels run rows side by side, input (D, H, W) "
                   f"{merged.input_size}")
    per = "per thread" if lowered.backend == "cpu" else "of shared memory per thread block"
    click.echo(f"backend      {lowered.backend}")
    shared = f" + {lowered.call_bytes:,} bytes per call" if lowered.call_bytes else ""
    click.echo(f"workspace    {lowered.workspace_bytes:,} bytes {per}{shared}")
    threads = numba.get_num_threads()
    click.echo(f"memory       {lowered.memory_bytes(threads):,} bytes allocated by a call "
               f"({threads} threads; output {lowered.output_bytes:,})")
    click.echo(f"flops        {lowered.flops:,}")
