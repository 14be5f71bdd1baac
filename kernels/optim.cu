// Optimiser updates, PyTorch semantics: SGD with momentum (mirrors src/optim/sgd.rs,
// Sgd::step) and Adam (mirrors src/optim/adam.rs, AdamStep::update).
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
//   optim_adam_update(float* p, float* m, float* v, const float* g, int total,
//                     float neg_step_size, float bc2_sqrt, float one_minus_beta1, float beta2,
//                     float one_minus_beta2, float eps, float weight_decay, float l1)
//       g' = g + l1 * sign(p)  (sign(0) = 0);  g' = fma(wd, p, g') when wd != 0
//       m  = fma(1 - beta1, g' - m, m)            (torch's lerp_, small-weight branch)
//       v  = fma((1 - beta2) * g', g', v * beta2)  (mul_ then addcmul_)
//       p  = p + (neg_step_size * m) / (sqrt(v) / bc2_sqrt + eps)   (addcdiv_)
//       The scalars come from AdamStep::new (bias corrections in f64, rounded once).
//
// Launch: grid = ceil(total / 256), block = 256, no dynamic shared memory; one launch per
// parameter tensor, for both. Bit-identical to the CPU: the same operations in the same order, spelled
// with non-contracting intrinsics (Rust evaluates (mu*b + g) + wd*p left to right), Adam's
// fused multiply-adds as __fmaf_rn (Rust's f32::mul_add) and the correctly rounded square
// root (Rust's f32::sqrt).

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

extern "C" __global__ void __launch_bounds__(256)
optim_adam_update(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v,
                  const float* __restrict__ g, int total, float neg_step_size, float bc2_sqrt,
                  float one_minus_beta1, float beta2, float one_minus_beta2, float eps,
                  float weight_decay, float l1) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const float pv = p[i];
    const float sign = pv > 0.0f ? 1.0f : (pv < 0.0f ? -1.0f : 0.0f);
    float gv = rl_add(g[i], rl_mul(l1, sign));
    if (weight_decay != 0.0f) gv = __fmaf_rn(weight_decay, pv, gv);
    const float m0 = m[i];
    const float mv = __fmaf_rn(one_minus_beta1, rl_sub(gv, m0), m0);
    const float vv = __fmaf_rn(rl_mul(one_minus_beta2, gv), gv, rl_mul(v[i], beta2));
    const float denom = rl_add(rl_div(__fsqrt_rn(vv), bc2_sqrt), eps);
    m[i] = mv;
    v[i] = vv;
    p[i] = rl_add(pv, rl_div(rl_mul(neg_step_size, mv), denom));
}
