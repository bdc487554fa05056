"""The convolution layers of widely used 3-D networks, for the networks benchmark suite.

Each network is its list of ``Conv3d`` and ``ConvTranspose3d`` layers (shapes and arguments, no
weights), written from its paper and its public model definition, at its usual input size. Layers that
repeat with the same shapes and arguments are listed once with a count. Normalization, activations,
pooling and linear layers are not convolutions and are left out (pooling only changes the extents the
next layer sees).

- ``r3d_18``, ``mc3_18``, ``r2plus1d_18``: the video ResNets of Tran et al., "A Closer Look at
  Spatiotemporal Convolutions for Action Recognition" (CVPR 2018), as torchvision defines them
  (``torchvision.models.video``), on 16 frames of 112 x 112. Their multiply-adds match torchvision's
  figures (40.7, 43.3 and 40.5 GMACs).
- ``x3d_s``: X3D-S of Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition"
  (CVPR 2020), 13 frames of 160 x 160: depthwise 3x3x3 bottlenecks, squeeze-excitation 1x1x1
  convolutions on pooled features, as pytorchvideo's ``create_x3d`` builds it.
- ``c3d``: Tran et al., "Learning Spatiotemporal Features with 3D Convolutional Networks" (ICCV 2015),
  16 frames of 112 x 112.
- ``unet3d``: Cicek et al., "3D U-Net" (MICCAI 2016) with 'same' padding, on a one-channel 64^3 volume,
  widths halved (16 ... 256), as lighter 3-D U-Nets commonly are; 2x2x2 stride-2 up-convolutions.
- ``vnet``: Milletari et al., "V-Net" (3DV 2016) as its public PyTorch port builds it: 5x5x5
  convolutions, 2x2x2 stride-2 down- and up-convolutions, on a one-channel 32 x 64 x 64 volume.
- ``residual_unet``: the residual U-Net of Kerfoot et al. (2018) as MONAI's ``UNet`` builds it with
  channels (16, 32, 64, 128, 256), strides 2 and 2 residual units, on a one-channel 64^3 volume:
  stride-2 k3 down-convolutions, k3 s2 p1 op1 transposed up-convolutions.
"""
from dataclasses import dataclass, field
from math import prod

from .grad_planner import transposed_min_size
from .shape_rules import conv_output_size


@dataclass(frozen=True)
class Layer:
    """One convolution layer of a network.

    Attributes
    ----------
    name : str
        The layer's name in its network (the first of its repeats).
    input_shape : tuple of int
        (N, C_in, D, H, W).
    weight_shape : tuple of int
        As the layer's weight: (C_out, C_in / groups, KD, KH, KW) for a convolution, (C_in, C_out /
        groups, KD, KH, KW) for a transposed one.
    kwargs : dict
        stride, padding, dilation, groups (and output_padding when transposed), as torch takes them.
    transposed : bool
        A ``ConvTranspose3d``.
    bias : bool
        Whether the layer has a bias.
    input_grad : bool
        Whether a training step computes the gradient of its input (not for the network's first layer,
        whose input is data).
    count : int
        How many layers of the network have exactly these shapes and arguments.
    """

    name: str
    input_shape: tuple
    weight_shape: tuple
    kwargs: dict = field(default_factory=dict)
    transposed: bool = False
    bias: bool = False
    input_grad: bool = True
    count: int = 1

    @property
    def key(self):
        """What makes two layers the same computation."""
        return (self.input_shape, self.weight_shape, tuple(sorted(self.kwargs.items())), self.transposed,
                self.bias, self.input_grad)

    @property
    def groups(self):
        return self.kwargs.get("groups", 1)

    @property
    def output_shape(self):
        """(N, C_out, OD, OH, OW), by torch's rules."""
        triple = lambda name, default: _triple(self.kwargs.get(name, default))  # noqa: E731
        stride, padding, dilation = triple("stride", 1), triple("padding", 0), triple("dilation", 1)
        kernel, size = self.weight_shape[2:], self.input_shape[2:]
        if self.transposed:
            extra = triple("output_padding", 0)
            out = tuple(transposed_min_size(n, s, p, k, d) + e
                        for n, s, p, k, d, e in zip(size, stride, padding, kernel, dilation, extra))
            return (self.input_shape[0], self.weight_shape[1] * self.groups) + out
        out = tuple(conv_output_size(n, p, p, k, s, d)
                    for n, s, p, k, d in zip(size, stride, padding, kernel, dilation))
        return (self.input_shape[0], self.weight_shape[0]) + out

    @property
    def macs(self):
        """Multiply-accumulates of one forward pass (bias excluded)."""
        positions = self.input_shape if self.transposed else self.output_shape
        return prod(positions[:1] + positions[2:]) * prod(self.weight_shape)

    def training_macs(self):
        """Multiply-accumulates of forward + backward: the forward, the weight gradient, and the input
        gradient where it is computed (each as many as the forward)."""
        return self.macs * (3 if self.input_grad else 2)


def _triple(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * 3


class _Builder:
    """Walks a network forward, tracking the activation shape, and records its convolutions."""

    def __init__(self, batch, channels, size):
        self.shape = self.data = (batch, channels) + tuple(size)
        self.layers = []

    def conv(self, name, out_channels, kernel, stride=1, padding=0, groups=1, bias=False):
        """A Conv3d of the current activation, which becomes its output."""
        kwargs = {"stride": stride, "padding": padding}
        if groups != 1:
            kwargs["groups"] = groups
        weight = (out_channels, self.shape[1] // groups) + _triple(kernel)
        return self._add(Layer(name, self.shape, weight, kwargs, bias=bias,
                               input_grad=self.shape is not self.data))

    def up(self, name, out_channels, kernel, stride, padding=0, output_padding=0, bias=True):
        """A ConvTranspose3d of the current activation, which becomes its output."""
        kwargs = {"stride": stride, "padding": padding, "output_padding": output_padding}
        weight = (self.shape[1], out_channels) + _triple(kernel)
        return self._add(Layer(name, self.shape, weight, kwargs, transposed=True, bias=bias,
                               input_grad=self.shape is not self.data))

    def _add(self, layer):
        self.layers.append(layer)
        self.shape = layer.output_shape
        return self.shape

    def pool(self, factors, pad=(0, 0, 0)):
        """Max pooling with kernel = stride = ``factors`` (and ``pad``): only the extents change."""
        size = tuple((n + 2 * p - f) // f + 1 for n, f, p in zip(self.shape[2:], _triple(factors),
                                                              _triple(pad)))
        self.shape = self.shape[:2] + size

    def at(self, shape):
        """Continue from an activation of ``shape`` (a skip connection; the network's input itself when
        it is ``self.data``)."""
        self.shape = tuple(shape)

    def with_channels(self, channels):
        """Continue from the current activation with ``channels`` channels (a concatenation)."""
        self.shape = (self.shape[0], channels) + self.shape[2:]


def _video_resnet(batch, stem, block_conv, downsample_stride, frames=16, size=112):
    """torchvision's VideoResNet with BasicBlocks [2, 2, 2, 2]; ``stem(builder)`` adds the stem,
    ``block_conv(builder, name, in, out, stride)`` one block convolution, ``downsample_stride(s)`` the
    stride of the 1x1x1 projection."""
    net = _Builder(batch, 3, (frames, size, size))
    stem(net)
    in_planes = 64
    for stage, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            name = f"layer{stage}.{block}"
            block_input = net.shape
            block_conv(net, f"{name}.conv1", in_planes, planes, stride)
            block_conv(net, f"{name}.conv2", planes, planes, 1)
            if stride != 1 or in_planes != planes:
                output = net.shape
                net.at(block_input)
                net.conv(f"{name}.downsample", planes, 1, downsample_stride(stride))
                net.at(output)
            in_planes = planes
    return net.layers


def _basic_stem(net):
    net.conv("stem", 64, (3, 7, 7), (1, 2, 2), (1, 3, 3))


def _conv3d_simple(net, name, in_planes, planes, stride):
    net.conv(name, planes, 3, stride, 1)


def r3d_18(batch=1):
    """torchvision's r3d_18: 3x3x3 convolutions throughout."""
    return _video_resnet(batch, _basic_stem, _conv3d_simple, lambda s: s)


def mc3_18(batch=1):
    """torchvision's mc3_18: 3x3x3 in the first stage, 1x3x3 (no temporal extent) after it."""
    def block_conv(net, name, in_planes, planes, stride):
        if planes == 64:
            _conv3d_simple(net, name, in_planes, planes, stride)
        else:
            net.conv(name, planes, (1, 3, 3), (1, stride, stride), (0, 1, 1))

    return _video_resnet(batch, _basic_stem, block_conv,
                         lambda s: s if s == 1 else (1, s, s))


def r2plus1d_18(batch=1):
    """torchvision's r2plus1d_18: each 3x3x3 convolution split into 1x3x3 then 3x1x1, with the middle
    width that keeps the parameter count."""
    def stem(net):
        net.conv("stem.spatial", 45, (1, 7, 7), (1, 2, 2), (0, 3, 3))
        net.conv("stem.temporal", 64, (3, 1, 1), 1, (1, 0, 0))

    # torchvision computes the middle width once per block, from the block's in and out planes
    middle = {}

    def block_conv(net, name, in_planes, planes, stride):
        block = name.rsplit(".", 1)[0]
        mid = middle.setdefault(block, in_planes * planes * 27 // (in_planes * 9 + 3 * planes))
        net.conv(f"{name}.spatial", mid, (1, 3, 3), (1, stride, stride), (0, 1, 1))
        net.conv(f"{name}.temporal", planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0))

    return _video_resnet(batch, stem, block_conv, lambda s: s)


def _se_width(channels):
    """pytorchvideo's ``round_width(channels, 0.0625)``: the squeeze-excitation bottleneck."""
    width = channels * 0.0625
    rounded = max(8, int(width + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * width else rounded


def x3d_s(batch=1):
    """X3D-S: stem 1x3x3 + depthwise 5x1x1, stages of [1x1x1, depthwise 3x3x3, 1x1x1] bottlenecks
    (widths 24/54, 48/108, 96/216, 192/432; 3, 5, 11, 7 blocks), squeeze-excitation in every other
    block, then a 1x1x1 to 432 channels."""
    net = _Builder(batch, 3, (13, 160, 160))
    net.conv("stem.spatial", 24, (1, 3, 3), (1, 2, 2), (0, 1, 1))
    net.conv("stem.temporal", 24, (5, 1, 1), 1, (2, 0, 0), groups=24)
    for stage, (width, depth) in enumerate(zip((24, 48, 96, 192), (3, 5, 11, 7)), start=2):
        inner = int(2.25 * width)
        for block in range(depth):
            name = f"res{stage}.{block}"
            stride = (1, 2, 2) if block == 0 else 1
            block_input = net.shape
            net.conv(f"{name}.a", inner, 1)
            net.conv(f"{name}.b", inner, 3, stride, 1, groups=inner)
            if block % 2 == 0:
                output = net.shape
                net.at(output[:2] + (1, 1, 1))
                net.conv(f"{name}.se.reduce", _se_width(inner), 1, bias=True)
                net.conv(f"{name}.se.expand", inner, 1, bias=True)
                net.at(output)
            net.conv(f"{name}.c", width, 1)
            if block == 0:
                output = net.shape
                net.at(block_input)
                net.conv(f"{name}.shortcut", width, 1, stride)
                net.at(output)
    net.conv("conv5", 432, 1)
    return net.layers


def c3d(batch=1):
    """C3D: eight 3x3x3 convolutions with biases between max pools."""
    net = _Builder(batch, 3, (16, 112, 112))
    plan = (("conv1a", 64), "pool1", ("conv2a", 128), "pool", ("conv3a", 256), ("conv3b", 256), "pool",
            ("conv4a", 512), ("conv4b", 512), "pool", ("conv5a", 512), ("conv5b", 512))
    for step in plan:
        if step == "pool1":
            net.pool((1, 2, 2))
        elif step == "pool":
            net.pool(2)
        else:
            net.conv(step[0], step[1], 3, 1, 1, bias=True)
    return net.layers


def unet3d(batch=1):
    """3-D U-Net: per level two 3x3x3 convolutions (the second doubling the width), max pools down,
    2x2x2 stride-2 up-convolutions up, concatenated skips, a final 1x1x1 to 3 classes."""
    net = _Builder(batch, 1, (64, 64, 64))
    skips = []
    for level, width in enumerate((16, 32, 64, 128)):
        net.conv(f"down{level}.conv1", width, 3, 1, 1, bias=True)
        net.conv(f"down{level}.conv2", 2 * width, 3, 1, 1, bias=True)
        if level < 3:
            skips.append(net.shape)
            net.pool(2)
    for level in (2, 1, 0):
        width = net.shape[1]
        net.up(f"up{level}.upconv", width, 2, 2)
        skip = skips[level]
        net.with_channels(width + skip[1])
        net.conv(f"up{level}.conv1", skip[1], 3, 1, 1, bias=True)
        net.conv(f"up{level}.conv2", skip[1], 3, 1, 1, bias=True)
    net.conv("output", 3, 1, bias=True)
    return net.layers


def vnet(batch=1):
    """V-Net: 5x5x5 convolutions in residual stages (1 at the input, then 1, 2, 3, 2 down and 2, 2, 1,
    1 up), 2x2x2 stride-2
    down-convolutions doubling the width, 2x2x2 stride-2 up-convolutions, concatenated skips."""
    net = _Builder(batch, 1, (32, 64, 64))
    net.conv("input", 16, 5, 1, 2, bias=True)
    skips = [net.shape]
    for stage, convs in enumerate((1, 2, 3, 2), start=1):
        net.conv(f"down{stage}.down", 2 * net.shape[1], 2, 2, bias=True)
        for i in range(convs):
            net.conv(f"down{stage}.conv{i}", net.shape[1], 5, 1, 2, bias=True)
        skips.append(net.shape)
    skips.pop()
    for stage, (width, convs) in enumerate(((256, 2), (128, 2), (64, 1), (32, 1)), start=1):
        net.up(f"up{stage}.up", width // 2, 2, 2)
        net.with_channels(width // 2 + skips.pop()[1])
        for i in range(convs):
            net.conv(f"up{stage}.conv{i}", width, 5, 1, 2, bias=True)
    net.conv("output.conv", 2, 5, 1, 2, bias=True)
    net.conv("output.project", 2, 1, bias=True)
    return net.layers


def residual_unet(batch=1):
    """MONAI's residual UNet, channels (16, 32, 64, 128, 256): down units of a stride-2 k3 convolution,
    a k3 convolution and a stride-2 k3 residual projection; a bottom unit at stride 1 (1x1x1
    projection); up units of a k3 s2 p1 op1 transposed convolution of the concatenated skip and one k3
    convolution; 2 output channels."""
    net = _Builder(batch, 1, (64, 64, 64))
    channels = (16, 32, 64, 128)
    skips = []
    for level, width in enumerate(channels):
        block_input = net.shape
        net.conv(f"down{level}.conv1", width, 3, 2, 1, bias=True)
        net.conv(f"down{level}.conv2", width, 3, 1, 1, bias=True)
        output = net.shape
        net.at(block_input)
        net.conv(f"down{level}.residual", width, 3, 2, 1, bias=True)
        net.at(output)
        skips.append(output)
    block_input = net.shape
    net.conv("bottom.conv1", 256, 3, 1, 1, bias=True)
    net.conv("bottom.conv2", 256, 3, 1, 1, bias=True)
    output = net.shape
    net.at(block_input)
    net.conv("bottom.residual", 256, 1, bias=True)
    net.at(output)
    for level, width in zip((3, 2, 1, 0), (64, 32, 16, 2)):
        net.with_channels(net.shape[1] + skips[level][1])
        net.up(f"up{level}.upconv", width, 3, 2, 1, 1)
        net.conv(f"up{level}.conv", width, 3, 1, 1, bias=True)
    return net.layers


NETWORKS = {function.__name__: function for function in (r3d_18, mc3_18, r2plus1d_18, x3d_s, c3d, unet3d,
                                                         vnet, residual_unet)}


def network_layers(name, batch=1):
    """The distinct convolution layers of network ``name`` (a key of ``NETWORKS``) at ``batch``, each
    with its count, in order of first appearance."""
    merged = {}
    for layer in NETWORKS[name](batch):
        first = merged.get(layer.key)
        merged[layer.key] = layer if first is None else Layer(
            first.name, first.input_shape, first.weight_shape, first.kwargs, first.transposed, first.bias,
            first.input_grad, first.count + 1)
    return list(merged.values())
