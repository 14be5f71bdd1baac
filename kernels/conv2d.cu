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
// The tensor-core versions (conv2d_fwd_v2, conv2d_bwd_data_v2, conv2d_bwd_weight_v2: same
// arguments, TF32 inputs, f32 accumulation) are in kernels/conv2d_tc.cu; their weight-gradient
// partials are reduced by conv2d_bwd_weight_reduce here.
// No dynamic shared memory anywhere (static: 17 KB per GEMM kernel).
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

// Stages the registers of the forward and input-gradient loaders: A (thread -> k = tid % 16,
// rows tid / 16 + 16r) transposed to [k][m], B (thread -> column tid % 64, rows tid / 64 + 4r).
__device__ __forceinline__ void conv_stage(conv_tile_a& As, conv_tile_b& Bs, const float ra[4],
                                           const float rb[4]) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        As[tid & 15][(tid >> 4) + 16 * r] = ra[r];
        Bs[(tid >> 6) + 4 * r][tid & 63] = rb[r];
    }
}

// Hands the thread's 4 x 4 accumulators (rows ty*4 + i, columns tx*4 + j of the block tile)
// to the output's store.
template <class Out>
__device__ __forceinline__ void conv_epilogue(const float acc[4][4], int m0, int n0, int ty,
                                              int tx, Out out) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) out(m0 + ty * 4 + i, n0 + tx * 4 + j, acc[i][j]);
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

    auto load = [&](int k0) {
        fwd_load_a(wt, M, K, m0, k0, ra);
        fwd_load_b(xn, col_ok, iy0, ix0, K, kk2, k, h, w, k0, rb);
    };
    auto stage = [&](int buf) { conv_stage(As[buf], Bs[buf], ra, rb); };
    auto math = [&](int buf) { conv_tile_fma(As[buf], Bs[buf], ty, tx, acc); };
    rl_gemm_k_loop<CONV_BK>(0, tiles, load, stage, math);
    conv_epilogue(acc, m0, n0, ty, tx, rl_out_nchw{y, M, N, hw_out});
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

    auto load = [&](int k0) {
        bwdd_load_a(wt, M, K, kk2, m0, k0, ra);
        bwdd_load_b(dyn, col_ok, iy + pad, ix + pad, K, kk2, k, stride, h_out, w_out, k0, rb);
    };
    auto stage = [&](int buf) { conv_stage(As[buf], Bs[buf], ra, rb); };
    auto math = [&](int buf) { conv_tile_fma(As[buf], Bs[buf], ty, tx, acc); };
    rl_gemm_k_loop<CONV_BK>(0, tiles, load, stage, math);
    conv_epilogue(acc, m0, n0, ty, tx, rl_out_nchw{dx, M, N, hw});
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
    auto stage = [&](int buf) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            As[buf][tid & 15][row_l + 16 * r] = ra[r];
            Bs[buf][tid & 15][row_l + 16 * r] = rb[r];
        }
    };
    auto math = [&](int buf) { conv_tile_fma(As[buf], Bs[buf], ty, tx, acc); };
    rl_gemm_k_loop<CONV_BK>(kbeg, tiles, load, stage, math);
    float* out = dw_part + (long long)blockIdx.z * M * N;
    conv_epilogue(acc, m0, n0, ty, tx, rl_out_rows{out, M, N});
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
