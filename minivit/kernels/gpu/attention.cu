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

// ---------------------------------------------------------------------------------------------------------
// Version 2: the same two operations, tiled in registers (for T <= V2_MAX_TOKENS tokens, d <= 4 OUT_TX).
//
// Why: version 1 gives each query row to one warp, whose lanes walk the whole head dimension (and then
// the tokens) one shared-memory load per multiply-add: about two loads per FMA. On the H200 it ran at
// the speed of shared memory's load rate (benchmarks/results/gpu-h200-2026-12-04/check/suspects.md),
// eight to fifteen times slower than the arithmetic and memory traffic asked.
//
// Here each of a block's 128 threads owns a tile of the matrix it computes, and each value it loads
// from shared memory serves a whole row or column of its tile:
//     scores, S = Q K^T (T x T)   threads 8 x 16 (rows ty + 8a, a < 9; columns tx + 16b, b < 5): per step
//                                 along the head dimension 9 + 5 loads for 45 FMAs
//     outputs (T x d)             threads (128 / OUT_TX) x OUT_TX: rows oy + (128 / OUT_TX) a, columns
//                                 ox + OUT_TX b (b < 4). OUT_TX = 16 for d <= 64 (9 x 4 tiles), 4 for
//                                 d <= 16 (3 x 4 tiles: cifar-gpu's 12 heads of 16)
// The softmax runs in registers: a row of S lies in the 16 lanes of a half-warp (4 shuffles each way).
// Tiles are stored transposed where a thread walks a column (Q^T, K^T, V^T, dO^T) with an odd row
// length (T | 1), so that the 16 columns a half-warp reads fall into 16 different banks. Rows and
// columns past T are clamped to T - 1 for loading (computed, never stored).
//
// Shared memory, two regions of floats, reused phase by phase:
//     first  d (T | 1)           forward: Q^T, then V;   backward: dO^T, then K, then Q
//     second max(T, d) (T | 1)   forward: K^T, then P;   backward: P, then V^T, then dS
// 33.5 KB at T = 65, d = 64 (v1: 35 KB); 21 KB at d = 16.
//
// Backward, without a loop over all tokens per thread of one output element:
//     dV = P^T dO                 (P and dO^T in shared memory)
//     dP = dO V^T;  dS = P (dP - rowsum(P dP)) scale   (tiled like S; P at the thread's own places from
//                                 the forward's probabilities; the row sums over a half-warp)
//     dQ = dS K;  dK = dS^T Q     (dS in shared memory)
// q, k and v are read through strides: views of the packed (B, T, 3D) array (after a fused forward)
// or contiguous (B, H, T, d) copies (after the batched one); dq, dk, dv go into (B, T, 3D).

#define V2_THREADS 128
#define V2_MAX_TOKENS 72
#define SCORE_ROWS 9  // 72 / 8
#define SCORE_COLS 5  // ceil(72 / 16)
#define OUT_COLS 4
#define V2_MIN_BLOCKS 4  // blocks per SM the registers must allow (at most 128 a thread)

// max and sum over the 16 lanes of a half-warp (xor offsets below 16 stay in the half).
__device__ __forceinline__ float half_warp_max(float v) {
    for (int offset = 8; offset > 0; offset /= 2) {
        float other = __shfl_xor_sync(0xffffffff, v, offset);
        v = (other > v || other != other) ? other : v;
    }
    return v;
}
__device__ __forceinline__ float half_warp_sum(float v) {
    for (int offset = 8; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffff, v, offset);
    return v;
}

// Where an output tile's rows and columns lie: OUT_TX threads across the columns.
template <int OUT_TX>
struct OutputTile {
    static const int TY = V2_THREADS / OUT_TX;
    static const int ROWS = (V2_MAX_TOKENS + TY - 1) / TY;
    int ox, oy;
    __device__ OutputTile() : ox(threadIdx.x % OUT_TX), oy(threadIdx.x / OUT_TX) {}
    __device__ int row(int a) const { return oy + TY * a; }
    __device__ int column(int b) const { return ox + OUT_TX * b; }
};

// out[row, c] = sum_k left(row, k) right(k, c) for the thread's output tile, rows clamped to T - 1
// and columns to d - 1 for loading. left and right are functions of (index, k).
template <int OUT_TX, typename Left, typename Right>
__device__ __forceinline__ void output_tile_product(float (&acc)[OutputTile<OUT_TX>::ROWS][OUT_COLS], int inner,
                                                    int tokens, int d, Left left, Right right) {
    OutputTile<OUT_TX> tile;
    const int ROWS = OutputTile<OUT_TX>::ROWS;
    int rows[ROWS], columns[OUT_COLS];
#pragma unroll
    for (int a = 0; a < ROWS; a++) {
        rows[a] = min(tile.row(a), tokens - 1);
#pragma unroll
        for (int b = 0; b < OUT_COLS; b++) acc[a][b] = 0;
    }
#pragma unroll
    for (int b = 0; b < OUT_COLS; b++) columns[b] = min(tile.column(b), d - 1);
    for (int k = 0; k < inner; k++) {
        float l[ROWS], r[OUT_COLS];
#pragma unroll
        for (int a = 0; a < ROWS; a++) l[a] = left(rows[a], k);
#pragma unroll
        for (int b = 0; b < OUT_COLS; b++) r[b] = right(k, columns[b]);
#pragma unroll
        for (int a = 0; a < ROWS; a++) {
#pragma unroll
            for (int b = 0; b < OUT_COLS; b++) acc[a][b] += l[a] * r[b];
        }
    }
}

// Stores the thread's output tile into (B, T, width) rows: element (i, c) at base + i * row_stride + c.
template <int OUT_TX, typename S>
__device__ __forceinline__ void store_output_tile(const float (&acc)[OutputTile<OUT_TX>::ROWS][OUT_COLS], S* out,
                                                  long long base, long long row_stride, int tokens, int d) {
    OutputTile<OUT_TX> tile;
#pragma unroll
    for (int a = 0; a < OutputTile<OUT_TX>::ROWS; a++) {
        int i = tile.row(a);
#pragma unroll
        for (int b = 0; b < OUT_COLS; b++) {
            int c = tile.column(b);
            if (i < tokens && c < d) store(out, base + i * row_stride + c, acc[a][b]);
        }
    }
}

// score[a][b] = sum_c left_t[c][row a] right_t[c][column b]: two transposed (d, stride) tiles.
__device__ __forceinline__ void score_tile_product(float (&score)[SCORE_ROWS][SCORE_COLS], const float* left_t,
                                                   const float* right_t, int stride, int tokens, int d) {
    int sx = threadIdx.x % 16, sy = threadIdx.x / 16;
    int rows[SCORE_ROWS], columns[SCORE_COLS];
#pragma unroll
    for (int a = 0; a < SCORE_ROWS; a++) {
        rows[a] = min(sy + 8 * a, tokens - 1);
#pragma unroll
        for (int b = 0; b < SCORE_COLS; b++) score[a][b] = 0;
    }
#pragma unroll
    for (int b = 0; b < SCORE_COLS; b++) columns[b] = min(sx + 16 * b, tokens - 1);
    for (int c = 0; c < d; c++) {
        float l[SCORE_ROWS], r[SCORE_COLS];
#pragma unroll
        for (int a = 0; a < SCORE_ROWS; a++) l[a] = left_t[c * stride + rows[a]];
#pragma unroll
        for (int b = 0; b < SCORE_COLS; b++) r[b] = right_t[c * stride + columns[b]];
#pragma unroll
        for (int a = 0; a < SCORE_ROWS; a++) {
#pragma unroll
            for (int b = 0; b < SCORE_COLS; b++) score[a][b] += l[a] * r[b];
        }
    }
}

// A head's (T, d) slice of a strided array into shared memory, transposed ((d, stride): [c][j]) or not
// ((T, d): [j][c]); element (j, c) at base + j * token_stride + c.
template <typename S>
__device__ __forceinline__ void load_head(float* tile, const S* array, long long base, long long token_stride,
                                          int tokens, int d, int stride, bool transposed) {
    for (int index = threadIdx.x; index < tokens * d; index += V2_THREADS) {
        int j = index / d, c = index % d;
        float value = load(array, base + j * token_stride + c);
        if (transposed) tile[c * stride + j] = value;
        else tile[j * d + c] = value;
    }
}

template <typename S, int OUT_TX>
__device__ void attention_forward_v2(const S* qkv, S* context, S* probs, int tokens, int heads, int d, float scale) {
    extern __shared__ unsigned char shared_raw[];
    const int stride = tokens | 1;
    float* first = reinterpret_cast<float*>(shared_raw);  // Q^T (d, stride), then V (T, d)
    float* second = first + d * stride;  // K^T (d, stride), then P (T, stride)
    int b = blockIdx.x / heads, h = blockIdx.x % heads;
    int D = heads * d;
    long long head = (long long)b * tokens * 3 * D + h * d;  // q of token j, column c: head + j 3D + c
    load_head(first, qkv, head, 3 * D, tokens, d, stride, true);
    load_head(second, qkv, head + D, 3 * D, tokens, d, stride, true);
    __syncthreads();

    float score[SCORE_ROWS][SCORE_COLS];
    score_tile_product(score, first, second, stride, tokens, d);
    int sx = threadIdx.x % 16, sy = threadIdx.x / 16;
    // softmax along each row, in registers: the row's 16 threads share their max and sum
#pragma unroll
    for (int a = 0; a < SCORE_ROWS; a++) {
        float largest = negative_infinity<float>();
#pragma unroll
        for (int bb = 0; bb < SCORE_COLS; bb++) {
            score[a][bb] = sx + 16 * bb < tokens ? score[a][bb] * scale : negative_infinity<float>();
            largest = (score[a][bb] > largest || score[a][bb] != score[a][bb]) ? score[a][bb] : largest;
        }
        largest = half_warp_max(largest);
        float total = 0;
#pragma unroll
        for (int bb = 0; bb < SCORE_COLS; bb++) {
            score[a][bb] = sx + 16 * bb < tokens ? exp_(score[a][bb] - largest) : 0.0f;
            total += score[a][bb];
        }
        total = half_warp_sum(total);
#pragma unroll
        for (int bb = 0; bb < SCORE_COLS; bb++) score[a][bb] /= total;
    }
    __syncthreads();  // Q^T and K^T read by every thread: the regions take P and V
    long long probs_head = (long long)blockIdx.x * tokens * tokens;
#pragma unroll
    for (int a = 0; a < SCORE_ROWS; a++) {
        int i = sy + 8 * a;
#pragma unroll
        for (int bb = 0; bb < SCORE_COLS; bb++) {
            int j = sx + 16 * bb;
            if (i < tokens && j < tokens) {
                second[i * stride + j] = score[a][bb];
                store(probs, probs_head + i * tokens + j, score[a][bb]);
            }
        }
    }
    load_head(first, qkv, head + 2 * D, 3 * D, tokens, d, stride, false);
    __syncthreads();

    // context = P V, written with the heads merged into (B, T, D)
    float acc[OutputTile<OUT_TX>::ROWS][OUT_COLS];
    output_tile_product<OUT_TX>(acc, tokens, tokens, d, [&](int i, int j) { return second[i * stride + j]; },
                                [&](int j, int c) { return first[j * d + c]; });
    store_output_tile<OUT_TX>(acc, context, (long long)b * tokens * D + h * d, D, tokens, d);
}

// q, k and v: (B, H, T, d) views with unit stride along d; element (b, h, j, c) at
// b image_stride + h head_stride + j token_stride + c (the same strides for the three).
template <typename S, int OUT_TX>
__device__ void attention_backward_v2(const S* dcontext, const S* q, const S* k, const S* v, const S* probs, S* dqkv,
                                      int tokens, int heads, int d, float scale, long long image_stride,
                                      long long head_stride, long long token_stride) {
    extern __shared__ unsigned char shared_raw[];
    const int stride = tokens | 1;
    float* first = reinterpret_cast<float*>(shared_raw);  // dO^T (d, stride), then K (T, d), then Q (T, d)
    float* second = first + d * stride;  // P (T, stride), then V^T (d, stride), then dS (T, stride)
    int b = blockIdx.x / heads, h = blockIdx.x % heads;
    int D = heads * d;
    long long head = (long long)b * image_stride + h * head_stride;  // in q, k and v
    long long packed = (long long)b * tokens * 3 * D + h * d;  // in dqkv: dq of token j at packed + j 3D
    long long probs_head = (long long)blockIdx.x * tokens * tokens;
    load_head(first, dcontext, (long long)b * tokens * D + h * d, D, tokens, d, stride, true);
    for (int index = threadIdx.x; index < tokens * tokens; index += V2_THREADS) {
        second[(index / tokens) * stride + index % tokens] = load(probs, probs_head + index);
    }
    __syncthreads();

    // dV = P^T dO: dV[j, c] = sum_i P[i, j] dO[i, c]
    float acc[OutputTile<OUT_TX>::ROWS][OUT_COLS];
    output_tile_product<OUT_TX>(acc, tokens, tokens, d, [&](int j, int i) { return second[i * stride + j]; },
                                [&](int i, int c) { return first[c * stride + i]; });
    store_output_tile<OUT_TX>(acc, dqkv, packed + 2 * D, 3 * D, tokens, d);
    __syncthreads();  // P read by every thread: the second region takes V^T
    load_head(second, v, head, token_stride, tokens, d, stride, true);
    __syncthreads();

    // dP = dO V^T, then dS = P (dP - sum_j P dP) scale, row by row (a row lies in a half-warp)
    float dscore[SCORE_ROWS][SCORE_COLS];
    score_tile_product(dscore, first, second, stride, tokens, d);
    int sx = threadIdx.x % 16, sy = threadIdx.x / 16;
#pragma unroll
    for (int a = 0; a < SCORE_ROWS; a++) {
        int i = min(sy + 8 * a, tokens - 1);
        float p[SCORE_COLS], row_sum = 0;
#pragma unroll
        for (int bb = 0; bb < SCORE_COLS; bb++) {
            int j = sx + 16 * bb;
            p[bb] = j < tokens ? load(probs, probs_head + i * tokens + j) : 0.0f;
            row_sum += p[bb] * dscore[a][bb];
        }
        row_sum = half_warp_sum(row_sum);
#pragma unroll
        for (int bb = 0; bb < SCORE_COLS; bb++) dscore[a][bb] = p[bb] * (dscore[a][bb] - row_sum) * scale;
    }
    __syncthreads();  // dO^T and V^T read by every thread: the regions take K and dS
#pragma unroll
    for (int a = 0; a < SCORE_ROWS; a++) {
        int i = sy + 8 * a;
#pragma unroll
        for (int bb = 0; bb < SCORE_COLS; bb++) {
            int j = sx + 16 * bb;
            if (i < tokens && j < tokens) second[i * stride + j] = dscore[a][bb];
        }
    }
    load_head(first, k, head, token_stride, tokens, d, stride, false);
    __syncthreads();

    // dQ = dS K
    output_tile_product<OUT_TX>(acc, tokens, tokens, d, [&](int i, int j) { return second[i * stride + j]; },
                                [&](int j, int c) { return first[j * d + c]; });
    store_output_tile<OUT_TX>(acc, dqkv, packed, 3 * D, tokens, d);
    __syncthreads();  // K read by every thread: the first region takes Q
    load_head(first, q, head, token_stride, tokens, d, stride, false);
    __syncthreads();

    // dK = dS^T Q: dK[j, c] = sum_i dS[i, j] Q[i, c]
    output_tile_product<OUT_TX>(acc, tokens, tokens, d, [&](int j, int i) { return second[i * stride + j]; },
                                [&](int i, int c) { return first[i * d + c]; });
    store_output_tile<OUT_TX>(acc, dqkv, packed + D, 3 * D, tokens, d);
}

#define ATTENTION_V2_KERNELS(S, SUFFIX, OUT_TX, WIDTH)                                                            \
    extern "C" __global__ void __launch_bounds__(V2_THREADS, V2_MIN_BLOCKS)                                                       \
        attention_forward_v2_d##WIDTH##_##SUFFIX(const S* qkv, S* context, S* probs, int tokens, int heads, int d, \
                                                 float scale) {                                                    \
        attention_forward_v2<S, OUT_TX>(qkv, context, probs, tokens, heads, d, scale);                            \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(V2_THREADS, V2_MIN_BLOCKS) attention_backward_v2_d##WIDTH##_##SUFFIX(           \
        const S* dcontext, const S* q, const S* k, const S* v, const S* probs, S* dqkv, int tokens, int heads,    \
        int d, float scale, long long image_stride, long long head_stride, long long token_stride) {               \
        attention_backward_v2<S, OUT_TX>(dcontext, q, k, v, probs, dqkv, tokens, heads, d, scale, image_stride,   \
                                         head_stride, token_stride);                                              \
    }
ATTENTION_V2_KERNELS(half_bits, f16, 16, 64)
ATTENTION_V2_KERNELS(float, f32, 16, 64)
ATTENTION_V2_KERNELS(half_bits, f16, 4, 16)
ATTENTION_V2_KERNELS(float, f32, 4, 16)
