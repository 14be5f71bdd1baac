// Element-wise helpers of the graph and the global average pool
// (mirrors src/ops/elementwise.rs and src/ops/pool.rs).
//
// Kernels (all f32; total = number of elements, < 2^31; "plane" = one [h*w] map of one
// sample and channel, planes are laid out [n, c] so plane p has channel p % c):
//
//   elementwise_channel_affine_fwd(const float* x, const float* scale, const float* shift,
//                                  int total, int hw, int c, float* y)
//       y[i] = x[i] * scale[ch] + shift[ch],  ch = (i / hw) % c.  elementwise::channel_affine
//   elementwise_channel_affine_bwd(const float* dy, const float* scale, int total, int hw, int c,
//                                  float* dx)
//       dx[i] = dy[i] * scale[ch].                        elementwise::channel_affine_backward
//   elementwise_add(const float* a, const float* b, int total, float* out)
//       out[i] = a[i] + b[i]                          (out may alias a or b)
//   elementwise_accumulate(float* acc, const float* v, int total)
//       acc[i] += v[i].                                   elementwise::add_assign
//   elementwise_scale(const float* x, float alpha, int total, float* y)
//       y[i] = alpha * x[i]                           (y may alias x)
//   elementwise_fill(float* y, float value, int total)
//       y[i] = value
//   elementwise_absdiff_accumulate(float* acc, const float* a, const float* b, int len, int n)
//       acc[i] += |a[0*len+i] - b[0*len+i]| + ... + |a[(n-1)*len+i] - b[(n-1)*len+i]|, the
//       terms added to acc one by one in batch order (the stage-2 mask statistic: a and b are
//       [n, len] activations, acc is [len]).        elementwise::abs_diff_accumulate
//   elementwise_avgpool_fwd(const float* x, int planes, int hw, float inv_hw, float* y)
//       y[p] = (-0.0 + x[p*hw] + x[p*hw+1] + ... + x[p*hw+hw-1]) * inv_hw, left to right.
//       inv_hw = (1.0 / hw as f64) as f32, computed by the caller as pool::forward does.
//                                                         pool::forward
//   elementwise_avgpool_bwd(const float* dy, int planes, int hw, float inv_hw, float* dx)
//       dx[p*hw + j] = dy[p] * inv_hw.                    pool::backward
//
// Launch: grid = ceil(total / 256), block = 256 for the first six and for avgpool_bwd
// (total = planes * hw there); avgpool_fwd: grid = ceil(planes / 256), block = 256 (one thread
// per plane); absdiff_accumulate: grid = ceil(len / 256), block = 256 (one thread per element
// of acc, looping over the n samples: coalesced reads, the CPU's order). No dynamic shared memory.
//
// All results are bit-identical to the CPU: the same operations in the same order, spelled with
// non-contracting intrinsics where a multiply meets an add. The pool sums each plane in one
// thread, left to right like the CPU; its planes are short (4x4 or 8x8 maps, 64-256 bytes, so
// a thread's reads stay within one or two cache lines), which costs nothing worth a tree.
// Everything here is streaming: at ~4.3 TB/s a 16M-element tensor takes ~10-15 us.

#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256)
elementwise_channel_affine_fwd(const float* __restrict__ x, const float* __restrict__ scale,
                               const float* __restrict__ shift, int total, int hw, int c,
                               float* __restrict__ y) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int ch = (i / hw) % c;
    y[i] = rl_add(rl_mul(x[i], scale[ch]), shift[ch]);
}

extern "C" __global__ void __launch_bounds__(256)
elementwise_channel_affine_bwd(const float* __restrict__ dy, const float* __restrict__ scale,
                               int total, int hw, int c, float* __restrict__ dx) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    dx[i] = rl_mul(dy[i], scale[(i / hw) % c]);
}

// No __restrict__ on a/b/out: out may alias an input.
extern "C" __global__ void __launch_bounds__(256)
elementwise_add(const float* a, const float* b, int total, float* out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    out[i] = rl_add(a[i], b[i]);
}

extern "C" __global__ void __launch_bounds__(256)
elementwise_accumulate(float* __restrict__ acc, const float* __restrict__ v, int total) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    acc[i] = rl_add(acc[i], v[i]);
}

extern "C" __global__ void __launch_bounds__(256)
elementwise_scale(const float* x, float alpha, int total, float* y) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    y[i] = rl_mul(alpha, x[i]);
}

// y = x rounded to the nearest bf16 (ties to even, NaN to the canonical NaN), kept as an f32
// with its low 16 bits zero: how `--precision bf16` stores an activation. y may alias x.
extern "C" __global__ void __launch_bounds__(256)
elementwise_round_bf16(const float* __restrict__ x, int total, float* __restrict__ y) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    y[i] = rl_round_bf16(x[i]);
}

extern "C" __global__ void __launch_bounds__(256)
elementwise_fill(float* __restrict__ y, float value, int total) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    y[i] = value;
}

extern "C" __global__ void __launch_bounds__(256)
elementwise_absdiff_accumulate(float* __restrict__ acc, const float* __restrict__ a,
                               const float* __restrict__ b, int len, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float s = acc[i];
    for (int k = 0; k < n; ++k) {
        const long long j = (long long)k * len + i;
        s = rl_add(s, fabsf(rl_sub(a[j], b[j])));
    }
    acc[i] = s;
}

extern "C" __global__ void __launch_bounds__(256)
elementwise_avgpool_fwd(const float* __restrict__ x, int planes, int hw, float inv_hw,
                        float* __restrict__ y) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= planes) return;
    const float* xp = x + (long long)p * hw;
    // Rust's f32 Sum folds from -0.0, which keeps the sign of an all-(-0.0) plane.
    float s = -0.0f;
    for (int j = 0; j < hw; ++j) s = rl_add(s, xp[j]);
    y[p] = rl_mul(s, inv_hw);
}

extern "C" __global__ void __launch_bounds__(256)
elementwise_avgpool_bwd(const float* __restrict__ dy, int planes, int hw, float inv_hw,
                        float* __restrict__ dx) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= planes * hw) return;
    dx[i] = rl_mul(dy[i / hw], inv_hw);
}
