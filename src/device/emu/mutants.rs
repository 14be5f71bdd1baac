//! Planted kernel bugs: each mutant is a copy of one kernel file with one edit, compiled into the
//! emulator beside the real kernels (build.rs), so that tests/emu_planted_bugs.rs can prove the
//! suite catches that class of bug. An edit that no longer applies (its text is not found exactly
//! once) fails the build, so a mutant cannot rot into a no-op. build.rs includes this file with
//! `#[path]`; it uses nothing but `std`.

/// One planted bug.
pub struct Mutant {
    /// Identifier (also in the emulator's symbol names).
    pub name: &'static str,
    /// The kernel file it mutates (e.g. "conv2d_tc").
    pub file: &'static str,
    /// What the edit breaks, in words.
    pub what: &'static str,
    /// The text replaced, which must occur exactly once in the file.
    pub find: &'static str,
    /// What it is replaced with.
    pub replace: &'static str,
}

pub const MUTANTS: &[Mutant] = &[
    Mutant {
        name: "mma_fragment_swapped",
        file: "conv2d_tc",
        what: "the A fragment's registers a1 and a2 handed to mma.sync in the wrong order",
        find: "\"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3])",
        replace: "\"r\"(a[0]), \"r\"(a[2]), \"r\"(a[1]), \"r\"(a[3])",
    },
    Mutant {
        name: "conv_k_loop_barrier_deleted",
        file: "conv2d",
        what: "the forward convolution's K loop (rl_gemm_k_loop spelled out) without the \
               __syncthreads that ends each step",
        find: "fwd_load_b(xn, col_ok, iy0, ix0, K, kk2, k, h, w, k0, rb);\n    };\n    auto stage = [&](int buf) { conv_stage(As[buf], Bs[buf], ra, rb); };\n    auto math = [&](int buf) { conv_tile_fma(As[buf], Bs[buf], ty, tx, acc); };\n    rl_gemm_k_loop<CONV_BK>(0, tiles, load, stage, math);",
        replace: "fwd_load_b(xn, col_ok, iy0, ix0, K, kk2, k, h, w, k0, rb);\n    };\n    auto stage = [&](int buf) { conv_stage(As[buf], Bs[buf], ra, rb); };\n    auto math = [&](int buf) { conv_tile_fma(As[buf], Bs[buf], ty, tx, acc); };\n    if (tiles > 0) { load(0); stage(0); }\n    __syncthreads();\n    for (int t = 0; t < tiles; ++t) {\n        const bool more = t + 1 < tiles;\n        if (more) load((t + 1) * CONV_BK);\n        math(t & 1);\n        if (more) stage((t & 1) ^ 1);\n    }",
    },
    Mutant {
        name: "bounds_guard_removed",
        file: "elementwise",
        what: "the `i >= total` guard of elementwise_scale removed (the last block writes past the end)",
        find: "elementwise_scale(const float* x, float alpha, int total, float* y) {\n    const int i = blockIdx.x * blockDim.x + threadIdx.x;\n    if (i >= total) return;",
        replace: "elementwise_scale(const float* x, float alpha, int total, float* y) {\n    const int i = blockIdx.x * blockDim.x + threadIdx.x;",
    },
];
