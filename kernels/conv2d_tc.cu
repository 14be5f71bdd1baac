// 2-D convolution on tensor cores (the `_v2` versions of kernels/conv2d.cu): the same implicit
// GEMMs with mma.sync TF32 inputs and f32 accumulation. Arguments, geometry and the split-K
// contract are those of kernels/conv2d.cu (whose conv2d_bwd_weight_reduce adds the partials);
// the section comment below gives the launch grids and the numerics.

#include "common.cuh"
// ==========================================================================================
// v2: the same three GEMMs on tensor cores, mma.sync.aligned.m16n8k8 with TF32 inputs and f32
// accumulation (sm_80+; the H200 is sm_90).
//
//   conv2d_fwd_v2(const float* x, const float* wt, float* y, <geometry>)
//       Launch: grid = (ceil(n*h_out*w_out / 128), ceil(c_out / 64), 1), block = 256.
//   conv2d_bwd_data_v2(const float* wt, const float* dy, float* dx, <geometry>)
//       Launch: grid = (ceil(n*h*w / 128), ceil(c_in / 64), 1), block = 256.
//   conv2d_bwd_weight_v2(const float* x, const float* dy, float* dw_part, <geometry>, int splits)
//       Launch: grid = (ceil(c_in*k*k / 128), ceil(c_out / 64), splits), block = 256.
//       Same split-K contract as conv2d_bwd_weight (chunks rounded up to 16; reduce the
//       partials with conv2d_bwd_weight_reduce, or pass dw directly when splits == 1).
// Arguments are exactly those of the v1 kernels; only the N tile (128) differs, so the grids do.
// No dynamic shared memory (static: 27.0 KB for fwd / bwd_data, 30.0 KB for bwd_weight).
//
// Numerics: operands are rounded to TF32 (10-bit mantissa, round to nearest, ties away) when
// they are staged into shared memory; products are exact and accumulate in f32, so results
// differ from the f32 kernels by ~1e-3 relative to the size of the terms (PyTorch's default for
// convolutions on Ampere and later). Tests compare them with a TF32 tolerance.
//
// Tiling: block tile 64 (M) x 128 (N), K step 16; 8 warps as 2 x 4, each owning a 32 x 32
// sub-tile = 2 x 4 mma tiles of 16 x 8, i.e. 8 mma per 8-wide K slice and 32 f32 accumulators
// per thread. Shared tiles hold TF32 bit patterns, padded so every fragment load is
// conflict-free: A as [m][k] with rows of 20 words (rows g = 0..7 land on banks 20g mod 32 =
// 0, 20, 8, 28, ...; + t covers 32 distinct banks); B as [k][n] with rows of 136 words
// (8t + g distinct), or as [n][k] with rows of 20 words for the weight gradient, whose loader
// walks k fastest. On an H200 one SM retires about one m16n8k8 TF32 mma per clock (~400 TF/s
// over 132 SMs), so the 128 mma of a block's K step take ~128 clocks; the gather loaders are
// the real budget. They therefore never divide per element: each thread decomposes its first
// K index once and then walks it with carries ((ci, ky, kx) += 1 inside a step, += 16 between
// steps with a precomputed decomposition of 16), costing ~10 integer operations per element.

#define V2_BM 64
#define V2_BN 128
#define V2_BK 16
#define V2_THREADS 256

typedef unsigned v2_tile_a[V2_BM][V2_BK + 4];   // [m][k]
typedef unsigned v2_tile_bk[V2_BK][V2_BN + 8];  // [k][n]
typedef unsigned v2_tile_bn[V2_BN][V2_BK + 4];  // [n][k]

// f32 -> TF32 bit pattern (round to nearest, ties away from zero), as cuBLAS/cuDNN round.
__device__ __forceinline__ unsigned conv_to_tf32(float v) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
    return r;
}

// d += a * b for one 16x8x8 tile; fragment layouts as in the PTX ISA (groupID g = lane / 4,
// t = lane % 4): a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); b0 (k=t, n=g),
// b1 (k=t+4, n=g); d0 (g, 2t), d1 (g, 2t+1), d2 (g+8, 2t), d3 (g+8, 2t+1).
__device__ __forceinline__ void conv_mma_tf32(float d[4], const unsigned a[4], const unsigned b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// One K step (16) of the warp's 32 x 32 sub-tile. B_NMAJOR: B staged as [n][k] instead of [k][n].
template <bool B_NMAJOR>
__device__ __forceinline__ void v2_tile_mma(const v2_tile_a& As, const unsigned* Bs, int wm,
                                            int wn, int g, int t, float acc[2][4][4]) {
#pragma unroll
    for (int ks = 0; ks < V2_BK; ks += 8) {
        unsigned a[2][4], b[4][2];
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
            const int r = wm * 32 + mi * 16 + g;
            a[mi][0] = As[r][ks + t];
            a[mi][1] = As[r + 8][ks + t];
            a[mi][2] = As[r][ks + t + 4];
            a[mi][3] = As[r + 8][ks + t + 4];
        }
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
            const int c = wn * 32 + ni * 8 + g;
            if (B_NMAJOR) {
                b[ni][0] = Bs[c * (V2_BK + 4) + ks + t];
                b[ni][1] = Bs[c * (V2_BK + 4) + ks + t + 4];
            } else {
                b[ni][0] = Bs[(ks + t) * (V2_BN + 8) + c];
                b[ni][1] = Bs[(ks + t + 4) * (V2_BN + 8) + c];
            }
        }
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
#pragma unroll
            for (int ni = 0; ni < 4; ++ni) conv_mma_tf32(acc[mi][ni], a[mi], b[ni]);
    }
}

// A K-index walker over (outer, ky, kx) = kidx decomposed with kk2 = k*k: `base` tracks
// outer * outer_stride. add1() moves by one, add(step) by a precomputed step (< k in kx and
// ky, any outer), so no division happens after set().
struct v2_kwalk {
    int outer, ky, kx, base;
    __device__ __forceinline__ void set(int kidx, int k, int kk2, int outer_stride) {
        outer = kidx / kk2;
        const int rem = kidx - outer * kk2;
        ky = rem / k;
        kx = rem - ky * k;
        base = outer * outer_stride;
    }
    __device__ __forceinline__ void add1(int k, int outer_stride) {
        if (++kx == k) {
            kx = 0;
            if (++ky == k) {
                ky = 0;
                ++outer;
                base += outer_stride;
            }
        }
    }
    __device__ __forceinline__ void add(const v2_kwalk& step, int k, int outer_stride) {
        kx += step.kx;
        ky += step.ky;
        outer += step.outer;
        base += step.base;
        if (kx >= k) { kx -= k; ++ky; }
        if (ky >= k) { ky -= k; ++outer; base += outer_stride; }
    }
};

// The block's GEMM: `tiles` K steps from k_first, `load` gathering a step into registers and
// `stage` writing it to shared memory as TF32 (rl_gemm_k_loop double-buffers them); each warp
// accumulates its 32 x 32 sub-tile with mma (B as [n][k] when B_NMAJOR, else [k][n]) and hands
// it to `out`. The mma fragment's group g and thread t (PTX ISA naming) and the warp's place
// (wm of 2 rows, wn of 4 columns) come from the thread index.
template <bool B_NMAJOR, class BTile, class Load, class Stage, class Out>
__device__ __forceinline__ void v2_gemm(const v2_tile_a* As, const BTile* Bs, int k_first,
                                        int tiles, Load& load, Stage& stage, int m0, int n0,
                                        Out out) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3, wm = warp >> 2, wn = warp & 3;
    float acc[2][4][4] = {};
    auto math = [&](int buf) { v2_tile_mma<B_NMAJOR>(As[buf], &Bs[buf][0][0], wm, wn, g, t, acc); };
    rl_gemm_k_loop<V2_BK>(k_first, tiles, load, stage, math);
    rl_mma_epilogue(acc, m0, n0, wm, wn, g, t, out);
}

// Stages the A values (rows a_m + 16r, column a_k) and K-major B values (rows b_k + j, column
// b_n) this thread loaded, as TF32: the layout of the forward and the data gradient.
__device__ __forceinline__ void v2_stage_kmajor(v2_tile_a& A, v2_tile_bk& B, const float ra[4],
                                                const float rb[8], int a_m, int a_k, int b_k,
                                                int b_n) {
#pragma unroll
    for (int r = 0; r < 4; ++r) A[a_m + 16 * r][a_k] = conv_to_tf32(ra[r]);
#pragma unroll
    for (int j = 0; j < 8; ++j) B[b_k + j][b_n] = conv_to_tf32(rb[j]);
}

extern "C" __global__ void __launch_bounds__(V2_THREADS, 2)
conv2d_fwd_v2(const float* __restrict__ x, const float* __restrict__ wt, float* __restrict__ y,
              int n, int c_in, int h, int w, int c_out, int k, int stride, int pad, int h_out,
              int w_out) {
    __shared__ __align__(16) v2_tile_a As[2];
    __shared__ __align__(16) v2_tile_bk Bs[2];
    const int tid = threadIdx.x;
    const int kk2 = k * k, K = c_in * kk2, M = c_out, hw_in = h * w;
    const int hw_out = h_out * w_out, N = n * hw_out;
    const int m0 = blockIdx.y * V2_BM, n0 = blockIdx.x * V2_BN;

    // A (weights, [c_out][K] row-major): thread -> k = tid % 16, rows tid / 16 + 16r.
    const int a_k = tid & 15, a_m = tid >> 4;
    // B (im2col): thread -> one output pixel (column tid % 128), K rows 8 * (tid / 128) + j.
    const int b_n = tid & 127, b_k = (tid >> 7) * 8;
    const int col = n0 + b_n;
    const bool col_ok = col < N;
    const int img = col_ok ? col / hw_out : 0;
    const int p = col - img * hw_out;
    const int oy = p / w_out, ox = p - (p / w_out) * w_out;
    const int iy0 = oy * stride - pad, ix0 = ox * stride - pad;
    const float* xn = x + (long long)img * c_in * hw_in;
    v2_kwalk kw, kstep;
    kw.set(b_k, k, kk2, hw_in);
    kstep.set(V2_BK, k, kk2, hw_in);

    float ra[4], rb[8];
    const int tiles = (K + V2_BK - 1) / V2_BK;

    auto load = [&](int k0) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int m = m0 + a_m + 16 * r, kk = k0 + a_k;
            ra[r] = (m < M && kk < K) ? wt[(long long)m * K + kk] : 0.0f;
        }
        v2_kwalk e = kw;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int iy = iy0 + e.ky, ix = ix0 + e.kx;
            const bool ok = col_ok && k0 + b_k + j < K && iy >= 0 && iy < h && ix >= 0 && ix < w;
            rb[j] = ok ? xn[e.base + iy * w + ix] : 0.0f;
            e.add1(k, hw_in);
        }
        kw.add(kstep, k, hw_in);
    };
    auto stage = [&](int buf) { v2_stage_kmajor(As[buf], Bs[buf], ra, rb, a_m, a_k, b_k, b_n); };
    v2_gemm<false>(As, Bs, 0, tiles, load, stage, m0, n0, rl_out_nchw{y, M, N, hw_out});
}

extern "C" __global__ void __launch_bounds__(V2_THREADS, 2)
conv2d_bwd_data_v2(const float* __restrict__ wt, const float* __restrict__ dy,
                   float* __restrict__ dx, int n, int c_in, int h, int w, int c_out, int k,
                   int stride, int pad, int h_out, int w_out) {
    __shared__ __align__(16) v2_tile_a As[2];
    __shared__ __align__(16) v2_tile_bk Bs[2];
    const int tid = threadIdx.x;
    const int kk2 = k * k, K = c_out * kk2, M = c_in, hw = h * w;
    const int hw_out = h_out * w_out, N = n * hw;
    const int m0 = blockIdx.y * V2_BM, n0 = blockIdx.x * V2_BN;

    // A(ci, (co, r)) = wt[co][ci][r]: thread -> kidx = k0 + tid % 16, rows (ci) tid / 16 + 16r.
    const int a_k = tid & 15, a_m = tid >> 4;
    v2_kwalk aw, astep;  // (co, ky, kx) of this thread's A column; base = co * c_in * kk2
    aw.set(a_k, k, kk2, c_in * kk2);
    astep.set(V2_BK, k, kk2, c_in * kk2);
    // B: thread -> one input pixel (column tid % 128), K rows 8 * (tid / 128) + j.
    const int b_n = tid & 127, b_k = (tid >> 7) * 8;
    const int col = n0 + b_n;
    const bool col_ok = col < N;
    const int img = col_ok ? col / hw : 0;
    const int p = col - img * hw;
    const int iyp = p / w + pad, ixp = p - (p / w) * w + pad;
    const float* dyn = dy + (long long)img * c_out * hw_out;
    v2_kwalk bw, bstep;  // (co, ky, kx); base = co * hw_out
    bw.set(b_k, k, kk2, hw_out);
    bstep.set(V2_BK, k, kk2, hw_out);

    float ra[4], rb[8];
    const int tiles = (K + V2_BK - 1) / V2_BK;

    auto load = [&](int k0) {
        const int ka = k0 + a_k;
        const long long abase = (long long)aw.base + aw.ky * k + aw.kx;
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int ci = m0 + a_m + 16 * r;
            ra[r] = (ci < M && ka < K) ? wt[abase + (long long)ci * kk2] : 0.0f;
        }
        aw.add(astep, k, c_in * kk2);
        v2_kwalk e = bw;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            // Tap (ky, kx) reaches this pixel from output (oy, ox) when iy + pad - ky = oy*stride.
            const int ty = iyp - e.ky, tx = ixp - e.kx;
            int oy = ty, ox = tx;
            bool ok = col_ok && k0 + b_k + j < K && ty >= 0 && tx >= 0;
            if (stride == 2) {
                ok = ok && ((ty | tx) & 1) == 0;
                oy = ty >> 1;
                ox = tx >> 1;
            } else if (stride != 1) {
                oy = ty / stride;
                ox = tx / stride;
                ok = ok && oy * stride == ty && ox * stride == tx;
            }
            ok = ok && oy < h_out && ox < w_out;
            rb[j] = ok ? dyn[e.base + oy * w_out + ox] : 0.0f;
            e.add1(k, hw_out);
        }
        bw.add(bstep, k, hw_out);
    };
    auto stage = [&](int buf) { v2_stage_kmajor(As[buf], Bs[buf], ra, rb, a_m, a_k, b_k, b_n); };
    v2_gemm<false>(As, Bs, 0, tiles, load, stage, m0, n0, rl_out_nchw{dx, M, N, hw});
}

extern "C" __global__ void __launch_bounds__(V2_THREADS, 2)
conv2d_bwd_weight_v2(const float* __restrict__ x, const float* __restrict__ dy,
                     float* __restrict__ dw_part, int n, int c_in, int h, int w, int c_out,
                     int k, int stride, int pad, int h_out, int w_out, int splits) {
    __shared__ __align__(16) v2_tile_a As[2];
    __shared__ __align__(16) v2_tile_bn Bs[2];
    const int tid = threadIdx.x;
    const int kk2 = k * k, M = c_out, N = c_in * kk2, hw_in = h * w;
    const int hw_out = h_out * w_out, K = n * hw_out;
    const int m0 = blockIdx.y * V2_BM, n0 = blockIdx.x * V2_BN;
    int chunk = (K + splits - 1) / splits;
    chunk = (chunk + V2_BK - 1) / V2_BK * V2_BK;
    const int kbeg = min(K, (int)blockIdx.z * chunk);
    const int kend = min(K, kbeg + chunk);

    // Both operands: thread -> reduction index kidx = k0 + tid % 16 (a (sample, pixel) pair,
    // contiguous in dy and, for stride 1, in x), rows tid / 16 + 16r: 4 of dy's channels and
    // 8 of im2col's (ci, ky, kx) columns, the latter fixed for the whole loop.
    const int kl = tid & 15, rl = tid >> 4;
    int boff[8], bkyx[8];  // ci*h*w + ky*w + kx (-1: past the end), ky << 16 | kx
#pragma unroll
    for (int r = 0; r < 8; ++r) {
        const int c = n0 + rl + 16 * r;
        const int ci = c / kk2, rem = c - ci * kk2;
        const int ky = rem / k, kx = rem - (rem / k) * k;
        boff[r] = c < N ? ci * hw_in + ky * w + kx : -1;
        bkyx[r] = (ky << 16) | kx;
    }
    // (img, oy, ox) of this thread's kidx, walked by 16 per step without dividing.
    int img, oy, ox;
    {
        const int k0 = kbeg + kl;
        img = k0 / hw_out;
        const int pp = k0 - img * hw_out;
        oy = pp / w_out;
        ox = pp - oy * w_out;
    }
    const int s_img = V2_BK / hw_out, s_p = V2_BK - s_img * hw_out;
    const int s_oy = s_p / w_out, s_ox = s_p - s_oy * w_out;

    float ra[4], rb[8];
    const int tiles = (kend - kbeg + V2_BK - 1) / V2_BK;

    auto load = [&](int k0) {
        const bool k_ok = k0 + kl < kend;
        const float* dyn = dy + ((long long)img * c_out) * hw_out + oy * w_out + ox;
        const float* xn = x + (long long)img * c_in * hw_in;
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int co = m0 + rl + 16 * r;
            ra[r] = (k_ok && co < M) ? dyn[(long long)co * hw_out] : 0.0f;
        }
        const int iy0 = oy * stride - pad, ix0 = ox * stride - pad;
#pragma unroll
        for (int r = 0; r < 8; ++r) {
            const int iy = iy0 + (bkyx[r] >> 16), ix = ix0 + (bkyx[r] & 0xffff);
            const bool ok = k_ok && boff[r] >= 0 && iy >= 0 && iy < h && ix >= 0 && ix < w;
            rb[r] = ok ? xn[boff[r] + iy0 * w + ix0] : 0.0f;
        }
        ox += s_ox;
        oy += s_oy;
        img += s_img;
        if (ox >= w_out) { ox -= w_out; ++oy; }
        if (oy >= h_out) { oy -= h_out; ++img; }
    };
    auto stage = [&](int buf) {
#pragma unroll
        for (int r = 0; r < 4; ++r) As[buf][rl + 16 * r][kl] = conv_to_tf32(ra[r]);
#pragma unroll
        for (int r = 0; r < 8; ++r) Bs[buf][rl + 16 * r][kl] = conv_to_tf32(rb[r]);
    };

    float* out = dw_part + (long long)blockIdx.z * M * N;
    v2_gemm<true>(As, Bs, kbeg, tiles, load, stage, m0, n0, rl_out_rows{out, M, N});
}
