"""Pieces of a matrix product computed by OpenBLAS's ``cblas_?gemm`` on Numba's threads.

The functions are called by address (a runtime argument, so that the compiled code goes into Numba's
cache): ``cblas_?gemm`` of row-major CBLAS, and ``openblas_set_num_threads_local``, which each thread
sets to 1 around its pieces so that no OpenBLAS worker starts. Numba's threads hand out pieces as its
threading layer schedules them: on 2 cores after a 10 ms pause, a 216 x 96 x 1300 product in pieces
ran 1.1x faster on them than on a pool of Python threads, and 1.1-1.35x when called back to back
(``docs/ARCHITECTURE.md``).
"""
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic


def _function_pointer(builder, address, return_type, argument_types):
    """The C function at ``address`` (an integer) as an LLVM function pointer."""
    return builder.inttoptr(address, ir.FunctionType(return_type, argument_types).as_pointer())


@intrinsic
def _set_local_threads(typingctx, address, count):
    """``openblas_set_num_threads_local(count)`` at ``address``: the thread's previous count."""

    def codegen(context, builder, signature, args):
        integer = ir.IntType(32)
        function = _function_pointer(builder, args[0], integer, [integer])
        return builder.call(function, [builder.trunc(args[1], integer)])

    return types.int32(address, count), codegen


@intrinsic
def _gemm(typingctx, address, flags, sizes, alpha, addresses):
    """``cblas_?gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, 0, c, ldc)`` at
    ``address``: ``flags`` holds (order, trans_a, trans_b), ``sizes`` (m, n, k, lda, ldb, ldc) in the
    library's integer type, ``addresses`` those of a, b and c; ``alpha``'s type is the matrices'."""

    def codegen(context, builder, signature, args):
        flag_type, size_type, scalar_type, address_type = signature.args[1:]
        flag_values = _elements(context, builder, flag_type, args[1], 3)
        m, n, k, lda, ldb, ldc = _elements(context, builder, size_type, args[2], 6)
        pointer = ir.IntType(8).as_pointer()
        a, b, c = (builder.inttoptr(value, pointer)
                   for value in _elements(context, builder, address_type, args[4], 3))
        integer, scalar = m.type, context.get_value_type(scalar_type)
        function = _function_pointer(
            builder, args[0], ir.VoidType(),
            [flag_values[0].type] * 3 + [integer] * 3
            + [scalar, pointer, integer, pointer, integer, scalar, pointer, integer])
        builder.call(function, [*flag_values, m, n, k, args[3], a, lda, b, ldb,
                                ir.Constant(scalar, 0.0), c, ldc])
        return context.get_dummy_value()

    return types.void(address, flags, sizes, alpha, addresses), codegen


def _elements(context, builder, array_type, array, count):
    """The first ``count`` elements of a contiguous 1-D array, as LLVM values."""
    data = context.make_array(array_type)(context, builder, array).data
    return [builder.load(builder.gep(data, [ir.Constant(ir.IntType(64), index)]))
            for index in range(count)]


@njit(parallel=True, cache=True)
def run_pieces(gemm, set_local_threads, flags, sizes, addresses, alpha):
    """Compute each piece ``p`` of a product by the ``cblas_?gemm`` at ``gemm`` (``flags[p]``,
    ``sizes[p]``, ``addresses[p]``: see ``_gemm``), spread over Numba's threads, each with its
    OpenBLAS count at 1 meanwhile (``set_local_threads``: the address of
    ``openblas_set_num_threads_local``)."""
    for piece in prange(addresses.shape[0]):
        previous = _set_local_threads(set_local_threads, 1)
        _gemm(gemm, flags[piece], sizes[piece], alpha, addresses[piece])
        _set_local_threads(set_local_threads, previous)
