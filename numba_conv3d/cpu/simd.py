"""Explicit SIMD register blocks for the CPU kernels.

LLVM's auto-vectorizer turns a register block written as loops over a stack array into vector code only
for some block shapes, and then often keeps more broadcast weights live than there are registers (16 on
AVX2) and spills accumulators. These intrinsics state the block directly: a block is a tuple of LLVM
vectors (``lanes`` elements each, one register), and one multiply-add step adds weights times input
vectors to it with ``llvm.fma`` (one rounding per multiply-add, as a fused scalar loop would). Numba
keeps the tuple in SSA values, so the block stays in registers across the loops around it.

A block of ``channels x rows x vectors`` accumulators is a flat tuple in that order: element ``(c * rows
+ r) * vectors + v`` holds lanes ``v * lanes ...`` of output row ``r`` of channel ``c``. The channel-
blocked kernel uses 4 channels x 1 row x 3 vectors, or 4 x 3 x 1 on narrow outputs; the row-blocked
kernel 1 channel x 4 rows x 3 vectors (``blocked.py``, ``row_blocked.py``). The channel-vectorized
kernel (``channel_vectorized.py``) turns a block around: 8 or 14 "channels" that are the output
positions of a tile of rows x columns (``fma_tile``), each of 2 vectors of output channels (written out
by ``simd_masked.store_channel_rows``). Arrays are read and written
as C-contiguous memory at element offsets, without bounds checks: callers guarantee the extents (slabs
carry whole blocks of zero columns).
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

from ..config import VECTOR_BYTES
from .simd_bfloat16 import bfloat16_dot, stored
from .tile_spans import span_codes, span_positions


class Vector(types.Type):
    """Numba type of one SIMD register: ``lanes`` elements of the scalar ``dtype``."""

    def __init__(self, dtype, lanes):
        self.dtype, self.lanes = dtype, lanes
        super().__init__(name=f"Vector({dtype}, {lanes})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def _is_literal_int(*values):
    return all(isinstance(v, types.IntegerLiteral) for v in values)


def _element_pointer(context, builder, array_type, array, offset):
    return builder.gep(context.make_array(array_type)(context, builder, array).data, [offset])


def _vectors_at(context, builder, array_type, array, offsets, vector_type):
    """Unaligned loads of ``vector_type`` at each element offset of ``array``."""
    return [builder.load(builder.bitcast(_element_pointer(context, builder, array_type, array, at),
                                         vector_type.as_pointer()), align=1)
            for at in offsets]


def _offsets(builder, start, channel_step, row_step, count, rows, vectors, lanes):
    """Element offsets of the ``count`` vectors of a block of ``rows x vectors`` per channel:
    ``start + c * channel_step + r * row_step + v * lanes``."""
    per_channel = rows * vectors
    offsets = []
    for k in range(count):
        c, r, v = k // per_channel, k % per_channel // vectors, k % vectors
        at = builder.add(builder.mul(channel_step, channel_step.type(c)),
                         builder.mul(row_step, row_step.type(r)))
        offsets.append(builder.add(start, builder.add(at, start.type(v * lanes))))
    return offsets


def _lanes(dtype):
    return VECTOR_BYTES // (dtype.bitwidth // 8)


def vector_lanes(array):
    """Elements of ``array``'s dtype in one vector, or of a block's vectors (a compile-time constant in
    jitted code)."""
    raise NotImplementedError("vector_lanes is only callable from jitted code")


@overload(vector_lanes)
def _vector_lanes(array):
    lanes = array.dtype.lanes if isinstance(array.dtype, Vector) else _lanes(array.dtype)
    return lambda array: lanes


@intrinsic
def zero_block(typingctx, array, channels, rows, vectors):
    """A block of ``channels x rows x vectors`` (compile-time ints) zero vectors of ``array``'s
    dtype."""
    if not _is_literal_int(channels, rows, vectors):
        return None
    count = channels.literal_value * rows.literal_value * vectors.literal_value
    block = types.UniTuple(Vector(array.dtype, _lanes(array.dtype)), count)

    def codegen(context, builder, signature, args):
        zero = context.get_constant_null(block.dtype)
        return context.make_tuple(builder, block, [zero] * count)

    return block(array, channels, rows, vectors), codegen


@intrinsic
def store_block(typingctx, block, array, start):
    """Write ``block`` to ``array``, vector k from element ``start + k * lanes`` (the order of a
    row-major (rows, vectors * lanes) buffer)."""

    def codegen(context, builder, signature, args):
        values, array, start = args
        vector_pointer = context.get_value_type(block.dtype).as_pointer()
        for k in range(block.count):
            at = builder.add(start, start.type(k * block.dtype.lanes))
            pointer = _element_pointer(context, builder, signature.args[1], array, at)
            builder.store(builder.extract_value(values, k), builder.bitcast(pointer, vector_pointer),
                          align=1)
        return context.get_dummy_value()

    return types.none(block, array, start), codegen


@intrinsic
def store_rows(typingctx, block, array, start, channel_step, row_step, rows, vectors):
    """Write ``block`` (``rows x vectors`` per channel, compile-time ints) to ``array``: channel c,
    row r, vector v at element ``start + c * channel_step + r * row_step + v * lanes``; to a uint16
    array as bfloat16 bits (:func:`stored`)."""
    if not _is_literal_int(rows, vectors):
        return None

    def codegen(context, builder, signature, args):
        values, array, start, channel_step, row_step, _, _ = args
        offsets = _offsets(builder, start, channel_step, row_step, block.count, rows.literal_value,
                           vectors.literal_value, block.dtype.lanes)
        for k, at in enumerate(offsets):
            vector = stored(builder, signature.args[1], builder.extract_value(values, k))
            pointer = _element_pointer(context, builder, signature.args[1], array, at)
            builder.store(vector, builder.bitcast(pointer, vector.type.as_pointer()), align=1)
        return context.get_dummy_value()

    return types.none(block, array, start, channel_step, row_step, rows, vectors), codegen


@intrinsic
def splat_channels(typingctx, like, values, start, step, rows, vectors):
    """A block shaped as ``like`` (``rows x vectors`` per channel) whose channel c is
    ``values[start + c * step]`` in every lane: the bias."""
    if not _is_literal_int(rows, vectors):
        return None

    def codegen(context, builder, signature, args):
        _, values, start, step, _, _ = args
        per_channel = rows.literal_value * vectors.literal_value
        vector_type = context.get_value_type(like.dtype)
        out = []
        for c in range(like.count // per_channel):
            at = builder.add(start, builder.mul(step, step.type(c)))
            value = builder.load(_element_pointer(context, builder, signature.args[1], values, at))
            out.extend([_splat(builder, value, vector_type)] * per_channel)
        return context.make_tuple(builder, like, out)

    return like(like, values, start, step, rows, vectors), codegen


def _splat(builder, scalar, vector_type):
    lanes = vector_type.count
    single = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar,
                                    ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(single, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _overload_suffix(vector_type):
    """The suffix of an LLVM vector intrinsic's name for ``vector_type``: ``v16f32``, ``v8f64``,
    ``v16i16``, ..."""
    element = vector_type.element
    if isinstance(element, ir.IntType):
        return f"v{vector_type.count}i{element.width}"
    return f"v{vector_type.count}{'f32' if element == ir.FloatType() else 'f64'}"


def _fma(builder, a, b, c):
    """``a * b + c`` rounded once (``llvm.fma`` on vectors, declared by its mangled name)."""
    vector_type = a.type
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector_type, [vector_type] * 3),
        f"llvm.fma.{_overload_suffix(vector_type)}")
    return builder.call(function, [a, b, c])


def _broadcast_products(context, builder, block, values, weights_type, weights, weight_offsets,
                        loaded):
    """``values`` (a ``block``) plus, for channel c, the weight at element ``weight_offsets[c]`` of
    ``weights`` broadcast times each of the ``loaded`` vectors (:func:`_channel_products`)."""
    count = len(loaded)
    out = []
    for c, w_at in enumerate(weight_offsets):
        out.extend(_channel_products(builder, [builder.extract_value(values, c * count + k)
                                               for k in range(count)],
                                     _element_pointer(context, builder, weights_type, weights, w_at),
                                     weights_type, loaded))
    return context.make_tuple(builder, block, out)


def _channel_products(builder, accumulators, weight_pointer, weights_type, loaded):
    """Each of ``accumulators`` plus the weight at ``weight_pointer`` broadcast times the ``loaded``
    vector of the same index (one rounding per element). uint32 ``weights`` hold bfloat16 pairs, and
    the ``loaded`` vectors pairs too: each lane then adds the pair's two products (``bfloat16_dot``)."""
    weight = builder.load(weight_pointer)
    splat = _splat(builder, weight, ir.VectorType(weight.type, accumulators[0].type.count))
    multiply_add = bfloat16_dot if weights_type.dtype == types.uint32 else _fma
    return [multiply_add(builder, splat, vector, acc) for acc, vector in zip(accumulators, loaded)]


@intrinsic
def fma_block(typingctx, block, weights, w_start, w_step, source, s_start, s_step, rows, vectors):
    """``block[c, r, v] += weights[w_start + c * w_step] * source[s_start + r * s_step + v * lanes
    ...]`` with one rounding per element; ``rows`` and ``vectors`` per channel are compile-time ints.

    Channels (output channels, or one output channel) share the input vectors, loaded once; each
    channel's weight is broadcast; rows are output rows, ``s_step`` apart in the input.
    """
    if not _is_literal_int(rows, vectors):
        return None

    def codegen(context, builder, signature, args):
        values, weights, w_start, w_step, source, s_start, s_step, _, _ = args
        per_channel = rows.literal_value * vectors.literal_value
        loaded = _vectors_at(context, builder, signature.args[4], source,
                             _offsets(builder, s_start, s_start.type(0), s_step, per_channel,
                                      rows.literal_value, vectors.literal_value, block.dtype.lanes),
                             context.get_value_type(block.dtype))
        weight_offsets = [builder.add(w_start, builder.mul(w_step, w_step.type(c)))
                          for c in range(block.count // per_channel)]
        return _broadcast_products(context, builder, block, values, signature.args[1], weights,
                                   weight_offsets, loaded)

    return block(block, weights, w_start, w_step, source, s_start, s_step, rows, vectors), codegen


@intrinsic
def fma_tile(typingctx, block, weights, w_start, w_step, w_row_step, columns, source, s_start,
             vectors, span):
    """``block[c, v] += weights[w_start + (c // columns) * w_row_step + (c % columns) * w_step] *
    source[s_start + v * lanes ...]``, one rounding per element, for the positions c that ``span``
    covers (``tile_spans.py``; the others unchanged); ``columns`` and ``vectors`` are compile-time
    ints: :func:`fma_block` with one row per channel, whose channels are the positions of a tile of
    output rows x ``columns`` columns, each broadcasting its own input element. The vectors of
    ``source`` are loaded once, then a switch on ``span`` runs the products of its positions."""
    if not _is_literal_int(columns, vectors):
        return None

    def codegen(context, builder, signature, args):
        values, weights, w_start, w_step, w_row_step, _, source, s_start, _, span = args
        count, width = vectors.literal_value, columns.literal_value
        positions = block.count // count
        loaded = _vectors_at(context, builder, signature.args[6], source,
                             [builder.add(s_start, s_start.type(v * block.dtype.lanes))
                              for v in range(count)], context.get_value_type(block.dtype))
        before = [builder.extract_value(values, k) for k in range(block.count)]
        merge = builder.append_basic_block("tile.merge")
        incoming = []
        switch = builder.switch(span, merge)
        incoming.append((before, builder.block))
        for code in span_codes(positions // width, width):
            case = builder.append_basic_block(f"tile.span{code}")
            switch.add_case(span.type(code), case)
            builder.position_at_end(case)
            after = list(before)
            for c in span_positions(code, positions // width, width):
                row, column = divmod(c, width)
                at = builder.add(w_start, builder.add(builder.mul(w_row_step, w_row_step.type(row)),
                                                      builder.mul(w_step, w_step.type(column))))
                after[c * count:(c + 1) * count] = _channel_products(
                    builder, before[c * count:(c + 1) * count],
                    _element_pointer(context, builder, signature.args[1], weights, at), signature.args[1],
                    loaded)
            incoming.append((after, builder.block))
            builder.branch(merge)
        builder.position_at_end(merge)
        out = []
        for k in range(block.count):
            phi = builder.phi(before[k].type)
            for vectors_in, predecessor in incoming:
                phi.add_incoming(vectors_in[k], predecessor)
            out.append(phi)
        return context.make_tuple(builder, block, out)

    signature = block(block, weights, w_start, w_step, w_row_step, columns, source, s_start, vectors, span)
    return signature, codegen


@intrinsic
def load_rows(typingctx, like, array, start, row_step, rows, vectors):
    """A block shaped as ``like`` (one channel of ``rows x vectors``, compile-time ints) read from
    ``array``: row r, vector v at element ``start + r * row_step + v * lanes``."""
    if not _is_literal_int(rows, vectors):
        return None

    def codegen(context, builder, signature, args):
        _, array, start, row_step, _, _ = args
        offsets = _offsets(builder, start, start.type(0), row_step, like.count, rows.literal_value,
                           vectors.literal_value, like.dtype.lanes)
        return context.make_tuple(builder, like, _vectors_at(context, builder, signature.args[1], array,
                                                             offsets, context.get_value_type(like.dtype)))

    return like(like, array, start, row_step, rows, vectors), codegen


@intrinsic
def slide_rows(typingctx, window, array, start, vectors):
    """``window`` (rows of ``vectors`` vectors, a compile-time int) one row further: its first row
    dropped, the ``vectors`` vectors at elements ``start + v * lanes`` of ``array`` appended."""
    if not _is_literal_int(vectors):
        return None

    def codegen(context, builder, signature, args):
        values, array, start, _ = args
        count, lanes = vectors.literal_value, window.dtype.lanes
        kept = [builder.extract_value(values, k) for k in range(count, window.count)]
        loaded = _vectors_at(context, builder, signature.args[1], array,
                             [builder.add(start, start.type(v * lanes)) for v in range(count)],
                             context.get_value_type(window.dtype))
        return context.make_tuple(builder, window, kept + loaded)

    return window(window, array, start, vectors), codegen


@intrinsic
def fma_vectors(typingctx, block, weights, w_at, vectors):
    """``block[k] += weights[w_at] * vectors[k]`` for every vector k (one rounding per element)."""

    def codegen(context, builder, signature, args):
        values, weights, w_at, operands = args
        splat = _splat(builder, builder.load(_element_pointer(context, builder, signature.args[1],
                                                              weights, w_at)),
                       context.get_value_type(block.dtype))
        return context.make_tuple(builder, block, [
            _fma(builder, splat, builder.extract_value(operands, k), builder.extract_value(values, k))
            for k in range(block.count)])

    return block(block, weights, w_at, vectors), codegen


@intrinsic
def load_block(typingctx, like, array, start):
    """A block shaped as ``like`` read from ``array``, vector k from element ``start + k * lanes``
    (what :func:`store_block` wrote)."""

    def codegen(context, builder, signature, args):
        _, array, start = args
        offsets = [builder.add(start, start.type(k * like.dtype.lanes)) for k in range(like.count)]
        return context.make_tuple(builder, like, _vectors_at(context, builder, signature.args[1], array,
                                                             offsets, context.get_value_type(like.dtype)))

    return like(like, array, start), codegen
