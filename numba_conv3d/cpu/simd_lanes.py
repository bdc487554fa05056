"""SIMD blocks whose lanes are channels, for kernels that hold channels last (``depthwise.py``).

``simd.py`` multiplies vectors by broadcast weights: its lanes are output columns or output channels
that share an input element. Where every channel has its own input and its own weights (depthwise
convolution), a vector of channels' weights multiplies a vector of the same channels' inputs. The
conventions of ``simd.py`` hold: blocks are tuples of LLVM vectors, arrays C-contiguous memory at
element offsets, extents guaranteed by the callers.
"""
from llvmlite import ir
from numba.extending import intrinsic

from .simd import _element_pointer, _fma, _vectors_at


@intrinsic
def fma_lanes(typingctx, block, weights, w_at, source, bases, offset):
    """``block[j] += weights[w_at ...] * source[bases[j] + offset ...]`` for every vector j of
    ``block``: one vector of weights times a vector of inputs per j, lane by lane, one rounding per
    element; ``bases`` (int64) holds at least as many element offsets as ``block`` has vectors."""

    def codegen(context, builder, signature, args):
        values, weights, w_at, source, bases, offset = args
        vector_type = context.get_value_type(block.dtype)
        weight = _vectors_at(context, builder, signature.args[1], weights, [w_at], vector_type)[0]
        starts = [builder.add(builder.load(_element_pointer(context, builder, signature.args[4], bases,
                                                            ir.Constant(offset.type, j))), offset)
                  for j in range(block.count)]
        inputs = _vectors_at(context, builder, signature.args[3], source, starts, vector_type)
        sums = [_fma(builder, weight, vector, builder.extract_value(values, j))
                for j, vector in enumerate(inputs)]
        return context.make_tuple(builder, block, sums)

    return block(block, weights, w_at, source, bases, offset), codegen
