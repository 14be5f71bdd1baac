// SNL's soft ReLU, y = alpha * relu(z) + (1 - alpha) * z with a learnable alpha per [C, H, W]
// element shared by the batch (mirrors src/ops/soft_relu.rs).
//
// Kernels (all f32; z, y, dy, dz are [n, len] with len = C*H*W; alpha, dalpha are [len];
// total = n * len < 2^31):
//
//   soft_relu_fwd(const float* z, const float* alpha, int total, int len, float* y)
//       y[i] = z[i] < 0 ? (1 - alpha[i % len]) * z[i] : z[i].      soft_relu::forward
//   soft_relu_bwd_input(const float* z, const float* alpha, const float* dy, int total, int len,
//                       float* dz)
//       dz[i] = z[i] > 0 ? dy[i] : dy[i] * (1 - alpha[i % len]).  soft_relu::backward_input
//   soft_relu_bwd_alpha(const float* z, const float* dy, int len, int n, float* dalpha)
//       dalpha[j] = 0 + t(0) + t(1) + ... + t(n-1), left to right, with
//       t(k) = z[k*len+j] < 0 ? dy[k*len+j] * -z[k*len+j] : 0.   soft_relu::backward_alpha
//
// Launch: fwd and bwd_input: grid = ceil(total / 256), block = 256; bwd_alpha: grid =
// ceil(len / 256), block = 256 (one thread per alpha element looping over the n samples in
// order: coalesced reads, the CPU's summation order, no atomics). No dynamic shared memory.
//
// Every result is bit-identical to the CPU: the same operations in the same order, each a
// separately rounded intrinsic (no contraction into FMAs).

#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256)
soft_relu_fwd(const float* __restrict__ z, const float* __restrict__ alpha, int total, int len,
              float* __restrict__ y) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const float v = z[i];
    y[i] = v < 0.0f ? rl_mul(rl_sub(1.0f, alpha[i % len]), v) : v;
}

extern "C" __global__ void __launch_bounds__(256)
soft_relu_bwd_input(const float* __restrict__ z, const float* __restrict__ alpha,
                    const float* __restrict__ dy, int total, int len, float* __restrict__ dz) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const float g = dy[i];
    dz[i] = z[i] > 0.0f ? g : rl_mul(g, rl_sub(1.0f, alpha[i % len]));
}

extern "C" __global__ void __launch_bounds__(256)
soft_relu_bwd_alpha(const float* __restrict__ z, const float* __restrict__ dy, int len, int n,
                    float* __restrict__ dalpha) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= len) return;
    float acc = 0.0f;
    for (int k = 0; k < n; ++k) {
        const int i = k * len + j;
        const float v = z[i];
        acc = rl_add(acc, v < 0.0f ? rl_mul(dy[i], -v) : 0.0f);
    }
    dalpha[j] = acc;
}
