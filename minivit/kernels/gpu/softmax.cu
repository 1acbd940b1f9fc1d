// Softmax over the last axis with a scale folded in, forward and backward: replaces
// minivit/ops/softmax.py for attention's scores (softmax(scale * x), the backward times scale).
//   y = exp(s - max(s)) / sum(exp(s - max(s))),  s = scale x
//   dx = scale y (dy - sum(dy y))
// One warp per row (attention's rows are 65 long: about 2 elements per thread). S is the
// storage type (float16, float or double), T the type computed in (float for float16).

template <typename S>
__device__ void softmax_forward(const S* x, S* out, int rows, int N, double scale) {
    typedef typename compute_type<S>::type T;
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    long long start = (long long)row * N;
    T row_max = negative_infinity<T>();
    for (int c = lane; c < N; c += 32) {
        T s = load(x, start + c) * T(scale);
        row_max = (s > row_max || s != s) ? s : row_max;
    }
    row_max = warp_max(row_max);
    T total = 0;
    for (int c = lane; c < N; c += 32) total += exp_(load(x, start + c) * T(scale) - row_max);
    T inverse = T(1) / warp_sum(total);
    for (int c = lane; c < N; c += 32) store(out, start + c, exp_(load(x, start + c) * T(scale) - row_max) * inverse);
}

template <typename S>
__device__ void softmax_backward(const S* dprobs, const S* probs, S* dx, int rows, int N, double scale) {
    typedef typename compute_type<S>::type T;
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    long long start = (long long)row * N;
    T dot = 0;
    for (int c = lane; c < N; c += 32) dot += load(dprobs, start + c) * load(probs, start + c);
    dot = warp_sum(dot);
    for (int c = lane; c < N; c += 32) {
        store(dx, start + c, T(scale) * load(probs, start + c) * (load(dprobs, start + c) - dot));
    }
}

#define SOFTMAX_KERNELS(S, SUFFIX)                                                                              \
    extern "C" __global__ void softmax_forward_##SUFFIX(const S* x, S* out, int rows, int N, double scale) {     \
        softmax_forward<S>(x, out, rows, N, scale);                                                             \
    }                                                                                                           \
    extern "C" __global__ void softmax_backward_##SUFFIX(const S* dprobs, const S* probs, S* dx, int rows, int N,\
                                                         double scale) {                                        \
        softmax_backward<S>(dprobs, probs, dx, rows, N, scale);                                                 \
    }
SOFTMAX_KERNELS(half_bits, f16)
SOFTMAX_KERNELS(float, f32)
SOFTMAX_KERNELS(double, f64)
