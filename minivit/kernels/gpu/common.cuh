// Helpers shared by minivit's CUDA kernels (included at the top of each source by minivit/kernels/nvrtc.py).
// Math functions by type, so that one template serves float and double.

// float16 storage: the raw 16 bits (NVRTC compiles without cuda_fp16.h), converted with the PTX
// instructions. Kernels load every value into its compute type (float for float16, else the
// storage type itself), compute there, and store back: float16 in memory, float32 arithmetic.
typedef unsigned short half_bits;
template <typename S> struct compute_type { typedef S type; };
template <> struct compute_type<half_bits> { typedef float type; };

__device__ __forceinline__ float load(const half_bits* p, long long i) {
    float value;
    asm("cvt.f32.f16 %0, %1;" : "=f"(value) : "h"(p[i]));
    return value;
}
__device__ __forceinline__ float load(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ double load(const double* p, long long i) { return p[i]; }
__device__ __forceinline__ void store(half_bits* p, long long i, float value) {
    half_bits bits;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(value));
    p[i] = bits;
}
__device__ __forceinline__ void store(float* p, long long i, float value) { p[i] = value; }
__device__ __forceinline__ void store(double* p, long long i, double value) { p[i] = value; }

__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float log_(float x) { return logf(x); }
__device__ __forceinline__ double log_(double x) { return log(x); }
__device__ __forceinline__ float erf_(float x) { return erff(x); }
__device__ __forceinline__ double erf_(double x) { return erf(x); }
__device__ __forceinline__ float tanh_(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_(double x) { return tanh(x); }
__device__ __forceinline__ float rsqrt_(float x) { return rsqrtf(x); }
__device__ __forceinline__ double rsqrt_(double x) { return rsqrt(x); }
__device__ __forceinline__ float sqrt_(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt_(double x) { return sqrt(x); }

// Infinity and NaN by their bits (NVRTC compiles without the C headers that define INFINITY, NAN).
template <typename T> __device__ __forceinline__ T negative_infinity();
template <> __device__ __forceinline__ float negative_infinity<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double negative_infinity<double>() {
    return __longlong_as_double(0xfff0000000000000ULL);
}
template <typename T> __device__ __forceinline__ T quiet_nan();
template <> __device__ __forceinline__ float quiet_nan<float>() { return __int_as_float(0x7fffffff); }
template <> __device__ __forceinline__ double quiet_nan<double>() { return __longlong_as_double(0x7ff8000000000000ULL); }

// The sum of v over the 32 threads of a warp, in every thread of it.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffff, v, offset);
    return v;
}

// The largest v of a warp, in every thread of it; a NaN anywhere makes it NaN (as NumPy's max).
template <typename T>
__device__ __forceinline__ T warp_max(T v) {
    for (int offset = 16; offset > 0; offset /= 2) {
        T other = __shfl_xor_sync(0xffffffff, v, offset);
        v = (other > v || other != other) ? other : v;
    }
    return v;
}

// The sum of v over a block of blockDim.x threads (a power of two, at most 1024), in thread 0.
// `scratch` holds blockDim.x values of shared memory.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
    scratch[threadIdx.x] = v;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) scratch[threadIdx.x] += scratch[threadIdx.x + stride];
        __syncthreads();
    }
    return scratch[0];
}
