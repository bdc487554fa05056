"""The stride-phase decomposition of strided input gradients and transposed convolutions: the phase
arithmetic against a brute-force count, and the route against the float64 reference (adjoint) on
strides, dilations, pads wider than the kernel, output padding, groups and every padding mode."""
import numpy as np
import pytest

from checks import reference_input_gradient
from numba_conv3d import conv3d
from numba_conv3d.grad import conv3d_input
from numba_conv3d.stride_phases import one_tap_per_phase, phases
from numba_conv3d.transposed import conv_transpose3d
from reference import conv3d_reference


# (kernel, stride, dilation, start, length) whose kernel span fits in the padded extent start + length
PHASE_CASES = [(k, s, d, start, length) for k in (1, 2, 3, 5) for s in (1, 2, 3, 4) for d in (1, 2, 3)
               for start, length in ((0, 11), (1, 9), (3, 4), (2, 1)) if d * (k - 1) + 1 <= start + length]


@pytest.mark.parametrize("kernel, stride, dilation, start, length", PHASE_CASES)
def test_phases_list_exactly_the_taps_and_outputs_that_reach_each_position(kernel, stride, dilation, start,
                                                                           length):
    grad_extent = (start + length - dilation * (kernel - 1) - 1) // stride + 1
    for phase in phases(start, length, kernel, stride, dilation, grad_extent):
        for q in range(phase.size):
            position = start + phase.offset + q * stride
            # brute force: taps k and outputs o (of any index, in range or not) with o * s + k * d == p
            expected = {k: (position - k * dilation) // stride for k in range(kernel)
                        if (position - k * dilation) % stride == 0}
            if not phase.taps:  # no tap, or none of the outputs it would read exists in any position
                assert all(not 0 <= start + phase.offset + r * stride - k * dilation < grad_extent * stride
                           or (start + phase.offset + r * stride - k * dilation) % stride
                           for r in range(phase.size) for k in range(kernel))
                continue
            assert set(phase.taps) == set(expected)
            for j, k in enumerate(reversed(phase.taps)):
                # the correlation's tap j reads the output gradient at q - front + j * dilation
                assert q - phase.pads[0] + j * phase.dilation == expected[k]
            if phase.taps:
                reads = q - phase.pads[0] + (len(phase.taps) - 1) * phase.dilation
                assert reads <= grad_extent - 1 + phase.pads[1]
        total = sum(p.size for p in phases(start, length, kernel, stride, dilation, grad_extent))
        assert total == length


@pytest.mark.parametrize("kernel", range(1, 7))
def test_one_tap_per_phase_says_whether_any_phase_has_two_taps(kernel):
    for stride in range(1, 6):
        for dilation in range(1, 6):
            extent = dilation * (kernel - 1) + 1 + 3 * stride
            most = max(len(p.taps) for start in range(stride)
                       for p in phases(start, extent - start, kernel, stride, dilation,
                                       (extent - dilation * (kernel - 1) - 1) // stride + 1))
            triples = ((kernel, 1, 1), (stride, 1, 1), (dilation, 1, 1))
            assert one_tap_per_phase(*triples) == (most <= 1), (kernel, stride, dilation)
            assert one_tap_per_phase(*(t[::-1] for t in triples)) == (most <= 1)


CASES = [
    ((1, 2, 5, 6, 7), (3, 2, 3, 3, 3), dict(stride=2, padding=1)),
    ((1, 2, 6, 5, 7), (4, 1, 3, 2, 3), dict(stride=(3, 2, 2), padding=(4, 0, 2), groups=2)),
    ((1, 2, 7, 6, 5), (2, 2, 3, 3, 2), dict(stride=(2, 2, 3), dilation=(2, 1, 2), padding=(1, 3, 1))),
    ((1, 1, 6, 7, 6), (2, 1, 3, 3, 3), dict(stride=2, padding=(1, 2, 2), padding_mode="reflect")),
    ((1, 2, 5, 5, 6), (2, 2, 2, 3, 3), dict(stride=(2, 3, 2), padding=2, padding_mode="replicate")),
    ((1, 2, 6, 6, 5), (2, 2, 3, 2, 3), dict(stride=(4, 2, 2), padding=(3, 1, 2), dilation=(1, 2, 1),
                                            padding_mode="circular")),
    # a phase whose one tap reaches only a pad's output: its gradient window is empty
    ((1, 1, 2, 2, 2), (1, 1, 2, 2, 2), dict(stride=2, dilation=3, padding=1)),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_strided_input_gradient_is_the_adjoint_of_the_reference(x_shape, w_shape, kwargs):
    rng = np.random.default_rng(4)
    w = rng.standard_normal(w_shape)
    g = rng.standard_normal(conv3d_reference(np.zeros(x_shape), w, **kwargs).shape)
    expected = reference_input_gradient(x_shape, w, g, **kwargs)
    np.testing.assert_allclose(conv3d_input(x_shape, w, g, **kwargs), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output_padding", [0, 1])
@pytest.mark.parametrize("in_channels, route", [(3, "stride-phases"), (6, "gemm-col2im")])
def test_transposed_k3_s2_p1_up_convolution_matches_the_reference(dtype, output_padding, in_channels, route):
    """The up-convolution of U-Nets, with a bias, by each of its routes: conv_transpose3d(y) is the
    adjoint of conv3d, whose bias is added to every output (also the positions of phases that no tap
    reaches)."""
    from numba_conv3d.input_grad_routes import INPUT_GRAD_ALGORITHMS
    from numba_conv3d.grad_planner import plan_conv_transpose3d

    rng = np.random.default_rng(5)
    y = rng.standard_normal((2, in_channels, 4, 3, 5)).astype(dtype)
    w = rng.standard_normal((in_channels, 4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    kwargs = dict(stride=2, padding=1)
    plan = plan_conv_transpose3d("test", y, w, b, 2, 1, output_padding, 1, 1, "cpu")
    assert next(name for name, applies, _ in INPUT_GRAD_ALGORITHMS if applies(plan, y)) == route
    out = conv_transpose3d(y, w, b, output_padding=output_padding, **kwargs)
    expected = reference_input_gradient(out.shape, w.astype(np.float64), y.astype(np.float64), **kwargs)
    expected += b.reshape(-1, 1, 1, 1)
    tolerance = 4 * in_channels * 8 * np.finfo(dtype).eps * (np.abs(expected).max() + 1)
    np.testing.assert_allclose(out, expected, atol=tolerance, rtol=0)
    assert conv3d(out.astype(np.float64), w.astype(np.float64), **kwargs).shape[2:] == y.shape[2:]
