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
