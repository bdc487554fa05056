"""How the register-blocked kernels tile their work (ring slabs of input planes, chunks of input
channels, task grids) must not change a single bit of the result: every grid and every chunk size sums
each output element in the same order."""
import numpy as np
import pytest

from checks import assert_matches_reference
from numba_conv3d.cpu import blocked, channel_vectorized, register_blocks, row_blocked
from numba_conv3d.cpu.slab import advance_ring, index_maps, task_start
from numba_conv3d.planner import plan_conv3d
from numba_conv3d.shape_rules import PADDING_MODES

# (input shape, weight shape, keyword arguments): depth strides below, equal to and above the kernel's
# depth extent, depth dilation, every padding mode along D, groups, input channels that no chunk size
# divides.
CASES = [
    ((1, 13, 11, 6, 21), (10, 13, 3, 3, 3), dict(padding=1)),
    ((2, 6, 12, 5, 19), (9, 6, 3, 2, 3), dict(stride=(2, 1, 2), padding=(1, 0, 1),
                                              padding_mode="reflect")),
    ((1, 5, 13, 4, 18), (8, 5, 1, 3, 3), dict(stride=(3, 1, 1), padding=(0, 1, 1))),
    ((1, 7, 14, 5, 17), (8, 7, 3, 3, 2), dict(dilation=(2, 1, 1), padding=(2, 1, 0),
                                              padding_mode="circular")),
    ((1, 8, 9, 5, 33), (12, 4, 2, 3, 3), dict(groups=2, padding="same", padding_mode="replicate")),
]


def _operands(input_shape, weight_shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(input_shape).astype(np.float32)
    w = rng.standard_normal(weight_shape).astype(np.float32)
    return x, w, rng.standard_normal(weight_shape[0]).astype(np.float32)


def _plan(x, w, kwargs):
    return plan_conv3d(x.shape, w.shape, bias=True, dtype=x.dtype, **kwargs)


def _blocked(x, w, b, plan, grid, chunk):
    out = np.empty((plan.batch, plan.out_channels) + plan.output_size, x.dtype)
    packed, packed_bias = blocked.pack_weights(w, b, True, plan.groups, blocked.BLOCK_CHANNELS)
    blocked._blocked_kernel(x, packed, packed_bias, out, plan.stride, plan.dilation, plan.pad_front,
                            plan.padded_size, plan.mode_code, plan.kernel_size, grid, chunk, True)
    return out


def _assert_same_bits(results, x, w, b, kwargs):
    """The first of ``results`` ((label, output) pairs) matches the reference, and every other one is
    bitwise equal to it."""
    first = None
    for label, out in results:
        if first is None:
            first = out
            assert_matches_reference(out, x, w, b, **kwargs)
        else:
            np.testing.assert_array_equal(out, first, err_msg=label)


def _grids(plan, units):
    """Task grids from one output plane per task to all planes in one task, with and without channel
    splits."""
    depth, height = plan.output_size[:2]
    grids = []
    for planes in sorted({1, 2, max(1, depth // 3), depth}):
        for rows in sorted({height, max(1, height // 2)}):
            for splits in sorted({1, min(2, units)}):
                grids.append((planes, -(-depth // planes), rows, -(-height // rows), splits))
    return grids


@pytest.mark.parametrize("input_shape, weight_shape, kwargs", CASES)
def test_every_grid_and_chunk_gives_bitwise_the_same_output(input_shape, weight_shape, kwargs):
    x, w, b = _operands(input_shape, weight_shape)
    plan = _plan(x, w, kwargs)
    units = -(-plan.out_per_group // blocked.BLOCK_CHANNELS)
    _assert_same_bits(((f"grid {grid}, chunk {chunk}", _blocked(x, w, b, plan, grid, chunk))
                       for grid in _grids(plan, units) for chunk in sorted({1, 2, 3, w.shape[1]})),
                      x, w, b, kwargs)


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("rest", [1, 2])
def test_rows_ending_in_stacked_vectors_give_bitwise_the_same_output(mode, rest):
    """Rows of 3k + 1 and 3k + 2 vectors end in vectors stacked over 3 rows (``row_ends``): tasks of
    rows that a stack divides and of rows that it does not (the last stack clipped to the task), an
    output height that no stack divides, every chunk: the same bits."""
    lanes = blocked.VECTOR_BYTES // 4
    x, w, b = _operands((1, 6, 5, 8, (3 + rest - 1) * lanes + 2), (8, 6, 3, 3, 3))
    plan = _plan(x, w, dict(padding=(1, 1, 1), padding_mode=mode))
    depth, height, width = plan.output_size
    assert blocked.row_ends(width, lanes) == (1, rest) and height % blocked.BLOCK_VECTORS
    first = _blocked(x, w, b, plan, (depth, 1, height, 1, 1), 6)
    assert_matches_reference(first, x, w, b, padding=(1, 1, 1), padding_mode=mode)
    for rows in (1, 2, 3, 4, 6, 9):
        for chunk in (1, 4, 6):
            grid = (2, -(-depth // 2), rows, -(-height // rows), 2)
            np.testing.assert_array_equal(_blocked(x, w, b, plan, grid, chunk), first,
                                          err_msg=f"grid {grid}, chunk {chunk}")


@pytest.mark.parametrize("input_shape, weight_shape, kwargs", CASES[:4])
def test_row_blocked_grids_give_bitwise_the_same_output(input_shape, weight_shape, kwargs):
    x, w, b = _operands(input_shape[:1] + (2,) + input_shape[2:], (3, 2) + weight_shape[2:])
    plan = _plan(x, w, kwargs)
    taps = w.reshape(w.shape[0], w.shape[1], -1)

    def row_blocked_output(grid):
        rows = -(-grid[2] // row_blocked.BLOCK_ROWS) * row_blocked.BLOCK_ROWS
        grid = grid[:2] + (rows, -(-plan.output_size[1] // rows)) + grid[4:]
        out = np.empty((plan.batch, plan.out_channels) + plan.output_size, x.dtype)
        row_blocked._row_blocked_kernel(x, taps, b, out, plan.stride, plan.dilation, plan.pad_front,
                                        plan.padded_size, plan.mode_code, plan.kernel_size, plan.groups,
                                        grid)
        return f"grid {grid}", out

    _assert_same_bits(map(row_blocked_output, _grids(plan, plan.out_per_group)), x, w, b, kwargs)


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("stride_d, dilation_d", [(1, 1), (2, 1), (4, 1), (1, 2), (3, 2)])
def test_a_ring_slab_holds_the_padded_planes_each_output_plane_reads(mode, stride_d, dilation_d):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 7, 4, 5)).astype(np.float32)
    kernel, pad = 3, 2
    extent = (kernel - 1) * dilation_d + 1
    padded = (7 + 2 * pad, 4, 5)
    out_depth = (padded[0] - extent) // stride_d + 1
    numpy_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                  "circular": "wrap"}[mode]
    expected = np.pad(x[0], ((0, 0), (pad, pad), (0, 0), (0, 0)), mode=numpy_mode)
    maps = index_maps(x, padded, (pad, 0, 0), PADDING_MODES.index(mode))
    stride = (stride_d, 1, 1)
    od0 = 1
    grid = (out_depth - od0, 2, 4, 1, 1)
    _, _, _, _, _, _, slab = task_start(x, 0, grid, 1, 1, (2, extent, 4, 1, 5))
    for od in range(od0, out_depth):
        first_slot = advance_ring(x, 0, 0, 1, od0, od, 0, stride, maps, slab)
        for kz in range(kernel):
            slot = (first_slot + kz * dilation_d) % extent
            np.testing.assert_array_equal(slab[:, slot, :, 0, :],
                                          expected[:, od * stride_d + kz * dilation_d])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("input_shape, weight_shape, kwargs", [
    *CASES,
    # rows of 56 and 29 columns (several blocks of columns, the last partial); 40 channels (a partial
    # block of channels)
    ((1, 3, 5, 9, 112), (40, 3, 3, 3, 7), dict(stride=(1, 2, 2), padding=(1, 1, 3))),
    ((2, 4, 3, 4, 29), (36, 2, 1, 2, 3), dict(groups=2, padding=(0, 1, 1), padding_mode="reflect")),
])
def test_channel_vectorized_kernel_gives_the_blocked_kernels_bits(input_shape, weight_shape, kwargs,
                                                                  dtype):
    """Both kernels sum each output element in the order (bias, input channel, kd, kh, kw)."""
    x, w, b = (a.astype(dtype) for a in _operands(input_shape, weight_shape))
    plan = plan_conv3d(x.shape, w.shape, bias=True, dtype=x.dtype, **kwargs)
    outputs = []
    for module in (channel_vectorized, blocked):
        out = np.empty((plan.batch, plan.out_channels) + plan.output_size, x.dtype)
        module.compute(x, w, b, True, out, plan.stride, plan.dilation, plan.pad_front,
                       plan.padded_size, plan.mode_code, plan.groups)
        outputs.append(out)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert_matches_reference(outputs[0], x, w, b, **kwargs)


def _channel_vectorized(x, w, b, plan, grid, tall):
    """The channel-vectorized kernel over ``grid`` in tall or wide tiles (its slab sized for them)."""
    out = np.empty((plan.batch, plan.out_channels) + plan.output_size, x.dtype)
    packed, packed_bias = blocked.pack_weights(w, b, True, plan.groups,
                                               channel_vectorized.block_channels(x.itemsize))
    rows, columns = channel_vectorized.tile_shape(tall)
    width = -(-plan.output_size[2] // columns) * columns
    slab_dims = channel_vectorized.task_slab_shape(plan.in_per_group, plan.kernel_size, plan.stride,
                                                   plan.dilation, width, grid, rows)
    channel_vectorized._channel_vectorized_kernel(x, packed, packed_bias, out, plan.stride, plan.dilation,
                                                  plan.pad_front, plan.padded_size, plan.mode_code,
                                                  plan.kernel_size, grid, slab_dims, True, tall)
    return out


@pytest.mark.parametrize("input_shape, weight_shape, kwargs", [
    *CASES[:3],
    # 4x8x8 and 5x7x7 outputs with 40 channels (a partial block): tall and wide tiles' strips end inside
    # the plane; zero padding at every plane and row edge (skipped taps)
    ((1, 9, 4, 8, 8), (40, 9, 3, 3, 3), dict(padding=1)),
    ((2, 6, 5, 7, 7), (36, 6, 5, 3, 3), dict(padding=(2, 1, 1))),
])
def test_channel_vectorized_grids_and_tiles_give_bitwise_the_same_output(input_shape, weight_shape,
                                                                        kwargs):
    """Tasks of one output plane or several (their slab holds all their planes), of rows that a strip
    divides or not, with and without channel splits, in tall tiles and in wide ones: the same bits."""
    x, w, b = _operands(input_shape, weight_shape)
    plan = _plan(x, w, kwargs)
    units = -(-plan.out_per_group // channel_vectorized.block_channels(x.itemsize))
    _assert_same_bits(((f"grid {grid}, tall {tall}", _channel_vectorized(x, w, b, plan, grid, tall))
                       for grid in _grids(plan, units) for tall in (False, True)), x, w, b, kwargs)


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 2), (3, 2)])
def test_tap_runs_hold_exactly_the_taps_that_read_the_input(mode, stride, dilation):
    """``fill_tap_runs``: for every output plane and block of rows, the runs hold the taps (kd, kh, kw)
    at which the plane or one of the rows reads the input, not only zero padding, each once, in
    order."""
    kernel, padding, size = (3, 4, 2), (3, 2, 1), (4, 5, 6)
    padded = tuple(s + 2 * p for s, p in zip(size, padding))
    maps = index_maps(np.zeros((1, 1) + size, np.float32), padded, padding, PADDING_MODES.index(mode))
    out_size = [(p - dilation * (k - 1) - 1) // stride + 1 for p, k in zip(padded, kernel)]
    runs = np.empty(2 * kernel[0], np.int64)
    for od in range(out_size[0]):
        for oh in range(out_size[1]):
            for rows in range(1, out_size[1] - oh + 1):
                count = register_blocks.fill_tap_runs(runs, kernel, (stride,) * 3, (dilation,) * 3, maps, od,
                                                      oh, rows, True)
                taps = [t for start, stop in runs[:2 * count].reshape(-1, 2) for t in range(start, stop)]
                expected = [
                    (kd * kernel[1] + kh) * kernel[2] + kw
                    for kd in range(kernel[0]) for kh in range(kernel[1]) for kw in range(kernel[2])
                    if maps[0][od * stride + kd * dilation] >= 0
                    and any(maps[1][(oh + r) * stride + kh * dilation] >= 0 for r in range(rows))]
                assert taps == expected, (od, oh, rows)


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 16])
@pytest.mark.parametrize("channels_first", [True, False])
def test_the_stationary_grid_takes_few_tasks_unless_more_balance_the_threads(threads, channels_first):
    """Few tasks (each gathers its slab anew) where they keep the busiest thread as busy as
    ``TASKS_PER_THREAD`` per thread would, else those; no split of the channel blocks is empty and
    the tasks cover every block and plane."""
    from numba_conv3d.config import TASKS_PER_THREAD
    from numba_conv3d.cpu.tasks import split_range

    if threads == 2:  # a deep layer's 4^3 output, 8 blocks of channels: one task per thread
        assert register_blocks.stationary_tasks(2, 1, 8, 4, 4, channels_first) == ((2, 4, 1) if channels_first
                                                                                  else (1, 2, 2))

    work = register_blocks.slowest_thread_work
    for volumes in (1, 2, 3, 6, 65):
        for units in (1, 2, 5, 8, 16):
            for depth, fitting in ((1, 1), (4, 4), (8, 3), (16, 16)):
                arguments = (volumes, units, depth, fitting, channels_first)
                splits, planes, tiles = register_blocks.stationary_tasks(threads, *arguments)
                few = register_blocks._stationary_split(-(-volumes // threads) * threads, *arguments)
                many = register_blocks._stationary_split(TASKS_PER_THREAD * threads, *arguments)
                busiest = work(threads, volumes, units, splits, planes, tiles)
                assert busiest == min(work(threads, volumes, units, *grid) for grid in (few, many))
                assert (splits, planes, tiles) == few or busiest < work(threads, volumes, units, *few)
                assert planes * tiles >= depth and planes * (tiles - 1) < depth and planes <= max(1, fitting)
                assert all(split_range(s, units, splits)[1] > split_range(s, units, splits)[0]
                           for s in range(splits))


@pytest.mark.parametrize("out_size, in_per_group, kernel, stride", [
    ((4, 14, 14), 256, (3, 3, 3), (1, 1, 1)),  # 7 strips of 2 rows: 4 + 3 where the rows are tiled
    ((8, 28, 28), 32, (3, 3, 3), (2, 2, 2)),
    ((2, 7, 7), 128, (3, 3, 3), (2, 2, 2)),
    ((8, 56, 56), 64, (3, 3, 3), (1, 1, 1)),
    ((2, 40, 40), 1024, (3, 3, 3), (1, 1, 1)),  # one whole plane outgrows the stationary slab
    ((2, 7, 7), 512, (3, 3, 3), (1, 1, 1)),  # a tie (4 row tiles of one strip, or 4 strips): whole planes
])
def test_the_stationary_grid_keeps_whole_planes_where_row_tiles_leave_a_thread_no_fewer_strips(
        monkeypatch, out_size, in_per_group, kernel, stride):
    """Output rows stay tiled (each plane's slab within ``SLAB_BYTES``) unless whole planes, within
    ``STATIONARY_SLAB_BYTES``, leave the busiest of two threads no more strips of output rows to compute
    (channel blocks x planes x strips; on a tie whole planes read each weight fewer times)."""
    from numba_conv3d.config import STATIONARY_SLAB_BYTES

    monkeypatch.setattr(register_blocks, "thread_count", lambda: 2)
    arguments = (1, out_size, in_per_group, kernel, stride, (1, 1, 1), 16, 1, 2)
    weight_bytes = in_per_group * 27 * 16 * 32 * 4
    grid = register_blocks.stationary_grid(*arguments[:2], 4, *arguments[2:], weight_bytes)
    rows, row_tiles, plane_bytes = register_blocks._row_tiling(out_size[1], out_size[2], 4, in_per_group,
                                                               kernel, stride, (1, 1, 1), 2)
    tiled, tiled_work = register_blocks._stationary_rows(*arguments, weight_bytes, rows, row_tiles,
                                                         plane_bytes)
    assert grid[2] * grid[3] >= out_size[1] and grid[2] % 2 == 0
    if grid != tiled:
        whole_bytes = register_blocks._input_plane_bytes(grid[2], out_size[2], 4, in_per_group, kernel,
                                                         stride, (1, 1, 1))
        assert grid[3] == 1 and whole_bytes * kernel[0] <= STATIONARY_SLAB_BYTES
        whole_work = register_blocks._stationary_rows(*arguments, weight_bytes, grid[2], 1, whole_bytes)[1]
        assert whole_work <= tiled_work
    if out_size == (4, 14, 14):
        assert (grid[2], grid[3], grid[4]) == (14, 1, 2)
    if in_per_group == 1024:
        assert grid == tiled and row_tiles > 1
    if in_per_group == 512:
        assert row_tiles > 1 and grid[2:4] == (8, 1)
