// Fused BatchNorm (+ residual) (+ masked ReLU), train and eval (mirrors src/ops/bn_act.rs):
//
//   z = gamma * (x - mean) * invstd + beta (+ r)
//   y = relu(m * z) + (1 - m) * z        (m: per-element {0,1} mask over C x H x W)
//
// Shapes: x, r, y, dy, dx, dr: f32 [n, c, hw]; mean, invstd, gamma, beta, var_unbiased: f32 [c];
// mask: f32 [c * hw] of 0/1, or NULL (every element keeps its ReLU); relu: 0 = plain BN (+ add),
// 1 = ReLU gated by the mask. n * c * hw < 2^31.
//
// Kernels, in the order a training step calls them:
//
//   bn_act_stats(const float* x, int n, int c, int hw, int splits, double* partial)
//       Per channel and per slice of samples: (sum x, sum x^2) in f64.
//       partial: f64 [c, splits, 2].
//       Launch: grid = (c, splits), block = 256, no dynamic shared memory.
//   bn_act_stats_final(const double* partial, int n, int c, int hw, int splits, float eps,
//                      float* mean, float* invstd, float* var_unbiased)
//       mean = S/m, var = S2/m - mean^2 (biased, m = n*hw), invstd = 1/sqrt(var + eps),
//       var_unbiased = var * m/(m-1) (= var when m == 1).        mirrors bn_act::batch_stats
//       S and S2 are a fixed-order block sum over the splits, so `partial` may also come from
//       an op that wrote x and summed it in passing (conv2d_fwd_bf16's `sums`: one slice per
//       block column, ~1000 for a 32x32 layer).
//       Launch: grid = c, block = 256.
//   bn_act_fwd(const float* x, const float* residual, const float* mean, const float* invstd,
//              const float* gamma, const float* beta, const float* mask, int relu,
//              int n, int c, int hw, float* y)
//       residual and mask may be NULL. Train and eval alike: the caller passes the batch
//       statistics (train) or running mean and eval invstd = 1/sqrt(running_var + eps)
//       (eval; bn_act::eval_invstd, computed on the host or with the same formula).
//                                                                   mirrors bn_act::forward
//       Launch: grid = ceil(n*c*hw / 256), block = 256.
//   bn_act_bwd_reduce(const float* x, const float* y, const float* dy, const float* mean,
//                     const float* invstd, const float* gamma, const float* beta,
//                     const float* mask, int relu, int n, int c, int hw, int splits,
//                     double* partial)
//       dz = dy where the ReLU passed (Activation::passes with the forward output), else 0;
//       per channel and slice: (sum dz, sum dz * (x - mean)) in f64. partial: f64 [c, splits, 2].
//       Only needed for train-mode dx or for dgamma/dbeta.
//       y: the forward output, or NULL where no residual was added: the gate then recomputes
//       z from x, mean, invstd, gamma and beta exactly as bn_act_fwd did (bn_gate).
//       Launch: grid = (c, splits), block = 256.
//   bn_act_bwd_reduce_final(const double* partial, const float* invstd, int c, int splits,
//                           float* sums, float* dgamma, float* dbeta)
//       s = sum dz, sx = sum dz * xhat (xhat = (x - mean) * invstd).
//       sums: f32 [2 * c] = (s[0..c], sx[0..c]), always written (bn_act_bwd_apply reads it);
//       dgamma = sx and dbeta = s when not NULL.               (the sums of bn_act::backward)
//       Launch: grid = ceil(c / 256), block = 256.
//   bn_act_bwd_apply(const float* x, const float* y, const float* dy, const float* mean,
//                    const float* invstd, const float* gamma, const float* beta,
//                    const float* mask, int relu, int train, const float* sums, int n, int c,
//                    int hw, float* dx, float* dr)
//       train: dx = gamma*invstd * (dz - s/m - xhat*sx/m), m = n*hw;
//       eval:  dx = gamma*invstd * dz (sums unused, may be NULL);
//       dr = dz (the residual's gradient). dx and dr may each be NULL; y as for the reduce.
//                                                                   mirrors bn_act::backward
//       Launch: grid = ceil(n*c*hw / 256), block = 256.
//   bn_act_running_update(float* running_mean, float* running_var, const float* mean,
//                         const float* var_unbiased, int c, float keep, float take)
//       running = keep * running + take * batch, keep = (1 - momentum) and take = momentum
//       rounded from f64 exactly as bn_act::update_running does (momentum 0.1).
//       Launch: grid = ceil(c / 256), block = 256.
//   bn_act_eval_invstd(const float* running_var, int c, float eps, float* invstd)
//       invstd = 1 / sqrt(running_var + eps) (eval mode).          mirrors bn_act::eval_invstd
//       Launch: grid = ceil(c / 256), block = 256.
//
// Choosing `splits` (both reductions): enough blocks to fill the GPU, e.g.
// splits = clamp(ceil(4 * SMs / c), 1, n) (c = 64 on an H200: 9 slices). Any value in [1, n]
// is correct; the result depends on `splits` only through f64 rounding, and never on timing.
//
// Why this shape: statistics are summed in f64 in one pass (E[x^2] - mean^2 loses nothing
// at f64 for f32 data whose mean/std ratio is below ~1e6), so the statistics cost one read of x
// instead of the CPU's two. The two-kernel split (slices, then a fixed-order merge per channel)
// keeps reductions deterministic without atomics while giving every SM work: for ResNet18's
// first stage (B=256, 64 channels, 32x32) one block per channel would be 64 blocks for 132 SMs.
// Bandwidth floor on an H200 (~4.3 TB/s) for that layer (16.8M elements): stats ~16 us,
// forward ~31-47 us (read x (+ r), write y), backward reduce ~31-47 us (x, dy (+ y)), apply
// ~47-78 us (x, dy (+ y), write dx (+ dr)).
//
// Why the backward gates on z recomputed from x where it can: the ReLU's gate needs the
// forward output's sign, and without a residual that is the sign of z = x * scale + shift,
// which the kernels already read x for; reading y as well would be a third input stream.
// With a residual, z would need r, as many bytes as y, so y is read. The recomputed z is the
// forward's to the bit (same operations in the same order, no contraction), so the gate is
// the same as from y in f32; under bf16 storage (y rounded) it differs only where
// 0 < z < 2^-133, which rounds to zero in bf16.
// Element-wise outputs are bit-identical to the CPU given the same statistics (non-contracting
// arithmetic in the CPU's order); the reductions differ from the CPU's f32 sums by rounding.

#include "common.cuh"

#define BN_THREADS 256

// The samples of slice `s` out of `splits`: [first, last).
__device__ __forceinline__ void bn_slice(int n, int splits, int s, int* first, int* last) {
    const int per = (n + splits - 1) / splits;
    *first = min(n, s * per);
    *last = min(n, *first + per);
}

// One channel's affine map z = x * scale + shift, as bn_act_fwd computes it.
struct BnAffine {
    float scale, shift;
};

__device__ __forceinline__ BnAffine bn_affine(const float* mean, const float* invstd,
                                              const float* gamma, const float* beta, int ch) {
    const float scale = rl_mul(gamma[ch], invstd[ch]);
    return {scale, rl_sub(beta[ch], rl_mul(mean[ch], scale))};
}

// Does element k (position ci = ch*hw + pixel within one sample) pass its gradient? Exactly
// Activation::passes, with the forward output read from y, or where y is NULL (no residual)
// recomputed from x through the channel's affine map. Neither is read where no ReLU is kept.
__device__ __forceinline__ bool bn_gate(const float* mask, int relu, int ci, const float* x,
                                        const float* y, long long k, BnAffine a) {
    if (!relu) return true;
    const bool keeps_relu = mask == 0 || mask[ci] != 0.0f;
    if (!keeps_relu) return true;
    const float out = y ? y[k] : rl_add(rl_mul(x[k], a.scale), a.shift);
    return out > 0.0f;
}

// Block-reduces a thread's two partial sums and writes them as channel `ch`'s slice `s` of
// `partial` [c, splits, 2] (both reductions share this tail).
__device__ __forceinline__ void bn_store_partial_pair(double a, double b, double* scratch,
                                                      double* __restrict__ partial, int ch,
                                                      int splits, int s) {
    a = rl_block_sum(a, scratch);
    b = rl_block_sum(b, scratch);
    if (threadIdx.x == 0) {
        double* out = partial + ((long long)ch * splits + s) * 2;
        out[0] = a;
        out[1] = b;
    }
}

extern "C" __global__ void __launch_bounds__(BN_THREADS)
bn_act_stats(const float* __restrict__ x, int n, int c, int hw, int splits,
             double* __restrict__ partial) {
    __shared__ double scratch[32];
    const int ch = blockIdx.x, s = blockIdx.y;
    int first, last;
    bn_slice(n, splits, s, &first, &last);
    // Walk the slice's (sample, pixel) pairs BN_THREADS apart without a division per element:
    // a step of BN_THREADS is q whole planes plus r pixels.
    const int q = BN_THREADS / hw, r = BN_THREADS % hw;
    int smp = first + threadIdx.x / hw, px = threadIdx.x % hw;
    double sum = 0.0, sq = 0.0;
    while (smp < last) {
        const double v = (double)x[((long long)smp * c + ch) * hw + px];
        sum += v;
        sq += v * v;
        smp += q;
        px += r;
        if (px >= hw) { px -= hw; ++smp; }
    }
    bn_store_partial_pair(sum, sq, scratch, partial, ch, splits, s);
}

extern "C" __global__ void __launch_bounds__(BN_THREADS)
bn_act_stats_final(const double* __restrict__ partial, int n, int c, int hw, int splits, float eps,
                   float* __restrict__ mean, float* __restrict__ invstd,
                   float* __restrict__ var_unbiased) {
    __shared__ double scratch[32];
    const int ch = blockIdx.x;
    double sum = 0.0, sq = 0.0;
    for (int s = threadIdx.x; s < splits; s += blockDim.x) {
        sum += partial[((long long)ch * splits + s) * 2];
        sq += partial[((long long)ch * splits + s) * 2 + 1];
    }
    sum = rl_block_sum(sum, scratch);
    sq = rl_block_sum(sq, scratch);
    if (threadIdx.x != 0) return;
    const double m = (double)n * (double)hw;
    const double mu = sum / m;
    const double var = fmax(sq / m - mu * mu, 0.0);
    const float var32 = (float)var;
    mean[ch] = (float)mu;
    // The CPU rounds the variance to f32, then 1 / sqrt(var + eps) in f32.
    invstd[ch] = rl_div(1.0f, __fsqrt_rn(rl_add(var32, eps)));
    var_unbiased[ch] = m > 1.0 ? (float)(var * m / (m - 1.0)) : var32;
}

extern "C" __global__ void __launch_bounds__(BN_THREADS)
bn_act_fwd(const float* __restrict__ x, const float* __restrict__ residual,
           const float* __restrict__ mean, const float* __restrict__ invstd,
           const float* __restrict__ gamma, const float* __restrict__ beta,
           const float* __restrict__ mask, int relu, int n, int c, int hw, float* __restrict__ y) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int per = c * hw;
    if (i >= n * per) return;
    const int ci = i % per;
    const BnAffine a = bn_affine(mean, invstd, gamma, beta, ci / hw);
    float z = rl_add(rl_mul(x[i], a.scale), a.shift);
    if (residual) z = rl_add(z, residual[i]);
    // Activation::apply: zero where the ReLU is kept and z < 0.
    if (relu && z < 0.0f && (mask == 0 || mask[ci] != 0.0f)) z = 0.0f;
    y[i] = z;
}

extern "C" __global__ void __launch_bounds__(BN_THREADS)
bn_act_bwd_reduce(const float* __restrict__ x, const float* __restrict__ y,
                  const float* __restrict__ dy, const float* __restrict__ mean,
                  const float* __restrict__ invstd, const float* __restrict__ gamma,
                  const float* __restrict__ beta, const float* __restrict__ mask, int relu,
                  int n, int c, int hw, int splits, double* __restrict__ partial) {
    __shared__ double scratch[32];
    const int ch = blockIdx.x, s = blockIdx.y;
    int first, last;
    bn_slice(n, splits, s, &first, &last);
    const int q = BN_THREADS / hw, r = BN_THREADS % hw;
    int smp = first + threadIdx.x / hw, px = threadIdx.x % hw;
    const double mu = (double)mean[ch];
    const BnAffine a = bn_affine(mean, invstd, gamma, beta, ch);
    double sd = 0.0, sdx = 0.0;
    while (smp < last) {
        const long long k = ((long long)smp * c + ch) * hw + px;
        if (bn_gate(mask, relu, ch * hw + px, x, y, k, a)) {
            const double d = (double)dy[k];
            sd += d;
            sdx += d * ((double)x[k] - mu);
        }
        smp += q;
        px += r;
        if (px >= hw) { px -= hw; ++smp; }
    }
    bn_store_partial_pair(sd, sdx, scratch, partial, ch, splits, s);
}

extern "C" __global__ void __launch_bounds__(BN_THREADS)
bn_act_bwd_reduce_final(const double* __restrict__ partial, const float* __restrict__ invstd,
                        int c, int splits, float* __restrict__ sums, float* __restrict__ dgamma,
                        float* __restrict__ dbeta) {
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double sd = 0.0, sdx = 0.0;
    for (int s = 0; s < splits; ++s) {
        sd += partial[((long long)ch * splits + s) * 2];
        sdx += partial[((long long)ch * splits + s) * 2 + 1];
    }
    const float s32 = (float)sd;
    const float sx32 = (float)(sdx * (double)invstd[ch]);
    sums[ch] = s32;
    sums[c + ch] = sx32;
    if (dgamma) dgamma[ch] = sx32;
    if (dbeta) dbeta[ch] = s32;
}

extern "C" __global__ void __launch_bounds__(BN_THREADS)
bn_act_bwd_apply(const float* __restrict__ x, const float* __restrict__ y,
                 const float* __restrict__ dy, const float* __restrict__ mean,
                 const float* __restrict__ invstd, const float* __restrict__ gamma,
                 const float* __restrict__ beta, const float* __restrict__ mask, int relu,
                 int train, const float* __restrict__ sums, int n, int c, int hw,
                 float* __restrict__ dx, float* __restrict__ dr) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int per = c * hw;
    if (i >= n * per) return;
    const int ci = i % per;
    const int ch = ci / hw;
    const BnAffine a = bn_affine(mean, invstd, gamma, beta, ch);
    const float dz = bn_gate(mask, relu, ci, x, y, i, a) ? dy[i] : 0.0f;
    if (dr) dr[i] = dz;
    if (dx) {
        const float k = a.scale;  // gamma * invstd
        if (train) {
            // k * (dz - s/m - xhat*sx/m), evaluated as the CPU does, left to right.
            const float m = (float)(n * hw);  // one rounding of the exact count, as c((n*hw) as f64)
            const float xhat = rl_mul(rl_sub(x[i], mean[ch]), invstd[ch]);
            const float t = rl_sub(rl_sub(dz, rl_div(sums[ch], m)), rl_div(rl_mul(xhat, sums[c + ch]), m));
            dx[i] = rl_mul(k, t);
        } else {
            dx[i] = rl_mul(k, dz);
        }
    }
}

extern "C" __global__ void __launch_bounds__(BN_THREADS)
bn_act_running_update(float* __restrict__ running_mean, float* __restrict__ running_var,
                      const float* __restrict__ mean, const float* __restrict__ var_unbiased,
                      int c, float keep, float take) {
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    running_mean[ch] = rl_add(rl_mul(keep, running_mean[ch]), rl_mul(take, mean[ch]));
    running_var[ch] = rl_add(rl_mul(keep, running_var[ch]), rl_mul(take, var_unbiased[ch]));
}

// invstd = 1 / sqrt(running_var + eps): the eval-mode statistics (bn_act::eval_invstd), so an
// eval pass never reads the running variance back to the host.
extern "C" __global__ void __launch_bounds__(BN_THREADS)
bn_act_eval_invstd(const float* __restrict__ running_var, int c, float eps, float* __restrict__ invstd) {
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    invstd[ch] = 1.0f / sqrtf(rl_add(running_var[ch], eps));
}
