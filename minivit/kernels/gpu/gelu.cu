// GELU, forward and backward: replaces minivit/ops/gelu.py (gelu_forward, gelu_backward).
//   exact: gelu(x) = x Phi(x),            Phi(x) = (1 + erf(x / sqrt 2)) / 2
//   tanh:  gelu(x) = x (1 + tanh(u)) / 2, u = sqrt(2/pi) (x + 0.044715 x^3)
// One thread per element, a grid-stride loop over any size: one launch instead of the
// reference's ~8 (each NumPy/CuPy operator is a kernel of its own). S is the storage type
// (float16, float or double), T the type computed in (float for float16).

template <typename S>
__device__ void gelu_forward(const S* x, S* out, long long n, int tanh_form) {
    typedef typename compute_type<S>::type T;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        T v = load(x, i);
        T result;
        if (tanh_form) {
            T u = T(0.7978845608028654) * (v + T(0.044715) * v * v * v);
            result = T(0.5) * v * (T(1) + tanh_(u));
        } else {
            result = v * T(0.5) * (T(1) + erf_(v * T(0.7071067811865476)));
        }
        store(out, i, result);
    }
}

// exact: d/dx [x Phi(x)] = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
// tanh:  (1 + t) / 2 + x (1 - t^2) / 2 * sqrt(2/pi) (1 + 3 * 0.044715 x^2),  t = tanh(u)
template <typename S>
__device__ void gelu_backward(const S* dout, const S* x, S* dx, long long n, int tanh_form) {
    typedef typename compute_type<S>::type T;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        T v = load(x, i);
        T slope;
        if (tanh_form) {
            T t = tanh_(T(0.7978845608028654) * (v + T(0.044715) * v * v * v));
            T du_dx = T(0.7978845608028654) * (T(1) + T(3) * T(0.044715) * v * v);
            slope = T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du_dx;
        } else {
            T cdf = T(0.5) * (T(1) + erf_(v * T(0.7071067811865476)));
            T pdf = T(0.3989422804014327) * exp_(T(-0.5) * v * v);
            slope = cdf + v * pdf;
        }
        store(dx, i, load(dout, i) * slope);
    }
}

#define GELU_KERNELS(S, SUFFIX)                                                                                 \
    extern "C" __global__ void gelu_forward_##SUFFIX(const S* x, S* out, long long n, int tanh_form) {           \
        gelu_forward<S>(x, out, n, tanh_form);                                                                  \
    }                                                                                                           \
    extern "C" __global__ void gelu_backward_##SUFFIX(const S* dout, const S* x, S* dx, long long n,             \
                                                      int tanh_form) {                                          \
        gelu_backward<S>(dout, x, dx, n, tanh_form);                                                            \
    }
GELU_KERNELS(half_bits, f16)
GELU_KERNELS(float, f32)
GELU_KERNELS(double, f64)
