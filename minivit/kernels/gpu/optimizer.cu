// Optimizer updates over a whole flat parameter buffer, one thread per element, and the pieces of
// float16 training: replaces minivit/ops/updates.py (adamw_update, sgd_update, clip_by_norm,
// unscale_gradients, update_loss_scale).
// The learning-rate scale and the weight decay are per element (an array) or one number, as
// `*_per_element` says (then the array argument is not read). With `has_skip`, the update leaves
// everything as it was when skip[0] != 0 (a float16 step whose gradient overflowed).

template <typename T>
__device__ void adamw_update(T* data, const T* grad, T* exp_avg, T* exp_avg_sq,
                             const T* lr_scale, double lr_scale_value, int lr_scale_per_element,
                             const T* decay, double decay_value, int decay_per_element,
                             double lr, double beta1, double beta2, double eps, long long step,
                             const float* skip, int has_skip, long long n) {
    if (has_skip && skip[0] != 0.0f) return;
    double bias_correction1 = 1.0 - pow(beta1, (double)step);                  // as the reference: from the step
    double bias_correction2_sqrt = sqrt(1.0 - pow(beta2, (double)step));
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        T lr_i = T(lr) * (lr_scale_per_element ? lr_scale[i] : T(lr_scale_value));
        T wd_i = decay_per_element ? decay[i] : T(decay_value);
        T value = data[i] * (T(1) - lr_i * wd_i);                        // decoupled weight decay
        T g = grad[i];
        T m = T(beta1) * exp_avg[i] + T(1.0 - beta1) * g;                 // first moment
        T v = T(beta2) * exp_avg_sq[i] + T(1.0 - beta2) * g * g;          // second moment
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        T denom = sqrt_(v) / T(bias_correction2_sqrt) + T(eps);
        data[i] = value - (lr_i / T(bias_correction1)) * (m / denom);
    }
}

template <typename T>
__device__ void sgd_update(T* data, const T* grad, T* momentum_buffer,
                           const T* lr_scale, double lr_scale_value, int lr_scale_per_element,
                           const T* decay, double decay_value, int decay_per_element,
                           double lr, double momentum, int nesterov, int first_step,
                           const float* skip, int has_skip, long long n) {
    if (has_skip && skip[0] != 0.0f) return;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        T wd_i = decay_per_element ? decay[i] : T(decay_value);
        T g = grad[i] + wd_i * data[i];                                   // coupled weight decay
        T buffer = first_step ? g : T(momentum) * momentum_buffer[i] + g;
        momentum_buffer[i] = buffer;
        T update = nesterov ? g + T(momentum) * buffer : buffer;
        T lr_i = T(lr) * (lr_scale_per_element ? lr_scale[i] : T(lr_scale_value));
        data[i] -= lr_i * update;
    }
}

// Gradient clipping in three launches: each block adds the squares of its share (in double),
// one block adds the blocks' sums and works out the norm and the scale min(1, max_norm / (norm + 1e-6)),
// and every element is multiplied by the scale (read on the device: no host synchronisation).
template <typename T>
__device__ void squares_by_block(const T* g, double* block_sums, long long n) {
    extern __shared__ double scratch[];
    double sum = 0.0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        sum += (double)g[i] * (double)g[i];
    }
    double block_total = block_sum(sum, scratch);
    if (threadIdx.x == 0) block_sums[blockIdx.x] = block_total;
}

template <typename T>
__device__ void norm_and_scale(const double* block_sums, int blocks, double max_norm, T* norm, T* scale) {
    extern __shared__ double scratch[];
    double sum = 0.0;
    for (int i = threadIdx.x; i < blocks; i += blockDim.x) sum += block_sums[i];
    double total = block_sum(sum, scratch);
    if (threadIdx.x == 0) {
        double value = sqrt(total);
        norm[0] = (T)value;
        scale[0] = (T)fmin(1.0, max_norm / (value + 1e-6));
    }
}

template <typename T>
__device__ void scale_by(T* g, const T* scale, long long n) {
    T factor = scale[0];
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        g[i] *= factor;
    }
}

#define OPTIMIZER_KERNELS(T, SUFFIX)                                                                            \
    extern "C" __global__ void adamw_update_##SUFFIX(T* data, const T* grad, T* exp_avg, T* exp_avg_sq,        \
            const T* lr_scale, double lr_scale_value, int lr_scale_per_element, const T* decay,                 \
            double decay_value, int decay_per_element, double lr, double beta1, double beta2, double eps,       \
            long long step, const float* skip, int has_skip, long long n) {                                     \
        adamw_update<T>(data, grad, exp_avg, exp_avg_sq, lr_scale, lr_scale_value, lr_scale_per_element, decay, \
                        decay_value, decay_per_element, lr, beta1, beta2, eps, step, skip, has_skip, n);        \
    }                                                                                                           \
    extern "C" __global__ void sgd_update_##SUFFIX(T* data, const T* grad, T* momentum_buffer, const T* lr_scale,\
            double lr_scale_value, int lr_scale_per_element, const T* decay, double decay_value,                \
            int decay_per_element, double lr, double momentum, int nesterov, int first_step, const float* skip, \
            int has_skip, long long n) {                                                                        \
        sgd_update<T>(data, grad, momentum_buffer, lr_scale, lr_scale_value, lr_scale_per_element, decay,       \
                      decay_value, decay_per_element, lr, momentum, nesterov, first_step, skip, has_skip, n);    \
    }                                                                                                           \
    extern "C" __global__ void squares_by_block_##SUFFIX(const T* g, double* block_sums, long long n) {        \
        squares_by_block<T>(g, block_sums, n);                                                                  \
    }                                                                                                           \
    extern "C" __global__ void norm_and_scale_##SUFFIX(const double* block_sums, int blocks, double max_norm,  \
                                                       T* norm, T* scale) {                                    \
        norm_and_scale<T>(block_sums, blocks, max_norm, norm, scale);                                           \
    }                                                                                                           \
    extern "C" __global__ void scale_by_##SUFFIX(T* g, const T* scale, long long n) {                          \
        scale_by<T>(g, scale, n);                                                                               \
    }
OPTIMIZER_KERNELS(float, f32)
OPTIMIZER_KERNELS(double, f64)

// float16 training. The float16 gradients (scaled by the loss scale) into float32, divided by the
// scale; any infinity or NaN sets found_inf[0] (every thread that sees one writes the same 1).
extern "C" __global__ void unscale_gradients_f16(const half_bits* grad, const float* scale, float* out,
                                                 float* found_inf, long long n) {
    float inverse = 1.0f / scale[0];
    bool bad = false;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        float value = load(grad, i) * inverse;
        out[i] = value;
        bad = bad || !isfinite(value);
    }
    if (bad) found_inf[0] = 1.0f;
}

// After the step (one thread): back off on an overflow, grow after growth_interval clean steps, and
// clear found_inf for the next step (torch.amp.GradScaler's rule).
extern "C" __global__ void update_loss_scale(float* scale, int* growth_tracker, float* found_inf,
                                             double growth_factor, double backoff_factor, int growth_interval) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    if (found_inf[0] > 0.0f) {
        scale[0] = (float)(scale[0] * backoff_factor);
        growth_tracker[0] = 0;
    } else if (growth_tracker[0] + 1 >= growth_interval) {
        scale[0] = (float)(scale[0] * growth_factor);
        growth_tracker[0] = 0;
    } else {
        growth_tracker[0] += 1;
    }
    found_inf[0] = 0.0f;
}
