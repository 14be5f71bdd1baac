// Training-batch assembly on the GPU from the u8 dataset (mirrors src/data/batch.rs,
// make_batch): random crop with zero padding + horizontal flip, or plain conversion, to f32 in
// [0, 1]. The crop offsets and the flip are drawn with the same keyed generator and keys as the
// CPU, so both backends build bit-identical batches.
//
// Kernels (images: u8 [count, c, h, w], the whole set resident on the device; indices: the
// batch's image numbers, u32 [batch]; out: f32 [batch, c, h, w]):
//
//   augment_crop_flip(const unsigned char* images, const unsigned int* indices, int batch,
//                     int c, int h, int w, int pad, unsigned long long seed,
//                     unsigned long long key, float* out)
//       image j of the batch uses k = key + j:
//         dy   = below(seed, CROP, 2k,     2*pad + 1) - pad
//         dx   = below(seed, CROP, 2k + 1, 2*pad + 1) - pad
//         flip = uniform(seed, FLIP, k) < 0.5
//         out[j][ch][y][x] = images[indices[j]][ch][y + dy][xx + dx] / 255   (0 outside),
//         xx = flip ? w - 1 - x : x.                        mirrors batch::make_batch / crop_flip
//   augment_to_float(const unsigned char* images, const unsigned int* indices, int batch,
//                    int per_image, float* out)
//       out[j][i] = images[indices[j]][i] / 255, per_image = c*h*w.   make_batch with aug None
//
// Launch (both): grid = (ceil(c*h*w / 256), batch), block = 256, no dynamic shared memory.
// batch <= 65535 (grid.y); count * c*h*w < 2^31 is not needed (the image offset is 64-bit).
//
// Cost: one byte read and four written per element; a 256-image CIFAR batch is ~1 MB, a few
// microseconds, so every thread simply redraws its image's three numbers (a handful of 64-bit
// multiplies) instead of sharing them through shared memory.

#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256)
augment_crop_flip(const unsigned char* __restrict__ images, const unsigned int* __restrict__ indices,
                  int batch, int c, int h, int w, int pad, unsigned long long seed,
                  unsigned long long key, float* __restrict__ out) {
    const int j = blockIdx.y;
    const int per = c * h * w;
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= batch || e >= per) return;
    const rl_u64 k = key + (rl_u64)j;
    const rl_u64 span = 2ULL * (rl_u64)pad + 1ULL;
    const int dy = (int)rl_below(seed, RL_STREAM_CROP, 2ULL * k, span) - pad;
    const int dx = (int)rl_below(seed, RL_STREAM_CROP, 2ULL * k + 1ULL, span) - pad;
    const bool flip = rl_uniform(seed, RL_STREAM_FLIP, k) < 0.5f;

    const int x = e % w;
    const int y = (e / w) % h;
    const int ch = e / (w * h);
    const int sy = y + dy;
    const int sx = (flip ? w - 1 - x : x) + dx;
    float v = 0.0f;
    if (sy >= 0 && sy < h && sx >= 0 && sx < w) {
        const unsigned char* img = images + (long long)indices[j] * per;
        v = rl_div((float)img[(ch * h + sy) * w + sx], 255.0f);
    }
    out[(long long)j * per + e] = v;
}

extern "C" __global__ void __launch_bounds__(256)
augment_to_float(const unsigned char* __restrict__ images, const unsigned int* __restrict__ indices,
                 int batch, int per_image, float* __restrict__ out) {
    const int j = blockIdx.y;
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= batch || e >= per_image) return;
    const unsigned char* img = images + (long long)indices[j] * per_image;
    out[(long long)j * per_image + e] = rl_div((float)img[e], 255.0f);
}
