// Fully connected layer: y [n, out] = x [n, in] w^T + b, w [out, in] (mirrors src/ops/linear.rs).
//
// Kernels (row-major f32; n * max(in, out) < 2^31):
//
//   linear_fwd(const float* x, const float* w, const float* b, int n, int in, int out, float* y)
//       y[i][o] = (sum_k x[i][k] * w[o][k]) + b[o].                    linear::forward
//   linear_bwd_data(const float* w, const float* dy, int n, int in, int out, float* dx)
//       dx[i][j] = sum_o dy[i][o] * w[o][j].                           linear::backward_data
//   linear_bwd_weight(const float* x, const float* dy, int n, int in, int out, float* dw)
//       dw[o][j] = sum_i dy[i][o] * x[i][j].             linear::backward_params (dw part)
//   linear_bwd_bias(const float* dy, int n, int out, float* db)
//       db[o] = sum_i dy[i][o], rows added in order from 0, exactly as the CPU.
//                                                        linear::backward_params (db part)
//
// Launch: the three GEMMs: block = (16, 16, 1), grid = (ceil(cols / 16), ceil(rows / 16), 1)
// with (rows, cols) = (n, out) for fwd, (n, in) for bwd_data, (out, in) for bwd_weight; no
// dynamic shared memory. linear_bwd_bias: grid = ceil(out / 256), block = 256.
//
// The classifier is tiny next to the convolutions (n=256, in=512, out<=1000: 0.13 GMAC, ~1% of
// one ResNet18 step), so one output per thread with 16x16 shared tiles is plenty. Each output is a
// sum over k in ascending order in one thread: deterministic, and independent of the grid.

#include "common.cuh"

#define LIN_TILE 16

// C[M][N] = sum_k A(m, k) * B(k, n) (+ bias[n]), with A(m, k) = A[m*a_sm + k*a_sk] and
// B(k, n) = B[k*b_sk + n*b_sn]. Tiles are loaded so that threadIdx.x walks the operand's
// unit-stride dimension (coalesced reads whichever way the operand is transposed); the +1
// column of padding keeps the transposed shared-memory stores conflict-free.
__device__ __forceinline__ void lin_gemm(const float* __restrict__ A, int a_sm, int a_sk,
                                         const float* __restrict__ B, int b_sk, int b_sn,
                                         int M, int N, int K, const float* __restrict__ bias,
                                         float* __restrict__ C) {
    __shared__ float As[LIN_TILE][LIN_TILE + 1];  // [m][k]
    __shared__ float Bs[LIN_TILE][LIN_TILE + 1];  // [k][n]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int m0 = blockIdx.y * LIN_TILE, n0 = blockIdx.x * LIN_TILE;
    const int am = a_sk == 1 ? ty : tx, ak = a_sk == 1 ? tx : ty;
    const int bn = b_sn == 1 ? tx : ty, bk = b_sn == 1 ? ty : tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += LIN_TILE) {
        const int gm = m0 + am, gk = k0 + ak;
        As[am][ak] = (gm < M && gk < K) ? A[(long long)gm * a_sm + (long long)gk * a_sk] : 0.0f;
        const int gn = n0 + bn, gk2 = k0 + bk;
        Bs[bk][bn] = (gn < N && gk2 < K) ? B[(long long)gk2 * b_sk + (long long)gn * b_sn] : 0.0f;
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < LIN_TILE; ++kk) acc = fmaf(As[ty][kk], Bs[kk][tx], acc);
        __syncthreads();
    }
    const int row = m0 + ty, col = n0 + tx;
    if (row < M && col < N) {
        if (bias) acc = rl_add(acc, bias[col]);
        C[(long long)row * N + col] = acc;
    }
}

extern "C" __global__ void __launch_bounds__(256)
linear_fwd(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
           int n, int in, int out, float* __restrict__ y) {
    // A = x [n][in], B(k, o) = w[o][k].
    lin_gemm(x, in, 1, w, 1, in, n, out, in, b, y);
}

extern "C" __global__ void __launch_bounds__(256)
linear_bwd_data(const float* __restrict__ w, const float* __restrict__ dy, int n, int in, int out,
                float* __restrict__ dx) {
    // A = dy [n][out], B = w [out][in].
    lin_gemm(dy, out, 1, w, in, 1, n, in, out, 0, dx);
}

extern "C" __global__ void __launch_bounds__(256)
linear_bwd_weight(const float* __restrict__ x, const float* __restrict__ dy, int n, int in,
                  int out, float* __restrict__ dw) {
    // A(o, i) = dy[i][o], B = x [n][in]; the sum runs over the batch.
    lin_gemm(dy, 1, out, x, in, 1, out, in, n, 0, dw);
}

extern "C" __global__ void __launch_bounds__(256)
linear_bwd_bias(const float* __restrict__ dy, int n, int out, float* __restrict__ db) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out) return;
    float s = 0.0f;
    for (int i = 0; i < n; ++i) s = rl_add(s, dy[(long long)i * out + o]);
    db[o] = s;
}
