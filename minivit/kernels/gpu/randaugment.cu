// One round of RandAugment on a batch: replaces minivit/ops/randaugment.py's rand_augment (one
// round of it: every image gets the operation `choice[b]` with the sign `sign[b]`).
// One block per image: the block loads its image into shared memory, works out what the
// operation needs over the whole image (per-channel minimum and maximum, the mean grey
// level), then every thread writes its share of the output pixels. The reference runs all 13
// operations on the whole batch and keeps one per image (~300 launches a round); this is one.
// Images are float32 in [0, 255], (B, C, H, W), C <= 4. The posterize step and the solarize
// threshold come worked out on the host, as the reference works them out. The operations, in
// the reference's order:
//   0 identity   1 autocontrast   2 brightness   3 color   4 contrast   5 sharpness   6 posterize
//   7 solarize   8 rotate   9 shear_x   10 shear_y   11 translate_x   12 translate_y

__device__ __forceinline__ float clip255(float v) { return fminf(fmaxf(v, 0.0f), 255.0f); }

// Grey level of pixel p (C == 3: ITU-R 601 weights; otherwise the mean over channels).
__device__ __forceinline__ float grey(const float* image, int p, int C, int HW) {
    if (C == 3) return image[p] * 0.299f + image[HW + p] * 0.587f + image[2 * HW + p] * 0.114f;
    float total = 0.0f;
    for (int c = 0; c < C; c++) total += image[c * HW + p];
    return total / C;
}

// The nearest-neighbour source of output pixel (i, j) under the 2x3 matrix m (centred
// coordinates), or -1 outside the image.
__device__ __forceinline__ int affine_source(const float* m, int i, int j, int H, int W) {
    float xs = (float)j - (W - 1) / 2.0f;
    float ys = (float)i - (H - 1) / 2.0f;
    float source_x = m[0] * xs + m[1] * ys + m[2] + (W - 1) / 2.0f;
    float source_y = m[3] * xs + m[4] * ys + m[5] + (H - 1) / 2.0f;
    long long column = (long long)rintf(source_x);
    long long row = (long long)rintf(source_y);
    if (column < 0 || column >= W || row < 0 || row >= H) return -1;
    return (int)(row * W + column);
}

extern "C" __global__ void randaugment_round(const float* images, const long long* choice, const float* sign,
                                             float level, float posterize_step, float solarize_threshold, float* out,
                                             int C, int H, int W) {
    extern __shared__ float image[];          // this block's image, C * H * W values
    __shared__ float reduce_a[256], reduce_b[256];
    __shared__ float channel_low[4], channel_high[4], mean_grey;
    int HW = H * W, n = C * HW;
    const float* source = images + (long long)blockIdx.x * n;
    float* result = out + (long long)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) image[i] = source[i];
    __syncthreads();

    int op = (int)choice[blockIdx.x];
    float s = sign[blockIdx.x];
    float factor = 1.0f + s * 0.9f * level;  // the blends' factor

    if (op == 1) {  // autocontrast: the channel's range stretched to [0, 255]
        for (int c = 0; c < C && c < 4; c++) {
            float low = 3.4e38f, high = -3.4e38f;
            for (int p = threadIdx.x; p < HW; p += blockDim.x) {
                low = fminf(low, image[c * HW + p]);
                high = fmaxf(high, image[c * HW + p]);
            }
            reduce_a[threadIdx.x] = low;
            reduce_b[threadIdx.x] = high;
            __syncthreads();
            for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
                if (threadIdx.x < stride) {
                    reduce_a[threadIdx.x] = fminf(reduce_a[threadIdx.x], reduce_a[threadIdx.x + stride]);
                    reduce_b[threadIdx.x] = fmaxf(reduce_b[threadIdx.x], reduce_b[threadIdx.x + stride]);
                }
                __syncthreads();
            }
            if (threadIdx.x == 0) {
                channel_low[c] = reduce_a[0];
                channel_high[c] = reduce_b[0];
            }
            __syncthreads();
        }
    } else if (op == 4) {  // contrast: the image's mean grey level
        float total = 0.0f;
        for (int p = threadIdx.x; p < HW; p += blockDim.x) total += grey(image, p, C, HW);
        reduce_a[threadIdx.x] = total;
        __syncthreads();
        for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
            if (threadIdx.x < stride) reduce_a[threadIdx.x] += reduce_a[threadIdx.x + stride];
            __syncthreads();
        }
        if (threadIdx.x == 0) mean_grey = reduce_a[0] / HW;
        __syncthreads();
    }

    // the affine operations' matrices (output pixel -> source pixel), as the reference builds them
    float m[6] = {1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f};
    if (op == 8) {
        float angle = s * 0.5235987755982988f * level;  // 30 degrees at full magnitude
        float cosine = cosf(angle), sine = sinf(angle);
        m[0] = cosine; m[1] = -sine; m[3] = sine; m[4] = cosine;
    } else if (op == 9) {
        m[1] = s * 0.3f * level;
    } else if (op == 10) {
        m[3] = s * 0.3f * level;
    } else if (op == 11) {
        m[2] = s * 0.45f * level * W;
    } else if (op == 12) {
        m[5] = s * 0.45f * level * H;
    }

    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        int c = i / HW, p = i % HW, row = p / W, column = p % W;
        float x = image[i];
        float value = x;
        switch (op) {
            case 1: {
                float low = channel_low[c < 4 ? c : 3], high = channel_high[c < 4 ? c : 3];
                value = high > low ? (x - low) * (255.0f / fmaxf(high - low, 1e-3f)) : x;
                break;
            }
            case 2: value = clip255(factor * x); break;  // brightness: blend with black
            case 3: {  // color: blend with the pixel's grey
                float g = grey(image, p, C, HW);
                value = clip255(g + factor * (x - g));
                break;
            }
            case 4: value = clip255(mean_grey + factor * (x - mean_grey)); break;  // contrast
            case 5: {  // sharpness: blend with a smoothed copy (centre 5, neighbours 1, / 13; edges repeated)
                float smooth = 4.0f * x;
                for (int dy = -1; dy <= 1; dy++) {
                    for (int dx = -1; dx <= 1; dx++) {
                        int r = min(max(row + dy, 0), H - 1), q = min(max(column + dx, 0), W - 1);
                        smooth += image[c * HW + r * W + q];
                    }
                }
                smooth = smooth / 13.0f;
                value = clip255(smooth + factor * (x - smooth));
                break;
            }
            case 6: value = floorf(x / posterize_step) * posterize_step; break;
            case 7: value = x >= solarize_threshold ? 255.0f - x : x; break;  // solarize
            case 8: case 9: case 10: case 11: case 12: {
                int from = affine_source(m, row, column, H, W);
                value = from < 0 ? 128.0f : image[c * HW + from];
                break;
            }
            default: break;  // 0: identity
        }
        result[i] = value;
    }
}
