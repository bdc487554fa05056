"""Transposed 3-D convolution on the CPU and the GPU: ``conv_transpose3d`` and the ``ConvTranspose3d``
layer.

A transposed convolution is the input gradient of the convolution it transposes (same weight, stride,
padding, dilation, groups), so it runs :func:`numba_conv3d.input_grad_routes.input_gradient` with the
kernels of ``conv3d_input``, weight not conjugated, then adds the bias.
"""
import numpy as np

from .grad import gradient_backend
from .input_grad_routes import input_gradient
from .grad_planner import output_padding_for, plan_conv_transpose3d
from .layer import Conv3d, normalize_device, set_layer_fields
from .planner import normalize_padding_mode, normalize_triple, resolve_dtype
from .precision import one_reduced_dtype

_OP = "ConvTranspose3d"


@one_reduced_dtype
def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 3-D convolution, with the semantics of ``torch.nn.functional.conv_transpose3d``.

    Parameters
    ----------
    input : numpy.ndarray or CUDA array
        (N, C_in, D, H, W) or unbatched (C_in, D, H, W); float32, float64, complex64, complex128, or on
        the CPU float16 or bfloat16 (summed in float32, rounded once, as torch does); any
        memory layout. N may be 0. A CUDA array computes on the GPU.
    weight : numpy.ndarray or CUDA array
        (C_in, C_out / groups, KD, KH, KW), ``input``'s dtype; a host array with a CUDA input is copied
        to the device.
    bias : numpy.ndarray or CUDA array, optional
        (C_out,), like ``weight``.
    stride, dilation : int or tuple of 3 ints, optional
        Positive. Default 1.
    padding : int or tuple of 3 ints, optional
        ``dilation * (K - 1) - padding`` zeros are added to both sides of the input. Default 0.
    output_padding : int or tuple of 3 ints, optional
        Extra extent at the back of each output dimension; smaller than ``max(stride, dilation)``.
    groups : int, optional
        Divides C_in. Default 1.

    Returns
    -------
    numpy.ndarray or CUDA array
        A new C-contiguous (N, C_out, OD, OH, OW) array, where ``input`` lives (of its kind), with ``O =
        (I - 1) * stride - 2 * padding + dilation * (K - 1) + output_padding + 1``; unbatched input gives
        an unbatched result.

    Raises
    ------
    ValueError
        Bad values or shapes (output_padding too large, too small an output, channel mismatch), before
        any computation.
    TypeError
        Non-array operands, unsupported or mismatched dtypes, non-integer arguments, a CUDA weight
        or bias with a host input.
    """
    op = "conv_transpose3d"
    backend = gradient_backend(op, "input", input, weight=weight, bias=bias)
    plan = plan_conv_transpose3d(op, input, weight, bias, stride, padding, output_padding, groups, dilation,
                                 backend.NAME)
    return input_gradient(op, plan, input, weight, False, backend, bias)


class ConvTranspose3d:
    """Transposed 3-D convolution layer with the constructor, initialisation and ``repr`` of
    ``torch.nn.ConvTranspose3d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts; positive and divisible by ``groups``.
    kernel_size : int or tuple of 3 ints
        Positive kernel extents (KD, KH, KW).
    stride, padding, output_padding, groups, dilation
        As in :func:`conv_transpose3d`; output_padding < max(stride, dilation) is checked when called.
    bias : bool, optional
        Whether the layer has a learnable bias. With False, ``self.bias is None``.
    padding_mode : {'zeros'}, optional
        Only 'zeros', like torch.
    device : {None, 'cpu', 'cuda'}, optional
        Where the parameters live, as in :class:`numba_conv3d.Conv3d` (``to`` moves them).
    dtype : dtype-like, optional
        float32 (default), float64, complex64, complex128, float16 or bfloat16 (computed in float32,
        rounded once).
    rng : None, int or numpy.random.Generator, optional
        Seed or generator for :meth:`reset_parameters` (not in torch).

    Attributes
    ----------
    weight : numpy.ndarray
        (in_channels, out_channels / groups, KD, KH, KW), drawn from U(-sqrt(k), sqrt(k)) with
        k = groups / (out_channels * KD * KH * KW), as torch does.
    bias : numpy.ndarray or None
        (out_channels,), from the same distribution.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None, *,
                 rng=None):
        set_layer_fields(self, _OP, in_channels, out_channels, kernel_size, stride, dilation, groups, bias)
        self.padding = normalize_triple(_OP, "padding", padding, 0)
        self.output_padding = normalize_triple(_OP, "output_padding", output_padding, 0)
        if normalize_padding_mode(_OP, padding_mode) != "zeros":
            raise ValueError(f"{_OP}: only padding_mode='zeros' is supported (like torch), but got "
                             f"padding_mode={padding_mode!r}")
        self.padding_mode = padding_mode
        target = normalize_device(_OP, device)
        self.device = "cpu"
        dtype = resolve_dtype(_OP, "dtype", np.float32 if dtype is None else dtype)
        self.weight = np.empty((self.in_channels, self.out_channels // self.groups) + self.kernel_size,
                               dtype)
        self.bias = np.empty(self.out_channels, dtype) if bias else None
        self.reset_parameters(rng)
        self.to(target)

    # Conv3d's initialisation bound is 1 / sqrt(weight[0].size): here (out_channels / groups) * prod(K),
    # torch's fan_in of a transposed weight.
    reset_parameters = Conv3d.reset_parameters
    to = Conv3d.to

    def forward(self, input, output_size=None):
        """Apply the layer, like ``torch.nn.ConvTranspose3d.forward(input, output_size)``.

        Parameters
        ----------
        input : numpy.ndarray or CUDA array
            (N, C_in, D, H, W) or (C_in, D, H, W), of the layer's dtype.
        output_size : sequence of int, optional
            The wanted output extents (3, or the whole output shape); sets the output padding for
            this call (each extent within ``stride - 1`` of the smallest one), instead of
            ``self.output_padding``.

        Returns
        -------
        numpy.ndarray or CUDA array
            :func:`conv_transpose3d` of ``input`` with this layer's parameters.
        """
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = output_padding_for(_OP, np.shape(input), output_size, self.stride,
                                                self.padding, self.kernel_size, self.dilation)
        return conv_transpose3d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                self.groups, self.dilation)

    __call__ = forward

    def extra_repr(self):
        """The argument summary torch prints inside ``ConvTranspose3d(...)``."""
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        for name, default in (("padding", (0, 0, 0)), ("dilation", (1, 1, 1)),
                              ("output_padding", (0, 0, 0)), ("groups", 1)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        if self.bias is None:
            text += ", bias=False"
        return text

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"
