"""Calls from one jitted function to another that leave the callee's code out of the caller.

Numba links a callee's LLVM IR into its caller and optimizes and compiles it again there, at every
level of calls: a parallel kernel's task code was compiled four times (its own library, the parallel
loop's gufunc, the gufunc's wrapper, the kernel), most of a cold first call's seconds. ``call_apart``
calls the callee's compiled code by its symbol instead (``llvmlite.binding.add_symbol``, as
``jit_kernels`` does for users' functions), so that it is compiled once; a caller loaded from Numba's
cache gives LLVM the name again through a reload hook before its code is linked. LLVM cannot inline
such a call: it suits a callee that does much work per call, such as a kernel's task.

Numba keeps a library's reload hooks for the libraries that link it only while the library is the one
it compiled: one loaded from the cache comes back without them. A caller compiled against a kernel
loaded from the cache (a user's function, or the C entry of jitted ``conv3d``) was then cached without
the hook, and a process that loaded that caller alone stopped on LLVM's "Symbol not found" (or
crashed, where nothing else had started Numba's parallel runtime, whose start is such a hook too).
Importing this module makes Numba keep the hooks of libraries it loads from the cache
(``_rebuild_keeping_hooks``).
"""
import functools
import importlib

import llvmlite.binding
from numba import types
from numba.core import cgutils, compiler, errors
from numba.extending import intrinsic


def _publish(module_name, qualname, argtypes, symbol):
    """Compile (or load from the cache) the jitted ``module_name.qualname`` for ``argtypes`` and give
    LLVM the address of its code under ``symbol``, the name its callers were compiled against (its own
    name may differ when it was compiled again since)."""
    dispatcher = getattr(importlib.import_module(module_name), qualname)
    dispatcher.compile(argtypes)
    compiled = dispatcher.overloads[argtypes]
    address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
    llvmlite.binding.add_symbol(symbol, address)


_NUMBA_REBUILD = compiler.CompileResult._rebuild.__func__


def _rebuild_keeping_hooks(cls, *payload):
    """Numba's ``CompileResult._rebuild`` (a compiled function loaded from the cache), then its reload
    hooks (``call_apart``'s, and Numba's own start of the parallel runtime for a parallel function)
    put back on its library, where the libraries that link it inherit them as they do a freshly
    compiled one's."""
    result = _NUMBA_REBUILD(cls, *payload)
    result.library._reload_init.update(result.reload_init or ())
    return result


compiler.CompileResult._rebuild = classmethod(_rebuild_keeping_hooks)


@intrinsic
def call_apart(typingctx, function, *args):
    """``function(*args)`` for a module-level jitted ``function``, its code compiled apart from the
    caller's (see the module's docstring); its arguments' literal types are dropped. Pass a parallel
    loop's index as ``np.int64(index)``: Numba types it unsigned in one of its passes and signed in
    another, and the callee would compile for both."""
    if not isinstance(function, types.Dispatcher):
        return None
    if "<locals>" in function.dispatcher.py_func.__qualname__:
        raise errors.TypingError("call_apart calls module-level jitted functions only (a reload hook "
                                 "finds them again by name)")
    argtypes = tuple(types.unliteral(a) for a in args)
    dispatcher = function.dispatcher
    dispatcher.compile(argtypes)
    compiled = dispatcher.overloads[argtypes]
    publish = functools.partial(_publish, dispatcher.py_func.__module__,
                                dispatcher.py_func.__qualname__, argtypes,
                                compiled.fndesc.mangled_name)
    publish()

    def codegen(context, builder, signature, values):
        context.active_code_library._reload_init.add(publish)
        cast = [context.cast(builder, v, t, u) for v, t, u in
                zip(cgutils.unpack_tuple(builder, values[1]), signature.args[1], argtypes)]
        return context.call_internal(builder, compiled.fndesc, compiled.signature, cast)

    return compiled.signature.return_type(function, types.StarArgTuple.from_types(args)), codegen
