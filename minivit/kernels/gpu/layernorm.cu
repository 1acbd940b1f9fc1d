// LayerNorm over the last axis, forward and backward: replaces minivit/ops/layernorm.py.
//   mu = mean(x), var = mean((x - mu)^2), rstd = 1 / sqrt(var + eps), xhat = (x - mu) rstd,
//   out = xhat gamma + beta
// Forward and the input gradient: one warp (32 threads) per row, the row's sums by shuffles.
// The parameter gradients (sums over all rows, per column): layernorm_backward_fused computes dx and
// each block's partial sums in one pass, and column_sums.cu's finishing pass adds them up (what
// gpu.py runs); layernorm_backward_input + layernorm_backward_params are the older two-kernel form
// (a column of 32 threads per block walking all the rows: few blocks, long loops), kept for D > 1024.
// S is the storage type (float16, float or double), T the type computed in (float for float16).

template <typename S>
__device__ void layernorm_forward(const S* x, const S* gamma, const S* beta, S* out, S* xhat, S* rstd,
                                  int rows, int D, double eps) {
    typedef typename compute_type<S>::type T;
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;  // a whole warp leaves together
    long long start = (long long)row * D;
    T sum = 0;
    for (int c = lane; c < D; c += 32) sum += load(x, start + c);
    T mean = warp_sum(sum) / T(D);
    T square_sum = 0;
    for (int c = lane; c < D; c += 32) {
        T centered = load(x, start + c) - mean;
        square_sum += centered * centered;
    }
    T r = rsqrt_(warp_sum(square_sum) / T(D) + T(eps));
    for (int c = lane; c < D; c += 32) {
        T normalized = (load(x, start + c) - mean) * r;
        store(xhat, start + c, normalized);
        store(out, start + c, normalized * load(gamma, c) + load(beta, c));
    }
    if (lane == 0) store(rstd, row, r);
}

// dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),  dxhat = dout gamma
template <typename S>
__device__ void layernorm_backward_input(const S* dout, const S* xhat, const S* rstd, const S* gamma, S* dx,
                                         int rows, int D) {
    typedef typename compute_type<S>::type T;
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    long long start = (long long)row * D;
    T sum_dxhat = 0, sum_dxhat_xhat = 0;
    for (int c = lane; c < D; c += 32) {
        T dxhat = load(dout, start + c) * load(gamma, c);
        sum_dxhat += dxhat;
        sum_dxhat_xhat += dxhat * load(xhat, start + c);
    }
    T mean_dxhat = warp_sum(sum_dxhat) / T(D);
    T mean_dxhat_xhat = warp_sum(sum_dxhat_xhat) / T(D);
    T r = load(rstd, row);
    for (int c = lane; c < D; c += 32) {
        T dxhat = load(dout, start + c) * load(gamma, c);
        store(dx, start + c, r * (dxhat - mean_dxhat - load(xhat, start + c) * mean_dxhat_xhat));
    }
}

// dgamma = sum over rows of dout xhat, dbeta = sum over rows of dout. Block (32, 32): threadIdx.x picks
// the column (reads are coalesced along a row), threadIdx.y a 32nd of the rows; sums in double.
template <typename S>
__device__ void layernorm_backward_params(const S* dout, const S* xhat, S* dgamma, S* dbeta, int rows, int D) {
    __shared__ double gamma_part[32][33];
    __shared__ double beta_part[32][33];
    int column = blockIdx.x * 32 + threadIdx.x;
    double g = 0.0, b = 0.0;
    if (column < D) {
        for (int row = threadIdx.y; row < rows; row += 32) {
            long long i = (long long)row * D + column;
            g += (double)load(dout, i) * (double)load(xhat, i);
            b += (double)load(dout, i);
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
        store(dgamma, column, (typename compute_type<S>::type)g_total);
        store(dbeta, column, (typename compute_type<S>::type)b_total);
    }
}

// dx as layernorm_backward_input, and in the same pass each block's share of dgamma and dbeta:
// a fixed grid of blocks, each warp walking rows (row = warp, warp + all warps, ...), each lane
// keeping the sums of its columns (c = lane + 32 j) in registers; the block adds its warps' sums
// in shared memory and writes one row of partial sums: partial is (blocks, 2 D), gamma's D then beta's.
// column_sums_finish (column_sums.cu) adds the blocks' rows: a small second pass, for both at once.
// Needs D <= 32 * MAX_COLUMNS_PER_LANE; dynamic shared memory 2 D sizeof(T).
#define MAX_COLUMNS_PER_LANE 32
template <typename S>
__device__ void layernorm_backward_fused(const S* dout, const S* xhat, const S* rstd, const S* gamma, S* dx,
                                         typename compute_type<S>::type* partial, int rows, int D) {
    typedef typename compute_type<S>::type T;
    extern __shared__ unsigned char shared_raw[];
    T* block_gamma = reinterpret_cast<T*>(shared_raw);
    T* block_beta = block_gamma + D;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        block_gamma[c] = 0;
        block_beta[c] = 0;
    }
    __syncthreads();
    int lane = threadIdx.x % 32;
    int warps = blockDim.x / 32;
    T g[MAX_COLUMNS_PER_LANE], b[MAX_COLUMNS_PER_LANE];
    int columns = (D + 31) / 32;
#pragma unroll
    for (int j = 0; j < MAX_COLUMNS_PER_LANE; j++) {
        g[j] = 0;
        b[j] = 0;
    }
    for (int row = blockIdx.x * warps + threadIdx.x / 32; row < rows; row += gridDim.x * warps) {
        long long start = (long long)row * D;
        T sum_dxhat = 0, sum_dxhat_xhat = 0;
        for (int c = lane; c < D; c += 32) {
            T d = load(dout, start + c);
            T dxhat = d * load(gamma, c);
            sum_dxhat += dxhat;
            sum_dxhat_xhat += dxhat * load(xhat, start + c);
        }
        T mean_dxhat = warp_sum(sum_dxhat) / T(D);
        T mean_dxhat_xhat = warp_sum(sum_dxhat_xhat) / T(D);
        T r = load(rstd, row);
#pragma unroll
        for (int j = 0; j < MAX_COLUMNS_PER_LANE; j++) {
            int c = lane + 32 * j;
            if (j < columns && c < D) {
                T d = load(dout, start + c);
                T x = load(xhat, start + c);
                store(dx, start + c, r * (d * load(gamma, c) - mean_dxhat - x * mean_dxhat_xhat));
                g[j] += d * x;
                b[j] += d;
            }
        }
    }
#pragma unroll
    for (int j = 0; j < MAX_COLUMNS_PER_LANE; j++) {
        int c = lane + 32 * j;
        if (j < columns && c < D) {
            atomicAdd(&block_gamma[c], g[j]);
            atomicAdd(&block_beta[c], b[j]);
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        partial[(long long)blockIdx.x * 2 * D + c] = block_gamma[c];
        partial[(long long)blockIdx.x * 2 * D + D + c] = block_beta[c];
    }
}

#define LAYERNORM_KERNELS(S, SUFFIX)                                                                            \
    extern "C" __global__ void layernorm_forward_##SUFFIX(const S* x, const S* gamma, const S* beta, S* out,    \
                                                          S* xhat, S* rstd, int rows, int D, double eps) {      \
        layernorm_forward<S>(x, gamma, beta, out, xhat, rstd, rows, D, eps);                                    \
    }                                                                                                           \
    extern "C" __global__ void layernorm_backward_input_##SUFFIX(const S* dout, const S* xhat, const S* rstd,   \
                                                                 const S* gamma, S* dx, int rows, int D) {      \
        layernorm_backward_input<S>(dout, xhat, rstd, gamma, dx, rows, D);                                      \
    }                                                                                                           \
    extern "C" __global__ void layernorm_backward_params_##SUFFIX(const S* dout, const S* xhat, S* dgamma,      \
                                                                  S* dbeta, int rows, int D) {                  \
        layernorm_backward_params<S>(dout, xhat, dgamma, dbeta, rows, D);                                       \
    }                                                                                                           \
    extern "C" __global__ void layernorm_backward_fused_##SUFFIX(                                               \
        const S* dout, const S* xhat, const S* rstd, const S* gamma, S* dx,                                     \
        compute_type<S>::type* partial, int rows, int D) {                                                      \
        layernorm_backward_fused<S>(dout, xhat, rstd, gamma, dx, partial, rows, D);                             \
    }
LAYERNORM_KERNELS(half_bits, f16)
LAYERNORM_KERNELS(float, f32)
LAYERNORM_KERNELS(double, f64)
