// rlemu.h: the CUDA execution model on a CPU, for rlnet's CUDA emulator (`--device cuda-emu`).
//
// build.rs compiles every kernels/*.cu file as C++ with this header in front of it (after the
// small translation of src/device/kernel_source.rs: inline PTX becomes rlemu_ptx calls, kernels
// lose `extern "C"`, `extern __shared__` arrays point at the launch's dynamic shared memory).
// The Rust side (src/device/emu/) runs each block's threads as cooperatively scheduled fibers;
// this header gives the kernels what CUDA gives them:
//
// - blockIdx / threadIdx / blockDim / gridDim: the running fiber's context (`rlemu_current`, a
//   thread-local pointer the trampoline sets and every switch point restores);
// - __shared__: one static per variable in a section of its own kernel file, which the emulator
//   poisons (0xFF bytes: NaN as f32 and f64) before every block. Only one block of a file runs at
//   a time, so the statics are the block's shared memory;
// - __syncthreads, warp shuffles and votes, __syncwarp and mma.sync: switch points. The fiber hands
//   an rlemu_op to the scheduler (rlemu_sync, in Rust) and resumes once the op is resolved: a
//   barrier when every thread of the block reached it from the same place, a warp collective when
//   every lane named in its mask arrived with the same mask. Anything else is reported as an
//   error naming the kernel and the source lines;
// - atomics: plain read-modify-writes (fibers only switch at the points above, so they are atomic);
// - math: the exactly rounded intrinsics (__fmul_rn, __dadd_rn, __fsqrt_rn, conversions) are
//   exact here too; expf, logf, sin, cos, exp, log, hypot, ... come from the host's libm, which can
//   differ from CUDA's libdevice in the last bits (documented as approximate).
//
// Floating-point contraction: NVRTC fuses a*b+c into an FMA by default. build.rs compiles with
// -ffp-contract=fast (and FMA enabled where the host has it), so plain expressions may be fused
// here too, while the _rn intrinsics are fenced off from fusion as on the GPU.
#pragma once

#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>

struct uint3 {
    unsigned int x, y, z;
};
typedef uint3 dim3;

// CUDA's vector types, with the hardware's alignment.
struct __attribute__((aligned(8))) float2 {
    float x, y;
};
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};
struct __attribute__((aligned(16))) double2 {
    double x, y;
};
struct __attribute__((aligned(8))) int2 {
    int x, y;
};
struct __attribute__((aligned(16))) int4 {
    int x, y, z, w;
};
struct __attribute__((aligned(16))) uint4 {
    unsigned int x, y, z, w;
};

extern "C" {
// One emulated thread, as the scheduler sees it (mirrored by src/device/emu/ffi.rs).
struct rlemu_thread {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
    unsigned char* dynamic_shared;
    void* fiber;  // the scheduler's handle of this thread's fiber
};

enum rlemu_op_kind {
    RLEMU_BARRIER = 1,
    RLEMU_SYNCWARP = 2,
    RLEMU_SHFL_IDX = 3,
    RLEMU_SHFL_UP = 4,
    RLEMU_SHFL_DOWN = 5,
    RLEMU_SHFL_XOR = 6,
    RLEMU_VOTE_BALLOT = 7,
    RLEMU_VOTE_ANY = 8,
    RLEMU_VOTE_ALL = 9,
    RLEMU_MMA_M16N8K8_TF32 = 10,
};

// A switch point: what the thread asks of its block or warp, and where in the source it asks.
struct rlemu_op {
    int kind;
    int line;
    const char* file;
    unsigned int mask;   // lanes named (warp collectives)
    int lane;            // shuffles: source lane, delta or xor mask
    int width;           // shuffles: the segment width (a power of two up to 32)
    int bytes;           // shuffles: the payload's size
    unsigned long long value;   // shuffle payload or vote predicate
    unsigned long long result;  // filled in by the scheduler
    unsigned int a[4];   // mma: this lane's A fragment (tf32 bit patterns)
    unsigned int b[2];   // mma: this lane's B fragment
    float c[4];          // mma: this lane's accumulator in
    float d[4];          // mma: this lane's accumulator out (filled in by the scheduler)
};

// Hands `op` to the scheduler and returns once it is resolved (src/device/emu/block.rs).
void rlemu_sync(rlemu_thread* self, rlemu_op* op);
}

// `__thread` (no dynamic initialisation): every access is one %fs-relative load, where a
// `thread_local` declared extern would call a TLS wrapper function.
extern __thread rlemu_thread* rlemu_current __attribute__((tls_model("initial-exec")));

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// RLEMU_SHARED_SECTION is defined by each generated translation unit ("rlemu_shared_<file>").
#define __shared__ static __attribute__((section(RLEMU_SHARED_SECTION)))

#define threadIdx (rlemu_current->thread_idx)
#define blockIdx (rlemu_current->block_idx)
#define blockDim (rlemu_current->block_dim)
#define gridDim (rlemu_current->grid_dim)
#define warpSize 32

inline unsigned char* rlemu_dynamic_shared() { return rlemu_current->dynamic_shared; }

namespace rlemu {
// Suspends the calling fiber on `op`; the fiber's context is restored on return, since another
// fiber ran on this OS thread in between.
inline void sync(rlemu_op* op) {
    rlemu_thread* self = rlemu_current;
    rlemu_sync(self, op);
    rlemu_current = self;
}

// The header of a switch point; the fields each kind uses beyond it are set by its caller
// (a full memset costs more than the switch itself).
inline rlemu_op op(int kind, const char* file, int line, unsigned mask) {
    rlemu_op o;
    o.kind = kind;
    o.file = file;
    o.line = line;
    o.mask = mask;
    o.lane = 0;
    o.width = warpSize;
    o.bytes = 0;
    o.value = 0;
    o.result = 0;
    return o;
}

inline void barrier(const char* file, int line) {
    rlemu_op o = op(RLEMU_BARRIER, file, line, 0);
    sync(&o);
}

inline void syncwarp(const char* file, int line, unsigned mask = 0xffffffffu) {
    rlemu_op o = op(RLEMU_SYNCWARP, file, line, mask);
    sync(&o);
}

template <class T>
inline T shfl(int kind, const char* file, int line, unsigned mask, T v, int lane,
              int width = warpSize) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 64 bits");
    rlemu_op o = op(kind, file, line, mask);
    std::memcpy(&o.value, &v, sizeof(T));
    o.lane = lane;
    o.width = width;
    o.bytes = sizeof(T);
    sync(&o);
    T r;
    std::memcpy(&r, &o.result, sizeof(T));
    return r;
}

inline unsigned long long vote(int kind, const char* file, int line, unsigned mask, int pred) {
    rlemu_op o = op(kind, file, line, mask);
    o.value = pred != 0;
    sync(&o);
    return o.result;
}

// Keeps the compiler from fusing an exactly rounded operation with its neighbours (-ffp-contract
// would otherwise turn __fadd_rn(__fmul_rn(a, b), c) into an FMA, which the GPU never does).
template <class T>
inline T fence(T v) {
#if defined(__x86_64__)
    asm("" : "+x"(v));
#elif defined(__aarch64__)
    asm("" : "+w"(v));
#else
    volatile T t = v;
    v = t;
#endif
    return v;
}

template <class To, class From>
inline To bits(From v) {
    static_assert(sizeof(To) == sizeof(From), "bit casts keep the size");
    To r;
    std::memcpy(&r, &v, sizeof r);
    return r;
}

// cvt.rzi / cvt.rni to s32: NaN gives 0 and out-of-range values saturate, as the PTX ISA says.
template <class F>
inline int to_int_saturating(F v) {
    if (v != v) return 0;
    if (v >= (F)2147483647.0) return INT_MAX;
    if (v <= (F)-2147483648.0) return INT_MIN;
    return (int)v;
}
}  // namespace rlemu

#define __syncthreads() rlemu::barrier(__FILE__, __LINE__)
#define __syncwarp(...) rlemu::syncwarp(__FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_sync(...) rlemu::shfl(RLEMU_SHFL_IDX, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) rlemu::shfl(RLEMU_SHFL_UP, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) rlemu::shfl(RLEMU_SHFL_DOWN, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) rlemu::shfl(RLEMU_SHFL_XOR, __FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, pred) \
    ((unsigned)rlemu::vote(RLEMU_VOTE_BALLOT, __FILE__, __LINE__, (mask), (pred)))
#define __any_sync(mask, pred) ((int)rlemu::vote(RLEMU_VOTE_ANY, __FILE__, __LINE__, (mask), (pred)))
#define __all_sync(mask, pred) ((int)rlemu::vote(RLEMU_VOTE_ALL, __FILE__, __LINE__, (mask), (pred)))
#define __threadfence() ((void)0)
#define __threadfence_block() ((void)0)

// Atomics: the fiber cannot be switched inside, so a plain read-modify-write is atomic.
template <class T>
inline T atomicAdd(T* address, T v) {
    T old = *address;
    *address = old + v;
    return old;
}
template <class T>
inline T atomicExch(T* address, T v) {
    T old = *address;
    *address = v;
    return old;
}
template <class T>
inline T atomicMax(T* address, T v) {
    T old = *address;
    *address = old < v ? v : old;
    return old;
}
template <class T>
inline T atomicMin(T* address, T v) {
    T old = *address;
    *address = v < old ? v : old;
    return old;
}
template <class T>
inline T atomicCAS(T* address, T compare, T v) {
    T old = *address;
    if (old == compare) *address = v;
    return old;
}

// CUDA's integer min/max overloads.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// Exactly rounded arithmetic (round to nearest even), fenced from contraction.
inline float __fadd_rn(float a, float b) { return rlemu::fence(rlemu::fence(a) + rlemu::fence(b)); }
inline float __fsub_rn(float a, float b) { return rlemu::fence(rlemu::fence(a) - rlemu::fence(b)); }
inline float __fmul_rn(float a, float b) { return rlemu::fence(rlemu::fence(a) * rlemu::fence(b)); }
inline float __fdiv_rn(float a, float b) { return rlemu::fence(rlemu::fence(a) / rlemu::fence(b)); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dadd_rn(double a, double b) { return rlemu::fence(rlemu::fence(a) + rlemu::fence(b)); }
inline double __dsub_rn(double a, double b) { return rlemu::fence(rlemu::fence(a) - rlemu::fence(b)); }
inline double __dmul_rn(double a, double b) { return rlemu::fence(rlemu::fence(a) * rlemu::fence(b)); }
inline double __ddiv_rn(double a, double b) { return rlemu::fence(rlemu::fence(a) / rlemu::fence(b)); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }

// Conversions and bit casts.
inline float __double2float_rn(double v) { return (float)v; }
inline int __double2int_rn(double v) { return rlemu::to_int_saturating(std::nearbyint(v)); }
inline int __double2int_rz(double v) { return rlemu::to_int_saturating(std::trunc(v)); }
inline int __float2int_rn(float v) { return rlemu::to_int_saturating(std::nearbyint(v)); }
inline int __float2int_rz(float v) { return rlemu::to_int_saturating(std::trunc(v)); }
inline float __int_as_float(int v) { return rlemu::bits<float>(v); }
inline int __float_as_int(float v) { return rlemu::bits<int>(v); }
inline float __uint_as_float(unsigned v) { return rlemu::bits<float>(v); }
inline unsigned __float_as_uint(float v) { return rlemu::bits<unsigned>(v); }
inline double __longlong_as_double(long long v) { return rlemu::bits<double>(v); }
inline long long __double_as_longlong(double v) { return rlemu::bits<long long>(v); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline unsigned __umulhi(unsigned a, unsigned b) {
    return (unsigned)(((unsigned long long)a * b) >> 32);
}
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz((unsigned)v); }
inline int __ffs(int v) { return __builtin_ffs(v); }

// The inline PTX that src/device/kernel_source.rs translates: each function takes the source
// location, a pointer per written register, then the value of each read register.
namespace rlemu_ptx {
// cvt.rna.tf32.f32: round to TF32 (10 mantissa bits) to nearest, ties away from zero; the result
// is an f32 bit pattern whose low 13 bits are zero. NaN stays a (canonical) NaN; values that round
// past the largest finite TF32 become infinity.
inline void cvt_rna_tf32_f32(const char*, int, unsigned* d, float a) {
    const unsigned u = rlemu::bits<unsigned>(a);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
        *d = 0x7fffffffu;
        return;
    }
    const unsigned sign = u & 0x80000000u;
    *d = sign | (((u & 0x7fffffffu) + 0x1000u) & 0xffffe000u);
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32: a warp collective; the scheduler gathers the
// 32 lanes' fragments and computes D = A B + C (src/device/emu/ptx.rs).
inline void mma_m16n8k8_row_col_f32_tf32_tf32_f32(const char* file, int line, float* d0, float* d1,
                                                 float* d2, float* d3, unsigned a0, unsigned a1,
                                                 unsigned a2, unsigned a3, unsigned b0, unsigned b1,
                                                 float c0, float c1, float c2, float c3) {
    rlemu_op o = rlemu::op(RLEMU_MMA_M16N8K8_TF32, file, line, 0xffffffffu);
    const unsigned a[4] = {a0, a1, a2, a3};
    const unsigned b[2] = {b0, b1};
    const float c[4] = {c0, c1, c2, c3};
    std::memcpy(o.a, a, sizeof a);
    std::memcpy(o.b, b, sizeof b);
    std::memcpy(o.c, c, sizeof c);
    rlemu::sync(&o);
    *d0 = o.d[0];
    *d1 = o.d[1];
    *d2 = o.d[2];
    *d3 = o.d[3];
}
}  // namespace rlemu_ptx
