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

// y[i] = cvt.rn.bf16x2.f32 of (x[2i], x[2i + 1]): x[2i] rounded to bf16 in the upper half.
extern "C" __global__ void selftest_cvt_bf16x2(const float* x, int n, unsigned* y) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(x[2 * i]), "f"(x[2 * i + 1]));
    y[i] = r;
}

__device__ __forceinline__ unsigned selftest_smem(const void* p) {
    return (unsigned)__cvta_generic_to_shared(p);
}

// D = A B + C for A 16 x 32 and B 32 x 8 in bf16 (two per word, the lower index in the low
// half), C and D 16 x 8 f32, by one warp: the operands reach shared memory by cp.async in two
// groups (k 0-15, then k 16-31), A into static and B into dynamic shared memory (512 bytes), and
// the fragments by ldmatrix (A .x4; B .x2, with .trans when B is stored k-major) for two
// m16n8k16 mma. B is stored [n][k] (`b_kmajor` 0) or [k][n] (1); its stored rows from
// `b_rows` on are zero-filled (cp.async with source size 0). With `wait_second` 0 the kernel
// never waits for the second group (the bug the emulator must expose).
extern "C" __global__ void selftest_bf16_gemm(const unsigned* a, const unsigned* b, int b_kmajor,
                                              int b_rows, int wait_second, const float* c,
                                              float* d) {
    __shared__ __align__(16) unsigned As[16 * 16];
    extern __shared__ unsigned Bs[];
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    for (int half = 0; half < 2; ++half) {
        // A: row lane / 2, 16-byte chunk 2 * half + lane % 2 of its 64 bytes.
        const int ar = lane >> 1, ac = 2 * half + (lane & 1);
        asm volatile("cp.async.cg.shared.global [%0], [%1], %2;"
                     :: "r"(selftest_smem(&As[ar * 16 + ac * 4])), "l"(a + ar * 16 + ac * 4),
                        "n"(16));
        if (lane < 16) {
            // B [n][k]: row lane / 2, chunk 2 * half + lane % 2; [k][n]: row 16 * half + lane.
            const int row = b_kmajor ? 16 * half + lane : lane >> 1;
            const int at = b_kmajor ? row * 4 : row * 16 + (2 * half + (lane & 1)) * 4;
            const unsigned bytes = row < b_rows ? 16 : 0;
            asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;"
                         :: "r"(selftest_smem(&Bs[at])), "l"(b + at), "n"(16), "r"(bytes));
        }
        asm volatile("cp.async.commit_group;");
    }
    float acc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t],
                    c[(g + 8) * 8 + 2 * t + 1]};
    for (int half = 0; half < 2; ++half) {
        if (half == 0) {
            asm volatile("cp.async.wait_group %0;" :: "n"(1));
        } else if (wait_second) {
            asm volatile("cp.async.wait_group %0;" :: "n"(0));
        }
        __syncthreads();
        // A: lane l names row (l % 8) + 8 * (matrix & 1) at k = 16 * half + 8 * (matrix >> 1).
        const int m = lane >> 3, ar = (lane & 7) + 8 * (m & 1), ak = 16 * half + 8 * (m >> 1);
        unsigned af[4], bf[2];
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(af[0]), "=r"(af[1]), "=r"(af[2]), "=r"(af[3])
                     : "r"(selftest_smem(&As[ar * 16 + ak / 2])));
        // B: lanes 0-15 name matrix (lane / 8) & 1: rows n at k 16 * half + 8 * matrix, or
        // rows k = 16 * half + 8 * matrix + lane % 8 transposed.
        const int bm = (lane >> 3) & 1, br = lane & 7;
        if (b_kmajor) {
            asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
                         : "=r"(bf[0]), "=r"(bf[1])
                         : "r"(selftest_smem(&Bs[(16 * half + 8 * bm + br) * 4])));
        } else {
            asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
                         : "=r"(bf[0]), "=r"(bf[1])
                         : "r"(selftest_smem(&Bs[br * 16 + (16 * half + 8 * bm) / 2])));
        }
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
            : "r"(af[0]), "r"(af[1]), "r"(af[2]), "r"(af[3]), "r"(bf[0]), "r"(bf[1]));
    }
    d[g * 8 + 2 * t] = acc[0];
    d[g * 8 + 2 * t + 1] = acc[1];
    d[(g + 8) * 8 + 2 * t] = acc[2];
    d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

// Misuses the emulator must report: mode 0 a cp.async to a destination not 16-byte aligned,
// 1 a global pointer taken for a shared one, 2 an ldmatrix row address not 16-byte aligned.
extern "C" __global__ void selftest_bad_async(int mode, unsigned* out) {
    __shared__ __align__(16) unsigned buf[64];
    const int lane = threadIdx.x;
    if (mode == 0) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], %2;"
                     :: "r"(selftest_smem(&buf[1])), "l"(out), "n"(16));
    } else if (mode == 1) {
        out[lane] = selftest_smem(out);
    } else {
        unsigned r;
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];"
                     : "=r"(r)
                     : "r"(selftest_smem(&buf[(lane & 7) * 4 + (lane == 3)])));
        out[lane] = r;
    }
    asm volatile("cp.async.wait_all;");
}
