// Sums over the rows of a (rows, D) matrix, column by column, in two passes: replaces the
// reference's `dout.sum(axis=0)` (minivit/ops/linear.py, the bias gradient).
//
// Why: CuPy's generic reduction gives a sum over 33,280 rows only D / 32 blocks (6 for D = 192),
// each thread walking 2,080 rows one load after another; on a GPU with 132 SMs most of them idle.
// Here the rows are cut into parts: pass one runs (D / 32) x parts blocks, each summing its part
// of 32 columns (at most 8 x 64 rows: 64 loads per thread), into a (parts, D) matrix of partial
// sums in the compute type; pass two adds the parts up (a few dozen rows) and stores the result.
// Block (32, 8): threadIdx.x is the column (reads along a row are coalesced), threadIdx.y a row lane.
// S is the storage type (float16, float or double), T the type summed in (float for float16).

template <typename S, typename T>
__device__ void column_partial_sums(const S* in, T* partial, int rows, int D, int rows_per_part) {
    __shared__ T lanes[8][33];
    int column_blocks = (D + 31) / 32;
    int part = blockIdx.x / column_blocks;
    int column = (blockIdx.x % column_blocks) * 32 + threadIdx.x;
    int first = part * rows_per_part;
    int last = min(rows, first + rows_per_part);
    T sum = 0;
    if (column < D) {
        for (int row = first + threadIdx.y; row < last; row += 8) sum += load(in, (long long)row * D + column);
    }
    lanes[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && column < D) {
        T total = 0;
        for (int lane = 0; lane < 8; lane++) total += lanes[lane][threadIdx.x];
        partial[(long long)part * D + column] = total;
    }
}

// out[c] = sum over the parts of partial[part, c]: the second pass (also LayerNorm's parameter gradients).
template <typename S, typename T>
__device__ void column_sums_finish(const T* partial, S* out, int parts, int D) {
    __shared__ T lanes[8][33];
    int column = blockIdx.x * 32 + threadIdx.x;
    T sum = 0;
    if (column < D) {
        for (int part = threadIdx.y; part < parts; part += 8) sum += partial[(long long)part * D + column];
    }
    lanes[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && column < D) {
        T total = 0;
        for (int lane = 0; lane < 8; lane++) total += lanes[lane][threadIdx.x];
        store(out, column, total);
    }
}

#define COLUMN_SUM_KERNELS(S, T, SUFFIX)                                                                        \
    extern "C" __global__ void column_partial_sums_##SUFFIX(const S* in, T* partial, int rows, int D,           \
                                                            int rows_per_part) {                                \
        column_partial_sums<S, T>(in, partial, rows, D, rows_per_part);                                         \
    }                                                                                                           \
    extern "C" __global__ void column_sums_finish_##SUFFIX(const T* partial, S* out, int parts, int D) {        \
        column_sums_finish<S, T>(partial, out, parts, D);                                                       \
    }
COLUMN_SUM_KERNELS(half_bits, float, f16)
COLUMN_SUM_KERNELS(float, float, f32)
COLUMN_SUM_KERNELS(double, double, f64)
