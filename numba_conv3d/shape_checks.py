"""torch's value rules for conv3d's integer arguments, written once for Python and jitted code.

Every function is ``register_jitable``: the planner calls them from Python, and ``conv3d`` called inside
a user's ``@njit`` function calls the same source compiled, so both raise ``ValueError`` with the same
message. Messages are built by string concatenation, which both worlds support.
"""
from numba.extending import register_jitable

from .shape_rules import PAD_CIRCULAR, PAD_REFLECT


@register_jitable
def text(values):
    """A tuple of ints as Python prints it: ``(1, 2, 3)``, ``(5,)``."""
    if len(values) == 1:
        return "(" + str(values[0]) + ",)"
    joined = ""
    for i in range(len(values)):
        joined += (", " if i else "") + str(values[i])
    return "(" + joined + ")"


@register_jitable
def check_minimum(op, name, triple, minimum):
    """Every element of a normalized 3-tuple argument is at least ``minimum``."""
    if min(triple) < minimum:
        raise ValueError(op + ": " + name + " must be >= " + str(minimum)
                         + " in every dimension, but got " + text(triple))


@register_jitable
def check_positive(op, name, value):
    """A count argument (``groups``) is positive."""
    if value < 1:
        raise ValueError(op + ": " + name + " must be a positive integer, but got " + name + "="
                         + str(value))


@register_jitable
def check_not_empty(op, name, dims, batch_may_be_empty):
    """No empty dimension, except the input's batch dimension."""
    if min(dims[1:]) < 1 or dims[0] < (0 if batch_may_be_empty else 1):
        raise ValueError(op + ": " + name + " of shape " + text(dims) + " has an empty dimension; "
                         + "only the batch dimension of the input may be 0")


@register_jitable
def check_groups(op, input_shape, weight_shape, groups):
    """``groups`` divides the output channels, and the input has ``groups * weight.shape[1]``
    channels (``input_shape`` batched or not)."""
    out_channels, in_per_group = weight_shape[0], weight_shape[1]
    in_channels = input_shape[len(input_shape) - 4]
    if out_channels % groups:
        raise ValueError(op + ": weight of shape " + text(weight_shape) + " has " + str(out_channels)
                         + " output channels, which groups=" + str(groups) + " does not divide")
    if in_per_group * groups != in_channels:
        raise ValueError(op + ": given groups=" + str(groups) + " and weight of shape "
                         + text(weight_shape) + ", expected input of shape " + text(input_shape)
                         + " to have " + str(in_per_group * groups) + " channels, but got "
                         + str(in_channels) + " channels")


@register_jitable
def check_bias_shape(op, weight_shape, bias_shape):
    """The bias is 1-D with one element per output channel."""
    if len(bias_shape) != 1 or bias_shape[0] != weight_shape[0]:
        raise ValueError(op + ": given weight of shape " + text(weight_shape)
                         + ", expected bias to be 1-dimensional with " + str(weight_shape[0])
                         + " elements, but got bias of shape " + text(bias_shape))


@register_jitable
def check_same_stride(op, stride):
    """padding='same' only with stride 1 (torch's rule)."""
    if max(stride) > 1:
        raise ValueError(op + ": padding='same' is not supported for strided convolutions, "
                         + "but got stride=" + text(stride))


@register_jitable
def check_mode_limits(op, mode, front, back, size):
    """reflect needs pads < extent; circular pads <= extent (one wrap), per spatial dimension."""
    for dim in range(3):
        pads = "(" + str(front[dim]) + ", " + str(back[dim]) + ")"
        largest = max(front[dim], back[dim])
        if mode == PAD_REFLECT and largest >= size[dim]:
            raise ValueError(op + ": padding_mode='reflect' needs pads smaller than the input extent, "
                             + "but got pads " + pads + " for extent " + str(size[dim])
                             + " in spatial dimension " + str(dim))
        if mode == PAD_CIRCULAR and largest > size[dim]:
            raise ValueError(op + ": padding_mode='circular' needs pads no larger than the input "
                             + "extent (it would wrap around more than once), but got pads " + pads
                             + " for extent " + str(size[dim]) + " in spatial dimension " + str(dim))


@register_jitable
def check_kernel_fits(op, padded, spans, kernel, dilation):
    """The dilated kernel fits in the padded input in every dimension."""
    for dim in range(3):
        if padded[dim] < spans[dim]:
            raise ValueError(op + ": the padded input extent " + text(padded)
                             + " is smaller than the dilated kernel extent " + text(spans)
                             + " (kernel " + text(kernel) + ", dilation " + text(dilation)
                             + ") in some dimension")
