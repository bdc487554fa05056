"""Fixtures shared by the CPU tests."""
import pytest

from numba_conv3d import plan_cache
from numba_conv3d.cpu import amx_bfloat16


@pytest.fixture
def without_amx(monkeypatch):
    """Plans made as on a CPU without AMX tiles (the planner's rules for the AVX512-BF16 dot products
    and the widened kernels hold there), cached plans forgotten before and after."""
    plan_cache.clear()
    monkeypatch.setattr(amx_bfloat16, "has_amx_bfloat16", lambda: False)
    yield
    plan_cache.clear()
