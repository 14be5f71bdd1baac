// Shared device helpers for every rlnet kernel family.
//
// The counter-based generator below is the same integer function as src/rng.rs
// (mix64 / hash / uniform): a draw depends only on (seed, stream, index), so a GPU thread per
// element draws exactly what the CPU reference draws for that element.
#pragma once

typedef unsigned long long rl_u64;

__device__ __forceinline__ rl_u64 rl_mix64(rl_u64 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

__device__ __forceinline__ rl_u64 rl_hash(rl_u64 seed, rl_u64 stream, rl_u64 index) {
    rl_u64 k = rl_mix64(seed ^ 0x9E3779B97F4A7C15ULL);
    k = rl_mix64(k ^ (stream * 0xD1B54A32D192ED03ULL));
    return rl_mix64(k ^ (index * 0x9E3779B97F4A7C15ULL));
}

// Uniform in [0, 1) with 24 random bits, bit-identical to rng::uniform.
__device__ __forceinline__ float rl_uniform(rl_u64 seed, rl_u64 stream, rl_u64 index) {
    return (float)(rl_hash(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}

// A uniform integer in [0, n), bit-identical to rng::below: the high 64 bits of hash * n.
__device__ __forceinline__ rl_u64 rl_below(rl_u64 seed, rl_u64 stream, rl_u64 index, rl_u64 n) {
    return __umul64hi(rl_hash(seed, stream, index), n);
}

// Uniform in [0, 1) with 53 random bits, bit-identical to rng::uniform_f64.
__device__ __forceinline__ double rl_uniform_f64(rl_u64 seed, rl_u64 stream, rl_u64 index) {
    return (double)(rl_hash(seed, stream, index) >> 11) * (1.0 / 9007199254740992.0);
}

// A standard normal draw (Box-Muller on indices 2i and 2i+1), as rng::normal. The f64 log,
// sqrt and cos here and in Rust's libm may differ in the last bit; callers that truncate to
// 8 bits see that only when a value lands within 1e-16 of an integer.
__device__ __forceinline__ double rl_normal(rl_u64 seed, rl_u64 stream, rl_u64 index) {
    const double u1 = 1.0 - rl_uniform_f64(seed, stream, 2ULL * index);
    const double u2 = rl_uniform_f64(seed, stream, 2ULL * index + 1ULL);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// Named streams, the same numbers as rng::stream.
#define RL_STREAM_CROP 2ULL
#define RL_STREAM_FLIP 3ULL
#define RL_STREAM_PGD_START 4ULL

// ---------------------------------------------------------------------------------------------
// Fixed-order reductions. A butterfly (xor) shuffle adds the same pairs in the same order on
// every run, and float addition is commutative, so every lane ends with the same bit-exact sum:
// results depend only on blockDim, never on scheduling (no atomics anywhere).
// Requirements: blockDim.x is a multiple of 32 (full-mask shuffles), at most 1024, and every
// thread of the block calls the block-level helpers (they contain __syncthreads).

__device__ __forceinline__ float rl_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double rl_warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float rl_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a 1-D block; every thread gets the result. `scratch`: 32 shared slots, which may be
// reused by the next call (the leading barrier protects them).
__device__ __forceinline__ float rl_block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = rl_warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return rl_warp_sum(v);
}

__device__ __forceinline__ double rl_block_sum(double v, double* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = rl_warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0;
    return rl_warp_sum(v);
}

__device__ __forceinline__ float rl_block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = rl_warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : __int_as_float(0xff800000);  // -inf
    return rl_warp_max(v);
}

// v rounded to the nearest bf16 (ties to even, NaN to the canonical NaN), kept as an f32 with
// its low 16 bits zero: how `--precision bf16` stores an activation (Precision::store).
__device__ __forceinline__ float rl_round_bf16(float v) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(v), "f"(0.0f));
    return __uint_as_float(r & 0xffff0000u);
}

// Exactly rounded f32 arithmetic that the compiler may not fuse into an FMA (NVRTC contracts
// a*b+c by default; Rust never does). Kernels that must match the CPU reference bit for bit
// (element-wise maps, PGD, SGD, augmentation) spell their arithmetic with these.
__device__ __forceinline__ float rl_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float rl_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float rl_sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float rl_div(float a, float b) { return __fdiv_rn(a, b); }

// Rust's f32::clamp: NaN stays NaN, otherwise min(max(v, lo), hi) for lo <= hi.
__device__ __forceinline__ float rl_clamp(float v, float lo, float hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

// ---------------------------------------------------------------------------------------------
// Tiled implicit GEMMs (the convolutions, both versions, all three directions).
//
// The double-buffered K loop: load(k0) fetches the K step starting at k0 into registers,
// stage(buf) writes them into shared buffer buf, math(buf) multiplies that buffer's tiles into
// the accumulators. The next step's global loads are issued before the current step's math,
// so one barrier per step suffices and global latency overlaps the arithmetic. Every thread
// of the block calls it (it contains __syncthreads).
template <int BK, class Load, class Stage, class Math>
__device__ __forceinline__ void rl_gemm_k_loop(int kbeg, int tiles, Load load, Stage stage,
                                               Math math) {
    if (tiles > 0) {
        load(kbeg);
        stage(0);
    }
    __syncthreads();
    for (int t = 0; t < tiles; ++t) {
        const int cur = t & 1;
        const bool more = t + 1 < tiles;
        if (more) load(kbeg + (t + 1) * BK);
        math(cur);
        if (more) stage(cur ^ 1);
        __syncthreads();
    }
}

// Hands the f32 accumulators of a warp's 32 x 32 sub-tile of m16n8 mma tiles (2 x 4 of them;
// the PTX fragment layout d0 (g, 2t), d1 (g, 2t+1), d2 (g+8, 2t), d3 (g+8, 2t+1), with groupID
// g = lane / 4 and t = lane % 4) to the output's store, as (row, col) of the GEMM; the warp
// owns rows m0 + 32 wm.. and columns n0 + 32 wn.. .
template <class Out>
__device__ __forceinline__ void rl_mma_epilogue(const float acc[2][4][4], int m0, int n0, int wm,
                                                int wn, int g, int t, Out out) {
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const int row = m0 + wm * 32 + mi * 16 + g + (q >> 1) * 8;
                const int col = n0 + wn * 32 + ni * 8 + 2 * t + (q & 1);
                out(row, col, acc[mi][ni][q]);
            }
}

// Where element (row, col) of a GEMM output goes, bounds-checked against M x N.
// Channels by pixels: row = channel, col = (image, pixel) over images of `hw` pixels, into an
// NCHW tensor with M channels (the forward's y, the input gradient dx).
struct rl_out_nchw {
    float* out;
    int M, N, hw;
    __device__ __forceinline__ void operator()(int row, int col, float v) const {
        if (row < M && col < N) {
            const int im = col / hw;
            out[((long long)im * M + row) * hw + (col - im * hw)] = v;
        }
    }
};

// Row-major [M][N] (the weight gradient's [c_out][c_in*k*k]).
struct rl_out_rows {
    float* out;
    int M, N;
    __device__ __forceinline__ void operator()(int row, int col, float v) const {
        if (row < M && col < N) out[(long long)row * N + col] = v;
    }
};
