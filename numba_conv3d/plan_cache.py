"""The planner's caches of plans: planning and checking the operands cost about as long as a small
convolution's kernel, so calls that repeat their arguments reuse the plan made the first time.

Keys tell apart arguments that compare equal but mean different things (``1``, ``1.0`` and ``True``).
Plans depend on ``config``: code that changes it (tests, the CUDA tuning sweep) calls ``clear``.
"""
import functools

import numba
import numpy as np

PLAN_CACHE_SIZE = 256


class BoundedCache(dict):
    """A dict emptied when it holds ``PLAN_CACHE_SIZE`` entries and another one is stored."""

    def store(self, key, value):
        if len(self) >= PLAN_CACHE_SIZE:
            self.clear()
        self[key] = value


# CPU plans made so far, by their arguments and the thread count their workspace depends on.
_PLANS = BoundedCache()

# Plans of operands seen so far, by their kinds, shapes, dtypes (and on the CPU their layout and the
# thread count) and arguments, each with whether its memory check must run again.
ARRAY_PLANS = BoundedCache()

# The backward operations' plans (``memoized_on_operands``), by their operands' shapes and dtypes, their
# arguments and the thread count.
_OPERAND_PLANS = BoundedCache()

# Decisions made from a plan and shapes alone (``memoized_decision``).
_DECISIONS = BoundedCache()


def _typed_key(value):
    """``value`` as a hashable key that tells its type apart (``1``, ``1.0`` and ``True`` are
    different arguments); TypeError for a value that is not a tuple of hashable scalars."""
    if isinstance(value, tuple):
        return tuple, tuple(_typed_key(item) for item in value)
    hash(value)
    return type(value), value


def memoized(plan_function):
    """``plan_function`` returning the same (frozen) CPU plan for the same arguments; arguments that
    are not hashable (lists), CUDA plans and calls that raise are not cached."""
    @functools.wraps(plan_function)
    def cached(*args, **kwargs):
        if kwargs.get("backend", "cpu") != "cpu":
            return plan_function(*args, **kwargs)
        try:
            key = _typed_key((args, tuple(sorted(kwargs.items())), numba.get_num_threads()))
        except TypeError:
            return plan_function(*args, **kwargs)
        plan = _PLANS.get(key)
        if plan is None:
            plan = plan_function(*args, **kwargs)
            _PLANS.store(key, plan)
        return plan

    return cached


def _exact(value):
    """Whether ``value`` is None, an exact int or str, or a tuple of exact ints: arguments that are equal
    only when they mean the same (unlike 1, 1.0 and True, or numpy integers). Cheaper than
    ``_typed_key`` on the hot path of every call."""
    kind = type(value)
    return (value is None or kind is int or kind is str
            or (kind is tuple and all(type(item) is int for item in value)))


def operands_key(input, weight, bias, arguments):
    """A key for ``ARRAY_PLANS``, or None where the call must be planned in full (arguments of other
    types; on the CPU, operands that are not plain NumPy arrays); ``arguments`` are stride, padding,
    dilation, groups, padding_mode, backend, algorithm, op and allow_tf32 (the one bool). CUDA operands
    are told apart by kind, shape and dtype (host weights and biases too)."""
    if not (all(map(_exact, arguments[:-1])) and type(arguments[-1]) is bool):
        return None
    if arguments[5] == "cpu":
        if not (type(input) is np.ndarray and type(weight) is np.ndarray
                and (bias is None or type(bias) is np.ndarray)):
            return None
        return (input.shape, input.dtype, input.flags.c_contiguous, weight.shape, weight.dtype,
                None if bias is None else (bias.shape, bias.dtype), arguments, numba.get_num_threads())
    try:
        return tuple((type(a), tuple(a.shape), str(a.dtype)) if a is not None else None
                     for a in (input, weight, bias)) + (arguments,)
    except (AttributeError, TypeError):
        return None


def _operand_key(value):
    """A NumPy array of an operand's dtype by its shape and dtype, an exact argument (``_exact``) as
    itself; None for anything else (a CUDA array, an array of integers where a shape or stride goes, a
    float, a list)."""
    if type(value) is np.ndarray:
        return None if value.dtype.kind in "biu" else (value.shape, value.dtype)
    return (value,) if _exact(value) else None


def memoized_on_operands(plan_function):
    """``plan_function`` (a backward operation's checks and plan) returning the plan it made for an
    earlier call whose NumPy operands had the same shapes and dtypes and whose other arguments were the
    same exact values (``_operand_key``), with the same thread count: its checks read nothing else.
    CUDA plans (they depend on the device and ``cuda_config``), calls with arguments of other types and
    calls that raise are not cached. Saves 15-25 us a call."""
    @functools.wraps(plan_function)
    def cached(*args, **kwargs):
        names = sorted(kwargs)
        parts = tuple(_operand_key(value) for value in args + tuple(kwargs[name] for name in names))
        if None in parts:
            return plan_function(*args, **kwargs)
        key = (plan_function, parts, tuple(names), numba.get_num_threads())
        plan = _OPERAND_PLANS.get(key)
        if plan is None:
            plan = plan_function(*args, **kwargs)
            if plan.backend == "cpu":
                _OPERAND_PLANS.store(key, plan)
        return plan

    return cached


def memoized_decision(decide):
    """``decide(plan, shape)`` (a CPU plan, a tuple of ints; it reads nothing else) returning what it
    returned for the same plan and shape: the input gradient's routes, asked twice a call, plan their
    sub-convolutions to decide."""
    @functools.wraps(decide)
    def cached(plan, shape):
        key = (decide, plan, shape)
        found = _DECISIONS.get(key)
        if found is None:
            found = decide(plan, shape)
            _DECISIONS.store(key, found)
        return found

    return cached


def clear():
    """Forget every cached plan and decision (after a change of ``config`` that plans depend on)."""
    _PLANS.clear()
    ARRAY_PLANS.clear()
    _OPERAND_PLANS.clear()
    _DECISIONS.clear()
