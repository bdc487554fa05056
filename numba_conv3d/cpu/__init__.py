"""CPU backend: the table of algorithms the planner chooses from, and the entry that runs a plan
(``execution.py``)."""
from functools import partial

import numpy as np

from ..algorithm import Algorithm
from ..precision import bfloat16, narrow, widen
from ..config import (BLOCKED_MIN_CHANNELS, BLOCK_CHANNELS, BLOCK_ROWS, BLOCK_VECTORS, CHANNEL_BLOCK_VECTORS,
                      CHANNEL_TALL_TILE, CHANNEL_WIDE_TILE, WINOGRAD_POINTS_MAX_WORKSPACE_BYTES)
from ..crossovers import (AMX_FEW_OUTPUTS_MIN_IN_CHANNELS, AMX_LOW_OUTPUT_WORK, AMX_LOW_WORK_IN_CHANNELS,
                          AMX_MIN_IN_CHANNELS, AMX_MIN_OUT_CHANNELS, AMX_MIN_OUTPUT_POSITIONS,
                          AMX_MIN_OUTPUT_WORK, AMX_MIN_REDUCTION, AMX_SMALL_VOLUME,
                          BFLOAT16_DOT_MAX_WINOGRAD_GAIN,
                          BFLOAT16_DOT_MIN_IN_CHANNELS, BFLOAT16_DOT_MIN_OUT_CHANNELS,
                          BFLOAT16_ROWS_MAX_WINOGRAD_GAIN,
                          BFLOAT16_ROWS_MIN_FILL, BFLOAT16_ROWS_POINTWISE_MIN_POSITIONS,
                          BFLOAT16_WIDENED_DEPTH_MAX_PLANE, BLOCKED_MIN_FILL,
                          DEPTHWISE_MAX_OUTPUT_WIDTH, DEPTHWISE_MIN_CHANNELS, FFT_MAX_WORKSPACE_BYTES,
                          FFT_MIN_GAIN, FLAT_MAX_NARROW_KERNEL_WIDTH, FLAT_MAX_OUTPUT_WIDTH,
                          GEMM_MIN_OUT_CHANNELS, GEMM_MIN_REDUCTION, GEMM_POINTWISE_MIN_CHANNELS,
                          GEMM_POSITIONS_PER_CHANNEL, GEMM_STRIDED_POSITIONS_PER_CHANNEL,
                          GEMM_UNIT_MIN_INPUTS, PLANE_GEMM_MIN_CHANNELS, PLANE_GEMM_MIN_POSITIONS,
                          POINTWISE_MAX_IN_CHANNELS,
                          ROW_BLOCKED_MAX_REDUCTION, ROW_BLOCKED_STRIDED_MAX_REDUCTION, TAP_GEMM_MAX_SHARE,
                          TAP_GEMM_MIN_CHANNELS, TAP_GEMM_WIDE_CHANNELS, TAP_GEMM_WIDE_MAX_SHARE,
                          WINOGRAD_DEEP_WIDE_MIN_TILES, WINOGRAD_DEPTH_MIN_COLUMNS, WINOGRAD_DEPTH_MIN_TASKS,
                          WINOGRAD_MAX_WEIGHT_BYTES, WINOGRAD_MIN_GAIN, WINOGRAD_POINTS_MIN_TILES,
                          WINOGRAD_POINTS_RANGES, WINOGRAD_STRIDED_MAX_WEIGHT_BYTES,
                          WINOGRAD_STRIDED_MIN_IN_CHANNELS, WINOGRAD_STRIDED_MIN_TILES)
from . import (amx_bfloat16, bfloat16_dot, blocked, channel_vectorized, depthwise, direct, fft, gemm,
               phase_flat, plane_gemm, pointwise, row_blocked, tap_gemm, winograd, winograd_depth,
               winograd_points, winograd_strided)
from .flipped import flipped_transpose
# The rules are re-exported: the planner's tests, jitted ``conv3d`` and the docs name them ``cpu.*``.
from .preferences import (BLOCKED, CHANNEL_VECTORIZED, ROW_BLOCKED, direct_sums, fft_gain,  # noqa: F401
                          flat_max_output_width, picked, prefers_bfloat16_amx, prefers_bfloat16_dot,
                          prefers_bfloat16_rows,
                          prefers_depthwise, prefers_fft, prefers_gemm, prefers_phase_flat,
                          prefers_plane_gemm, prefers_pointwise, prefers_tap_gemm, prefers_winograd,
                          prefers_winograd_depth,
                          prefers_winograd_points, prefers_winograd_strided, real_kernel, winograd_gain,
                          winograd_tiles_per_channel)

NAME = "cpu"


def _on_merged_rows(workspace_bytes):
    """An algorithm's ``workspace_bytes`` for the geometry its kernel runs (``ConvPlan.rows_merged``)."""
    return lambda plan: workspace_bytes(plan.rows_merged())


def _runner(compute):
    """An algorithm's ``run``: its ``compute`` given the plan's numbers (returning what it returns)."""
    def run(plan, x, weight, bias, out):
        return compute(x, weight, bias, plan.has_bias, out, plan.stride, plan.dilation, plan.pad_front,
                       plan.padded_size, plan.mode_code, plan.groups)

    return run


# The point-by-point Winograd row's ranges, in words.
_POINTS_RANGES = "; ".join(f"KxKxK and 1xKxK kernels with K = {taps}: >= {channels} channels, {low}-{high} "
                           "tiles per channel"
                           for taps, (channels, low, high) in WINOGRAD_POINTS_RANGES.items())

def _falling_back(run, flipped=False):
    """A transform row's ``run``: ``run``, then, where an output is not finite (an Inf or NaN in the
    operands, or an overflow in the transforms), the convolution again by ``direct_sums``, which give
    torch's NaN and Inf. With ``flipped``, a ``run_flipped``, whose fallback takes the flipped copy."""
    def checked(plan, x, weight, bias, out):
        if not run(plan, x, weight, bias, out):
            sums_weight = flipped_transpose(weight, plan.groups, False) if flipped else weight
            if out.dtype == np.uint16:
                _sums_of_bits(plan, x, sums_weight, bias, out)
            else:
                direct_sums(plan).run(plan, x, sums_weight, bias, out)

    return checked


def _sums_of_bits(plan, x, weight, bias, out):
    """``direct_sums`` of a bfloat16 plan whose row reads the input's bits (``Algorithm.operands``
    'bits'): on the input widened, the float32 sums rounded into ``out``'s bits."""
    computed = plan.computed()
    sums = np.empty(out.shape, np.float32)
    direct_sums(computed).run(computed, widen(x.view(bfloat16())), weight, bias, sums)
    out[...] = narrow(sums, bfloat16()).view(np.uint16)


def _winograd(name, reason, module, prefers, serves=None, flips=False, operands="computed"):
    """A Winograd row: ``module``'s ``compute`` falling back to the direct sums, its workspace and call
    bytes, served as ``module.serves`` (or ``serves``) says, on ``operands`` (``Algorithm.operands``);
    where ``flips``, also run on the unflipped weight of an input gradient (its ``compute(...,
    flipped=True)``)."""
    run_flipped = None
    if flips:
        run_flipped = _falling_back(_runner(partial(module.compute, flipped=True)), flipped=True)
    return Algorithm(name, reason, serves or module.serves, module.workspace_bytes,
                     _falling_back(_runner(module.compute)), prefers, operands=operands,
                     call_bytes=module.call_bytes, run_flipped=run_flipped)


ALGORITHMS = (
    Algorithm("bfloat16-amx", f"bfloat16 operands, AMX tiles (Intel), >= {AMX_MIN_IN_CHANNELS} input "
              f"channels per group and >= {AMX_MIN_OUTPUT_POSITIONS} output positions; below "
              f"{AMX_MIN_OUT_CHANNELS} output channels per group >= {AMX_FEW_OUTPUTS_MIN_IN_CHANNELS} input "
              "channels, else >= "
              f"{AMX_MIN_REDUCTION} input channels x taps and >= {AMX_MIN_OUTPUT_WORK} output channels x "
              f"taps per group and stride phase read (strided, or <= {AMX_SMALL_VOLUME} output positions: "
              f">= {AMX_LOW_WORK_IN_CHANNELS} input channels and >= {AMX_LOW_OUTPUT_WORK}): the padded "
              "input laid out once as stride phases of positions x pairs of input channels, blocks of 32 "
              "positions of a phase's grid x 32 output channels in four float32 tiles, each chunk of up "
              "to 32 input channels and tap two input tiles times two weight tiles (tdpbf16ps), float32 "
              "sums rounded once as they are stored (dense k3 layers of the networks suite with 64-512 "
              "channels: 2-14x the AVX512-BF16 dot products; strided k3: 2-6x)",
              amx_bfloat16.serves, amx_bfloat16.workspace_bytes, _runner(amx_bfloat16.compute),
              prefers_bfloat16_amx, operands="stored", call_bytes=amx_bfloat16.call_bytes),
    Algorithm("bfloat16-rows", "bfloat16 operands, AVX512-BF16; 1x1x1 without pads over >= "
              f"{BFLOAT16_ROWS_POINTWISE_MIN_POSITIONS} output positions a sample (strided: at unit stride "
              "on the positions it reads, copied out; 0.50-0.75x the widened GEMM), or >= "
              f"{BFLOAT16_DOT_MIN_OUT_CHANNELS} output channels per group on output rows (laid side by side "
              f"where pointwise in H and W) that fill >= {BFLOAT16_ROWS_MIN_FILL:.0%} of their vectors (16-, "
              "32-, 64-wide), not where the float32 plan takes FFT or Winograd with an estimated gain >= "
              f"{BFLOAT16_ROWS_MAX_WINOGRAD_GAIN}: the channel-blocked kernel on pairs of input channels "
              "(vdpbf16ps), vectors along output rows, 1x1x1 volumes of small planes as one row (U-Net and "
              "V-Net layers at 16^3-64^3: 0.56-0.94x the time of the channel-vectorized dot products; "
              "pointwise: 0.52-0.84x the widened GEMM)",
              bfloat16_dot.serves, _on_merged_rows(bfloat16_dot.rows_workspace_bytes),
              _runner(bfloat16_dot.compute_rows), prefers_bfloat16_rows, operands="stored"),
    Algorithm("bfloat16-dot", f"bfloat16 operands, AVX512-BF16, >= {BFLOAT16_DOT_MIN_OUT_CHANNELS} output "
              f"and >= {BFLOAT16_DOT_MIN_IN_CHANNELS} input channels per group, not where the float32 plan "
              f"takes FFT, Winograd with an estimated gain >= {BFLOAT16_DOT_MAX_WINOGRAD_GAIN}, Winograd "
              f"along D on planes of <= {BFLOAT16_WIDENED_DEPTH_MAX_PLANE} positions or a 1x1x1 "
              "GEMM: the "
              "channel-vectorized kernel on pairs of input channels, two products per lane "
              "and instruction (vdpbf16ps), float32 sums rounded once (dense k3 and k5: 1.1-2.9x the "
              "float32 path on widened operands)",
              bfloat16_dot.serves, bfloat16_dot.workspace_bytes, _runner(bfloat16_dot.compute),
              prefers_bfloat16_dot, operands="stored"),
    Algorithm("fft", f"real dtype, unit stride, an estimated gain of >= {FFT_MIN_GAIN} (cpu.fft_gain: large "
              "kernels) and of at least Winograd's where the planner takes Winograd: overlap-save over "
              "tiles of the output, real FFTs of each tile's padded input times the weight spectra, "
              "summed over input channels, back by one inverse FFT per output channel; tiles chosen by "
              "estimated time, weight spectra and buffers within "
              f"{FFT_MAX_WORKSPACE_BYTES >> 20} MiB",
              fft.serves, fft.workspace_bytes, _falling_back(fft.run), prefers_fft),
    Algorithm("depthwise", "real dtype, one input and one output channel per group (depthwise), >= "
              f"{DEPTHWISE_MIN_CHANNELS} channels, output rows of <= {DEPTHWISE_MAX_OUTPUT_WIDTH} columns: "
              "channels last, SIMD vectors of channels, "
              "blocks of consecutive output positions of a plane (across its rows) summed in registers, "
              "each tap one vector of weights times one vector of inputs per position (X3D-S's 3x3x3 "
              "layers at 5x5 to 20x20: 0.55-0.94x the time of the flat-phase kernel)",
              depthwise.serves, _on_merged_rows(depthwise.workspace_bytes), _runner(depthwise.compute),
              prefers_depthwise, operands="bits"),
    _winograd("winograd-points", "what the winograd row serves, with >= "
              f"{WINOGRAD_POINTS_MIN_TILES} tiles and {_POINTS_RANGES} (cpu.winograd_tiles_per_channel: few "
              "tiles for many channels): its transforms in three passes over a call's tiles (1x3x3 "
              "kernels: F(4x4, 3x3) wherever its estimated gain beats F(2x2, 3x3)'s, "
              "winograd_tiles.points_tile), every "
              "tile's input points, then per point a matrix product of its weight points (read once) "
              "with every tile's input points, then every tile's outputs; transformed input and products "
              f"in passes of at most {WINOGRAD_POINTS_MAX_WORKSPACE_BYTES >> 20} MiB (256-512 channels "
              "at 4x8x8 to 16x7x7, 5x5x5 with 128-256 at 4x8x8 to 8x16x16: 1.1-1.9x the fused kernel, GEMM "
              "and the channel-vectorized kernel; since that kernel leaves out its padding products, not "
              "float32 5x5x5 with 128 channels at 4x8x8, 0.64-0.80x its time there)",
              winograd_points, prefers_winograd_points, serves=winograd.serves, flips=True, operands="bits"),
    _winograd("winograd", "real dtype, 3x3x3, 1x3x3, 5x5x5 or 1x5x5 kernel at unit stride and dilation, "
              f"weight points within {WINOGRAD_MAX_WEIGHT_BYTES >> 20} MiB, an estimated gain of >= "
              f"{WINOGRAD_MIN_GAIN} (cpu.winograd_gain: more channels and tiles gain more): Winograd "
              "F(2x2x2, 3x3x3), 64 multiplies per channel pair and tile of 8 outputs instead of 216, or "
              f"on planes from 28x28 with >= {WINOGRAD_DEEP_WIDE_MIN_TILES} tiles of 2x4x4 outputs, F(2, 3) "
              "along D and F(4, 3) along H and W, 144 instead of 864 (1x3x3: F(2x2, 3x3), 16 instead of "
              "36, or on planes from 28x28 F(4x4, 3x3), 36 instead of 144; 5x5x5: F(2x2x2, 5x5x5), 216 "
              "instead of 1000), tiles "
              "flattened over the batch and volume in register blocks of output channels x SIMD vectors "
              "of tiles (float32, 3x3x3 with 32-256 channels at 16^3 to 8x56x56: 1.1-2.3x the "
              "register-blocked kernels; 5x5x5 with 32-128 at 16^3 to 32^3: 1.2-3.0x)",
              winograd, prefers_winograd, flips=True, operands="bits"),
    _winograd("winograd-strided", "real dtype, 3x3x3 kernel at stride 2 or 1x3x3 at stride 2 along H and "
              f"W, no dilation, >= {WINOGRAD_STRIDED_MIN_TILES} tiles and >= "
              f"{WINOGRAD_STRIDED_MIN_IN_CHANNELS} input channels per group, weight points within "
              f"{WINOGRAD_STRIDED_MAX_WEIGHT_BYTES >> 20} MiB: "
              "Winograd on the stride phases (per dimension, F(2, 2) on the even inputs and one tap on the "
              "odd ones: 5 points per 2 outputs), 125 multiplies per channel pair and tile of 8 outputs "
              "instead of 216 (1x3x3: 25 instead of 36), fused as the winograd row (64 -> 128 channels at "
              "16x56x56: 1.12-1.23x the channel-vectorized kernel; R(2+1)D's 64 -> 230 at 16x56x56: 1.27x "
              "GEMM)",
              winograd_strided, prefers_winograd_strided),
    Algorithm("tap-gemm", f"real dtype, NumPy's OpenBLAS; taken where the channel-vectorized kernel would "
              f"be, with >= {TAP_GEMM_MIN_CHANNELS} channels per group and at most {TAP_GEMM_MAX_SHARE:.0%} "
              f"of the (output, tap) pairs reading the input ({TAP_GEMM_WIDE_MAX_SHARE:.0%} from "
              f"{TAP_GEMM_WIDE_CHANNELS} channels): one matrix product per kernel tap by OpenBLAS's gemm, "
              "over only the outputs whose tap reads the input (4x8x8 k5 with 256 channels: 1.35-1.56x "
              "the channel-vectorized kernel, now taken by Winograd point by point; 4x14x14 k3 with 512: "
              "1.07-1.16x)",
              tap_gemm.serves, tap_gemm.workspace_bytes, _runner(tap_gemm.compute), prefers_tap_gemm,
              run_flipped=_runner(tap_gemm.correlate_flipped)),
    _winograd("winograd-depth", "real dtype, NumPy's OpenBLAS, a 3x1x1 kernel at unit stride and dilation "
              f"without pads along H and W, >= {WINOGRAD_DEPTH_MIN_TASKS} tasks (sample x group x pair of "
              f"output planes x block of plane columns), planes of >= {WINOGRAD_DEPTH_MIN_COLUMNS} "
              "positions: Winograd F(2, 3) along D, the input planes of a "
              "pair of output planes transformed to 4 points, 4 products of whole-plane columns by "
              "OpenBLAS's gemm where per-plane products make 6, the outputs transformed back (3x1x1 "
              "layers of (2+1)-D networks: 1.25-1.49x the per-plane products and the blocked kernel)",
              winograd_depth, prefers_winograd_depth),
    Algorithm("plane-gemm", f"real dtype, NumPy's OpenBLAS, a KDx1x1 kernel (KD > 1) at unit stride and "
              f"without pads along H and W, >= {PLANE_GEMM_MIN_CHANNELS} input and output channels per "
              f"group, >= {PLANE_GEMM_MIN_POSITIONS} output positions: per tap, the tap's weights times "
              "the input planes it reads, in place, by OpenBLAS's gemm, added onto the output (3x1x1 "
              "layers of (2+1)-D networks with 230-576 channels: 1.14-1.21x the blocked kernel and GEMM)",
              plane_gemm.serves, plane_gemm.workspace_bytes, _runner(plane_gemm.compute), prefers_plane_gemm),
    Algorithm("pointwise", f"real dtype, a 1x1x1 kernel without pads (any stride), >= {BLOCK_CHANNELS} "
              f"output and <= {POINTWISE_MAX_IN_CHANNELS} input channels per group, >= {BLOCK_VECTORS} SIMD "
              "vectors of output positions a sample (forced on fewer, the blocked kernel runs, with the "
              "same sums): strips of output positions (flattened across rows and planes) x blocks of "
              f"{BLOCK_CHANNELS} output channels summed in registers, in panels of strips whose input is "
              "read in place (unit stride) or gathered once, the weights broadcast as they lie (X3D-S's "
              "pointwise layers and shortcuts in network order: 0.52-0.97x GEMM's time; 1-4 input "
              "channels: 0.52-0.60x the blocked kernel's)",
              pointwise.serves, pointwise.workspace_bytes, _runner(pointwise.compute), prefers_pointwise),
    Algorithm("gemm", f"real dtype: a 1x1x1 unit-stride layer (>= {GEMM_UNIT_MIN_INPUTS} input channels "
              f"per group, > {POINTWISE_MAX_IN_CHANNELS} or too few positions or output channels for the "
              "pointwise row; the input is the matrix), a small output volume for many channels (>= "
              f"{GEMM_MIN_OUT_CHANNELS} output channels and >= {GEMM_MIN_REDUCTION} input channels x taps "
              f"per group, <= {GEMM_POSITIONS_PER_CHANNEL} output positions per channel, "
              f"{GEMM_STRIDED_POSITIONS_PER_CHANNEL} when strided) or a strided 1x1x1 projection (>= "
              f"{GEMM_POINTWISE_MIN_CHANNELS} output channels per group): im2col "
              "columns of whole output planes times the weight matrix by NumPy's BLAS (2x7x7 with 512 "
              "channels: 2.2x the blocked kernel, pointwise 1.1-1.9x; float32 small volumes at unit "
              "stride with more than 3 taps go to the channel-vectorized kernel instead)",
              lambda plan: not plan.is_complex, _on_merged_rows(gemm.workspace_bytes), _runner(gemm.compute),
              prefers_gemm),
    Algorithm("phase-flat", f"real dtype, < {BLOCKED_MIN_CHANNELS} output channels per group (depthwise), "
              f"output rows <= {FLAT_MAX_NARROW_KERNEL_WIDTH} x the W stride wide for k <= 3 along W, else "
              f"<= {FLAT_MAX_OUTPUT_WIDTH}: the group's padded input split into stride "
              "phases, outputs summed over flattened positions (across rows and planes) in blocks of "
              "SIMD vectors (depthwise k3 on 5x5 planes: 3.0x the row-blocked kernel; 10x10 from "
              "stride 2: 2.4x)",
              lambda plan: not plan.is_complex, _on_merged_rows(phase_flat.workspace_bytes),
              _runner(phase_flat.compute),
              prefers_phase_flat),
    Algorithm("channel-vectorized", f"real dtype, rows cut into whole SIMD vectors would compute lanes past "
              "their end: tiles of output positions (rows x columns: "
              f"{'{}x{} or {}x{}'.format(*CHANNEL_WIDE_TILE, *CHANNEL_TALL_TILE)}) x "
              f"{CHANNEL_BLOCK_VECTORS} SIMD vectors of output channels summed in registers, each chunk of "
              "weights added to all of a task's planes, each tap only at the positions that read the input "
              "(56-wide stem, 1x7x7: 1.22-1.25x the blocked kernel; 4x8x8 with 32-256 channels: 1.07-1.45x); "
              "also float32 small volumes for many channels at unit stride where GEMM's rule holds, or "
              "5x5x5 kernels with few Winograd tiles for fewer than 192 channels, its packed weights kept "
              "between calls (2x7x7 and 4^3 with 128-512 channels: 1.06-1.47x GEMM; V-Net's 128 channels "
              "at 4x8x8 k5: 1.25-1.56x point-by-point Winograd)",
              lambda plan: not plan.is_complex, _on_merged_rows(channel_vectorized.workspace_bytes),
              _runner(channel_vectorized.compute_kept), picked(CHANNEL_VECTORIZED)),
    Algorithm("blocked", f"real dtype, >= {BLOCKED_MIN_CHANNELS} output channels per group filling >= "
              f"{BLOCKED_MIN_FILL:.0%} of its blocks: blocks of {BLOCK_CHANNELS} channels x {BLOCK_VECTORS} "
              "SIMD vectors of columns summed in registers (float32 dense k3: 130-220 GFLOP/s on 2 cores)",
              lambda plan: blocked.serves(plan.is_complex, plan.out_per_group),
              _on_merged_rows(blocked.workspace_bytes), _runner(blocked.compute), picked(BLOCKED)),
    Algorithm("row-blocked", f"real dtype, < {BLOCKED_MIN_CHANNELS} output channels per group "
              f"(one-channel, depthwise), or too few to fill {BLOCKED_MIN_FILL:.0%} of the blocked "
              f"kernel's {BLOCK_CHANNELS}-channel blocks (4 of 8: 1.3-1.5x faster than it), or 3 taps wide "
              f"along W over at most {ROW_BLOCKED_MAX_REDUCTION} input channels x taps per group "
              f"({ROW_BLOCKED_STRIDED_MAX_REDUCTION} at stride 2; first layers with 1-4 input channels: "
              "1.0-1.9x the channel-blocked kernel): blocks of "
              f"{BLOCK_ROWS} output rows x {BLOCK_VECTORS} SIMD vectors of columns summed in registers "
              "(one-channel k7: 2.7x the direct kernel)",
              lambda plan: not plan.is_complex, _on_merged_rows(row_blocked.workspace_bytes),
              _runner(row_blocked.compute), picked(ROW_BLOCKED)),
    Algorithm("direct", "direct convolution over per-task padded input slabs; serves every argument "
              "(complex, fewer than 4 output channels per group)",
              lambda plan: True, _on_merged_rows(direct.workspace_bytes), _runner(direct.compute)),
)


# The entry that runs a plan, once the table above exists (it looks rows up there).
from .execution import execute, execute_flipped, reads_flipped  # noqa: E402,F401
