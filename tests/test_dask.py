"""conv3d of Dask arrays: lazy, distributed by Dask, and exactly the in-memory result."""
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="the Dask front needs dask[array] (pip install '.[dask]')")
distributed = pytest.importorskip("dask.distributed",
                                  reason="the cluster tests need distributed (pip install '.[dask]')")
psutil = pytest.importorskip("psutil", reason="the memory test reads RSS with psutil (a distributed "
                                              "dependency)")

import numba_conv3d.dask as front  # noqa: E402 - after the skips
from checks import assert_matches_reference, random_operands  # noqa: E402
from numba_conv3d import Conv3d, conv3d, dask_conv3d  # noqa: E402


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread each; Numba single-threaded inside them (2 cores)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"}) as cluster:
        with distributed.Client(cluster) as client:
            yield client


def operands(input_shape, weight_shape, dtype="float64", bias=True, seed=0):
    return random_operands(np.random.default_rng(seed), input_shape, weight_shape, bias, dtype)


# name -> (input shape, weight shape, input chunks, conv3d keywords)
CASES = {
    "stride not dividing the chunks": ((2, 3, 12, 11, 10), (4, 3, 3, 5, 2), (1, 3, 5, 4, 3),
                                       dict(stride=(2, 3, 1), padding=1)),
    "zeros pads at the border": ((1, 2, 9, 8, 7), (3, 2, 3, 3, 3), (1, 2, 4, 3, 3), dict(padding=2)),
    "reflect": ((1, 2, 9, 8, 7), (3, 2, 3, 3, 3), (1, 2, 4, 3, 3),
                dict(padding=(2, 1, 3), padding_mode="reflect")),
    "replicate": ((1, 2, 9, 8, 7), (3, 2, 3, 3, 3), (1, 2, 4, 3, 3),
                  dict(padding=3, padding_mode="replicate")),
    "circular, wrapping to the far blocks": ((1, 2, 9, 8, 7), (3, 2, 3, 3, 3), (1, 2, 4, 3, 3),
                                             dict(padding=(3, 2, 4), padding_mode="circular")),
    "same, even kernel": ((1, 2, 8, 8, 8), (2, 2, 4, 2, 3), (1, 2, 3, 3, 5),
                          dict(padding="same", padding_mode="reflect")),
    "dilation": ((1, 1, 12, 12, 12), (1, 1, 3, 3, 3), (1, 1, 5, 5, 5),
                 dict(dilation=(2, 3, 1), padding=2, padding_mode="circular")),
    "groups": ((1, 4, 8, 8, 8), (4, 2, 3, 3, 3), (1, (1, 3), 4, 4, 4), dict(groups=2, padding=1)),
    "depthwise": ((1, 4, 8, 8, 8), (4, 1, 3, 3, 3), (1, 4, 3, 3, 3),
                  dict(groups=4, padding=1, padding_mode="replicate")),
    "unbatched": ((2, 8, 7, 9), (3, 2, 3, 3, 3), (2, 3, 3, 4), dict(padding="same")),
    "uneven chunks": ((2, 2, 12, 12, 12), (3, 2, 3, 3, 3), ((1, 1), (2,), (5, 3, 4), (7, 2, 3), (4, 4, 4)),
                      dict(padding=1, padding_mode="reflect")),
    "chunks smaller than the halo": ((1, 1, 12, 12, 12), (2, 1, 5, 5, 5), (1, 1, 2, 3, 4),
                                     dict(dilation=2, padding=4, padding_mode="reflect")),
    "batch over chunks": ((3, 2, 6, 6, 6), (2, 2, 3, 3, 3), (1, 2, 6, 3, 6), dict(padding=1)),
    "pads wider than the kernel": ((1, 1, 6, 6, 6), (1, 1, 1, 1, 1), (1, 1, 2, 2, 2), dict(padding=3)),
    "pointwise, a chunk below one strip": ((1, 24, 5, 4, 4), (54, 24, 1, 1, 1), (1, 24, 4, 4, 4), {}),
}


@pytest.mark.parametrize("name", CASES)
def test_float64_is_bitwise_the_in_memory_result(client, name):
    input_shape, weight_shape, chunks, kwargs = CASES[name]
    x, w, b = operands(input_shape, weight_shape)
    y = conv3d(da.from_array(x, chunks=chunks), w, b, **kwargs)
    expected = conv3d(x, w, b, **kwargs)
    assert isinstance(y, da.Array) and y.shape == expected.shape and y.dtype == expected.dtype
    np.testing.assert_array_equal(y.compute(), expected)


@pytest.mark.parametrize("name", ["circular, wrapping to the far blocks", "uneven chunks",
                                  "chunks smaller than the halo", "unbatched"])
def test_parts_cut_where_their_blocks_live_give_the_same_bits(client, monkeypatch, name):
    """Blocks larger than DASK_WHOLE_BLOCK_BYTES are cut by tasks of their own (here: every block)."""
    monkeypatch.setattr(front, "DASK_WHOLE_BLOCK_BYTES", 0)
    input_shape, weight_shape, chunks, kwargs = CASES[name]
    x, w, b = operands(input_shape, weight_shape)
    y = conv3d(da.from_array(x, chunks=chunks), w, b, **kwargs)
    assert any("-part" in str(key) for key in dict(y.__dask_graph__()))
    np.testing.assert_array_equal(y.compute(), conv3d(x, w, b, **kwargs))


def test_small_blocks_go_whole_to_the_tasks():
    x = da.zeros((1, 1, 12, 12, 12), chunks=4)
    y = conv3d(x, np.ones((1, 1, 3, 3, 3)), padding=1)
    assert not any("-part" in str(key) for key in dict(y.__dask_graph__()))
    assert y.numblocks == (1, 1, 3, 3, 3)


@pytest.mark.parametrize("name", ["reflect", "depthwise", "chunks smaller than the halo"])
def test_float32_within_rounding(client, name):
    input_shape, weight_shape, chunks, kwargs = CASES[name]
    x, w, b = operands(input_shape, weight_shape, "float32")
    y = conv3d(da.from_array(x, chunks=chunks), w, b, **kwargs).compute()
    assert_matches_reference(y, x, w, b, **kwargs)


def test_layer_takes_a_dask_array(client):
    layer = Conv3d(2, 3, (3, 2, 3), padding="same", padding_mode="circular", rng=0, dtype="float64")
    x, _, _ = operands((2, 2, 7, 6, 5), (3, 2, 3, 2, 3))
    np.testing.assert_array_equal(layer(da.from_array(x, chunks=(1, 2, 3, 3, 3))).compute(), layer(x))


def test_dask_weight_and_bias_enter_the_graph_once(client):
    x, w, b = operands((1, 2, 8, 8, 8), (3, 2, 3, 3, 3))
    y = conv3d(da.from_array(x, chunks=2), da.from_array(w, chunks=1), da.from_array(b, chunks=1),
               padding=1)
    graph = dict(y.__dask_graph__())
    data = [v for v in graph.values() if isinstance(v, np.ndarray) and v.shape in (w.shape, b.shape)]
    assert len(data) == 2
    np.testing.assert_array_equal(y.compute(), conv3d(x, w, b, padding=1))


@pytest.mark.parametrize("output_chunks, expected", [
    ({2: 3, 4: (1, 7)}, ((1,), (3,), (3, 3, 2), (2, 2, 2, 2), (1, 7))),
    ((1, 3, 8, 4, 2), ((1,), (3,), (8,), (4, 4), (2, 2, 2, 2))),
])
def test_explicit_output_chunks(client, output_chunks, expected):
    x, w, b = operands((1, 2, 8, 8, 8), (3, 2, 3, 3, 3))
    y = dask_conv3d(da.from_array(x, chunks=2), w, b, padding=1, padding_mode="reflect",
                    output_chunks=output_chunks)
    assert y.chunks == expected
    np.testing.assert_array_equal(y.compute(), conv3d(x, w, b, padding=1, padding_mode="reflect"))


@pytest.mark.parametrize("weight_shape, groups, channel_chunks, kept", [
    ((8, 1, 3, 3, 3), 4, (1, 3), (1, 3)),     # depthwise: any channel chunks hold whole groups
    ((4, 2, 3, 3, 3), 2, (2, 2), (2, 2)),
    ((4, 2, 3, 3, 3), 2, (1, 3), (4,)),       # a boundary inside a group moves down to 0
    ((8, 1, 3, 3, 3), 4, (2, 1, 1), (2, 1, 1)),
    ((3, 4, 3, 3, 3), 1, (2, 2), (4,)),       # no groups: one chunk
])
def test_channels_stay_split_where_chunks_hold_whole_groups(client, weight_shape, groups,
                                                            channel_chunks, kept):
    x, w, b = operands((1, 4, 6, 6, 6), weight_shape, seed=3)
    kwargs = dict(groups=groups, padding=1, padding_mode="reflect")
    y = conv3d(da.from_array(x, chunks=(1, channel_chunks, 3, 6, 6)), w, b, **kwargs)
    out_per_group, in_per_group = w.shape[0] // groups, 4 // groups
    assert y.chunks[1] == tuple(n // in_per_group * out_per_group for n in kept)
    np.testing.assert_array_equal(y.compute(), conv3d(x, w, b, **kwargs))


def test_default_output_chunks_follow_input_chunks_over_the_stride():
    x = da.zeros((1, 1, 12, 12, 13), chunks=(1, 1, 4, (5, 3, 4), 13))
    y = conv3d(x, np.zeros((1, 1, 3, 3, 3)), stride=(2, 3, 1), padding=1)
    assert y.chunks == ((1,), (1,), (2, 2, 2), (2, 1, 1), (13,))


BAD = {
    "stride zero": (dict(stride=0), ValueError, r"conv3d: stride must be >= 1"),
    "reflect pad too wide": (dict(padding=8, padding_mode="reflect"), ValueError,
                             r"reflect.*pads \(8, 8\)"),
    "weight dtype": (dict(weight=np.zeros((3, 2, 3, 3, 3), np.float32)), TypeError,
                     r"weight dtype float32"),
    "output channels split": (dict(output_chunks={1: 1}), ValueError,
                              r"output channels in chunks \(3,\) .* but got channel chunks \(1, 1, 1\)"),
    "empty output chunk": (dict(output_chunks={2: (0, 6)}), ValueError, r"must not hold empty"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_arguments_raise_when_the_graph_is_built(monkeypatch, name):
    kwargs, error, message = BAD[name]
    monkeypatch.setattr(front, "_convolution_graph", pytest.fail)
    kwargs = {"weight": np.zeros((3, 2, 3, 3, 3)), **kwargs}
    with pytest.raises(error, match=message):
        dask_conv3d(da.zeros((1, 2, 8, 8, 8), chunks=4), **kwargs)


def test_unknown_chunk_sizes_are_a_value_error():
    x = da.zeros((1, 1, 8, 8, 8), chunks=4)
    x = x[:, :, x[0, 0, :, 0, 0] > -1]  # boolean indexing: chunk sizes unknown until computed
    with pytest.raises(ValueError, match=r"unknown chunk sizes"):
        conv3d(x, np.zeros((1, 1, 3, 3, 3)))


def test_graph_of_a_16_gib_volume_is_small_and_allocates_nothing_large():
    """Building is lazy: no array of the volume's size, and a few tasks per output chunk (each reads
    the parts of at most 3 x 3 x 3 blocks). How long building takes is measured, not asserted:
    benchmarks/bench_dask.py prints it."""
    rss = psutil.Process().memory_info().rss
    x = da.zeros((1, 1, 2048, 2048, 1024), chunks=(1, 1, 256, 256, 256), dtype=np.float32)
    y = conv3d(x, np.ones((1, 1, 7, 7, 7), np.float32), padding=3, padding_mode="reflect")
    assert psutil.Process().memory_info().rss - rss < 100 * 2 ** 20
    assert y.shape == x.shape and y.numblocks == (1, 1, 8, 8, 4)
    own_tasks = len(y.__dask_graph__()) - len(x.__dask_graph__())
    assert own_tasks <= 1 + np.prod(y.numblocks) * (1 + 3 ** 3)


def test_a_small_slice_computes_only_its_chunk(monkeypatch):
    calls = []
    run = front.ChunkConvolution.__call__

    def counted(self, *args):
        calls.append(args)
        return run(self, *args)

    monkeypatch.setattr(front.ChunkConvolution, "__call__", counted)
    x = da.ones((1, 1, 64, 64, 64), chunks=16, dtype=np.float32)
    y = conv3d(x, np.ones((1, 1, 3, 3, 3), np.float32), padding=1, padding_mode="circular")
    corner = y[:, :, :4, :4, :4].compute(scheduler="sync")
    assert len(calls) == 1
    np.testing.assert_array_equal(corner, np.full((1, 1, 4, 4, 4), 27, np.float32))


def test_importing_numba_conv3d_imports_no_dask():
    code = "import sys, numba_conv3d; print(sorted(m for m in sys.modules if m.split('.')[0] == 'dask'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
