"""The GEMM algorithm's matrix products (``cpu/blas.py``): NumPy's result, bitwise the same for any thread
count, pieces that cover the rows, each by CBLAS where it reads the operands in place, the calling
thread's OpenBLAS count put back, NumPy's own product where no OpenBLAS is found."""
import numba
import numpy as np
import pytest

from numba_conv3d.cpu import blas

# (rows, inner, columns, whether the right operand is a transposed view)
SHAPES = [(256, 784, 300, True), (216, 96, 1300, False), (100, 33, 77, True), (64, 5000, 300, True),
          (200, 4000, 30, False), (3, 7, 5, False), (0, 4, 6, False), (97, 1, 1, False)]


def _operands(rows, inner, columns, transposed, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, inner)).astype(dtype)
    if transposed:
        return a, rng.standard_normal((columns, inner)).astype(dtype).T
    return a, rng.standard_normal((inner, columns)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, inner, columns, transposed", SHAPES)
def test_the_product_is_numpys_and_bitwise_the_same_for_1_and_2_threads(rows, inner, columns,
                                                                        transposed, dtype):
    a, b = _operands(rows, inner, columns, transposed, dtype)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            results.append(blas.matmul(a, b))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(results[0], results[1])
    eps = np.finfo(dtype).eps
    bound = inner * eps * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))
    assert results[0].dtype == dtype and np.all(np.abs(results[0] - exact) <= bound)


def test_the_product_goes_into_out():
    a, b = _operands(150, 40, 60, False, np.float32)
    out = np.full((150, 60), np.nan, np.float32)
    assert blas.matmul(a, b, out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [0, 1, 47, 48, 96, 100, 216, 1000, 5000])
@pytest.mark.parametrize("flops", [1e3, 1e9])
def test_pieces_cover_the_rows_in_order_an_even_number_of_them(rows, flops):
    pieces = blas._piece_bounds(rows, flops)
    assert pieces[0][0] == 0 and pieces[-1][1] == rows
    assert all(start < stop for start, stop in pieces) or rows == 0
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    assert len(pieces) == 1 or (len(pieces) % 2 == 0 and len(pieces) <= blas.MAX_PIECES)
    if flops < blas.SMALL_PRODUCT_FLOPS:
        assert len(pieces) == 1
    assert all(start % blas.PIECE_ALIGNMENT == 0 for start, _ in pieces)


def _openblas_or_skip():
    openblas = blas.openblas()
    if openblas is None:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS with thread-local counts")
    return openblas


def test_cblas_reads_rows_columns_and_transposed_views_in_place_and_nothing_else():
    matrix = np.zeros((6, 10), np.float32)
    assert blas._cblas_layout(matrix) == (blas.AS_STORED, 10)
    assert blas._cblas_layout(matrix[:, 2:7]) == (blas.AS_STORED, 10)
    assert blas._cblas_layout(matrix[1:4]) == (blas.AS_STORED, 10)
    assert blas._cblas_layout(matrix.T) == (blas.TRANSPOSED, 10)
    assert blas._cblas_layout(matrix[:, 3:4]) == (blas.AS_STORED, 10)
    assert blas._cblas_layout(matrix[2:3, :]) == (blas.AS_STORED, 10)
    assert blas._cblas_layout(matrix[:, ::2]) is None
    assert blas._cblas_layout(matrix[::-1]) is None


@pytest.mark.parametrize("transposed", [False, True])
def test_pieces_go_to_cblas_where_it_reads_them_in_place(monkeypatch, transposed):
    _openblas_or_skip()
    calls = []
    run_pieces = blas.run_pieces
    monkeypatch.setattr(blas, "run_pieces", lambda *table: calls.append(table) or run_pieces(*table))
    a, b = _operands(216, 96, 1300, transposed, np.float32)
    result = blas.matmul(a, b)
    (_, _, _, flags, sizes, offsets, _, _, _), = calls
    assert len(offsets) == len(blas._split(result, a.shape[1])[1]) > 1
    assert set(flags[:, 1]) == {blas.TRANSPOSED if transposed else blas.AS_STORED}
    np.testing.assert_allclose(result, a @ b, rtol=1e-4, atol=1e-3)


def test_a_product_of_one_piece_stays_on_the_calling_thread(monkeypatch):
    _openblas_or_skip()
    monkeypatch.setattr(blas, "run_pieces", lambda *table: pytest.fail("threads started for one piece"))
    a, b = _operands(54, 8, 1, False, np.float32)
    assert len(blas._split(np.empty((54, 1), np.float32), a.shape[1])[1]) == 1
    np.testing.assert_array_equal(blas.matmul(a, b), np.matmul(a, b))


def test_a_product_openblas_never_threads_sets_no_thread_count(monkeypatch):
    _openblas_or_skip()
    monkeypatch.setattr(blas, "one_thread", lambda library: pytest.fail("a thread count set for 432 MACs"))
    a, b = _operands(8, 54, 1, False, np.float32)
    assert 8 * 54 * 1 <= blas.CALLER_ONLY_MACS
    np.testing.assert_array_equal(blas.matmul(a, b), np.matmul(a, b))


def test_a_product_cblas_cannot_read_in_place_is_numpys(monkeypatch):
    openblas = _openblas_or_skip()
    monkeypatch.setattr(blas, "run_pieces", lambda *table: pytest.fail("CBLAS took a strided operand"))
    a, b = _operands(150, 40, 120, False, np.float64)
    previous = openblas.set_local_threads(3)
    try:
        result = blas.matmul(a, b[:, ::2])
        assert openblas.set_local_threads(3) == 3
    finally:
        openblas.set_local_threads(previous)
    np.testing.assert_array_equal(result, np.matmul(a, b[:, ::2]))


def test_the_calling_threads_openblas_count_is_put_back():
    setter = _openblas_or_skip().set_local_threads
    previous = setter(3)
    try:
        a, b = _operands(300, 200, 100, False, np.float64)
        blas.matmul(a, b)
        assert setter(3) == 3
    finally:
        setter(previous)


def test_pieces_leave_the_count_at_one_and_the_caller_puts_it_back():
    # NumPy's OpenBLAS shares the "thread-local" count between threads: a worker putting its count back
    # while another computes could leave it at 1 (seen in CI), so only the caller puts it back.
    setter = _openblas_or_skip().set_local_threads
    a, b = _operands(300, 200, 100, False, np.float64)
    out = np.empty((300, 100))
    table = blas._piece_table(blas.openblas(), a, b, out, *blas._split(out, a.shape[1]))
    previous = setter(3)
    try:
        blas.run_pieces(*table)
        assert setter(3) == 1
        with blas.one_thread(blas.openblas()):
            assert setter(1) == 1
        assert setter(3) == 3
    finally:
        setter(previous)
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)


def test_without_openblas_the_product_is_numpys(monkeypatch):
    monkeypatch.setattr(blas, "openblas", lambda: None)
    a, b = _operands(120, 30, 40, True, np.float64)
    np.testing.assert_array_equal(blas.matmul(a, b), np.matmul(a, b))


def test_a_forked_child_computes_products_after_its_parent_did():
    multiprocessing = pytest.importorskip("multiprocessing")
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    a, b = _operands(300, 200, 400, False, np.float64)
    expected = blas.matmul(a, b)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(blas.matmul, (a, b)).get(timeout=120)
    np.testing.assert_array_equal(result, expected)
