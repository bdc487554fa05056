"""Explicit SIMD register blocks for the CPU kernels.

LLVM's auto-vectorizer turns a register block written as loops over a stack array into vector code only
for some block shapes, and then often keeps more broadcast weights live than there are registers (16
on AVX2) and spills accumulators. These intrinsics state the block directly: a block is a tuple of
LLVM vectors (``lanes`` elements each, one register), and one multiply-add step adds weights times
input vectors to it with ``llvm.fma`` (one rounding per multiply-add, as a fused scalar loop would).
Numba keeps the tuple in SSA values, so the block stays in registers across the loops around it.

A block of ``rows x vectors`` accumulators is a flat tuple, row-major: element ``r * vectors + v``
holds lanes ``v * lanes ...`` of row ``r``. Rows are output channels (``blocked.py``) or output rows
(``row_blocked.py``). Arrays are read and written as C-contiguous memory at element offsets, without
bounds checks: callers guarantee the extents (slabs carry whole blocks of zero columns).
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

from ..config import VECTOR_BYTES


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


def _offsets(builder, start, row_step, rows, vectors, lanes):
    """Element offsets of a ``rows x vectors`` block: ``start + r * row_step + v * lanes``."""
    return [builder.add(start, builder.add(builder.mul(row_step, row_step.type(r)),
                                           row_step.type(v * lanes)))
            for r in range(rows) for v in range(vectors)]


def _lanes(dtype):
    return VECTOR_BYTES // (dtype.bitwidth // 8)


def vector_lanes(array):
    """Elements of ``array``'s dtype in one vector (a compile-time constant in jitted code)."""
    raise NotImplementedError("vector_lanes is only callable from jitted code")


@overload(vector_lanes)
def _vector_lanes(array):
    lanes = _lanes(array.dtype)
    return lambda array: lanes


@intrinsic
def zero_block(typingctx, array, rows, vectors):
    """A block of ``rows x vectors`` (compile-time ints) zero vectors of ``array``'s dtype."""
    if not _is_literal_int(rows, vectors):
        return None
    count = rows.literal_value * vectors.literal_value
    block = types.UniTuple(Vector(array.dtype, _lanes(array.dtype)), count)

    def codegen(context, builder, signature, args):
        zero = context.get_constant_null(block.dtype)
        return context.make_tuple(builder, block, [zero] * count)

    return block(array, rows, vectors), codegen


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
def store_rows(typingctx, block, array, start, row_step, vectors):
    """Write ``block`` (``vectors`` per row, a compile-time int) to ``array``: row r, vector v at
    element ``start + r * row_step + v * lanes`` (rows of an output, any distance apart)."""
    if not _is_literal_int(vectors):
        return None

    def codegen(context, builder, signature, args):
        values, array, start, row_step, _ = args
        per_row = vectors.literal_value
        vector_pointer = context.get_value_type(block.dtype).as_pointer()
        offsets = _offsets(builder, start, row_step, block.count // per_row, per_row,
                           block.dtype.lanes)
        for k, at in enumerate(offsets):
            pointer = _element_pointer(context, builder, signature.args[1], array, at)
            builder.store(builder.extract_value(values, k), builder.bitcast(pointer, vector_pointer),
                          align=1)
        return context.get_dummy_value()

    return types.none(block, array, start, row_step, vectors), codegen


@intrinsic
def splat_rows(typingctx, like, values, start, step, vectors):
    """A block shaped as ``like`` whose row r is ``values[start + r * step]`` in every lane (the
    bias: ``step`` 1 when rows are channels, 0 when they are rows of one channel)."""
    if not _is_literal_int(vectors):
        return None

    def codegen(context, builder, signature, args):
        _, values, start, step, _ = args
        per_row = vectors.literal_value
        vector_type = context.get_value_type(like.dtype)
        out = []
        for r in range(like.count // per_row):
            at = builder.add(start, builder.mul(step, step.type(r)))
            value = builder.load(_element_pointer(context, builder, signature.args[1], values, at))
            out.extend([_splat(builder, value, vector_type)] * per_row)
        return context.make_tuple(builder, like, out)

    return like(like, values, start, step, vectors), codegen


def _splat(builder, scalar, vector_type):
    lanes = vector_type.count
    single = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar,
                                    ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(single, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _fma(builder, a, b, c):
    """``a * b + c`` rounded once (``llvm.fma`` on vectors, declared by its mangled name)."""
    vector_type = a.type
    scalar = "f32" if vector_type.element == ir.FloatType() else "f64"
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector_type, [vector_type] * 3),
        f"llvm.fma.v{vector_type.count}{scalar}")
    return builder.call(function, [a, b, c])


@intrinsic
def fma_block(typingctx, block, weights, w_start, w_step, source, s_start, s_step, vectors):
    """``block[r, v] += weights[w_start + r * w_step] * source[s_start + r * s_step + v * lanes ...]``
    with one rounding per element; ``vectors`` per row is a compile-time int.

    Rows are output channels sharing one input row (``s_step`` the literal 0: the row's vectors are
    loaded once, each channel's weight broadcast) or output rows of one channel (``w_step`` 0, one
    broadcast weight for all rows, ``s_step`` the distance between input rows).
    """
    if not _is_literal_int(vectors):
        return None
    shared_source = isinstance(s_step, types.IntegerLiteral) and s_step.literal_value == 0

    def codegen(context, builder, signature, args):
        values, weights, w_start, w_step, source, s_start, s_step, _ = args
        per_row = vectors.literal_value
        rows = block.count // per_row
        vector_type = context.get_value_type(block.dtype)
        loaded = _vectors_at(context, builder, signature.args[4], source,
                             _offsets(builder, s_start, s_step, 1 if shared_source else rows,
                                      per_row, block.dtype.lanes), vector_type)
        out = []
        for r in range(rows):
            w_at = builder.add(w_start, builder.mul(w_step, w_step.type(r)))
            weight = builder.load(_element_pointer(context, builder, signature.args[1], weights, w_at))
            splat = _splat(builder, weight, vector_type)
            for v in range(per_row):
                x = loaded[v if shared_source else r * per_row + v]
                out.append(_fma(builder, splat, x, builder.extract_value(values, r * per_row + v)))
        return context.make_tuple(builder, block, out)

    return block(block, weights, w_start, w_step, source, s_start, s_step, vectors), codegen
