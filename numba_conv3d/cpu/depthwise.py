"""Depthwise convolution with the channels in the SIMD lanes, for real dtypes.

A depthwise layer (one input and one output channel per group: X3D, channel-separated networks) gives
each channel its own input and its own taps. The row kernels vectorize along output rows, which in
video networks are 5-40 columns wide, and the flat-phase kernel (``phase_flat.py``) along flattened
positions of the padded plane, computing the padding columns too. oneDNN's way is taken here: channels
last. A task (sample, block of ``lanes`` channels, run of output planes) gathers the padded input its
planes read into a slab of (plane, row, column, channel), every padding mode through the slab's index
maps, and computes blocks of ``DEPTHWISE_TILE`` output positions, consecutive in the output plane
(across its rows), each a vector of the block's channels: per tap, one vector of the channels' weights
times each position's vector of inputs (``simd_lanes.fma_lanes``). Every lane of a full channel block
computes a real output, whatever the plane's width; only a plane's last block computes positions past
its end (their results are dropped). Blocks reach the output through in-register transposes and masked stores
(``simd_masked.store_channel_rows``). bfloat16 operands are read as stored (their bits widened into
the float32 slab) and each float32 sum is rounded as it is stored: bitwise the float32 result rounded
once, without a widened copy of the input or a float32 result (X3D-S's layers: 0.68-0.93x the time).

Each output element is summed in the row-blocked kernel's order: the bias, then the taps in the order
(kd, kw, kh) (the flat-phase kernel's ``tap_offsets`` at unit stride), one rounding per multiply-add.
Results are bitwise those of that kernel and of the flat-phase kernel (up to the sign of a zero), for
any thread count.
"""
import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..config import DEPTHWISE_SLAB_BYTES, DEPTHWISE_TILE, VECTOR_BYTES
from ..shape_rules import ceil_div, dilated_extent
from .phase_flat import tap_offsets
from .register_blocks import output_offset
from .simd import load_rows, vector_lanes, zero_block
from .simd_bfloat16 import stored_element
from .simd_lanes import fma_lanes
from .simd_masked import store_channel_rows
from .slab import index_maps
from .tasks import tasks_wanted
from .unlinked import call_apart


def serves(plan):
    """Whether the kernel computes ``plan``: a real dtype, one input and one output channel per group."""
    return not plan.is_complex and plan.in_per_group == 1 and plan.out_per_group == 1


@register_jitable
def task_planes(batch, channels, out_depth, padded_plane, kernel_depth, dilation_depth, stride_depth,
                itemsize):
    """Output planes per task: few enough that every thread gets ``tasks_wanted`` tasks where the volume
    allows, and that a task's slab (``padded_plane`` positions per input plane, a vector of channels
    each) stays within ``DEPTHWISE_SLAB_BYTES``."""
    blocks = ceil_div(channels, VECTOR_BYTES // itemsize)
    planes = ceil_div(out_depth, min(out_depth, ceil_div(tasks_wanted(), max(1, batch * blocks))))
    input_planes = DEPTHWISE_SLAB_BYTES // (padded_plane * VECTOR_BYTES)
    fitting = (input_planes - dilated_extent(kernel_depth, dilation_depth)) // stride_depth + 1
    return max(1, min(planes, fitting))


@njit(cache=True)
def pack(weight, bias, has_bias, weight_taps):
    """The weights as (channel blocks, taps in the order ``weight_taps`` gives their indices in C order,
    lanes) and the bias as (blocks x lanes), zeros past the last channel."""
    channels = weight.shape[0]
    lanes = vector_lanes(weight)
    blocks = ceil_div(channels, lanes)
    taps = weight.reshape(channels, -1)
    packed = np.zeros((blocks, weight_taps.shape[0], lanes), weight.dtype)
    packed_bias = np.zeros(blocks * lanes, weight.dtype)
    for c in range(channels):
        for t in range(weight_taps.shape[0]):
            packed[c // lanes, t, c % lanes] = taps[c, weight_taps[t]]
        if has_bias:
            packed_bias[c] = bias[c]
    return packed, packed_bias


@njit(cache=True, inline='always')
def _gather(x, n, c0, first_plane, maps, slab):
    """``slab`` (planes, padded rows, padded columns, lanes, flat) = the padded input of channels ``c0
    ...`` from padded plane ``first_plane``, through ``maps`` (``slab.index_maps``); lanes past the last
    channel are zeros. bfloat16 bits (uint16) are widened into a float32 slab."""
    map_d, map_h, map_w = maps[0], maps[1], maps[2]
    lanes = vector_lanes(slab)
    rows, columns = map_h.shape[0], map_w.shape[0]
    channels = min(lanes, x.shape[1] - c0)
    for z in range(slab.shape[0] // (rows * columns * lanes)):
        sd = map_d[first_plane + z]
        for y in range(rows):
            sh = map_h[y]
            row = (z * rows + y) * columns * lanes
            for column in range(columns):
                sw = map_w[column]
                at = row + column * lanes
                inside = sd >= 0 and sh >= 0 and sw >= 0
                for c in range(lanes):
                    slab[at + c] = (stored_element(slab, x[n, c0 + c, sd, sh, sw]) if inside and c < channels
                                    else 0)


@njit(cache=True)
def _depthwise_task(x, packed, packed_bias, out, stride, dilation, kernel, maps, planes, task):
    """Task ``task`` of :func:`_depthwise_kernel`: (sample, channel block, run of ``planes`` output
    planes)."""
    lanes = vector_lanes(packed)
    blocks, taps = packed.shape[0], packed.shape[1]
    out_depth, out_height, out_width = out.shape[2:]
    runs = ceil_div(out_depth, planes)
    n, block, run = task // (blocks * runs), task // runs % blocks, task % runs
    od0, c0 = run * planes, block * lanes
    count = min(planes, out_depth - od0)
    rows, columns = maps[1].shape[0], maps[2].shape[0]
    depth = (count - 1) * stride[0] + dilated_extent(kernel[0], dilation[0])
    slab = np.empty(depth * rows * columns * lanes, packed.dtype)
    _gather(x, n, c0, od0 * stride[0], maps, slab)
    offsets = tap_offsets(kernel, dilation, (1, 1, 1), (depth, rows, columns))[0] * lanes
    plane = out_height * out_width
    bases = np.empty(DEPTHWISE_TILE, np.int64)
    like = zero_block(slab, DEPTHWISE_TILE, 1, 1)
    weights = packed.reshape(-1)
    for p in range(count):
        for first in range(0, plane, DEPTHWISE_TILE):
            for j in range(DEPTHWISE_TILE):
                oh, ow = divmod(min(first + j, plane - 1), out_width)
                bases[j] = ((p * stride[0] * rows + oh * stride[1]) * columns + ow * stride[2]) * lanes
            acc = load_rows(like, packed_bias, c0, 0, DEPTHWISE_TILE, 1)
            for t in range(taps):
                acc = fma_lanes(acc, weights, (block * taps + t) * lanes, slab, bases, offsets[t])
            store_channel_rows(acc, out, output_offset(out, n, c0, od0 + p, 0, 0) + first, out_depth * plane,
                               0, min(lanes, out.shape[1] - c0), 1, min(DEPTHWISE_TILE, plane - first),
                               DEPTHWISE_TILE, 1)


@njit(parallel=True, cache=True)
def _depthwise_kernel(x, packed, packed_bias, out, stride, dilation, pad_front, padded, mode, kernel, planes):
    """Fill ``out`` (N, C, OD, OH, OW) from ``x`` with the weights and bias of :func:`pack`, in tasks of
    (sample, channel block, run of ``planes`` output planes), each run apart (``unlinked.py``)."""
    maps = index_maps(x, padded, pad_front, mode)
    tasks = x.shape[0] * packed.shape[0] * ceil_div(out.shape[2], planes)
    for task in prange(tasks):
        call_apart(_depthwise_task, x, packed, packed_bias, out, stride, dilation, kernel, maps, planes,
                   np.int64(task))


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds: its slab."""
    itemsize = np.dtype(plan.dtype).itemsize
    padded_plane = plan.padded_size[1] * plan.padded_size[2]
    planes = task_planes(plan.batch, plan.out_channels, plan.output_size[0], padded_plane,
                         plan.kernel_size[0], plan.dilation[0], plan.stride[0], itemsize)
    depth = (planes - 1) * plan.stride[0] + dilated_extent(plan.kernel_size[0], plan.dilation[0])
    return depth * padded_plane * VECTOR_BYTES


@register_jitable
def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` of a depthwise convolution (real dtypes; for
    bfloat16, ``x`` and ``out`` as their bits, the weight and bias widened to float32: the input is
    widened as it is gathered, each float32 sum rounded as it is stored).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    packed, packed_bias = pack(weight, bias, has_bias, tap_offsets(weight.shape[2:], dilation, (1, 1, 1),
                                                                   padded)[1])
    planes = task_planes(x.shape[0], x.shape[1], out.shape[2], padded[1] * padded[2], weight.shape[2],
                         dilation[0], stride[0], weight.itemsize)
    _depthwise_kernel(x, packed, packed_bias, out, stride, dilation, pad_front, padded, mode,
                      weight.shape[2:], planes)
