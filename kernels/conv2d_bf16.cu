// 2-D convolution on bf16 tensor cores, all three directions: implicit GEMMs whose operands reach
// shared memory by a three-stage cp.async pipeline and the tensor cores by ldmatrix, with
// mma.sync.aligned.m16n8k16 bf16 inputs and f32 accumulation; and the conversions that give them
// their operands. The data gradient's GEMM is the forward's with the roles of the channels
// swapped; the weight gradient's runs its K over pixels and stages K-major. All three share the
// pipeline, the block tile and the analysis below.
//
//   conv2d_nhwc_bf16(const float* x, unsigned* xh, int n, int c, int hw)
//       x [n][c][hw] f32 -> xh [n][hw][c] bf16, two channels per word (the even one in the low
//       half), rounded to nearest even. c even. A transpose through shared memory, so that
//       both sides move whole lines: each block takes 32 pixels x 64 channels of one image,
//       reads them as 64 rows of 32 consecutive pixels (128 bytes each) and writes 32 rows of
//       32 consecutive words (128 bytes). Launch: grid = (ceil(hw / 32), ceil(c / 64), n),
//       block = (32, 8).
//   conv2d_weights_bf16(const float* w, unsigned* wh, int c_out, int c_in, int kk)
//       w [c_out][c_in][kk] f32 -> wh [c_out][kk][c_in] bf16 pairs. Launch: 1-D over
//       c_out * kk * c_in / 2 words.
//   conv2d_weights_t_bf16(const float* w, unsigned* wth, int c_out, int c_in, int kk)
//       w -> wth [c_in][kk][c_out] bf16 pairs (the weights of the data gradient's GEMM).
//       Launch: 1-D over c_in * kk * c_out / 2 words.
//   conv2d_fwd_bf16(const unsigned* xh, const unsigned* wh, float* y, <geometry of conv2d.cu>,
//                   int splits, int round_bf16, double* sums)
//       y [n][c_out][h_out][w_out] f32 = conv(x, w). Needs c_in % 8 == 0 (a 16-byte cp.async
//       chunk is 8 channels of one pixel and one tap). Launch: grid = (ceil(n*h_out*w_out /
//       128), ceil(c_out / 64), splits), block = 256. No dynamic shared memory (static: 45.0
//       KB). Split-K: block z sums its share of the K steps into slice z of y (splits whole
//       tensors; every slice fully written), which conv2d_bwd_weight_reduce adds in split order;
//       with splits == 1, y itself. The launcher splits where the blocks would not fill the GPU
//       (the 4x4 and 8x8 layers, see below).
//       The epilogue's two fusions, for splits == 1 only (0 and NULL otherwise):
//       round_bf16 != 0 stores y rounded to bf16 (rl_round_bf16, the rounding of
//       elementwise_round_bf16), and a non-NULL `sums` receives the BatchNorm statistics of the
//       stored y: per channel and block column, (sum y, sum y^2) in f64, as sums [c_out]
//       [gridDim.x][2], the `partial` that bn_act_stats_final reads with splits = gridDim.x.
//       Both save a pass over y (the rounding pass reads and writes it, the statistics pass
//       reads it). Sums run in a fixed order (v3_channel_sums), never with atomics.
//   conv2d_bwd_data_bf16(const unsigned* wth, const unsigned* dyh, float* dx, <geometry>,
//                        int splits)
//       dx [n][c_in][h][w] f32 from dy (NHWC bf16, by conv2d_nhwc_bf16) and wth. Needs
//       c_out % 8 == 0. Launch: grid = (ceil(n*h*w / 128), ceil(c_in / 64), splits), block =
//       256; split-K as the forward's.
//       The GEMM dX[ci][input pixel] = sum over (ky, kx, co) of W[co][ci][ky][kx] dY[co][oy, ox]
//       where iy + pad - ky = oy * stride: every tap that reaches no output pixel (stride > 1,
//       or past the border) is a zero-filled copy, so strided layers do 1/stride^2 useful work
//       in those steps (as the v1 and v2 kernels do).
//   conv2d_bwd_weight_bf16(const unsigned* xh, const unsigned* dyh, float* dw_part,
//                          <geometry>, int splits)
//       dw [c_out][c_in][k][k] f32 from x and dy (both NHWC bf16). Needs c_in and c_out in
//       multiples of 8. Launch: grid = (ceil(c_in*k*k / 128), ceil(c_out / 64), splits),
//       block = 256; the split-K contract of conv2d_bwd_weight (kernels/conv2d.cu), chunks
//       rounded up to 32: each split writes its whole [c_out][c_in*k*k] slice of dw_part, which
//       conv2d_bwd_weight_reduce adds in split order (deterministic), or dw itself when
//       splits == 1. The GEMM dW[co][(tap, ci)] = sum over output pixels of dY[co][p] X[(tap,
//       ci)][p] walks K over pixels, along which neither operand is contiguous; both are
//       therefore staged K-major (a pixel's channels per row) and read with ldmatrix .trans.
//       Static shared memory: 39.0 KB.
//
// GEMM: Y[co][pixel] = sum over K = (ky, kx, ci), channels fastest, of W[co][K] X[K][pixel]. A
// (the weights) is row-major in K; B is stored [pixel][K] (each pixel's K run is its input
// pixels' channels, contiguous in NHWC), which is the "col" layout the mma takes for B. Both
// therefore load with non-transposing ldmatrix from shared rows of K.
//
// Tiling: block tile 64 (c_out) x 128 (pixels) x 32 (K); 8 warps as 2 x 4, each owning a 32 x 32
// sub-tile = 2 x 4 mma tiles of 16 x 8, i.e. 8 mma per 16-wide K slice. Per K step a thread
// issues one 16-byte cp.async of A and two of B; padding taps and pixels past the batch are
// zero-filled by the copy (source size 0) instead of branching around it. Shared rows hold 32
// bf16 plus 8 of padding (80 bytes), so the eight 16-byte rows one ldmatrix phase reads start
// at 80r mod 128 = 0, 80, 32, 112, 64, 16, 96, 48: all eight 16-byte bank groups, no conflict.
// Three stages of (64 + 128) rows x 80 bytes = 45 KB.
//
// Bytes and FLOPs per block and K step: 2 x 64 x 128 x 32 = 524288 FLOP from 12 KB of
// operands (4 KB of A, 8 KB of B), 43 FLOP per byte of L2 traffic. At the H200's measured
// 790 TFLOP/s bf16 the 132 SMs need that many bytes at ~18 TB/s from L2 if no block shares a
// tile with another, so the kernel leans on L2 hits and the three stages for latency, and a
// block's 64 x 128 tile, not its arithmetic, sets the ceiling. The measured rate, against
// cuDNN bf16 on the same shapes, is owed to a GPU run.
//
// Numerics: the operands are bf16 (8-bit mantissa, rounded to nearest even by the conversions);
// products are exact and accumulate in f32, so with bf16 inputs the result differs from the f32
// sum of the same rounded operands only by f32 accumulation order (~K x 2^-24 relative).

#include "common.cuh"

#define V3_BM 64
#define V3_BN 128
#define V3_BK 32
#define V3_STAGES 3
#define V3_THREADS 256
#define V3_ROW 40  // bf16 per shared row: 32 of K, 8 of padding

typedef unsigned short v3_rows_a[V3_BM][V3_ROW];
typedef unsigned short v3_rows_b[V3_BN][V3_ROW];

// Two f32 values as one word of bf16 (lo in the low half), rounded to nearest even.
__device__ __forceinline__ unsigned v3_pack_bf16(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_nhwc_bf16(const float* __restrict__ x, unsigned* __restrict__ xh, int n, int c, int hw) {
    // tile[channel][pixel]; a row of 33 makes the column reads of the write phase (channels
    // 2j and 2j + 1 of one pixel, j = lane) touch 16 banks twice instead of one bank 32 times.
    __shared__ float tile[64][33];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int p0 = blockIdx.x * 32, c0 = blockIdx.y * 64, img = blockIdx.z;
    const float* xi = x + (long long)img * c * hw;
#pragma unroll
    for (int r = ty; r < 64; r += 8) {
        const int ch = c0 + r, p = p0 + tx;
        tile[r][tx] = ch < c && p < hw ? xi[(long long)ch * hw + p] : 0.0f;
    }
    __syncthreads();
    unsigned* out = xh + (long long)img * hw * (c / 2);
#pragma unroll
    for (int q = ty; q < 32; q += 8) {
        const int p = p0 + q, word = c0 / 2 + tx;
        if (p < hw && 2 * word < c)
            out[(long long)p * (c / 2) + word] = v3_pack_bf16(tile[2 * tx][q], tile[2 * tx + 1][q]);
    }
}

extern "C" __global__ void conv2d_weights_bf16(const float* __restrict__ w,
                                               unsigned* __restrict__ wh, int c_out, int c_in,
                                               int kk) {
    const long long words = (long long)c_out * kk * (c_in / 2);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < words;
         i += (long long)gridDim.x * blockDim.x) {
        const int c2 = (int)(i % (c_in / 2));
        const long long rest = i / (c_in / 2);  // co * kk + tap
        const int tap = (int)(rest % kk);
        const long long co = rest / kk;
        const float* wi = w + (co * c_in + 2 * c2) * kk + tap;
        wh[i] = v3_pack_bf16(wi[0], wi[kk]);
    }
}

__device__ __forceinline__ unsigned v3_smem(const void* p) {
    return (unsigned)__cvta_generic_to_shared(p);
}

// 16 bytes from `src` into shared `dst` (zeros instead when !ok: the source is then not read).
__device__ __forceinline__ void v3_copy16(void* dst, const void* src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], %2, %3;"
                 :: "r"(v3_smem(dst)), "l"(src), "n"(16), "r"(ok ? 16u : 0u));
}

__device__ __forceinline__ void v3_ldmatrix_x4(unsigned r[4], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(v3_smem(row)));
}

__device__ __forceinline__ void v3_mma(float d[4], const unsigned a[4], const unsigned b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// One K step (32) of the warp's 32 x 32 sub-tile from one stage. ldmatrix .x4 lane l names row
// l % 8 of matrix l / 8: for A the four matrices are rows 0-7 / 8-15 at K 0-7, then at K 8-15
// (a0..a3 of the mma); for B, pixels ni (K 0-7, 8-15) and ni + 1 (K 0-7, 8-15).
__device__ __forceinline__ void v3_step(const v3_rows_a& As, const v3_rows_b& Bs, int lane, int wm,
                                        int wn, float acc[2][4][4]) {
#pragma unroll
    for (int ks = 0; ks < V3_BK; ks += 16) {
        unsigned a[2][4], b[4][2];
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
            v3_ldmatrix_x4(a[mi], &As[wm * 32 + mi * 16 + (lane & 15)][ks + 8 * (lane >> 4)]);
#pragma unroll
        for (int nj = 0; nj < 4; nj += 2) {
            unsigned r[4];
            const int row = wn * 32 + (nj + (lane >> 4)) * 8 + (lane & 7);
            v3_ldmatrix_x4(r, &Bs[row][ks + 8 * ((lane >> 3) & 1)]);
            b[nj][0] = r[0];
            b[nj][1] = r[1];
            b[nj + 1][0] = r[2];
            b[nj + 1][1] = r[3];
        }
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
#pragma unroll
            for (int ni = 0; ni < 4; ++ni) v3_mma(acc[mi][ni], a[mi], b[ni]);
    }
}

// This block's share of the K steps under split-K (gridDim.z splits of whole steps; the last
// may be short or empty): steps first.. first + tiles.
struct v3_split {
    int first, tiles;
};
__device__ __forceinline__ v3_split v3_split_of(int K) {
    const int steps = (K + V3_BK - 1) / V3_BK;
    const int per = (steps + gridDim.z - 1) / gridDim.z;
    const int first = min(steps, (int)blockIdx.z * per);
    return v3_split{first, min(steps, first + per) - first};
}

// The block's K loop: `tiles` steps of 32, `load(stage, kt)` issuing this thread's copies of
// step kt into `stage`, three stages in flight, and `math(stage)` accumulating a step.
template <class Load, class Math>
__device__ __forceinline__ void v3_pipeline(int tiles, Load& load, Math& math) {
    // Prologue: the first STAGES - 1 steps in flight, one commit group each (empty past the
    // end, so that the group count stays uniform).
#pragma unroll
    for (int s = 0; s < V3_STAGES - 1; ++s) {
        if (s < tiles) load(s, s);
        asm volatile("cp.async.commit_group;");
    }
    for (int kt = 0; kt < tiles; ++kt) {
        // Step kt's group is complete once at most STAGES - 2 newer ones are pending; the
        // barrier then makes every thread's copies visible, and tells that every warp is done
        // with the stage the next load overwrites (the one step kt - 1 read).
        asm volatile("cp.async.wait_group %0;" :: "n"(V3_STAGES - 2));
        __syncthreads();
        const int next = kt + V3_STAGES - 1;
        if (next < tiles) load(next % V3_STAGES, next);
        asm volatile("cp.async.commit_group;");
        math(kt % V3_STAGES);
    }
    asm volatile("cp.async.wait_all;");
}

// The forward's and the data gradient's GEMM: A the weights, `K` bf16 per row (rows from
// `wrows`, M of them), B gathered per column: `b_src(r, kidx)` is where the 8 channels of K
// index kidx lie for this thread's B row r (block column `tid / 4 + 64 r`), or null for zeros.
// Each thread copies K chunk `tid % 4` of A row `tid / 4` and of its two B rows per step.
// `epilogue(acc)` then stores the thread's accumulators (rl_mma_epilogue's layout).
template <class BSrc, class Epilogue>
__device__ __forceinline__ void v3_weights_gemm(v3_rows_a* As, v3_rows_b* Bs,
                                                const unsigned* wrows, int M, int K, BSrc& b_src,
                                                Epilogue& epilogue) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int chunk = tid & 3, row = tid >> 2, m = blockIdx.y * V3_BM + row;
    const unsigned* wrow = wrows + (long long)min(m, M - 1) * (K / 2);
    const v3_split part = v3_split_of(K);
    auto load = [&](int stage, int kt) {
        const int kidx = (part.first + kt) * V3_BK + chunk * 8;
        const bool k_ok = kidx < K;
        const bool a_ok = k_ok && m < M;
        v3_copy16(&As[stage][row][chunk * 8], a_ok ? wrow + kidx / 2 : wrows, a_ok);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const unsigned* src = k_ok ? b_src(r, kidx) : nullptr;
            v3_copy16(&Bs[stage][row + 64 * r][chunk * 8], src ? src : wrows, src != nullptr);
        }
    };
    float acc[2][4][4] = {};
    auto math = [&](int st) { v3_step(As[st], Bs[st], lane, warp >> 2, warp & 3, acc); };
    v3_pipeline(part.tiles, load, math);
    epilogue(acc);
}

// The stored output of a weights GEMM block, unchanged: rl_mma_epilogue into `out`.
template <class Out>
__device__ __forceinline__ void v3_store(const float acc[2][4][4], Out out) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    rl_mma_epilogue(acc, blockIdx.y * V3_BM, blockIdx.x * V3_BN, warp >> 2, warp & 3, lane >> 2,
                    lane & 3, out);
}

// Per output channel (GEMM row) of this block's 64 x 128 tile, (sum, sum of squares) of its
// columns below N, in f64 and a fixed order, into sums [M][gridDim.x][2] at slice blockIdx.x.
// A thread holds 8 values of each of 4 rows (rl_mma_epilogue's layout); the 16 threads that
// share a row (4 lanes x the 4 warps along N) leave their pair in `scratch` (64 x 16 pairs,
// 16 KB: the B stages, free once every warp has passed the barrier below), and thread r < 64
// adds row r's 16 pairs in (warp, lane) order.
__device__ __forceinline__ void v3_channel_sums(const float acc[2][4][4], int M, int N,
                                                double* scratch, double* __restrict__ sums) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wm = warp >> 2, wn = warp & 3;
    const int g = lane >> 2, t = lane & 3, n0 = blockIdx.x * V3_BN;
    __syncthreads();  // every warp is done reading the last stage
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            double s = 0.0, q = 0.0;
#pragma unroll
            for (int ni = 0; ni < 4; ++ni)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    if (n0 + wn * 32 + ni * 8 + 2 * t + e < N) {
                        const double v = acc[mi][ni][2 * h + e];
                        s += v;
                        q += v * v;
                    }
                }
            const int r = wm * 32 + mi * 16 + g + 8 * h;
            double* pair = scratch + ((r * 4 + wn) * 4 + t) * 2;
            pair[0] = s;
            pair[1] = q;
        }
    __syncthreads();
    const int r = threadIdx.x, m = blockIdx.y * V3_BM + r;
    if (r < V3_BM && m < M) {
        double s = 0.0, q = 0.0;
        for (int j = 0; j < 16; ++j) {
            s += scratch[(r * 16 + j) * 2];
            q += scratch[(r * 16 + j) * 2 + 1];
        }
        double* out = sums + ((long long)m * gridDim.x + blockIdx.x) * 2;
        out[0] = s;
        out[1] = q;
    }
}

extern "C" __global__ void __launch_bounds__(V3_THREADS, 2)
conv2d_fwd_bf16(const unsigned* __restrict__ xh, const unsigned* __restrict__ wh,
                float* __restrict__ y, int n, int c_in, int h, int w, int c_out, int k, int stride,
                int pad, int h_out, int w_out, int splits, int round_bf16,
                double* __restrict__ sums) {
    __shared__ __align__(16) v3_rows_a As[V3_STAGES];
    __shared__ __align__(16) v3_rows_b Bs[V3_STAGES];
    const int K = k * k * c_in, M = c_out, hw_out = h_out * w_out, N = n * hw_out;
    // B row r is output pixel n0 + tid / 4 + 64 r; its K run is, tap by tap, the input pixel
    // under that tap, its channels contiguous in NHWC x.
    int iy0[2], ix0[2];
    const unsigned* ximg[2];
    bool col_ok[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int col = blockIdx.x * V3_BN + (threadIdx.x >> 2) + 64 * r;
        col_ok[r] = col < N;
        const int img = col_ok[r] ? col / hw_out : 0;
        const int p = col_ok[r] ? col - img * hw_out : 0;
        const int oy = p / w_out, ox = p - (p / w_out) * w_out;
        iy0[r] = oy * stride - pad;
        ix0[r] = ox * stride - pad;
        ximg[r] = xh + (long long)img * h * w * (c_in / 2);
    }
    auto b_src = [&](int r, int kidx) -> const unsigned* {
        const int tap = kidx / c_in, ci = kidx - tap * c_in;
        const int ky = tap / k, kx = tap - (tap / k) * k;
        const int iy = iy0[r] + ky, ix = ix0[r] + kx;
        const bool ok = col_ok[r] && iy >= 0 && iy < h && ix >= 0 && ix < w;
        return ok ? ximg[r] + ((long long)iy * w + ix) * (c_in / 2) + ci / 2 : nullptr;
    };
    auto epilogue = [&](float acc[2][4][4]) {
        if (round_bf16) {
#pragma unroll
            for (int i = 0; i < 32; ++i) (&acc[0][0][0])[i] = rl_round_bf16((&acc[0][0][0])[i]);
        }
        v3_store(acc, rl_out_nchw{y + (long long)blockIdx.z * M * N, M, N, hw_out});
        if (sums) v3_channel_sums(acc, M, N, (double*)&Bs[0][0][0], sums);
    };
    v3_weights_gemm(As, Bs, wh, M, K, b_src, epilogue);
}

extern "C" __global__ void conv2d_weights_t_bf16(const float* __restrict__ w,
                                                 unsigned* __restrict__ wth, int c_out, int c_in,
                                                 int kk) {
    const long long words = (long long)c_in * kk * (c_out / 2);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < words;
         i += (long long)gridDim.x * blockDim.x) {
        const int c2 = (int)(i % (c_out / 2));
        const long long rest = i / (c_out / 2);  // ci * kk + tap
        const int tap = (int)(rest % kk);
        const long long ci = rest / kk;
        const float* wi = w + ((2 * c2) * (long long)c_in + ci) * kk + tap;
        wth[i] = v3_pack_bf16(wi[0], wi[(long long)c_in * kk]);
    }
}

extern "C" __global__ void __launch_bounds__(V3_THREADS, 2)
conv2d_bwd_data_bf16(const unsigned* __restrict__ wth, const unsigned* __restrict__ dyh,
                     float* __restrict__ dx, int n, int c_in, int h, int w, int c_out, int k,
                     int stride, int pad, int h_out, int w_out, int splits) {
    __shared__ __align__(16) v3_rows_a As[V3_STAGES];
    __shared__ __align__(16) v3_rows_b Bs[V3_STAGES];
    const int K = k * k * c_out, M = c_in, hw = h * w, N = n * hw;
    // A row is an input channel; B row r is input pixel n0 + tid / 4 + 64 r, whose K run is,
    // tap by tap, the output pixel that tap reaches it from (iy + pad - ky = oy * stride), its
    // channels contiguous in NHWC dy.
    int iyp[2], ixp[2];
    const unsigned* dyimg[2];
    bool col_ok[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int col = blockIdx.x * V3_BN + (threadIdx.x >> 2) + 64 * r;
        col_ok[r] = col < N;
        const int img = col_ok[r] ? col / hw : 0;
        const int p = col_ok[r] ? col - img * hw : 0;
        iyp[r] = p / w + pad;
        ixp[r] = p - (p / w) * w + pad;
        dyimg[r] = dyh + (long long)img * h_out * w_out * (c_out / 2);
    }
    auto b_src = [&](int r, int kidx) -> const unsigned* {
        const int tap = kidx / c_out, co = kidx - tap * c_out;
        const int ky = tap / k, kx = tap - (tap / k) * k;
        const int ty = iyp[r] - ky, tx = ixp[r] - kx;
        const int oy = ty / stride, ox = tx / stride;
        const bool ok = col_ok[r] && ty >= 0 && tx >= 0 && oy * stride == ty &&
                        ox * stride == tx && oy < h_out && ox < w_out;
        return ok ? dyimg[r] + ((long long)oy * w_out + ox) * (c_out / 2) + co / 2 : nullptr;
    };
    auto epilogue = [&](float acc[2][4][4]) {
        v3_store(acc, rl_out_nchw{dx + (long long)blockIdx.z * M * N, M, N, hw});
    };
    v3_weights_gemm(As, Bs, wth, M, K, b_src, epilogue);
}

// The weight gradient's shared tiles are K-major: a K step is 32 output pixels, each a row of
// 64 (A: dy's channels) or 128 (B: (tap, ci) columns) bf16, plus 8 of padding (rows of 144 and
// 272 bytes, both 16 mod 128: the eight rows of an ldmatrix phase hit eight bank groups).
#define V3_ROW_KA (V3_BM + 8)
#define V3_ROW_KB (V3_BN + 8)
typedef unsigned short v3_krows_a[V3_BK][V3_ROW_KA];
typedef unsigned short v3_krows_b[V3_BK][V3_ROW_KB];

__device__ __forceinline__ void v3_ldmatrix_x4_trans(unsigned r[4], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(v3_smem(row)));
}

// One K step of the warp's 32 x 32 sub-tile from K-major tiles: ldmatrix .trans hands each lane
// the fragment of the transposed 8 x 8 matrix, so for A the four matrices are stored rows
// (K) 0-7 at m 0-7 and 8-15, then K 8-15 at the same m (a0..a3); for B, K 0-7 and 8-15 of
// columns ni, then of ni + 1.
__device__ __forceinline__ void v3_step_kmajor(const v3_krows_a& As, const v3_krows_b& Bs,
                                               int lane, int wm, int wn, float acc[2][4][4]) {
    const int j = lane >> 3, r8 = lane & 7;
#pragma unroll
    for (int ks = 0; ks < V3_BK; ks += 16) {
        unsigned a[2][4], b[4][2];
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
            v3_ldmatrix_x4_trans(a[mi], &As[ks + r8 + 8 * (j >> 1)][wm * 32 + mi * 16 + 8 * (j & 1)]);
#pragma unroll
        for (int nj = 0; nj < 4; nj += 2) {
            unsigned r[4];
            v3_ldmatrix_x4_trans(r, &Bs[ks + r8 + 8 * (j & 1)][wn * 32 + nj * 8 + 8 * (j >> 1)]);
            b[nj][0] = r[0];
            b[nj][1] = r[1];
            b[nj + 1][0] = r[2];
            b[nj + 1][1] = r[3];
        }
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
#pragma unroll
            for (int ni = 0; ni < 4; ++ni) v3_mma(acc[mi][ni], a[mi], b[ni]);
    }
}

// GEMM (co, (tap, ci)) into dw's [c_out][c_in][kk] layout, bounds-checked against M x N.
struct v3_out_dw {
    float* out;
    int M, N, c_in, kk;
    __device__ __forceinline__ void operator()(int row, int col, float v) const {
        if (row < M && col < N) {
            const int tap = col / c_in, ci = col - tap * c_in;
            out[(long long)row * N + ci * kk + tap] = v;
        }
    }
};

extern "C" __global__ void __launch_bounds__(V3_THREADS, 2)
conv2d_bwd_weight_bf16(const unsigned* __restrict__ xh, const unsigned* __restrict__ dyh,
                       float* __restrict__ dw_part, int n, int c_in, int h, int w, int c_out,
                       int k, int stride, int pad, int h_out, int w_out, int splits) {
    __shared__ __align__(16) v3_krows_a As[V3_STAGES];
    __shared__ __align__(16) v3_krows_b Bs[V3_STAGES];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kk = k * k, M = c_out, N = kk * c_in, hw_out = h_out * w_out, K = n * hw_out;
    const int m0 = blockIdx.y * V3_BM, n0 = blockIdx.x * V3_BN;
    int chunk_k = (K + splits - 1) / splits;
    chunk_k = (chunk_k + V3_BK - 1) / V3_BK * V3_BK;
    const int kbeg = min(K, (int)blockIdx.z * chunk_k);
    const int kend = min(K, kbeg + chunk_k);

    // This thread's copies of a step: output pixel kbeg + 32 kt + kr; of A (dy) the 8 channels
    // m0 + 8 c8, of B the columns n0 + 8 c8 and n0 + 64 + 8 c8 (8 channels of one tap).
    const int kr = tid >> 3, c8 = tid & 7;
    const bool a_ok0 = m0 + 8 * c8 < M;
    int b_tap[2], b_ci[2];
    bool b_ok0[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int col = n0 + 8 * c8 + 64 * r;
        b_ok0[r] = col < N;
        b_tap[r] = b_ok0[r] ? col / c_in : 0;
        b_ci[r] = col - b_tap[r] * c_in;
    }
    const int tiles = (kend - kbeg + V3_BK - 1) / V3_BK;

    auto load = [&](int stage, int kt) {
        const int p = kbeg + kt * V3_BK + kr;
        const bool p_ok = p < kend;
        const int img = p_ok ? p / hw_out : 0, q = p_ok ? p - img * hw_out : 0;
        const int oy = q / w_out, ox = q - (q / w_out) * w_out;
        const bool a_ok = p_ok && a_ok0;
        v3_copy16(&As[stage][kr][8 * c8], a_ok ? dyh + (long long)p * (c_out / 2) + (m0 + 8 * c8) / 2 : dyh,
                  a_ok);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int ky = b_tap[r] / k, kx = b_tap[r] - (b_tap[r] / k) * k;
            const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
            const bool ok = p_ok && b_ok0[r] && iy >= 0 && iy < h && ix >= 0 && ix < w;
            const unsigned* src =
                ok ? xh + (((long long)img * h + iy) * w + ix) * (c_in / 2) + b_ci[r] / 2 : xh;
            v3_copy16(&Bs[stage][kr][8 * c8 + 64 * r], src, ok);
        }
    };

    float acc[2][4][4] = {};
    auto math = [&](int st) { v3_step_kmajor(As[st], Bs[st], lane, warp >> 2, warp & 3, acc); };
    v3_pipeline(tiles, load, math);
    float* out = dw_part + (long long)blockIdx.z * M * N;
    rl_mma_epilogue(acc, m0, n0, warp >> 2, warp & 3, lane >> 2, lane & 3,
                    v3_out_dw{out, M, N, c_in, kk});
}
