"""The simulated GPU's arrays and namespace: CuPy's rules, NumPy's arithmetic.

Arrays hold NumPy arrays inside, so every result is what NumPy computes, but they behave as
CuPy's arrays do where it matters for a GPU program:

  * they refuse implicit conversion to the host: ``numpy.asarray(x)`` raises TypeError, as
    with CuPy; data moves only through ``asarray`` (host to device) and ``.get()`` /
    ``backend.to_numpy`` (device to host);
  * they refuse to mix with NumPy arrays in operations (``x + numpy_array`` raises), and in
    assignments other than a whole-array copy (``x[...] = numpy_array``, an explicit upload);
  * the namespace exposes only functions that CuPy implements.

Each operation that CuPy runs as a kernel reports a launch with its record (``launches.py``:
the grid CuPy would choose, the bytes, the serial iterations); views (reshape, transpose,
basic slicing, broadcast_to) and ``empty`` cost nothing, as on a GPU.
"""

from __future__ import annotations

import math
import sys

import numpy

from minivit.sim import launches
from minivit.sim.counting import _counters
from minivit.sim.counting import copy_to_device as _copy_to_device
from minivit.sim.counting import copy_to_host as _copy_to_host
from minivit.sim.counting import launch as _count
from minivit.sim.counting import sync as _sync


def _launch(kind: str, inputs=(), output=None, count: int = 1) -> None:
    """Count an elementwise-shaped launch (elementwise, copy, fill, gather, scatter, random)."""
    _count(launches.elementwise(kind, inputs, output), count)


def _launch_reduction(kind: str, array: numpy.ndarray, axis, output) -> None:
    _count(launches.reduction(kind, array, axis, output if isinstance(output, numpy.ndarray) else None))


# --- the array ------------------------------------------------------------------------------------

_SCALARS = (int, float, bool, complex, numpy.generic)


def _unwrap(value, what: str = "operand"):
    """The NumPy array inside a device array; scalars pass; host arrays are refused as CuPy refuses them."""
    if isinstance(value, ndarray):
        return value._array
    if isinstance(value, _SCALARS) or value is None:
        return value
    raise TypeError(f"Unsupported type {type(value)}: the simulated GPU (as CuPy) does not mix device arrays "
                    f"with host data in an {what}. Move it first with minivit.backend.asarray(...).")


def _wrap(result):
    if isinstance(result, numpy.ndarray):
        return ndarray(result)
    if isinstance(result, tuple):
        return tuple(_wrap(item) for item in result)
    if isinstance(result, numpy.generic):  # CuPy returns 0-d device arrays, never host scalars
        return ndarray(numpy.asarray(result))
    return result


def _is_view(result, source) -> bool:
    return isinstance(result, numpy.ndarray) and result.size > 0 and numpy.may_share_memory(result, source)


class _MemoryPointer:
    """cupy.cuda.MemoryPointer: ``ptr`` is the address (here, of the host memory that stands for the device's)."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: int):
        self.ptr = ptr


class ndarray:
    """A device array of the simulated GPU (wraps a NumPy array; see the module docstring)."""

    __slots__ = ("_array", "__weakref__")
    __array_ufunc__ = None  # NumPy defers to our operators, which refuse host arrays

    def __init__(self, array: numpy.ndarray):
        self._array = array

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                        "a NumPy array explicitly (minivit.backend.to_numpy).")

    def __array_function__(self, func, types, args, kwargs):
        return NotImplemented  # numpy.concatenate([device, ...]) and friends raise TypeError

    # --- what a host read costs
    def get(self) -> numpy.ndarray:
        _sync(".get()")
        _copy_to_host(self._array.nbytes)
        return self._array.copy()

    def item(self):
        _sync(".item()")
        _copy_to_host(self._array.itemsize)
        return self._array.item()

    def tolist(self):
        _sync(".tolist()")
        _copy_to_host(self._array.nbytes)
        return self._array.tolist()

    def __float__(self):
        _sync("float()")
        _copy_to_host(self._array.itemsize)
        return float(self._array)

    def __int__(self):
        _sync("int()")
        _copy_to_host(self._array.itemsize)
        return int(self._array)

    def __index__(self):
        _sync("an array used as an index")
        _copy_to_host(self._array.itemsize)
        return self._array.__index__()

    def __bool__(self):
        _sync("bool()")
        _copy_to_host(self._array.itemsize)
        return bool(self._array)

    def __format__(self, spec):
        if self._array.ndim == 0:
            return format(float(self) if self._array.dtype.kind == "f" else self.item(), spec)
        return format(repr(self), spec)

    def __repr__(self):
        _sync("repr()")
        _copy_to_host(self._array.nbytes)
        return "array(" + numpy.array2string(self._array, separator=", ") + f", dtype={self._array.dtype})"

    __str__ = __repr__

    def __len__(self):
        return len(self._array)

    def __iter__(self):
        for index in range(len(self._array)):
            yield self[index]

    __hash__ = None

    # --- attributes (host metadata: free)
    shape = property(lambda self: self._array.shape)
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)
    itemsize = property(lambda self: self._array.itemsize)
    nbytes = property(lambda self: self._array.nbytes)
    strides = property(lambda self: self._array.strides)
    flags = property(lambda self: self._array.flags)

    @property
    def data(self) -> _MemoryPointer:
        """Where the array's memory starts (CuPy's ``MemoryPointer``: ``.data.ptr``), for NCCL's calls."""
        return _MemoryPointer(self._array.ctypes.data)

    @property
    def base(self):
        return None if self._array.base is None else ndarray(self._array.base)

    @property
    def T(self):
        return ndarray(self._array.T)

    # --- shape: views are free, copies are launches
    def _maybe_copy(self, result, kind="copy"):
        if not _is_view(result, self._array):
            _launch(kind, (self._array,), result)
        return ndarray(result)

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return self._maybe_copy(self._array.reshape(shape, order=order))

    def ravel(self):
        return self._maybe_copy(self._array.ravel())

    def flatten(self):
        _launch("copy", (self._array,), self._array)
        return ndarray(self._array.flatten())

    def transpose(self, *axes):
        return ndarray(self._array.transpose(*axes))

    def swapaxes(self, axis1, axis2):
        return ndarray(self._array.swapaxes(axis1, axis2))

    def squeeze(self, axis=None):
        return ndarray(self._array.squeeze(axis))

    def view(self, dtype=None):
        return ndarray(self._array.view(dtype) if dtype is not None else self._array.view())

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and numpy.dtype(dtype) == self._array.dtype:
            return self
        result = self._array.astype(dtype, order=order)
        _launch("copy", (self._array,), result)
        return ndarray(result)

    def copy(self, order="C"):
        _launch("copy", (self._array,), self._array)
        return ndarray(self._array.copy(order=order))

    def fill(self, value):
        _launch("fill", (), self._array)
        self._array.fill(_unwrap(value, "fill"))

    # --- reductions: one kernel each
    def _reduce(self, name, *args, **kwargs):
        kwargs = {k: v._array if isinstance(v, ndarray) else v for k, v in kwargs.items()}
        result = getattr(self._array, name)(*args, **kwargs)
        _launch_reduction("reduction", self._array, kwargs.get("axis"), numpy.asarray(result))
        return _wrap(result)

    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduce("sum", axis=axis, dtype=dtype, keepdims=keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduce("mean", axis=axis, dtype=dtype, keepdims=keepdims)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return self._reduce("var", axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return self._reduce("std", axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)

    def max(self, axis=None, out=None, keepdims=False):
        return self._reduce("max", axis=axis, keepdims=keepdims)

    def min(self, axis=None, out=None, keepdims=False):
        return self._reduce("min", axis=axis, keepdims=keepdims)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduce("prod", axis=axis, dtype=dtype, keepdims=keepdims)

    def argmax(self, axis=None, out=None, keepdims=False):
        return self._reduce("argmax", axis=axis, keepdims=keepdims)

    def argmin(self, axis=None, out=None, keepdims=False):
        return self._reduce("argmin", axis=axis, keepdims=keepdims)

    def any(self, axis=None, out=None, keepdims=False):
        return self._reduce("any", axis=axis, keepdims=keepdims)

    def all(self, axis=None, out=None, keepdims=False):
        return self._reduce("all", axis=axis, keepdims=keepdims)

    def clip(self, min=None, max=None):
        result = self._array.clip(_unwrap(min), _unwrap(max))
        _launch("elementwise", (self._array,), result)
        return ndarray(result)

    def dot(self, other):
        return matmul(self, other)

    # --- indexing
    def __getitem__(self, key):
        key, advanced, mask = _index(key)
        result = self._array[key]
        if mask:
            _sync("boolean-mask indexing (the result's size)")
        if advanced or mask:
            _launch("gather", (), result)
        return ndarray(result)

    def __setitem__(self, key, value):
        if isinstance(value, numpy.ndarray) and value.ndim > 0:
            if not (key is Ellipsis or key == slice(None)):
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill: the simulated GPU (as CuPy) "
                                 "copies a host array only into a whole array (x[...] = host_array); move it "
                                 "first with minivit.backend.asarray(...).")
            _copy_to_device(value.nbytes)
            self._array[...] = value
            return
        key, advanced, mask = _index(key)
        if mask:
            _sync("boolean-mask assignment")
        value = _unwrap(value, "assignment")
        _launch("scatter" if advanced or mask else "copy", (value,), self._array[key] if not (advanced or mask)
                else None)
        self._array[key] = value

    # --- operators: one elementwise kernel each
    def _binary(self, other, op):
        other = _unwrap(other)
        result = op(self._array, other)
        _launch("elementwise", (self._array, other), result)
        return _wrap(result)

    def _reflected(self, other, op):
        other = _unwrap(other)
        result = op(other, self._array)
        _launch("elementwise", (other, self._array), result)
        return _wrap(result)

    def _inplace(self, other, op):
        other = _unwrap(other)
        _launch("elementwise", (self._array, other), self._array)
        op(self._array, other, out=self._array)
        return self

    def __add__(self, o): return self._binary(o, numpy.add)
    def __radd__(self, o): return self._reflected(o, numpy.add)
    def __iadd__(self, o): return self._inplace(o, numpy.add)
    def __sub__(self, o): return self._binary(o, numpy.subtract)
    def __rsub__(self, o): return self._reflected(o, numpy.subtract)
    def __isub__(self, o): return self._inplace(o, numpy.subtract)
    def __mul__(self, o): return self._binary(o, numpy.multiply)
    def __rmul__(self, o): return self._reflected(o, numpy.multiply)
    def __imul__(self, o): return self._inplace(o, numpy.multiply)
    def __truediv__(self, o): return self._binary(o, numpy.true_divide)
    def __rtruediv__(self, o): return self._reflected(o, numpy.true_divide)
    def __itruediv__(self, o): return self._inplace(o, numpy.true_divide)
    def __floordiv__(self, o): return self._binary(o, numpy.floor_divide)
    def __rfloordiv__(self, o): return self._reflected(o, numpy.floor_divide)
    def __mod__(self, o): return self._binary(o, numpy.remainder)
    def __pow__(self, o): return self._binary(o, numpy.power)
    def __rpow__(self, o): return self._reflected(o, numpy.power)
    def __matmul__(self, o): return matmul(self, o)
    def __rmatmul__(self, o): return matmul(o, self)
    def __and__(self, o): return self._binary(o, numpy.bitwise_and)
    def __rand__(self, o): return self._reflected(o, numpy.bitwise_and)
    def __or__(self, o): return self._binary(o, numpy.bitwise_or)
    def __ror__(self, o): return self._reflected(o, numpy.bitwise_or)
    def __xor__(self, o): return self._binary(o, numpy.bitwise_xor)
    def __ixor__(self, o): return self._inplace(o, numpy.bitwise_xor)
    def __rshift__(self, o): return self._binary(o, numpy.right_shift)
    def __irshift__(self, o): return self._inplace(o, numpy.right_shift)
    def __lshift__(self, o): return self._binary(o, numpy.left_shift)
    def __lt__(self, o): return self._binary(o, numpy.less)
    def __le__(self, o): return self._binary(o, numpy.less_equal)
    def __gt__(self, o): return self._binary(o, numpy.greater)
    def __ge__(self, o): return self._binary(o, numpy.greater_equal)
    def __eq__(self, o): return self._binary(o, numpy.equal)
    def __ne__(self, o): return self._binary(o, numpy.not_equal)

    def __neg__(self):
        _launch("elementwise", (self._array,), self._array)
        return ndarray(-self._array)

    def __pos__(self):
        return self

    def __abs__(self):
        _launch("elementwise", (self._array,), self._array)
        return ndarray(numpy.abs(self._array))

    def __invert__(self):
        _launch("elementwise", (self._array,), self._array)
        return ndarray(~self._array)


def _index(key):
    """(NumPy key, advanced?, boolean mask?) for an index; device index arrays unwrapped, host ones refused."""
    parts = key if isinstance(key, tuple) else (key,)
    unwrapped, advanced, mask = [], False, False
    for part in parts:
        if isinstance(part, ndarray):
            advanced = True
            mask = mask or part.dtype == numpy.bool_
            unwrapped.append(part._array)
        elif isinstance(part, numpy.ndarray):
            raise TypeError("The simulated GPU (as CuPy) does not index device arrays with host arrays: move the "
                            "index with minivit.backend.asarray(...) first.")
        elif isinstance(part, list):
            raise TypeError("Index device arrays with device arrays, not lists (minivit.backend.asarray(...)).")
        else:
            unwrapped.append(part)
    key = tuple(unwrapped) if isinstance(key, tuple) else unwrapped[0]
    return key, advanced, mask


# --- the namespace: only what CuPy implements ---------------------------------------------------------

float16, float32, float64 = numpy.float16, numpy.float32, numpy.float64
int8, int16, int32, int64, uint8 = numpy.int8, numpy.int16, numpy.int32, numpy.int64, numpy.uint8
uint16, uint32, uint64 = numpy.uint16, numpy.uint32, numpy.uint64
bool_ = numpy.bool_
floating, integer, number = numpy.floating, numpy.integer, numpy.number
dtype = numpy.dtype
newaxis = None
pi, e, inf, nan = math.pi, math.e, math.inf, math.nan
issubdtype, result_type, can_cast, finfo, iinfo = (numpy.issubdtype, numpy.result_type, numpy.can_cast,
                                                   numpy.finfo, numpy.iinfo)


def asarray(values, dtype=None, order=None):
    """Host data to the device (one copy across the bus); a device array stays (cast if asked)."""
    if isinstance(values, ndarray):
        return values if dtype is None else values.astype(dtype, copy=False)
    host = numpy.asarray(values, dtype=dtype, order=order)
    _copy_to_device(host.nbytes)
    return ndarray(host.copy())


def array(values, dtype=None, copy=True, order="K"):
    if isinstance(values, ndarray):
        if copy or (dtype is not None and numpy.dtype(dtype) != values.dtype):
            result = numpy.array(values._array, dtype=dtype, copy=True, order=order)
            _launch("copy", (values._array,), result)
            return ndarray(result)
        return values
    return asarray(values, dtype=dtype)


def ascontiguousarray(a, dtype=None):
    a = asarray(a, dtype)
    if a.flags.c_contiguous:
        return a
    _launch("copy", (a._array,), a._array)
    return ndarray(numpy.ascontiguousarray(a._array))


def asnumpy(a) -> numpy.ndarray:
    return a.get() if isinstance(a, ndarray) else numpy.asarray(a)


def get_array_module(*arrays):
    return sys.modules["minivit.sim"] if any(isinstance(a, ndarray) for a in arrays) else numpy


def empty(shape, dtype=float64, order="C"):
    allocate = numpy.empty if _counters.arithmetic else numpy.zeros  # (costs_only: no garbage values)
    return ndarray(allocate(shape, dtype=dtype, order=order))


def empty_like(a, dtype=None, shape=None):
    allocate = numpy.empty_like if _counters.arithmetic else numpy.zeros_like
    return ndarray(allocate(_unwrap(a), dtype=dtype, shape=shape))


def _filled(kind, array):
    _launch(kind, (), array)
    return ndarray(array)


def zeros(shape, dtype=float64, order="C"):
    return _filled("fill", numpy.zeros(shape, dtype=dtype, order=order))


def zeros_like(a, dtype=None, shape=None):
    return _filled("fill", numpy.zeros_like(_unwrap(a), dtype=dtype, shape=shape))


def ones(shape, dtype=float64):
    return _filled("fill", numpy.ones(shape, dtype=dtype))


def ones_like(a, dtype=None, shape=None):
    return _filled("fill", numpy.ones_like(_unwrap(a), dtype=dtype, shape=shape))


def full(shape, fill_value, dtype=None):
    return _filled("fill", numpy.full(shape, _unwrap(fill_value), dtype=dtype))


def full_like(a, fill_value, dtype=None):
    return _filled("fill", numpy.full_like(_unwrap(a), _unwrap(fill_value), dtype=dtype))


def arange(start, stop=None, step=None, dtype=None):
    return _filled("fill", numpy.arange(start, stop, step, dtype=dtype) if stop is not None
                   else numpy.arange(start, dtype=dtype))


def linspace(start, stop, num=50, endpoint=True, dtype=None):
    return _filled("fill", numpy.linspace(start, stop, num, endpoint=endpoint, dtype=dtype))


def eye(N, M=None, k=0, dtype=float64):
    return _filled("fill", numpy.eye(N, M, k, dtype=dtype))


def _elementwise(function):
    def run(*args, **kwargs):
        out = kwargs.pop("out", None)
        values = [_unwrap(a) for a in args]
        kwargs = {k: v._array if isinstance(v, ndarray) else v for k, v in kwargs.items()}
        if out is not None:
            _launch("elementwise", values, _unwrap(out))
            function(*values, out=_unwrap(out), **kwargs)
            return out
        result = function(*values, **kwargs)
        _launch("elementwise", values, result if isinstance(result, numpy.ndarray) else None)
        return _wrap(result)

    run.__name__ = function.__name__
    return run


for _name in ("exp", "log", "log1p", "expm1", "sqrt", "square", "tanh", "sin", "cos", "abs", "absolute", "sign",
              "floor", "ceil", "rint", "round", "negative", "reciprocal", "copysign", "maximum", "minimum", "power",
              "add", "subtract", "multiply", "divide", "true_divide", "isfinite", "isnan", "isinf", "logical_and",
              "logical_or", "logical_not", "equal", "not_equal", "less", "greater", "less_equal", "greater_equal",
              "clip", "where", "fmax", "fmin"):
    globals()[_name] = _elementwise(getattr(numpy, _name))
del _name


def _reduction(function):
    def run(a, *args, **kwargs):
        kwargs.pop("out", None)
        kwargs = {k: v._array if isinstance(v, ndarray) else v for k, v in kwargs.items()}
        source = _unwrap(a)
        result = function(source, *args, **kwargs)
        _launch_reduction("reduction", numpy.asarray(source), kwargs.get("axis", args[0] if args else None),
                          numpy.asarray(result))
        return _wrap(result)

    run.__name__ = function.__name__
    return run


for _name in ("sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin", "any", "all", "prod", "var", "std",
              "count_nonzero", "cumsum"):
    globals()[_name] = _reduction(getattr(numpy, _name))
del _name


def _view(function):
    def run(a, *args, **kwargs):
        source = _unwrap(a, "argument")
        result = function(source, *args, **kwargs)
        if not _is_view(result, source):
            _launch("copy", (source,), result)
        return ndarray(result)

    run.__name__ = function.__name__
    return run


for _name in ("reshape", "transpose", "moveaxis", "swapaxes", "expand_dims", "squeeze", "ravel"):
    globals()[_name] = _view(getattr(numpy, _name))
del _name


def broadcast_to(a, shape):
    return ndarray(numpy.broadcast_to(_unwrap(a), shape))


def concatenate(arrays, axis=0, dtype=None):
    result = numpy.concatenate([_unwrap(a, "array list") for a in arrays], axis=axis, dtype=dtype)
    _launch("copy", (result,), result)
    return ndarray(result)


def stack(arrays, axis=0):
    result = numpy.stack([_unwrap(a, "array list") for a in arrays], axis=axis)
    _launch("copy", (result,), result)
    return ndarray(result)


def pad(a, pad_width, mode="constant", **kwargs):
    result = numpy.pad(_unwrap(a), pad_width, mode=mode, **kwargs)
    _launch("copy", (), result, count=2)  # a filled array, then the input copied into its middle
    return ndarray(result)


def meshgrid(*arrays, indexing="xy"):
    grids = numpy.meshgrid(*(_unwrap(a) for a in arrays), indexing=indexing)
    _launch("copy", (), grids[0], count=len(arrays))
    return [ndarray(grid) for grid in grids]


def take(a, indices, axis=None):
    result = numpy.take(_unwrap(a), _unwrap(indices), axis=axis)
    _launch("gather", (), result)
    return ndarray(result)


def _operand_copies(a: numpy.ndarray) -> int:
    """1 if CuPy would copy this matmul operand first: its last two axes are neither C- nor F-ordered."""
    if a.ndim < 2:
        return 0
    rows, columns = a.strides[-2:]
    item = a.itemsize
    c_ordered = columns == item and rows >= a.shape[-1] * item
    f_ordered = rows == item and columns >= a.shape[-2] * item
    return 0 if (c_ordered or f_ordered or a.shape[-1] == 1 or a.shape[-2] == 1) else 1


def _product_shaped(a: numpy.ndarray, b: numpy.ndarray) -> numpy.ndarray:
    """Zeros of the product's shape and dtype (``counting.costs_only``: the values
    of a step without host reads never steer it, so a recording may skip the arithmetic)."""
    shape = numpy.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2] if a.ndim > 1 else 1,
                                                                  b.shape[-1] if b.ndim > 1 else 1)
    return numpy.zeros(shape, dtype=numpy.result_type(a, b))


def matmul(a, b, out=None):
    a_host, b_host = _unwrap(a, "operand"), _unwrap(b, "operand")
    for operand in (a_host, b_host):
        if _operand_copies(operand):
            _launch("copy", (operand,), operand)
    if out is not None:
        if _counters.arithmetic:
            numpy.matmul(a_host, b_host, out=_unwrap(out))
        _count(launches.matmul(a_host, b_host, _unwrap(out)))
        return out
    result = numpy.matmul(a_host, b_host) if _counters.arithmetic else _product_shaped(a_host, b_host)
    _count(launches.matmul(a_host, b_host, result))
    return ndarray(result)


dot = matmul


def einsum(subscripts, *operands):
    result = numpy.einsum(subscripts, *(_unwrap(o) for o in operands))
    _launch("matmul", [_unwrap(o) for o in operands], result, count=2)  # a transpose copy and a product, typically
    return ndarray(result)


def shares_memory(a, b):
    return numpy.shares_memory(_unwrap(a), _unwrap(b))


# --- random numbers ------------------------------------------------------------------------------------


class _Random:
    """cupy.random: ``default_rng(seed)`` gives a Generator that draws on the device."""

    class Generator:
        def __init__(self, seed=None):
            self._generator = numpy.random.default_rng(seed)

        def _draw(self, values):
            values = numpy.asarray(values)
            _launch("random", (), values)
            return ndarray(values)

        def random(self, size=None, dtype=float64):
            return self._draw(self._generator.random(size, dtype=dtype))

        def integers(self, low, high=None, size=None, dtype=int64, endpoint=False):
            return self._draw(self._generator.integers(low, high, size, dtype=dtype, endpoint=endpoint))

        def standard_normal(self, size=None, dtype=float64):
            return self._draw(self._generator.standard_normal(size, dtype=dtype))

        def uniform(self, low=0.0, high=1.0, size=None):
            return self._draw(self._generator.uniform(low, high, size))

        def beta(self, a, b, size=None):
            return self._draw(self._generator.beta(a, b, size))

    @staticmethod
    def default_rng(seed=None):
        return _Random.Generator(seed)


random = _Random()


# --- cupyx.scipy.special -------------------------------------------------------------------------------


class _Special:
    @staticmethod
    def erf(x):
        import scipy.special

        result = scipy.special.erf(_unwrap(x)) if _counters.arithmetic else numpy.zeros_like(_unwrap(x))
        _launch("elementwise", (_unwrap(x),), result)
        return _wrap(result)


special = _Special()


# --- cupy.cuda -------------------------------------------------------------------------------------------


class _Stream:
    ptr = 0  # the default stream's handle, as CuPy's Stream.ptr

    def synchronize(self):
        _sync("stream.synchronize()")


class _Cuda:
    class runtime:  # noqa: N801 (CuPy's name)
        @staticmethod
        def getDeviceCount():  # noqa: N802
            return 1

    class Device:
        def __init__(self, device=0):
            self.id = device

        def synchronize(self):
            _sync("Device.synchronize()")

    @staticmethod
    def get_current_stream():
        return _Stream()


cuda = _Cuda()


class _MemoryPool:
    """cupy.get_default_memory_pool(): the simulation does not track memory (all zeros)."""

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


_pool = _MemoryPool()


def get_default_memory_pool():
    return _pool
