// 2-D convolution without bias, NCHW activations and OIHW weights (mirrors src/ops/conv.rs:
// forward / backward_data / backward_weight; forward_naive is the direct definition).
//
// Geometry arguments, in this order in every kernel:
//   int n, int c_in, int h, int w, int c_out, int k, int stride, int pad, int h_out, int w_out
// with h_out = (h + 2*pad - k) / stride + 1 and w_out likewise (ConvGeom::h_out / w_out);
// x [n, c_in, h, w], wt [c_out, c_in, k, k], y [n, c_out, h_out, w_out], all f32; every tensor
// has fewer than 2^31 elements. Any k, stride >= 1, pad >= 0.
//
// Kernels:
//
//   conv2d_fwd(const float* x, const float* wt, float* y, <geometry>)
//       y = conv(x, wt).                                                    conv::forward
//       Launch: grid = (ceil(n*h_out*w_out / 64), ceil(c_out / 64), 1), block = 256.
//   conv2d_bwd_data(const float* wt, const float* dy, float* dx, <geometry>)
//       dx = conv^T(dy) (overwrites dx).                                conv::backward_data
//       Launch: grid = (ceil(n*h*w / 64), ceil(c_in / 64), 1), block = 256.
//   conv2d_bwd_weight(const float* x, const float* dy, float* dw_part, <geometry>, int splits)
//       Split-K weight gradient: split z sums the (sample, pixel) range
//       [z*chunk, min((z+1)*chunk, n*h_out*w_out)), chunk = ceil(n*h_out*w_out / splits)
//       rounded up to a multiple of 16, into dw_part[z] (f32 [splits, c_out, c_in*k*k]; a split
//       with an empty range writes zeros). With splits == 1, pass dw itself.
//       Launch: grid = (ceil(c_in*k*k / 64), ceil(c_out / 64), splits), block = 256.
//   conv2d_bwd_weight_reduce(const float* dw_part, int splits, int len, float* dw)
//       dw[i] = dw_part[0][i] + dw_part[1][i] + ... (in split order), len = c_out*c_in*k*k.
//                                                   conv::backward_weight (with the above)
//       Launch: grid = ceil(len / 256), block = 256.
//   conv2d_fwd_v2(const float* x, const float* wt, float* y, <geometry>)
//       Launch: grid = (ceil(n*h_out*w_out / 128), ceil(c_out / 64), 1), block = 256.
//   conv2d_bwd_data_v2(const float* wt, const float* dy, float* dx, <geometry>)
//       Launch: grid = (ceil(n*h*w / 128), ceil(c_in / 64), 1), block = 256.
//   conv2d_bwd_weight_v2(const float* x, const float* dy, float* dw_part, <geometry>, int splits)
//       Launch: grid = (ceil(c_in*k*k / 128), ceil(c_out / 64), splits), block = 256;
//       reduce with conv2d_bwd_weight_reduce as for v1.
//       The v1 three on tensor cores (TF32 inputs, f32 accumulation): same arguments and
//       semantics, but a 128-wide N tile (grid.x halves) and TF32 accuracy (~1e-3 relative,
//       PyTorch's default for convolutions). See the v2 section below.
// No dynamic shared memory anywhere (static: 17 KB per v1 GEMM kernel, 27-30 KB for v2).
//
// Choosing `splits`: the weight gradient is a GEMM with a tiny output (c_out x c_in*k*k, e.g.
// 64 x 576 = 9 tiles for ResNet18's first stage) and a huge reduction (n*h_out*w_out = 262144
// at B=256, 32x32), so the reduction is split to fill the GPU: splits ~ ceil(2 * SMs / tiles),
// capped so every split keeps >= 1024 of the reduction (e.g. 30 for that layer on 132 SMs).
// Partials are added in split order, so the result depends on `splits` (f32 rounding) but
// never on timing: no atomics.
//
// Design (v1, SIMT f32): each kernel is an implicit GEMM, C[M][N] = sum_k A[M][K] B[K][N],
// whose operands are gathered from the tensors on the fly (no im2col buffer):
//   forward      M = c_out, N = n*h_out*w_out (output pixels), K = c_in*k*k
//                A = wt, B = im2col(x)
//   backward-data M = c_in, N = n*h*w (input pixels), K = c_out*k*k
//                A(ci, (co,ky,kx)) = wt[co][ci][ky][kx],
//                B((co,ky,kx), (img,iy,ix)) = dy[img][co][oy][ox] when iy = oy*stride - pad + ky
//                and ix likewise, else 0. A gather (never a scatter): each dx element is written
//                by one thread, so no atomics; with stride 2, 3/4 of B is structural zeros.
//   backward-weight M = c_out, N = c_in*k*k, K = n*h_out*w_out
//                A = dy as [c_out][n*h_out*w_out], B = im2col(x)^T
// Block tile 64 x 64, K step 16, 256 threads, a 4 x 4 register tile per thread: per K step a
// thread reads 2 float4 from shared memory for 16 FMAs. Shared tiles are double-buffered and the
// next tile's global loads are issued before the current tile's math, so one barrier per K step
// suffices and global latency overlaps the FMAs. Loaders map consecutive threads to the operand's
// contiguous dimension (output pixels for im2col, K for the weights), so global reads coalesce.
// Arithmetic intensity per block: (64*64*16 FMA) / ((64+64)*16*4 B) = 8 FMA per byte loaded.

#include "common.cuh"

#define CONV_BM 64
#define CONV_BN 64
#define CONV_BK 16
#define CONV_THREADS 256
// Row padding keeps float4 alignment (68 floats = 272 B) and spreads the transposed stores.
#define CONV_PAD 4

typedef float conv_tile_a[CONV_BK][CONV_BM + CONV_PAD];
typedef float conv_tile_b[CONV_BK][CONV_BN + CONV_PAD];

// acc[i][j] += sum_kk As[kk][ty*4 + i] * Bs[kk][tx*4 + j] over one K step.
__device__ __forceinline__ void conv_tile_fma(const conv_tile_a& As, const conv_tile_b& Bs,
                                              int ty, int tx, float acc[4][4]) {
#pragma unroll
    for (int kk = 0; kk < CONV_BK; ++kk) {
        const float4 a = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
        const float4 b = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);
        const float av[4] = {a.x, a.y, a.z, a.w};
        const float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
}

// ------------------------------------------------------------------------------------------
// Forward.

// A loader (weights [c_out][K], row-major): thread -> k = tid % 16, rows tid / 16 + 16r.
__device__ __forceinline__ void fwd_load_a(const float* __restrict__ wt, int M, int K, int m0,
                                           int k0, float ra[4]) {
    const int kk = k0 + (threadIdx.x & 15);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int m = m0 + (threadIdx.x >> 4) + 16 * r;
        ra[r] = (m < M && kk < K) ? wt[(long long)m * K + kk] : 0.0f;
    }
}

// im2col loader: thread -> one output pixel (column tid % 64), rows tid / 64 + 4r.
__device__ __forceinline__ void fwd_load_b(const float* __restrict__ xn, bool col_ok, int iy0,
                                           int ix0, int K, int kk2, int k, int h, int w, int k0,
                                           float rb[4]) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int kidx = k0 + (threadIdx.x >> 6) + 4 * r;
        float v = 0.0f;
        if (col_ok && kidx < K) {
            const int ci = kidx / kk2, rem = kidx - ci * kk2;
            const int ky = rem / k, kx = rem - ky * k;
            const int iy = iy0 + ky, ix = ix0 + kx;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = xn[(ci * h + iy) * w + ix];
        }
        rb[r] = v;
    }
}

extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2)
conv2d_fwd(const float* __restrict__ x, const float* __restrict__ wt, float* __restrict__ y,
           int n, int c_in, int h, int w, int c_out, int k, int stride, int pad, int h_out,
           int w_out) {
    __shared__ __align__(16) conv_tile_a As[2];
    __shared__ __align__(16) conv_tile_b Bs[2];
    const int tid = threadIdx.x;
    const int kk2 = k * k, K = c_in * kk2, M = c_out;
    const int hw_out = h_out * w_out, N = n * hw_out;
    const int m0 = blockIdx.y * CONV_BM, n0 = blockIdx.x * CONV_BN;

    // This thread's im2col column: fixed for the whole K loop.
    const int col = n0 + (tid & 63);
    const bool col_ok = col < N;
    const int img = col_ok ? col / hw_out : 0;
    const int p = col - img * hw_out;
    const int oy = p / w_out, ox = p - (p / w_out) * w_out;
    const int iy0 = oy * stride - pad, ix0 = ox * stride - pad;
    const float* xn = x + (long long)img * c_in * h * w;

    float acc[4][4] = {};
    float ra[4], rb[4];
    const int ty = tid >> 4, tx = tid & 15;
    const int tiles = (K + CONV_BK - 1) / CONV_BK;

    fwd_load_a(wt, M, K, m0, 0, ra);
    fwd_load_b(xn, col_ok, iy0, ix0, K, kk2, k, h, w, 0, rb);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        As[0][tid & 15][(tid >> 4) + 16 * r] = ra[r];
        Bs[0][(tid >> 6) + 4 * r][tid & 63] = rb[r];
    }
    __syncthreads();
    for (int t = 0; t < tiles; ++t) {
        const int cur = t & 1;
        const bool more = t + 1 < tiles;
        if (more) {
            fwd_load_a(wt, M, K, m0, (t + 1) * CONV_BK, ra);
            fwd_load_b(xn, col_ok, iy0, ix0, K, kk2, k, h, w, (t + 1) * CONV_BK, rb);
        }
        conv_tile_fma(As[cur], Bs[cur], ty, tx, acc);
        if (more) {
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                As[cur ^ 1][tid & 15][(tid >> 4) + 16 * r] = ra[r];
                Bs[cur ^ 1][(tid >> 6) + 4 * r][tid & 63] = rb[r];
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int c = n0 + tx * 4 + j;
        if (c >= N) continue;
        const int im = c / hw_out, pp = c - im * hw_out;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int m = m0 + ty * 4 + i;
            if (m < M) y[((long long)im * c_out + m) * hw_out + pp] = acc[i][j];
        }
    }
}

// ------------------------------------------------------------------------------------------
// Backward with respect to the input.

// A(ci, kidx) = wt[co][ci][r], kidx = co*kk2 + r: thread -> kidx = k0 + tid % 16,
// rows (ci) tid / 16 + 16r.
__device__ __forceinline__ void bwdd_load_a(const float* __restrict__ wt, int M, int K, int kk2,
                                            int m0, int k0, float ra[4]) {
    const int kidx = k0 + (threadIdx.x & 15);
    const int co = kidx / kk2, r2 = kidx - co * kk2;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int ci = m0 + (threadIdx.x >> 4) + 16 * r;
        ra[r] = (ci < M && kidx < K) ? wt[((long long)co * M + ci) * kk2 + r2] : 0.0f;
    }
}

// B(kidx, input pixel): thread -> one input pixel (column tid % 64), rows tid / 64 + 4r.
// (iyp, ixp) = (iy + pad, ix + pad); the pixel gets dy[oy][ox] through tap (ky, kx) when
// iyp - ky = oy*stride with 0 <= oy < h_out, and likewise for x.
__device__ __forceinline__ void bwdd_load_b(const float* __restrict__ dyn, bool col_ok, int iyp,
                                            int ixp, int K, int kk2, int k, int stride, int h_out,
                                            int w_out, int k0, float rb[4]) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int kidx = k0 + (threadIdx.x >> 6) + 4 * r;
        float v = 0.0f;
        if (col_ok && kidx < K) {
            const int co = kidx / kk2, rem = kidx - co * kk2;
            const int ky = rem / k, kx = rem - ky * k;
            const int ty = iyp - ky, tx = ixp - kx;
            if (ty >= 0 && tx >= 0) {
                const int oy = ty / stride, ox = tx / stride;
                if (oy * stride == ty && ox * stride == tx && oy < h_out && ox < w_out)
                    v = dyn[(co * h_out + oy) * w_out + ox];
            }
        }
        rb[r] = v;
    }
}

extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2)
conv2d_bwd_data(const float* __restrict__ wt, const float* __restrict__ dy,
                float* __restrict__ dx, int n, int c_in, int h, int w, int c_out, int k,
                int stride, int pad, int h_out, int w_out) {
    __shared__ __align__(16) conv_tile_a As[2];
    __shared__ __align__(16) conv_tile_b Bs[2];
    const int tid = threadIdx.x;
    const int kk2 = k * k, K = c_out * kk2, M = c_in;
    const int hw = h * w, N = n * hw;
    const int m0 = blockIdx.y * CONV_BM, n0 = blockIdx.x * CONV_BN;

    const int col = n0 + (tid & 63);
    const bool col_ok = col < N;
    const int img = col_ok ? col / hw : 0;
    const int p = col - img * hw;
    const int iy = p / w, ix = p - (p / w) * w;
    const float* dyn = dy + (long long)img * c_out * h_out * w_out;

    float acc[4][4] = {};
    float ra[4], rb[4];
    const int ty = tid >> 4, tx = tid & 15;
    const int tiles = (K + CONV_BK - 1) / CONV_BK;

    bwdd_load_a(wt, M, K, kk2, m0, 0, ra);
    bwdd_load_b(dyn, col_ok, iy + pad, ix + pad, K, kk2, k, stride, h_out, w_out, 0, rb);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        As[0][tid & 15][(tid >> 4) + 16 * r] = ra[r];
        Bs[0][(tid >> 6) + 4 * r][tid & 63] = rb[r];
    }
    __syncthreads();
    for (int t = 0; t < tiles; ++t) {
        const int cur = t & 1;
        const bool more = t + 1 < tiles;
        if (more) {
            bwdd_load_a(wt, M, K, kk2, m0, (t + 1) * CONV_BK, ra);
            bwdd_load_b(dyn, col_ok, iy + pad, ix + pad, K, kk2, k, stride, h_out, w_out,
                        (t + 1) * CONV_BK, rb);
        }
        conv_tile_fma(As[cur], Bs[cur], ty, tx, acc);
        if (more) {
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                As[cur ^ 1][tid & 15][(tid >> 4) + 16 * r] = ra[r];
                Bs[cur ^ 1][(tid >> 6) + 4 * r][tid & 63] = rb[r];
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int c = n0 + tx * 4 + j;
        if (c >= N) continue;
        const int im = c / hw, pp = c - im * hw;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int m = m0 + ty * 4 + i;
            if (m < M) dx[((long long)im * c_in + m) * hw + pp] = acc[i][j];
        }
    }
}

// ------------------------------------------------------------------------------------------
// Backward with respect to the weight (split-K).

// Both operands are loaded with the reduction index (sample, output pixel) fastest across
// threads, because that is the contiguous dimension of dy and (for stride 1) of x:
// thread -> kidx = k0 + tid % 16, rows tid / 16 + 16r.
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2)
conv2d_bwd_weight(const float* __restrict__ x, const float* __restrict__ dy,
                  float* __restrict__ dw_part, int n, int c_in, int h, int w, int c_out, int k,
                  int stride, int pad, int h_out, int w_out, int splits) {
    __shared__ __align__(16) conv_tile_a As[2];
    __shared__ __align__(16) conv_tile_b Bs[2];
    const int tid = threadIdx.x;
    const int kk2 = k * k, M = c_out, N = c_in * kk2;
    const int hw_out = h_out * w_out, K = n * hw_out;
    const int m0 = blockIdx.y * CONV_BM, n0 = blockIdx.x * CONV_BN;
    int chunk = (K + splits - 1) / splits;
    chunk = (chunk + CONV_BK - 1) / CONV_BK * CONV_BK;
    const int kbeg = min(K, (int)blockIdx.z * chunk);
    const int kend = min(K, kbeg + chunk);

    // This thread's 4 columns (ci, ky, kx) of im2col^T are fixed for the whole K loop.
    const int row_l = tid >> 4;
    int boff[4], bky[4], bkx[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int cidx = n0 + row_l + 16 * r;
        const int ci = cidx / kk2, rem = cidx - ci * kk2;
        bky[r] = rem / k;
        bkx[r] = rem - bky[r] * k;
        boff[r] = cidx < N ? ci * h * w : -1;  // -1 marks a column past the end
    }

    float acc[4][4] = {};
    float ra[4], rb[4];
    const int ty = tid >> 4, tx = tid & 15;
    const int tiles = (kend - kbeg + CONV_BK - 1) / CONV_BK;

    // Loads the K step starting at k0 into ra/rb.
    auto load = [&](int k0) {
        const int kidx = k0 + (tid & 15);
        const bool k_ok = kidx < kend;
        const int img = k_ok ? kidx / hw_out : 0;
        const int p = kidx - img * hw_out;
        const int oy = p / w_out, ox = p - (p / w_out) * w_out;
        const int iy0 = oy * stride - pad, ix0 = ox * stride - pad;
        const float* dyn = dy + (long long)img * c_out * hw_out + p;
        const float* xn = x + (long long)img * c_in * h * w;
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int co = m0 + row_l + 16 * r;
            ra[r] = (k_ok && co < M) ? dyn[(long long)co * hw_out] : 0.0f;
            const int iy = iy0 + bky[r], ix = ix0 + bkx[r];
            rb[r] = (k_ok && boff[r] >= 0 && iy >= 0 && iy < h && ix >= 0 && ix < w)
                        ? xn[boff[r] + iy * w + ix]
                        : 0.0f;
        }
    };
    auto store = [&](int buf) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            As[buf][tid & 15][row_l + 16 * r] = ra[r];
            Bs[buf][tid & 15][row_l + 16 * r] = rb[r];
        }
    };

    if (tiles > 0) {
        load(kbeg);
        store(0);
    }
    __syncthreads();
    for (int t = 0; t < tiles; ++t) {
        const int cur = t & 1;
        const bool more = t + 1 < tiles;
        if (more) load(kbeg + (t + 1) * CONV_BK);
        conv_tile_fma(As[cur], Bs[cur], ty, tx, acc);
        if (more) store(cur ^ 1);
        __syncthreads();
    }

    float* out = dw_part + (long long)blockIdx.z * M * N;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + ty * 4 + i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int c = n0 + tx * 4 + j;
            if (c < N) out[(long long)m * N + c] = acc[i][j];
        }
    }
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_bwd_weight_reduce(const float* __restrict__ dw_part, int splits, int len,
                         float* __restrict__ dw) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float s = dw_part[i];
    for (int z = 1; z < splits; ++z) s += dw_part[(long long)z * len + i];
    dw[i] = s;
}

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

// Stores the accumulators of the warp's sub-tile: element (row, col) of the block tile goes to
// out[row_off(row) + col_off(col)] through the caller's index functions.
#define V2_EPILOGUE(STORE)                                                                   \
    _Pragma("unroll") for (int mi = 0; mi < 2; ++mi)                                         \
    _Pragma("unroll") for (int ni = 0; ni < 4; ++ni)                                         \
    _Pragma("unroll") for (int q = 0; q < 4; ++q) {                                          \
        const int row = m0 + wm * 32 + mi * 16 + g + (q >> 1) * 8;                         \
        const int col = n0 + wn * 32 + ni * 8 + 2 * t + (q & 1);                            \
        STORE(row, col, acc[mi][ni][q]);                                                     \
    }

extern "C" __global__ void __launch_bounds__(V2_THREADS, 2)
conv2d_fwd_v2(const float* __restrict__ x, const float* __restrict__ wt, float* __restrict__ y,
              int n, int c_in, int h, int w, int c_out, int k, int stride, int pad, int h_out,
              int w_out) {
    __shared__ __align__(16) v2_tile_a As[2];
    __shared__ __align__(16) v2_tile_bk Bs[2];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3, wm = warp >> 2, wn = warp & 3;
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

    float acc[2][4][4] = {};
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
    auto store = [&](int buf) {
#pragma unroll
        for (int r = 0; r < 4; ++r) As[buf][a_m + 16 * r][a_k] = conv_to_tf32(ra[r]);
#pragma unroll
        for (int j = 0; j < 8; ++j) Bs[buf][b_k + j][b_n] = conv_to_tf32(rb[j]);
    };

    load(0);
    store(0);
    __syncthreads();
    for (int tt = 0; tt < tiles; ++tt) {
        const int cur = tt & 1;
        const bool more = tt + 1 < tiles;
        if (more) load((tt + 1) * V2_BK);
        v2_tile_mma<false>(As[cur], &Bs[cur][0][0], wm, wn, g, t, acc);
        if (more) store(cur ^ 1);
        __syncthreads();
    }

#define V2_STORE_FWD(row, col, v)                                                        \
    if (row < M && col < N) {                                                            \
        const int im = col / hw_out;                                                     \
        y[((long long)im * c_out + row) * hw_out + (col - im * hw_out)] = v;             \
    }
    V2_EPILOGUE(V2_STORE_FWD)
#undef V2_STORE_FWD
}

extern "C" __global__ void __launch_bounds__(V2_THREADS, 2)
conv2d_bwd_data_v2(const float* __restrict__ wt, const float* __restrict__ dy,
                   float* __restrict__ dx, int n, int c_in, int h, int w, int c_out, int k,
                   int stride, int pad, int h_out, int w_out) {
    __shared__ __align__(16) v2_tile_a As[2];
    __shared__ __align__(16) v2_tile_bk Bs[2];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3, wm = warp >> 2, wn = warp & 3;
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

    float acc[2][4][4] = {};
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
    auto store = [&](int buf) {
#pragma unroll
        for (int r = 0; r < 4; ++r) As[buf][a_m + 16 * r][a_k] = conv_to_tf32(ra[r]);
#pragma unroll
        for (int j = 0; j < 8; ++j) Bs[buf][b_k + j][b_n] = conv_to_tf32(rb[j]);
    };

    load(0);
    store(0);
    __syncthreads();
    for (int tt = 0; tt < tiles; ++tt) {
        const int cur = tt & 1;
        const bool more = tt + 1 < tiles;
        if (more) load((tt + 1) * V2_BK);
        v2_tile_mma<false>(As[cur], &Bs[cur][0][0], wm, wn, g, t, acc);
        if (more) store(cur ^ 1);
        __syncthreads();
    }

#define V2_STORE_BWDD(row, col, v)                                                       \
    if (row < M && col < N) {                                                            \
        const int im = col / hw;                                                         \
        dx[((long long)im * c_in + row) * hw + (col - im * hw)] = v;                     \
    }
    V2_EPILOGUE(V2_STORE_BWDD)
#undef V2_STORE_BWDD
}

extern "C" __global__ void __launch_bounds__(V2_THREADS, 2)
conv2d_bwd_weight_v2(const float* __restrict__ x, const float* __restrict__ dy,
                     float* __restrict__ dw_part, int n, int c_in, int h, int w, int c_out,
                     int k, int stride, int pad, int h_out, int w_out, int splits) {
    __shared__ __align__(16) v2_tile_a As[2];
    __shared__ __align__(16) v2_tile_bn Bs[2];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3, wm = warp >> 2, wn = warp & 3;
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

    float acc[2][4][4] = {};
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
    auto store = [&](int buf) {
#pragma unroll
        for (int r = 0; r < 4; ++r) As[buf][rl + 16 * r][kl] = conv_to_tf32(ra[r]);
#pragma unroll
        for (int r = 0; r < 8; ++r) Bs[buf][rl + 16 * r][kl] = conv_to_tf32(rb[r]);
    };

    if (tiles > 0) {
        load(kbeg);
        store(0);
    }
    __syncthreads();
    for (int tt = 0; tt < tiles; ++tt) {
        const int cur = tt & 1;
        const bool more = tt + 1 < tiles;
        if (more) load(kbeg + (tt + 1) * V2_BK);
        v2_tile_mma<true>(As[cur], &Bs[cur][0][0], wm, wn, g, t, acc);
        if (more) store(cur ^ 1);
        __syncthreads();
    }

    float* out = dw_part + (long long)blockIdx.z * M * N;
#define V2_STORE_BWDW(row, col, v) \
    if (row < M && col < N) out[(long long)row * N + col] = v;
    V2_EPILOGUE(V2_STORE_BWDW)
#undef V2_STORE_BWDW
}
