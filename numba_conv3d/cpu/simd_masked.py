"""SIMD operations on partial vectors, for the CPU kernels: masked loads and stores, and transposes.

``simd.py`` holds the register blocks of whole vectors; here are the operations whose vectors end
inside a row or are read across it: the weight gradient's outer products with a masked tail
(``weight_grad.py``), the channel-vectorized and depthwise kernels' transposed, masked stores
(``channel_vectorized.py``, ``depthwise.py``), and the AMX kernel's layout and stores, squares
transposed in registers (``amx_bfloat16.py``). The same conventions hold: blocks are tuples of LLVM
vectors, arrays C-contiguous memory at element offsets, extents guaranteed by the callers.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from .simd import (_element_pointer, _fma, _is_literal_int, _lanes, _overload_suffix, _splat, _vectors_at,
                   vector_lanes)
from .simd_bfloat16 import stored


def _lane_mask(builder, valid, lanes):
    """The mask of lanes below ``valid`` (a vector of ``lanes`` i1)."""
    index_type = ir.VectorType(valid.type, lanes)
    return builder.icmp_signed("<", ir.Constant(index_type, list(range(lanes))),
                               _splat(builder, valid, index_type))


def _masked_vectors_at(context, builder, array_type, array, offsets, vector_type, valid):
    """Loads of ``vector_type`` at each element offset of ``array`` whose lanes from ``valid`` on read
    zero and touch no memory (``llvm.masked.load``)."""
    lanes = vector_type.count
    mask = _lane_mask(builder, valid, lanes)
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector_type, [vector_type.as_pointer(), ir.IntType(32), mask.type,
                                                      vector_type]),
        f"llvm.masked.load.{_overload_suffix(vector_type)}.p0")
    alignment, zero = ir.Constant(ir.IntType(32), 1), ir.Constant(vector_type, None)
    return [builder.call(function, [builder.bitcast(_element_pointer(context, builder, array_type, array, at),
                                                    vector_type.as_pointer()), alignment, mask, zero])
            for at in offsets]


def _masked_store(context, builder, array_type, array, at, vector, mask):
    """Store the lanes of ``vector`` that ``mask`` selects at element offset ``at`` of ``array``
    (``llvm.masked.store``: the other lanes' memory is not touched)."""
    vector_type = vector.type
    store = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [vector_type, vector_type.as_pointer(), ir.IntType(32),
                                                        mask.type]),
        f"llvm.masked.store.{_overload_suffix(vector_type)}.p0")
    pointer = builder.bitcast(_element_pointer(context, builder, array_type, array, at),
                              vector_type.as_pointer())
    builder.call(store, [vector, pointer, ir.Constant(ir.IntType(32), 1), mask])


@intrinsic
def copy_lanes(typingctx, target, t_start, source, s_start, valid):
    """``target[t_start + k] = source[s_start + k]`` for ``k < valid`` (at most one vector's lanes):
    one masked load and one masked store, no other element read or written."""
    if target.dtype != source.dtype:
        return None

    def codegen(context, builder, signature, args):
        target, t_start, source, s_start, valid = args
        vector_type = ir.VectorType(context.get_value_type(signature.args[0].dtype),
                                    _lanes(signature.args[0].dtype))
        loaded = _masked_vectors_at(context, builder, signature.args[2], source, [s_start], vector_type,
                                    valid)[0]
        _masked_store(context, builder, signature.args[0], target, t_start, loaded,
                      _lane_mask(builder, valid, vector_type.count))
        return context.get_dummy_value()

    return types.none(target, t_start, source, s_start, valid), codegen


@register_jitable
def copy_elements(target, t_start, source, s_start, count):
    """``target[t_start : t_start + count] = source[s_start : s_start + count]`` by whole and masked
    vectors: short runs (rows of a few columns) without a scalar loop's per-element cost."""
    lanes = vector_lanes(target)
    for k in range(0, count, lanes):
        copy_lanes(target, t_start + k, source, s_start + k, min(lanes, count - k))


def _outer_fma(block, channels, valid):
    """Code of :func:`outer_fma` (every lane) or :func:`outer_fma_tail` (the first ``valid`` lanes)."""
    per_channel = block.count // channels.literal_value

    def codegen(context, builder, signature, args):
        values, grad, g_start, g_step, source, s_start, offsets, first = args[:8]
        grad_type, source_type, offsets_type = signature.args[1], signature.args[4], signature.args[6]
        vector_type = context.get_value_type(block.dtype)
        g_at = [builder.add(g_start, builder.mul(g_step, g_step.type(c)))
                for c in range(channels.literal_value)]
        s_at = [builder.add(s_start, builder.load(_element_pointer(context, builder, offsets_type, offsets,
                                                                   builder.add(first, first.type(t)))))
                for t in range(per_channel)]
        if valid:
            g_vectors = _masked_vectors_at(context, builder, grad_type, grad, g_at, vector_type, args[9])
            s_vectors = _masked_vectors_at(context, builder, source_type, source, s_at, vector_type, args[9])
        else:
            g_vectors = _vectors_at(context, builder, grad_type, grad, g_at, vector_type)
            s_vectors = _vectors_at(context, builder, source_type, source, s_at, vector_type)
        out = [_fma(builder, g_vectors[k // per_channel], s_vectors[k % per_channel],
                    builder.extract_value(values, k)) for k in range(block.count)]
        return context.make_tuple(builder, block, out)

    return codegen


@intrinsic
def outer_fma(typingctx, block, grad, g_start, g_step, source, s_start, offsets, first, channels):
    """``block[c, t] += grad[g_start + c * g_step ...] * source[s_start + offsets[first + t] ...]``, one
    vector each, with one rounding per element: the outer product of ``channels`` (a compile-time int)
    vectors of ``grad`` and ``len(block) // channels`` vectors of ``source``, each loaded once.

    The block is a flat tuple of ``channels x len(block) // channels`` vectors, channel-major.
    """
    if not _is_literal_int(channels):
        return None
    return (block(block, grad, g_start, g_step, source, s_start, offsets, first, channels),
            _outer_fma(block, channels, False))


@intrinsic
def outer_fma_tail(typingctx, block, grad, g_start, g_step, source, s_start, offsets, first, channels,
                   valid):
    """:func:`outer_fma` on the first ``valid`` lanes of each vector: the others read zero (and no
    memory), so a row may end inside a vector."""
    if not _is_literal_int(channels):
        return None
    return (block(block, grad, g_start, g_step, source, s_start, offsets, first, channels, valid),
            _outer_fma(block, channels, True))


def _transposed(builder, rows):
    """The columns of the square matrix whose rows are the vectors ``rows`` (as many as their lanes, a
    power of two): butterfly stages, each swapping the off-diagonal blocks of pairs of rows (one
    two-source shuffle per row and stage)."""
    n, rows = len(rows), list(rows)
    distance = n // 2
    while distance:
        first = [j if not j & distance else n + j - distance for j in range(n)]
        second = [j + distance if not j & distance else n + j for j in range(n)]
        for r in range(n):
            if not r & distance:
                a, b = rows[r], rows[r + distance]
                rows[r] = builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), n),
                                                                   first))
                rows[r + distance] = builder.shuffle_vector(
                    a, b, ir.Constant(ir.VectorType(ir.IntType(32), n), second))
        distance //= 2
    return rows


@intrinsic
def store_transposed_runs(typingctx, target, t_start, t_step, columns, source, s_start, s_step, squares,
                          shift, shift_start, runs, run_count):
    """``squares`` (a compile-time int) squares of one vector's lanes of ``source``, stacked (row ``j``
    at ``s_start + j * s_step``), shifted by ``shift[shift_start + i]`` in column ``i``, transposed,
    and stored in runs: for each column ``i`` below ``columns`` and each run ``r`` below ``run_count``
    (``runs[r]``: first row, rows, target offset), ``target[t_start + i * t_step + offset + j -
    first] = source[s_start + j * s_step + i] + shift[shift_start + i]`` for ``first <= j < first +
    rows``. Loaded whole, transposed in registers, each column of the stack stored by one masked store per
    run (nothing else is written); float32 sums into a uint16 ``target`` as the bits of their bfloat16
    rounding (``simd_bfloat16.stored``)."""
    rounds = target.dtype == types.uint16 and source.dtype == types.float32
    if not _is_literal_int(squares) or not (target.dtype == source.dtype == shift.dtype
                                            or rounds and shift.dtype == types.float32):
        return None

    def codegen(context, builder, signature, args):
        as_int64 = [context.cast(builder, value, kind, types.int64) if isinstance(kind, types.Integer)
                    else value for value, kind in zip(args, signature.args)]
        t_start_value, t_step_value, columns_value = as_int64[1:4]
        lanes = _lanes(source.dtype)
        vector_type = ir.VectorType(context.get_value_type(source.dtype), lanes)
        shifts = _vectors_at(context, builder, signature.args[8], args[8], [as_int64[9]], vector_type)[0]
        stacked = lanes * squares.literal_value
        row_starts = [builder.add(as_int64[5], builder.mul(as_int64[6], ir.Constant(ir.IntType(64), j)))
                      for j in range(stacked)]
        rows = [builder.fadd(row, shifts)
                for row in _vectors_at(context, builder, signature.args[4], args[4], row_starts, vector_type)]
        columns = _stacked_columns(builder, [_transposed(builder, rows[k:k + lanes])
                                             for k in range(0, stacked, lanes)])
        values = [stored(builder, signature.args[0], column) for column in columns]
        with cgutils.for_range(builder, as_int64[11]) as loop:
            first, count, offset = (_int64_at(context, builder, signature.args[10], args[10],
                                              builder.add(builder.mul(loop.index, loop.index.type(3)),
                                                          loop.index.type(k)))
                                    for k in range(3))
            mask = _lane_range(builder, first, builder.add(first, count), stacked)
            base = builder.sub(builder.add(t_start_value, offset), first)
            for i, value in enumerate(values):
                below = builder.icmp_signed("<", columns_value.type(i), columns_value)
                at = builder.add(base, builder.mul(t_step_value, t_step_value.type(i)))
                with builder.if_then(below, likely=True):
                    _masked_store(context, builder, signature.args[0], args[0], at, value, mask)
        return context.get_dummy_value()

    return types.void(target, t_start, t_step, columns, source, s_start, s_step, squares, shift, shift_start,
                      runs, run_count), codegen


def _stacked_columns(builder, squares):
    """Column ``i`` of each transposed square (``squares``: lists of columns), concatenated in order."""
    columns = list(squares[0])
    for square in squares[1:]:
        lanes, width = square[0].type.count, columns[0].type.count
        order = ir.Constant(ir.VectorType(ir.IntType(32), width + lanes), list(range(width + lanes)))
        columns = [builder.shuffle_vector(column, _widened(builder, part, width), order)
                   for column, part in zip(columns, square)]
    return columns


def _widened(builder, vector, lanes):
    """``vector`` padded with undefined lanes to ``lanes`` (a shuffle's second operand must match the
    first's type)."""
    count = vector.type.count
    if count == lanes:
        return vector
    return builder.shuffle_vector(vector, ir.Constant(vector.type, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                              list(range(count)) + [count] * (lanes - count)))


def _int64_at(context, builder, array_type, array, at):
    """Element ``at`` of an integer array, as an i64."""
    return context.cast(builder, builder.load(_element_pointer(context, builder, array_type, array, at)),
                        array_type.dtype, types.int64)


def _lane_range(builder, first, stop, lanes):
    """The mask of lanes from ``first`` to below ``stop`` (i64) of a vector of ``lanes``."""
    index_type = ir.VectorType(ir.IntType(64), lanes)
    numbers = ir.Constant(index_type, list(range(lanes)))
    return builder.and_(builder.icmp_signed(">=", numbers, _splat(builder, first, index_type)),
                        builder.icmp_signed("<", numbers, _splat(builder, stop, index_type)))


@intrinsic
def scatter_transposed(typingctx, target, rows, first, base, step, stored_lanes, source, s_start, s_step):
    """``target[(base + rows[first + i]) * step + j] = source[s_start + j * s_step + i]`` for ``j``
    below ``stored_lanes`` and each ``i`` below one vector's lanes whose ``rows[first + i]`` is not
    negative: a square of whole vectors loaded, transposed in registers and stored by masked stores
    (nothing else is written)."""
    if target.dtype != source.dtype:
        return None

    def codegen(context, builder, signature, args):
        target_value, rows_value, first_value, stored_value = args[0], args[1], args[2], args[5]
        source_value, s_start_value, s_step_value = args[6:]
        base_value, step_value = (context.cast(builder, args[k], signature.args[k], types.int64)
                                  for k in (3, 4))
        lanes = _lanes(source.dtype)
        vector_type = ir.VectorType(context.get_value_type(source.dtype), lanes)
        row_starts = [builder.add(s_start_value, builder.mul(s_step_value, s_step_value.type(j)))
                      for j in range(lanes)]
        loaded = _vectors_at(context, builder, signature.args[6], source_value, row_starts, vector_type)
        kept = _lane_mask(builder, stored_value, lanes)
        for i, column in enumerate(_transposed(builder, loaded)):
            row = builder.load(_element_pointer(context, builder, signature.args[1], rows_value,
                                                builder.add(first_value, first_value.type(i))))
            row = context.cast(builder, row, signature.args[1].dtype, types.int64)
            mask = builder.select(builder.icmp_signed(">=", row, row.type(0)), kept,
                                  ir.Constant(kept.type, None))
            at = builder.mul(builder.add(base_value, row), step_value)
            _masked_store(context, builder, signature.args[0], target_value, at, column, mask)
        return context.get_dummy_value()

    return types.void(target, rows, first, base, step, stored_lanes, source, s_start, s_step), codegen


@intrinsic
def store_channel_rows(typingctx, block, array, start, channel_step, row_step, valid_channels,
                       valid_rows, valid_columns, columns, vectors):
    """Write ``block`` (a tile of output rows x ``columns`` columns, each position ``vectors``
    vectors of output channels, compile-time ints: element ``j * vectors + v`` holds channels ``v *
    lanes ...`` of position j, row ``j // columns`` and column ``j % columns``) to ``array`` as rows
    of channels: channel c, row r, column k at element ``start + c * channel_step + r * row_step +
    k``, for channels below ``valid_channels``, rows below ``valid_rows`` and columns below
    ``valid_columns`` (no other element is written; to a uint16 ``array`` as bfloat16 bits,
    ``simd_bfloat16.stored``). Tiles of lanes x lanes are transposed in registers and stored with masked
    stores, one per tile row they hold."""
    if not _is_literal_int(columns, vectors):
        return None

    def codegen(context, builder, signature, args):
        values, array, start, channel_step, row_step, valid_channels, valid_rows, valid_columns = args[:8]
        vector_type = context.get_value_type(block.dtype)
        lanes, count = block.dtype.lanes, vectors.literal_value
        width, positions = columns.literal_value, block.count // vectors.literal_value
        zero = ir.Constant(vector_type, None)
        for first in range(0, positions, lanes):
            rows = range(first // width, (min(first + lanes, positions) - 1) // width + 1)
            masks = []
            for r in rows:
                # lanes [r * width - first, + valid_columns) hold row r's columns
                below = _lane_mask(builder, builder.add(valid_columns, valid_columns.type(r * width - first)),
                                   lanes)
                masks.append(builder.and_(below, ir.Constant(below.type, [lane >= r * width - first
                                                                            for lane in range(lanes)])))
            for v in range(count):
                tile = [builder.extract_value(values, j * count + v) if j < positions else zero
                        for j in range(first, first + lanes)]
                for lane, row in enumerate(_transposed(builder, tile)):
                    channel = v * lanes + lane
                    with builder.if_then(builder.icmp_signed("<", valid_channels.type(channel),
                                                             valid_channels), likely=True):
                        at = builder.add(start, builder.mul(channel_step, channel_step.type(channel)))
                        for r, mask in zip(rows, masks):
                            with builder.if_then(builder.icmp_signed("<", valid_rows.type(r), valid_rows),
                                                 likely=True):
                                row_at = builder.add(at, builder.add(builder.mul(row_step, row_step.type(r)),
                                                                     start.type(first - r * width)))
                                _masked_store(context, builder, signature.args[1], array, row_at,
                                              stored(builder, signature.args[1], row), mask)
        return context.get_dummy_value()

    return types.none(block, array, start, channel_step, row_step, valid_channels, valid_rows,
                      valid_columns, columns, vectors), codegen
