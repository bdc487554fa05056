"""Which backend runs a call, decided by where the input lives."""
import sys

from . import cpu, cuda
from .cuda.arrays import is_device_array

BACKENDS = {backend.NAME: backend for backend in (cpu, cuda)}


def backend_for(input, weight=None, bias=None, op="conv3d"):
    """The backend module for ``input``: ``cuda`` for CUDA arrays, ``cpu`` for everything else.

    A CUDA input may take host or device weight and bias (host ones are copied to the device); a host
    input must have host weight and bias.

    Raises
    ------
    TypeError
        When ``weight`` or ``bias`` is a CUDA array but ``input`` is not.
    """
    if is_device_array(input):
        return cuda
    for name, operand in (("weight", weight), ("bias", bias)):
        if is_device_array(operand):
            raise TypeError(f"{op}: {name} is a CUDA array but input is not; put input on the GPU "
                            f"too, or copy {name} to the host")
    return cpu


def is_dask_array(obj):
    """Whether ``obj`` is a ``dask.array.Array`` (the Dask front splits it), told without importing Dask:
    no Dask array exists before ``dask.array`` is imported."""
    array_type = getattr(sys.modules.get("dask.array"), "Array", None)
    return array_type is not None and isinstance(obj, array_type)
