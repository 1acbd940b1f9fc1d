// Uniform draws of a counter-based generator, one row per sample: replaces
// minivit/ops/counter_random.py's sample_uniform (about 25 launches of array math) with one.
// Element i = (r, j) of the draw (row r = i / row_length, j = i % row_length) is
//     row_key = top 32 bits of splitmix64(samples[r] * GOLDEN + draw_key)
//     word    = lowbias32(row_key ^ lowbias32(j))
//     float32: (word >> 8) * 2^-24        double: word * 2^-32
// the same integer arithmetic as the reference (modulo 2^64 and 2^32), so the same numbers.
// Each thread recomputes its row's key: a few multiplies, cheaper than a second launch.

__device__ __forceinline__ unsigned long long splitmix64(unsigned long long value) {
    value += 0x9E3779B97F4A7C15ULL;
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ULL;
    value = (value ^ (value >> 27)) * 0x94D049BB133111EBULL;
    return value ^ (value >> 31);
}

__device__ __forceinline__ unsigned int lowbias32(unsigned int word) {
    word ^= word >> 16;
    word *= 0x7FEB352DU;
    word ^= word >> 15;
    word *= 0x846CA68BU;
    word ^= word >> 16;
    return word;
}

__device__ __forceinline__ unsigned int sample_word(const unsigned long long* samples, unsigned long long draw_key,
                                                    long long row_length, long long i) {
    long long r = i / row_length;
    unsigned int j = (unsigned int)(i - r * row_length);
    unsigned int row_key = (unsigned int)(splitmix64(samples[r] * 0x9E3779B97F4A7C15ULL + draw_key) >> 32);
    return lowbias32(row_key ^ lowbias32(j));
}

extern "C" __global__ void sample_uniform_f32(const unsigned long long* samples, unsigned long long draw_key,
                                              long long row_length, long long n, float* out) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        out[i] = (float)(sample_word(samples, draw_key, row_length, i) >> 8) * 5.9604644775390625e-08f;  // 2^-24
    }
}

extern "C" __global__ void sample_uniform_f64(const unsigned long long* samples, unsigned long long draw_key,
                                              long long row_length, long long n, double* out) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        out[i] = (double)sample_word(samples, draw_key, row_length, i) * 2.3283064365386962890625e-10;  // 2^-32
    }
}
