// Attention over all heads, fused: replaces minivit/ops/attention.py's attention_heads_forward and
// attention_heads_backward (no dropout) where a head's keys and values fit in shared memory.
//
// One block per (image, head), 4 warps. q, k and v are read where the qkv projection wrote them,
// side by side in one (B, T, 3D) array: head h's q of token i at [b, i, h d + c], its k at D further
// on, its v at 2D further on. No layout copies, no batched products, no separate softmax.
//
// Forward (for each query row i, one warp):
//     scores_j = q_i . k_j * scale      (lane j, j + 32, ...: K in shared memory)
//     p_ij     = softmax_j(scores)      (warp max and sum)
//     out_i    = sum_j p_ij v_j         (lane c, c + 32: V in shared memory)
// writes the context into (B, T, D) with the heads merged, and the probabilities (B, H, T, T)
// for the cache (the backward reads them; the model shows them).
//
// Backward, in four phases around one (T, T) matrix dS in shared memory and one (T, d) buffer:
//     A  buffer = V:  dp_ij = do_i . v_j,  dS_ij = p_ij (dp_ij - sum_j p_ij dp_ij) scale
//     B  buffer = dO: dV = P^T dO          (P read from the forward's probabilities)
//     C  buffer = K:  dQ = dS K
//     D  buffer = Q:  dK = dS^T Q
// writing dq, dk and dv into (B, T, 3D), where the qkv projection's backward reads them.
// Shared memory (dynamic): T (d + 1) + T (T + 1) + 4 d values of the compute type (float): 35 KB for
// T = 65, d = 64. The host checks it fits in 48 KB and T <= 32 MAX_TOKENS_PER_LANE.
// S is the storage type (float16 or float), T the compute type (float).

#define WARPS 4
#define MAX_TOKENS_PER_LANE 4

template <typename S>
__device__ void attention_forward_fused(const S* qkv, S* context, S* probs, int tokens, int heads, int d,
                                        float scale) {
    typedef typename compute_type<S>::type T;
    extern __shared__ unsigned char shared_raw[];
    T* keys = reinterpret_cast<T*>(shared_raw);  // (tokens, d + 1): padded, lanes read different rows
    T* values = keys + tokens * (d + 1);  // (tokens, d + 1)
    T* rows = values + tokens * (d + 1);  // per warp: its query (d), then its probabilities (tokens)
    int b = blockIdx.x / heads, h = blockIdx.x % heads;
    int D = heads * d;
    long long image = (long long)b * tokens * 3 * D;
    for (int index = threadIdx.x; index < tokens * d; index += blockDim.x) {
        int j = index / d, c = index % d;
        long long at = image + (long long)j * 3 * D + h * d + c;
        keys[j * (d + 1) + c] = load(qkv, at + D);
        values[j * (d + 1) + c] = load(qkv, at + 2 * D);
    }
    __syncthreads();
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    T* query = rows + warp * (d + tokens);
    T* p = query + d;
    for (int i = warp; i < tokens; i += WARPS) {
        long long row = image + (long long)i * 3 * D + h * d;
        for (int c = lane; c < d; c += 32) query[c] = load(qkv, row + c);
        __syncwarp();
        T score[MAX_TOKENS_PER_LANE];
        T largest = negative_infinity<T>();
#pragma unroll
        for (int t = 0; t < MAX_TOKENS_PER_LANE; t++) {
            int j = lane + 32 * t;
            score[t] = negative_infinity<T>();
            if (j < tokens) {
                T dot = 0;
                for (int c = 0; c < d; c++) dot += query[c] * keys[j * (d + 1) + c];
                score[t] = dot * scale;
                largest = score[t] > largest ? score[t] : largest;
            }
        }
        largest = warp_max(largest);
        T total = 0;
#pragma unroll
        for (int t = 0; t < MAX_TOKENS_PER_LANE; t++) {
            int j = lane + 32 * t;
            score[t] = j < tokens ? exp_(score[t] - largest) : T(0);
            total += score[t];
        }
        total = warp_sum(total);
        long long probs_row = ((long long)blockIdx.x * tokens + i) * tokens;
#pragma unroll
        for (int t = 0; t < MAX_TOKENS_PER_LANE; t++) {
            int j = lane + 32 * t;
            if (j < tokens) {
                T probability = score[t] / total;
                p[j] = probability;
                store(probs, probs_row + j, probability);
            }
        }
        __syncwarp();
        long long out_row = ((long long)b * tokens + i) * D + h * d;
        for (int c = lane; c < d; c += 32) {
            T sum = 0;
            for (int j = 0; j < tokens; j++) sum += p[j] * values[j * (d + 1) + c];
            store(context, out_row + c, sum);
        }
        __syncwarp();
    }
}

// q, k and v point into the packed (B, T, 3D) array at its offsets 0, D and 2D (the cache's views).
template <typename S>
__device__ void attention_backward_fused(const S* dcontext, const S* q, const S* k, const S* v, const S* probs,
                                         S* dqkv, int tokens, int heads, int d, float scale) {
    typedef typename compute_type<S>::type T;
    extern __shared__ unsigned char shared_raw[];
    T* buffer = reinterpret_cast<T*>(shared_raw);  // (tokens, d + 1): V, then dO, then K, then Q
    T* dscores = buffer + tokens * (d + 1);  // (tokens, tokens + 1)
    T* rows = dscores + tokens * (tokens + 1);  // per warp: its row of dO (d)
    int b = blockIdx.x / heads, h = blockIdx.x % heads;
    int D = heads * d;
    long long image = (long long)b * tokens * 3 * D;  // in qkv and dqkv
    long long context_image = (long long)b * tokens * D;  // in dcontext
    long long probs_head = (long long)blockIdx.x * tokens * tokens;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    // A: dS = P (dP - rowsum(P dP)) scale, dP = dO V^T
    for (int index = threadIdx.x; index < tokens * d; index += blockDim.x) {
        int j = index / d, c = index % d;
        buffer[j * (d + 1) + c] = load(v, image + (long long)j * 3 * D + h * d + c);
    }
    __syncthreads();
    T* dout_row = rows + warp * d;
    for (int i = warp; i < tokens; i += WARPS) {
        for (int c = lane; c < d; c += 32) {
            dout_row[c] = load(dcontext, context_image + (long long)i * D + h * d + c);
        }
        __syncwarp();
        T dp[MAX_TOKENS_PER_LANE], p[MAX_TOKENS_PER_LANE];
        T row_sum = 0;
#pragma unroll
        for (int t = 0; t < MAX_TOKENS_PER_LANE; t++) {
            int j = lane + 32 * t;
            dp[t] = 0;
            p[t] = 0;
            if (j < tokens) {
                for (int c = 0; c < d; c++) dp[t] += dout_row[c] * buffer[j * (d + 1) + c];
                p[t] = load(probs, probs_head + (long long)i * tokens + j);
                row_sum += p[t] * dp[t];
            }
        }
        row_sum = warp_sum(row_sum);
#pragma unroll
        for (int t = 0; t < MAX_TOKENS_PER_LANE; t++) {
            int j = lane + 32 * t;
            if (j < tokens) dscores[i * (tokens + 1) + j] = p[t] * (dp[t] - row_sum) * scale;
        }
        __syncwarp();
    }
    __syncthreads();

    // B: dV = P^T dO
    for (int index = threadIdx.x; index < tokens * d; index += blockDim.x) {
        int i = index / d, c = index % d;
        buffer[i * (d + 1) + c] = load(dcontext, context_image + (long long)i * D + h * d + c);
    }
    __syncthreads();
    for (int index = threadIdx.x; index < tokens * d; index += blockDim.x) {
        int j = index / d, c = index % d;
        T sum = 0;
        for (int i = 0; i < tokens; i++) {
            sum += load(probs, probs_head + (long long)i * tokens + j) * buffer[i * (d + 1) + c];
        }
        store(dqkv, image + (long long)j * 3 * D + 2 * D + h * d + c, sum);
    }
    __syncthreads();

    // C: dQ = dS K
    for (int index = threadIdx.x; index < tokens * d; index += blockDim.x) {
        int j = index / d, c = index % d;
        buffer[j * (d + 1) + c] = load(k, image + (long long)j * 3 * D + h * d + c);
    }
    __syncthreads();
    for (int index = threadIdx.x; index < tokens * d; index += blockDim.x) {
        int i = index / d, c = index % d;
        T sum = 0;
        for (int j = 0; j < tokens; j++) sum += dscores[i * (tokens + 1) + j] * buffer[j * (d + 1) + c];
        store(dqkv, image + (long long)i * 3 * D + h * d + c, sum);
    }
    __syncthreads();

    // D: dK = dS^T Q
    for (int index = threadIdx.x; index < tokens * d; index += blockDim.x) {
        int i = index / d, c = index % d;
        buffer[i * (d + 1) + c] = load(q, image + (long long)i * 3 * D + h * d + c);
    }
    __syncthreads();
    for (int index = threadIdx.x; index < tokens * d; index += blockDim.x) {
        int j = index / d, c = index % d;
        T sum = 0;
        for (int i = 0; i < tokens; i++) sum += dscores[i * (tokens + 1) + j] * buffer[i * (d + 1) + c];
        store(dqkv, image + (long long)j * 3 * D + D + h * d + c, sum);
    }
}

#define ATTENTION_KERNELS(S, SUFFIX)                                                                            \
    extern "C" __global__ void attention_forward_fused_##SUFFIX(const S* qkv, S* context, S* probs, int tokens, \
                                                                int heads, int d, float scale) {                \
        attention_forward_fused<S>(qkv, context, probs, tokens, heads, d, scale);                               \
    }                                                                                                           \
    extern "C" __global__ void attention_backward_fused_##SUFFIX(const S* dcontext, const S* q, const S* k,    \
                                                                 const S* v, const S* probs, S* dqkv,           \
                                                                 int tokens, int heads, int d, float scale) {   \
        attention_backward_fused<S>(dcontext, q, k, v, probs, dqkv, tokens, heads, d, scale);                   \
    }
ATTENTION_KERNELS(half_bits, f16)
ATTENTION_KERNELS(float, f32)
