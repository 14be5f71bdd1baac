// SGD with momentum and weight decay, PyTorch semantics (mirrors src/optim.rs, Sgd::step).
//
// Kernels:
//
//   optim_sgd_momentum_update(float* p, float* buf, const float* g, int total,
//                             float lr, float momentum, float weight_decay, int first_step)
//       first_step != 0:  buf = g + wd * p              (the buffer starts as the decayed grad)
//       otherwise:        buf = momentum * buf + g + wd * p
//       then              p  -= lr * buf
//       buf need not be initialised when first_step != 0 (it is only written).
//
// Launch: grid = ceil(total / 256), block = 256, no dynamic shared memory; one launch per
// parameter tensor. Bit-identical to the CPU: the same operations in the same order, spelled
// with non-contracting intrinsics (Rust evaluates (mu*b + g) + wd*p left to right).

#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256)
optim_sgd_momentum_update(float* __restrict__ p, float* __restrict__ buf,
                          const float* __restrict__ g, int total, float lr, float momentum,
                          float weight_decay, int first_step) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const float pv = p[i];
    const float decay = rl_mul(weight_decay, pv);
    const float b = first_step ? rl_add(g[i], decay)
                               : rl_add(rl_add(rl_mul(momentum, buf[i]), g[i]), decay);
    buf[i] = b;
    p[i] = rl_sub(pv, rl_mul(lr, b));
}
