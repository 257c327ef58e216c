"""What the numba kernels of ``ssamba.nn`` share: numba set-up (vector width, thread pool, a
launch lock), block sizes, and float32 math written so that loops over it vectorise (exp, exp2,
softplus, sigmoid; a bit cast and stack scratch as LLVM intrinsics).

* ``exp`` is our own float32 polynomial built from plain arithmetic and a bit cast, because
  numba's ``math.exp`` is a scalar libm call that blocks vectorisation (pip's llvmlite has no
  SVML). The scans' decay ``exp(delta·A)`` is ``2^(delta·A·log2 e)`` with A pre-scaled, by a
  cheaper degree-5 polynomial (``_exp2_32``, relative error ~3e-7).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

import llvmlite.binding
import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


def _prefer_512_bit_vectors() -> None:
    """Let LLVM use full AVX-512 registers (it defaults to 256-bit on Intel server CPUs).

    The kernels below are sized for 16 float32 lanes; with 512-bit vectors the exp-bound inner
    loops run ~1.4x faster here. Only the vector-width tuning of the host's own feature set is
    changed, only when the user has not set NUMBA_CPU_FEATURES, and it only takes effect if
    numba has not compiled anything yet in this process (otherwise it is a harmless no-op).
    """
    if numba.config.CPU_FEATURES is not None:
        return
    features = llvmlite.binding.get_host_cpu_features().flatten()
    if "+avx512f" in features.split(","):
        numba.config.CPU_FEATURES = features + ",-prefer-256-bit"


_prefer_512_bit_vectors()


def _torch_openmp_is_global() -> bool:
    """True when torch runs its ops on a GNU-compatible OpenMP runtime that is in the process's
    global symbol scope (Linux pip/conda builds: torch loads it with RTLD_GLOBAL).

    numba's "omp" threading layer binds its ``GOMP_parallel`` calls through that global scope,
    so its parallel loops then run on torch's own OpenMP thread team: one pool of threads for
    torch's ops and numba's kernels, nothing left to busy-wait against the other's workers."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import torch
        if "ATen parallel backend: OpenMP" not in torch.__config__.parallel_info():
            return False
        ctypes.CDLL(None).GOMP_parallel  # noqa: B018  (raises AttributeError when absent)
    except (ImportError, OSError, AttributeError):
        return False
    return True


def _choose_threading_layer() -> str | None:
    """numba's thread pool, unless the user picked one with NUMBA_THREADING_LAYER.

    * "omp" when torch's OpenMP runtime is global (above): numba's workers are torch's. This makes
      the speed independent of import order: with the "workqueue" layer, a script that imported
      torch before ssamba (so ssamba's OMP_WAIT_POLICY=PASSIVE came too late) had torch's idle
      OpenMP threads spinning beside numba's workers on the same cores (SSAMBA-tiny ~1.4x slower).
    * else "workqueue": numba's own pool, which never spins (OpenMP from another runtime would
      busy-wait against torch's: a forward call at E=384, L=512 took 7.9 ms instead of 2.5 ms).
    Takes effect only if no numba parallel kernel has run yet in this process.
    """
    if "NUMBA_THREADING_LAYER" in os.environ:
        return None
    numba.config.THREADING_LAYER = "omp" if _torch_openmp_is_global() else "workqueue"
    return numba.config.THREADING_LAYER


_choose_threading_layer()
# numba's "workqueue" pool is not safe for concurrent launches from several Python threads, and
# launches below keep one order of work anyway: every kernel launch holds this lock (``launch``).
_LAUNCH_LOCK = threading.Lock()
_POOL: list[int] = []   # [pid that started numba's OpenMP pool (GNU OpenMP is not fork safe), or 0]
_POOL_LOCK = threading.Lock()
_SERIAL: dict = {}
# ssamba.bench sets a list here: every launch then appends (kernel name, seconds, argument shapes)
PROFILE: list | None = None


def _start_pool() -> None:
    """Start numba's threading layer once, keeping torch's thread count.

    With the "omp" layer numba's pool is torch's OpenMP team, and numba's start-up sets OpenMP's
    thread count to NUMBA_NUM_THREADS: torch's own setting is put back."""
    if _POOL:
        return
    with _POOL_LOCK:
        if _POOL:
            return
        import torch
        threads = torch.get_num_threads()
        numba.get_num_threads()          # starts the layer
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        _POOL.append(os.getpid() if numba.threading_layer() == "omp" else 0)


def _forked_child() -> bool:
    """True in a process forked after its parent started numba's OpenMP pool."""
    return _POOL[0] not in (0, os.getpid())


def _serial_version(kernel):
    """The same kernel compiled without threads (``prange`` runs as ``range``), for forked children."""
    if kernel not in _SERIAL:
        _SERIAL[kernel] = njit(kernel.py_func, parallel=False, fastmath=True, error_model="numpy")
    return _SERIAL[kernel]


def launch(kernel, *args) -> None:
    """Run a parallel numba kernel, serialised by ``_LAUNCH_LOCK``.

    GNU OpenMP cannot run a team in a process forked after its parent used one (numba would
    terminate such a child), so a child forked after the "omp" pool started runs the kernels on
    one thread instead (compiled on first use there)."""
    _start_pool()
    if _forked_child():
        kernel = _serial_version(kernel)
    with _LAUNCH_LOCK:
        if PROFILE is None:
            kernel(*args)
            return
        start = time.perf_counter()
        kernel(*args)
        PROFILE.append((kernel.py_func.__name__, time.perf_counter() - start,
                        tuple(getattr(a, "shape", None) for a in args)))


def worker_parts(items: int) -> int:
    """How many contiguous ranges of ``items`` to hand to numba's workers (one per thread)."""
    _start_pool()
    if _forked_child():
        return 1
    return max(1, min(numba.get_num_threads(), items))


_F = np.float32
_LOG2E = _F(1.4426950408889634)
_LN2_HI = _F(0.693359375)          # ln 2 split in two (Cody-Waite) so x - k·ln2 is exact
_LN2_LO = _F(-2.12194440e-4)
_EXP_MAX = _F(88.3762626647949)
_EXP_MIN = _F(-87.3365478515625)   # below this exp underflows to a denormal: clamp (≈1.2e-38)
# Minimax coefficients of (e^r - 1 - r) / r² on |r| <= ln2 / 2 (classic float32 expf set).
_P0 = _F(1.9875691500e-4)
_P1 = _F(1.3981999507e-3)
_P2 = _F(8.3334519073e-3)
_P3 = _F(4.1665795894e-2)
_P4 = _F(1.6666665459e-1)
_P5 = _F(5.0000001201e-1)
# Fit of 2^f on |f| <= 1/2 with 1 + ln2·f fixed (so decays close to 1, the long memories, stay exact
# to rounding); max relative error 3e-7 in float32.
_Q1 = _F(0.6931472)
_Q2 = _F(0.24022318)
_Q3 = _F(0.05550488)
_Q4 = _F(0.00966672)
_Q5 = _F(0.00133244)
_EXP2_MIN = _F(-126.0)             # 2^-126: smallest normal float32 (no denormals in the state)
_EXP2_MAX = _F(127.0)
_ONE = _F(1.0)
_HALF = _F(0.5)
_ZERO = _F(0.0)
_SOFTPLUS_THRESHOLD = _F(20.0)     # same threshold as torch.nn.functional.softplus
LANES = 16      # channels per block = float32 lanes of one AVX-512 register
SEGMENT = 32    # backward: states kept every SEGMENT steps, recomputed in between (in cache)
MAX_STATE = 64  # largest N: the backward keeps per-block state on the stack (sizes below are literal)
PREFETCH_ROWS = 8   # how many rows ahead the kernels' row walks prefetch (``_prefetch``)


@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (an LLVM bitcast, vectorisable)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if value.type.width != 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _stack_float32(typingctx, count):
    """Pointer to ``count`` (a literal) float32 on the stack. Stack scratch cannot alias the
    input/output arrays, so LLVM vectorises the loops that write it without runtime checks."""
    if not isinstance(count, types.IntegerLiteral):
        return None
    size = count.literal_value

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, ir.FloatType(), size=size)

    return types.CPointer(types.float32)(count), codegen


def _element_pointer(context, builder, array_type, array, indices, index_types):
    """Codegen: the address of array[indices] (a 2-D numba array value, its strides honoured)."""
    data = context.make_array(array_type)(context, builder, array)
    index = [context.cast(builder, value, kind, types.intp) for value, kind in zip(indices, index_types)]
    return cgutils.get_item_pointer2(context, builder, data.data, cgutils.unpack_tuple(builder, data.shape, 2),
                                     cgutils.unpack_tuple(builder, data.strides, 2), array_type.layout, index)


@intrinsic
def _prefetch(typingctx, array, i, j):
    """Hint the cache line of array[i, j] (2-D) into the caches (``llvm.prefetch``; no fault, no
    effect on results). The kernels walk their (rows, channels) arrays down one LANES-wide column
    block, one cache line per row several KiB apart, a pattern the hardware prefetchers follow
    poorly when the rows come from memory rather than cache."""
    if not (isinstance(array, types.Array) and array.ndim == 2 and isinstance(i, types.Integer)
            and isinstance(j, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1:], signature.args[1:])
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0i8")
        # read, keep in all cache levels, data cache
        builder.call(prefetch, [builder.bitcast(pointer, byte_pointer), ir.Constant(i32, 0), ir.Constant(i32, 3),
                                ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(array, i, j), codegen


@intrinsic
def _add_row_sums16(typingctx, tile, first, dest, row, col):
    """dest[row, col + i] += Σ_j tile[first + i, j] for i < 16, over the 16 lanes j of a
    C-contiguous (rows, 16) float32 tile.

    The 16 row sums come out of one transposing shuffle tree (pairs of vectors: 15 vector adds and
    30 shuffles in all) and are added to ``dest`` as one vector: what 16 horizontal sums (4 shuffles
    and 4 adds each) and 16 scalar read-modify-writes cost otherwise. ``dest``: a 2-D float32
    array whose last axis has unit stride (the caller checks). Written as LLVM vector IR, which
    LLVM lowers for any x86 vector width (AVX-512, AVX2, SSE)."""
    if not (isinstance(tile, types.Array) and tile.ndim == 2 and tile.layout == "C" and tile.dtype == types.float32
            and isinstance(dest, types.Array) and dest.ndim == 2 and dest.dtype == types.float32
            and all(isinstance(arg, types.Integer) for arg in (first, row, col))):
        return None

    def codegen(context, builder, signature, args):
        tile_type, first_type, dest_type, row_type, col_type = signature.args
        i64, vector = ir.IntType(64), ir.VectorType(ir.FloatType(), 16)
        start = _element_pointer(context, builder, tile_type, args[0], [args[1], ir.Constant(i64, 0)],
                                 [first_type, types.intp])
        rows = [builder.load(builder.gep(builder.bitcast(start, vector.as_pointer()), [ir.Constant(i64, i)]),
                             align=4) for i in range(16)]
        width = 16   # each vector holds 16 / width rows' partial sums, width lanes per row
        while len(rows) > 1:
            half = width // 2
            low = [block * width + lane for block in range(16 // width) for lane in range(half)]
            high = [index + half for index in low]
            masks = [ir.Constant(ir.VectorType(ir.IntType(32), 16), lanes + [16 + x for x in lanes])
                     for lanes in (low, high)]
            rows = [builder.fadd(builder.shuffle_vector(x, y, masks[0]), builder.shuffle_vector(x, y, masks[1]),
                                 flags=("fast",)) for x, y in zip(rows[0::2], rows[1::2])]
            width = half
        target = builder.bitcast(_element_pointer(context, builder, dest_type, args[2], args[3:], [row_type, col_type]),
                                 vector.as_pointer())
        builder.store(builder.fadd(builder.load(target, align=4), rows[0], flags=("fast",)), target, align=4)
        return context.get_dummy_value()

    return types.void(tile, first, dest, row, col), codegen


@njit(fastmath=True, cache=True, error_model="numpy")
def _exp32(x):
    """float32 exp, ~1 ulp on the clamped range, written so that loops over it vectorise."""
    x = min(max(x, _EXP_MIN), _EXP_MAX)
    k = np.floor(x * _LOG2E + _HALF)
    r = x - k * _LN2_HI - k * _LN2_LO
    r2 = r * r
    p = (((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5) * r2 + r + _ONE
    scale = _float32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))
    return p * scale


@njit(fastmath=True, cache=True, error_model="numpy")
def _exp2_32(x):
    """float32 2^x (max rel. error ~3e-7): the scans' decay exp(delta·A) = 2^(delta·A·log2 e).

    Cheaper than ``_exp32`` (no two-step ln 2 reduction, one polynomial degree less), which
    matters because this exponential is most of the scans' work.
    """
    x = min(max(x, _EXP2_MIN), _EXP2_MAX)
    k = np.rint(x)
    f = x - k
    p = ((((_Q5 * f + _Q4) * f + _Q3) * f + _Q2) * f + _Q1) * f + _ONE
    return p * _float32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))


@njit(fastmath=True, cache=True, error_model="numpy")
def _log1p_unit32(v):
    """float32 log(1 + v) for v in [0, 1]: 2·atanh(s), s = v / (2 + v) <= 1/3 (series to s^15)."""
    s = v / (_F(2.0) + v)
    s2 = s * s
    poly = _F(1.0 / 15.0)
    poly = poly * s2 + _F(1.0 / 13.0)
    poly = poly * s2 + _F(1.0 / 11.0)
    poly = poly * s2 + _F(1.0 / 9.0)
    poly = poly * s2 + _F(1.0 / 7.0)
    poly = poly * s2 + _F(1.0 / 5.0)
    poly = poly * s2 + _F(1.0 / 3.0)
    poly = poly * s2 + _ONE
    return _F(2.0) * s * poly


@njit(fastmath=True, cache=True, error_model="numpy")
def _softplus32(x):
    """log(1 + e^x) without overflow; identity above the threshold, as torch's softplus."""
    smooth = max(x, _ZERO) + _log1p_unit32(_exp32(-abs(x)))
    return x if x > _SOFTPLUS_THRESHOLD else smooth


@njit(fastmath=True, cache=True, error_model="numpy")
def _sigmoid32(x):
    return _ONE / (_ONE + _exp32(-x))


@njit(fastmath=True, cache=True, error_model="numpy")
def _softplus_sigmoid32(x):
    """(softplus(x), sigmoid(x)) from one exponential q = e^(-|x|): softplus as ``_softplus32``,
    sigmoid = 1 / (1 + q) for x >= 0 and q / (1 + q) below (the backward needs both per step)."""
    q = _exp32(-abs(x))
    smooth = max(x, _ZERO) + _log1p_unit32(q)
    sigmoid = (_ONE if x >= _ZERO else q) / (_ONE + q)
    return (x if x > _SOFTPLUS_THRESHOLD else smooth), sigmoid
