"""Which backend runs a call, decided by where the input lives."""
import sys

from . import cpu, cuda
from .cuda.arrays import is_device_array

BACKENDS = {backend.NAME: backend for backend in (cpu, cuda)}


def backend_of(op, lead_name, lead, **others):
    """The backend module for an operation whose operand ``lead`` decides: ``cuda`` for a CUDA array,
    ``cpu`` for everything else. With a CUDA ``lead`` the ``others`` may be host or device arrays (host
    ones are copied to the device); with a host ``lead`` they must be on the host.

    Raises
    ------
    TypeError
        When one of ``others`` is a CUDA array but ``lead`` is not.
    """
    if is_device_array(lead):
        return cuda
    for name, operand in others.items():
        if is_device_array(operand):
            raise TypeError(f"{op}: {name} is a CUDA array but {lead_name} is not; put {lead_name} on "
                            f"the GPU too, or copy {name} to the host")
    return cpu


def backend_for(input, weight=None, bias=None, op="conv3d"):
    """The backend module for ``input``: ``cuda`` for CUDA arrays, ``cpu`` for everything else (see
    :func:`backend_of`: weight and bias may be host arrays with a CUDA input, not the reverse)."""
    return backend_of(op, "input", input, weight=weight, bias=bias)


def is_dask_array(obj):
    """Whether ``obj`` is a ``dask.array.Array`` (the Dask front splits it), told without importing Dask:
    no Dask array exists before ``dask.array`` is imported."""
    array_type = getattr(sys.modules.get("dask.array"), "Array", None)
    return array_type is not None and isinstance(obj, array_type)
