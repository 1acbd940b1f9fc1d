"""Process settings that make the CPU kernels fast, applied on their first use.

Importing minivit changes nothing in the process. The first time the engine runs an
operation with the CPU fast kernels on (``minivit.dispatch``, fast mode, NumPy arrays:
the first model forward, whatever came before it), ``tune_on_first_use()`` applies the
settings below once and says so in one line (logger "minivit" at INFO where logging is
configured to show it, else one line on stderr). ``MINIVIT_TUNE=0`` in the environment refuses them:
the process is left as it is, automatically or when ``tune_process()`` is called. Applied or
refused, it works the same whether NumPy or torch was imported before minivit or not.

What it sets, and why (without them the kernels' threads and BLAS's wait for each other's
cores: a batch-1 forward is many times slower, a training step markedly slower; issue 24):

1. OpenBLAS's worker threads sleep soon after a matrix product. By default they spin
   for about 2^28 cycles (~0.1 s) waiting for the next product, taking the cores from
   the compiled loops that run between products. OpenBLAS reads its timeout
   (OPENBLAS_THREAD_TIMEOUT) when its threads start, so for each OpenBLAS already loaded
   (NumPy's, SciPy's) the timeout is re-read and the threads are restarted.
2. One pool of threads for the products and the compiled loops, where measured faster (Intel and
   AMD; MINIVIT_PRODUCTS=loops or =blas chooses): numba's OpenMP threading layer, whose threads spin
   briefly between loops as PyTorch's do, and the fast kernels' matrix products on those threads,
   a slab of rows each, through SciPy's OpenBLAS told to run each call on its caller's thread
   (``products_on_loop_threads()``; NumPy's OpenBLAS, what a learner's ``@`` and the reference
   operations use, is left as it is). Waking a sleeping thread costs tens of microseconds, more
   in a virtual machine (90 to 230 on a 2-core Xeon), and a step hands work from one pool to
   another at almost every operation: there the training step went from 0.54x-0.79x PyTorch's
   to 0.80x-0.92x, inference to level, 90-second training runs 1 to 18% faster
   (benchmarks/results/intel-xeon/cpu-threads-cifar-cpu-b128-icelake.txt); on a 2-core Zen 5 EPYC
   the training step 1.29x faster, inference 1.67x (cpu-threads-cifar-cpu-b128-zen5.txt). Elsewhere numba's
   "workqueue" layer, whose threads sleep between loops (OpenMP's spin would take the cores from
   OpenBLAS's threads). Only possible before the first parallel loop has run.
3. glibc's malloc keeps freed memory for reuse instead of handing large blocks back to
   the operating system: every step allocates and frees the same large activations, and
   each first touch of a fresh page is a page fault (measured: GELU's forward took twice
   as long on fresh pages).
What it does not change, but says: which matrix kernels each OpenBLAS runs. OpenBLAS's
wheels (NumPy's, SciPy's) carry kernels for several CPU generations and choose one from the
CPU when they load (on this project's AMD EPYCs: "SkylakeX", its AVX-512 kernels).
OPENBLAS_CORETYPE in the environment overrides that choice, and an environment that names
an older core on a CPU with AVX-512 (the development machine's sets Haswell, the AVX2
kernels) can halve the rate of every product: on an EPYC whose cores have full-width
AVX-512 units (most likely Zen 5) 190-220 against 355-465 GFLOP/s at cifar-tiny's shapes,
2 threads; on a Zen 4 EPYC, which runs AVX-512 on 256-bit halves, 190-197 either way
(docs/cpu.md). The line says so, with the fix; the setting is the environment's, so it is
left as it is.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

OPENBLAS_THREAD_TIMEOUT = 8  # 2^8 cycles of spinning before a worker sleeps (OpenBLAS clamps to 4..30)
REFUSE_VARIABLE = "MINIVIT_TUNE"

_done: dict | None = None  # what tune_process() did, once it ran (or was refused)


def refused() -> bool:
    """True when the environment says MINIVIT_TUNE=0 (or false, no, off): leave the process alone."""
    return os.environ.get(REFUSE_VARIABLE, "").strip().lower() in ("0", "false", "no", "off")


def tune_process() -> dict:
    """Apply the settings above to this process (once; later calls return the first answer);
    returns what was done, setting by setting. ``MINIVIT_TUNE=0`` refuses: nothing is changed."""
    global _done
    if _done is None:
        if refused():
            _done = {"refused": f"{REFUSE_VARIABLE}={os.environ[REFUSE_VARIABLE]}: process left as it is"}
        else:
            _done = {
                "openblas_thread_timeout": _openblas_sleep_sooner(),
                "numba_threading_layer": _numba_threading_layer(),
                "malloc": _keep_freed_memory(),
                "openblas_kernels": _openblas_kernels(),
            }
    return dict(_done)


def tune_on_first_use() -> None:
    """What ``minivit.dispatch`` calls when the CPU fast kernels are first used: ``tune_process()``,
    said once. Nothing happens (and nothing is said) when the process was tuned already, or when
    MINIVIT_TUNE=0 refuses."""
    if _done is not None:
        return
    done = tune_process()
    if "refused" not in done:
        _say_once(f"minivit: set this process up for the CPU kernels (OpenBLAS threads sleep after "
                  f"2^{OPENBLAS_THREAD_TIMEOUT} cycles; numba threading layer: {done['numba_threading_layer']}; "
                  f"malloc keeps freed memory; OpenBLAS kernels: {done['openblas_kernels']}). "
                  f"{REFUSE_VARIABLE}=0 leaves the process alone.")


def _say_once(message: str) -> None:
    """One line: to the "minivit" logger where the program configured logging to show it (INFO and a
    handler), else to stderr (what a notebook or a terminal shows without any configuration)."""
    logger = logging.getLogger("minivit")
    if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
        logger.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def limit_threads(count: int) -> dict:
    """Run this process's CPU work on ``count`` threads: OpenBLAS's, numba's and minivit's own pool.

    A rank of a distributed run calls it with its share of the machine's cores (N ranks of
    T threads each on N x T cores), so that the ranks do not take cores from one another.
    OpenBLAS libraries already loaded are told at once (``openblas_set_num_threads``, under
    the names NumPy's and SciPy's builds give it); ones loaded later read the environment
    variables set here. numba's parallel loops take ``numba.set_num_threads``. Returns what
    was done, part by part.
    """
    from minivit.kernels import cpu

    tune_on_first_use()  # before numba's threads start (numba.set_num_threads starts them)
    cpu.set_num_threads(count)
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MINIVIT_NUM_THREADS"):
        os.environ[variable] = str(count)  # for libraries loaded from now on
    told = []
    scipy_own = _scipy_openblas() if products_on_loop_threads() else None
    for path in _loaded_openblas_paths():
        library = ctypes.CDLL(path)  # the already loaded library: no second copy
        if scipy_own is not None and library._name == scipy_own._name:
            continue  # the products on numba's threads call it on one thread each: left at 1
        for name in ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_"):
            setter = getattr(library, name, None)
            if setter is not None:
                setter(ctypes.c_int(count))
                told.append(os.path.basename(path))
                break
    try:
        import numba

        numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
        numba_threads = f"{numba.get_num_threads()} threads"
    except ImportError:
        numba_threads = "numba not installed"
    return {"minivit": f"{count} threads", "openblas": ", ".join(told) or "none loaded yet (environment set)",
            "numba": numba_threads}


def _loaded_openblas_paths() -> list[str]:
    """Paths of the OpenBLAS libraries this process has loaded (NumPy and SciPy bundle their own)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:  # not Linux
        return []
    return sorted(paths)


def _openblas_sleep_sooner() -> str:
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ and os.environ["OPENBLAS_THREAD_TIMEOUT"] != str(
            OPENBLAS_THREAD_TIMEOUT):
        return f"left at the environment's {os.environ['OPENBLAS_THREAD_TIMEOUT']}"
    try:  # SciPy's own OpenBLAS (the linear layers' addmm uses it): loaded now, so that it is tuned too
        import scipy.linalg.blas  # noqa: F401
    except ImportError:
        pass
    done = []
    previous = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(OPENBLAS_THREAD_TIMEOUT)
    try:
        for path in _loaded_openblas_paths():
            library = ctypes.CDLL(path)  # the already loaded library: no second copy
            try:
                read_environment, shut_down = library.openblas_read_env, library.blas_thread_shutdown_
            except AttributeError:
                continue  # an OpenBLAS without these entry points: left as it is
            read_environment()  # takes the new timeout ...
            shut_down()  # ... and the worker threads, restarted by the next product, use it
            done.append(os.path.basename(path))
    finally:
        if previous is None:
            del os.environ["OPENBLAS_THREAD_TIMEOUT"]
        else:
            os.environ["OPENBLAS_THREAD_TIMEOUT"] = previous
    return f"2^{OPENBLAS_THREAD_TIMEOUT} cycles in {', '.join(done)}" if done else "no OpenBLAS loaded"


AVX512_CORES = ("skylakex", "cooperlake", "sapphirerapids")  # OpenBLAS cores whose kernels use AVX-512


def _corename(library) -> str | None:
    """The kernels an OpenBLAS chose (its core's name), or None where it does not say."""
    for name in ("gotoblas_corename", "scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                 "openblas_get_corename"):
        getter = getattr(library, name, None)
        if getter is not None:
            getter.restype = ctypes.c_char_p
            return getter().decode()
    return None


def _cpu_has_avx512() -> bool:
    """AVX-512 (the Skylake-X set) present and enabled by the operating system, as NumPy detected it."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # NumPy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return False
    return bool(features.get("AVX512_SKX"))


def _openblas_kernels() -> str:
    """Which kernels each loaded OpenBLAS chose, and how to get the AVX-512 ones where the
    environment holds a CPU that has them to older kernels."""
    cores = {os.path.basename(path): _corename(ctypes.CDLL(path)) for path in _loaded_openblas_paths()}
    if not cores:
        return "no OpenBLAS loaded"
    said = ", ".join(f"{core} in {name}" for name, core in cores.items())
    forced = os.environ.get("OPENBLAS_CORETYPE")
    slower = [core for core in cores.values() if core and core.lower() not in AVX512_CORES]
    if forced and slower and _cpu_has_avx512():
        said += (f", as OPENBLAS_CORETYPE={forced} in the environment asks, on a CPU with AVX-512: "
                 "unset OPENBLAS_CORETYPE for OpenBLAS's AVX-512 kernels (up to twice as fast, "
                 "on cores with full-width AVX-512 units)")
    return said


def _numba_threading_layer() -> str:
    """numba's OpenMP layer with the products moved onto its threads where it can load and SciPy has an
    OpenBLAS of its own (``_products_on_loop_threads``); else the workqueue layer, whose threads sleep."""
    try:
        import numba
        from numba.np.ufunc import parallel
    except ImportError:
        return "numba not installed"
    if getattr(parallel, "_is_initialized", False):
        return f"left at {numba.threading_layer()} (a parallel loop already ran)"
    if numba.config.THREADING_LAYER != "default":
        return f"left at the configured {numba.config.THREADING_LAYER}"
    wanted, why = _products_choice()
    moved = _products_on_loop_threads() if wanted else ""
    if moved:
        numba.config.THREADING_LAYER = "omp"
        return f"omp, the products on its threads ({why}; {moved})"
    numba.config.THREADING_LAYER = "workqueue"
    if wanted:
        why = "numba cannot load GNU OpenMP, or SciPy has no OpenBLAS of its own"
    return f"workqueue, the products on OpenBLAS's threads ({why})"


PRODUCTS_VARIABLE = "MINIVIT_PRODUCTS"  # "loops": the products on numba's threads; "blas": on OpenBLAS's own
PRODUCTS_CHOICES = ("loops", "blas")


def _products_choice() -> tuple[bool, str]:
    """(whether to move the products onto numba's threads, why). MINIVIT_PRODUCTS decides where it is set;
    else the CPU's maker: moved on Intel and AMD, where it was measured faster (docs/cpu.md), left
    elsewhere until measured there."""
    value = os.environ.get(PRODUCTS_VARIABLE, "").strip().lower()
    if value:
        if value not in PRODUCTS_CHOICES:
            raise ValueError(f"{PRODUCTS_VARIABLE}={os.environ[PRODUCTS_VARIABLE]!r} in the environment: use "
                             "'loops' (the matrix products on numba's threads, one pool) or 'blas' (on "
                             "OpenBLAS's own threads), or unset it to let the CPU decide.")
        return value == "loops", f"{PRODUCTS_VARIABLE}={value}"
    if _cpu_vendor() in ("GenuineIntel", "AuthenticAMD"):
        return True, "one pool, measured faster on Intel and AMD"
    return False, f"one pool is measured faster on Intel and AMD only; {PRODUCTS_VARIABLE}=loops tries it here"


def _cpu_vendor() -> str:
    """/proc/cpuinfo's vendor_id ("GenuineIntel", "AuthenticAMD"), or "" where there is none."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


def products_on_loop_threads() -> bool:
    """True when the fast kernels' matrix products run on numba's threads (``cpu_loops.matmul_slabs``...)."""
    loops = sys.modules.get("minivit.kernels.cpu_loops")  # not imported: no kernel ran, nothing moved
    return bool(loops is not None and loops.products_here)


def _scipy_openblas():
    """The OpenBLAS that SciPy bundles (its own copy, under scipy.libs; numba's np.dot calls it), or None."""
    try:
        import scipy
        import scipy.linalg.blas  # noqa: F401  (loads it)
    except ImportError:
        return None
    bundled = os.path.realpath(os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)), "scipy.libs"))
    for path in _loaded_openblas_paths():
        if os.path.realpath(path).startswith(bundled + os.sep):
            return ctypes.CDLL(path)
    return None


def _products_on_loop_threads() -> str:
    """Move the products onto numba's threads where it is possible; returns how, or "" where not.

    Needs numba's OpenMP layer (GNU OpenMP: libgomp) and an OpenBLAS of SciPy's own, told to run
    each product on its caller's thread alone: the numba threads each call it on their slab of
    rows. NumPy's OpenBLAS (what NumPy's ``@`` uses: the reference operations, a learner's code) is
    left as it is."""
    try:
        from numba.np.ufunc import omppool  # noqa: F401  (fails where libgomp is missing)

        from minivit.kernels import cpu_loops
    except ImportError:
        return ""
    library = _scipy_openblas()
    setter = next((getattr(library, name) for name in ("scipy_openblas_set_num_threads", "openblas_set_num_threads")
                   if library is not None and hasattr(library, name)), None)
    if setter is None:
        return ""
    setter(ctypes.c_int(1))
    cpu_loops.products_here = True
    return "SciPy's OpenBLAS on one thread per call"


def _keep_freed_memory() -> str:
    if not sys.platform.startswith("linux"):
        return "not Linux: left alone"
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    except (OSError, AttributeError):
        return "not glibc: left alone"
    return "freed memory kept (mmap threshold 32 MiB, no trimming)"
