"""torch.nn.Conv3d's rules, once: normalize the arguments, validate them, choose the algorithm.

Only this module knows the rules; kernels trust the :class:`~numba_conv3d.plan.ConvPlan` it returns.
Messages name the operation, the argument and the numbers received. ``ValueError`` is raised for bad
values and shapes, ``TypeError`` for bad types, ``MemoryError`` for a call that cannot fit in memory.
"""
from dataclasses import replace

import numba
import numpy as np

from . import config, shape_checks
from .cuda.arrays import is_device_array
from .precision import REDUCED_DTYPES, dtype_spec, named_dtype
from .plan import ConvPlan
from .plan_cache import ARRAY_PLANS, memoized, operands_key
from .shape_rules import PADDING_MODES, dilated_extent, padding_mode_code, same_pads

SUPPORTED_DTYPES = ("float32", "float64", "complex64", "complex128") + REDUCED_DTYPES
PADDING_STRINGS = ("valid", "same")


def _as_int(op, name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int or a tuple of 3 ints, "
                        f"but got {type(value).__name__} {value!r}")
    return int(value)


def normalize_triple(op, name, value, minimum):
    """An int or a sequence of 3 ints -> a 3-tuple of ints, each at least ``minimum``.

    Parameters
    ----------
    op, name : str
        Operation and argument named in error messages.
    value : int or tuple or list of 3 ints
        What the caller passed; an int applies to all three dimensions, as in torch.
    minimum : int
        Smallest allowed element.

    Returns
    -------
    tuple of 3 int
    """
    if isinstance(value, (tuple, list)):
        if len(value) != 3:
            raise ValueError(f"{op}: {name} must be an int or have 3 elements (D, H, W), "
                             f"but got {len(value)}: {tuple(value)!r}")
        triple = tuple(_as_int(op, name, v) for v in value)
    else:
        triple = (_as_int(op, name, value),) * 3
    shape_checks.check_minimum(op, name, triple, minimum)
    return triple


def normalize_padding(op, padding):
    """``padding`` as torch takes it -> 'valid', 'same' or a 3-tuple of non-negative ints."""
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(f"{op}: invalid padding string {padding!r}, should be one of "
                             f"{PADDING_STRINGS}")
        return padding
    return normalize_triple(op, "padding", padding, 0)


def normalize_positive_int(op, name, value):
    """A positive int argument (``groups``, channel counts) -> int; bools and floats are TypeErrors."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, but got {type(value).__name__} {value!r}")
    shape_checks.check_positive(op, name, int(value))
    return int(value)


def normalize_padding_mode(op, padding_mode):
    """``padding_mode`` -> one of 'zeros', 'reflect', 'replicate', 'circular'."""
    if not isinstance(padding_mode, str):
        raise TypeError(f"{op}: padding_mode must be a string, but got "
                        f"{type(padding_mode).__name__} {padding_mode!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"{op}: padding_mode must be one of {list(PADDING_MODES)}, "
                         f"but got padding_mode={padding_mode!r}")
    return padding_mode


def resolve_dtype(op, name, dtype):
    """A dtype-like (NumPy dtype, type, name, or a torch dtype) -> a supported NumPy dtype."""
    spec = dtype_spec(dtype)
    if spec in ("complex32", "chalf"):
        raise TypeError(f"{op}: {name} {dtype!r} (complex half precision) is not supported: NumPy has no "
                        f"such dtype to hold it; use complex64")
    try:
        resolved = named_dtype(spec)
    except TypeError as err:
        raise TypeError(f"{op}: {name} {dtype!r} is not a dtype") from err
    if resolved.name not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: {name} {resolved} is not supported; use one of {SUPPORTED_DTYPES}")
    if not resolved.isnative:
        raise TypeError(f"{op}: {name} {resolved.str} is not in native byte order; "
                        f"convert with .astype({resolved.name!r})")
    return resolved


def _normalize_shape(op, name, shape, ndims):
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{op}: {name} shape must be a tuple of ints, but got {type(shape).__name__}")
    dims = tuple(_as_int(op, f"{name} shape", n) for n in shape)
    if len(dims) not in ndims:
        expected = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{op}: expected {name} to have {expected} dimensions, "
                         f"but got {name} of shape {dims} ({len(dims)} dimensions)")
    shape_checks.check_not_empty(op, name, dims, name == "input" and len(dims) == 5)
    return dims


def check_same_stride(op, padding, stride):
    """Raise ValueError when normalized ``padding`` is 'same' and the normalized ``stride`` is not 1."""
    if padding == "same":
        shape_checks.check_same_stride(op, stride)


def _resolve_pads(op, padding, kernel, stride, dilation):
    check_same_stride(op, padding, stride)
    if padding == "valid":
        return ((0, 0),) * 3
    if padding == "same":
        return tuple(same_pads(k, d) for k, d in zip(kernel, dilation))
    return tuple((p, p) for p in padding)


def _algorithm_table(op, backend):
    from . import cpu, cuda

    tables = {module.NAME: module.ALGORITHMS for module in (cpu, cuda)}
    if backend not in tables:
        raise ValueError(f"{op}: backend must be one of {list(tables)}, but got backend={backend!r}")
    return tables[backend]


def _choose_algorithm(op, plan, name):
    table = _algorithm_table(op, plan.backend)
    computed = plan.computed()
    views = {a.name: plan if a.operands == "stored" else computed for a in table}
    rows = [a for a in table if a.applies(views[a.name])]
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{op}: algorithm must be a string or None, but got {type(name).__name__}")
    if name not in (None, "auto"):
        known = ["auto"] + [a.name for a in table]
        if name not in known:
            raise ValueError(f"{op}: unknown {plan.backend} algorithm {name!r}; known: {known}")
        rows = [a for a in rows if a.name == name]
        if not rows:
            raise ValueError(f"{op}: algorithm {name!r} does not serve this convolution "
                             f"(dtype {plan.dtype})")
    else:
        rows = [a for a in rows if a.prefers(views[a.name])]
    algorithm = rows[0]
    return replace(plan, algorithm=algorithm.name, algorithm_reason=algorithm.reason,
                   workspace_bytes=algorithm.workspace_bytes(views[algorithm.name]),
                   call_bytes=algorithm.call_bytes(views[algorithm.name]))


@memoized
def plan_conv3d(input_shape, weight_shape, *, bias=True, stride=1, padding=0, dilation=1, groups=1,
                padding_mode="zeros", dtype="float32", backend="cpu", algorithm=None, op="conv3d",
                pads=None, allow_tf32=False):
    """Validate a 3-D convolution's arguments and lower them into a :class:`ConvPlan`.

    Follows ``torch.nn.functional.conv3d`` (and ``torch.nn.Conv3d`` for ``padding_mode``): the same
    output extents, the same split of 'same' padding (the odd element goes to the back), the same
    limits on reflect and circular padding.

    Parameters
    ----------
    input_shape : tuple of int
        (N, C_in, D, H, W), or (C_in, D, H, W) for unbatched input. Only N may be 0.
    weight_shape : tuple of int
        (C_out, C_in / groups, KD, KH, KW).
    bias : bool or None or tuple of int, optional
        True (a bias of C_out elements), False or None (no bias), or the bias's shape to check.
    stride, dilation : int or tuple of 3 ints, optional
        Positive.
    padding : int or tuple of 3 ints or {'valid', 'same'}, optional
        Non-negative pads applied to both sides, or a string; 'same' requires stride 1.
    groups : int, optional
        Divides C_in and C_out.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, optional
        How the pads are filled; reflect needs pads < extent, circular pads <= extent.
    dtype : dtype-like, optional
        float32, float64, complex64, complex128, float16 or bfloat16 (products summed in float32,
        rounded once; on the CPU the algorithm is the float32 plan's, on the GPU the tensor cores'
        where they serve).
    backend : {'cpu', 'cuda'}, optional
        Whose algorithm table to choose from (``numba_conv3d.dispatch.backend_for`` tells an array's).
    algorithm : str, optional
        'auto' or None (default): the first row of the backend's algorithm table that serves the
        convolution and prefers it (measured crossovers); or a row's name, forced (it must serve).
    op : str, optional
        Name used in error messages.
    pads : tuple of 3 (front, back) pairs of non-negative ints, optional
        Explicit pads per dimension, used instead of ``padding`` (torch's API has no such argument;
        the gradients use it to compute a cropped correlation).
    allow_tf32 : bool, optional
        Whether a float32 convolution on the GPU may round its operands to TF32 for the tensor cores
        (``torch.backends.cudnn.allow_tf32``; False by default here: float32 stays exact). The CPU
        ignores it, as torch's CPU convolutions do.

    Returns
    -------
    ConvPlan

    Raises
    ------
    ValueError
        For bad values or shapes, naming the argument and the numbers.
    TypeError
        For arguments of the wrong type and unsupported dtypes.
    """
    x_shape = _normalize_shape(op, "input", input_shape, (4, 5))
    w_shape = _normalize_shape(op, "weight", weight_shape, (5,))
    stride = normalize_triple(op, "stride", stride, 1)
    dilation = normalize_triple(op, "dilation", dilation, 1)
    padding = normalize_padding(op, padding)
    groups = normalize_positive_int(op, "groups", groups)
    padding_mode = normalize_padding_mode(op, padding_mode)
    dtype = resolve_dtype(op, "dtype", dtype)
    if not isinstance(allow_tf32, (bool, np.bool_)):
        raise TypeError(f"{op}: allow_tf32 must be True or False, but got {type(allow_tf32).__name__}")

    batched = len(x_shape) == 5
    batch, in_channels = (x_shape[0], x_shape[1]) if batched else (1, x_shape[0])
    out_channels, in_per_group = w_shape[:2]
    kernel, size = w_shape[2:], x_shape[-3:]
    shape_checks.check_groups(op, x_shape, w_shape, groups)
    has_bias = _check_bias(op, bias, w_shape)
    pads = _resolve_pads(op, padding, kernel, stride, dilation) if pads is None else tuple(
        (int(front), int(back)) for front, back in pads)
    front, back = tuple(f for f, _ in pads), tuple(b for _, b in pads)
    shape_checks.check_mode_limits(op, padding_mode_code(padding_mode), front, back, size)
    padded = tuple(n + f + b for n, (f, b) in zip(size, pads))
    spans = tuple(dilated_extent(k, d) for k, d in zip(kernel, dilation))
    shape_checks.check_kernel_fits(op, padded, spans, kernel, dilation)
    plan = ConvPlan(batched=batched, batch=batch, in_channels=in_channels, out_channels=out_channels,
                    groups=groups, input_size=size, kernel_size=kernel, stride=stride,
                    dilation=dilation, pads=pads, padding_mode=padding_mode, has_bias=has_bias,
                    dtype=dtype.name, backend=backend, algorithm="", algorithm_reason="",
                    workspace_bytes=0, allow_tf32=bool(allow_tf32))
    return _choose_algorithm(op, plan, algorithm)


def plan_in_compute_dtype(plan):
    """``plan`` made again for its compute dtype (float32 for float16 and bfloat16): the algorithm
    chosen for float32 operands, where :meth:`ConvPlan.computed` keeps the reduced dtype's."""
    return plan_conv3d(plan.input_shape, plan.weight_shape, bias=plan.has_bias, stride=plan.stride,
                       dilation=plan.dilation, groups=plan.groups, padding_mode=plan.padding_mode,
                       dtype=plan.compute_dtype, backend=plan.backend, pads=plan.pads,
                       allow_tf32=plan.allow_tf32)


def _check_bias(op, bias, w_shape):
    if bias is None or bias is False:
        return False
    if bias is True:
        return True
    if not isinstance(bias, (tuple, list)):
        raise TypeError(f"{op}: bias must be True, False, None or the bias's shape, but got {bias!r}")
    shape_checks.check_bias_shape(op, w_shape, tuple(_as_int(op, "bias shape", n) for n in bias))
    return True


def check_array(op, name, array, backend="cpu", dtype=None, dtype_of="input"):
    """An operand of ``backend`` (a NumPy array; or a CUDA array for 'cuda') of a supported dtype, equal
    to ``dtype`` (``dtype_of``'s) when given -> its dtype.

    Raises
    ------
    TypeError
        Another kind of operand, an unsupported dtype, or one that differs from ``dtype``.
    """
    if not (isinstance(array, np.ndarray) or (backend == "cuda" and is_device_array(array))):
        kinds = "a NumPy or CUDA array" if backend == "cuda" else "a NumPy array"
        raise TypeError(f"{op}: {name} must be {kinds}, but got {type(array).__name__}")
    if not (hasattr(array, "shape") and hasattr(array, "dtype")):
        raise TypeError(f"{op}: {name} ({type(array).__name__}) has no shape and dtype attributes")
    resolved = resolve_dtype(op, f"{name} dtype", array.dtype)
    if dtype is not None and resolved != dtype:
        raise TypeError(f"{op}: {name} dtype {resolved} does not match {dtype_of} dtype {dtype} "
                        f"(like torch, the operands must share one dtype)")
    return resolved


def plan_for_arrays(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", backend="cpu", algorithm=None, op="conv3d", allow_tf32=False):
    """Check the operands' types and dtypes, then :func:`plan_conv3d` their shapes.

    Parameters
    ----------
    input, weight : numpy.ndarray or CUDA array
        Operands of :func:`numba_conv3d.conv3d`; CUDA arrays only with ``backend='cuda'``.
    bias : numpy.ndarray or CUDA array or None
        Optional bias.
    stride, padding, dilation, groups, padding_mode, backend, algorithm, op, allow_tf32
        As in :func:`plan_conv3d`.

    Returns
    -------
    ConvPlan
    """
    key = operands_key(input, weight, bias, (stride, padding, dilation, groups, padding_mode, backend,
                                             algorithm, op, allow_tf32))
    known = ARRAY_PLANS.get(key) if key is not None else None
    if known is not None:
        plan, checks_memory = known
    else:
        dtype = check_array(op, "input", input, backend)
        plan = plan_for_input_shape(tuple(input.shape), dtype, weight, bias, stride=stride, padding=padding,
                                    dilation=dilation, groups=groups, padding_mode=padding_mode,
                                    backend=backend, algorithm=algorithm, op=op, allow_tf32=allow_tf32)
        checks_memory = backend == "cpu"
    copy_bytes = 0 if backend != "cpu" or input.flags.c_contiguous else input.nbytes
    if checks_memory:
        checks_memory = check_host_memory(op, plan, input_copy_bytes=copy_bytes)
    if known is None and key is not None:
        ARRAY_PLANS.store(key, (plan, checks_memory))
    return plan


def plan_for_input_shape(input_shape, dtype, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                         padding_mode="zeros", backend="cpu", algorithm=None, op="conv3d",
                         allow_tf32=False):
    """Like :func:`plan_for_arrays` for an input known only by its shape and dtype (a Dask array's),
    without the memory check: a split input is checked piece by piece when the pieces run.

    Parameters
    ----------
    input_shape : tuple of int
        (N, C_in, D, H, W) or (C_in, D, H, W).
    dtype : dtype-like
        The input's dtype.
    weight, bias, stride, padding, dilation, groups, padding_mode, backend, algorithm, op, allow_tf32
        As in :func:`plan_for_arrays`.

    Returns
    -------
    ConvPlan
    """
    dtype = resolve_dtype(op, "input dtype", dtype)
    check_array(op, "weight", weight, backend, dtype)
    if bias is not None:
        check_array(op, "bias", bias, backend, dtype)
    return plan_conv3d(input_shape, tuple(weight.shape),
                       bias=None if bias is None else tuple(bias.shape), stride=stride,
                       padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
                       dtype=dtype, backend=backend, algorithm=algorithm, op=op,
                       allow_tf32=allow_tf32)


def available_memory():
    """Bytes the kernel can still give this process without swapping (Linux ``MemAvailable``), or None
    where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_host_memory(op, plan, available=None, input_copy_bytes=0):
    """Raise MemoryError, before anything is allocated, when a CPU call needs more memory than is
    available (``available`` bytes; read from the system when None), ``input_copy_bytes`` included
    (a strided input is copied into C order first). Returns whether it read the memory available (a
    call small enough is let through unchecked)."""
    workers = numba.get_num_threads()
    needed = plan.memory_bytes(workers) + input_copy_bytes
    if available is None:
        if needed <= config.MEMORY_QUERY_BYTES:
            return False  # reading /proc/meminfo would cost more than such a call's allocation
        available = available_memory()
    if available is not None and needed > available:
        gib = 2.0 ** 30
        copy = f"; input copied into C order: {input_copy_bytes / gib:.2f} GiB" if input_copy_bytes else ""
        shared = f" + {plan.call_bytes / 2 ** 20:.1f} MiB per call" if plan.call_bytes else ""
        raise MemoryError(f"{op}: this call needs {needed / gib:.2f} GiB (output {plan.output_shape} "
                          f"{plan.dtype}: {plan.output_bytes / gib:.2f} GiB{copy}; workspace "
                          f"{plan.workspace_bytes / 2 ** 20:.1f} MiB per thread x {workers} threads"
                          f"{shared}), but only {available / gib:.2f} GiB of memory is available")
    return True
