// L-infinity PGD, element-wise pieces (mirrors src/ops/pgd.rs; spec §3).
//
// Kernels (x, x0, grad: f32 [total], the flattened [n, c, h, w] batch in [0, 1]):
//
//   pgd_random_start(const float* x0, int total, float eps,
//                    unsigned long long seed, unsigned long long key, float* x)
//       x[i] = clamp(x0[i] + eps * (2u - 1), 0, 1),  u = rl_uniform(k, PGD_START, i),
//       k = rl_hash(seed, PGD_START, key).                          mirrors pgd::random_start
//   pgd_step(float* x, const float* x0, const float* grad, int total, float alpha, float eps)
//       x[i] = clamp(clamp(x[i] + alpha * sign(grad[i]), x0[i] - eps, x0[i] + eps), 0, 1),
//       sign(0) = 0 (torch.sign).                                   mirrors pgd::step
//
// Launch (both): grid = ceil(total / 256), block = 256, no dynamic shared memory.
// Results are bit-identical to the CPU reference: the arithmetic is spelled with the
// non-contracting rl_* intrinsics, so no FMA changes a rounding.
//
// Cost: pure streaming (12-16 bytes per element); on an H200 (~4.3 TB/s) a 256x3x32x32 batch
// (786k elements) is ~3 us, far below one conv, so there is nothing to tile.

#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256)
pgd_random_start(const float* __restrict__ x0, int total, float eps,
                 unsigned long long seed, unsigned long long key, float* __restrict__ x) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const rl_u64 k = rl_hash(seed, RL_STREAM_PGD_START, key);
    const float u = rl_uniform(k, RL_STREAM_PGD_START, (rl_u64)i);
    // 2u - 1 is exact (u has 24 bits); eps * (.) and x0 + (.) round once each, as in Rust.
    const float v = rl_add(x0[i], rl_mul(eps, rl_sub(rl_mul(2.0f, u), 1.0f)));
    x[i] = rl_clamp(v, 0.0f, 1.0f);
}

extern "C" __global__ void __launch_bounds__(256)
pgd_step(float* __restrict__ x, const float* __restrict__ x0, const float* __restrict__ grad,
         int total, float alpha, float eps) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const float g = grad[i];
    const float s = g > 0.0f ? 1.0f : (g < 0.0f ? -1.0f : 0.0f);
    const float x0v = x0[i];
    const float moved = rl_clamp(rl_add(x[i], rl_mul(alpha, s)), rl_sub(x0v, eps), rl_add(x0v, eps));
    x[i] = rl_clamp(moved, 0.0f, 1.0f);
}
