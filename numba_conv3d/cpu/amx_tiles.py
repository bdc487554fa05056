"""Intel AMX tile instructions for jitted code: configure, load, zero, multiply (bfloat16 pairs into
float32), store and release the eight tile registers, through LLVM's AMX intrinsics.

A tile register holds up to 16 rows of 64 bytes. ``tile_dot(c, a, b)`` is one ``tdpbf16ps``:
``C[m, n] += sum_k A[m, 2k] * B[k, 2n] + A[m, 2k + 1] * B[k, 2n + 1]`` over 16 rows of bfloat16 pairs,
products exact in float32, sums rounded to nearest; subnormal inputs and results are flushed to zero,
as AVX512-BF16's ``vdpbf16ps`` does. Tile numbers are compile-time constants (literal ints).

A process may run them only once Linux has lent it the tile registers' state
(``environment.has_amx_bfloat16`` asks); without that they stop it with an illegal instruction.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.errors import RequireLiteralValue
from numba.extending import intrinsic, register_jitable

# The tile shape every kernel here configures: 16 rows of 64 bytes (32 bfloat16, 16 float32).
TILE_ROWS = 16
TILE_ROW_BYTES = 64
TILES = 8
_I8 = ir.IntType(8)
_I64 = ir.IntType(64)


def _literal(*tiles):
    for tile in tiles:
        if not isinstance(tile, types.IntegerLiteral):
            raise RequireLiteralValue(tile)


def _call(builder, name, arguments):
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [a.type for a in arguments]), name)
    builder.call(function, arguments)


def _tile(literal):
    return ir.Constant(_I8, literal.literal_value)


def _address(context, builder, array_type, array, offset):
    data = cgutils.create_struct_proxy(array_type)(context, builder, value=array).data
    return builder.bitcast(builder.gep(data, [offset]), cgutils.voidptr_t)


@intrinsic
def load_config(typingctx, config):
    """``ldtilecfg``: the 64-byte tile configuration in the uint8 array ``config``
    (:func:`tile_config`)."""
    def codegen(context, builder, signature, arguments):
        _call(builder, "llvm.x86.ldtilecfg",
              [_address(context, builder, signature.args[0], arguments[0], ir.Constant(_I64, 0))])
        return context.get_dummy_value()

    return types.void(config), codegen


def _memory_intrinsic(name, doc):
    """An intrinsic ``(tile, array, offset, stride_bytes)`` calling LLVM's ``name`` on ``tile`` and the
    address of contiguous ``array``'s element ``offset``, rows ``stride_bytes`` apart."""
    def typer(typingctx, tile, array, offset, stride_bytes):
        _literal(tile)

        def codegen(context, builder, signature, arguments):
            _call(builder, name, [_tile(signature.args[0]),
                                  _address(context, builder, signature.args[1], arguments[1], arguments[2]),
                                  arguments[3]])
            return context.get_dummy_value()

        return types.void(tile, array, offset, stride_bytes), codegen

    typer.__doc__ = doc
    return intrinsic(typer)


tile_load = _memory_intrinsic("llvm.x86.tileloadd64", """``tileloadd``: 16 rows of 64 bytes into ``tile``
    from contiguous ``array``'s element ``offset`` on, rows ``stride_bytes`` apart.""")
tile_store = _memory_intrinsic("llvm.x86.tilestored64", """``tilestored``: ``tile``'s 16 rows into
    contiguous ``array`` from element ``offset`` on, rows ``stride_bytes`` apart.""")


@intrinsic
def tile_zero(typingctx, tile):
    """``tilezero``: every element of ``tile`` zero."""
    _literal(tile)

    def codegen(context, builder, signature, arguments):
        _call(builder, "llvm.x86.tilezero", [_tile(signature.args[0])])
        return context.get_dummy_value()

    return types.void(tile), codegen


@intrinsic
def tile_dot(typingctx, sums, a, b):
    """``tdpbf16ps``: ``sums += a . b`` (see the module's docstring)."""
    _literal(sums, a, b)

    def codegen(context, builder, signature, arguments):
        _call(builder, "llvm.x86.tdpbf16ps", [_tile(t) for t in signature.args])
        return context.get_dummy_value()

    return types.void(sums, a, b), codegen


@intrinsic
def release_tiles(typingctx):
    """``tilerelease``: the tile registers back to their initial state."""
    def codegen(context, builder, signature, arguments):
        _call(builder, "llvm.x86.tilerelease", [])
        return context.get_dummy_value()

    return types.void(), codegen


@register_jitable
def _from_cache_line(buffer, count):
    """The ``count`` elements of ``buffer`` (``TILE_ROW_BYTES`` elements longer, whatever their size:
    Numba types the dtype, not its size) from its first address that is a multiple of
    ``TILE_ROW_BYTES``."""
    itemsize = buffer.itemsize
    start = (TILE_ROW_BYTES - buffer.ctypes.data % TILE_ROW_BYTES) % TILE_ROW_BYTES // itemsize
    return buffer[start:start + count]


@register_jitable
def aligned_zeros(count, dtype):
    """``count`` zeros of ``dtype`` from an address that is a multiple of ``TILE_ROW_BYTES``: a tile row
    that crosses a cache line loads six times slower (1 KiB tiles from L1: 2.7 ns aligned, 17 ns
    not)."""
    return _from_cache_line(np.zeros(count + TILE_ROW_BYTES, dtype), count)


@register_jitable
def aligned_empty(count, dtype):
    """:func:`aligned_zeros` left uninitialized, for buffers whose writer fills what is read."""
    return _from_cache_line(np.empty(count + TILE_ROW_BYTES, dtype), count)


@njit(cache=True)
def tile_config():
    """The configuration (palette 1) of all eight tiles as ``TILE_ROWS`` rows of ``TILE_ROW_BYTES``
    bytes."""
    config = np.zeros(64, np.uint8)
    config[0] = 1
    for tile in range(TILES):
        config[16 + 2 * tile] = TILE_ROW_BYTES
        config[48 + tile] = TILE_ROWS
    return config
