"""Integer rules of 3-D convolution shared by Python and jitted code.

Every function here is ``register_jitable``: the planner calls it from Python, and kernels (or a user's
``@njit`` code) call the very same source from compiled code, so the rules exist once.
"""
from numba.extending import register_jitable

PAD_ZEROS = 0
PAD_REFLECT = 1
PAD_REPLICATE = 2
PAD_CIRCULAR = 3

# Indexed by the codes above.
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@register_jitable
def padding_mode_code(padding_mode):
    """``padding_mode`` string -> its ``PAD_*`` code (its index in ``PADDING_MODES``); -1 if unknown."""
    for code in range(len(PADDING_MODES)):
        if PADDING_MODES[code] == padding_mode:
            return code
    return -1


@register_jitable
def ceil_div(a, b):
    """``ceil(a / b)`` for an int ``a`` and a positive int ``b`` (floor division rounds negative
    quotients down, so this holds for negative ``a`` too)."""
    return (a + b - 1) // b


@register_jitable
def round_up(value, multiple):
    """``value`` rounded up to a multiple of ``multiple`` (non-negative ints)."""
    return ceil_div(value, multiple) * multiple


@register_jitable
def dilated_extent(kernel, dilation):
    """Span of a dilated kernel along one dimension: ``dilation * (kernel - 1) + 1``."""
    return dilation * (kernel - 1) + 1


@register_jitable
def same_pads(kernel, dilation):
    """Front and back pads of ``padding='same'`` along one dimension.

    Like torch, the total pad is ``dilation * (kernel - 1)``; an odd total puts the extra element on the
    back side.
    """
    total = dilation * (kernel - 1)
    front = total // 2
    return front, total - front


@register_jitable
def conv_output_size(size, pad_front, pad_back, kernel, stride, dilation):
    """Output extent of a convolution along one dimension (torch's formula).

    ``floor((size + pad_front + pad_back - dilation * (kernel - 1) - 1) / stride) + 1``; the result is
    zero or negative when the dilated kernel does not fit in the padded input.
    """
    span = size + pad_front + pad_back - dilated_extent(kernel, dilation)
    if span < 0:
        return 0
    return span // stride + 1


@register_jitable
def output_reading(position, tap, stride, dilation, out_extent):
    """The output index whose tap ``tap`` reads padded coordinate ``position`` along one dimension
    (``position = output * stride + tap * dilation``), or -1 when no output in ``[0, out_extent)``
    does: where a padded element's gradient comes from."""
    offset = position - tap * dilation
    if offset < 0 or offset % stride:
        return -1
    output = offset // stride
    return output if output < out_extent else -1


@register_jitable
def row_merge(height, width, least_columns):
    """How many rows of a convolution that is pointwise in (H, W) (kernel 1, stride 1, no pads along
    both) can be laid side by side as one row: the smallest divisor ``m`` of ``height`` with ``m *
    width >= least_columns``, or ``height`` when there is none. Such a convolution of (D, H, W) is the
    same as one of (D, H / m, W * m), element for element."""
    for rows in range(1, height + 1):
        if height % rows == 0 and rows * width >= least_columns:
            return rows
    return max(height, 1)


@register_jitable
def padded_source_index(position, pad_front, size, mode):
    """Index into the unpadded input that a padded coordinate reads, or -1 for a zero pad.

    ``position`` counts from the front of the padded extent; ``mode`` is one of the ``PAD_*`` codes.
    Reflect mirrors without repeating the edge (pads < size), replicate clamps to the edge, circular
    wraps to the far side of the volume (pads <= size): the planner guarantees those limits, so one
    reflection or one wrap always lands inside.
    """
    i = position - pad_front
    if 0 <= i < size:
        return i
    if mode == PAD_ZEROS:
        return -1
    if mode == PAD_REPLICATE:
        return 0 if i < 0 else size - 1
    if mode == PAD_CIRCULAR:
        return i + size if i < 0 else i - size
    return -i if i < 0 else 2 * (size - 1) - i
