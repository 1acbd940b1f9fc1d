"""CUDA kernels run on the CPU, to test their index arithmetic where there is no GPU.

``build(file_name, wrappers)`` compiles a kernel file of minivit/kernels/gpu/ (with common.cuh, as NVRTC
compiles it) by the C++ compiler, after a prelude that makes CUDA's few names ordinary C++: one
``std::thread`` per CUDA thread, one block after another, ``__syncthreads`` and each warp's shuffles as
barriers, float16 through ``_Float16``. Shared memory starts filled with NaNs, so a read before a write
shows in the result. ``wrappers`` are C functions that launch a kernel (``launch(grid, block, body)``);
the library comes back for ``ctypes``. The simulated GPU runs each kernel's reference instead (its
stand-in); this runs the kernel's own source, slowly.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from minivit.kernels import nvrtc

PRELUDE = r"""
// CUDA on the CPU, for testing a kernel's index arithmetic: one std::thread per CUDA thread, one block at a
// time; __syncthreads and the warp shuffles are barriers. Only what minivit's kernels use.
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>
using std::max;
using std::min;
struct dim3 { unsigned x = 0, y = 0, z = 0; };
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
std::barrier<>* block_barrier = nullptr;
std::vector<std::barrier<>*> warp_barriers;
float warp_exchange[1024];
double warp_exchange_double[1024];
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffff) { warp_barriers[threadIdx.x / 32]->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int offset) {
    auto* barrier = warp_barriers[threadIdx.x / 32];
    warp_exchange[threadIdx.x] = v;
    barrier->arrive_and_wait();
    float other = warp_exchange[(threadIdx.x & ~31u) | ((threadIdx.x & 31u) ^ offset)];
    barrier->arrive_and_wait();
    return other;
}
inline double __shfl_xor_sync(unsigned, double v, int offset) {
    auto* barrier = warp_barriers[threadIdx.x / 32];
    warp_exchange_double[threadIdx.x] = v;
    barrier->arrive_and_wait();
    double other = warp_exchange_double[(threadIdx.x & ~31u) | ((threadIdx.x & 31u) ^ offset)];
    barrier->arrive_and_wait();
    return other;
}
inline float __int_as_float(int bits) { float f; std::memcpy(&f, &bits, 4); return f; }
inline double __longlong_as_double(long long bits) { double f; std::memcpy(&f, &bits, 8); return f; }
inline float half_to_float(unsigned short bits) { _Float16 h; std::memcpy(&h, &bits, 2); return (float)h; }
inline unsigned short float_to_half(float value) {
    _Float16 h = (_Float16)value;
    unsigned short bits;
    std::memcpy(&bits, &h, 2);
    return bits;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
alignas(16) unsigned char shared_raw[227 * 1024];

// Runs body() as grid blocks of block threads, one block after another.
inline void launch(int grid, int block, const std::function<void()>& body) {
    blockDim = {(unsigned)block, 1, 1};
    gridDim = {(unsigned)grid, 1, 1};
    for (int b = 0; b < grid; b++) {
        std::memset(shared_raw, 0xff, sizeof(shared_raw));  // NaNs: a read before a write shows
        std::barrier<> whole(block);
        block_barrier = &whole;
        std::vector<std::barrier<>*> warps;
        for (int w = 0; w < (block + 31) / 32; w++) warps.push_back(new std::barrier<>(std::min(32, block - 32 * w)));
        warp_barriers = warps;
        std::vector<std::thread> threads;
        for (int t = 0; t < block; t++) {
            threads.emplace_back([&, t, b] {
                threadIdx = {(unsigned)t, 0, 0};
                blockIdx = {(unsigned)b, 0, 0};
                body();
            });
        }
        for (auto& thread : threads) thread.join();
        for (auto* w : warps) delete w;
    }
}
"""

# common.cuh's float16 conversions are PTX instructions: the same conversions in C++
_PTX = {'asm("cvt.f32.f16 %0, %1;" : "=f"(value) : "h"(p[i]));': "value = half_to_float(p[i]);",
        'asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(value));': "bits = float_to_half(value);"}


def compiler() -> str | None:
    """A C++20 compiler (for std::barrier), or None."""
    return shutil.which("g++") or shutil.which("clang++")


def build(file_name: str, wrappers: str) -> ctypes.CDLL:
    source = nvrtc.source(file_name).replace(f'#line 1 "{file_name}"', "")
    for ptx, cpp in _PTX.items():
        source = source.replace(ptx, cpp)
    assert "asm(" not in source, f"{file_name} has PTX this prelude does not translate"
    full = PRELUDE + source.replace('extern "C" __global__', "__global__") + wrappers
    folder = Path(tempfile.gettempdir()) / "minivit-cuda-on-cpu"
    folder.mkdir(exist_ok=True)
    library = folder / f"{hashlib.sha256(full.encode()).hexdigest()[:16]}.so"
    if not library.exists():
        cpp = library.with_suffix(".cpp")
        cpp.write_text(full)
        built = subprocess.run([compiler(), "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-w", "-o",
                                str(library) + ".partial", str(cpp)], capture_output=True, text=True)
        assert built.returncode == 0, built.stderr[-3000:]
        Path(str(library) + ".partial").replace(library)
    return ctypes.CDLL(str(library))
