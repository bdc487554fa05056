"""What the CUDA kernels cost the GPU, read at compile time with no GPU: every kernel variant compiled to
PTX by numba-cuda, assembled for a compute capability by ``ptxas`` (registers, stack frame, spills,
shared memory), disassembled by ``cuobjdump`` (the instruction mix of the innermost loop that does
the arithmetic), and the theoretical occupancy that follows. ``benchmarks/cuda_report.py`` prints it.

``ptxas``, ``cuobjdump`` and the ``nvdisasm`` that it runs come from the ``nvidia-cuda-nvcc``,
``nvidia-cuda-cuobjdump`` and ``nvidia-cuda-nvdisasm`` wheels (the test extras install them) or a CUDA
toolkit on the PATH.
"""
import collections
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections import namedtuple
from pathlib import Path

import numba
import numpy as np

from .. import cuda_config
from ..precision import REDUCED_DTYPES

Variant = namedtuple("Variant", "name kernel signature threads min_blocks dynamic_shared")
Variant.__doc__ = """One compiled kernel: its name, ``numba.cuda`` dispatcher, argument types, threads per
block, launch-bound blocks per multiprocessor and dynamic shared bytes (on the dense k3 layer of 32
channels, for kernels whose shared memory depends on the plan)."""

# Hopper (sm_90) multiprocessor limits: registers, warps, blocks, shared memory (bytes, of which each
# block reserves 1 KiB), and registers are allocated per warp in units of 256.
SM90 = dict(registers=65536, warps=64, blocks=32, shared=233472, block_reserved=1024, register_unit=256)

_FMA = ("FFMA", "DFMA", "HFMA2")
_MMA = ("HMMA",)  # a warp's tensor-core product (float16, bfloat16 and TF32 alike)
_INTEGER = ("IMAD", "IADD3", "IADD", "LOP3", "SHF", "LEA", "ISETP", "SEL", "IABS", "VIADD", "MOV",
            "PRMT", "ULDC", "UIADD3", "UMOV", "ULOP3", "ULEA", "USHF", "UISETP", "USEL", "S2R", "CS2R",
            "R2UR", "S2UR", "PLOP3", "I2F", "F2I")


def tool(name):
    """Path of the CUDA binary ``name`` (``ptxas``, ``cuobjdump``): first the NVIDIA wheels'
    ``nvidia/cu*/bin`` (the release of the NVVM that numba-cuda's wheels bring, so that it reads the
    PTX's version), then ``$CUDA_HOME/bin``, then the PATH; None where none is found."""
    candidates = []
    try:
        import nvidia

        for root in nvidia.__path__:
            candidates += sorted(Path(root).glob(f"cu*/bin/{name}"), reverse=True)
    except ImportError:
        pass
    if "CUDA_HOME" in os.environ:
        candidates.append(Path(os.environ["CUDA_HOME"]) / "bin" / name)
    found = next((str(path) for path in candidates if path.is_file()), None)
    return found or shutil.which(name)


def _dense_plan(dtype):
    from ..planner import plan_conv3d

    return plan_conv3d((1, 32, 64, 64, 64), (32, 32, 3, 3, 3), padding=1, dtype=dtype, backend="cuda")


def tensor_core_variants(kind):
    """The tensor-core kernels of product ``kind`` (a key of ``tensor_core_plan.MMA_KINDS``), two per
    tile of ``cuda_config.CUDA_TENSOR_CORE_CLASSES`` (tap by tap with the final output; in the weight's
    order with float32 split partials), with the split sum that adds the partials."""
    from numba import types

    from . import gemm_kernels, tensor_core_kernels, tensor_core_plan
    from .tensor_ops import conversions

    stored = types.Array(conversions(kind).stored, 1, "C")
    single, ints = types.Array(types.float32, 1, "C"), types.Array(types.int64, 1, "C")
    blocks, threads = cuda_config.CUDA_TENSOR_CORE_MIN_BLOCKS_PER_SM, cuda_config.CUDA_DIRECT_THREADS
    found = []
    for row in cuda_config.CUDA_TENSOR_CORE_CLASSES:
        tile = tensor_core_plan.checked_tile(row[2])
        for partial in (False, True):
            kernel = tensor_core_kernels.tensor_core_kernel(kind, tile, blocks, partial, not partial)
            order = "weight order, partial" if partial else "taps order"
            found.append(Variant(f"tensor-core {kind} {tuple(tile)} {order}", kernel,
                                 (stored, stored, stored, single if partial else stored, ints, ints),
                                 tile.threads, blocks, 0))
    found.append(Variant(f"split-sum {kind}", gemm_kernels.split_sum_kernel("float32", threads, kind),
                         (single, stored, stored, ints), threads, 1, 0))
    return found


def variants(dtype="float32"):
    """Every CUDA kernel variant for ``dtype`` (a NumPy dtype name) with its argument types; for float16
    and bfloat16, the tensor-core kernels and the conversions of the float32 algorithms' operands."""
    from numba import types

    from . import (depthwise_kernels, gemm_kernels, gemm_plan, grad_kernels, kernels, tiling,
                   weight_gemm_kernels, weight_gemm_plan, widened)

    if dtype in REDUCED_DTYPES:
        bits, single = types.Array(types.uint16, 1, "C"), types.Array(types.float32, 1, "C")
        threads = cuda_config.CUDA_DIRECT_THREADS
        return tensor_core_variants(dtype) + [
            Variant(f"{'widen' if widening else 'narrow'} {dtype}",
                    widened.conversion_kernel(dtype, widening, threads),
                    (bits, single) if widening else (single, bits), threads, 1, 0)
            for widening in (True, False)]
    value = numba.from_dtype(np.dtype(dtype))
    flat, ints = types.Array(value, 1, "C"), types.Array(types.int64, 1, "C")
    triple = types.UniTuple(types.int64, 3)
    volume, result = types.Array(value, 5, "A"), types.Array(value, 5, "C")
    real = np.dtype(dtype).kind == "f"
    found = []
    if real:
        tiles = sorted({gemm_plan.fitted(gemm_plan.checked_tile(row[2]), dtype)
                        for row in cuda_config.CUDA_GEMM_CLASSES})
        blocks = gemm_plan.min_blocks(dtype)
        for tile in tiles:
            for major in (True, False):
                kernel = gemm_kernels.implicit_gemm_kernel(dtype, tile, blocks, major)
                found.append(Variant(f"implicit-gemm {tuple(tile)} {'taps' if major else 'weight'} order",
                                     kernel, (flat, flat, flat, flat, ints, ints), tile.threads, blocks, 0))
        tile = weight_gemm_plan.tile_for(dtype)
        found.append(Variant(f"weight-grad gemm {tuple(tile)}",
                             weight_gemm_kernels.weight_gemm_kernel(dtype, tile, blocks),
                             (flat, flat, flat, ints, ints), tile.threads, blocks, 0))
        threads = cuda_config.CUDA_DIRECT_THREADS
        found.append(Variant("transposed-weight", gemm_kernels.transposed_weight_kernel(dtype, threads),
                             (flat, flat, ints), threads, 1, 0))
        found.append(Variant("split-sum", gemm_kernels.split_sum_kernel(dtype, threads),
                             (flat, flat, flat, ints), threads, 1, 0))
        found.append(Variant("depthwise", depthwise_kernels.depthwise_kernel(
            dtype, threads, cuda_config.CUDA_DEPTHWISE_OUTPUTS), (flat, flat, flat, flat, ints), threads,
            1, 0))
        if dtype == "float32":
            found += tensor_core_variants("tfloat32")
    plan = _dense_plan(dtype)
    tiled = (volume, result, types.Array(value, 1, "C"), result, types.int64, triple, triple, triple,
             triple, types.int64, types.boolean)
    for name, make in (("channel-tiled", tiling.channel_tile), ("row-tiled", tiling.row_tile)):
        tile = make(dtype)
        blocks_per_sm = cuda_config.CUDA_MIN_BLOCKS_PER_SM
        found.append(Variant(name, kernels.tiled_kernel(dtype, tile, blocks_per_sm), tiled,
                             int(np.prod(tile.block_shape)), blocks_per_sm,
                             tiling.shared_bytes(plan, make)))
    threads, reduce = cuda_config.CUDA_DIRECT_THREADS, cuda_config.CUDA_REDUCE_THREADS
    found.append(Variant("direct", kernels.direct_kernel(dtype, threads), tiled, threads, 1, 0))
    found.append(Variant("pad", kernels.pad_kernel(dtype, threads), (volume, result, triple, types.int64),
                         threads, 1, 0))
    maps = types.Array(types.int64, 2, "C")
    found += [
        Variant("grad gather", grad_kernels.gather_kernel(dtype, threads, False),
                (volume, volume, types.int64, triple, triple, result), threads, 1, 0),
        Variant("grad upsample", grad_kernels.upsample_kernel(dtype, threads), (volume, triple, result),
                threads, 1, 0),
        Variant("grad flip", grad_kernels.flip_kernel(dtype, threads, False),
                (volume, ints, ints, ints, result), threads, 1, 0),
        Variant("phase write", grad_kernels.phase_write_kernel(dtype, threads),
                (result, types.Array(value, 1, "C"), types.int64, triple, triple, triple, result),
                threads, 1, 0),
        Variant("grad fold", grad_kernels.fold_kernel(dtype, threads),
                (result, maps, maps, types.Array(value, 1, "A"), types.boolean, result), threads, 1, 0),
        Variant("weight grad", grad_kernels.weight_grad_kernel(dtype, reduce),
                (volume, volume, result, types.int64, triple, triple, triple, types.int64), reduce, 1, 0),
        Variant("bias grad", grad_kernels.bias_grad_kernel(dtype, reduce),
                (volume, types.Array(value, 2, "C")), reduce, 1, 0),
        Variant("split rows", grad_kernels.split_rows_kernel(dtype, threads),
                (types.Array(value, 2, "C"), types.Array(value, 1, "C")), threads, 1, 0),
    ]
    return found


@contextlib.contextmanager
def named_device(cc):
    """Within: device functions compile for compute capability ``cc`` without a GPU (numba-cuda asks the
    current device for one, which ``compile_ptx`` does not pass on)."""
    import numba.cuda.dispatcher

    class Named:
        compute_capability = cc

    asked = numba.cuda.dispatcher.get_current_device
    numba.cuda.dispatcher.get_current_device = lambda: Named()
    try:
        yield
    finally:
        numba.cuda.dispatcher.get_current_device = asked


def assemble(variant, cc=(9, 0)):
    """(ptxas report text, SASS text) of ``variant`` for compute capability ``cc``."""
    from numba import cuda

    with named_device(cc):
        ptx, _ = cuda.compile_ptx(variant.kernel.py_func, variant.signature, cc=cc,
                                  launch_bounds=(variant.threads, variant.min_blocks))
    arch = f"sm_{cc[0]}{cc[1]}"
    with tempfile.TemporaryDirectory() as folder:
        source, cubin = Path(folder) / "kernel.ptx", Path(folder) / "kernel.cubin"
        source.write_text(ptx)
        assembled = subprocess.run([tool("ptxas"), f"-arch={arch}", "-v", str(source), "-o", str(cubin)],
                                   capture_output=True, text=True)
        if assembled.returncode:
            raise RuntimeError(f"ptxas failed on {variant.name}: {assembled.stderr.strip()}")
        listed = subprocess.run([tool("cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True)
        if listed.returncode:
            raise RuntimeError(f"cuobjdump failed on {variant.name}: {listed.stderr.strip()}")
    return assembled.stderr, listed.stdout


def _number(pattern, text):
    match = re.search(pattern, text)
    return int(match.group(1)) if match else 0


def occupancy(registers, threads, shared, limits=SM90):
    """(resident warps per multiprocessor, what limits them) for a kernel of ``registers`` per thread,
    ``threads`` per block and ``shared`` bytes of shared memory per block."""
    warps = -(-threads // 32)
    unit = limits["register_unit"]
    per_warp = -(-max(registers, 1) * 32 // unit) * unit
    bounds = {"registers": limits["registers"] // per_warp // warps,
              "warps": limits["warps"] // warps, "blocks": limits["blocks"],
              "shared memory": limits["shared"] // (shared + limits["block_reserved"])}
    limiter = min(bounds, key=bounds.get)
    return bounds[limiter] * warps, limiter


def _instructions(sass):
    """(address, opcode) of each SASS instruction, predicates dropped."""
    found = []
    for line in sass.splitlines():
        match = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z0-9_.]+)([^;]*);", line)
        if match:
            found.append((int(match.group(1), 16), match.group(3), match.group(4)))
    return found


def inner_loop(sass):
    """Opcodes of the arithmetic loop (a backward branch's range): the one with the most fused
    multiply-adds (or tensor-core products) weighted by their share of it (fma**2 / length, which
    prefers an inner loop to the loops around it); the whole kernel where no loop holds one."""
    instructions = _instructions(sass)
    loops = []
    for address, opcode, operands in instructions:
        target = re.search(r"0x([0-9a-f]+)", operands)
        if opcode.startswith("BRA") and target and int(target.group(1), 16) <= address:
            body = [op for at, op, _ in instructions if int(target.group(1), 16) <= at <= address]
            loops.append(body)
    fma = lambda body: sum(op.startswith(_FMA + _MMA) for op in body)  # noqa: E731
    best = max(loops, key=lambda body: fma(body) ** 2 / len(body), default=None)
    if best is None or fma(best) == 0:
        best = [op for _, op, _ in instructions]
    return best


def instruction_mix(opcodes):
    """Counts and shares of an instruction sequence: FMA, tensor-core products, shared and global loads,
    integer overhead."""
    counts = collections.Counter(op.split(".")[0] for op in opcodes)
    total = max(len(opcodes), 1)
    fma = sum(counts[name] for name in _FMA)
    mma = sum(counts[name] for name in _MMA)
    shared_loads = counts["LDS"]
    wide_shared = sum(op.startswith("LDS.128") or op.startswith("LDS.64") for op in opcodes)
    integer = sum(counts[name] for name in _INTEGER)
    return dict(instructions=len(opcodes), fma=fma, fma_share=fma / total, mma=mma,
                shared_loads=shared_loads,
                wide_shared_loads=wide_shared, shared_loads_per_fma=shared_loads / max(fma, 1),
                global_loads=counts["LDG"], integer=integer, integer_share=integer / total,
                local_memory=counts["LDL"] + counts["STL"])


def report(variant, cc=(9, 0)):
    """The resources of ``variant``: registers, stack, spills, shared memory, occupancy, loop mix."""
    text, sass = assemble(variant, cc)
    registers = _number(r"Used (\d+) registers", text)
    static_shared = _number(r"(\d+) bytes smem", text)
    shared = static_shared + variant.dynamic_shared
    warps, limiter = occupancy(registers, variant.threads, shared)
    return dict(name=variant.name, threads=variant.threads, registers=registers,
                stack=_number(r"(\d+) bytes stack frame", text),
                spill_stores=_number(r"(\d+) bytes spill stores", text),
                spill_loads=_number(r"(\d+) bytes spill loads", text),
                static_shared=static_shared, dynamic_shared=variant.dynamic_shared,
                warps_per_sm=warps, occupancy_limit=limiter, loop=instruction_mix(inner_loop(sass)))
