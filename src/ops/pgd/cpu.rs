//! The two element-wise pieces of L∞ PGD (spec §3), as the GPU kernel will fuse them.

use crate::rng::{self, stream};
use rayon::prelude::*;

/// x = clip_[0,1](x0 + U(−eps, eps)): one uniform random start, keyed by (seed, key, element).
pub fn random_start(x0: &[f32], eps: f32, seed: u64, key: u64, x: &mut [f32]) {
    let k = rng::hash(seed, stream::PGD_START, key);
    for (i, (xv, &x0v)) in x.iter_mut().zip(x0).enumerate() {
        let u = rng::uniform(k, stream::PGD_START, i as u64);
        *xv = (x0v + eps * (2.0 * u - 1.0)).clamp(0.0, 1.0);
    }
}

/// x ← clip_[0,1](clip_[x0−eps, x0+eps](x + alpha·sign(g))), with sign(0) = 0 as in torch.
/// Parallel over chunks; the select form (no branches) lets each chunk vectorise.
pub fn step(x: &mut [f32], x0: &[f32], grad: &[f32], alpha: f32, eps: f32) {
    const CHUNK: usize = 1 << 14;
    x.par_chunks_mut(CHUNK)
        .zip(x0.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
        .for_each(|(xs, (x0s, gs))| {
            for ((xv, &x0v), &g) in xs.iter_mut().zip(x0s).zip(gs) {
                let s = if g > 0.0 { 1.0 } else { 0.0 } - if g < 0.0 { 1.0 } else { 0.0 };
                let moved = (*xv + alpha * s).clamp(x0v - eps, x0v + eps);
                *xv = moved.clamp(0.0, 1.0);
            }
        });
}
