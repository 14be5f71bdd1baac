// Losses: softmax cross-entropy, temperature KL (RSLAD / KD), attention transfer and AugMix's
// Jensen-Shannon consistency loss (mirrors src/ops/loss.rs). Every forward writes one partial
// per row (or sample), and loss_reduce_sum adds those in a fixed order, so the scalar loss is
// deterministic.
//
// Kernels (logits/s/t/probs/ps/pt/dz/ds: f32 [n, k]; labels: u32 [n]; f/fs/dfs: f32 [n, ch, hw];
// a/at: f32 [n, hw]; norms, row_loss: f32 [n]):
//
//   loss_ce_fwd(const float* logits, const unsigned int* labels, int n, int k,
//               float* probs, float* row_loss)
//       probs = softmax(row), row_loss[i] = logsumexp(row) - row[label] (labels < k).
//       Launch: grid = ceil(n / 8), block = 256 (one warp per row).      loss::cross_entropy
//   loss_ce_bwd(const float* probs, const unsigned int* labels, int n, int k, float scale,
//               float* dz)
//       dz = (probs - onehot) * scale, scale = g (sum) or g / n (mean) as the CPU rounds it.
//       Launch: grid = ceil(n*k / 256), block = 256.             loss::cross_entropy_backward
//   loss_kl_fwd(const float* s, const float* t, int n, int k, float temp,
//               float* ps, float* pt, float* row_loss)
//       ps = softmax(s/T), pt = softmax(t/T),
//       row_loss[i] = sum_j pt (log pt - log ps) over pt > 0 (log-softmax computed directly).
//       Then loss = T^2/n * sum_i row_loss: loss_reduce_sum(row_loss, n, T*T, n).
//       Launch: grid = ceil(n / 8), block = 256 (one warp per row).      loss::kl_div
//   loss_kl_bwd(const float* ps, const float* pt, int total, float scale, float* ds)
//       ds = (ps - pt) * scale, scale = g * (T / n) (T/n rounded from f64, as the CPU).
//       Launch: grid = ceil(total / 256), block = 256.                   loss::kl_div_backward
//   loss_at_map(const float* f, const float* at, int n, int ch, int hw, float inv_c,
//               float* a, float* norms, float* row_loss)
//       q[j] = sum_c f[c][j]^2 * inv_c (channels in order), norms[i] = ||q||,
//       a = q / max(||q||, 1e-12); inv_c = (1.0 / ch as f64) as f32.
//       With at != NULL also row_loss[i] = sum_j (a - at)^2 (else row_loss is not touched and
//       may be NULL); loss = loss_reduce_sum(row_loss, n, 1, n*hw).
//       Launch: grid = n, block = 256.                     loss::attention_map / loss::attention
//   loss_at_bwd(const float* fs, const float* a, const float* norms, const float* at,
//               int n, int ch, int hw, float scale, float two_over_c, float* dfs)
//       da = (a - at) * scale, dq = (da - a (a . da)) / ||q|| (or da / 1e-12 when the norm is
//       clamped), dfs = dq * f * two_over_c; scale = g * (2 / (n*hw)), two_over_c = 2 / ch,
//       both rounded from f64 as the CPU does.
//       Launch: grid = n, block = 256, dynamic shared memory = hw * 4 bytes (over 48 KiB, i.e.
//       hw > 12288 at 112x112 maps and up, the launcher opts in; the launch fails with an error
//       naming the limit past what a block can have: 227 KiB on sm_90).
//                                                                   loss::attention_backward
//   loss_jsd_fwd(const float* za, const float* zb, const float* zc, int n, int k,
//                float* row_loss)
//       za/zb/zc: the clean, first and second augmented logits [n, k]. Per row, log p = z - lse
//       with lse = max + log(sum exp(z - max)), p = expf(log p),
//       M = clamp((pa + pb + pc) * (1/3), 1e-7, 1) (the CPU divides by 3: at most an ulp apart;
//       a true division would call its slow path and spill), row_loss[i] = sum over the three
//       p and j of p (log p - log M), over p > 0.
//       Then loss = loss_reduce_sum(row_loss, n, 1, 3n).
//       Launch: grid = n, block = 256.                                   loss::jsd
//   loss_jsd_bwd(const float* za, const float* zb, const float* zc, int n, int k, float scale,
//                float* da, float* db, float* dc)
//       Recomputes the row as the forward does; with h = log p - log M - [1e-7 <= M <= 1],
//       d = p (h - <p, h>) * scale for each of the three, scale = g * (1 / 3n) (1/3n rounded
//       from f64, as the CPU).
//       Launch: grid = n, block = 256.                                   loss::jsd_backward
//   loss_reduce_sum(const float* values, int count, double mul, double div, float* out)
//       out[0] = (sum values) * mul / div, summed in f64 in a fixed order.
//       CE: (row_loss, n, 1, n or 1); KL: (row_loss, n, T*T, n); AT: (row_loss, n, 1, n*hw);
//       JSD: (row_loss, n, 1, 3n).
//       Launch: grid = 1, block = 256.
//
// Sizes are small (n <= 256 rows of k <= 1000 logits; attention maps of at most a few M
// elements), so these kernels favour plain fixed-order reductions over throughput.
// Transcendentals are CUDA's accurate expf/logf (no fast math), within an ulp or two of Rust's.

#include "common.cuh"

#define LOSS_THREADS 256
#define LOSS_ROWS_PER_BLOCK (LOSS_THREADS / 32)
#define AT_EPS 1e-12f
#define JSD_LO 1e-7f
#define JSD_HI 1.0f

extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
loss_ce_fwd(const float* __restrict__ logits, const unsigned int* __restrict__ labels, int n,
            int k, float* __restrict__ probs, float* __restrict__ row_loss) {
    const int row = blockIdx.x * LOSS_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= n) return;  // whole warps leave together: the shuffles below stay full-mask
    const float* z = logits + (long long)row * k;
    float* p = probs + (long long)row * k;
    float mx = __int_as_float(0xff800000);  // -inf, as fold(neg_infinity, max)
    for (int j = lane; j < k; j += 32) mx = fmaxf(mx, z[j]);
    mx = rl_warp_max(mx);
    float s = 0.0f;
    for (int j = lane; j < k; j += 32) {
        const float e = expf(z[j] - mx);
        p[j] = e;
        s += e;
    }
    s = rl_warp_sum(s);
    for (int j = lane; j < k; j += 32) p[j] = p[j] / s;
    if (lane == 0) row_loss[row] = (mx + logf(s)) - z[labels[row]];
}

extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
loss_ce_bwd(const float* __restrict__ probs, const unsigned int* __restrict__ labels, int n, int k,
            float scale, float* __restrict__ dz) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * k) return;
    const int row = i / k, j = i - row * k;
    const float onehot = (unsigned int)j == labels[row] ? 1.0f : 0.0f;
    dz[i] = rl_mul(rl_sub(probs[i], onehot), scale);
}

extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
loss_kl_fwd(const float* __restrict__ s, const float* __restrict__ t, int n, int k, float temp,
            float* __restrict__ ps, float* __restrict__ pt, float* __restrict__ row_loss) {
    const int row = blockIdx.x * LOSS_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= n) return;
    const long long off = (long long)row * k;
    const float* zs = s + off;
    const float* zt = t + off;
    float* qs = ps + off;
    float* qt = pt + off;
    float ms = __int_as_float(0xff800000), mt = ms;
    for (int j = lane; j < k; j += 32) {
        ms = fmaxf(ms, zs[j] / temp);
        mt = fmaxf(mt, zt[j] / temp);
    }
    ms = rl_warp_max(ms);
    mt = rl_warp_max(mt);
    float ss = 0.0f, st = 0.0f;
    for (int j = lane; j < k; j += 32) {
        const float es = expf(zs[j] / temp - ms), et = expf(zt[j] / temp - mt);
        qs[j] = es;
        qt[j] = et;
        ss += es;
        st += et;
    }
    ss = rl_warp_sum(ss);
    st = rl_warp_sum(st);
    const float lse_s = ms + logf(ss), lse_t = mt + logf(st);
    float acc = 0.0f;
    for (int j = lane; j < k; j += 32) {
        qs[j] = qs[j] / ss;
        const float p = qt[j] / st;
        qt[j] = p;
        if (p > 0.0f) acc += p * ((zt[j] / temp - lse_t) - (zs[j] / temp - lse_s));
    }
    acc = rl_warp_sum(acc);
    if (lane == 0) row_loss[row] = acc;
}

extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
loss_kl_bwd(const float* __restrict__ ps, const float* __restrict__ pt, int total, float scale,
            float* __restrict__ ds) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    ds[i] = rl_mul(rl_sub(ps[i], pt[i]), scale);
}

extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
loss_at_map(const float* __restrict__ f, const float* __restrict__ at, int n, int ch, int hw,
            float inv_c, float* __restrict__ a, float* __restrict__ norms,
            float* __restrict__ row_loss) {
    __shared__ double scratch[32];
    const int i = blockIdx.x;
    if (i >= n) return;  // uniform per block
    const float* fi = f + (long long)i * ch * hw;
    float* ai = a + (long long)i * hw;
    // Each thread owns pixels j, tid + 256, ...: it sums its channels in the CPU's order (the
    // same roundings) and later rereads only what it wrote itself, so no barrier is needed.
    double sq = 0.0;
    for (int j = threadIdx.x; j < hw; j += blockDim.x) {
        float q = 0.0f;
        for (int cc = 0; cc < ch; ++cc) {
            const float v = fi[(long long)cc * hw + j];
            q = rl_add(q, rl_mul(rl_mul(v, v), inv_c));
        }
        ai[j] = q;
        sq += (double)q * (double)q;
    }
    sq = rl_block_sum(sq, scratch);
    const float norm = (float)sqrt(sq);
    const float d = fmaxf(norm, AT_EPS);
    double diff = 0.0;
    for (int j = threadIdx.x; j < hw; j += blockDim.x) {
        const float v = ai[j] / d;
        ai[j] = v;
        if (at) {
            const float e = v - at[(long long)i * hw + j];
            diff += (double)e * (double)e;
        }
    }
    if (threadIdx.x == 0) norms[i] = norm;
    if (at) {  // uniform: every thread takes the same branch into the barrier
        diff = rl_block_sum(diff, scratch);
        if (threadIdx.x == 0) row_loss[i] = (float)diff;
    }
}

extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
loss_at_bwd(const float* __restrict__ fs, const float* __restrict__ a,
            const float* __restrict__ norms, const float* __restrict__ at, int n, int ch, int hw,
            float scale, float two_over_c, float* __restrict__ dfs) {
    extern __shared__ float dq[];  // [hw]
    __shared__ double scratch[32];
    const int i = blockIdx.x;
    if (i >= n) return;
    const float* ai = a + (long long)i * hw;
    const float* ti = at + (long long)i * hw;
    double dot = 0.0;
    for (int j = threadIdx.x; j < hw; j += blockDim.x) {
        const float da = rl_mul(rl_sub(ai[j], ti[j]), scale);
        dq[j] = da;
        dot += (double)ai[j] * (double)da;
    }
    dot = rl_block_sum(dot, scratch);
    const float norm = norms[i];
    const float dot32 = (float)dot;
    for (int j = threadIdx.x; j < hw; j += blockDim.x) {
        const float da = dq[j];
        dq[j] = norm > AT_EPS ? rl_div(rl_sub(da, rl_mul(ai[j], dot32)), norm) : rl_div(da, AT_EPS);
    }
    __syncthreads();
    const long long base = (long long)i * ch * hw;
    const int per = ch * hw;
    for (int e = threadIdx.x; e < per; e += blockDim.x) {
        const int j = e % hw;
        dfs[base + e] = rl_mul(rl_mul(dq[j], fs[base + e]), two_over_c);
    }
}

// The row's max and log-sum-exp, for every thread of the block: log p = z - lse, p = expf(log p)
// (no division, so p and log p stay consistent and finite where p underflows).
__device__ __forceinline__ float jsd_lse(const float* __restrict__ z, int k, float* scratch) {
    float mx = __int_as_float(0xff800000);  // -inf
    for (int j = threadIdx.x; j < k; j += blockDim.x) mx = fmaxf(mx, z[j]);
    mx = rl_block_max(mx, scratch);
    float s = 0.0f;
    for (int j = threadIdx.x; j < k; j += blockDim.x) s += expf(z[j] - mx);
    s = rl_block_sum(s, scratch);
    return mx + logf(s);
}

// One class j of a row: the three probabilities and logs, log M and whether M was not clamped.
struct JsdClass {
    float p[3], lp[3], log_m;
    bool open;
};

__device__ __forceinline__ JsdClass jsd_class(const float* za, const float* zb, const float* zc,
                                              float lse_a, float lse_b, float lse_c, int j) {
    JsdClass c;
    c.lp[0] = za[j] - lse_a;
    c.lp[1] = zb[j] - lse_b;
    c.lp[2] = zc[j] - lse_c;
#pragma unroll
    for (int i = 0; i < 3; ++i) c.p[i] = expf(c.lp[i]);
    const float m = (c.p[0] + c.p[1] + c.p[2]) * (1.0f / 3.0f);
    c.open = m >= JSD_LO && m <= JSD_HI;
    c.log_m = logf(fminf(fmaxf(m, JSD_LO), JSD_HI));
    return c;
}

extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
loss_jsd_fwd(const float* __restrict__ za, const float* __restrict__ zb,
             const float* __restrict__ zc, int n, int k, float* __restrict__ row_loss) {
    __shared__ float scratch[32];
    __shared__ double scratch_d[32];
    const int row = blockIdx.x;
    if (row >= n) return;  // uniform per block
    const long long off = (long long)row * k;
    za += off;
    zb += off;
    zc += off;
    const float lse_a = jsd_lse(za, k, scratch), lse_b = jsd_lse(zb, k, scratch),
                lse_c = jsd_lse(zc, k, scratch);
    double acc = 0.0;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        const JsdClass c = jsd_class(za, zb, zc, lse_a, lse_b, lse_c, j);
#pragma unroll
        for (int i = 0; i < 3; ++i)
            if (c.p[i] > 0.0f) acc += (double)(c.p[i] * (c.lp[i] - c.log_m));
    }
    acc = rl_block_sum(acc, scratch_d);
    if (threadIdx.x == 0) row_loss[row] = (float)acc;
}

extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
loss_jsd_bwd(const float* __restrict__ za, const float* __restrict__ zb,
             const float* __restrict__ zc, int n, int k, float scale, float* __restrict__ da,
             float* __restrict__ db, float* __restrict__ dc) {
    __shared__ float scratch[32];
    __shared__ double scratch_d[32];
    const int row = blockIdx.x;
    if (row >= n) return;
    const long long off = (long long)row * k;
    za += off;
    zb += off;
    zc += off;
    const float lse_a = jsd_lse(za, k, scratch), lse_b = jsd_lse(zb, k, scratch),
                lse_c = jsd_lse(zc, k, scratch);
    // <p, h> of each distribution, then a second pass writes p (h - <p, h>) * scale.
    double dot0 = 0.0, dot1 = 0.0, dot2 = 0.0;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        const JsdClass c = jsd_class(za, zb, zc, lse_a, lse_b, lse_c, j);
        const float through_m = c.open ? 1.0f : 0.0f;
        dot0 += (double)(c.p[0] * (c.lp[0] - c.log_m - through_m));
        dot1 += (double)(c.p[1] * (c.lp[1] - c.log_m - through_m));
        dot2 += (double)(c.p[2] * (c.lp[2] - c.log_m - through_m));
    }
    const float s0 = (float)rl_block_sum(dot0, scratch_d);
    const float s1 = (float)rl_block_sum(dot1, scratch_d);
    const float s2 = (float)rl_block_sum(dot2, scratch_d);
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        const JsdClass c = jsd_class(za, zb, zc, lse_a, lse_b, lse_c, j);
        const float through_m = c.open ? 1.0f : 0.0f;
        da[off + j] = c.p[0] * ((c.lp[0] - c.log_m - through_m) - s0) * scale;
        db[off + j] = c.p[1] * ((c.lp[1] - c.log_m - through_m) - s1) * scale;
        dc[off + j] = c.p[2] * ((c.lp[2] - c.log_m - through_m) - s2) * scale;
    }
}

extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
loss_reduce_sum(const float* __restrict__ values, int count, double mul, double div,
                float* __restrict__ out) {
    __shared__ double scratch[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += (double)values[i];
    s = rl_block_sum(s, scratch);
    if (threadIdx.x == 0) out[0] = (float)(s * mul / div);
}
