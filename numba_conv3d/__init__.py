"""numba_conv3d: 3-D convolution with the semantics of torch.nn.Conv3d, compiled by Numba."""
from . import kernel_cache  # noqa: F401 - first: its cache locators must exist before any kernel
from . import jit_api  # noqa: F401 - registers conv3d for users' @njit code
from .parallelism import make_pip_tbb_findable
from .api import conv3d
from .dask import dask_conv3d
from .grad import conv3d_backward, conv3d_bias, conv3d_input, conv3d_weight
from .layer import Conv3d
from .plan import ConvPlan
from .planner import plan_conv3d
from .transposed import ConvTranspose3d, conv_transpose3d

__version__ = "0.1.0"

make_pip_tbb_findable()

__all__ = ["Conv3d", "ConvPlan", "ConvTranspose3d", "conv3d", "conv3d_backward", "conv3d_bias",
           "conv3d_input", "conv3d_weight", "conv_transpose3d", "dask_conv3d", "grad", "plan_conv3d",
           "__version__"]
