"""Tunables of the kernels, in one place (never literals inside kernels).

Numba freezes module globals into compiled code, so a change here takes effect on the next compilation.
"""

# Parallel tasks wanted per worker thread; output-channel blocks are split until there are this many.
TASKS_PER_THREAD = 4

# Bytes of the accumulator tile of output rows that one task sums at a time (about half of L1).
ACCUMULATOR_TILE_BYTES = 16 * 1024

# Bytes of output columns one register block holds per output channel (blocked kernel): 128 bytes are
# 4 AVX2 vectors, i.e. 32 float32 or 16 float64 columns; measured best on this machine (24 float32
# columns ran at a third of the speed: the loop no longer vectorizes cleanly).
BLOCK_BYTES = 128

# Bytes of slab rows one register block may read per pass over input channels (blocked kernel): about
# half of a 32 KiB L1 data cache, the rest for the packed weights.
L1_BLOCK_BYTES = 16 * 1024

# CUDA thread-block tiles (``numba_conv3d.cuda.tiling.Tile``): a block of ``columns x thread_rows x
# channel_threads`` threads computes ``columns`` output columns x ``thread_rows * rows_per_thread``
# output rows of one output depth, for ``channel_threads * channels_per_thread`` output channels; each
# thread keeps ``rows_per_thread x channels_per_thread`` sums in registers. ``stage_channels`` input
# channels (each one plane of the padded input plus halo, and their weights) are staged in shared memory
# per barrier. 32 columns keep global loads and stores coalesced along W. Chosen with
# benchmarks/cuda_tiles.py on an H100: 8 rows x 8 channels per thread ran 1.2x faster than 4 x 8 on
# dense k3, and 16 rows per thread 1.5x faster than 4 on one-channel k7; 2 stage channels were within
# noise of 4 and 8 on dense k3 and faster on the smaller cases.
CUDA_CHANNEL_TILE = dict(columns=32, thread_rows=2, rows_per_thread=8, channel_threads=2,
                         channels_per_thread=8, stage_channels=2)
CUDA_ROW_TILE = dict(columns=32, thread_rows=2, rows_per_thread=16, channel_threads=1,
                     channels_per_thread=1, stage_channels=1)

# Bytes of register sums per thread; wider dtypes get fewer rows per thread (and more thread rows).
# Above this NVVM keeps the sums of complex tiles in local memory.
CUDA_SUM_BYTES = 256

# Blocks of a tiled kernel that must fit on one multiprocessor at once (launch bounds: caps the
# registers per thread). 2 would let one block compute while another stages, but the 128-register cap
# spills the sums to local memory: 1 measured 1.2x faster on an H100 (dense k3, 32 channels).
CUDA_MIN_BLOCKS_PER_SM = 1

# Threads per block of the fallback kernel (one output element per thread, no shared memory).
CUDA_DIRECT_THREADS = 256

# Dynamic shared memory a block may use without an opt-in on any CUDA GPU.
CUDA_SHARED_BYTES = 48 * 1024

# Most thread blocks launched; larger problems loop over their tiles (grid-stride).
CUDA_MAX_BLOCKS = 1 << 20

# CPU calls that allocate more than this ask the system for the memory available first (a file read
# of about 50 us) and fail early with MemoryError when it is short; smaller ones skip the query.
MEMORY_QUERY_BYTES = 64 * 2 ** 20
