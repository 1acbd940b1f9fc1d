// LayerNorm over the last axis, forward and backward: replaces minivit/ops/layernorm.py.
//   mu = mean(x), var = mean((x - mu)^2), rstd = 1 / sqrt(var + eps), xhat = (x - mu) rstd,
//   out = xhat gamma + beta
// Forward and the input gradient: one warp (32 threads) per row, the row's sums by shuffles.
// The parameter gradients (sums over all rows, per column) are a second kernel: a column of
// 32 threads per block walks the rows, and the block adds its threads' shares.

template <typename T>
__device__ void layernorm_forward(const T* x, const T* gamma, const T* beta, T* out, T* xhat, T* rstd,
                                  int rows, int D, double eps) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;  // a whole warp leaves together
    const T* x_row = x + (long long)row * D;
    T sum = 0;
    for (int c = lane; c < D; c += 32) sum += x_row[c];
    T mean = warp_sum(sum) / T(D);
    T square_sum = 0;
    for (int c = lane; c < D; c += 32) {
        T centered = x_row[c] - mean;
        square_sum += centered * centered;
    }
    T r = rsqrt_(warp_sum(square_sum) / T(D) + T(eps));
    for (int c = lane; c < D; c += 32) {
        T normalized = (x_row[c] - mean) * r;
        xhat[(long long)row * D + c] = normalized;
        out[(long long)row * D + c] = normalized * gamma[c] + beta[c];
    }
    if (lane == 0) rstd[row] = r;
}

// dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),  dxhat = dout gamma
template <typename T>
__device__ void layernorm_backward_input(const T* dout, const T* xhat, const T* rstd, const T* gamma, T* dx,
                                         int rows, int D) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    long long start = (long long)row * D;
    T sum_dxhat = 0, sum_dxhat_xhat = 0;
    for (int c = lane; c < D; c += 32) {
        T dxhat = dout[start + c] * gamma[c];
        sum_dxhat += dxhat;
        sum_dxhat_xhat += dxhat * xhat[start + c];
    }
    T mean_dxhat = warp_sum(sum_dxhat) / T(D);
    T mean_dxhat_xhat = warp_sum(sum_dxhat_xhat) / T(D);
    T r = rstd[row];
    for (int c = lane; c < D; c += 32) {
        T dxhat = dout[start + c] * gamma[c];
        dx[start + c] = r * (dxhat - mean_dxhat - xhat[start + c] * mean_dxhat_xhat);
    }
}

// dgamma = sum over rows of dout xhat, dbeta = sum over rows of dout. Block (32, 32): threadIdx.x picks
// the column (reads are coalesced along a row), threadIdx.y a 32nd of the rows; sums in double.
template <typename T>
__device__ void layernorm_backward_params(const T* dout, const T* xhat, T* dgamma, T* dbeta, int rows, int D) {
    __shared__ double gamma_part[32][33];
    __shared__ double beta_part[32][33];
    int column = blockIdx.x * 32 + threadIdx.x;
    double g = 0.0, b = 0.0;
    if (column < D) {
        for (int row = threadIdx.y; row < rows; row += 32) {
            long long i = (long long)row * D + column;
            g += (double)dout[i] * (double)xhat[i];
            b += (double)dout[i];
        }
    }
    gamma_part[threadIdx.y][threadIdx.x] = g;
    beta_part[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && column < D) {
        double g_total = 0.0, b_total = 0.0;
        for (int part = 0; part < 32; part++) {
            g_total += gamma_part[part][threadIdx.x];
            b_total += beta_part[part][threadIdx.x];
        }
        dgamma[column] = (T)g_total;
        dbeta[column] = (T)b_total;
    }
}

extern "C" __global__ void layernorm_forward_f32(const float* x, const float* gamma, const float* beta, float* out,
                                                 float* xhat, float* rstd, int rows, int D, double eps) {
    layernorm_forward<float>(x, gamma, beta, out, xhat, rstd, rows, D, eps);
}
extern "C" __global__ void layernorm_forward_f64(const double* x, const double* gamma, const double* beta,
                                                 double* out, double* xhat, double* rstd, int rows, int D,
                                                 double eps) {
    layernorm_forward<double>(x, gamma, beta, out, xhat, rstd, rows, D, eps);
}
extern "C" __global__ void layernorm_backward_input_f32(const float* dout, const float* xhat, const float* rstd,
                                                        const float* gamma, float* dx, int rows, int D) {
    layernorm_backward_input<float>(dout, xhat, rstd, gamma, dx, rows, D);
}
extern "C" __global__ void layernorm_backward_input_f64(const double* dout, const double* xhat, const double* rstd,
                                                        const double* gamma, double* dx, int rows, int D) {
    layernorm_backward_input<double>(dout, xhat, rstd, gamma, dx, rows, D);
}
extern "C" __global__ void layernorm_backward_params_f32(const float* dout, const float* xhat, float* dgamma,
                                                         float* dbeta, int rows, int D) {
    layernorm_backward_params<float>(dout, xhat, dgamma, dbeta, rows, D);
}
extern "C" __global__ void layernorm_backward_params_f64(const double* dout, const double* xhat, double* dgamma,
                                                         double* dbeta, int rows, int D) {
    layernorm_backward_params<double>(dout, xhat, dgamma, dbeta, rows, D);
}
