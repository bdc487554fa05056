"""Tunables of the CUDA kernels, in one place (never literals inside kernels); the CPU's are in
``config.py``.

Numba freezes module globals into compiled code, so a change here takes effect on the next compilation.
"""

# CUDA thread-block tiles (``numba_conv3d.cuda.tiling.Tile``): a block of ``columns x thread_rows x
# channel_threads`` threads computes ``columns`` output columns x ``thread_rows * rows_per_thread``
# output rows of one output depth, for ``channel_threads * channels_per_thread`` output channels; each
# thread keeps ``rows_per_thread x channels_per_thread`` sums in registers. ``stage_channels`` input
# channels (each one plane of the padded input plus halo, and their weights) are staged in shared memory
# per barrier. 32 columns keep global loads and stores coalesced along W. Chosen by a tile sweep on an
# H100 (before the implicit GEMM): 8 rows x 8 channels per thread ran 1.2x faster than 4 x 8 on dense
# k3, and 16 rows per thread 1.5x faster than 4 on one-channel k7; 2 stage channels were within noise
# of 4 and 8 on dense k3 and faster on the smaller cases.
CUDA_CHANNEL_TILE = dict(columns=32, thread_rows=2, rows_per_thread=8, channel_threads=2,
                         channels_per_thread=8, stage_channels=2)
CUDA_ROW_TILE = dict(columns=32, thread_rows=2, rows_per_thread=16, channel_threads=1,
                     channels_per_thread=1, stage_channels=1)

# The CUDA implicit GEMM's tile and reduction-split target per layer class: rows of (most output channels
# per group, most output positions (batch included), tile, target blocks), None for no bound; a plan
# takes the first row that holds it. A tile (``numba_conv3d.cuda.gemm_plan.GemmTile``) is block_m
# positions x block_n output channels, block_k reduction steps per stage, thread_m x thread_n sums per
# thread. A layer whose tiles alone make fewer blocks than the target splits its reduction (keeping at
# least CUDA_GEMM_MIN_SPLIT_STAGES stages per split); 0 never splits.
# Measured by benchmarks/cuda_session.py's sweep on an H200 (driver 580.159, 2026-12-04): 6 tiles x 3
# targets on 33 layers of the CUDA suite and the networks suite, per class the least geometric mean of
# time over the layer's best.
CUDA_GEMM_CLASSES = (
    (16, 65536, (128, 16, 8, 4, 4), 528),
    (16, None, (128, 16, 8, 4, 4), 0),
    (32, 4096, (64, 128, 8, 4, 8), 0),
    (32, 65536, (128, 16, 8, 4, 4), 264),
    (32, None, (128, 32, 8, 4, 4), 264),
    (64, 65536, (128, 64, 16, 8, 4), 0),
    (64, None, (128, 64, 16, 8, 4), 264),
    (128, 4096, (128, 64, 8, 8, 4), 264),
    (128, None, (128, 64, 16, 8, 4), 0),
    (None, 4096, (128, 32, 8, 4, 4), 528),
    (None, None, (128, 64, 16, 8, 4), 264),
)
CUDA_GEMM_MIN_SPLIT_STAGES = 8

# The implicit GEMM reduces tap by tap (block_k input channels of one tap per stage) where rounding the
# input channels per group up to whole stages adds at most this share of them, on layers of at least
# CUDA_GEMM_TAP_MAJOR_MIN_MACS multiply-adds; else in the weight's order, with a padding test per step.
# H200, float32: tap by tap 0.45 vs 0.59 ms on r3d_18 layer1 (1.4 G MACs), 0.92 vs 1.18 on C3D conv3b,
# 0.19 vs 0.23 on r3d_18 layer2.0.conv1 (1.4 G); slower below about 1 G MACs, where the transposing
# launch costs more than it saves (r3d_18 layer3.0.conv1, 0.69 G: 0.21 vs 0.17 ms).
CUDA_GEMM_TAP_MAJOR_PADDING = 0.25
CUDA_GEMM_TAP_MAJOR_MIN_MACS = 1e9

# The weight gradient's implicit GEMM (cuda/weight_gemm_kernels.py): its tile (block_m output channels x
# block_n columns of input channel x taps, block_k output positions a stage, thread_m x thread_n sums a
# thread), and the blocks it aims at, splitting the positions (at least CUDA_GEMM_MIN_SPLIT_STAGES
# stages a split) where the tiles alone make fewer: about four per multiprocessor of an H200.
CUDA_WEIGHT_GEMM_TILE = (64, 128, 16, 4, 8)
CUDA_WEIGHT_GEMM_BLOCKS = 528

# The tensor-core implicit GEMM's tile and reduction-split target per layer class, rows as in
# CUDA_GEMM_CLASSES. A tile (``numba_conv3d.cuda.tensor_core_plan.TensorCoreTile``) is warps_m x warps_n
# warps, each summing frags_m x frags_n products of 16 positions x 8 output channels, over units 32-bit
# reduction units a stage (two float16 or bfloat16 steps, or one TF32 step). Not yet measured on a GPU:
# chosen from ptxas's report for sm_90 (benchmarks/cuda_report.py), the widest tiles whose threads keep
# sums, fragments and staged units in at most 128 registers with no local memory (16 resident warps a
# multiprocessor): 4 x 4 products a warp took 210 registers and left the sums in local memory.
# benchmarks/cuda_session.py's tensor-core sweep measures the candidates on a GPU.
CUDA_TENSOR_CORE_CLASSES = (
    (16, None, (4, 1, 2, 2, 16), 264),
    (32, None, (4, 2, 2, 2, 16), 264),
    (None, None, (4, 2, 2, 4, 16), 264),
)
CUDA_TENSOR_CORE_MIN_BLOCKS_PER_SM = 2

# The implicit GEMM serves groups of at least this many output channels (fewer waste most of a tile:
# depthwise and one-channel layers take the row-tiled kernel).
CUDA_GEMM_MIN_OUT_CHANNELS = 8

# The CUDA depthwise kernel: outputs of a row each thread sums, and the most kernel taps it serves.
CUDA_DEPTHWISE_OUTPUTS = 4
CUDA_DEPTHWISE_MAX_TAPS = 64

# Blocks of the implicit GEMM that must fit on one multiprocessor (launch bounds).
CUDA_GEMM_MIN_BLOCKS_PER_SM = 2

# Bytes of register sums per thread; wider dtypes get fewer rows per thread (and more thread rows).
# Above this NVVM keeps the sums of complex tiles in local memory.
CUDA_SUM_BYTES = 256

# Blocks of a tiled kernel that must fit on one multiprocessor at once (launch bounds: caps the
# registers per thread). 2 would let one block compute while another stages, but the 128-register cap
# spills the sums to local memory: 1 measured 1.2x faster on an H100 (dense k3, 32 channels).
CUDA_MIN_BLOCKS_PER_SM = 1

# Threads per block of the fallback kernel (one output element per thread, no shared memory).
CUDA_DIRECT_THREADS = 256

# Threads per block of the CUDA reductions (weight and bias gradients: a block sums one element over
# every output position or a split of them, then a tree over its threads); a power of two.
CUDA_REDUCE_THREADS = 256

# The CUDA bias gradient splits each channel's positions until channels x splits reaches
# CUDA_REDUCE_BLOCKS blocks (about four per multiprocessor of an H200), keeping at least
# CUDA_REDUCE_MIN_SPLIT positions a split; the splits are then added in order.
CUDA_REDUCE_BLOCKS = 528

# A strided input gradient (and a transposed convolution) on the GPU runs as stride-phase correlations
# from this many multiply-adds; below, as one correlation of the output gradient spread by the stride,
# prod(stride) times the multiply-adds in one launch where the phases take about four launches each.
# Not yet measured: an estimate from the H200's GEMM rate (about 20 T multiply-adds a second on these
# layers) and about 30 us of host time per launch; the GPU script's "stride phases" section times both.
CUDA_STRIDE_PHASES_MIN_MACS = 2e9
CUDA_REDUCE_MIN_SPLIT = 4096

# Dynamic shared memory a block may use without an opt-in on any CUDA GPU.
CUDA_SHARED_BYTES = 48 * 1024

# Most thread blocks launched; larger problems loop over their tiles (grid-stride).
CUDA_MAX_BLOCKS = 1 << 20
