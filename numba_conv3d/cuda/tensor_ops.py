"""Device operations numba-cuda does not offer, for the tensor-core kernels: a warp's matrix product on
the tensor cores (``mma.sync``), float32 to TF32 rounding, and conversions between float32 and the bits
of float16 and bfloat16.

On the GPU each is one inline PTX instruction in an ``@intrinsic`` (NVVM passes inline assembly into the
PTX it emits). Under the simulator, which runs no PTX, each is a NumPy model of the same instruction:
the products model the register layouts of the PTX ISA's "matrix fragments" for ``mma.m16n8k16``
(float16, bfloat16) and ``mma.m16n8k8`` (TF32), so that the simulator checks the kernels' fragments.

A fragment, with ``g = lane // 4`` and ``t = lane % 4`` (``lane`` the thread's index in its warp), and
"units" of 32 bits (a pair of adjacent reduction steps of 16-bit values, or one TF32 step):

- A (16 rows x 8 units): ``a0 = (g, t)``, ``a1 = (g + 8, t)``, ``a2 = (g, t + 4)``, ``a3 = (g + 8, t + 4)``;
- B (8 units x 8 columns): ``b0 = (t, g)``, ``b1 = (t + 4, g)``;
- C and D (16 x 8 float32): ``c0 = (g, 2t)``, ``c1 = (g, 2t + 1)``, ``c2 = (g + 8, 2t)``,
  ``c3 = (g + 8, 2t + 1)``.

Within a unit of 16-bit values the lower half holds the earlier reduction step.

The operations: ``MMA[kind](a0, a1, a2, a3, b0, b1, c0, c1, c2, c3)`` (D's four sums of the thread);
``tf32_bits(x)`` (``cvt.rna.tf32.f32``: float32 rounded to 10 fraction bits, to nearest, ties away from
zero, as float32 bits); ``float_of_half(bits)`` and ``float_of_bits(bits)`` (exact widening of float16
bits, and the float32 of 32 bits); ``half_of_float(x)`` and ``bfloat16_of_float(x)`` (float32 rounded
to nearest, ties to even, as 16 bits).
"""
from collections import namedtuple

import numba
import numpy as np
from numba import cuda

from .tensor_core_plan import MMA_COLUMNS, MMA_KINDS, MMA_ROWS, MMA_UNITS, STEPS_PER_UNIT


def mma_instruction(kind):
    """The PTX instruction of one warp's product for ``kind`` (a key of ``MMA_KINDS``)."""
    shape, operand = MMA_KINDS[kind]
    return f"mma.sync.aligned.{shape}.row.col.f32.{operand}.{operand}.f32"


if numba.config.ENABLE_CUDASIM:
    import ml_dtypes

    _WARPS = {}  # a simulated warp's registers, by its index in the block
    _LANES = np.arange(32)
    _G, _T = _LANES // 4, _LANES % 4
    # Per register of a lane: the A rows and units, the B units, the C and D rows and columns.
    _A_ROWS, _A_UNITS = np.stack([_G, _G + 8, _G, _G + 8], 1), np.stack([_T, _T, _T + 4, _T + 4], 1)
    _B_UNITS = np.stack([_T, _T + 4], 1)
    _C_ROWS, _C_COLUMNS = np.stack([_G, _G, _G + 8, _G + 8], 1), np.stack([2 * _T, 2 * _T + 1] * 2, 1)

    def _unit_values(kind, units):
        """The reduction steps (float64, last axis) that 32-bit ``units`` of ``kind`` hold."""
        units = np.asarray(units, np.uint32)
        if kind == "tfloat32":
            return units.view(np.float32)[..., np.newaxis].astype(np.float64)
        stored = np.float16 if kind == "float16" else ml_dtypes.bfloat16
        halves = np.stack([units & 0xFFFF, units >> 16], -1).astype(np.uint16)
        return halves.view(stored).astype(np.float64)

    def _model_product(kind, a_units, b_units, sums):
        """Every lane's four D registers from every lane's A, B and C registers ((32, 4), (32, 2) and
        (32, 4) arrays): exact products summed in float64, rounded once to float32 (the hardware's
        order of summation is unspecified)."""
        steps = STEPS_PER_UNIT[kind]
        a = np.zeros((MMA_ROWS, MMA_UNITS, steps))
        a[_A_ROWS, _A_UNITS] = _unit_values(kind, a_units)
        b = np.zeros((MMA_UNITS, steps, MMA_COLUMNS))
        b[_B_UNITS, :, _G[:, np.newaxis]] = _unit_values(kind, b_units)
        c = np.zeros((MMA_ROWS, MMA_COLUMNS))
        c[_C_ROWS, _C_COLUMNS] = sums
        d = a.reshape(MMA_ROWS, -1) @ b.reshape(-1, MMA_COLUMNS) + c
        return d[_C_ROWS, _C_COLUMNS].astype(np.float32)

    def _mma_model(kind):
        @cuda.jit(device=True)
        def mma(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
            # Every thread of the block reaches each product (the kernels call it uniformly), so the
            # block's barrier stands in for the warp's; the simulator runs one block at a time. Lanes
            # leave their registers, lane 0 computes the warp's product, each lane takes its part.
            thread = cuda.threadIdx.x + cuda.blockDim.x * (cuda.threadIdx.y
                                                           + cuda.blockDim.y * cuda.threadIdx.z)
            warp = _WARPS.setdefault(thread // 32, {"a": np.zeros((32, 4), np.uint32),
                                                     "b": np.zeros((32, 2), np.uint32),
                                                     "c": np.zeros((32, 4), np.float32)})
            lane = thread % 32
            warp["a"][lane], warp["b"][lane], warp["c"][lane] = (a0, a1, a2, a3), (b0, b1), (c0, c1, c2, c3)
            cuda.syncthreads()
            if lane == 0:
                warp["d"] = _model_product(kind, warp["a"], warp["b"], warp["c"])
            cuda.syncthreads()
            d = warp["d"][lane]
            return d[0], d[1], d[2], d[3]

        return mma

    @cuda.jit(device=True)
    def tf32_bits(value):
        bits = int(np.float32(value).view(np.uint32))
        if (bits >> 23) & 0xFF == 0xFF:
            return np.uint32(bits)
        return np.uint32(((bits + 0x1000) & 0xFFFFE000) & 0xFFFFFFFF)

    @cuda.jit(device=True)
    def float_of_half(bits):
        return np.float32(np.uint16(bits).view(np.float16))

    @cuda.jit(device=True)
    def half_of_float(value):
        with np.errstate(over="ignore"):  # past float16's largest finite value: Inf, as cvt.rn gives
            return np.uint16(np.float32(value).astype(np.float16).view(np.uint16))

    @cuda.jit(device=True)
    def bfloat16_of_float(value):
        return np.uint16(np.float32(value).astype(ml_dtypes.bfloat16).view(np.uint16))

    @cuda.jit(device=True)
    def float_of_bits(bits):
        return np.uint32(bits).view(np.float32)

    MMA = {kind: _mma_model(kind) for kind in MMA_KINDS}
else:
    from llvmlite import ir
    from numba import types
    from numba.cuda.extending import intrinsic

    _F32, _I32, _I16 = ir.FloatType(), ir.IntType(32), ir.IntType(16)
    _LLVM = {types.float32: _F32, types.uint32: _I32, types.uint16: _I16}

    def _instruction(builder, result, arguments, text, constraints, values):
        """The LLVM value of one inline PTX instruction: ``result`` from ``arguments`` (LLVM types)."""
        function = ir.FunctionType(result, arguments)
        return builder.call(ir.InlineAsm(function, text, constraints), values)

    def _unary(result, argument, text, constraints):
        """An intrinsic of one PTX instruction of one operand (Numba types; the call's argument is cast
        to ``argument``)."""
        @intrinsic
        def operation(typingctx, value):
            def codegen(context, builder, signature, values):
                return _instruction(builder, _LLVM[result], [_LLVM[argument]], text, constraints, values)

            return result(argument), codegen

        return operation

    def _mma_intrinsic(kind):
        text = f"{mma_instruction(kind)} {{$0,$1,$2,$3}}, {{$4,$5,$6,$7}}, {{$8,$9}}, {{$10,$11,$12,$13}};"
        returned = types.UniTuple(types.float32, 4)

        @intrinsic
        def mma(typingctx, a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
            def codegen(context, builder, signature, values):
                value = _instruction(builder, ir.LiteralStructType([_F32] * 4), [_I32] * 6 + [_F32] * 4,
                                     text, "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f", values)
                return context.make_tuple(builder, returned,
                                          [builder.extract_value(value, i) for i in range(4)])

            return returned(*(types.uint32,) * 6, *(types.float32,) * 4), codegen

        return mma

    tf32_bits = _unary(types.uint32, types.float32, "cvt.rna.tf32.f32 $0, $1;", "=r,f")
    float_of_half = _unary(types.float32, types.uint16, "cvt.f32.f16 $0, $1;", "=f,h")
    half_of_float = _unary(types.uint16, types.float32, "cvt.rn.f16.f32 $0, $1;", "=h,f")
    bfloat16_of_float = _unary(types.uint16, types.float32, "cvt.rn.bf16.f32 $0, $1;", "=h,f")
    float_of_bits = _unary(types.float32, types.uint32, "mov.b32 $0, $1;", "=f,r")
    MMA = {kind: _mma_intrinsic(kind) for kind in MMA_KINDS}


@cuda.jit(device=True, inline=True)
def _same(value):
    return value


@cuda.jit(device=True, inline=True)
def _bfloat16_widened(bits):
    return float_of_bits(numba.uint32(bits) << numba.uint32(16))


@cuda.jit(device=True, inline=True)
def _half_part(bits, step):
    return numba.uint32(bits) << numba.uint32(16 * step)


@cuda.jit(device=True, inline=True)
def _tf32_part(value, step):
    return tf32_bits(value)


Conversions = namedtuple("Conversions", "stored part widened narrowed")
Conversions.__doc__ = """How a product kind's operands are stored and converted: ``stored`` the element type
of its arrays (the bits, for 16-bit kinds); ``part(value, step)`` the bits a stored value adds to a 32-bit
unit as its ``step``-th reduction step; ``widened(value)`` a stored value as float32 (exact);
``narrowed(x)`` a float32 rounded to the stored type (to nearest even). Kind None: float32 as is."""

_CONVERSIONS = {
    None: Conversions(numba.float32, None, _same, _same),
    "float16": Conversions(numba.uint16, _half_part, float_of_half, half_of_float),
    "bfloat16": Conversions(numba.uint16, _half_part, _bfloat16_widened, bfloat16_of_float),
    "tfloat32": Conversions(numba.float32, _tf32_part, _same, _same),
}


def conversions(kind):
    """The ``Conversions`` of product ``kind`` (a key of ``MMA_KINDS``, or None for float32)."""
    return _CONVERSIONS[kind]
