// Softmax over the last axis with a scale folded in, forward and backward: replaces
// minivit/ops/softmax.py for attention's scores (softmax(scale * x), the backward times scale).
//   y = exp(s - max(s)) / sum(exp(s - max(s))),  s = scale x
//   dx = scale y (dy - sum(dy y))
// One warp per row (attention's rows are 65 long: about 2 elements per thread).

template <typename T>
__device__ void softmax_forward(const T* x, T* out, int rows, int N, double scale) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    long long start = (long long)row * N;
    T row_max = negative_infinity<T>();
    for (int c = lane; c < N; c += 32) {
        T s = x[start + c] * T(scale);
        row_max = (s > row_max || s != s) ? s : row_max;
    }
    row_max = warp_max(row_max);
    T total = 0;
    for (int c = lane; c < N; c += 32) {
        T e = exp_(x[start + c] * T(scale) - row_max);
        out[start + c] = e;
        total += e;
    }
    T inverse = T(1) / warp_sum(total);
    for (int c = lane; c < N; c += 32) out[start + c] *= inverse;
}

template <typename T>
__device__ void softmax_backward(const T* dprobs, const T* probs, T* dx, int rows, int N, double scale) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    long long start = (long long)row * N;
    T dot = 0;
    for (int c = lane; c < N; c += 32) dot += dprobs[start + c] * probs[start + c];
    dot = warp_sum(dot);
    for (int c = lane; c < N; c += 32) dx[start + c] = T(scale) * probs[start + c] * (dprobs[start + c] - dot);
}

extern "C" __global__ void softmax_forward_f32(const float* x, float* out, int rows, int N, double scale) {
    softmax_forward<float>(x, out, rows, N, scale);
}
extern "C" __global__ void softmax_forward_f64(const double* x, double* out, int rows, int N, double scale) {
    softmax_forward<double>(x, out, rows, N, scale);
}
extern "C" __global__ void softmax_backward_f32(const float* dprobs, const float* probs, float* dx, int rows, int N,
                                                double scale) {
    softmax_backward<float>(dprobs, probs, dx, rows, N, scale);
}
extern "C" __global__ void softmax_backward_f64(const double* dprobs, const double* probs, double* dx, int rows,
                                                int N, double scale) {
    softmax_backward<double>(dprobs, probs, dx, rows, N, scale);
}
