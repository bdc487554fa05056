"""Where each CPU algorithm runs fastest: the measured crossover rules by which the rows of
``cpu.ALGORITHMS`` prefer a plan (``prefers_*``), and the estimates and kernel choices they rest on."""
from math import prod

import numpy as np
from numba.extending import register_jitable

from ..config import (BLOCKED_MIN_CHANNELS, VECTOR_BYTES)
from ..crossovers import (AMX_FEW_OUTPUTS_MIN_IN_CHANNELS, AMX_LOW_OUTPUT_WORK, AMX_LOW_WORK_IN_CHANNELS,
                          AMX_MIN_IN_CHANNELS, AMX_MIN_OUT_CHANNELS, AMX_MIN_OUTPUT_POSITIONS,
                          AMX_MIN_OUTPUT_WORK, AMX_MIN_REDUCTION, AMX_SMALL_VOLUME,
                          BFLOAT16_DOT_MAX_WINOGRAD_GAIN,
                          BFLOAT16_DOT_MIN_IN_CHANNELS, BFLOAT16_DOT_MIN_OUT_CHANNELS,
                          BFLOAT16_ROWS_MAX_WINOGRAD_GAIN,
                          CHANNEL_VECTORIZED_POINTS_BELOW,
                          BFLOAT16_ROWS_MIN_FILL, BFLOAT16_ROWS_POINTWISE_MIN_POSITIONS,
                          BFLOAT16_WIDENED_DEPTH_MAX_PLANE, DEPTHWISE_MAX_OUTPUT_WIDTH,
                          DEPTHWISE_MIN_CHANNELS, FFT_DIRECT_MAC_SECONDS, FFT_MIN_GAIN,
                          FLAT_MAX_NARROW_KERNEL_WIDTH, FLAT_MAX_OUTPUT_WIDTH, FLAT_MAX_WORKSPACE_BYTES,
                          GEMM_FEW_TAPS, GEMM_FEW_TAPS_POSITIONS_PER_CHANNEL, GEMM_MIN_OUT_CHANNELS,
                          GEMM_MIN_REDUCTION, GEMM_POINTWISE_MIN_CHANNELS, GEMM_POSITIONS_PER_CHANNEL,
                          GEMM_STRIDED_POSITIONS_PER_CHANNEL, GEMM_UNIT_MIN_INPUTS, PLANE_GEMM_MIN_CHANNELS,
                          PLANE_GEMM_MIN_POSITIONS, POINTWISE_MAX_IN_CHANNELS, TAP_GEMM_MAX_SHARE,
                          TAP_GEMM_MIN_CHANNELS,
                          TAP_GEMM_WIDE_CHANNELS, TAP_GEMM_WIDE_MAX_SHARE, WINOGRAD_DEPTH_MIN_COLUMNS,
                          WINOGRAD_DEPTH_MIN_TASKS, WINOGRAD_MAX_WEIGHT_BYTES, WINOGRAD_MIN_GAIN,
                          WINOGRAD_POINTS_MIN_TILES, WINOGRAD_POINTS_RANGES,
                          WINOGRAD_STRIDED_MAX_WEIGHT_BYTES, WINOGRAD_STRIDED_MIN_IN_CHANNELS,
                          WINOGRAD_STRIDED_MIN_TILES, WINOGRAD_WEIGHT_TILES)
from ..shape_rules import round_up
from . import (amx_layout, blocked, channel_vectorized, fft, gemm, phase_flat, pointwise, row_blocked,
               tap_gemm, winograd, winograd_depth, winograd_strided, winograd_tiles)

# The register-blocked kernels of real dtypes, as ``real_kernel`` names them.
CHANNEL_VECTORIZED, BLOCKED, ROW_BLOCKED = range(3)


@register_jitable
def real_kernel(out_height, out_width, out_per_group, reduction, itemsize, kernel_width, stride_width):
    """Which register-blocked kernel computes a real-dtype convolution whose output planes (as its
    kernel runs them) are ``out_height`` x ``out_width``, with ``out_per_group`` output channels and
    ``reduction`` input channels x taps per group, ``kernel_width`` taps and ``stride_width`` along W:
    ``CHANNEL_VECTORIZED`` where it keeps more of its computed lanes, or nearly as many over a long
    reduction (``channel_vectorized.preferred``), else ``BLOCKED`` where that serves, its channel blocks
    are full enough (``blocked.fills_blocks``) and the reduction is not one that the row-blocked kernel
    runs faster (``row_blocked.beats_channel_blocks``), else ``ROW_BLOCKED``. The planner's table and
    jitted ``conv3d`` both choose by it."""
    if channel_vectorized.preferred(out_height, out_width, out_per_group, reduction, itemsize):
        return CHANNEL_VECTORIZED
    if (blocked.serves(False, out_per_group) and blocked.fills_blocks(out_per_group)
            and not row_blocked.beats_channel_blocks(kernel_width, stride_width, reduction)):
        return BLOCKED
    return ROW_BLOCKED


def picked(kernel):
    """An algorithm's ``prefers``: whether ``real_kernel`` picks ``kernel`` for a plan."""
    def prefers(plan):
        merged = plan.rows_merged()
        reduction = plan.in_per_group * prod(plan.kernel_size)
        return real_kernel(*merged.output_size[1:], plan.out_per_group, reduction,
                           np.dtype(plan.dtype).itemsize, merged.kernel_size[2], merged.stride[2]) == kernel

    return prefers


def prefers_gemm(plan):
    """Whether the planner takes the GEMM algorithm for a real-dtype plan: a 1x1x1 convolution that
    reads its input as the matrix, a small output volume for its many channels (larger for strided
    and few-tap kernels; not the float32 ones the channel-vectorized kernel takes,
    ``small_dense_volume``), or a strided 1x1x1 projection (``crossovers.GEMM_*``, measured
    crossovers)."""
    strided = plan.stride != (1, 1, 1)
    if gemm.reads_input_as_columns(plan):
        return plan.in_per_group >= GEMM_UNIT_MIN_INPUTS and plan.out_per_group >= 2
    if strided and plan.kernel_size == (1, 1, 1):
        return plan.out_per_group >= GEMM_POINTWISE_MIN_CHANNELS
    if strided:
        per_channel = GEMM_STRIDED_POSITIONS_PER_CHANNEL
    elif prod(plan.kernel_size) <= GEMM_FEW_TAPS:
        per_channel = GEMM_FEW_TAPS_POSITIONS_PER_CHANNEL
    else:
        per_channel = GEMM_POSITIONS_PER_CHANNEL
    return _many_channels_per_position(plan, per_channel) and not small_dense_volume(plan)


def _many_channels_per_position(plan, per_channel):
    """At least ``GEMM_MIN_OUT_CHANNELS`` output and ``GEMM_MIN_REDUCTION`` (input channels x taps) per
    group, and at most ``per_channel`` output positions per sample for each output channel."""
    return (plan.out_per_group >= GEMM_MIN_OUT_CHANNELS
            and plan.in_per_group * prod(plan.kernel_size) >= GEMM_MIN_REDUCTION
            and prod(plan.output_size) <= per_channel * plan.out_per_group)


def gemm_small_volume(plan):
    """GEMM's rule for a small output volume at unit stride with more than ``GEMM_FEW_TAPS`` taps
    (``GEMM_POSITIONS_PER_CHANNEL``), real dtypes."""
    return (not plan.is_complex and plan.stride == (1, 1, 1) and prod(plan.kernel_size) > GEMM_FEW_TAPS
            and _many_channels_per_position(plan, GEMM_POSITIONS_PER_CHANNEL))


def small_dense_volume(plan):
    """Where the channel-vectorized kernel, its weights packed once and its padding products left out,
    takes a float32 plan that ``real_kernel`` gives it (jitted ``conv3d`` takes the same kernel) from
    GEMM's small-volume rule (``gemm_small_volume``) or from point-by-point Winograd
    (``CHANNEL_VECTORIZED_POINTS_BELOW``): 2x7x7 and 4^3 with 128-512 channels, V-Net's 2x4x4 k5 with
    256, R(2+1)D's 1x3x3 at 2x7x7 with 512 -> 921-1152 ran 0.68-0.94x GEMM's time, about half the
    tap-by-tap products' and a third to two thirds of Winograd's; V-Net's 4x8x8 k5 with 128 channels
    0.64-0.80x point-by-point Winograd's (2-core Zen 4, same process, alternating; float64 left where
    it was: not measured against GEMM, 0.98-1.01x Winograd's). The planner judges it on the float32 plan
    of float32, and of float16 and bfloat16 without their own rows (as for every real row)."""
    return _channel_vectorized_float32(plan) and (gemm_small_volume(plan) or _few_points_per_channel(plan))


def _channel_vectorized_over_points(plan):
    """Where ``small_dense_volume`` takes a plan from point-by-point Winograd."""
    return _channel_vectorized_float32(plan) and _few_points_per_channel(plan)


def _channel_vectorized_float32(plan):
    """A float32 plan that ``real_kernel`` gives the channel-vectorized kernel."""
    return np.dtype(plan.dtype).itemsize == 4 and picked(CHANNEL_VECTORIZED)(plan)


def _few_points_per_channel(plan):
    """A cubic kernel's plan in the point-by-point Winograd range (``_points_range``) with fewer channels
    and tiles per channel than ``CHANNEL_VECTORIZED_POINTS_BELOW`` gives for its kernel's width."""
    below = CHANNEL_VECTORIZED_POINTS_BELOW.get(plan.kernel_size[2])
    return (below is not None and len(set(plan.kernel_size)) == 1 and winograd.serves(plan)
            and _points_range(plan) and (plan.in_per_group * plan.out_per_group) ** 0.5 < below[0]
            and winograd_tiles_per_channel(plan) < below[1])


def forward_is_gemm_shaped(plan):
    """Whether the planner takes GEMM for ``plan``'s forward convolution, or would but for the pointwise
    kernel or ``small_dense_volume``: the gradient routes measured beside GEMM's forward (col2im, the
    weight gradient's product) stay where they were."""
    return (plan.algorithm == "gemm" or (plan.algorithm == "pointwise" and prefers_gemm(plan))
            or (plan.algorithm == "channel-vectorized" and gemm_small_volume(plan)))


def prefers_pointwise(plan):
    """Whether the planner takes the register-blocked pointwise kernel for a 1x1x1 plan it serves: at
    least one strip of output positions a sample (``pointwise.fills_a_strip``) and at most
    ``POINTWISE_MAX_IN_CHANNELS`` input channels per group (measured crossover: longer reductions are
    GEMM's)."""
    return pointwise.fills_a_strip(plan) and plan.in_per_group <= POINTWISE_MAX_IN_CHANNELS


def prefers_tap_gemm(plan):
    """Whether the planner takes the tap-by-tap products for a plan they serve: where it would take the
    channel-vectorized kernel, with many channels and many taps reading zero padding
    (``crossovers.TAP_GEMM_*``, measured crossovers)."""
    if (min(plan.in_per_group, plan.out_per_group) < TAP_GEMM_MIN_CHANNELS or prefers_gemm(plan)
            or small_dense_volume(plan)):
        return False
    wide = min(plan.in_per_group, plan.out_per_group) >= TAP_GEMM_WIDE_CHANNELS
    limit = TAP_GEMM_WIDE_MAX_SHARE if wide else TAP_GEMM_MAX_SHARE
    return picked(CHANNEL_VECTORIZED)(plan) and tap_gemm.read_share(plan) <= limit


def prefers_plane_gemm(plan):
    """Whether the planner takes the per-plane products for a plan they serve (a KDx1x1 kernel): deeper
    than one plane, with many channels and output positions (``crossovers.PLANE_GEMM_*``, measured
    crossovers)."""
    return (plan.kernel_size[0] > 1 and min(plan.in_per_group, plan.out_per_group) >= PLANE_GEMM_MIN_CHANNELS
            and prod(plan.output_size) >= PLANE_GEMM_MIN_POSITIONS)


def prefers_winograd_depth(plan):
    """Whether the planner takes F(2, 3) along D for a plan it serves (a 3x1x1 kernel): at least
    ``WINOGRAD_DEPTH_MIN_TASKS`` tasks (each task's products run on one thread) and planes of at least
    ``WINOGRAD_DEPTH_MIN_COLUMNS`` positions (measured crossovers)."""
    return (winograd_depth.tasks(plan) >= WINOGRAD_DEPTH_MIN_TASKS
            and plan.output_size[1] * plan.output_size[2] >= WINOGRAD_DEPTH_MIN_COLUMNS)


def winograd_gain(plan):
    """The estimated speed of Winograd over the direct kernels for a plan it serves
    (``winograd_tiles.estimated_gain`` with the plan's tile and ``WINOGRAD_WEIGHT_TILES``)."""
    return winograd_tiles.estimated_gain(plan.kernel_size, plan.output_size, plan.batch, plan.in_per_group,
                                         plan.out_per_group, winograd_tiles.plan_tile(plan),
                                         WINOGRAD_WEIGHT_TILES)


def prefers_winograd(plan):
    """Whether the planner takes Winograd for a plan it serves: an estimated gain of at least
    ``WINOGRAD_MIN_GAIN`` with at most ``WINOGRAD_MAX_WEIGHT_BYTES`` of weight points, where the
    planner would not take GEMM or the channel-vectorized kernel for a small volume
    (``small_dense_volume``): small volumes for many channels, where the weight transform and the
    weight points' traffic dominate."""
    return (winograd.call_bytes(plan) <= WINOGRAD_MAX_WEIGHT_BYTES
            and winograd_gain(plan) >= WINOGRAD_MIN_GAIN and not prefers_gemm(plan)
            and not small_dense_volume(plan))


def winograd_tiles_per_channel(plan):
    """A call's Winograd tiles (batch included) per channel pair's geometric mean, sqrt(C_in/g x
    C_out/g): how far the tiles amortize the weight points (few tiles for many channels read much
    weight for little work) and how much transformed input and products they hold."""
    return (winograd_tiles.call_tiles(plan, winograd_tiles.plan_tile(plan))
            / (plan.in_per_group * plan.out_per_group) ** 0.5)


def prefers_winograd_points(plan):
    """Whether the planner takes Winograd point by point for a plan Winograd serves: at least
    ``WINOGRAD_POINTS_MIN_TILES`` tiles and, by the kernel's width (``WINOGRAD_POINTS_RANGES``), enough
    channels and tiles per channel (``winograd_tiles_per_channel``) in range (measured crossovers: fewer
    tiles are faster by GEMM, more by the fused kernel, fewer channels by the direct kernels), unless the
    channel-vectorized kernel takes it (``small_dense_volume``)."""
    return _points_range(plan) and not _channel_vectorized_over_points(plan)


def _points_range(plan):
    """Whether a plan Winograd serves is in point-by-point Winograd's range (``prefers_winograd_points``)."""
    channels, low, high = WINOGRAD_POINTS_RANGES[plan.kernel_size[2]]
    return (winograd_tiles.call_tiles(plan, winograd_tiles.plan_tile(plan)) >= WINOGRAD_POINTS_MIN_TILES
            and (plan.in_per_group * plan.out_per_group) ** 0.5 >= channels
            and low <= winograd_tiles_per_channel(plan) <= high)


def prefers_winograd_strided(plan):
    """Whether the planner takes stride-2 Winograd for a plan it serves: at least
    ``WINOGRAD_STRIDED_MIN_TILES`` tiles, ``WINOGRAD_STRIDED_MIN_IN_CHANNELS`` input channels per group
    and at most ``WINOGRAD_STRIDED_MAX_WEIGHT_BYTES`` of weight points (measured crossovers)."""
    return (winograd_strided.call_tiles(plan) >= WINOGRAD_STRIDED_MIN_TILES
            and plan.in_per_group >= WINOGRAD_STRIDED_MIN_IN_CHANNELS
            and winograd_strided.call_bytes(plan) <= WINOGRAD_STRIDED_MAX_WEIGHT_BYTES)


def _direct_seconds(plan):
    """Estimated seconds of the direct kernel the planner would take (``direct_sums``): its
    multiply-adds at its ``FFT_DIRECT_MAC_SECONDS`` each (for the machine's vector width), on
    ``fft.planning_threads``."""
    macs = (plan.batch * plan.out_channels * prod(plan.output_size) * plan.in_per_group
            * prod(plan.kernel_size))
    return macs * FFT_DIRECT_MAC_SECONDS[VECTOR_BYTES][direct_sums(plan).name] / fft.planning_threads()


def fft_gain(plan):
    """The estimated speed of FFT convolution over the direct kernel the planner would take, for a
    plan it serves: ``_direct_seconds`` over the FFT's estimated seconds for its best tiling
    (``fft.tiling``)."""
    return _direct_seconds(plan) / fft.estimated_seconds(plan)


def prefers_fft(plan):
    """Whether the planner takes FFT convolution for a plan it serves: an estimated gain of at least
    ``FFT_MIN_GAIN`` (large kernels), and at least Winograd's where the planner would take Winograd.
    Small kernels are ruled out by ``fft.lower_bound_seconds`` before any tiling is tried."""
    direct = _direct_seconds(plan)
    if direct < FFT_MIN_GAIN * fft.lower_bound_seconds(plan):
        return False
    gain = direct / fft.estimated_seconds(plan)
    return gain >= FFT_MIN_GAIN and not (winograd.serves(plan) and prefers_winograd(plan)
                                         and winograd_gain(plan) > gain)


def flat_max_output_width(plan):
    """The widest output rows the planner gives the flat-phase kernel: ``FLAT_MAX_NARROW_KERNEL_WIDTH``
    times the stride along W for kernels of at most 3 taps along W (the depthwise k3 layers of video
    networks), else ``FLAT_MAX_OUTPUT_WIDTH``."""
    if plan.kernel_size[2] <= 3:
        return FLAT_MAX_NARROW_KERNEL_WIDTH * plan.stride[2]
    return FLAT_MAX_OUTPUT_WIDTH


def prefers_depthwise(plan):
    """Whether the planner takes the channels-last depthwise kernel for a depthwise plan it serves: at
    least ``DEPTHWISE_MIN_CHANNELS`` channels (to fill its vectors of channels) and output rows of at
    most ``DEPTHWISE_MAX_OUTPUT_WIDTH`` columns (wider ones fill the row kernels' vectors)."""
    return plan.out_channels >= DEPTHWISE_MIN_CHANNELS and plan.output_size[2] <= DEPTHWISE_MAX_OUTPUT_WIDTH


def prefers_phase_flat(plan):
    """Whether the planner takes the flat-phase kernel for a real-dtype plan: fewer than
    ``BLOCKED_MIN_CHANNELS`` output channels per group, output rows of at most
    ``flat_max_output_width`` (where row blocks leave lanes idle) and its workspace within
    ``FLAT_MAX_WORKSPACE_BYTES``."""
    return (plan.out_per_group < BLOCKED_MIN_CHANNELS and plan.output_size[2] <= flat_max_output_width(plan)
            and phase_flat.workspace_bytes(plan) <= FLAT_MAX_WORKSPACE_BYTES)


def _pairs_pay(plan, computed):
    """Whether a bfloat16 plan may take the dot products at all: enough input channels per group to
    fill the pairs, and its float32 plan ``computed`` not by FFT."""
    return plan.in_per_group >= BFLOAT16_DOT_MIN_IN_CHANNELS and not (fft.serves(computed)
                                                                    and prefers_fft(computed))


def prefers_bfloat16_amx(plan):
    """Whether the planner takes AMX tiles for a bfloat16 plan they serve (``crossovers.AMX_*``,
    measured crossovers): at least ``AMX_MIN_IN_CHANNELS`` input channels per group (not depthwise
    layers: a tile block's channels would be nearly all zeros) and ``AMX_MIN_OUTPUT_POSITIONS`` output
    positions a sample (a block's positions). Fewer than ``AMX_MIN_OUT_CHANNELS`` output channels per
    group take them with ``AMX_FEW_OUTPUTS_MIN_IN_CHANNELS`` input channels (each output's many
    products keep the tiles worth it, their rows mostly empty); more take them where the products per
    input element pay for laying it out: output channels x taps per group and stride phase read
    (``amx_layout.phases_read``) of at least ``AMX_MIN_OUTPUT_WORK`` with ``AMX_MIN_REDUCTION``
    input channels x taps per group, or, where the other kernels are weaker (strided layers, volumes of
    at most ``AMX_SMALL_VOLUME`` output positions a sample), ``AMX_LOW_OUTPUT_WORK`` with
    ``AMX_LOW_WORK_IN_CHANNELS`` input channels per group."""
    if plan.in_per_group < AMX_MIN_IN_CHANNELS or prod(plan.output_size) < AMX_MIN_OUTPUT_POSITIONS:
        return False
    if plan.out_per_group < AMX_MIN_OUT_CHANNELS:
        return plan.in_per_group >= AMX_FEW_OUTPUTS_MIN_IN_CHANNELS
    taps = prod(plan.kernel_size)
    phases = int(amx_layout.phases_read(plan.kernel_size, plan.dilation, plan.stride).sum(axis=1).prod())
    work = plan.out_per_group * taps / phases
    if plan.in_per_group * taps >= AMX_MIN_REDUCTION and work >= AMX_MIN_OUTPUT_WORK:
        return True
    weaker_elsewhere = plan.stride != (1, 1, 1) or prod(plan.output_size) <= AMX_SMALL_VOLUME
    return weaker_elsewhere and plan.in_per_group >= AMX_LOW_WORK_IN_CHANNELS and work >= AMX_LOW_OUTPUT_WORK


def prefers_bfloat16_dot(plan):
    """Whether the planner takes the bfloat16 dot products for a bfloat16 plan they serve: enough
    channels per group to fill the pairs and the channel blocks, and not where the float32 plan takes
    FFT, Winograd with a large estimated gain, Winograd along D on small planes, or a 1x1x1 GEMM (whose
    few positions the rows kernel does not take: ``crossovers.BFLOAT16_DOT_*``, measured crossovers)."""
    computed = plan.computed()
    if plan.out_per_group < BFLOAT16_DOT_MIN_OUT_CHANNELS or not _pairs_pay(plan, computed):
        return False
    if winograd.serves(computed) and prefers_winograd(computed):
        return winograd_gain(computed) < BFLOAT16_DOT_MAX_WINOGRAD_GAIN
    if _widened_row(computed).name == "winograd-depth":
        return prod(plan.output_size[1:]) > BFLOAT16_WIDENED_DEPTH_MAX_PLANE
    return not (computed.kernel_size == (1, 1, 1) and prefers_gemm(computed))


def prefers_bfloat16_rows(plan):
    """Whether the planner takes the bfloat16 dot products along output rows (``bfloat16-rows``, the
    channel-blocked kernel on pairs) for a bfloat16 plan they serve: 1x1x1 layers without pads (at any
    stride) over at least ``BFLOAT16_ROWS_POINTWISE_MIN_POSITIONS`` output positions per sample, and
    layers with >= ``BFLOAT16_DOT_MIN_OUT_CHANNELS`` output channels per group whose output rows (laid
    side by side where ``ConvPlan.rows_merged`` lays them) fill at least ``BFLOAT16_ROWS_MIN_FILL`` of
    their vectors (rows of 16, 32 or 64 outputs, or long merged rows), unless the float32 plan takes
    FFT or Winograd with an estimated gain of at least ``BFLOAT16_ROWS_MAX_WINOGRAD_GAIN``
    (``crossovers.BFLOAT16_ROWS_*``, measured crossovers)."""
    computed = plan.computed()
    if not _pairs_pay(plan, computed):
        return False
    if plan.kernel_size == (1, 1, 1):
        return (plan.pads == ((0, 0),) * 3 and plan.out_per_group >= BLOCKED_MIN_CHANNELS
                and prod(plan.output_size) >= BFLOAT16_ROWS_POINTWISE_MIN_POSITIONS)
    width = plan.rows_merged().output_size[2]
    if (plan.out_per_group < BFLOAT16_DOT_MIN_OUT_CHANNELS
            or width < BFLOAT16_ROWS_MIN_FILL * round_up(width, VECTOR_BYTES // 4)):
        return False
    if winograd.serves(computed) and prefers_winograd(computed):
        return winograd_gain(computed) < BFLOAT16_ROWS_MAX_WINOGRAD_GAIN
    return True


def _widened_row(computed):
    """The row the planner takes for ``computed``, the float32 plan of a bfloat16 one: what its
    widened operands would run."""
    return _first_row(computed, ())


# The rows that compute through transforms (their sums are not the direct ones).
_TRANSFORMS = ("fft", "winograd", "winograd-points", "winograd-strided", "winograd-depth")


def direct_sums(plan):
    """The row the planner takes for ``plan`` when the transforms are left out: the one whose sums
    FFT and Winograd fall back to."""
    return _first_row(plan, _TRANSFORMS)


def _first_row(plan, left_out):
    """The first row of ``cpu.ALGORITHMS`` but those named in ``left_out`` that serves and prefers
    ``plan``."""
    from . import ALGORITHMS  # the table is built from these rules: looked up when a plan is made

    return next(a for a in ALGORITHMS if a.name not in left_out and a.applies(plan) and a.prefers(plan))
