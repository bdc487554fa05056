"""Table tests of the planner: arguments in, pads, extents, group slicing and counts out."""
import os

import numpy as np
import pytest

from numba_conv3d import ConvPlan, cpu, plan_conv3d
from numba_conv3d.config import SLAB_BYTES, VECTOR_BYTES


@pytest.mark.parametrize("x, w, kwargs, pads, out_shape", [
    ((20, 16, 10, 50, 100), (33, 16, 3, 3, 3), {"stride": 2}, ((0, 0),) * 3, (20, 33, 4, 24, 49)),
    ((20, 16, 10, 50, 100), (33, 16, 3, 5, 2), {"stride": (2, 1, 1), "padding": (4, 2, 0)},
     ((4, 4), (2, 2), (0, 0)), (20, 33, 8, 50, 99)),
    ((1, 3, 6, 5, 4), (4, 3, 2, 3, 4), {"padding": "same"}, ((0, 1), (1, 1), (1, 2)), (1, 4, 6, 5, 4)),
    ((1, 3, 6, 5, 4), (4, 3, 2, 3, 4), {"padding": "same", "dilation": 2},
     ((1, 1), (2, 2), (3, 3)), (1, 4, 6, 5, 4)),
    ((1, 1, 10, 11, 12), (1, 1, 4, 4, 4), {"padding": "same", "dilation": 3},
     ((4, 5), (4, 5), (4, 5)), (1, 1, 10, 11, 12)),
    ((1, 3, 6, 5, 4), (4, 3, 2, 3, 4), {"padding": "valid"}, ((0, 0),) * 3, (1, 4, 5, 3, 1)),
    ((3, 5, 7, 9), (2, 3, 3, 3, 3), {"padding": [1, 2, 3]}, ((1, 1), (2, 2), (3, 3)), (2, 5, 9, 13)),
    ((2, 3, 5, 5, 5), (4, 3, 2, 2, 2), {"dilation": 2, "stride": 2}, ((0, 0),) * 3, (2, 4, 2, 2, 2)),
    ((0, 3, 3, 4, 5), (4, 3, 2, 3, 4), {}, ((0, 0),) * 3, (0, 4, 2, 2, 2)),
])
def test_pads_and_output_shape(x, w, kwargs, pads, out_shape):
    plan = plan_conv3d(x, w, **kwargs)
    assert plan.pads == pads
    assert plan.output_shape == out_shape
    assert plan.batched == (len(x) == 5)
    assert plan.padded_size == tuple(n + f + b for n, (f, b) in zip(x[-3:], pads))


def test_normalized_triples_groups_and_counts():
    plan = plan_conv3d((2, 6, 8, 9, 10), (9, 2, 3, 1, 2), stride=(1, 2, np.int64(3)), dilation=2,
                       groups=3, padding=1, padding_mode="circular", dtype="complex64")
    assert plan.stride == (1, 2, 3) and plan.dilation == (2, 2, 2)
    assert (plan.in_per_group, plan.out_per_group) == (2, 3)
    assert plan.group_channels(1) == (slice(2, 4), slice(3, 6))
    assert plan.mode_code == 3 and plan.dtype == "complex64"
    assert plan.weight_shape == (9, 2, 3, 1, 2)
    assert plan.output_size == (6, 6, 4)
    assert plan.macs == 2 * 9 * (6 * 6 * 4) * 2 * (3 * 1 * 2)
    assert plan.flops == 8 * plan.macs + 2 * (2 * 9 * 6 * 6 * 4)
    assert plan.algorithm == "direct" and plan.algorithm_reason
    assert plan.workspace_bytes > 0


def test_plan_is_frozen_hashable_and_equal_for_equal_arguments():
    a = plan_conv3d((1, 2, 4, 4, 4), (2, 2, 3, 3, 3), padding=1)
    b = plan_conv3d([1, 2, 4, 4, 4], [2, 2, 3, 3, 3], padding=(1, 1, 1), bias=(2,))
    assert isinstance(a, ConvPlan) and a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.groups = 2
    assert plan_conv3d((1, 2, 4, 4, 4), (2, 2, 3, 3, 3), bias=None).flops < a.flops


def test_workspace_is_bounded_whatever_the_volume():
    small = plan_conv3d((1, 1, 64, 64, 64), (1, 1, 3, 3, 3), padding=1)
    deep = plan_conv3d((1, 1, 4096, 64, 64), (1, 1, 3, 3, 3), padding=1)
    deeper = plan_conv3d((1, 1, 16384, 64, 64), (1, 1, 3, 3, 3), padding=1)
    wide = plan_conv3d((1, 32, 64, 512, 512), (32, 32, 3, 3, 3), padding=1)
    narrow = plan_conv3d((1, 32, 16, 64, 64), (32, 32, 3, 3, 3), padding=1, algorithm=wide.algorithm)
    assert small.workspace_bytes <= deep.workspace_bytes == deeper.workspace_bytes <= SLAB_BYTES
    # Per-thread scratch: the same for a 64x larger volume, and far below the 2 GiB input.
    assert wide.workspace_bytes == narrow.workspace_bytes <= 4 * SLAB_BYTES


def test_extents_past_two_to_the_31_are_exact():
    plan = plan_conv3d((2, 3, 2 ** 20, 2 ** 12, 2 ** 12), (5, 3, 3, 3, 3), padding=1, stride=(1, 1, 2))
    assert plan.output_shape == (2, 5, 2 ** 20, 2 ** 12, 2 ** 11)
    assert plan.macs == 2 * 5 * 2 ** 43 * 3 * 27


def test_as_dict_holds_fields_and_derived_numbers():
    record = plan_conv3d((1, 2, 4, 4, 4), (2, 2, 3, 3, 3), padding="same").as_dict()
    assert record["output_shape"] == (1, 2, 4, 4, 4)
    assert record["pads"] == ((1, 1), (1, 1), (1, 1))
    assert record["flops"] > 0 and record["algorithm"] == "phase-flat"


@pytest.mark.parametrize("weight, groups, dtype, expected", [
    ((8, 8, 3, 3, 3), 1, "float32", "blocked"),
    ((6, 8, 3, 3, 3), 1, "float64", "blocked"),  # 6 output channels fill 75% of a block
    ((8, 4, 3, 3, 3), 2, "float32", "row-blocked"),  # 4 input channels x 27 taps: a short reduction
    ((8, 2, 1, 3, 3), 4, "float64", "row-blocked"),  # 2 x 9
    ((16, 4, 1, 5, 5), 2, "float32", "blocked"),  # 5 taps wide
    ((6, 4, 3, 3, 3), 2, "float32", "row-blocked"),  # 3 output channels per group
    ((8, 1, 3, 3, 3), 8, "float32", "row-blocked"),  # depthwise
    ((1, 8, 7, 7, 7), 1, "float64", "row-blocked"),  # one output channel
    ((8, 8, 3, 3, 3), 1, "complex64", "direct"),
])
def test_algorithm_table(weight, groups, dtype, expected):
    plan = plan_conv3d((1, 8, 9, 9, 40), weight, groups=groups, dtype=dtype)
    assert plan.algorithm == expected and plan.algorithm_reason


@pytest.mark.parametrize("input_shape, weight, kwargs, expected", [
    ((1, 432, 13, 5, 5), (432, 1, 3, 3, 3), {"padding": 1, "groups": 432}, "depthwise"),
    ((1, 432, 13, 10, 10), (432, 1, 3, 3, 3), {"padding": 1, "groups": 432, "stride": (1, 2, 2)},
     "depthwise"),
    ((1, 16, 13, 10, 10), (16, 1, 3, 3, 3), {"padding": 1, "groups": 16}, "phase-flat"),  # few channels
    ((1, 4, 9, 9, 9), (6, 2, 3, 3, 3), {"groups": 2}, "phase-flat"),  # 3 output channels per group
    ((1, 108, 13, 20, 20), (108, 1, 3, 3, 3), {"padding": 1, "groups": 108}, "depthwise"),
    ((1, 256, 8, 28, 28), (256, 1, 3, 3, 3), {"padding": 1, "groups": 256}, "depthwise"),
    ((1, 64, 8, 32, 32), (64, 1, 3, 3, 3), {"padding": 1, "groups": 64}, "row-blocked"),  # wide rows
    ((1, 54, 13, 80, 80), (54, 1, 3, 3, 3), {"padding": 1, "groups": 54, "stride": (1, 2, 2)}, "phase-flat"),
    ((1, 54, 13, 40, 40), (54, 1, 3, 3, 3), {"padding": 1, "groups": 54}, "row-blocked"),  # wide rows
    ((1, 54, 13, 160, 160), (54, 1, 3, 3, 3), {"padding": 1, "groups": 54, "stride": (1, 2, 2)},
     "row-blocked"),  # wide rows at stride 2
    ((1, 4, 24, 20, 20), (4, 1, 5, 5, 5), {"padding": 2, "groups": 4}, "row-blocked"),  # a wider kernel
    ((1, 1, 200, 200, 12), (1, 1, 3, 3, 3), {"padding": 1}, "row-blocked"),  # too big a workspace
])
def test_small_planes_with_few_channels_per_group_take_the_depthwise_or_flat_phase_kernel(
        input_shape, weight, kwargs, expected):
    plan = plan_conv3d(input_shape, weight, dtype="float32", **kwargs)
    assert plan.algorithm == expected and plan.algorithm_reason


@pytest.mark.parametrize("input_shape, weight, kwargs, dtype, expected", [
    # a stem: rows of 56 columns, 3.5 vectors of float32
    ((1, 3, 8, 112, 112), (64, 3, 3, 7, 7), {"stride": (1, 2, 2), "padding": (1, 3, 3)}, "float32",
     "channel-vectorized"),
    ((1, 32, 4, 14, 14), (32, 32, 3, 3, 3), {"padding": 1}, "float32", "channel-vectorized"),
    ((1, 32, 4, 14, 14), (32, 32, 3, 3, 3), {"padding": 1}, "float64", "channel-vectorized"),
    ((1, 32, 4, 32, 32), (32, 32, 3, 3, 3), {"padding": 1}, "float32", "blocked"),  # whole vectors
    ((1, 32, 4, 40, 40), (32, 32, 3, 3, 3), {"padding": 1}, "float32", "blocked"),  # whole blocks
    ((1, 40, 4, 56, 56), (40, 40, 1, 7, 7), {"padding": (0, 3, 3)}, "float32", "blocked"),  # 40 of 64
    ((1, 32, 4, 14, 14), (32, 32, 3, 3, 3), {"padding": 1}, "complex64", "direct"),
    # groups whose channels fill 4 and 5 of 8-channel blocks, 9 of 16; then 6 of 8 and 12 of 16
    ((1, 64, 4, 32, 32), (64, 4, 3, 3, 3), {"padding": 1, "groups": 16}, "float32", "row-blocked"),
    ((1, 32, 4, 32, 32), (5, 32, 3, 3, 3), {"padding": 1}, "float32", "row-blocked"),
    ((1, 64, 4, 32, 32), (72, 8, 3, 3, 3), {"padding": 1, "groups": 8}, "float32", "row-blocked"),
    ((1, 64, 4, 32, 32), (48, 8, 3, 3, 3), {"padding": 1, "groups": 8}, "float32", "blocked"),
    ((1, 64, 4, 32, 32), (48, 16, 3, 3, 3), {"padding": 1, "groups": 4}, "float32", "blocked"),
])
@pytest.mark.skipif(VECTOR_BYTES != 64, reason="the lane counts here are those of 512-bit vectors")
def test_each_real_kernel_where_it_keeps_more_lanes(input_shape, weight, kwargs, dtype, expected):
    plan = plan_conv3d(input_shape, weight, dtype=dtype, **kwargs)
    assert cpu.direct_sums(plan).name == expected  # the transforms (Winograd, FFT) left out


def test_forced_algorithm():
    assert plan_conv3d((1, 4, 9, 9, 9), (8, 4, 3, 3, 3), algorithm="direct").algorithm == "direct"
    with pytest.raises(ValueError, match=r"unknown cpu algorithm 'fourier'"):
        plan_conv3d((1, 4, 9, 9, 9), (8, 4, 3, 3, 3), algorithm="fourier")
    with pytest.raises(ValueError, match=r"algorithm 'blocked' does not serve .* complex64"):
        plan_conv3d((1, 4, 9, 9, 9), (8, 4, 3, 3, 3), algorithm="blocked", dtype="complex64")


def test_cuda_plans_choose_from_the_cuda_table():
    dense = plan_conv3d((1, 32, 16, 16, 16), (32, 32, 3, 3, 3), backend="cuda")
    assert (dense.backend, dense.algorithm) == ("cuda", "cuda-implicit-gemm")
    complex_dense = plan_conv3d((1, 32, 16, 16, 16), (32, 32, 3, 3, 3), dtype="complex64", backend="cuda")
    assert complex_dense.algorithm == "cuda-channel-tiled"
    depthwise = plan_conv3d((1, 8, 16, 16, 16), (8, 1, 3, 3, 3), groups=8, backend="cuda")
    assert depthwise.algorithm == "cuda-depthwise"
    one_channel_k7 = plan_conv3d((1, 1, 16, 16, 16), (1, 1, 7, 7, 7), backend="cuda")
    assert one_channel_k7.algorithm == "cuda-row-tiled"
    huge = plan_conv3d((1, 2, 4, 300, 300), (2, 2, 1, 31, 31), dilation=(1, 8, 8), backend="cuda")
    assert (huge.algorithm, huge.workspace_bytes) == ("cuda-direct", 0)


def test_planning_for_cuda_imports_no_cuda_module():
    import subprocess
    import sys

    script = ("import sys, numba_conv3d; numba_conv3d.plan_conv3d((1, 4, 8, 8, 8), (4, 4, 3, 3, 3), "
              "backend='cuda'); print(sorted(m for m in sys.modules if m.startswith(('numba.cuda', "
              "'numba_cuda'))))")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_cuda_workspace_is_the_shared_memory_of_a_block():
    from numba_conv3d import cuda_config
    from numba_conv3d.cuda import gemm_plan

    gemm = plan_conv3d((1, 32, 16, 16, 16), (32, 32, 3, 3, 3), backend="cuda", dtype="float64")
    tile = gemm_plan.tile_for(gemm)
    assert gemm.workspace_bytes == 2 * tile.block_k * (tile.block_m + tile.weight_pitch) * 8
    assert gemm.workspace_bytes <= cuda_config.CUDA_SHARED_BYTES
    plan = plan_conv3d((1, 32, 16, 16, 16), (32, 32, 3, 3, 3), stride=(1, 2, 1), backend="cuda",
                       dtype="complex64")
    tile = cuda_config.CUDA_CHANNEL_TILE
    rows = (tile["thread_rows"] * tile["rows_per_thread"] - 1) * 2 + 3
    columns = tile["columns"] + 2
    weights = tile["channel_threads"] * tile["channels_per_thread"] * 9
    assert plan.algorithm == "cuda-channel-tiled"
    assert plan.workspace_bytes == tile["stage_channels"] * (rows * columns + weights) * 8
    assert plan.workspace_bytes <= cuda_config.CUDA_SHARED_BYTES


def test_unknown_backend_and_cross_backend_algorithms_are_refused():
    with pytest.raises(ValueError, match=r"backend must be one of \['cpu', 'cuda'\], but got backend='tpu'"):
        plan_conv3d((1, 4, 9, 9, 9), (8, 4, 3, 3, 3), backend="tpu")
    with pytest.raises(ValueError, match=r"unknown cuda algorithm 'blocked'"):
        plan_conv3d((1, 4, 9, 9, 9), (8, 4, 3, 3, 3), backend="cuda", algorithm="blocked")


@pytest.mark.parametrize("x, w, kwargs, merged", [
    ((1, 64, 32, 32, 32), (128, 64, 1, 1, 1), {}, (32, 1, 1024)),
    ((2, 4, 5, 12, 10), (4, 4, 3, 1, 1), {"stride": (2, 1, 1), "padding": (1, 0, 0)}, (5, 1, 120)),
    ((1, 4, 5, 12, 2000), (4, 4, 1, 1, 1), {}, (5, 12, 2000)),
    ((1, 4, 5, 12, 10), (4, 4, 1, 3, 1), {}, (5, 12, 10)),
    ((1, 4, 5, 12, 10), (4, 4, 1, 1, 1), {"stride": (1, 2, 1)}, (5, 12, 10)),
    ((1, 4, 5, 12, 10), (4, 4, 1, 1, 1), {"padding": (0, 1, 0)}, (5, 12, 10)),
])
def test_rows_merged_only_where_pointwise_in_plane(x, w, kwargs, merged):
    plan = plan_conv3d(x, w, **kwargs)
    lowered = plan.rows_merged()
    assert lowered.input_size == merged
    assert lowered.output_size[0] == plan.output_size[0]
    assert np.prod(lowered.output_size[1:]) == np.prod(plan.output_size[1:])
    assert (lowered is plan) == (merged == plan.input_size)


def test_plans_are_reused_for_the_same_arguments_and_thread_count():
    import numba

    args = ((2, 4, 6, 7, 8), (6, 2, 3, 3, 3))
    kwargs = dict(padding=(1, 0, 2), groups=2, dtype="float32")
    first = plan_conv3d(*args, **kwargs)
    assert plan_conv3d(*args, **kwargs) is first
    assert plan_conv3d(*args, **dict(kwargs, padding=[1, 0, 2])) == first  # a list: not cached
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one_thread = plan_conv3d(*args, **kwargs)
        assert one_thread is not first
        assert one_thread == plan_conv3d.__wrapped__(*args, **kwargs)
    finally:
        numba.set_num_threads(previous)


def test_repeated_operands_skip_planning(monkeypatch):
    from numba_conv3d import plan_cache, planner

    plan_cache.clear()
    x, w = np.ones((1, 4, 5, 5, 5), np.float32), np.ones((2, 4, 1, 1, 1), np.float32)
    b = np.ones(2, np.float32)
    first = planner.plan_for_arrays(x, w, b, allow_tf32=False)
    monkeypatch.setattr(planner, "plan_for_input_shape", None)
    assert planner.plan_for_arrays(x, w, b, allow_tf32=False) is first
    with pytest.raises(TypeError):
        planner.plan_for_arrays(x, w, b, allow_tf32=np.False_)


def test_a_plan_hashes_once_and_a_pickled_plan_hashes_anew_in_another_process():
    import dataclasses
    import pickle
    import subprocess
    import sys

    plan = plan_conv3d((1, 4, 6, 6, 6), (8, 4, 3, 3, 3), padding=1)
    assert hash(plan) == hash(dataclasses.replace(plan)) and plan == dataclasses.replace(plan)
    assert "_hash" in vars(plan) and "_hash" not in pickle.loads(pickle.dumps(plan)).__dict__
    assert hash(dataclasses.replace(plan, batch=2)) != hash(plan)
    check = ("import pickle, sys; from numba_conv3d import plan_conv3d; "
             "plan = pickle.loads(sys.stdin.buffer.read()); "
             "assert hash(plan) == hash(plan_conv3d((1, 4, 6, 6, 6), (8, 4, 3, 3, 3), padding=1))")
    for seed in ("1", "2"):  # the string fields hash differently under each seed
        subprocess.run([sys.executable, "-c", check], input=pickle.dumps(plan), check=True,
                       env=dict(os.environ, PYTHONHASHSEED=seed))


def test_backward_operations_reuse_their_plan_and_check_every_call_that_differs(monkeypatch):
    import numba

    from numba_conv3d import grad_planner, plan_cache
    from numba_conv3d.grad import conv3d_input
    from numba_conv3d.transposed import conv_transpose3d

    plan_cache.clear()
    y, w = np.ones((1, 4, 3, 3, 3), np.float32), np.ones((4, 2, 2, 2, 2), np.float32)
    b = np.ones(2, np.float32)
    first = grad_planner.plan_conv_transpose3d("t", y, w, b, 2, 0, 0, 1, 1, "cpu")
    again = grad_planner.plan_conv_transpose3d("t", y + 1, w * 2, b, 2, 0, 0, 1, 1, "cpu")
    assert again is first  # the same shapes and dtypes: the plan of the first call
    assert grad_planner.plan_conv_transpose3d("t", y, w, b, 2, 0, 1, 1, 1, "cpu").input_size == (7, 7, 7)
    assert grad_planner.plan_conv_transpose3d("t", y[:, :, :2], w, b, 2, 0, 0, 1, 1, "cpu") is not first
    for _ in range(2):  # a call that raises is checked again each time
        with pytest.raises(ValueError, match="bias of shape"):
            conv_transpose3d(y, w, np.ones(3, np.float32), stride=2)
        with pytest.raises(TypeError, match="dtype"):
            conv_transpose3d(y, w.astype(np.float64), b, stride=2)
        with pytest.raises(TypeError):
            conv_transpose3d(y, w, b, stride=2.0)
        with pytest.raises(ValueError, match="grad_output must have shape"):
            conv3d_input((1, 2, 6, 6, 6), w, y[:, :, :2], stride=2)
    grad = np.ones((1, 4, 3, 3, 3), np.float32)
    plan = grad_planner.plan_input_grad("t", (1, 2, 6, 6, 6), np.ones((4, 2, 2, 2, 2), np.float32), grad, 2,
                                        0, 1, 1, "zeros")
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)  # plans depend on the thread count
        assert grad_planner.plan_input_grad("t", (1, 2, 6, 6, 6), w, grad, 2, 0, 1, 1, "zeros") is not plan
    finally:
        numba.set_num_threads(previous)
    monkeypatch.setattr(grad_planner, "plan_conv3d", None)  # a repeated call plans nothing
    assert grad_planner.plan_input_grad("t", (1, 2, 6, 6, 6), np.zeros((4, 2, 2, 2, 2), np.float32), grad, 2,
                                        0, 1, 1, "zeros") is plan


@pytest.mark.parametrize("stride, error", [(1.0, TypeError), (True, TypeError), (0, ValueError)])
def test_a_cached_plan_never_answers_for_arguments_that_only_compare_equal(stride, error):
    plan_conv3d((1, 2, 5, 5, 5), (2, 2, 3, 3, 3), stride=1)
    with pytest.raises(error, match="stride"):
        plan_conv3d((1, 2, 5, 5, 5), (2, 2, 3, 3, 3), stride=stride)


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_every_algorithm_reason_is_formatted(backend):
    from numba_conv3d import cpu, cuda

    table = {"cpu": cpu, "cuda": cuda}[backend].ALGORITHMS
    assert all(row.reason and "{" not in row.reason and "}" not in row.reason for row in table)
