"""Which backend runs a call, decided by the kind of the input array."""
from . import cpu


def _is_cuda_array(array):
    try:
        return hasattr(array, "__cuda_array_interface__")
    except RuntimeError:
        # torch raises on tensors that require grad; such a tensor is a device array all the same.
        return True


def backend_for(input, op="conv3d"):
    """The backend module for ``input``: the CPU backend for host arrays.

    Raises
    ------
    TypeError
        For CUDA arrays (``__cuda_array_interface__``): this version has no CUDA backend.
    """
    if _is_cuda_array(input):
        raise TypeError(f"{op}: input is a CUDA array, but this version of numba_conv3d has no CUDA "
                        f"backend; copy it to a NumPy array first")
    return cpu
