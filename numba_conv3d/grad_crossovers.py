"""The measured crossovers of the gradients' routes (weight gradient, strided input gradient and transposed
convolution): where each route is taken over the others, each with the measurements it was fitted on.
The forward planner's are in ``crossovers.py``.

Numba freezes module globals into compiled code, so a change here takes effect on the next compilation.
"""

# The weight gradient is tap by tap (``tap_gemm.prefers_weight_grad``) where the forward plan is, and
# from TAP_WEIGHT_GRAD_MIN_CHANNELS input and output channels per group over TAP_WEIGHT_GRAD_POSITIONS
# (batch x output positions, bounds included) with at most TAP_WEIGHT_GRAD_MAX_SHARE of the pairs reading
# the input. Measured on 2-core Zen 4 (float32, same process, alternating, medians of 9; GEMM time /
# tap-by-tap time): 256-1152 channels over 49-784 positions 1.06-1.65 (2x7x7 k3 with 512: 1.11, batch 2
# 1.57; 2x7x7 3x1x1 from 921-1152: 1.29; 4x14x14 k3 with 256-512: 1.23-1.26; 2x4x4x4 with 256: 1.56);
# over 32 positions 0.97-1.06, over 1x4x4x4 with 256 0.66; over 3136-6272 positions (16x14x14 and
# 8x28x28 with 256) 0.77-0.85; 128 channels 0.77-0.96.
TAP_WEIGHT_GRAD_MIN_CHANNELS = 256
TAP_WEIGHT_GRAD_POSITIONS = (96, 1024)
TAP_WEIGHT_GRAD_MAX_SHARE = 0.85

# The weight gradient is a matrix product (``cpu/gemm.py``) where the forward plan takes GEMM, from
# ``GEMM_WEIGHT_GRAD_MIN_OUT_CHANNELS`` output channels per group (with ``GEMM_MIN_REDUCTION``) over at
# most ``GEMM_WEIGHT_GRAD_POSITIONS_PER_CHANNEL`` output positions per sample for each output channel,
# and from twice as many channels at any size. Measured against the weight-gradient kernel (Zen 2,
# float32; kernel time / GEMM time): 256 channels at 8x28x28 and 4x14x14 1.56-1.71, 128 channels with
# stride 2 at 8x28x28 (49 positions per channel) 1.85, 128 channels 1x3x3 at 16x28x28 (98) 1.06-1.28,
# 128 channels from 384 at 16^3 (32) 0.85, 128 channels at 16x56x56 (392) 0.39; 64 channels
# 0.42-0.81, 32 channels 0.25-0.30.
GEMM_WEIGHT_GRAD_MIN_OUT_CHANNELS = 128
GEMM_WEIGHT_GRAD_POSITIONS_PER_CHANNEL = 64

# Where the weight gradient takes the kernel vectorized over output channels
# (``channel_weight_grad.preferred``, before every other route): at
# least CHANNEL_WEIGHT_GRAD_MIN_IN input and CHANNEL_WEIGHT_GRAD_MIN_OUT output channels per group, more
# than one tap, over at least CHANNEL_WEIGHT_GRAD_MIN_POSITIONS (batch x output positions). Measured on
# every layer of the networks suite (2-core Zen 4, float32, alternating, medians of 5; previous route's
# time / this kernel's): k3, k5, 1x3x3, 3x1x1 and 2x2x2 layers with 16-576 input and 32-921 output
# channels over 256 positions and more 1.0-3.0 (1.3-2.0 typical, 0.94-0.98 on two strided 1x3x3); over
# 98 positions with 512-1152 channels 0.84-1.40, over 32-64 positions 0.94-1.13; 16 output channels
# 0.68, 1-3 input channels 0.05-0.32, depthwise 0.02-0.05, 1x1x1 layers 0.38-1.05 (the GEMM stays).
CHANNEL_WEIGHT_GRAD_MIN_IN = 16
CHANNEL_WEIGHT_GRAD_MIN_OUT = 32
CHANNEL_WEIGHT_GRAD_MIN_POSITIONS = 128

# Strided input gradients (and transposed convolutions) with at least COL2IM_MIN_OUT_CHANNELS output
# channels per group run on the CPU as the weight matrix transposed times the output gradient, then
# col2im (``cpu/gemm.py``), as do those whose forward plan is GEMM. Measured (Zen 2, float32; against
# torch's input gradient, same process): stride 2 k3 64 -> 128 at 16x56x56 0.43 -> 1.00x, 128 -> 256 at
# 8x28x28 0.37 -> 1.67x, 256 -> 512 at 4x14x14 0.38 -> 1.96x, 1x3x3 stride (1, 2, 2) 64 -> 128 0.78 ->
# 1.25x; unit stride where the forward is GEMM: 1.15-3.2x the cropped correlation.
COL2IM_MIN_OUT_CHANNELS = 64
# From COL2IM_FEW_OUT_CHANNELS output channels per group, so do those whose kernel taps do not overlap
# (``stride_phases.one_tap_per_phase``: each phase a 1x1x1 product that reads the whole output gradient
# again) with at most COL2IM_ONE_TAP_MAX_COLUMN_ROWS rows of columns (input channels per group x taps),
# and any with at most COL2IM_MAX_COLUMN_ROWS (phases with few output channels keep few lanes busy).
# Measured on 2-core Zen 4 (float32, same process, alternating; col2im time / stride phases', glibc
# keeping freed memory mapped as the benchmarks do): 2x2x2 at stride 2 with 4-48 channels on either side
# at 16x32x32 to 64^3 (32-384 rows), grouped too, 0.37-0.76; 1x2x2 at (1, 2, 2) 0.84-0.85, 1x1x1 at
# (1, 2, 2) 0.98, k3 at stride 3 (162 rows) 0.21; 2x2x2 from 128-512 input channels to 8-32 (1024-4096
# rows) 0.99-1.13, so they stay on stride phases. k3 at stride 2 with 1-4 input channels (27-108 rows)
# and 4-64 output channels 0.26-0.61 (the transposed 32 -> 2 at 32^3 of residual U-Nets 0.32), one tie
# at 108 rows with 8 output channels (1.05); 216-864 rows 0.81-1.17 and the 3 -> 16 3x7x7 stem at
# (1, 2, 2) (441 rows) 1.67: those stay on stride phases.
COL2IM_FEW_OUT_CHANNELS = 4
COL2IM_ONE_TAP_MAX_COLUMN_ROWS = 512
COL2IM_MAX_COLUMN_ROWS = 108

# bfloat16 input gradients (and transposed convolutions) whose taps do not overlap (2x2x2 at stride 2, the
# up-convolutions of U-Nets and V-Nets) run as one pointwise convolution, by the bfloat16 dot products, of
# the output gradient over at least TAP_SCATTER_MIN_POSITIONS positions (batch included), then a scatter
# (``cpu/tap_scatter.py``). Measured on 2-core Zen 4 (same process, alternating, medians of 11-15; its
# time / the float32 routes' on widened operands): 2x2x2 at stride 2 from 16-128 channels at 8x16x16 to
# 32^3 0.40-0.69, 1x2x2 at (1, 2, 2) 64 -> 64 at 8x16x16 0.69, 96 -> 48 at 16^3 0.65. Over 32-512
# positions, with the transposed weight made anew each call, 0.91-1.77; kept between calls (as a
# network's layer runs): 64-256 positions (128-512 -> 64-256 channels at 4^3 to 4x8x8, batch 1 and 2)
# 0.52-0.89 in two rounds, one 1.05 then 0.79; 256 -> 256 at 8^3 0.96-1.05; 32 positions (256 -> 128 at
# 2x4x4) 0.95-0.99, which stays on col2im. float16 (widened for its pointwise convolution) 0.96-1.34 at
# 512-32768 positions: it stays on the float32 routes. Since the pointwise convolutions of 1x1x1 layers
# take the dot products only along rows, from BFLOAT16_ROWS_POINTWISE_MIN_POSITIONS positions a sample
# (crossovers.py), a batch whose samples have fewer (2 x 32) stays on col2im too. Where AMX tiles take the
# pointwise convolution (from 32 positions a sample, ``crossovers.AMX_MIN_OUTPUT_POSITIONS``) the route
# needs no more: 256 -> 128 at 2x4x4 0.80x col2im's time (2-core Xeon, 2026-12-07, same process).
TAP_SCATTER_MIN_POSITIONS = 64
# bfloat16 input gradients (and transposed convolutions) whose stride phases meet several taps (3x3x3 at
# stride 2) run as one correlation of every phase by the bfloat16 dot products over at least
# PHASE_STACK_MIN_POSITIONS positions of the output gradient, where the zero weights bring the products
# to at most PHASE_STACK_MAX_PRODUCTS times the convolution's (k3 s2 2.37, k5 s2 1.73, k4 s2 p1 3.38).
# Measured (2026-12-07, Zen 4, same process, alternating, medians of 7 over 3 rounds; its time / the
# widened routes'): k3 s2 p1 16-32 channels at 8^3-32^3 0.33-0.46, 64 -> 16-64 at 16^3 0.58-0.77, at
# 4x28x28 0.74, 1x3x3 at (1, 2, 2) 0.58, k5 0.46, batch 2 64 -> 32 at 8^3 0.80-0.85, 64 -> 32 at 7^3
# 0.89-1.01; where the float32 forward is a matrix product (128-512 channels at 4^3 to 8^3, whose
# gradient col2im computes) 0.81-1.43 (256 -> 128 at 4^3 1.43): those stay off the route. Where AMX tiles
# take the correlation (from 32 positions a sample) neither limit holds: 256 -> 128 at 2x4x4 0.79x
# col2im's time, 128 -> 64 1.04x (2-core Xeon, 2026-12-07, same process).
PHASE_STACK_MIN_POSITIONS = 64
PHASE_STACK_MAX_PRODUCTS = 2.5

# Strided input gradients whose strides multiply to at most this run on the GPU as unit-stride
# correlations of the output gradient with zeros inserted (that many times the multiply-adds, on the
# fast forward kernels) instead of the gather kernel (the CPU takes col2im or stride phases first):
# dense k3 stride 2 at 32^3, 32 channels, float32 on 2 CPU cores, before those existed, 49 -> 16 ms.
GRAD_UPSAMPLE_MAX_STRIDES = 8

# The weight gradient of 3x3x3 and 1x3x3 unit-stride layers by Winograd F(3, 2)
# (``cpu/winograd_weight_grad.py``) from WINOGRAD_WEIGHT_GRAD_MIN_CHANNELS input and output channels
# per group and WINOGRAD_WEIGHT_GRAD_MIN_TILES tiles of 2x2x2 (1x2x2) output positions, batch included.
# Measured 2026-12-06 on Zen 4 (float32, same process, alternating, medians; the other routes' time /
# Winograd's): 3x3x3 with 256 channels at 8x28x28 (784 tiles) 1.30-1.73, 128 at 8x28x28 1.33-1.46, 384
# -> 128 at 16^3 1.42, 256-512 at 4x14x14 (98 tiles) 1.11-1.26, 128-256 over 64 tiles 1.00-1.03, 512 at
# 2x7x7 (16 tiles) 0.43; 1x3x3 with 128 -> 230 at 8x28x28 and 256 -> 576 at 4x14x14 1.32-1.33, 256 at
# 16x14x14 1.22-1.28, 512 at 16x7x7 0.99-1.10, 128 at 16x28x28 1.05; with 64 channels 1.06-1.16 at 32^3
# and 16x56x56, 0.79 at 8^3; 16-32 channels 0.68-0.80. Each
# point's product of 64-channel matrices runs at 120-130 GFLOP/s on one core, where the direct routes
# are near their best; over few tiles the summed points (64 per weight pair) outweigh the products.
WINOGRAD_WEIGHT_GRAD_MIN_CHANNELS = 128
WINOGRAD_WEIGHT_GRAD_MIN_TILES = 96
