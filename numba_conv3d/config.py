"""Tunables of the CPU kernels, in one place (never literals inside kernels): register blocks, chunk
and workspace sizes. Where the planner takes each algorithm (its measured crossovers) is in
``crossovers.py``; the CUDA kernels' tunables are in ``cuda_config.py``.

Numba freezes module globals into compiled code, so a change here takes effect on the next compilation.
"""

# Parallel tasks wanted per worker thread; output-channel blocks are split until there are this many.
TASKS_PER_THREAD = 4

# Bytes of the accumulator tile of output rows that one task sums at a time (about half of L1).
ACCUMULATOR_TILE_BYTES = 16 * 1024


def target_cpu_features():
    """The LLVM features ('+avx512f', ...) of the CPU Numba compiles for: the host's unless
    ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` say otherwise (a 'generic' CPU has none of them)."""
    import llvmlite.binding
    import numba

    features = numba.config.CPU_FEATURES
    if features is None:
        features = llvmlite.binding.get_host_cpu_features().flatten()
    return frozenset(features.split(","))


def _target_vector_bytes():
    """Bytes of the widest SIMD register of the CPU Numba compiles for: 64 with AVX-512 (zmm), else 32
    (AVX2 ymm)."""
    return 64 if "+avx512f" in target_cpu_features() else 32


# Bytes of one SIMD register the CPU register blocks are built from (``cpu/simd.py``): 64 with AVX-512
# (16 float32 or 8 float64), else 32 (AVX2: 8 or 4). A block of accumulators takes 12 registers: of
# AVX2's 16, or of AVX-512's 32. With AVX-512, 64-byte vectors ran the suite 1.2x faster than 32-byte
# ones (geometric mean over `bench --full`, dense k3 0.73x -> 0.88x torch, dilated 0.45x -> 0.65x; a
# 2-core Xeon, Emerald Rapids), though Zen 4 executes them on 256-bit pipes.
VECTOR_BYTES = _target_vector_bytes()

# Register block of the channel-blocked kernel: output channels x vectors of output columns per
# channel. With AVX2, 4 x 3 vectors (24 float32 columns) keeps 12 accumulators, 3 input vectors and 1
# broadcast weight in the 16 registers with no spill (a Zen 4 VM, one thread, inner loop alone: 4 x 3
# ran 76 GFLOP/s, 6 x 2 70, 4 x 2 65, 3 x 4 and 4 x 4, which spill, 35-37). AVX-512's 32 registers hold
# 8 x 3 (24 accumulators): 1.05-1.35x the speed of 4 x 3 on the dense, k5, dilated, grouped and
# pointwise cases (2-core Xeon, processes alternating); 4 x 6 spills (0.5x).
BLOCK_CHANNELS = 8 if VECTOR_BYTES == 64 else 4
BLOCK_VECTORS = 3

# Register block of the channel-vectorized kernel (``cpu/channel_vectorized.py``): a tile of output
# positions (rows, columns) x SIMD vectors of output channels. 14 positions x 2 vectors keep 28
# accumulators, 2 weight vectors and 1 broadcast input in AVX-512's 32 registers (its inner loop has no
# spill). On a 56-wide stem and 1x7x7, 14 positions in a row ran 1.04-1.08x faster than 8 and 12;
# blocks of 4 vectors compute 64 channels where those have 32 (0.6x on 1x7x7), and 7 x 4 spills (2-core
# Xeon, same process, alternating). The wide tile, 2 rows x 7, covers the widths 7, 14, 28 and 56 of
# networks' later layers; the tall one, 2 x 4 (8 positions, 16 accumulators), the widths 4, 8 and 16.
# Tall tiles of 3 x 4 had run 1.07-1.45x the channel-blocked kernel on 4x8x8 planes with 32-256 channels
# and 0.83-0.98x on 8x16x16; 2 x 4 then ran 0.82-0.97x their time on planes of 4, 8 and 16 rows (4^3 to
# 8x16x16, 32-512 channels, k3 and k5, float32 and bfloat16: 3 x 4 computes 2 rows of 6 for nothing on
# a 4-row plane) and 0.93-1.05x on 12 and 24 rows (2-core Zen 4, same process, alternating, bitwise the
# same results). AVX2's 16 registers take 6 positions x 2 vectors (12 accumulators, as the
# channel-blocked kernel's 4 x 3; not measured).
CHANNEL_BLOCK_VECTORS = 2
CHANNEL_WIDE_TILE = (2, 7) if VECTOR_BYTES == 64 else (1, 6)
CHANNEL_TALL_TILE = (2, 4) if VECTOR_BYTES == 64 else (2, 3)

# Bytes of one block's weights that the channel-vectorized kernel adds to every column block of a task's
# rows (in one output plane) before the next chunk of input channels (``channel_vectorized.weight_chunk``):
# they stay in L1 (32 KiB on Zen 2 and 4, 48 KiB on the Xeon) beside the slab rows the chunk reads.
CHANNEL_WEIGHT_CHUNK_BYTES = 16 * 1024

# Fewest output channels per group the channel-blocked kernel serves (a block's missing channels are
# computed as zeros); below it the row-blocked kernel (one channel x ``BLOCK_ROWS`` rows) runs.
BLOCKED_MIN_CHANNELS = 4

# Bytes of slab rows that one block of the channel-blocked kernel reads per chunk of input channels: the
# kernel adds that many input channels to every block of an output position before the next chunk, so
# that they stay in L1 (48 KiB on this Xeon, 32 KiB on Zen 4) beside the weights streaming through.
INPUT_CHUNK_BYTES = 16 * 1024

# Bytes of padded input one task of a register-blocked kernel gathers (at most, unless one row of
# output needs more): tasks cover tiles of output rows so that their slab stays in L2 (1 MiB per core
# on Zen 4) beside the weights and the output rows it writes.
SLAB_BYTES = 1024 * 1024

# How the channel-vectorized kernel's tasks reuse each chunk of weights (``channel_vectorized.py``,
# ``register_blocks.stationary_grid``): a task's slab holds the padded input of all its output planes
# (at most ``STATIONARY_SLAB_BYTES``), and a chunk of weights serves the tiles of as many of its planes
# as hold ``STATIONARY_BLOCKS`` register blocks before the next chunk. On 4x8x8 planes (6 tiles each)
# with 128-512 channels, 8 blocks ran 1.0-1.3x faster than one plane at a time, and 32 blocks or all
# of a task's planes up to 0.75x as fast on 8x16x16 and 8x28x28 planes (the sums that wait between
# chunks then leave the L2 cache; 2-core Zen 4, same process).
STATIONARY_SLAB_BYTES = 8 * 1024 * 1024
STATIONARY_BLOCKS = 8

# Columns a row should reach when the kernels lay several rows of a convolution that is pointwise in
# (H, W) side by side (``ConvPlan.rows_merged``): whole blocks of ``BLOCK_VECTORS`` vectors along long
# rows rather than narrow blocks at the end of short ones.
MERGED_ROW_COLUMNS = 1024

# Input blocks of a Dask array up to this size go whole to each task that reads part of them (the task
# cuts its part); larger blocks are cut by a task of their own where they live, so that only the part
# travels. Small chunks would otherwise make a cutting task per neighbour: 64^3 float32 chunks of a
# 256^3 volume with k7 gave 1,700 cutting tasks for 64 convolutions, and the scheduler's cost per task
# dominated (2-6 s against 0.6 s with 128^3 chunks).
DASK_WHOLE_BLOCK_BYTES = 4 * 2 ** 20

# Bytes of the im2col columns that the GEMM algorithm (``cpu/gemm.py``) gathers for one matrix product:
# chunks of whole output planes, within the L3 cache beside the weights. Each chunk's product reads
# all the weights again: at 8 MiB, R3D's layer3.0.conv1 (128 -> 256 channels, 3x3x3 at stride 2, 4
# planes of 2.7 MB of columns) ran as products of 3 planes and 1; in one, 0.89x the time (batch 2:
# 0.93x), other layers of the networks suite unchanged (2026-12-06, Zen 4, in one process).
GEMM_COLUMN_BYTES = 16 * 2 ** 20

# The tap-by-tap products (``cpu/tap_gemm.py``): at most TAP_GEMM_MAX_CHUNKS chunks of taps per group
# (tasks), fewer where their partial outputs would take more than TAP_GEMM_PARTIAL_BYTES.
TAP_GEMM_MAX_CHUNKS = 8
TAP_GEMM_PARTIAL_BYTES = 32 * 2 ** 20

# Bytes of packed weights (and the copies of the weights they came from) kept between calls
# (``cpu/packed_weights.py``): C3D's bfloat16 weights, packed, take about 2 x 120 MB.
PACKED_WEIGHTS_BYTES = 256 * 2 ** 20

# Channel blocks whose products the Winograd kernel computes point by point in one pass, each point's
# input (C_in/g x one chunk of tiles) staying in L1 while they read it, their products (64 points x
# WINOGRAD_PASS_BLOCKS * BLOCK_CHANNELS channels x chunk) in L2.
WINOGRAD_PASS_BLOCKS = 8

# The most bytes of transformed input and products that the point-by-point Winograd kernel
# (``cpu/winograd_points.py``) holds at once: it runs larger calls in passes of tiles, each pass reading
# the weight points again.
WINOGRAD_POINTS_MAX_WORKSPACE_BYTES = 64 * 2 ** 20

# The most bytes of weight points the point-by-point Winograd kernel transforms at once where its tiles
# fit one pass: it multiplies each range of output channels' points while they are in the L3 cache.
WINOGRAD_POINTS_WEIGHT_RANGE_BYTES = 4 * 2 ** 20

# Output rows of one channel per register block of the row-blocked kernel (``BLOCK_VECTORS`` each).
BLOCK_ROWS = 4

# The flat-phase kernel (cpu/phase_flat.py): SIMD vectors of flat output positions a block sums in
# registers, one input vector loaded per tap and vector.
FLAT_VECTORS = 4

# Its tasks (sample, group) run in chunks of tasks // FLAT_TASK_CHUNKS (at least one), each chunk allocating
# one gather buffer (X3D-S's depthwise layers on 5x5 to 10x10 planes: 6-10% faster than one per task).
FLAT_TASK_CHUNKS = 32

# The channels-last depthwise kernel (cpu/depthwise.py): output positions a register block sums, one
# vector of channels each (16 of AVX-512's 32 registers, 8 of AVX2's 16), and the most bytes of input
# one of its tasks gathers (the planes it reads, channels last, in the L2 cache).
DEPTHWISE_TILE = 16 if VECTOR_BYTES == 64 else 8
DEPTHWISE_SLAB_BYTES = 512 * 1024

# Register block of the weight gradient (``cpu/weight_grad.py``): output channels x kernel taps of one
# input channel, one accumulator vector each: 4 x 3 (12 of AVX2's 16 registers), 8 x 3 with AVX-512
# (24 of 32; 1.2-1.4x the 4 x 3 blocks on dense, grouped and dilated k3, processes alternating). A group
# with fewer output channels takes blocks of 1 channel x ``WEIGHT_BLOCK_SINGLE_TAPS`` taps instead.
WEIGHT_BLOCK_CHANNELS = 8 if VECTOR_BYTES == 64 else 4
WEIGHT_BLOCK_TAPS = 3
WEIGHT_BLOCK_SINGLE_TAPS = 12

# The weight gradient vectorized over output channels (``cpu/channel_weight_grad.py``): register blocks
# of CHANNEL_WEIGHT_GRAD_COLUMNS input channels x CHANNEL_WEIGHT_GRAD_VECTORS SIMD vectors of output
# channels (16 accumulators), over chunks of about CHANNEL_WEIGHT_GRAD_CHUNK output positions (whole
# rows) whose output gradient stays in L1 (2 x 16 float32 channels x 256 positions: 32 KiB).
CHANNEL_WEIGHT_GRAD_COLUMNS = 8
CHANNEL_WEIGHT_GRAD_VECTORS = 2
CHANNEL_WEIGHT_GRAD_CHUNK = 256
# Where a group's output channels fill at least two blocks of CHANNEL_WEIGHT_GRAD_WIDE_VECTORS vectors,
# leaving no more lanes empty than the narrow blocks, blocks of CHANNEL_WEIGHT_GRAD_WIDE_COLUMNS input
# channels x that many vectors (24 accumulators: 10 loads per 24 multiply-adds, where the narrow block
# takes 10 per 16). Measured against the narrow block (2-core Zen 4, float32, both in one process,
# alternating, medians of 9-11): 1x3x3 and 3x3x3 layers of MC3, R3D and R(2+1)D with 128-512 output
# channels 0.92-1.00x the time, their 3x1x1 layers 0.89-0.98x, 3x3x3 with 128 and 256 channels at 8x28x28
# and 4x14x14 0.97-0.99x; with 64 output channels 0.95-1.08x (one wide block) and with 32 2x (half of
# it empty). AVX2 has 16 vector registers: the narrow block only.
CHANNEL_WEIGHT_GRAD_WIDE_COLUMNS = 6 if VECTOR_BYTES == 64 else CHANNEL_WEIGHT_GRAD_COLUMNS
CHANNEL_WEIGHT_GRAD_WIDE_VECTORS = 4 if VECTOR_BYTES == 64 else CHANNEL_WEIGHT_GRAD_VECTORS

# Output positions (whole output rows, at least one) a task of the weight gradient sums at a time for
# all its blocks, so that their rows of the output gradient stay in L1 between blocks.
WEIGHT_GRAD_CHUNK = 512

# CPU calls that allocate more than this ask the system for the memory available first (a file read
# of about 50 us) and fail early with MemoryError when it is short; smaller ones skip the query.
MEMORY_QUERY_BYTES = 64 * 2 ** 20
