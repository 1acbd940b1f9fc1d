// GELU, forward and backward: replaces minivit/ops/gelu.py (gelu_forward, gelu_backward).
//   exact: gelu(x) = x Phi(x),            Phi(x) = (1 + erf(x / sqrt 2)) / 2
//   tanh:  gelu(x) = x (1 + tanh(u)) / 2, u = sqrt(2/pi) (x + 0.044715 x^3)
// One thread per element, a grid-stride loop over any size: one launch instead of the
// reference's ~8 (each NumPy/CuPy operator is a kernel of its own).

template <typename T>
__device__ void gelu_forward(const T* x, T* out, long long n, int tanh_form) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        T v = x[i];
        if (tanh_form) {
            T u = T(0.7978845608028654) * (v + T(0.044715) * v * v * v);
            out[i] = T(0.5) * v * (T(1) + tanh_(u));
        } else {
            out[i] = v * T(0.5) * (T(1) + erf_(v * T(0.7071067811865476)));
        }
    }
}

// exact: d/dx [x Phi(x)] = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
// tanh:  (1 + t) / 2 + x (1 - t^2) / 2 * sqrt(2/pi) (1 + 3 * 0.044715 x^2),  t = tanh(u)
template <typename T>
__device__ void gelu_backward(const T* dout, const T* x, T* dx, long long n, int tanh_form) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        T v = x[i];
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
        dx[i] = dout[i] * slope;
    }
}

extern "C" __global__ void gelu_forward_f32(const float* x, float* out, long long n, int tanh_form) {
    gelu_forward<float>(x, out, n, tanh_form);
}
extern "C" __global__ void gelu_forward_f64(const double* x, double* out, long long n, int tanh_form) {
    gelu_forward<double>(x, out, n, tanh_form);
}
extern "C" __global__ void gelu_backward_f32(const float* dout, const float* x, float* dx, long long n, int tanh_form) {
    gelu_backward<float>(dout, x, dx, n, tanh_form);
}
extern "C" __global__ void gelu_backward_f64(const double* dout, const double* x, double* dx, long long n,
                                             int tanh_form) {
    gelu_backward<double>(dout, x, dx, n, tanh_form);
}
