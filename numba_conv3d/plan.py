"""The conv plan: every number a kernel needs, already checked against torch's rules."""
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from math import prod

import numpy as np

from .config import MERGED_ROW_COLUMNS
from .precision import compute_dtype, named_dtype
from .shape_rules import conv_output_size, padding_mode_code, row_merge


@dataclass(frozen=True)
class ConvPlan:
    """A lowered, validated 3-D convolution: frozen and hashable, so it can key a cache. The numbers
    derived from its fields that every call reads (pads, extents, mode code) are computed once.

    Built only by :func:`numba_conv3d.plan_conv3d`; kernels trust it and never validate again. Shapes are
    those of the batched (5-D) problem; ``batched`` says whether the caller passed 4-D input.

    Attributes
    ----------
    batched : bool
        False when the caller's input was unbatched (C, D, H, W).
    batch, in_channels, out_channels, groups : int
        N, C_in, C_out and the group count.
    input_size, kernel_size, stride, dilation : tuple of 3 ints
        Spatial (D, H, W) extents of the input and the kernel, and the normalized stride and dilation.
    pads : tuple of 3 (front, back) pairs
        Explicit pads per spatial dimension ('same' and 'valid' already resolved).
    padding_mode : str
        'zeros', 'reflect', 'replicate' or 'circular'.
    has_bias : bool
        Whether a bias of ``out_channels`` elements is added.
    dtype : str
        NumPy dtype name of input, weight, bias and output (float16 and bfloat16 are computed in
        :attr:`compute_dtype`).
    backend : str
        'cpu' or 'cuda': the backend whose algorithm table was chosen from.
    algorithm, algorithm_reason : str
        The algorithm chosen and why.
    workspace_bytes : int
        Scratch memory one worker holds while the kernel runs: per CPU thread, or the dynamic shared
        memory of one CUDA thread block.
    call_bytes : int
        Scratch memory a CPU call holds once, shared by its threads (``Algorithm.call_bytes``).
    allow_tf32 : bool
        Whether a float32 convolution on the GPU may round its operands to TF32 (10 fraction bits) for
        the tensor cores, as ``torch.backends.cudnn.allow_tf32`` lets cuDNN; False (default): exact.
    """

    batched: bool
    batch: int
    in_channels: int
    out_channels: int
    groups: int
    input_size: tuple
    kernel_size: tuple
    stride: tuple
    dilation: tuple
    pads: tuple
    padding_mode: str
    has_bias: bool
    dtype: str
    backend: str
    algorithm: str
    algorithm_reason: str
    workspace_bytes: int
    allow_tf32: bool = False
    call_bytes: int = 0

    def __hash__(self):
        return self._hash

    @cached_property
    def _hash(self):
        """The hash of the fields, computed once: plans key the caches every call looks up (hashing the
        fields again took 1.3 us of a 12 us call)."""
        return hash(tuple(getattr(self, field.name) for field in fields(self) if field.compare))

    def __getstate__(self):
        """The instance's attributes less its hash, which another process computes anew (its strings
        hash differently), and its float32 plan (whose hash would come along)."""
        return {name: value for name, value in self.__dict__.items() if name not in ("_hash", "_computed")}

    @property
    def in_per_group(self):
        """Input channels each group reads (weight.shape[1])."""
        return self.in_channels // self.groups

    @property
    def out_per_group(self):
        """Output channels each group produces."""
        return self.out_channels // self.groups

    def group_channels(self, group):
        """Input and output channel slices of ``group``, like torch's grouped convolution."""
        i, o = self.in_per_group, self.out_per_group
        return slice(group * i, (group + 1) * i), slice(group * o, (group + 1) * o)

    @cached_property
    def pad_front(self):
        """Front pad per spatial dimension."""
        return tuple(f for f, _ in self.pads)

    @cached_property
    def padded_size(self):
        """Spatial extents of the padded input."""
        return tuple(n + f + b for n, (f, b) in zip(self.input_size, self.pads))

    @cached_property
    def output_size(self):
        """Spatial extents of the output."""
        return tuple(
            conv_output_size(n, f, b, k, s, d)
            for n, (f, b), k, s, d in zip(self.input_size, self.pads, self.kernel_size, self.stride,
                                          self.dilation))

    def rows_merged(self):
        """The same convolution with rows laid side by side, where it is pointwise in (H, W) (kernel 1,
        stride 1 and no pads along both): input (D, H, W) -> (D, H / m, W * m), output likewise, with
        ``m`` from :func:`numba_conv3d.shape_rules.row_merge`; the kernels then run long rows of whole
        register blocks. ``self`` where the convolution is not pointwise in (H, W) or ``m`` is 1."""
        pointwise = all(self.kernel_size[d] == 1 and self.stride[d] == 1 and self.pads[d] == (0, 0)
                        for d in (1, 2))
        depth, height, width = self.input_size
        rows = row_merge(height, width, MERGED_ROW_COLUMNS) if pointwise else 1
        if rows == 1:
            return self
        return replace(self, input_size=(depth, height // rows, width * rows),
                       dilation=(self.dilation[0], 1, 1))

    @cached_property
    def mode_code(self):
        """Integer code of ``padding_mode`` (``shape_rules.PAD_*``), as kernels take it."""
        return padding_mode_code(self.padding_mode)

    @property
    def input_shape(self):
        """Shape of the caller's input (4-D when unbatched)."""
        return self._caller_shape(self.in_channels, self.input_size)

    @property
    def weight_shape(self):
        """Shape of the weight: (C_out, C_in / groups, KD, KH, KW)."""
        return (self.out_channels, self.in_per_group) + self.kernel_size

    @property
    def output_shape(self):
        """Shape of the result (4-D when the input was unbatched)."""
        return self._caller_shape(self.out_channels, self.output_size)

    def _caller_shape(self, channels, spatial):
        return ((self.batch,) if self.batched else ()) + (channels,) + tuple(spatial)

    @cached_property
    def compute_dtype(self):
        """The dtype name the kernels sum in: float32 for float16 and bfloat16, else :attr:`dtype`."""
        return compute_dtype(self.dtype)

    def computed(self):
        """The plan the kernels run: this one with :attr:`compute_dtype` as its dtype."""
        return self._computed

    @cached_property
    def _computed(self):
        """:meth:`computed`, made once (a new plan each call took 8 us of a tiny bfloat16 call)."""
        return self if self.compute_dtype == self.dtype else replace(self, dtype=self.compute_dtype)

    @cached_property
    def is_complex(self):
        """Whether the dtype is complex."""
        return named_dtype(self.dtype).kind == "c"

    @property
    def output_bytes(self):
        """Bytes of the result array."""
        return prod(self.output_shape) * named_dtype(self.dtype).itemsize

    def memory_bytes(self, workers):
        """Bytes a call allocates: the result, the weights' working copy, and the workspace of
        ``workers`` threads plus the call's shared scratch (CPU) or one block's shared memory (CUDA: not
        host memory); reduced-precision operands add their float32 copies and the float32 result."""
        computed = self.computed()
        weight_copy = prod(self.weight_shape) * np.dtype(computed.dtype).itemsize
        workspace = self.workspace_bytes * workers + self.call_bytes if self.backend == "cpu" else 0
        widened = 0 if computed is self else (computed.output_bytes + prod(self.input_shape)
                                              * np.dtype(computed.dtype).itemsize)
        return self.output_bytes + weight_copy + workspace + widened

    @property
    def macs(self):
        """Multiply-accumulates of the convolution, bias excluded."""
        return (self.batch * self.out_channels * prod(self.output_size) * self.in_per_group
                * prod(self.kernel_size))

    @property
    def flops(self):
        """Real floating-point operations: 2 per real MAC, 8 per complex MAC, plus the bias adds."""
        per_mac = 8 if self.is_complex else 2
        bias_adds = self.batch * self.out_channels * prod(self.output_size) if self.has_bias else 0
        return per_mac * self.macs + (2 if self.is_complex else 1) * bias_adds

    def as_dict(self):
        """All fields and derived numbers, JSON-ready (``merged_input_size``: the (D, H, W) the CPU
        kernels run, see :meth:`rows_merged`)."""
        record = asdict(self)
        for name in ("in_per_group", "out_per_group", "padded_size", "output_size", "input_shape",
                     "weight_shape", "output_shape", "flops"):
            record[name] = getattr(self, name)
        record["merged_input_size"] = self.rows_merged().input_size
        return record
