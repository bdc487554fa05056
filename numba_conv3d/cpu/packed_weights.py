"""Packed weights kept between calls while the weight's bytes stay the same.

Packing a deep layer's weights into the order a kernel reads them costs as much as the convolution of
a small volume (512 x 512 x 27 bfloat16 weights: 3.5 ms, the layer 3.4 ms). A network run for
inference convolves with the same weights every call, so the packed arrays are kept, keyed by the
weight's address, shape, strides and the packing's arguments, next to a copy of the weight's bytes. A
call that finds an entry compares the whole weight with that copy (a changed element anywhere, even
where the user wrote into the array in place, packs again); the comparison reads both once, in
parallel (0.3 ms for 14 MB, 0.05 ms for 3.5 MB, where packing takes 3.5-8 ms). Entries beyond
``config.PACKED_WEIGHTS_BYTES`` (copies and packed arrays together) are dropped, least recently used
first. A weight is kept only from its second call at the same address: copies made for one call (a
widened float16 weight, an input gradient's flipped weight) at a new address each call would
otherwise each add a copy of their bytes and an entry never found again, pushing out the ones that
are (a copy that the allocator puts back at the same address is kept, and found while its bytes stay
the same). A derived weight (an array one of the kept packings made, such as the stacked weight of the
phase-stack route that AMX tiles pack again) is found again without its bytes compared: nothing
writes into such an array.
"""
import threading
from collections import OrderedDict

import numpy as np
from numba import njit, prange

from ..config import PACKED_WEIGHTS_BYTES

_CHUNK = 1 << 13
_PARALLEL_COMPARE_BYTES = 1 << 16
_ENTRIES = OrderedDict()
# The keys of the last ``_SEEN_KEYS`` weights packed once and not kept.
_SEEN = OrderedDict()
_SEEN_KEYS = 4096
# The arrays that kept entries' packings returned, by id (each held by its entry meanwhile).
_DERIVED = {}
_LOCK = threading.Lock()


@njit(parallel=True, cache=True)
def _same_words(kept, given):
    """Whether two equally long uint64 arrays are equal (chunks in parallel, vectorized XORs: each
    chunk a slice indexed from 0, which LLVM vectorizes; indexed from the chunk's start, the loop ran
    scalar at a fifth of the speed)."""
    chunks = (kept.size + _CHUNK - 1) // _CHUNK
    differs = np.zeros(chunks, np.bool_)
    for chunk in prange(chunks):
        kept_chunk = kept[chunk * _CHUNK:(chunk + 1) * _CHUNK]
        given_chunk = given[chunk * _CHUNK:(chunk + 1) * _CHUNK]
        bits = np.uint64(0)
        for i in range(kept_chunk.size):
            bits |= kept_chunk[i] ^ given_chunk[i]
        differs[chunk] = bits != 0
    return not differs.any()


def same_bytes(kept, given):
    """Whether two equally long C-contiguous uint8 arrays hold the same bytes (below
    ``_PARALLEL_COMPARE_BYTES`` on the calling thread: a parallel loop's start costs more)."""
    if kept.size < _PARALLEL_COMPARE_BYTES:
        return np.array_equal(kept, given)
    words = kept.size // 8 * 8
    return (_same_words(kept[:words].view(np.uint64), given[:words].view(np.uint64))
            and np.array_equal(kept[words:], given[words:]))


def _arrays(result):
    return [array for array in result if isinstance(array, np.ndarray)]


def _nbytes(entry):
    """Bytes an entry holds: its copy of the weight (a derived weight's owner is counted with the entry
    that made it) and its result."""
    kept, result, derived = entry
    return (0 if derived else kept.nbytes) + sum(array.nbytes for array in _arrays(result))


def _owner(array):
    """The array that owns ``array``'s memory (its views share it)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _forget(entry):
    """Forget that ``entry``'s result arrays are derived ones."""
    for owner in map(_owner, _arrays(entry[1])):
        if _DERIVED.get(id(owner)) is owner:
            del _DERIVED[id(owner)]


def _keep(key, entry, weight):
    """Store ``entry`` under ``key`` (its result's arrays become derived ones, but for any that may share
    memory with ``weight``), then drop the least recently used entries beyond ``PACKED_WEIGHTS_BYTES``.
    Called under ``_LOCK``."""
    replaced = _ENTRIES.pop(key, None)
    if replaced is not None:
        _forget(replaced)
    _ENTRIES[key] = entry
    for array in _arrays(entry[1]):
        if not np.may_share_memory(array, weight):
            owner = _owner(array)
            _DERIVED[id(owner)] = owner
    total = sum(_nbytes(e) for e in _ENTRIES.values())
    while _ENTRIES and total > PACKED_WEIGHTS_BYTES:
        _, dropped = _ENTRIES.popitem(last=False)
        _forget(dropped)
        total -= _nbytes(dropped)


def packed(weight, arguments, pack):
    """``pack(weight, *arguments)`` (a tuple), or what it returned for an earlier call whose weight had
    the same address, shape, strides, dtype and bytes, and the same ``arguments``. A weight is kept from
    its second call at the same address on (``_SEEN``): a copy made for one call (a widened, flipped or
    contiguous copy of the user's weight, new each call) is packed without being copied and kept. A
    derived weight (a view of an array an entry's packing returned that shares no memory with that
    entry's weight, such as a transposed or stacked weight that a kernel packs again) is kept from its
    first call, with the array that owns its memory in place of a copy of its bytes, and found again
    while its memory is that array's: nothing writes into a derived array.

    Parameters
    ----------
    weight : numpy.ndarray
        C-contiguous; only read.
    arguments : tuple
        Hashable further arguments of ``pack``.
    pack : callable
        Returns a tuple of arrays (and flags) that depends only on the weight's values and ``arguments``.
    """
    key = (weight.ctypes.data, weight.shape, weight.strides, weight.dtype.str, arguments, pack)
    owner = _owner(weight)
    with _LOCK:
        entry = _ENTRIES.get(key)
        if entry is not None:
            _ENTRIES.move_to_end(key)
        derived = _DERIVED.get(id(owner)) is owner
    raw = weight.reshape(-1).view(np.uint8)
    if entry is not None and (entry[0] is owner if entry[2] else same_bytes(entry[0], raw)):
        return entry[1]
    result = pack(weight, *arguments)
    with _LOCK:
        if not derived and entry is None and _SEEN.pop(key, None) is None:
            _SEEN[key] = True
            if len(_SEEN) > _SEEN_KEYS:
                _SEEN.popitem(last=False)
            return result
        _keep(key, (owner, result, True) if derived else (raw.copy(), result, False), weight)
    return result


def clear():
    """Drop every kept entry (and forget the weights seen once)."""
    with _LOCK:
        _ENTRIES.clear()
        _SEEN.clear()
        _DERIVED.clear()
