// Softmax cross-entropy with label smoothing, averaged over the batch: replaces
// minivit/ops/losses.py (cross_entropy_forward, cross_entropy_backward).
//   q = (1 - eps) target + eps / K       (target: one-hot of a label, or given probabilities)
//   loss = -mean over rows of sum_k q_k log softmax(z)_k
// Forward: one block; each thread takes whole rows (K is small), then the block adds the rows'
// losses in a fixed order (deterministic). A label outside [0, K) makes its row's q NaN, so
// the loss is NaN and training stops loudly instead of learning from a wrong class.

template <typename T>
__device__ void cross_entropy_forward(const T* logits, const long long* labels, const T* soft_targets, int use_labels,
                                      T* log_probs, T* q, T* loss, int B, int K, double smoothing) {
    extern __shared__ double row_losses[];
    double my_loss = 0.0;
    for (int b = threadIdx.x; b < B; b += blockDim.x) {
        const T* z = logits + (long long)b * K;
        T row_max = z[0];
        for (int k = 1; k < K; k++) row_max = (z[k] > row_max || z[k] != z[k]) ? z[k] : row_max;
        T total = 0;
        for (int k = 0; k < K; k++) total += exp_(z[k] - row_max);
        T log_total = log_(total);
        long long label = use_labels ? labels[b] : 0;
        bool valid = !use_labels || (label >= 0 && label < K);
        for (int k = 0; k < K; k++) {
            T log_p = z[k] - row_max - log_total;
            T target = use_labels ? T(k == label ? 1 : 0) : soft_targets[(long long)b * K + k];
            T q_k = valid ? T(1.0 - smoothing) * target + T(smoothing / K) : quiet_nan<T>();
            log_probs[(long long)b * K + k] = log_p;
            q[(long long)b * K + k] = q_k;
            my_loss -= (double)(q_k * log_p);
        }
    }
    double total_loss = block_sum(my_loss, row_losses);
    if (threadIdx.x == 0) loss[0] = (T)(total_loss / B);
}

// dlogits = (softmax(z) - q) * dloss / B
template <typename T>
__device__ void cross_entropy_backward(const T* log_probs, const T* q, T* dlogits, long long n, double scale) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        dlogits[i] = (exp_(log_probs[i]) - q[i]) * T(scale);
    }
}

extern "C" __global__ void cross_entropy_forward_f32(const float* logits, const long long* labels,
                                                     const float* soft_targets, int use_labels, float* log_probs,
                                                     float* q, float* loss, int B, int K, double smoothing) {
    cross_entropy_forward<float>(logits, labels, soft_targets, use_labels, log_probs, q, loss, B, K, smoothing);
}
extern "C" __global__ void cross_entropy_forward_f64(const double* logits, const long long* labels,
                                                     const double* soft_targets, int use_labels, double* log_probs,
                                                     double* q, double* loss, int B, int K, double smoothing) {
    cross_entropy_forward<double>(logits, labels, soft_targets, use_labels, log_probs, q, loss, B, K, smoothing);
}
extern "C" __global__ void cross_entropy_backward_f32(const float* log_probs, const float* q, float* dlogits,
                                                      long long n, double scale) {
    cross_entropy_backward<float>(log_probs, q, dlogits, n, scale);
}
extern "C" __global__ void cross_entropy_backward_f64(const double* log_probs, const double* q, double* dlogits,
                                                      long long n, double scale) {
    cross_entropy_backward<double>(log_probs, q, dlogits, n, scale);
}
