"""Packed weights kept between calls (``cpu/packed_weights.py``): reused only while the weight's bytes,
address, shape and the packing's arguments are the same."""
import numpy as np
import pytest

from numba_conv3d.cpu import packed_weights


@pytest.fixture(autouse=True)
def empty():
    packed_weights.clear()
    yield
    packed_weights.clear()


class CountingPack:
    def __init__(self):
        self.calls = 0

    def __call__(self, weight, scale):
        self.calls += 1
        return weight.astype(np.float64) * scale, bool(np.isfinite(weight).all())


def test_reused_while_the_bytes_are_the_same_and_packed_again_after_any_change():
    pack = CountingPack()
    weight = np.arange(3 * 70000, dtype=np.float32).reshape(3, 70000)
    packed_weights.packed(weight, (2,), pack)  # seen once: not kept
    first = packed_weights.packed(weight, (2,), pack)
    assert packed_weights.packed(weight, (2,), pack) is first and pack.calls == 2
    for index in ((0, 0), (1, 5), (2, 69999)):  # in the first, a middle and the last chunk
        weight[index] += 1
        again = packed_weights.packed(weight, (2,), pack)
        assert again is not first and again[0][index] == 2 * weight[index]
        first = again
    assert pack.calls == 5
    packed_weights.packed(weight, (3,), pack)
    copy = weight.copy()
    packed_weights.packed(copy, (2,), pack)  # same bytes elsewhere: another entry
    kept = packed_weights.packed(copy, (2,), pack)
    assert packed_weights.packed(copy, (2,), pack) is kept and kept is not first and pack.calls == 8


def test_a_weight_seen_once_is_not_kept():
    pack = CountingPack()
    weights = [np.full(70000, k, np.float32) for k in range(3)]
    for weight in weights:
        packed_weights.packed(weight, (1,), pack)
    assert not packed_weights._ENTRIES and pack.calls == 3


def test_entries_beyond_the_budget_are_dropped_oldest_first(monkeypatch):
    monkeypatch.setattr(packed_weights, "PACKED_WEIGHTS_BYTES", 3 * 8000 * 9)
    pack = CountingPack()
    weights = [np.full(8000, k, np.float32) for k in range(3)]
    for weight in weights:
        packed_weights.packed(weight, (1,), pack)
        packed_weights.packed(weight, (1,), pack)
    packed_weights.packed(weights[2], (1,), pack)
    assert pack.calls == 6
    packed_weights.packed(weights[0], (1,), pack)  # dropped: packed again
    assert pack.calls == 7


@pytest.mark.parametrize("count", [300000, 1000])  # compared in parallel, and on the calling thread
def test_same_bytes(count):
    a = np.arange(count, dtype=np.int64).view(np.uint8)
    for index in (0, a.size // 2, a.size - 1):
        b = a.copy()
        assert packed_weights.same_bytes(a, b)
        b[index] ^= 1
        assert not packed_weights.same_bytes(a, b)


def test_a_derived_weight_is_found_again_without_its_bytes_compared(monkeypatch):
    """An array a kept packing returned (and a view of it, as a kernel takes its bits) is packed again
    from its first call and found while it is the same array; the user's weight is never taken for
    one, nor a packing that returns a view of it."""
    pack = CountingPack()
    weight = np.arange(70000, dtype=np.float32)
    packed_weights.packed(weight, (2,), pack)
    derived = packed_weights.packed(weight, (2,), pack)[0]
    compared = []
    monkeypatch.setattr(packed_weights, "same_bytes", lambda *arrays: compared.append(1) or True)
    second = CountingPack()
    first = packed_weights.packed(derived.view(np.int64), (3,), second)
    assert packed_weights.packed(derived.view(np.int64), (3,), second) is first
    assert second.calls == 1 and not compared
    packed_weights.packed(weight, (2,), pack)
    assert compared  # the user's weight: compared

    def as_view(array, scale):
        return (array.reshape(-1),)

    packed_weights.packed(weight, (4,), as_view)
    packed_weights.packed(weight, (4,), as_view)
    assert not packed_weights._DERIVED.get(id(weight))


def test_a_derived_weight_whose_entry_is_dropped_is_compared_again(monkeypatch):
    pack = CountingPack()
    weight = np.arange(70000, dtype=np.float32)
    packed_weights.packed(weight, (2,), pack)
    derived = packed_weights.packed(weight, (2,), pack)[0]
    packed_weights.clear()
    second = CountingPack()
    packed_weights.packed(derived, (3,), second)  # no longer derived: seen once, not kept
    assert not packed_weights._ENTRIES and second.calls == 1


def test_a_jitted_packing_that_returns_a_view_of_the_weight_makes_nothing_derived():
    from numba import njit

    @njit
    def flat(weight, scale):
        return (weight.reshape(-1),)

    def summed(weight, scale):
        return (weight.astype(np.float64).sum() * np.ones(1),)

    weight = np.ones((300, 300), np.float32)
    packed_weights.packed(weight, (1,), flat)
    view = packed_weights.packed(weight, (1,), flat)[0]
    for _ in range(2):
        before = packed_weights.packed(view, (2,), summed)[0][0]
    weight[:] = 0
    assert before == 90000 and packed_weights.packed(view, (2,), summed)[0][0] == 0


def test_another_view_of_a_derived_weight_at_its_address_is_another_entry():
    pack = CountingPack()
    weight = np.arange(300 * 300, dtype=np.float32).reshape(300, 300)
    packed_weights.packed(weight, (1,), pack)
    derived = packed_weights.packed(weight, (1,), pack)[0]
    first_rows = CountingPack()
    assert packed_weights.packed(derived, (1,), first_rows)[0][0, 1] == derived[0, 1]
    assert packed_weights.packed(derived.T, (1,), first_rows)[0][0, 1] == derived[1, 0]
