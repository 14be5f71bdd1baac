// Kernels that test the CUDA emulator itself (src/device/emu/selftest.rs runs them): the
// semantics of its warp collectives and PTX, and each of its detectors. They are compiled into
// the emulator only (build.rs), not into the GPU's kernel registry.
#include "common.cuh"

// y[i] = the TF32 rounding (cvt.rna.tf32.f32) of x[i], as a bit pattern.
extern "C" __global__ void selftest_cvt_tf32(const float* x, int n, unsigned* y) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x[i]));
    y[i] = r;
}

// Per thread of a 64-thread block: [0] the warp sum of (lane + 1) by xor shuffles, [1] the
// inclusive prefix sum of (lane + 1) by shfl_up, [2] lane + 1 of lane (lane + 3) % 32 by
// shfl_sync, [3] the value of lane + 2 by shfl_down (own value at the top), [4] the ballot of
// odd lanes, [5] any(lane == 5), [6] all(lane < 32), [7] the xor shuffle within 8-lane segments.
extern "C" __global__ void selftest_warp_ops(unsigned* out) {
    const unsigned lane = threadIdx.x & 31;
    const unsigned v = lane + 1;
    unsigned* o = out + threadIdx.x * 8;
    o[0] = rl_warp_sum((float)v);
    unsigned scan = v;
    for (int d = 1; d < 32; d <<= 1) {
        const unsigned up = __shfl_up_sync(0xffffffffu, scan, d);
        if ((int)lane >= d) scan += up;
    }
    o[1] = scan;
    o[2] = __shfl_sync(0xffffffffu, v, (lane + 3) % 32);
    o[3] = __shfl_down_sync(0xffffffffu, v, 2);
    o[4] = __ballot_sync(0xffffffffu, lane & 1);
    o[5] = __any_sync(0xffffffffu, lane == 5);
    o[6] = __all_sync(0xffffffffu, lane < 32);
    o[7] = __shfl_xor_sync(0xffffffffu, v, 4, 8);
}

// One m16n8k8 TF32 mma of a warp: A [16][8] and B [8][8] row major, C and D [16][8].
extern "C" __global__ void selftest_mma(const float* a, const float* b, const float* c, float* d) {
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    unsigned af[4], bf[2];
    float acc[4];
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(af[0]) : "f"(a[g * 8 + t]));
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(af[1]) : "f"(a[(g + 8) * 8 + t]));
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(af[2]) : "f"(a[g * 8 + t + 4]));
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(af[3]) : "f"(a[(g + 8) * 8 + t + 4]));
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(bf[0]) : "f"(b[t * 8 + g]));
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(bf[1]) : "f"(b[(t + 4) * 8 + g]));
    acc[0] = c[g * 8 + 2 * t];
    acc[1] = c[g * 8 + 2 * t + 1];
    acc[2] = c[(g + 8) * 8 + 2 * t];
    acc[3] = c[(g + 8) * 8 + 2 * t + 1];
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(af[0]), "r"(af[1]), "r"(af[2]), "r"(af[3]), "r"(bf[0]), "r"(bf[1]));
    d[g * 8 + 2 * t] = acc[0];
    d[g * 8 + 2 * t + 1] = acc[1];
    d[(g + 8) * 8 + 2 * t] = acc[2];
    d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

// out[i] = the sum of the block's thread indices, through a shared array: with `barrier` 0 the
// barrier between writing and reading is missing (a race the emulator must expose).
extern "C" __global__ void selftest_shared_sum(int barrier, float* out) {
    __shared__ float s[128];
    s[threadIdx.x] = (float)threadIdx.x;
    if (barrier) __syncthreads();
    float sum = 0.0f;
    for (int j = 0; j < (int)blockDim.x; ++j) sum += s[j];
    out[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

// Threads from `first_exit` on return before the barrier the others reach.
extern "C" __global__ void selftest_partial_barrier(int first_exit, int* out) {
    if ((int)threadIdx.x >= first_exit) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

// Even and odd threads reach two different barriers.
extern "C" __global__ void selftest_divergent_barrier(int* out) {
    if (threadIdx.x & 1) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

// mode 0: lanes 16-31 leave before a full-mask shuffle; mode 1: the lanes pass two different
// masks that both name each other; mode 2: a lane passes a mask without itself.
extern "C" __global__ void selftest_bad_shuffle(int mode, int* out) {
    const int lane = threadIdx.x & 31;
    int v = lane;
    if (mode == 0) {
        if (lane >= 16) return;
        v = __shfl_xor_sync(0xffffffffu, v, 1);
    } else if (mode == 1) {
        v = __shfl_xor_sync(lane < 16 ? 0xffffffffu : 0xfffffffeu, v, 1);
    } else {
        v = __shfl_xor_sync(0xfffffffeu, v, 1);
    }
    out[threadIdx.x] = v;
}

// Writes y[0..n] and, by mistake, y[n] (one element past the end).
extern "C" __global__ void selftest_write_past_end(int n, float* y) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 1.0f;
}

// Writes `count` floats of dynamic shared memory, then copies them to out.
extern "C" __global__ void selftest_dynamic_shared(int count, float* out) {
    extern __shared__ float buf[];
    for (int i = threadIdx.x; i < count; i += blockDim.x) buf[i] = (float)i;
    __syncthreads();
    for (int i = threadIdx.x; i < count; i += blockDim.x) out[i] = buf[i];
}

// `rounds` barriers in a row; every thread ends with 0 + 1 + ... + (rounds - 1).
extern "C" __global__ void selftest_barriers(int rounds, int* out) {
    int v = 0;
    for (int r = 0; r < rounds; ++r) {
        v += r;
        __syncthreads();
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

// Lanes write a shared slot, meet at __syncwarp (even and odd lanes at two different calls,
// which correspond), then read their neighbour's slot: out[t] = t ^ 1.
extern "C" __global__ void selftest_syncwarp(int* out) {
    __shared__ int s[32];
    const int lane = threadIdx.x;
    s[lane] = lane;
    if (lane & 1) {
        __syncwarp();
    } else {
        __syncwarp(0xffffffffu);
    }
    out[lane] = s[lane ^ 1];
}
