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
// - ldmatrix: a warp collective too (each lane names a row, every lane receives pieces of all of
//   them); a fault (an address outside shared memory, a misaligned cp.async) is a switch point
//   that ends the launch with an error naming the source line;
// - shared-memory addresses (__cvta_generic_to_shared, the 32-bit operands of ldmatrix and
//   cp.async): offsets into the launch's dynamic shared memory, or 0x80000000 plus offsets into
//   the file's static __shared__ section; any other pointer is a fault;
// - cp.async: each copy reads its source when issued and lands in shared memory only when a
//   cp.async.wait_group (or wait_all) of this thread completes its group, so a kernel that
//   reads the destination before waiting sees the 0xFF poison or an older stage's data, as the
//   GPU may show it. Copies never waited for never land;
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
#include <vector>

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
    unsigned long long dynamic_shared_bytes;
    void* fiber;         // the scheduler's handle of this thread's fiber
    void* async_copies;  // this thread's pending cp.async copies (rlemu::AsyncCopies), or null
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
    RLEMU_MMA_M16N8K16_BF16 = 11,
    RLEMU_LDMATRIX = 12,
    RLEMU_FAULT = 13,
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
    unsigned int r[4];   // ldmatrix: this lane's fragment registers (filled in by the scheduler)
};

// Hands `op` to the scheduler and returns once it is resolved (src/device/emu/block.rs).
void rlemu_sync(rlemu_thread* self, rlemu_op* op);

// Frees what a finished (or discarded) thread still holds: its pending cp.async copies, which
// never land (rlemu.cpp; called by the scheduler after every block).
void rlemu_release_thread(rlemu_thread* t);
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

// Ends the launch with an error: `what` (a string literal) at file:line. Never returns: the
// scheduler discards the fiber.
[[noreturn]] inline void fault(const char* file, int line, const char* what) {
    rlemu_op o = op(RLEMU_FAULT, file, line, 0);
    o.value = (unsigned long long)(const void*)what;
    sync(&o);
    __builtin_trap();
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
// One thread's cp.async copies: committed groups, oldest first, then the copies issued since
// the last commit. A copy holds its source bytes, read when it was issued.
struct AsyncCopy {
    unsigned char* dst;
    unsigned char data[16];
    int bytes;
};
struct AsyncCopies {
    std::vector<std::vector<AsyncCopy>> groups;
    std::vector<AsyncCopy> open;
};

inline AsyncCopies& async_copies() {
    rlemu_thread* t = rlemu_current;
    if (!t->async_copies) t->async_copies = new AsyncCopies();
    return *static_cast<AsyncCopies*>(t->async_copies);
}

// The bf16 bit pattern nearest to `v` (ties to even); NaN becomes the canonical 0x7fff.
inline unsigned short bf16_rn(float v) {
    unsigned u;
    std::memcpy(&u, &v, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) return 0x7fffu;
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
}  // namespace rlemu

// Shared-memory addresses need the file's static section, whose bounds build.rs declares before
// this header (RLEMU_SHARED_BEGIN/END); `static`, since each file has its own section.
#ifdef RLEMU_SHARED_BEGIN
namespace rlemu {
const unsigned STATIC_SHARED = 0x80000000u;

// The shared-window address of `p` (see the header comment), or a fault.
static inline unsigned shared_address(const char* file, int line, const void* p) {
    const unsigned char* c = static_cast<const unsigned char*>(p);
    const unsigned char* dyn = rlemu_current->dynamic_shared;
    if (dyn && c >= dyn && c < dyn + rlemu_current->dynamic_shared_bytes) return (unsigned)(c - dyn);
    const unsigned char* begin = (const unsigned char*)RLEMU_SHARED_BEGIN;
    const unsigned char* end = (const unsigned char*)RLEMU_SHARED_END;
    if (begin && c >= begin && c < end) return STATIC_SHARED + (unsigned)(c - begin);
    fault(file, line, "__cvta_generic_to_shared: the pointer is not in this block's shared memory");
}

// The host pointer of `bytes` bytes at shared-window address `a`, or a fault.
static inline unsigned char* shared_pointer(const char* file, int line, unsigned a, unsigned bytes) {
    if (a >= STATIC_SHARED) {
        unsigned char* begin = (unsigned char*)RLEMU_SHARED_BEGIN;
        unsigned char* end = (unsigned char*)RLEMU_SHARED_END;
        const unsigned long long off = a - STATIC_SHARED;
        if (begin && off + bytes <= (unsigned long long)(end - begin)) return begin + off;
    } else if (rlemu_current->dynamic_shared &&
               (unsigned long long)a + bytes <= rlemu_current->dynamic_shared_bytes) {
        return rlemu_current->dynamic_shared + a;
    }
    fault(file, line, "a shared-memory address operand lies outside this block's shared memory");
}
}  // namespace rlemu

#define __cvta_generic_to_shared(p) ((size_t)rlemu::shared_address(__FILE__, __LINE__, (p)))
#endif

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
// cvt.rn.bf16x2.f32 d, a, b: both rounded to bf16 to nearest even, a in the upper half of d and
// b in the lower.
inline void cvt_rn_bf16x2_f32(const char*, int, unsigned* d, float a, float b) {
    *d = ((unsigned)rlemu::bf16_rn(a) << 16) | rlemu::bf16_rn(b);
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: a warp collective like the TF32 one; each
// A and B register holds two bf16 values, the lower-indexed one in the low half.
inline void mma_m16n8k16_row_col_f32_bf16_bf16_f32(const char* file, int line, float* d0,
                                                  float* d1, float* d2, float* d3, unsigned a0,
                                                  unsigned a1, unsigned a2, unsigned a3,
                                                  unsigned b0, unsigned b1, float c0, float c1,
                                                  float c2, float c3) {
    rlemu_op o = rlemu::op(RLEMU_MMA_M16N8K16_BF16, file, line, 0xffffffffu);
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

#ifdef RLEMU_SHARED_BEGIN
// ldmatrix.sync.aligned.m8n8.xN[.trans].shared.b16: lane l names row l % 8 of matrix l / 8 (16
// bytes at shared address `a`); the scheduler hands each lane its register of every matrix.
template <int N, bool TRANS>
static inline void ldmatrix(const char* file, int line, unsigned* d, unsigned a) {
    rlemu_op o = rlemu::op(RLEMU_LDMATRIX, file, line, 0xffffffffu);
    const int lane = (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32;
    if (lane < 8 * N) {
        if (a % 16 != 0) rlemu::fault(file, line, "ldmatrix: a row address is not 16-byte aligned");
        o.value = (unsigned long long)(const void*)rlemu::shared_pointer(file, line, a, 16);
    }
    o.width = N;
    o.lane = TRANS;
    rlemu::sync(&o);
    for (int i = 0; i < N; ++i) d[i] = o.r[i];
}
static inline void ldmatrix_x1(const char* f, int l, unsigned* d0, unsigned a) {
    ldmatrix<1, false>(f, l, d0, a);
}
static inline void ldmatrix_x2(const char* f, int l, unsigned* d0, unsigned* d1, unsigned a) {
    unsigned d[2];
    ldmatrix<2, false>(f, l, d, a);
    *d0 = d[0], *d1 = d[1];
}
static inline void ldmatrix_x4(const char* f, int l, unsigned* d0, unsigned* d1, unsigned* d2,
                               unsigned* d3, unsigned a) {
    unsigned d[4];
    ldmatrix<4, false>(f, l, d, a);
    *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3];
}
static inline void ldmatrix_x1_trans(const char* f, int l, unsigned* d0, unsigned a) {
    ldmatrix<1, true>(f, l, d0, a);
}
static inline void ldmatrix_x2_trans(const char* f, int l, unsigned* d0, unsigned* d1, unsigned a) {
    unsigned d[2];
    ldmatrix<2, true>(f, l, d, a);
    *d0 = d[0], *d1 = d[1];
}
static inline void ldmatrix_x4_trans(const char* f, int l, unsigned* d0, unsigned* d1, unsigned* d2,
                                     unsigned* d3, unsigned a) {
    unsigned d[4];
    ldmatrix<4, true>(f, l, d, a);
    *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3];
}

// cp.async.{ca,cg}.shared.global [dst], [src], cp_size{, src_size}: copies src_size bytes (all
// cp_size when absent) and zero-fills the rest. Both addresses must be aligned to cp_size; .cg
// takes only 16 bytes.
static inline void cp_async(const char* file, int line, bool cg, unsigned dst, const void* src,
                            int cp_size, unsigned src_size) {
    if (cp_size != 16 && (cg || (cp_size != 4 && cp_size != 8)))
        rlemu::fault(file, line, "cp.async: the copy size must be 16 bytes (.cg) or 4, 8, 16 (.ca)");
    if (src_size > (unsigned)cp_size)
        rlemu::fault(file, line, "cp.async: the source size exceeds the copy size");
    if (dst % cp_size != 0 || (unsigned long long)src % cp_size != 0)
        rlemu::fault(file, line, "cp.async: an address is not aligned to the copy size");
    rlemu::AsyncCopy c;
    c.dst = rlemu::shared_pointer(file, line, dst, cp_size);
    c.bytes = cp_size;
    std::memset(c.data, 0, sizeof c.data);
    if (src_size > 0) std::memcpy(c.data, src, src_size);
    rlemu::async_copies().open.push_back(c);
}
static inline void cp_async_ca(const char* f, int l, unsigned dst, const void* src, int size) {
    cp_async(f, l, false, dst, src, size, (unsigned)size);
}
static inline void cp_async_ca_zfill(const char* f, int l, unsigned dst, const void* src, int size,
                                     unsigned src_size) {
    cp_async(f, l, false, dst, src, size, src_size);
}
static inline void cp_async_cg(const char* f, int l, unsigned dst, const void* src, int size) {
    cp_async(f, l, true, dst, src, size, (unsigned)size);
}
static inline void cp_async_cg_zfill(const char* f, int l, unsigned dst, const void* src, int size,
                                     unsigned src_size) {
    cp_async(f, l, true, dst, src, size, src_size);
}
#endif

// cp.async.commit_group: the copies issued since the last commit become the newest group.
inline void cp_async_commit_group(const char*, int) {
    rlemu::AsyncCopies& q = rlemu::async_copies();
    q.groups.push_back(std::move(q.open));
    q.open.clear();
}

// cp.async.wait_group n: lands the oldest groups until at most n are pending.
inline void cp_async_wait_group(const char*, int, int n) {
    rlemu::AsyncCopies& q = rlemu::async_copies();
    while (q.groups.size() > (size_t)(n < 0 ? 0 : n)) {
        for (const rlemu::AsyncCopy& c : q.groups.front()) std::memcpy(c.dst, c.data, c.bytes);
        q.groups.erase(q.groups.begin());
    }
}

// cp.async.wait_all: commit_group, then wait_group 0.
inline void cp_async_wait_all(const char* f, int l) {
    cp_async_commit_group(f, l);
    cp_async_wait_group(f, l, 0);
}
}  // namespace rlemu_ptx
