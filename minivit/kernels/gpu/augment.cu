// Random crop, horizontal flip and normalisation of a batch in one pass: replaces
// minivit/augment.py's crop_flip_normalize (pad, gather, flip, (x / 255 - mean) / std).
// One thread per output pixel: it reads its source pixel in the zero-padded image (or 0
// outside it) and writes the normalised float.

extern "C" __global__ void crop_flip_normalize(const unsigned char* images, const long long* top,
                                               const long long* left, const bool* flip, int padding,
                                               const float* mean, const float* std, float* out,
                                               int B, int C, int H, int W) {
    long long n = (long long)B * C * H * W;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        int j = i % W;                      // output column
        int r = (i / W) % H;                // output row
        int c = (i / ((long long)W * H)) % C;
        int b = i / ((long long)W * H * C);
        long long source_row = top[b] + r - padding;
        long long source_column = left[b] + (flip[b] ? W - 1 - j : j) - padding;
        float value = 0.0f;
        if (source_row >= 0 && source_row < H && source_column >= 0 && source_column < W) {
            value = (float)images[(((long long)b * C + c) * H + source_row) * W + source_column];
        }
        out[i] = (value / 255.0f - mean[c]) / std[c];
    }
}
