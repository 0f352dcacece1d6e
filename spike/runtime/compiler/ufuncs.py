"""numpy's own loops of ``expm1``, ``log1p``, ``exp``, ``log`` and ``tanh``, called
from compiled code.

Where numpy has SIMD versions of these functions (its SVML loops, on CPUs with
AVX-512), their last bits differ from the C library's for some arguments, and a LIF
neuron's spike can hang on that bit. So compiled code never calls the C library for
them: it calls the very loop numpy runs for ``np.expm1(x)`` on a contiguous float64
array. The loop is found in the ufunc object itself (``PyUFuncObject.functions``,
part of numpy's public C API), so the bits are numpy's, and nengo's, on every CPU by
construction, SIMD or not.

numpy's SIMD loops give each element the same bits wherever it sits in the array
(the tail of an array is computed with masked vector loads, not by another
algorithm), so a kernel may call a loop on the few arguments it needs (the neurons
that spiked) and get what nengo's call on all of them gives. They take the SIMD path
only for arrays that do not overlap in memory: kernels always pass separate input
and output buffers.

Loop addresses differ between processes (the library is loaded anywhere), so
compiled code receives them at run time in an array input (`loop_table`), never as
constants: code cached on disk by one process stays valid in the next.
"""

import ctypes
import functools

import numpy as np
from numba import types
from numba.extending import intrinsic

from spike.runtime.compiler.cache import load_pytensor

load_pytensor()

from llvmlite import ir  # noqa: E402
from pytensor.link.numba.dispatch.basic import numba_njit  # noqa: E402

UFUNCS = ("expm1", "log1p", "exp", "log", "tanh")
"""The functions in a `loop_table`, in order; `EXPM1` ... `TANH` are their positions."""
EXPM1, LOG1P, EXP, LOG, TANH = range(len(UFUNCS))


class LoopsUnavailable(RuntimeError):
    """numpy's loops cannot be used here; the message says why."""


class _UFuncHead(ctypes.Structure):
    """The first fields of numpy's ``PyUFuncObject`` (numpy/ufuncobject.h), the same
    in numpy 1.x and 2.x."""

    _fields_ = [
        ("ob_refcnt", ctypes.c_ssize_t),
        ("ob_type", ctypes.c_void_p),
        ("nin", ctypes.c_int),
        ("nout", ctypes.c_int),
        ("nargs", ctypes.c_int),
        ("identity", ctypes.c_int),
        ("functions", ctypes.POINTER(ctypes.c_void_p)),
        ("data", ctypes.POINTER(ctypes.c_void_p)),
        ("ntypes", ctypes.c_int),
        ("reserved1", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("types", ctypes.POINTER(ctypes.c_char)),
    ]


_LOOP = ctypes.CFUNCTYPE(
    None,
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.POINTER(ctypes.c_ssize_t),
    ctypes.POINTER(ctypes.c_ssize_t),
    ctypes.c_void_p,
)


def _float64_loop(ufunc):
    """``(function address, data address)`` of ``ufunc``'s ``d->d`` loop."""
    head = _UFuncHead.from_address(id(ufunc))
    if head.name is None or head.name.decode() != ufunc.__name__ or head.nargs != 2:
        raise LoopsUnavailable(f"numpy's {ufunc.__name__} is not laid out as expected")
    double = np.dtype(np.float64).num
    for i in range(head.ntypes):
        if [ord(head.types[i * 2 + k]) for k in range(2)] == [double, double]:
            return head.functions[i] or 0, head.data[i] or 0
    raise LoopsUnavailable(f"numpy's {ufunc.__name__} has no float64 loop")


def _call_with_ctypes(function, data, x):
    out = np.empty_like(x)
    args = (ctypes.c_void_p * 2)(x.ctypes.data, out.ctypes.data)
    dims = (ctypes.c_ssize_t * 1)(x.size)
    steps = (ctypes.c_ssize_t * 2)(8, 8)
    _LOOP(function)(args, dims, steps, ctypes.c_void_p(data or None))
    return out


_SAMPLES = {
    "expm1": (-1.0, 0.0),  # -delta_t / tau_rc
    "log1p": (-1.0, 1.0),  # -(v - 1) / (J - 1), 1 / (J - 1)
    "exp": (-30.0, 30.0),
    "log": (1e-6, 10.0),
    "tanh": (-5.0, 5.0),
}


@functools.lru_cache(maxsize=None)
def _table():
    rng = np.random.RandomState(0)
    table = []
    for name in UFUNCS:
        ufunc = getattr(np, name)
        function, data = _float64_loop(ufunc)
        low, high = _SAMPLES[name]
        x = rng.uniform(low, high, 4096)
        if not np.array_equal(_call_with_ctypes(function, data, x), ufunc(x), equal_nan=True):
            raise LoopsUnavailable(f"numpy's {name} loop, called directly, differs from numpy")
        table.extend((function, data))
    array = np.array(table, dtype=np.uint64)
    array.flags.writeable = False
    return array


def loop_table():
    """The addresses of numpy's float64 loops of `UFUNCS` in this process: a
    read-only uint64 array ``[function, data] * len(UFUNCS)``, checked once per
    process against numpy itself on a sample of arguments.

    Raises
    ------
    LoopsUnavailable
        If numpy's ufuncs are not laid out as expected, or a loop called directly
        does not give numpy's results.
    """
    return _table()


@intrinsic
def _call_loop(typingctx, function, data, src, dst, n):
    """Call the numpy loop at address ``function`` on ``n`` contiguous float64
    elements of ``src`` into ``dst`` (numpy's calling convention: argument
    pointers, the count, the strides, the loop's data)."""
    signature = types.void(function, data, src, dst, n)

    def codegen(context, builder, sig, args):
        function, data, src, dst, n = args
        byte_ptr = ir.IntType(8).as_pointer()
        intp = context.get_value_type(types.intp)
        int32 = ir.IntType(32)
        src_array = context.make_array(sig.args[2])(context, builder, src)
        dst_array = context.make_array(sig.args[3])(context, builder, dst)
        argv = builder.alloca(byte_ptr, size=ir.Constant(int32, 2))
        builder.store(builder.bitcast(src_array.data, byte_ptr), argv)
        builder.store(
            builder.bitcast(dst_array.data, byte_ptr), builder.gep(argv, [ir.Constant(int32, 1)])
        )
        count = builder.alloca(intp)
        builder.store(context.cast(builder, n, sig.args[4], types.intp), count)
        steps = builder.alloca(intp, size=ir.Constant(int32, 2))
        builder.store(ir.Constant(intp, 8), steps)
        builder.store(ir.Constant(intp, 8), builder.gep(steps, [ir.Constant(int32, 1)]))
        loop_type = ir.FunctionType(
            ir.VoidType(), [byte_ptr.as_pointer(), intp.as_pointer(), intp.as_pointer(), byte_ptr]
        )
        loop = builder.inttoptr(function, loop_type.as_pointer())
        builder.call(loop, [argv, count, steps, builder.inttoptr(data, byte_ptr)])
        return context.get_dummy_value()

    return signature, codegen


@numba_njit(inline="always")
def call(table, k, src, dst, n):
    """``dst[:n] = numpy.UFUNCS[k](src[:n])`` with numpy's own loop (``table`` from
    `loop_table`); ``src`` and ``dst`` contiguous float64 arrays that do not overlap."""
    if n > 0:
        _call_loop(table[2 * k], table[2 * k + 1], src, dst, n)


@functools.lru_cache(maxsize=None)
def numpy_math_is_simd():
    """Whether numpy's float64 ``expm1`` and ``log1p`` here differ from the C
    library's (SIMD versions of numpy's own) on a sample of the arguments LIF
    neurons pass: what the bench records about a machine. Compiled code gives
    nengo's bits either way."""
    import math

    rng = np.random.RandomState(0)
    x = -rng.uniform(0.0, 1.0, 2048)
    y = rng.uniform(-1.0, 1.0, 2048)
    return not (
        np.array_equal(np.expm1(x), [math.expm1(v) for v in x])
        and np.array_equal(np.log1p(y), [math.log1p(v) for v in y])
    )
