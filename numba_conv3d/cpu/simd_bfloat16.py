"""bfloat16 in LLVM IR for the CPU kernels: float32 sums rounded to the bits of a bfloat16 result,
bfloat16 bits widened, and AVX512-BF16 dot products of bfloat16 pairs (``simd.py``'s register blocks
call them for uint16 arrays and uint32 pairs)."""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def stored(builder, array_type, vector):
    """``vector`` as an array of ``array_type`` stores it: float32 sums rounded to the bfloat16 bits
    of a uint16 array (:func:`bfloat16_bits`), else unchanged."""
    return bfloat16_bits(builder, vector) if array_type.dtype == types.uint16 else vector


def bfloat16_bits(builder, value):
    """The bfloat16 bits (i16, or a vector of them) of float32 ``value`` (a scalar or a vector),
    rounded to nearest, ties to even, beyond the largest finite value to Inf; a NaN the quiet NaN of
    its sign (the one ``ml_dtypes`` gives); ``half_precision.narrow`` rounds with it too."""
    count = value.type.count if isinstance(value.type, ir.VectorType) else None
    typed = lambda bits: ir.VectorType(ir.IntType(bits), count) if count else ir.IntType(bits)  # noqa: E731
    constant = lambda word: ir.Constant(typed(32), [word] * count if count else word)  # noqa: E731
    words = builder.bitcast(value, typed(32))
    high = builder.lshr(words, constant(16))
    rounded = builder.lshr(builder.add(words, builder.add(constant(0x7FFF), builder.and_(high, constant(1)))),
                           constant(16))
    nan = builder.icmp_unsigned(">", builder.and_(words, constant(0x7FFFFFFF)), constant(0x7F800000))
    quiet = builder.or_(builder.and_(high, constant(0x8000)), constant(0x7FC0))
    return builder.trunc(builder.select(nan, quiet, rounded), typed(16))


@intrinsic
def stored_element(typingctx, array, value):
    """``value`` as an element of ``array``: a float32 sum as the bfloat16 bits of a uint16 array
    (:func:`bfloat16_bits`), bfloat16 bits (uint16) as the float32 they hold in a float32 array
    (exact), else cast to the array's dtype."""
    rounds = array.dtype == types.uint16 and value == types.float32
    widens = array.dtype == types.float32 and value == types.uint16

    def codegen(context, builder, signature, args):
        if rounds:
            return bfloat16_bits(builder, args[1])
        if widens:
            word = builder.shl(builder.zext(args[1], ir.IntType(32)), ir.Constant(ir.IntType(32), 16))
            return builder.bitcast(word, ir.FloatType())
        return context.cast(builder, args[1], value, array.dtype)

    return array.dtype(array, value), codegen


class _BFloat16(ir.types._BaseFloatType):
    """LLVM's ``bfloat`` element type, which llvmlite's IR builder lacks (only the vector intrinsics'
    signatures name it)."""

    null = "0.0"
    intrinsic_name = "bf16"

    def __str__(self):
        return "bfloat"


_BFloat16._create_instance()


def bfloat16_dot(builder, a, b, acc):
    """``acc + a_even * b_even + a_odd * b_odd`` per float32 lane of ``acc``, where ``a`` and ``b`` are
    vectors of as many 32-bit lanes, each a pair of bfloat16 values (the low half first). One
    AVX512-BF16 ``vdpbf16ps``: both products are exact in float32, each addition rounds to nearest
    (the odd product first), subnormal inputs and results are flushed to zero; callers must check
    that the CPU has it (``environment.has_bfloat16_dot``)."""
    lanes = acc.type.count
    pairs = ir.VectorType(_BFloat16(), 2 * lanes)
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(acc.type, [acc.type, pairs, pairs]),
        f"llvm.x86.avx512bf16.dpbf16ps.{32 * lanes}")
    return builder.call(function, [acc, builder.bitcast(a, pairs), builder.bitcast(b, pairs)])
