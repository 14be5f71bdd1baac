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
