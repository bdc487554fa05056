"""Low-level helpers for hot loops: a fixed-size stack buffer and a raw element pointer.

Numba arrays index with Python's negative-index wraparound, live on the heap and are reference
counted when sliced; a small scratch block or a row of the output needs none of that. Both are viewed
with ``numba.carray`` so that indexing keeps array syntax.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def stack_buffer(typingctx, items, dtype):
    """Pointer to ``items`` (a compile-time int) uninitialised elements of ``dtype`` on the stack."""
    if not isinstance(items, types.IntegerLiteral):
        return None
    element = dtype.dtype

    def codegen(context, builder, signature, args):
        llvm_type = context.get_data_type(element)
        buffer = cgutils.alloca_once(builder, ir.ArrayType(llvm_type, items.literal_value))
        return builder.bitcast(buffer, llvm_type.as_pointer())

    return types.CPointer(element)(items, dtype), codegen


@intrinsic
def element_pointer(typingctx, array, offset):
    """Pointer to element ``offset`` of a C-contiguous array, counted in elements (no checks)."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.gep(data, [args[1]])

    return types.CPointer(array.dtype)(array, offset), codegen
