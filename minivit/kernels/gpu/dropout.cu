// Inverted dropout's forward, given the uniform draws: replaces minivit/ops/dropout.py's
// dropout_forward after its rng.random(x.shape) (drawn by the same generator call, so the
// masks are the reference's): mask = (u >= p) / (1 - p), out = x * mask, in one launch
// instead of four. S is the storage type (float16, float or double); the draws are in the
// compute type (float for float16: random generators draw float32 at the least).

template <typename S>
__device__ void dropout_apply(const S* x, const typename compute_type<S>::type* uniform, S* out, S* mask, double p,
                              long long n) {
    typedef typename compute_type<S>::type T;
    T keep_scale = T(1.0 / (1.0 - p));
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        T m = uniform[i] >= T(p) ? keep_scale : T(0);
        store(mask, i, m);
        store(out, i, load(x, i) * m);
    }
}

#define DROPOUT_KERNELS(S, SUFFIX)                                                                              \
    extern "C" __global__ void dropout_apply_##SUFFIX(const S* x, const compute_type<S>::type* uniform, S* out, \
                                                      S* mask, double p, long long n) {                         \
        dropout_apply<S>(x, uniform, out, mask, p, n);                                                          \
    }
DROPOUT_KERNELS(half_bits, f16)
DROPOUT_KERNELS(float, f32)
DROPOUT_KERNELS(double, f64)
