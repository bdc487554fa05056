"""``Conv3d``: a thin layer holding ``weight`` and ``bias``, like ``torch.nn.Conv3d``."""
import math

import numpy as np

from .api import conv3d
from .grad import conv3d_backward
from .planner import (check_same_stride, normalize_padding, normalize_padding_mode,
                      normalize_positive_int, normalize_triple, resolve_dtype)

_OP = "Conv3d"


class Conv3d:
    """3-D convolution layer with the constructor, initialisation and ``repr`` of ``torch.nn.Conv3d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts; positive (torch silently builds empty layers from zeros; this refuses them)
        and divisible by ``groups``.
    kernel_size : int or tuple of 3 ints
        Positive kernel extents (KD, KH, KW).
    stride, padding, dilation, groups, padding_mode
        As in :func:`numba_conv3d.conv3d`.
    bias : bool, optional
        Whether the layer has a learnable bias. With False, ``self.bias is None``.
    device : {None, 'cpu', 'cuda'}, optional
        Where the parameters live: host NumPy arrays (None, 'cpu'), or Numba device arrays on the
        current CUDA device ('cuda', 'cuda:N' with N the current device). Initialisation draws on the
        host either way, so a seed gives the same parameters everywhere.
    dtype : dtype-like, optional
        float32 (default, like torch), float64, complex64, complex128, float16 or bfloat16
        (``ml_dtypes.bfloat16``; products summed in float32 and rounded once, as torch does).
    rng : None, int or numpy.random.Generator, optional
        Seed or generator for :meth:`reset_parameters` (not in torch: makes initialisation repeatable).
    algorithm : str, optional
        The forward convolution's algorithm, as in :func:`numba_conv3d.conv3d` (not in torch);
        'auto' by default.
    allow_tf32 : bool, optional
        Whether the forward convolution may use TF32 on the GPU, as in :func:`numba_conv3d.conv3d`
        (torch's switch is global: ``torch.backends.cudnn.allow_tf32``); False by default.

    Attributes
    ----------
    weight : numpy.ndarray
        (out_channels, in_channels / groups, KD, KH, KW), drawn from U(-sqrt(k), sqrt(k)) with
        k = groups / (in_channels * KD * KH * KW), as torch does.
    bias : numpy.ndarray or None
        (out_channels,), drawn from the same distribution.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None, *, rng=None,
                 algorithm="auto", allow_tf32=False):
        set_layer_fields(self, _OP, in_channels, out_channels, kernel_size, stride, dilation, groups, bias)
        self.padding = normalize_padding(_OP, padding)
        check_same_stride(_OP, self.padding, self.stride)
        self.padding_mode = normalize_padding_mode(_OP, padding_mode)
        self.algorithm = algorithm
        self.allow_tf32 = allow_tf32
        self.weight_grad = self.bias_grad = self._last_input = None
        target = normalize_device(_OP, device)
        self.device = "cpu"
        dtype = resolve_dtype(_OP, "dtype", np.float32 if dtype is None else dtype)
        weight_shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = np.empty(weight_shape, dtype)
        self.bias = np.empty(self.out_channels, dtype) if bias else None
        self.reset_parameters(rng)
        self.to(target)

    def to(self, device):
        """Move ``weight`` and ``bias`` to ``device`` ('cpu' or 'cuda'), like ``torch.nn.Module.to``.

        Returns
        -------
        Conv3d
            This layer (moved in place), as torch returns the module.
        """
        target = normalize_device(type(self).__name__, device)
        resolve_dtype(type(self).__name__, "dtype", self.weight.dtype)
        if target != self.device:
            move = _to_host if target == "cpu" else _to_gpu
            self.weight = move(self.weight)
            self.bias = None if self.bias is None else move(self.bias)
            self.device = target
        return self

    def reset_parameters(self, rng=None):
        """Redraw ``weight`` and ``bias`` from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), like torch.

        torch's ``kaiming_uniform_(a=sqrt(5))`` on the weight and its bias rule both reduce to this
        bound, with fan_in = (in_channels / groups) * KD * KH * KW. Complex parameters draw their real
        and imaginary parts independently from that interval, as torch's ``uniform_`` does.

        Parameters
        ----------
        rng : None, int or numpy.random.Generator, optional
            Seed or generator; None draws fresh entropy.
        """
        rng = np.random.default_rng(rng)
        device = self.device
        self.to("cpu")
        bound = 1.0 / math.sqrt(self.weight[0].size)
        for param in (self.weight, self.bias):
            if param is None:
                continue
            param.real = rng.uniform(-bound, bound, param.shape)
            if np.iscomplexobj(param):
                param.imag = rng.uniform(-bound, bound, param.shape)
        self.to(device)

    def forward(self, input):
        """Apply the layer: ``conv3d(input, weight, bias, ...)`` with this layer's arguments.

        Parameters
        ----------
        input : numpy.ndarray or CUDA array or dask.array.Array
            (N, C_in, D, H, W) or (C_in, D, H, W), of the layer's dtype, on the layer's device (a
            CUDA input may also use a layer on the CPU: its parameters are then copied per call). A
            Dask array gives a lazy Dask array (:func:`numba_conv3d.dask_conv3d`).

        Returns
        -------
        numpy.ndarray or CUDA array or dask.array.Array
            The convolution, as :func:`numba_conv3d.conv3d` returns it.
        """
        self._last_input = input
        return conv3d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups, self.padding_mode, self.algorithm, self.allow_tf32)

    __call__ = forward

    def backward(self, grad_output):
        """Gradients of the last forward call, like ``loss.backward()`` through ``torch.nn.Conv3d``.

        Stores ``weight_grad`` and ``bias_grad`` (None without a bias), the gradients of the loss with
        respect to the parameters, and returns the gradient with respect to the last forward call's
        input (:func:`numba_conv3d.grad.conv3d_backward`). The layer keeps a reference to that input
        until the next call, as torch's autograd saves it. On the GPU when that input was a CUDA array
        (the gradients are then device arrays).

        Parameters
        ----------
        grad_output : numpy.ndarray or CUDA array
            Gradient of the loss with respect to the last forward call's output (its shape and dtype).

        Returns
        -------
        numpy.ndarray or CUDA array
            The gradient with respect to the last input, of its shape, where that input lives.

        Raises
        ------
        RuntimeError
            When the layer has not been called yet.
        """
        if self._last_input is None:
            raise RuntimeError(f"{_OP}.backward: call the layer on an input first")
        grad_input, self.weight_grad, self.bias_grad = conv3d_backward(
            self._last_input, self.weight, grad_output, self.stride, self.padding, self.dilation,
            self.groups, self.padding_mode, bias=self.bias is not None)
        return grad_input

    def extra_repr(self):
        """The argument summary torch prints inside ``Conv3d(...)``."""
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


def set_layer_fields(layer, op, in_channels, out_channels, kernel_size, stride, dilation, groups, bias):
    """Check and set the fields torch's convolution layers share (``op`` names the layer in messages):
    channel counts divisible by ``groups``, normalized 3-tuples, and ``bias`` a bool.

    Raises
    ------
    ValueError
        Non-positive counts or extents, channels not divisible by ``groups``.
    TypeError
        Non-integer counts or extents, a non-bool ``bias``.
    """
    layer.in_channels = normalize_positive_int(op, "in_channels", in_channels)
    layer.out_channels = normalize_positive_int(op, "out_channels", out_channels)
    layer.groups = normalize_positive_int(op, "groups", groups)
    for name, count in (("in_channels", layer.in_channels), ("out_channels", layer.out_channels)):
        if count % layer.groups:
            raise ValueError(f"{op}: {name} must be divisible by groups, but got {name}={count} and "
                             f"groups={layer.groups}")
    layer.kernel_size = normalize_triple(op, "kernel_size", kernel_size, 1)
    layer.stride = normalize_triple(op, "stride", stride, 1)
    layer.dilation = normalize_triple(op, "dilation", dilation, 1)
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"{op}: bias must be True or False, but got {type(bias).__name__}")


def normalize_device(op, device):
    """None, 'cpu', 'cuda' or 'cuda:N' (N the current CUDA device) -> 'cpu' or 'cuda' (``op`` names the
    layer in messages)."""
    if device is None:
        return "cpu"
    text = str(device)
    if text == "cpu":
        return "cpu"
    if text == "cuda" or text.startswith("cuda:"):
        from .cuda.arrays import cuda_module

        cuda = cuda_module(op)
        index = text.partition(":")[2]
        current = getattr(cuda.get_current_device(), "id", 0)  # the simulator's device has no id
        if index and index != str(current):
            raise ValueError(f"{op}: device={device!r} is not the current CUDA device {current}; "
                             f"select it first with numba.cuda.select_device({index})")
        return "cuda"
    raise ValueError(f"{op}: device must be None, 'cpu', 'cuda' or 'cuda:N', but got device={device!r}")


def _to_host(array):
    return array.copy_to_host()


def _to_gpu(array):
    from numba import cuda

    return cuda.to_device(array)
