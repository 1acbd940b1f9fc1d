"""A CUDA kernel's source run on this machine's CPU, warp by warp, so that a check can compare its
numbers without a GPU.

    HostKernel(source, name, parameters)   compile the kernel as C++ (the system's compiler, g++ or clang++)
    kernel.launch(grid, block, args)       run it: returns a HostRun (the arrays after the launch, the warp
                                           shuffles that warp 0 of block 0 made, or the error that stopped it)

How it runs. Each thread of a block is a coroutine (POSIX ``ucontext``) with its own stack; a scheduler
runs one at a time until it reaches a synchronisation (a ``__shfl_*_sync``, ``__syncwarp`` or
``__syncthreads``), then the next. When every lane of a warp waits at a shuffle, the values are
exchanged as the hardware exchanges them, all lanes in lockstep, and the lanes go on. So a warp
reduction computes exactly what it computes on a GPU (in the host's arithmetic: the same IEEE float
and double operations; CUDA's fused multiply-adds may round the last bit differently).

What it catches, by name (``HostRun.error``): a lane that reads or writes past the end of an array
(each array ends at a page the process may not touch: the fault names the array, the index, the block
and thread); lanes of a warp that meet different shuffles or leave before one their warp waits in;
a block whose threads wait at different barriers. Blocks run one after another, so ``__shared__``
arrays (static here) are each block's own. Not handled: dynamic shared memory (``extern __shared__``),
textures, cooperative groups, half types.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# CUDA's names for what the scheduler below implements, and for math that the host's libm names otherwise.
_PRELUDE = r"""
#include <ucontext.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct dim3 { unsigned x, y, z; };
static dim3 threadIdx, blockIdx, blockDim, gridDim;
static const int warpSize = 32;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __shared__ static
#define __launch_bounds__(...)
#define __ldg(pointer) (*(pointer))
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
#define __expf expf
#define __logf logf
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
template <typename T> static inline T atomicAdd(T* address, T value) {
    T old = *address; *address = old + value; return old; }

enum { MV_READY, MV_AT_WARP, MV_AT_BLOCK, MV_DONE };
enum { MV_XOR, MV_DOWN, MV_UP, MV_INDEX, MV_SYNCWARP };
static const char* mv_kind_names[] = {"xor", "down", "up", "index", "syncwarp"};
struct MvLane {
    ucontext_t context;
    int state, kind, argument, width, line;
    unsigned mask;
    unsigned long long value, result;
};
static MvLane* mv_lanes;
static int mv_current, mv_threads;
static ucontext_t mv_scheduler;

template <typename T> static T mv_shuffle(int line, int kind, unsigned mask, T value, int argument, int width) {
    static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
    MvLane& me = mv_lanes[mv_current];
    me.value = 0;
    memcpy(&me.value, &value, sizeof(T));
    me.kind = kind; me.mask = mask; me.argument = argument; me.width = width; me.line = line;
    me.state = MV_AT_WARP;
    swapcontext(&me.context, &mv_scheduler);
    T out;
    memcpy(&out, &mv_lanes[mv_current].result, sizeof(T));
    return out;
}
template <typename T> static T mv_xor(int line, unsigned mask, T v, int lane_mask, int width = 32) {
    return mv_shuffle(line, MV_XOR, mask, v, lane_mask, width); }
template <typename T> static T mv_down(int line, unsigned mask, T v, unsigned delta, int width = 32) {
    return mv_shuffle(line, MV_DOWN, mask, v, (int)delta, width); }
template <typename T> static T mv_up(int line, unsigned mask, T v, unsigned delta, int width = 32) {
    return mv_shuffle(line, MV_UP, mask, v, (int)delta, width); }
template <typename T> static T mv_index(int line, unsigned mask, T v, int source, int width = 32) {
    return mv_shuffle(line, MV_INDEX, mask, v, source, width); }
static void mv_syncwarp(int line, unsigned mask = 0xffffffffu) { mv_shuffle(line, MV_SYNCWARP, mask, 0, 0, 32); }
static void mv_syncthreads(int line) {
    MvLane& me = mv_lanes[mv_current];
    me.line = line; me.state = MV_AT_BLOCK;
    swapcontext(&me.context, &mv_scheduler);
}
#define __shfl_xor_sync(...) mv_xor(__LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) mv_down(__LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) mv_up(__LINE__, __VA_ARGS__)
#define __shfl_sync(...) mv_index(__LINE__, __VA_ARGS__)
#define __syncwarp(...) mv_syncwarp(__LINE__, ##__VA_ARGS__)
#define __syncthreads() mv_syncthreads(__LINE__)
#line 1 "kernel.cu"
"""

# The launcher: guarded arrays, the scheduler, the fault handler. {declarations} {read} {call} {write} are filled in.
_LAUNCHER = r"""
#line 1 "launcher"
struct MvArray { const char* name; char* data; long long count; int size; };
static MvArray mv_arrays[16];
static int mv_array_count;

static void mv_fail(const char* text) { fputs(text, stderr); fflush(stderr); _exit(3); }

static void mv_fault(int, siginfo_t* info, void*) {
    char text[400];
    const char* address = (const char*)info->si_addr;
    int written = snprintf(text, sizeof text, "MINIVIT-FAULT block %u thread %u:", blockIdx.x, threadIdx.x);
    for (int a = 0; a < mv_array_count; a++) {
        const MvArray& array = mv_arrays[a];
        long long offset = address - array.data;
        if (offset >= array.count * array.size && offset < array.count * array.size + 65536) {
            snprintf(text + written, sizeof text - written, " array %s index %lld count %lld\n", array.name,
                     offset / array.size, array.count);
            mv_fail(text);
        }
    }
    snprintf(text + written, sizeof text - written, " address outside every array\n");
    mv_fail(text);
}

// ``count`` elements of ``size`` bytes that end where an inaccessible page begins; the bytes before
// them (the rest of their first page) hold NaNs, so a read before the start shows as NaN.
static char* mv_guarded(const char* name, long long count, int size) {
    long long page = sysconf(_SC_PAGESIZE), bytes = count * size;
    long long pages = (bytes + page - 1) / page + 1;
    char* base = (char*)mmap(0, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) mv_fail("MINIVIT-ERROR cannot map memory for an array\n");
    mprotect(base + (pages - 1) * page, page, PROT_NONE);
    char* data = base + (pages - 1) * page - bytes;
    for (char* p = base; p + 4 <= data; p += 4) { unsigned nan_bits = 0x7fc00000u; memcpy(p, &nan_bits, 4); }
    mv_arrays[mv_array_count++] = MvArray{name, data, count, size};
    return data;
}

static void mv_read(const char* folder, const char* name, char* data, long long bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.in", folder, name);
    FILE* file = fopen(path, "rb");
    if (!file || fread(data, 1, bytes, file) != (size_t)bytes) mv_fail("MINIVIT-ERROR cannot read an input\n");
    fclose(file);
}

static void mv_write(const char* folder, const char* name, const char* data, long long bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.out", folder, name);
    FILE* file = fopen(path, "wb");
    if (!file || fwrite(data, 1, bytes, file) != (size_t)bytes) mv_fail("MINIVIT-ERROR cannot write an output\n");
    fclose(file);
}

{declarations}

static void mv_thread_main() {
    {call}
    mv_lanes[mv_current].state = MV_DONE;
}

static int mv_warp_of(int t) { return t / 32; }

// Every waiting lane of one warp gets its value; 0 if the warp has no lane waiting at a shuffle.
static int mv_exchange(int warp, int first, int last, FILE* trace) {
    int waiting = -1;
    for (int t = first; t < last; t++) if (mv_lanes[t].state == MV_AT_WARP) { waiting = t; break; }
    if (waiting < 0) return 0;
    char text[400];
    for (int t = first; t < last; t++) {
        MvLane& lane = mv_lanes[t];
        if (lane.state == MV_AT_BLOCK) {
            snprintf(text, sizeof text, "MINIVIT-DIVERGED block %u warp %d: lane %d waits at __syncthreads "
                     "(line %d) while lane %d waits at a shuffle (line %d)\n", blockIdx.x, warp, t - first,
                     lane.line, waiting - first, mv_lanes[waiting].line);
            mv_fail(text);
        }
        if (lane.state != MV_AT_WARP) continue;
        if (lane.line != mv_lanes[waiting].line || lane.kind != mv_lanes[waiting].kind) {
            snprintf(text, sizeof text, "MINIVIT-DIVERGED block %u warp %d: lane %d waits at line %d, lane %d at "
                     "line %d\n", blockIdx.x, warp, waiting - first, mv_lanes[waiting].line, t - first, lane.line);
            mv_fail(text);
        }
        for (int other = first; other < last; other++) {
            if (((lane.mask >> (other - first)) & 1u) && mv_lanes[other].state != MV_AT_WARP) {
                snprintf(text, sizeof text, "MINIVIT-LEFT block %u warp %d: lane %d has returned, or waits "
                         "elsewhere, while lane %d waits at the shuffle on line %d whose mask names it\n",
                         blockIdx.x, warp, other - first, t - first, lane.line);
                mv_fail(text);
            }
        }
    }
    for (int t = first; t < last; t++) {
        MvLane& lane = mv_lanes[t];
        if (lane.state != MV_AT_WARP) continue;
        int lane_id = t - first, width = lane.width, group = lane_id / width * width, source = lane_id;
        if (lane.kind == MV_XOR) source = lane_id ^ lane.argument;
        else if (lane.kind == MV_DOWN) source = lane_id + lane.argument;
        else if (lane.kind == MV_UP) source = lane_id - lane.argument;
        else if (lane.kind == MV_INDEX) source = group + lane.argument % width;
        if (source < group || source >= group + width || first + source >= last) source = lane_id;
        MvLane& giver = mv_lanes[first + source];
        if (giver.state != MV_AT_WARP) {
            snprintf(text, sizeof text, "MINIVIT-LEFT block %u warp %d: lane %d reads lane %d, which has returned\n",
                     blockIdx.x, warp, lane_id, source);
            mv_fail(text);
        }
        lane.result = giver.value;
    }
    if (trace && blockIdx.x == 0 && warp == 0)
        fprintf(trace, "%s %d\n", mv_kind_names[mv_lanes[waiting].kind], mv_lanes[waiting].argument);
    for (int t = first; t < last; t++) if (mv_lanes[t].state == MV_AT_WARP) mv_lanes[t].state = MV_READY;
    return 1;
}

int main(int argc, char** argv) {
    if (argc < 5) mv_fail("MINIVIT-ERROR usage: kernel FOLDER GRID BLOCK arguments...\n");
    const char* folder = argv[1];
    gridDim = dim3{(unsigned)atoi(argv[2]), 1, 1};
    blockDim = dim3{(unsigned)atoi(argv[3]), 1, 1};
    char** values = argv + 4;
    (void)values;
    {read}
    static char alternate_stack[65536];
    stack_t stack = {};
    stack.ss_sp = alternate_stack; stack.ss_size = sizeof alternate_stack;
    sigaltstack(&stack, 0);
    struct sigaction action = {};
    action.sa_sigaction = mv_fault; action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &action, 0);
    sigaction(SIGBUS, &action, 0);
    char trace_path[4096];
    snprintf(trace_path, sizeof trace_path, "%s/trace.txt", folder);
    FILE* trace = fopen(trace_path, "w");
    mv_threads = blockDim.x;
    mv_lanes = (MvLane*)calloc(mv_threads, sizeof(MvLane));
    const size_t stack_size = 256 * 1024;
    char* stacks = (char*)malloc(stack_size * mv_threads);
    for (unsigned block = 0; block < gridDim.x; block++) {
        blockIdx = dim3{block, 0, 0};
        for (int t = 0; t < mv_threads; t++) {
            getcontext(&mv_lanes[t].context);
            mv_lanes[t].context.uc_stack.ss_sp = stacks + t * stack_size;
            mv_lanes[t].context.uc_stack.ss_size = stack_size;
            mv_lanes[t].context.uc_link = &mv_scheduler;
            makecontext(&mv_lanes[t].context, mv_thread_main, 0);
            mv_lanes[t].state = MV_READY;
        }
        for (;;) {
            for (int t = 0; t < mv_threads; t++) {
                if (mv_lanes[t].state != MV_READY) continue;
                mv_current = t;
                threadIdx = dim3{(unsigned)t, 0, 0};
                swapcontext(&mv_scheduler, &mv_lanes[t].context);
            }
            int done = 1, moved = 0;
            for (int t = 0; t < mv_threads; t++) done &= mv_lanes[t].state == MV_DONE;
            if (done) break;
            for (int first = 0; first < mv_threads; first += 32) {
                int last = first + 32 < mv_threads ? first + 32 : mv_threads;
                moved |= mv_exchange(mv_warp_of(first), first, last, trace);
            }
            if (moved) continue;
            for (int t = 0; t < mv_threads; t++) if (mv_lanes[t].state == MV_AT_BLOCK) mv_lanes[t].state = MV_READY;
        }
    }
    fclose(trace);
    {write}
    return 0;
}
"""

_C_TYPES = {"float": np.float32, "double": np.float64, "int": np.int32, "long long": np.int64,
            "unsigned": np.uint32, "unsigned int": np.uint32}


@dataclass
class HostRun:
    """What one launch on the host left: ``arrays`` (every pointer argument, by name, after the launch),
    ``shuffles`` [(kind, argument), ...] that warp 0 of block 0 made in order (kind: xor, down, up, index,
    syncwarp), and ``error``: None, or what stopped it (``fault`` holds {"array", "index", "count",
    "block", "thread"} when a thread touched memory past an array's end)."""

    arrays: dict = field(default_factory=dict)
    shuffles: list = field(default_factory=list)
    error: str | None = None
    fault: dict | None = None


class HostCompileError(RuntimeError):
    """The kernel's source does not compile as C++ for the host (the message holds the compiler's errors)."""


def host_compiler() -> str | None:
    """The system's C++ compiler, or None."""
    return shutil.which("g++") or shutil.which("clang++") or shutil.which("c++")


class HostKernel:
    """``name`` from ``source``, compiled for this CPU. ``parameters``: the kernel's parameters in order,
    as (C type, name) with pointer types ending in "*": [("const float*", "x"), ("int", "rows"), ...]."""

    def __init__(self, source: str, name: str, parameters: list[tuple[str, str]]):
        compiler = host_compiler()
        if compiler is None:
            raise HostCompileError("this machine has no C++ compiler (g++, clang++)")
        self.parameters = parameters
        self.folder = tempfile.TemporaryDirectory(prefix="minivit-kernel-")
        declarations, reads, writes, arguments = [], [], [], []
        value = 0
        for c_type, parameter in parameters:
            base = c_type.replace("const", "").replace("*", "").strip()
            if base not in _C_TYPES:
                raise ValueError(f"parameter {parameter}: type {c_type!r} is not one of {', '.join(_C_TYPES)}")
            if c_type.endswith("*"):
                declarations.append(f"static {base}* mv_{parameter};")
                reads += [f"long long mv_count_{parameter} = atoll(values[{value}]);",
                          f"mv_{parameter} = ({base}*)mv_guarded(\"{parameter}\", mv_count_{parameter}, "
                          f"sizeof({base}));",
                          f"mv_read(folder, \"{parameter}\", (char*)mv_{parameter}, "
                          f"mv_count_{parameter} * sizeof({base}));"]
                writes.append(f"mv_write(folder, \"{parameter}\", (const char*)mv_{parameter}, "
                              f"mv_count_{parameter} * sizeof({base}));")
            else:
                declarations.append(f"static {base} mv_{parameter};")
                converter = "atof" if base in ("float", "double") else "atoll"
                reads.append(f"mv_{parameter} = ({base}){converter}(values[{value}]);")
            arguments.append(f"mv_{parameter}")
            value += 1
        launcher = (_LAUNCHER.replace("{declarations}", "\n".join(declarations))
                    .replace("{read}", "\n    ".join(reads)).replace("{write}", "\n    ".join(writes))
                    .replace("{call}", f"{name}({', '.join(arguments)});"))
        folder = Path(self.folder.name)
        (folder / "kernel.cpp").write_text(_PRELUDE + source + "\n" + launcher)
        self.executable = folder / "kernel"
        built = subprocess.run([compiler, "-std=c++17", "-O1", "-w", "-o", str(self.executable),
                                str(folder / "kernel.cpp"), "-lm"], capture_output=True, text=True)
        if built.returncode != 0:
            errors = [line for line in built.stderr.splitlines() if "error" in line and "kernel.cu" in line]
            raise HostCompileError("\n".join(errors[:5]) or built.stderr[-1500:])

    def launch(self, grid: int, block: int, arguments: dict, timeout: float = 60) -> HostRun:
        """Run the kernel on ``grid`` blocks of ``block`` threads (one-dimensional). ``arguments``: a value
        for every parameter, arrays as NumPy arrays (converted to the parameter's type)."""
        with tempfile.TemporaryDirectory(dir=self.folder.name) as run_folder:
            values, types = [], {}
            for c_type, parameter in self.parameters:
                base = c_type.replace("const", "").replace("*", "").strip()
                if c_type.endswith("*"):
                    array = np.ascontiguousarray(arguments[parameter], dtype=_C_TYPES[base]).ravel()
                    array.tofile(Path(run_folder) / f"{parameter}.in")
                    types[parameter] = (_C_TYPES[base], np.shape(arguments[parameter]))
                    values.append(str(array.size))
                else:
                    values.append(repr(float(arguments[parameter])) if base in ("float", "double")
                                  else str(int(arguments[parameter])))
            try:
                done = subprocess.run([str(self.executable), run_folder, str(grid), str(block), *values],
                                      capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                return HostRun(error=f"the launch did not finish in {timeout:.0f} s: a loop that never ends?")
            trace = Path(run_folder) / "trace.txt"
            shuffles = [(kind, int(argument)) for kind, argument in
                        (line.split() for line in trace.read_text().splitlines())] if trace.is_file() else []
            if done.returncode != 0:
                message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else \
                    f"the program stopped with status {done.returncode}"
                return HostRun(shuffles=shuffles, error=message, fault=_fault(message))
            arrays = {parameter: np.fromfile(Path(run_folder) / f"{parameter}.out", dtype=dtype).reshape(shape)
                      for parameter, (dtype, shape) in types.items()}
        return HostRun(arrays=arrays, shuffles=shuffles)


def _fault(message: str) -> dict | None:
    words = message.split()
    if not message.startswith("MINIVIT-FAULT") or "array" not in words:
        return None
    return {"block": int(words[2]), "thread": int(words[4].rstrip(":")), "array": words[words.index("array") + 1],
            "index": int(words[words.index("index") + 1]), "count": int(words[words.index("count") + 1])}
