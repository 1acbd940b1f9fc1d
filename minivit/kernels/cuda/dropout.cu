// Inverted dropout's forward, given the uniform draws: replaces minivit/ops/dropout.py's
// dropout_forward after its rng.random(x.shape) (drawn by the same generator call, so the
// masks are the reference's): mask = (u >= p) / (1 - p), out = x * mask, in one launch
// instead of four.

template <typename T>
__device__ void dropout_apply(const T* x, const T* uniform, T* out, T* mask, double p, long long n) {
    T keep_scale = T(1.0 / (1.0 - p));
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        T m = uniform[i] >= T(p) ? keep_scale : T(0);
        mask[i] = m;
        out[i] = x[i] * m;
    }
}

extern "C" __global__ void dropout_apply_f32(const float* x, const float* uniform, float* out, float* mask, double p,
                                             long long n) {
    dropout_apply<float>(x, uniform, out, mask, p, n);
}
extern "C" __global__ void dropout_apply_f64(const double* x, const double* uniform, double* out, double* mask,
                                             double p, long long n) {
    dropout_apply<double>(x, uniform, out, mask, p, n);
}
