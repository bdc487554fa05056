"""OpenBLAS's ``cblas_?gemm`` called from jitted code, and products in pieces on Numba's threads.

The functions are called by address (a runtime argument, so that the compiled code goes into Numba's
cache): ``cblas_?gemm`` of row-major CBLAS, and ``openblas_set_num_threads_local``, which a thread
sets to 1 before its calls so that no OpenBLAS worker starts. Whether that count is the thread's own
or shared differs between OpenBLAS builds, so the Python caller sets it around the whole parallel call
(``blas.one_thread``) and no worker puts a count back while another runs. ``run_pieces`` spreads the
pieces of a product over Numba's threads (``blas.py`` says why: pieces on a pool of Python threads,
through NumPy's ``matmul``, held the GIL for part of their time).
"""
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic


# CBLAS's row-major order and its flags for an operand read as stored or transposed.
ROW_MAJOR, AS_STORED, TRANSPOSED = 101, 111, 112


def _function_pointer(builder, address, return_type, argument_types):
    """The C function at ``address`` (an integer) as an LLVM function pointer."""
    return builder.inttoptr(address, ir.FunctionType(return_type, argument_types).as_pointer())


@intrinsic
def set_local_threads(typingctx, address, count):
    """``openblas_set_num_threads_local(count)`` at ``address``: the thread's previous count."""

    def codegen(context, builder, signature, args):
        integer = ir.IntType(32)
        function = _function_pointer(builder, args[0], integer, [integer])
        return builder.call(function, [builder.trunc(args[1], integer)])

    return types.int32(address, count), codegen


@intrinsic
def gemm(typingctx, address, integer, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """``cblas_?gemm(RowMajor, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`` at
    ``address``: ``integer`` is a zero of the library's integer type (its type sets the width the
    sizes are passed in), ``a``, ``b`` and ``c`` are the matrices' addresses, ``alpha`` and ``beta``
    of their type."""

    def codegen(context, builder, signature, args):
        kinds = signature.args
        width = context.get_value_type(kinds[1])
        flag, pointer = ir.IntType(32), ir.IntType(8).as_pointer()
        scalar = context.get_value_type(kinds[7])

        def size(index):
            return context.cast(builder, args[index], kinds[index], kinds[1])

        def flag_value(index):
            return builder.trunc(context.cast(builder, args[index], kinds[index], types.int64), flag)

        def matrix(index):
            return builder.inttoptr(args[index], pointer)

        function = _function_pointer(
            builder, args[0], ir.VoidType(),
            [flag] * 3 + [width] * 3 + [scalar, pointer, width, pointer, width, scalar, pointer, width])
        builder.call(function, [ir.Constant(flag, ROW_MAJOR), flag_value(2), flag_value(3), size(4), size(5),
                                size(6), args[7], matrix(8), size(9), matrix(10), size(11), args[12],
                                matrix(13), size(14)])
        return context.get_dummy_value()

    # beta takes alpha's type
    return types.void(address, integer, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, alpha, c,
                      ldc), codegen


@njit(parallel=True, cache=True)
def run_pieces(gemm_address, set_threads_address, integer, flags, sizes, offsets, bases, alpha, beta):
    """Compute each piece ``p`` of a product, ``c = a @ b + beta c``, by the ``cblas_?gemm`` at
    ``gemm_address``, spread over Numba's threads, each setting its OpenBLAS count to 1 first
    (``set_threads_address``: that of ``openblas_set_num_threads_local``; the caller puts its own count
    back after, see ``blas.one_thread``): ``flags[p]`` holds a's and b's transpose flags, ``sizes[p]``
    (m, n, k, lda, ldb, ldc), ``offsets[p]`` the byte offsets of its a, b and c from ``bases`` (the
    three matrices' addresses); ``integer``, ``alpha`` and ``beta`` as ``gemm`` takes them. A piece may
    be a whole product of its own (several products at once, each on one thread)."""
    for piece in prange(offsets.shape[0]):
        set_local_threads(set_threads_address, 1)
        m, n, k, lda, ldb, ldc = sizes[piece]
        gemm(gemm_address, integer, flags[piece, 0], flags[piece, 1], m, n, k, alpha,
             bases[0] + offsets[piece, 0], lda, bases[1] + offsets[piece, 1], ldb, beta,
             bases[2] + offsets[piece, 2], ldc)
