"""The CPU planner's measured crossovers: where each row of the algorithm table is taken over the
others (thresholds, and the constants of the cost estimates that compare them), each with the
measurements it was fitted on. The kernels' own tunables are in ``config.py``, the gradients' routes in
``grad_crossovers.py``.

Numba freezes module globals into compiled code, so a change here takes effect on the next compilation.
"""
from .config import VECTOR_BYTES

# How the planner weighs the channel-vectorized kernel against the channel-blocked one (lanes past the
# output's last column or channel are computed and thrown away): it prefers the channel-vectorized
# kernel when that keeps more than ``CHANNEL_VECTORS_MARGIN`` times the share of computed lanes the
# channel-blocked kernel keeps, counting the channel-blocked kernel's lanes in whole blocks of
# ``BLOCK_VECTORS`` vectors as ``1 + WIDE_BLOCK_GAIN`` lanes (they amortize their loads over more
# multiply-adds). Measured per lane kept, channel-vectorized time / channel-blocked time was 0.93-1.1
# against narrower blocks (widths 7, 14, 28, 32, 56, 99) and 1.16 against whole blocks (width 40)
# (same process, alternating).
CHANNEL_VECTORS_MARGIN = 1.05
WIDE_BLOCK_GAIN = 0.15

# With AVX2, the planner also prefers the channel-vectorized kernel where a group's reduction (input
# channels x taps) is at least ``CHANNEL_VECTORS_MIN_REDUCTION`` and it keeps at least
# ``CHANNEL_VECTORS_LONG_SHARE`` of the share of computed lanes the channel-blocked kernel keeps: it adds
# chunks of input channels across the rows of a task with their weights in L1, where the channel-blocked
# kernel streams every block's weights again for each block of columns. Measured on a 2-core Zen 2
# (channel-vectorized speed / channel-blocked speed, same process): 64 -> 64 k3 at 16x56x56 1.20, 96 ->
# 32 k3 at 64^3 1.08, 32 -> 32 k5 1.08, 128 -> 128 1x3x3 at 16x28x28 1.17 (reductions of 1152-4000);
# 32 -> 32 k3 at 32^3 0.96, 16 -> 32 k3 0.96, 64 -> 144 1x3x3 0.98, 144 -> 64 3x1x1 0.76, the 3x7x7
# stem 0.91 (reductions of 432-864). Not measured with AVX-512, where it stays off.
CHANNEL_VECTORS_MIN_REDUCTION = 1000 if VECTOR_BYTES == 32 else 2 ** 62
CHANNEL_VECTORS_LONG_SHARE = 0.9

# Least share of its blocks' channels that a group's output channels must fill for the planner to take
# the channel-blocked kernel rather than the row-blocked one (whose time does not depend on how the
# channels fall into blocks). Measured with 8-channel blocks, k3 at 32^3, 8-32 input channels per group
# (same process, alternating; row-blocked time / channel-blocked time): 4 of 8 channels 0.67-0.75 (also
# 0.76 at 28 and 0.86 at 64 columns), 9 of 16 0.75, 5 of 8 0.86, 10 of 16 0.81, 6 of 8 0.98-1.01, 12 of
# 16 1.12, 7 of 8 1.04, 20 of 24 1.23, 8 of 8 1.58.
BLOCKED_MIN_FILL = 0.7

# Where the row-blocked kernel beats the channel-blocked one even with full channel blocks: kernels 3
# taps wide along W whose reduction (input channels x taps per group) is at most ROW_BLOCKED_MAX_REDUCTION
# at unit stride along W, ROW_BLOCKED_STRIDED_MAX_REDUCTION at stride 2 (the first layers of U-Nets and
# video networks, 1-4 input channels). Measured on 2-core Zen 4 (float32, same process, alternating,
# medians of 5; channel-blocked time / row-blocked time, 8-64 output channels at 32^3, 64^3 and
# 16x112x112): 3x3x3 unit stride reductions 27 1.27-1.71, 54 0.99-1.43, 81 1.03-1.35, 108 0.98-1.25,
# 135 0.92-1.11, 162 0.89-1.14, 216 0.79-1.12; 1x3x3 reductions 9-54 1.04-1.95, 72 0.97-1.23; stride
# (1, 2, 2) 1x3x3 reductions 9 1.17-1.53, 18 1.04-1.29, 27 0.89-1.16, 36-72 0.69-1.07; 3x3x3 stride 2
# 27 0.78-1.18, beyond 0.59-1.03. Kernels 5 wide lose (5x5x5 and 1x5x5 reductions 100-250: 0.55-0.82);
# 1 wide ones vary from run to run (1x1x1 and 3x1x1 reductions 2-12: 0.2-1.66). float64 alike (1 -> 16
# k3 at 64^3 1.37, 3 -> 32 at 32^3 1.18, 2 -> 32 1x3x3 at 16x112x112 1.70, 4 -> 16 k3 1.01).
ROW_BLOCKED_MAX_REDUCTION = 108
ROW_BLOCKED_STRIDED_MAX_REDUCTION = 18

# Where the planner prefers the GEMM algorithm to the register-blocked kernels (``cpu.prefers_gemm``):
# at least ``GEMM_MIN_OUT_CHANNELS`` output and ``GEMM_MIN_REDUCTION`` (input channels x taps) per
# group, and at most ``GEMM_POSITIONS_PER_CHANNEL`` output positions per sample for each output channel
# (``GEMM_STRIDED_POSITIONS_PER_CHANNEL`` when strided); strided 1x1x1 projections from
# ``GEMM_POINTWISE_MIN_CHANNELS`` output channels at any size. Measured on the layers of the networks
# suite (2-core Zen 2, AVX2, float32, same process; blocked-kernel time / GEMM time): unit stride 4x4x4
# with 128-256 channels 1.2-1.9, 2x7x7 and 4x14x14 with 460-512 channels 1.5-2.3, 4x14x14 with 256
# channels 0.75 (3 positions per channel), 8x28x28 with 256 channels 0.78-0.86, V-Net's k5 at 4x8x8
# with 128 channels 0.72 (2 per channel) and 256 channels 0.92 (1 per channel); stride 2 at 3-12
# positions per channel 1.4-1.9, at 49-98 0.64-1.0; strided 1x1x1 with 48-512 channels 1.3-3.6 (24
# channels 0.92); depthwise and few-channel layers 0.03-0.5. Since the channel-vectorized kernel's tiles
# and skipped padding taps (2-core Zen 4, float32, same process, GEMM time / best other time): 1
# position per channel (V-Net's 256 channels at 4x8x8 k5) 1.27, 1.5 (C3D conv4a, conv4b, MC3's 512
# channels at 16x7x7) 1.0-1.25; 0.125-0.25 (4x4x4 and 2x7x7 with 256-512 channels) 0.6. Since that kernel
# keeps its packed weights between calls and leaves out padding products, it takes the unit-stride float32
# layers of more than GEMM_FEW_TAPS taps below GEMM_POSITIONS_PER_CHANNEL (``cpu.small_dense_volume``:
# GEMM's time / its time 1.06-1.47).
GEMM_MIN_OUT_CHANNELS = 96
GEMM_MIN_REDUCTION = 96
GEMM_POSITIONS_PER_CHANNEL = 0.75
GEMM_STRIDED_POSITIONS_PER_CHANNEL = 16

# Where the planner takes the register-blocked pointwise kernel (``cpu/pointwise.py``) for a 1x1x1 layer
# without pads it serves: at most POINTWISE_MAX_IN_CHANNELS input channels per group (more are GEMM's:
# OpenBLAS's packing pays for itself over long reductions). Measured against the planner's previous pick
# (2-core Xeon with AVX-512, float32 but where noted, same process, alternating, medians; pointwise time /
# previous). Alone: X3D-S's unit-stride layers, 24-192 -> 54-432 at 13x5x5 to 13x40x40, 0.52-0.78
# (GEMM); 1-4 input channels at 32^3-32x64x64 0.52-0.60 (blocked kernel); 64 -> 128 in 2-4 groups
# 0.49-0.55; float64 0.62-0.77; 256 -> 256 at 8x14x14 0.88-0.98, 384 -> 384 at 4x14x14 0.85-1.01, 512 ->
# 512 at 2x7x7 1.03-1.21, 512 -> 2048 at 8x14x14 1.29, 1024 -> 1024 at 8^3 2.2. In network order (inputs
# from memory): X3D-S's pointwise layers 0.52-0.97 (its stride (1, 2, 2) shortcuts 0.55-0.97), the
# network's convolutions 0.85; ResNet stride-2 downsamplings with 64-256 inputs 0.72-1.09.
POINTWISE_MAX_IN_CHANNELS = 256

# Where the planner prefers the tap-by-tap products to the channel-vectorized kernel
# (``cpu.prefers_tap_gemm``, only where that kernel is the pick): at least TAP_GEMM_MIN_CHANNELS input
# and output channels per group, and at most TAP_GEMM_MAX_SHARE of the (output, tap) pairs reading the
# input (``tap_gemm.read_share``); TAP_GEMM_WIDE_MAX_SHARE from TAP_GEMM_WIDE_CHANNELS input and output
# channels per group. Measured on 2-core Zen 4 (float32, same process, 10 ms pause before each call,
# channel-vectorized time / tap-by-tap time): 4x8x8 k5 with 256 channels (share 0.50) 1.35-1.56, with
# 128 1.07-1.13; 4x14x14 k3 (share 0.75) 512 -> 512 1.07-1.16, 256 -> 512 0.99-1.15, 512 -> 256 0.96;
# 8x8x8 k3 (share 0.77) 128 -> 256 0.86, 64-128 -> 64-128 0.62-0.74; 16x7x7 1x3x3 with 512 (share 0.82)
# 0.97.
TAP_GEMM_MIN_CHANNELS = 128
TAP_GEMM_MAX_SHARE = 0.6
TAP_GEMM_WIDE_CHANNELS = 512
TAP_GEMM_WIDE_MAX_SHARE = 0.8

# Where the planner takes the per-plane products of KDx1x1 kernels (``cpu/plane_gemm.py``,
# ``cpu.prefers_plane_gemm``; before GEMM and the register-blocked kernels): a kernel deeper than one
# plane, at least PLANE_GEMM_MIN_CHANNELS input and output channels per group and PLANE_GEMM_MIN_POSITIONS
# output positions per sample. Measured on 2-core Zen 4 (float32, same process, medians of 7; the
# planner's previous pick / plane products): 3x1x1 from 230-576 to 128-256 channels over 4x14x14 to
# 8x28x28 1.14-1.21 (torch 0.95-1.06x the plane products); 144 -> 64 and 64 -> 144 at 16x56x56 0.84-0.91,
# 45 -> 64 0.70 (the blocked kernel keeps its sums in registers across taps, the products pass the
# output once per tap); 1152 -> 512 over 2x7x7 0.48 (49 columns a product).
PLANE_GEMM_MIN_CHANNELS = 128
PLANE_GEMM_MIN_POSITIONS = 256

# 3x1x1 kernels take F(2, 3) along D (``cpu/winograd_depth.py``, ``cpu.prefers_winograd_depth``; before
# the per-plane products) from WINOGRAD_DEPTH_MIN_TASKS tasks (sample x group x pair of output planes x
# block of 1024 plane columns; each task's products run on one thread) on planes of at least
# WINOGRAD_DEPTH_MIN_COLUMNS positions (the products' columns). Measured on 2-core Zen 4 (float32,
# alternating in one process, medians of 7; the planner's previous pick / F(2, 3) along D): R(2+1)D's
# temporal layers 144 <-> 64 at 16x56x56 1.43-1.45 (batch 2 1.43), 230-288 -> 128 at 8x28x28 1.25-1.31,
# 460-576 -> 256 at 4x14x14 (2 tasks) 1.27; 16-64 channels at 16x56x56 1.47-1.49, 64 at 8x28x28 1.48;
# on 7x7 planes 256 at 4x7x7 1.18, 921 -> 512 at 4x7x7 0.89, 1152 -> 512 at 2x7x7 (1 task) 0.53, batch 2
# 1.01.
WINOGRAD_DEPTH_MIN_TASKS = 2
WINOGRAD_DEPTH_MIN_COLUMNS = 64

# bfloat16 by AVX512-BF16 dot products (``cpu/bfloat16_dot.py``) against the float32 path on widened
# operands (2-core Zen 4, same process, alternating): 1.1-2.9x on dense k3, k5, 3x7x7, 3x1x1 and 1x1x1
# layers with >= 16 output and >= 2 input channels per group; slower on one input channel (0.8x),
# depthwise (0.2x), strided 1x1x1 projections (0.8x) and where Winograd's estimated gain
# (``cpu.winograd_gain``) reaches BFLOAT16_DOT_MAX_WINOGRAD_GAIN (estimates of 2026-12-06, the
# networks suite's layers, bfloat16 dot products' time / Winograd's on widened operands: gain 1.92-2.05
# 0.63-1.02x, 2.12 0.98x, 2.17 1.09-1.15x). With the 2x4x4 tiles of 3x3x3 kernels on wide planes (same
# day, later; dot products' time / Winograd's): estimated gains 2.29-3.30 1.08-1.47x (C3D's conv2a,
# R3D's layer1, R(2+1)D's layer1 spatial, U-Net's up1.conv2), 2.07-2.12 1.03-1.13x, 1.57-1.77
# 0.81-1.02x: the threshold stays.
BFLOAT16_DOT_MIN_OUT_CHANNELS = 16
BFLOAT16_DOT_MIN_IN_CHANNELS = 2
BFLOAT16_DOT_MAX_WINOGRAD_GAIN = 2.15
# 1x1x1 layers whose float32 plan takes the GEMM never take the dot products: those without pads over
# at least BFLOAT16_ROWS_POINTWISE_MIN_POSITIONS positions a sample take the dot products along rows
# (below), the others OpenBLAS's float32 product on widened operands. Channel-vectorized dot products'
# time / widened (2026-12-07, Zen 4, same process, alternating, medians of 15 over 3 rounds): X3D-S's
# pointwise layers over 325-83200 positions 1.07-1.47x; over 64 positions (256 from 128 at 4x4x4) 0.86x.
# Later that day, medians of 15 to 21, 8-108 -> 32 and 216 channels, alone / each call after a depthwise
# layer of 13x80x80 (as in a network): one position (X3D-S's squeeze-excitation layers) 1.03-1.53x /
# 1.23-1.47x; 16 positions 0.80-1.40x / 1.00-1.39x (-> 216 channels 0.80-0.97x alone, 1.00-1.06x after
# the depthwise layer).
# Layers whose float32 plan takes Winograd along D (``winograd-depth``: 3x1x1 unit-stride kernels) take
# it on widened operands where the output planes hold at most BFLOAT16_WIDENED_DEPTH_MAX_PLANE positions:
# the dot products' kernel gathers each input plane into the slabs of the 3 output planes that read it,
# as much work as the 3 taps' products (2026-12-06, Zen 4, same process, alternating, medians of 9; dot
# products' time / widened Winograd): 64-576 -> 64-256 channels on planes of 14x14 to 40x40 (4-16
# planes) 0.99-1.44x, R(2+1)D's temporal layers with 230-576 channels 1.06-1.22x; on 48x48 and 56x56
# planes 0.71-0.82x (there the dot products ran 1.6x faster per position).
BFLOAT16_WIDENED_DEPTH_MAX_PLANE = 1600
# The dot products along output rows (``bfloat16-rows``: the channel-blocked kernel on pairs) against the
# channel-vectorized ones and the widened float32 rows (2026-12-07, Zen 4, same process, alternating,
# medians of 7-9; rows' time / the plan's before): where output rows fill whole vectors (U-Net and V-Net
# layers at 16^3 to 64^3, k3 and k5, 16-128 channels, 0.56-0.94x; C3D's 112-wide conv1a 0.98x) or rows
# laid side by side nearly do (R(2+1)D's temporal layers at 8x28x28 and 4x14x14, 784 and 196 columns,
# 94-100%: 0.61-0.80x), where they fill 77-88% (2x7x7 laid side by side, 49 columns: 1.07-1.12x; 28- and
# 56-wide planes: 1.11-1.29x; 4^3 and 8^3: 1.4-2.1x) and the channel-vectorized kernel takes them; 1x1x1
# layers at unit stride over 64-83200 positions a sample 0.52-0.84x, over 1 position 0.94-1.23x. Strided
# 1x1x1 layers without pads run at unit stride on the positions they read, copied out first (2026-12-07,
# Zen 4, same process, alternating, medians of 11; rows' time / the widened GEMM's): the downsampling
# projections of 3-D ResNets (64-256 -> 128-512 at stride 2 and (1, 2, 2), 98-3136 positions, batch 1
# and 2) 0.50-0.75, X3D-S's shortcuts (24-96 -> 24-192 at (1, 2, 2)) 0.53-0.72; 8 positions 0.94.
# Against Winograd on widened operands: estimated gains 2.17-2.36 0.75-0.99x, 2.64-3.16 1.11-1.26x.
BFLOAT16_ROWS_MIN_FILL = 0.9
BFLOAT16_ROWS_MAX_WINOGRAD_GAIN = 2.5
BFLOAT16_ROWS_POINTWISE_MIN_POSITIONS = 64

# bfloat16 on AMX tiles (``cpu/amx_bfloat16.py``, ``cpu.prefers_bfloat16_amx``) against the planner's
# pick without them (the AVX512-BF16 dot products, or the float32 kernels on widened operands; 2-core Xeon
# with AMX, same process, alternating, minimum of 3 medians of 5; AMX's time / the other's). Measured
# again on 2026-12-07 once the layout and the stores were 2-3x faster:
# - dense k3 layers of the networks suite with 64-512 channels 0.07-0.45; 8-32 -> 8 channels at 16^3-32^3
#   0.31-0.63 (8 -> 8 at 32^3 0.49-1.07 in two runs); 3 -> 16-32 at 32^3-64^3 0.51-0.77; the 3x7x7
#   stems 0.38-0.42;
# - strided layers: k3 at stride 2 with 8-64 input channels 0.17-0.63 (output channels x taps / phases
#   read 54-432), 4 -> 16 0.93, 3 -> 16 1.19; 2x2x2 at stride 2 with 64-128 -> 32-128 work 0.54-0.71,
#   16 -> 16 and 8 -> 16 (work 16) 0.93-1.10; 1x1x1 at stride 2 (one phase read) 0.52-0.76 for 64-128
#   outputs, 24 -> 24 at (1, 2, 2) 1.25;
# - unstrided 1x1x1 layers: 64-80 -> 128-192 at 13x40x40-32^3 0.44-0.51; 32-64 -> 32-108 on volumes of
#   512-6272 positions 0.58-0.79, 8-16 -> 24-64 at 16^3 0.84-1.07; 32-64 -> 16-32 at 32^3 and 40 -> 24 at
#   16x28x28 0.98-1.35 (the rows kernel does well on large volumes); 16 -> 8-16 1.09-1.13; one position
#   (squeeze-excitation, 256-432 -> 64-192) 1.11-1.36;
# - depthwise layers 14-20x and 2 channels per group 5x (a block of 32 output channels and a chunk of
#   input channels per group, nearly all zeros);
# - fewer than 8 output channels: 32-128 input channels 0.47-0.84 (32 -> 2 at k5 and k3, 64 -> 1 at k3
#   and 1x1x1, 32-128 -> 3 at 1x1x1); 8-24 input channels 0.66-2.27 (16 -> 2 at 64^3 0.66, 8 -> 4 0.79,
#   24 -> 2 1.08, 16 -> 1 at k5 1.04, 4 -> 2 1.66, 8 -> 1 2.27, 2 groups of 8 -> 2 1.83).
# So: at least AMX_MIN_IN_CHANNELS input channels per group and AMX_MIN_OUTPUT_POSITIONS output
# positions a sample; below AMX_MIN_OUT_CHANNELS output channels per group, at least
# AMX_FEW_OUTPUTS_MIN_IN_CHANNELS input channels; else AMX_MIN_REDUCTION input channels x taps and
# AMX_MIN_OUTPUT_WORK output channels x taps per stride phase read, or, on strided layers and on volumes
# of at most AMX_SMALL_VOLUME output positions, AMX_LOW_WORK_IN_CHANNELS input channels and
# AMX_LOW_OUTPUT_WORK.
AMX_MIN_IN_CHANNELS = 3
AMX_MIN_OUT_CHANNELS = 8
AMX_MIN_OUTPUT_POSITIONS = 32
AMX_MIN_REDUCTION = 64
AMX_MIN_OUTPUT_WORK = 128
AMX_SMALL_VOLUME = 8192
AMX_LOW_WORK_IN_CHANNELS = 8
AMX_LOW_OUTPUT_WORK = 32
AMX_FEW_OUTPUTS_MIN_IN_CHANNELS = 32
# Its 1x1x1 layers lay planes of fewer than BFLOAT16_ROWS_MERGE_BELOW positions side by side as one row; a
# row per plane from there (2026-12-07, same process; its time / one row for the whole volume): 20x20, 16x16
# 0.69-0.91, 14x14 0.90, 10x10 0.85-1.0, at batch 2 1.0 (one row left the tasks only output channels to
# split, each gathering the whole input: 2 threads as fast as 1); 5x5 2.46 (stays merged).
BFLOAT16_ROWS_MERGE_BELOW = 64
# So do planes of up to BFLOAT16_ROWS_MERGE_MANY_CHANNELS_UP_TO positions for at least
# BFLOAT16_ROWS_MERGE_MIN_OUT_CHANNELS output channels per group, which leave the tasks enough channel
# blocks to split while a row per plane fills its blocks of 3 vectors poorly (8x8: 4 vectors, two blocks;
# 2026-12-07, same process, medians of 15; one row's time / a row per plane): 8x8 planes for 256-2048
# output channels 0.71-0.90 (the pointwise convolutions of bfloat16 transposed 2x2x2 layers), 10x10 for
# 512 0.78; 128 output channels at 8x8 1.02-1.04, 216 at 10x10 1.03, 256 at 14x14 1.04, 512 at 16x16 0.97.
BFLOAT16_ROWS_MERGE_MANY_CHANNELS_UP_TO = 128
BFLOAT16_ROWS_MERGE_MIN_OUT_CHANNELS = 256

# Kernels of at most GEMM_FEW_TAPS taps (R(2+1)D's 3x1x1 temporal layers) give the register-blocked
# kernels little reuse of each gathered input: GEMM from GEMM_FEW_TAPS_POSITIONS_PER_CHANNEL positions
# per channel (2-core Zen 4, AVX-512, float32, same process; planner's previous time / GEMM time, 3x1x1
# layers with 128-576 input and 128-256 output channels: 1-16 positions per channel 1.24-2.05, 49
# per channel 0.72-1.52, 784 per channel 0.58).
GEMM_FEW_TAPS = 3
GEMM_FEW_TAPS_POSITIONS_PER_CHANNEL = 16

# GEMM for strided 1x1x1 projections from GEMM_POINTWISE_MIN_CHANNELS output channels (Zen 4, same process,
# alternating, medians of 7; best other kernel's time / GEMM's): 8-32 output channels from 4-64 inputs at
# 8x28x28 to 13x80x80 1.05-2.13 (X3D's 24 -> 24 shortcut at 13x80x80 1.88), 8 -> 16 and 8 -> 24 at stride 2
# 0.80-0.98; 32 from Zen 2 (24 channels 0.92 there).
GEMM_POINTWISE_MIN_CHANNELS = 8

# A 1x1x1 convolution at unit stride without pads is one matrix product per sample and group with the
# input itself as the columns (no im2col): the planner takes GEMM for it from ``GEMM_UNIT_MIN_INPUTS``
# input channels per group (and 2 output channels). Measured against the register-blocked kernels (Zen
# 2, same process): 1.1-1.9x on every pointwise layer of X3D-S, 32 -> 3 at 64^3 1.7x, 64 -> 128 at
# 32^3 1.9x, 54 -> 8 on a 1x1x1 volume 1.8x.
GEMM_UNIT_MIN_INPUTS = 8

# Where the planner prefers Winograd F(2x2x2, 3x3x3) (``cpu/winograd.py``, 3x3x3 kernels at unit stride
# and dilation; the other kernels it serves follow the same estimate, see below) to the direct kernels
# (``cpu.winograd_gain``). Per tile and channel pair, the direct
# kernels make 8 x 27 multiply-adds where Winograd makes 64, at about the same rate; Winograd adds its
# input and output transforms, which cost about WINOGRAD_TRANSFORM_PAIRS channel pairs' multiplies per
# tile for each input and output channel (so they count C_in + C_out against C_in * C_out), and the
# weight transform, once per call, which costs about WINOGRAD_WEIGHT_TILES tiles' multiplies per
# channel pair. Estimated gain: 3.375 * fill / (1 + WINOGRAD_WEIGHT_TILES / tiles +
# WINOGRAD_TRANSFORM_PAIRS * (C_in + C_out) / (C_in * C_out)), fill being the share of the tiles'
# outputs inside the output (batch included in the tiles). The planner takes Winograd from
# WINOGRAD_MIN_GAIN, with at most WINOGRAD_MAX_WEIGHT_BYTES of weight points (64 per 27 weights): each
# chunk of tiles streams all of them, from memory once they outgrow the caches (384 -> 128 channels,
# 12.6 MB, at 16^3: 2.17x; 256 -> 256, 16.8 MB, at 4x28x28: 2.14x; 512 -> 256 and 512 -> 512, 33.5
# and 67 MB, at 8^3 to 4x14x14: 0.80-0.92x where the estimate said 0.96-1.27), and not where the
# planner takes GEMM (small volumes for many channels: 1x3x3 kernels with 256 -> 460-576 channels at
# 4x14x14 0.62x where the estimate said 1.16; 3x3x3 at 4^3 0.23-0.51x). Fitted on a sweep
# (2-core Zen 2, float32, same process; previous choice's time / Winograd's, 130 layers of 3 -> 32 to
# 512 -> 512 channels at 4^3 to 8x56x56, batch 1 and 2): large volumes 16 channels 0.71-0.76, 32
# channels 1.10-1.25, 64 1.53-1.82, 128 1.89-2.32, 256 2.14; small volumes cross over with more
# channels (128 channels at 8^3 1.09, 2x14x14 1.00-1.42, 4^3 0.30-0.51). Of the 36 layers it picks,
# the slowest gained 0.90x (64 -> 128 channels at 8^3, batch 2, where the blocked kernel's rows are
# one vector), the others 1.08-2.32x; 5 layers with gains of 1.15-1.38x are left to the direct
# kernels. float64 gains more at the same points (1.4-2.0x from 32 channels at 32^3 and 64 at 16^3).
# 1x3x3 kernels (F(2x2, 3x3): 2.25 direct multiplies per Winograd multiply) on the layers of MC3 and
# R(2+1)D: 128-256 channels at 16x28x28 and 16x14x14 1.42-1.67x, 64 -> 144 at 16x56x56 1.36x, 128 ->
# 230-288 at 8x28x28 1.62-1.65x, 64 channels 0.98-1.06x, 16-32 channels 0.65-0.74x (estimate within
# 0.1 of the measured gain). 5x5x5 kernels (F(2x2x2, 5x5x5): 4.63 direct multiplies per Winograd
# multiply; 2-core Zen 4, C -> C channels at 8^3 to 32^3 and V-Net's layers, batch 1 and 2): the same
# constants estimate 1.49-3.11 where it measured 1.24-3.04x (within 0.1 from 32^3, 0.4-0.8 optimistic
# at 16^3); 16 channels estimate 0.66-0.99 (measured 0.44-1.30), 32 channels at 8^3 0.90 (0.34).
WINOGRAD_WEIGHT_TILES = 150

# 1x3x3 kernels take F(4x4, 3x3) (36 points per 16 outputs, where F(2x2, 3x3) takes 16 per 4) in the
# fused kernel and the planner's tile counts on output planes of at least WINOGRAD_WIDE_TILE_MIN_EXTENT
# rows and columns (``winograd_tiles.plane_tile``). Measured against F(2x2, 3x3) (either Winograd row,
# whichever is faster; 2-core Zen 4, float32, same process, batch 1 and 2): R(2+1)D's and MC3's spatial
# layers at 56x56 1.40-1.42x, at 28x28 1.35-1.51x; the fused kernel at 7x7 to 20x20 0.63-0.91x.
WINOGRAD_WIDE_TILE_MIN_EXTENT = 28

# 3x3x3 kernels take tiles of 2x4x4 outputs there too (F(2, 3) along D, F(4, 3) along H and W: 144 points
# per 32 outputs, where F(2x2x2, 3x3x3) takes 64 per 8, 1.78x fewer multiplies) from
# WINOGRAD_DEEP_WIDE_MIN_TILES such tiles (batch included) and where their weight points (2.25x those of
# F(2x2x2)) stay within WINOGRAD_MAX_WEIGHT_BYTES. Measured against 2x2x2 tiles in the fused kernel
# (2-core Zen 4, float32, C -> C channels, alternating in one process, medians of 7): 16-128 channels on
# 40x40 and 48x48 planes 1.13-1.35x, 32^3 and 64^3 with 16-64 channels 1.23-1.38x, 16x56x56 with 64 ->
# 64 and 64 -> 128 channels 1.28-1.44x, 32x112x112 with 16 1.31x, batch 2 at 8x28x28 and 16x32x32 (392
# and 512 tiles) 1.30-1.38x; 8x28x28 to 8x32x32 at batch 1 (196-256 tiles) 0.79-0.95x with 128 channels
# (1.16x with 256), 16x28x28 to 16x32x32 (392-512 tiles) 0.94-1.17x; 24x24 planes 0.74-0.86x, 16^3
# 0.68x.
WINOGRAD_DEEP_WIDE_MIN_TILES = 384

# The point-by-point kernel takes F(4x4, 3x3) where its estimated gain beats F(2x2, 3x3)'s
# (``winograd_tiles.points_tile``), the weight transform counted as
# WINOGRAD_TILE_WEIGHT_TILES tiles' multiplies per channel pair: fewer than WINOGRAD_WEIGHT_TILES, which
# was fitted against the direct kernels and overstates what F(4x4, 3x3)'s 2.25x the weight points cost
# (with it, no 7x7 plane would take it); refitted with the transform costs below. Fitted on the
# point-by-point row (2-core Zen 4, float32, same process, F(2x2)'s time / F(4x4)'s): 512 channels at 7x7 by
# planes x batch 16x1 1.10, 16x2 1.32-1.38, 8x1 1.00, 4x1 0.73, 2x1 0.55-0.63 (estimates 1.14, 1.30, 0.95,
# 0.77, 0.63); 256 channels at 16x14x14 1.14-1.19 (1.09), 256 -> 460 at 4x14x14 0.89-0.92 (0.92), 256 -> 576
# batch 2 1.04-1.14 (1.04), 128 channels at 16x14x14 and 2x8x14x14 1.10-1.14 (1.02), 64 at 16x27x40 1.39
# (1.37).
WINOGRAD_TILE_WEIGHT_TILES = 50

# By the outputs of a tile along H and W: the input and output transforms cost about
# WINOGRAD_TRANSFORM_PAIRS channel pairs' multiplies per tile, times 1 + WINOGRAD_ROW_EDGE_TILES / the
# tiles along an output row (short rows pay each row's set-up and padding more often). Refitted on
# 2-core Zen 4 once the transforms vectorized (2026-12-06: they had been fitted at 29 and 45 without the
# row term on Zen 2), over 56 layers with 8-48 channels (3x3x3 and 5x5x5 at 16^3 to 64^3 and 8x56x56,
# 1x3x3 at 8x56x56 to 16x112x112; float32, same process, best direct kernel's time / the fused
# kernel's): 16 -> 32 channels at 64^3 1.28 (estimate 1.25), at 16^3 1.02 (0.95); 32 -> 32 at 16^3 1.13
# (1.21); 16 -> 16 5x5x5 at 64^3 1.40 (1.42), at 16^3 0.89 (1.08); 1x3x3 32 -> 32 at 16x28x28 1.00
# (1.13); root mean square of the log error 0.11 (the old constants: 0.28, and every layer with 16-32
# channels underestimated by 0.2-0.4).
WINOGRAD_TRANSFORM_PAIRS = {2: 16, 4: 24}
WINOGRAD_ROW_EDGE_TILES = 4
WINOGRAD_MIN_GAIN = 1.1
WINOGRAD_MAX_WEIGHT_BYTES = 24 * 2 ** 20

# Where the planner takes stride-2 Winograd (``cpu/winograd_strided.py``: 3x3x3 kernels at stride 2,
# 1x3x3 at stride 2 along H and W; 1.73x and 1.44x fewer multiplies than the direct sums, for input
# and output transforms that cost more per tile than F(2, 3)'s): at least WINOGRAD_STRIDED_MIN_TILES
# tiles (batch included), WINOGRAD_STRIDED_MIN_IN_CHANNELS input channels per group and at most
# WINOGRAD_STRIDED_MAX_WEIGHT_BYTES of weight points (each chunk of tiles streams all of them: MC3's
# layer4.0.conv1 at batch 2, 256 -> 512 channels, 512 tiles, 13 MB of them, 0.76x GEMM; R3D's
# layer3.0.conv1 at batch 2, 196 tiles, 16 MB, 0.70x). Measured on a sweep (2-core Zen 4, float32, same
# process, the planner's previous route's time / its; 79 layers of 16 -> 16 to 256 -> 512 channels,
# 3x3x3 from 16^3 to 64^3 and 8x14x14 to 16x56x56, 1x3x3 from 8x14x14 to 8x112x112): from 512 tiles
# and 64 channels 0.95-1.27x (3x3x3: 64 -> 128 at 16x56x56 1.14-1.19, 128 -> 128 and 256 at 32^3
# 1.16-1.27; 1x3x3: 64 -> 64 and 128 at 16x56x56 1.19-1.25, 128 -> 256 and 256 -> 256 and 512 at
# 16x28x28 1.14-1.16, 64 -> 64 at 16x28x28 0.95); below 512 tiles 0.16-1.05x (the weight points, 125
# or 25 per channel pair, outweigh the tiles' savings: 128 -> 256 at 8x28x28, 98 tiles, 0.42x); below 64
# channels 0.35-1.09x (the transforms outweigh the products: 32 -> 64 at 16x56x56 0.95-0.98). Inside
# the networks suite's runs (layers back to back, against the best other row): MC3's layer2.0.conv1
# 1.12-1.23x, layer3.0.conv1 1.01-1.10x, R3D's layer2.0.conv1 1.0-1.17x, R(2+1)D's layer2.0 spatial
# 1.27-1.29x, its layer3.0 spatial at batch 2 1.0x.
WINOGRAD_STRIDED_MIN_TILES = 512
WINOGRAD_STRIDED_MIN_IN_CHANNELS = 64
WINOGRAD_STRIDED_MAX_WEIGHT_BYTES = 8 * 2 ** 20

# Where the planner takes the point-by-point Winograd kernel (``cpu.prefers_winograd_points``): at least
# WINOGRAD_POINTS_MIN_TILES tiles (batch included) and, by the kernel's width, at least the first of
# WINOGRAD_POINTS_RANGES channels (sqrt(C_in/g x C_out/g)) and tiles per channel (tiles / that) within the
# other two. Measured on the 3x3x3 and 1x3x3 layers of the networks suite (2-core Zen 4, float32, batch 1 and
# 2, same process; the fastest other row's time / its time, from ``benchmarks/sweep_algorithms.py``):
# 0.06-0.77 tiles per channel 1.05-1.91x (256 -> 512 and 512 -> 512 channels at 4x14x14: 1.24-1.46x over the
# fused kernel; 512 at 16x7x7: 1.23x; 128 -> 256 at 8^3: 1.52x over GEMM) but for 1x3x3 with 512 -> 921-1152
# at 2x7x7 (0.96-1.0x); below, GEMM (0.54-0.68x: 8-32 tiles for 128-1152 channels); 1.0-1.14 0.94-1.36x; from
# 2 the fused kernel (0.4-0.95x). 5x5x5 kernels (V-Net's layers and C -> C at 8^3 to 32^3, batch 1 and 2):
# (measured before the channel-vectorized kernel left out its padding products: see
# CHANNEL_VECTORIZED_POINTS_BELOW for 128 channels at 4x8x8 now)
# from 128 channels up to 2 tiles per channel 1.18-1.81x (128 at 4x8x8 to 8x16x16, 256 at 4x8x8: over GEMM by
# kernel tap and the fused kernel), at 4 0.92-1.06x the fused kernel, beyond 0.5-0.86x; with 32-64 channels at
# 8^3 0.75-0.91x the channel-vectorized kernel; from 256 channels at 2x4x4 (0.02-0.03) GEMM (0.36-0.51x).
# Since that kernel leaves out its padding products (2026-12-07), 3x3x3 with 64 channels at 8^3 (1 tile
# per channel) ran there 0.69-0.83x this kernel's time (128 channels at 8^3 1.08x, 256 at 4x14x14
# 1.02-1.13x: kept here), hence at least 96 channels for 3-wide kernels too.
WINOGRAD_POINTS_MIN_TILES = 16
WINOGRAD_POINTS_RANGES = {3: (96, 0.06, 1.0), 5: (96, 0.06, 3.0)}
# Where the float32 channel-vectorized kernel takes a plan from point-by-point Winograd
# (``cpu.small_dense_volume``), by the kernel's width: fewer channels (sqrt(C_in/g x C_out/g)) than the
# first number and fewer tiles per channel than the second. V-Net's 128-channel 5x5x5 layer at 4x8x8
# (0.25 and, at batch 2, 0.5 tiles per channel) ran there 0.80x and 0.64x the point-by-point time (the
# tap-by-tap products and the fused Winograd kernel, next in the table, 1.6-2.4x), its 256-channel one
# (0.125, 0.25) 1.0x and 1.27x, 128 channels at 8x16x16 (2 per channel) 1.52x (2-core Zen 4, same process;
# float64 0.98-1.01x, left to Winograd).
CHANNEL_VECTORIZED_POINTS_BELOW = {5: (192, 1.0)}

# Where the planner prefers FFT convolution (``cpu/fft.py``, real dtypes at unit stride) to the direct
# kernels (``cpu.fft_gain``): the estimated seconds of the direct kernel the planner would take (its
# multiply-adds at FFT_DIRECT_MAC_SECONDS[VECTOR_BYTES][its name] per thread; measured on one-channel
# volumes for row-blocked, 4-32 channels for the others) over the FFT's, estimated per tiling by
# ``fft.tiling``:
# FFT_SECONDS per point and log2(points) of each real transform on one thread plus FFT_CALL_SECONDS per
# transform, FFT_MAC_SECONDS per complex product of the spectra, FFT_COPY_SECONDS per point gathered or
# stored (estimates within 15% of the measured time from 30^3 to 160^3 transforms, within 2x for 12^3).
# Tilings try FFT_TILE_COUNTS tiles per dimension and keep the weight spectra and the tasks' buffers
# within FFT_MAX_WORKSPACE_BYTES. The planner takes FFT from an estimated gain of FFT_MIN_GAIN
# (float32, 2 threads, Zen 2; direct time / FFT time as measured: one channel 64^3 k5 0.51x, k7 0.84x,
# k9 1.66x, k15 4.1x, k31 15x; 128^3 k7 1.16x, k9 2.4x, k15 8.1x, k21 15x; 4 -> 4 channels k7 at 48^3
# 1.38x, 16 -> 16 k5 at 32^3 1.07x, 32 -> 32 k5 at 16^3 0.68x, 16 -> 16 k7 at 64^3 3.0x).
FFT_SECONDS = 2.3e-10
FFT_CALL_SECONDS = 5e-6
FFT_MAC_SECONDS = 1.0e-9
FFT_COPY_SECONDS = 1.0e-9

# The direct rates per vector width (VECTOR_BYTES): 512-bit vectors measured on Zen 4 (one channel:
# 64^3 k9 1.0x, 128^3 k7 0.6x, k9 1.26x, k11 1.8x, 64^3 k15 2.7x), where the one-channel kernel runs 2.8x
# the rate of Zen 2's 256-bit vectors and the channel-blocked one 1.2x. The GEMM and channel-vectorized
# rates are those of 3x3x3 layers; with 5x5x5 kernels both run 1.5-3x slower, and FFT still loses there
# (0.25-0.86x, many channels on 6^3-8^3 volumes: every FFT tile is mostly kernel). The tap-by-tap
# products take GEMM's rate: the planner takes them only for deep layers, where FFT loses. The depthwise
# kernel's: X3D-S's 3x3x3 layers, 0.9-1.1e-10 (AVX2: twice that, not measured).
FFT_DIRECT_MAC_SECONDS = {
    32: {"row-blocked": 7e-11, "phase-flat": 7e-11, "depthwise": 2e-10, "direct": 2e-10, "gemm": 2.3e-11,
         "tap-gemm": 2.3e-11, "plane-gemm": 2.3e-11, "channel-vectorized": 2.1e-11, "blocked": 2.3e-11,
         "pointwise": 2.3e-11},
    64: {"row-blocked": 2.5e-11, "phase-flat": 1.4e-10, "depthwise": 1e-10, "direct": 2e-10, "gemm": 2.3e-11,
         "tap-gemm": 2.3e-11, "plane-gemm": 2.3e-11, "channel-vectorized": 2.1e-11, "blocked": 1.9e-11,
         "pointwise": 2.3e-11},
}
FFT_MIN_GAIN = 1.3
FFT_MAX_WORKSPACE_BYTES = 192 * 2 ** 20
FFT_TILE_COUNTS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32)

# The flat-phase kernel (``cpu/phase_flat.py``) serves real layers of fewer than BLOCKED_MIN_CHANNELS output
# channels per group (depthwise) whose output rows are at most FLAT_MAX_OUTPUT_WIDTH wide (kernels of at most
# 3 taps along W: FLAT_MAX_NARROW_KERNEL_WIDTH times the stride along W), with at most
# FLAT_MAX_WORKSPACE_BYTES of phases and sums per thread. Measured on 2 cores (AMD Zen 2, float32, X3D-S
# depthwise 3x3x3 over 13 frames, flat vs row-blocked): 432 channels of 5x5 0.51 vs 1.56 ms, 432 of 10x10
# stride (1, 2, 2) 0.91 vs 2.23, 216 of 10x10 0.73 vs 1.09; rows of 20 even (20x20 stride 2: 1.46 vs 1.80;
# unit stride 1.32 vs 1.44), 14-wide 5x1x1 0.20 vs 0.20. On Zen 4 (AVX-512; depthwise 3x3x3, 54-216 channels,
# 8-13 frames, row-blocked time / flat time): at unit stride rows of 10-20 1.38-2.12, 28 1.12-1.14, 40
# 0.97-1.01, 56-80 0.74-0.82; at stride 2 rows of 10-56 1.15-1.81, 80 0.73-0.79. Wider kernels gain less: one
# channel k7 at 8x8-12x12 0.82-0.91, k11 0.38; 5x5x5 at 28x28 0.91-0.99.
FLAT_MAX_OUTPUT_WIDTH = 12
FLAT_MAX_NARROW_KERNEL_WIDTH = 28
FLAT_MAX_WORKSPACE_BYTES = 1 << 22

# The channels-last depthwise kernel (``cpu/depthwise.py``) takes depthwise layers of at least
# DEPTHWISE_MIN_CHANNELS channels with output rows of at most DEPTHWISE_MAX_OUTPUT_WIDTH columns. Zen 4,
# float32, 8-16 frames, its time / the route before (phase-flat, row-blocked or winograd-depth), alternating
# calls: rows of 5-20 0.55-0.94 (X3D-S: 432 channels at 5x5 0.61, 216 at 10x10 0.77; 24-48 channels
# 0.77-0.94), 24-28 0.83-0.95 (256 channels at 28x28 0.59), strided to 10-28 0.53-0.78, k5 at 14x14 0.42;
# rows of 32 1.19-1.47, 40 1.04-1.21, 56-112 1.41-4.24 (the row kernels fill their vectors there); 1-16
# channels at 16^3 1.38-2.7 (a vector of lanes mostly empty).
DEPTHWISE_MIN_CHANNELS = 24
DEPTHWISE_MAX_OUTPUT_WIDTH = 28
