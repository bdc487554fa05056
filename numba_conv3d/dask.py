"""The Dask front: ``conv3d`` of a ``dask.array.Array``, one task per output chunk; Dask distributes them.

Importing this module imports no Dask (``dask_conv3d`` does, when called). The whole volume is planned
first, by the planner, from the Dask array's shape and dtype. Then each output chunk becomes one task
that is given the part it reads of every input block its receptive field touches (any number of blocks
per axis, so chunks smaller than the halo need no rechunking; a part is cut by a small task that Dask
runs where its block lives, so only halos travel between workers), joins the parts, pads at the
volume's true border only, through one index map per axis (``shape_rules.padded_source_index``, the rule
the CPU kernels' index maps use; circular padding makes a border chunk read blocks at the volume's far
end), and convolves that piece in memory with no padding and the algorithm the whole-volume plan chose:
every output element is then summed exactly as the in-memory call sums it.
"""
import itertools
import math
import operator
from dataclasses import dataclass

import numpy as np

from .config import DASK_WHOLE_BLOCK_BYTES
from .dispatch import BACKENDS, backend_for, is_dask_array
from .planner import plan_for_arrays, plan_for_input_shape
from .shape_rules import PAD_ZEROS, ceil_div, dilated_extent, padded_source_index

_OP = "conv3d"


def dask_conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
                output_chunks=None, algorithm="auto", allow_tf32=False):
    """:func:`numba_conv3d.conv3d` of a Dask array: a lazy Dask array holding exactly the in-memory result.

    Equivalent to ``torch.nn.functional.conv3d(input, weight, bias, stride, padding, dilation, groups)``
    (plus ``padding_mode`` as ``torch.nn.Conv3d`` applies it) on the whole volume; ``conv3d`` calls this
    for Dask input. Every argument is validated, and every error raised, when the graph is built, before
    anything computes. Each output chunk is one task; its result is bitwise the in-memory call's (same
    algorithm, same summation order).

    Parameters
    ----------
    input : dask.array.Array
        (N, C_in, D, H, W) or unbatched (C_in, D, H, W), of known chunk sizes, with NumPy (CPU) or CuPy
        (GPU) chunks. Spatial and batch chunks may have any sizes, smaller than the kernel's halo too.
        Input channels stay split where chunks hold whole groups (grouped and depthwise convolutions:
        each task then reads only its groups' channels); otherwise each channel chunk boundary moves
        down to a group boundary (without groups: one channel chunk).
    weight : numpy.ndarray or CUDA array or dask.array.Array
        (C_out, C_in / groups, KD, KH, KW), the input's dtype. A Dask weight is computed once. It enters
        the graph once, as one key per output channel chunk (its slice).
    bias : numpy.ndarray or CUDA array or dask.array.Array, optional
        (C_out,), like ``weight``.
    stride, padding, dilation, groups, padding_mode
        As in :func:`numba_conv3d.conv3d`.
    output_chunks : optional
        Chunks of the result, in any form ``dask.array.core.normalize_chunks`` takes for the output's
        shape (a dict names only the axes to change). The channel axis must be chunked as by default
        (the output channels of each input channel chunk's groups); spatial chunks must not be empty.
        By default the batch chunks are the input's and each spatial input chunk boundary ``b`` becomes
        the output boundary ``ceil(b / stride)`` (clipped to the output's extent, duplicates dropped).
    algorithm : str, optional
        As in :func:`numba_conv3d.conv3d`, chosen once for the whole volume; every chunk runs it.
    allow_tf32 : bool, optional
        As in :func:`numba_conv3d.conv3d`.

    Returns
    -------
    dask.array.Array
        (N, C_out, OD, OH, OW) (unbatched: without N) of the input's dtype, lazy, with
        ``O = floor((I + pad_front + pad_back - dilation * (K - 1) - 1) / stride) + 1``.

    Raises
    ------
    ValueError
        Bad values or shapes (as :func:`numba_conv3d.conv3d`), unknown chunk sizes, or bad
        ``output_chunks``; raised when the graph is built.
    TypeError
        Bad types or dtypes, as :func:`numba_conv3d.conv3d`.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from numba_conv3d import dask_conv3d
    >>> x = da.ones((1, 1, 64, 64, 64), chunks=(1, 1, 32, 32, 32))
    >>> y = dask_conv3d(x, np.ones((1, 1, 3, 3, 3)), padding="same", padding_mode="reflect")
    >>> y.chunks[2:]
    ((32, 32), (32, 32), (32, 32))
    """
    weight, bias = _in_memory(weight), _in_memory(bias)
    _check_known_chunks(input)
    backend = backend_for(input._meta, weight, bias)
    plan = plan_for_input_shape(tuple(input.shape), input.dtype, weight, bias, stride=stride,
                                padding=padding, dilation=dilation, groups=groups,
                                padding_mode=padding_mode, backend=backend.NAME, algorithm=algorithm,
                                op=_OP, allow_tf32=allow_tf32)
    x = input if plan.batched else input[np.newaxis]
    x = x.rechunk({1: _group_chunks(x.chunks[1], plan.in_per_group)})
    chunks = _output_chunks(plan, x.chunks, output_chunks)
    y = _convolution_graph(plan, x, weight, bias, chunks)
    return y if plan.batched else y[0]


def _in_memory(operand):
    """A Dask weight or bias computed into memory; anything else unchanged."""
    return operand.compute() if is_dask_array(operand) else operand


def _check_known_chunks(input):
    if any(math.isnan(n) for n in input.shape):
        raise ValueError(f"{_OP}: input has unknown chunk sizes (shape {input.shape}); call "
                         f"input.compute_chunk_sizes() first")


def _group_chunks(channel_chunks, in_per_group):
    """Input channel chunks of whole groups: each boundary of ``channel_chunks`` moved down to a group
    boundary (duplicates dropped); one chunk without groups."""
    total = sum(channel_chunks)
    inner = {int(b) // in_per_group * in_per_group for b in np.cumsum(channel_chunks)[:-1]}
    bounds = sorted((inner - {0}) | {0, total})
    return tuple(int(n) for n in np.diff(bounds))


def _output_chunks(plan, input_chunks, requested):
    """The batched (5-D) output chunks: the default from ``input_chunks``, or ``requested`` checked.
    Output channels are chunked like the input's (chunks of whole groups), the groups' outputs."""
    channels = tuple(n // plan.in_per_group * plan.out_per_group for n in input_chunks[1])
    default = (input_chunks[0], channels) + tuple(
        _strided_chunks(chunks, stride, size)
        for chunks, stride, size in zip(input_chunks[2:], plan.stride, plan.output_size))
    if requested is None:
        return default
    from dask.array.core import normalize_chunks

    own = default if plan.batched else default[1:]
    if isinstance(requested, dict):
        requested = tuple(requested.get(axis, chunks) for axis, chunks in enumerate(own))
    chunks = normalize_chunks(requested, shape=plan.output_shape, dtype=plan.dtype)
    chunks = chunks if plan.batched else ((1,),) + chunks
    if chunks[1] != channels:
        raise ValueError(f"{_OP}: output_chunks must keep the output channels in chunks {channels} "
                         f"(the groups of each input channel chunk), but got channel chunks {chunks[1]}")
    if any(0 in spatial for spatial in chunks[2:]):
        raise ValueError(f"{_OP}: output_chunks must not hold empty spatial chunks, but got "
                         f"{chunks[2:]}")
    return chunks


def _strided_chunks(input_chunks, stride, output_size):
    """Output chunks along one axis: input chunk boundary ``b`` -> ``ceil(b / stride)``, never empty."""
    inner = {min(ceil_div(int(b), stride), output_size) for b in np.cumsum(input_chunks)[:-1]}
    bounds = sorted(inner | {0, output_size})
    return tuple(int(n) for n in np.diff(bounds))


@dataclass(frozen=True)
class AxisSpec:
    """How one axis of the batched input is read: the convolution's numbers along it. The batch axis
    reads its own positions (stride 1, span 1, no pad); the channel axis is read by groups: group g
    reads the ``C_in / groups`` input channels from ``g * C_in / groups``."""

    stride: int
    span: int
    pad_front: int
    size: int
    mode: int

    def sources(self, start, stop):
        """Input index (-1: a zero pad) of every padded position that outputs [start, stop) read."""
        positions = range(start * self.stride, (stop - 1) * self.stride + self.span)
        return np.array([padded_source_index(p, self.pad_front, self.size, self.mode) for p in positions],
                        np.int64)


def _axis_specs(plan):
    """The :class:`AxisSpec` of the batched input's five axes."""
    spatial = tuple(AxisSpec(s, dilated_extent(k, d), f, n, plan.mode_code)
                    for s, k, d, f, n in zip(plan.stride, plan.kernel_size, plan.dilation, plan.pad_front,
                                             plan.input_size))
    batch = AxisSpec(1, 1, 0, plan.batch, PAD_ZEROS)
    groups = AxisSpec(plan.in_per_group, plan.in_per_group, 0, plan.in_channels, PAD_ZEROS)
    return (batch, groups) + spatial


@dataclass(frozen=True, eq=False)
class AxisRead:
    """What one output chunk reads along one axis of the input.

    Attributes
    ----------
    blocks : tuple of int
        Indices of the input blocks read, ascending.
    cuts : tuple of slice
        The part of each block read; the parts are joined in block order.
    index : slice or numpy.ndarray
        Position in the joined parts of every padded coordinate the chunk's outputs read; -1 reads a
        plane of zeros appended after the parts.
    zero_plane : bool
        Whether ``index`` holds -1.
    """

    blocks: tuple
    cuts: tuple
    index: object
    zero_plane: bool

    def pad(self, piece, axis):
        """``piece`` (the joined parts) padded along ``axis``: a view where no index map is needed."""
        if self.zero_plane:
            shape = piece.shape[:axis] + (1,) + piece.shape[axis + 1:]
            piece = np.concatenate([piece, np.zeros_like(piece, shape=shape)], axis)
        if isinstance(self.index, slice):
            return piece[(slice(None),) * axis + (self.index,)]
        return np.take(piece, self.index, axis)


def axis_read(bounds, sources):
    """The :class:`AxisRead` of padded coordinates reading input indices ``sources`` (-1: zero) along an
    axis whose blocks start at ``bounds[:-1]`` and end at ``bounds[1:]``."""
    block_of = np.clip(np.searchsorted(bounds, sources, "right") - 1, 0, len(bounds) - 2)
    read = sources >= 0
    blocks = tuple(int(b) for b in np.unique(block_of[read])) or (int(block_of[0]) if len(sources) else 0,)
    index = np.full(len(sources), -1, np.int64)
    cuts, offset = [], 0
    for block in blocks:
        mine = read & (block_of == block)
        local = sources[mine] - bounds[block]
        start, stop = (int(local.min()), int(local.max()) + 1) if local.size else (0, 0)
        index[mine] = local - start + offset
        cuts.append(slice(start, stop))
        offset += stop - start
    zero_plane = bool((index < 0).any())
    return AxisRead(blocks, tuple(cuts), _as_slice(index) or index, zero_plane)


def _as_slice(index):
    """``index`` as a slice when it counts up by one from a non-negative start, else None."""
    if not index.size:
        return slice(0, 0)
    if index[0] >= 0 and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        return slice(int(index[0]), int(index[0]) + index.size)
    return None


def _axis_reads(specs, input_chunks, output_chunks):
    """Per axis, the :class:`AxisRead` of each output chunk along it."""
    reads = []
    for spec, in_chunks, out_chunks in zip(specs, input_chunks, output_chunks):
        bounds = np.concatenate([[0], np.cumsum(in_chunks)]).astype(np.int64)
        stops = np.cumsum(out_chunks)
        reads.append([axis_read(bounds, spec.sources(int(stop - n), int(stop)))
                      for n, stop in zip(out_chunks, stops)])
    return reads


@dataclass(frozen=True)
class ChunkConvolution:
    """The task of one output chunk: join and pad the parts of blocks it is given, then convolve them in
    memory with no padding, the whole-volume plan's stride, dilation, backend, algorithm and TF32
    permission, and the weight and bias of the chunk's groups."""

    stride: tuple
    dilation: tuple
    backend: str
    algorithm: str
    allow_tf32: bool

    def __call__(self, parts, reads, weight, bias):
        piece = padded_piece(parts, reads)
        plan = plan_for_arrays(piece, weight, bias, stride=self.stride, dilation=self.dilation,
                               groups=piece.shape[1] // weight.shape[1], backend=self.backend,
                               algorithm=self.algorithm, op=_OP, allow_tf32=self.allow_tf32)
        return BACKENDS[plan.backend].execute(plan, piece, weight, bias)


def padded_piece(parts, reads):
    """The padded input of one output chunk from the ``parts`` of blocks it reads (nested lists, one
    level per axis; a small block may come whole, see :func:`_part_keys`) and its :class:`AxisRead`
    per axis."""
    from dask.array.core import concatenate3

    piece = concatenate3(_cut(parts, reads))
    for axis, read in enumerate(reads):
        piece = read.pad(piece, axis)
    return piece


def _cut(parts, reads, cuts=()):
    """``parts`` with every block that came whole cut to the part ``reads`` take of it."""
    if len(cuts) == len(reads):
        part_shape = tuple(cut.stop - cut.start for cut in cuts)
        return parts if parts.shape == part_shape else parts[cuts]
    read = reads[len(cuts)]
    return [_cut(part, reads, cuts + (cut,)) for part, cut in zip(parts, read.cuts)]


def _part_keys(x, reads, layer, name, blocks=(), cuts=()):
    """Nested lists (one level per axis) of the keys of the parts of the input blocks that ``reads``
    take: the block's own key where the part is the whole block or the block is small (at most
    ``DASK_WHOLE_BLOCK_BYTES``: the task cuts it), else the key of a task that cuts the part out of the
    block (added to ``layer`` once), which Dask runs where the block lives, so that only the part
    travels."""
    if len(blocks) == len(reads):
        block = (x.name,) + blocks
        shape = tuple(x.chunks[axis][b] for axis, b in enumerate(blocks))
        whole = all(cut == slice(0, n) for cut, n in zip(cuts, shape))
        if whole or math.prod(shape) * x.dtype.itemsize <= DASK_WHOLE_BLOCK_BYTES:
            return block
        key = (f"{name}-part",) + blocks + tuple(c.start for c in cuts) + tuple(c.stop for c in cuts)
        layer[key] = (operator.getitem, block, cuts)
        return key
    read = reads[len(blocks)]
    return [_part_keys(x, reads, layer, name, blocks + (b,), cuts + (cut,))
            for b, cut in zip(read.blocks, read.cuts)]


def _convolution_graph(plan, x, weight, bias, chunks):
    """The lazy batched result: one task per output chunk of ``chunks``; the weight and bias of each
    output channel chunk as keys."""
    from dask.array import Array
    from dask.array.utils import meta_from_array
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    name = "conv3d-" + tokenize(x, weight, bias, plan, chunks)
    layer = {}
    stops = np.cumsum(chunks[1])
    for j, (n, stop) in enumerate(zip(chunks[1], stops)):
        layer[f"{name}-weight-{j}"] = weight[stop - n:stop]
        if bias is not None:
            layer[f"{name}-bias-{j}"] = bias[stop - n:stop]
    task = ChunkConvolution(plan.stride, plan.dilation, plan.backend, plan.algorithm, plan.allow_tf32)
    group_chunks = tuple(n // plan.out_per_group for n in chunks[1])
    reads = _axis_reads(_axis_specs(plan), x.chunks, (chunks[0], group_chunks) + chunks[2:])
    for position in itertools.product(*(range(len(c)) for c in chunks)):
        chunk_reads = tuple(axis[i] for axis, i in zip(reads, position))
        j = position[1]
        layer[(name,) + position] = (task, _part_keys(x, chunk_reads, layer, name), chunk_reads,
                                     f"{name}-weight-{j}", f"{name}-bias-{j}" if bias is not None else None)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[x])
    return Array(graph, name, chunks, meta=meta_from_array(x._meta, ndim=5, dtype=plan.dtype))
