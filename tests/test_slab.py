"""The padded input slab (``cpu/slab.py``): every padding mode, stride and pad, against ``np.pad``."""
import numpy as np
import pytest

from numba_conv3d.cpu.slab import gather_slab, index_maps, phase_columns
from numba_conv3d.shape_rules import PADDING_MODES

NUMPY_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("stride_w", [1, 2, 3])
@pytest.mark.parametrize("pads, width", [((0, 0, 0), 9), ((1, 2, 3), 9), ((2, 1, 4), 5),
                                         ((1, 3, 1), 2)])
def test_gather_slab_matches_the_padded_input_in_every_phase(mode, stride_w, pads, width):
    """Pads within every mode's limits (reflect: below the extent), W phases of strides 1-3, rows,
    planes and columns past the padded extents, a channel and row offset."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 6, width)).astype(np.float32)
    size = np.array(x.shape[2:])
    pad = np.array(pads)
    padded = size + 2 * pad
    expected = np.pad(x[1], [(0, 0)] + [(p, p) for p in pads], mode=NUMPY_MODES[mode])
    maps = index_maps(x, padded, pad, PADDING_MODES.index(mode))
    extra_rows, extra_columns = 2, 5
    columns = phase_columns(padded[2], stride_w) + extra_columns
    planes, row0 = 3, 1
    slab = np.full((2, planes, padded[1] - row0 + extra_rows, stride_w, columns), np.nan, np.float32)
    first = padded[0] - 2
    gather_slab(x, 1, 1, first, first, first + planes, row0, maps, slab)
    # Planes, rows and columns past the padded extents read zero.
    reference = np.zeros((2, planes, slab.shape[2], stride_w * columns), np.float32)
    reference[:, :2, :padded[1] - row0, :padded[2]] = expected[1:, first:, row0:]
    for phase in range(stride_w):
        np.testing.assert_array_equal(slab[:, :, :, phase, :], reference[..., phase::stride_w],
                                      err_msg=f"phase {phase}")
