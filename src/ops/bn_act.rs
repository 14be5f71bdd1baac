//! Fused BatchNorm (+ optional residual add) + optional masked ReLU:
//!
//!   z = gamma * (x - mean) * invstd + beta (+ r)
//!   y = relu(m * z) + (1 - m) * z        (m: per-element {0,1} mask over C x H x W)
//!
//! With no mask every element keeps its ReLU (plain ReLU); with `relu == false` the op is a
//! plain BatchNorm (+ add). Which BN parameter set (BN_c, BN_a, ...) is used is the caller's
//! choice: the op just receives that set's tensors. Train mode normalises with the batch
//! statistics (biased variance) and reports the unbiased variance for the running estimate;
//! eval mode normalises with the running statistics.

use super::{c, Real};
pub use crate::geom::BnGeom;
use rayon::prelude::*;

pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

/// The activation part of the fused op.
#[derive(Clone, Copy, Debug)]
pub struct Activation<'a, T> {
    pub relu: bool,
    /// [c * hw] of 0/1; `None` keeps every ReLU.
    pub mask: Option<&'a [T]>,
}

impl<T: Real> Activation<'_, T> {
    pub const NONE: Activation<'static, T> = Activation {
        relu: false,
        mask: None,
    };

    /// Does element `i` (within one sample's c*hw) pass its gradient given output value y?
    #[inline]
    fn passes(&self, i: usize, y: T) -> bool {
        if !self.relu {
            return true;
        }
        let keeps_relu = self.mask.is_none_or(|m| m[i] != T::zero());
        !keeps_relu || y > T::zero()
    }

    #[inline]
    fn apply(&self, i: usize, z: T) -> T {
        if self.relu && z < T::zero() && self.mask.is_none_or(|m| m[i] != T::zero()) {
            T::zero()
        } else {
            z
        }
    }
}

/// Per-channel statistics of a train-mode pass.
#[derive(Clone, Debug)]
pub struct BatchStats<T> {
    pub mean: Vec<T>,
    pub invstd: Vec<T>,
    /// Unbiased variance, for the running estimate.
    pub var_unbiased: Vec<T>,
}

fn channel_sum<T: Real>(g: &BnGeom, x: &[T], ch: usize, f: impl Fn(usize, T) -> T) -> T {
    let mut s = T::zero();
    for n in 0..g.n {
        let base = (n * g.c + ch) * g.hw;
        for i in 0..g.hw {
            s += f(ch * g.hw + i, x[base + i]);
        }
    }
    s
}

/// Batch mean and variance per channel (two passes, so large means do not cancel).
pub fn batch_stats<T: Real>(g: &BnGeom, x: &[T], eps: f64) -> BatchStats<T> {
    let m = (g.n * g.hw) as f64;
    let per: Vec<(T, T, T)> = (0..g.c)
        .into_par_iter()
        .map(|ch| {
            let mean = channel_sum(g, x, ch, |_, v| v) / c(m);
            let ss = channel_sum(g, x, ch, |_, v| (v - mean) * (v - mean));
            let var = ss / c(m);
            let unbiased = if m > 1.0 { ss / c(m - 1.0) } else { var };
            (mean, T::one() / (var + c(eps)).sqrt(), unbiased)
        })
        .collect();
    BatchStats {
        mean: per.iter().map(|p| p.0).collect(),
        invstd: per.iter().map(|p| p.1).collect(),
        var_unbiased: per.iter().map(|p| p.2).collect(),
    }
}

/// Inverse standard deviations from running variances (eval mode).
pub fn eval_invstd<T: Real>(running_var: &[T], eps: f64) -> Vec<T> {
    running_var
        .iter()
        .map(|&v| T::one() / (v + c(eps)).sqrt())
        .collect()
}

/// y = act(gamma * (x - mean) * invstd + beta + r), with the statistics already chosen.
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Real>(
    g: &BnGeom,
    x: &[T],
    mean: &[T],
    invstd: &[T],
    gamma: &[T],
    beta: &[T],
    residual: Option<&[T]>,
    act: Activation<'_, T>,
    y: &mut [T],
) {
    assert_eq!(x.len(), g.len(), "bn_act: input length");
    assert_eq!(y.len(), g.len(), "bn_act: output length");
    y.par_chunks_mut(g.hw).enumerate().for_each(|(plane, yp)| {
        let ch = plane % g.c;
        let scale = gamma[ch] * invstd[ch];
        let shift = beta[ch] - mean[ch] * scale;
        let base = plane * g.hw;
        for (i, yv) in yp.iter_mut().enumerate() {
            let mut z = x[base + i] * scale + shift;
            if let Some(r) = residual {
                z += r[base + i];
            }
            *yv = act.apply(ch * g.hw + i, z);
        }
    });
}

/// Gradients of the fused op. `y` is the forward output (it decides which ReLUs passed).
/// In train mode the batch statistics depend on x, which adds the two mean terms to dx.
pub struct BnGrads<'a, T> {
    pub dx: Option<&'a mut [T]>,
    pub dgamma: Option<&'a mut [T]>,
    pub dbeta: Option<&'a mut [T]>,
    /// d(residual) equals dz; written when the residual needs a gradient.
    pub dr: Option<&'a mut [T]>,
}

#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    g: &BnGeom,
    x: &[T],
    y: &[T],
    mean: &[T],
    invstd: &[T],
    gamma: &[T],
    act: Activation<'_, T>,
    train: bool,
    dy: &[T],
    out: BnGrads<'_, T>,
) {
    // dz = dy gated by the ReLU that fired.
    let mut dz = vec![T::zero(); g.len()];
    dz.par_chunks_mut(g.hw).enumerate().for_each(|(plane, dp)| {
        let ch = plane % g.c;
        let base = plane * g.hw;
        for (i, d) in dp.iter_mut().enumerate() {
            let k = base + i;
            *d = if act.passes(ch * g.hw + i, y[k]) {
                dy[k]
            } else {
                T::zero()
            };
        }
    });
    // Per channel: sum(dz) and sum(dz * xhat).
    let sums: Vec<(T, T)> = (0..g.c)
        .into_par_iter()
        .map(|ch| {
            let mut s = T::zero();
            let mut sx = T::zero();
            for n in 0..g.n {
                let base = (n * g.c + ch) * g.hw;
                for i in 0..g.hw {
                    let d = dz[base + i];
                    s += d;
                    sx += d * (x[base + i] - mean[ch]) * invstd[ch];
                }
            }
            (s, sx)
        })
        .collect();
    if let Some(dgamma) = out.dgamma {
        dgamma.iter_mut().zip(&sums).for_each(|(d, s)| *d = s.1);
    }
    if let Some(dbeta) = out.dbeta {
        dbeta.iter_mut().zip(&sums).for_each(|(d, s)| *d = s.0);
    }
    if let Some(dx) = out.dx {
        let m: T = c((g.n * g.hw) as f64);
        dx.par_chunks_mut(g.hw).enumerate().for_each(|(plane, dp)| {
            let ch = plane % g.c;
            let base = plane * g.hw;
            let k = gamma[ch] * invstd[ch];
            if train {
                let (s, sx) = sums[ch];
                for (i, d) in dp.iter_mut().enumerate() {
                    let xhat = (x[base + i] - mean[ch]) * invstd[ch];
                    *d = k * (dz[base + i] - s / m - xhat * sx / m);
                }
            } else {
                for (i, d) in dp.iter_mut().enumerate() {
                    *d = k * dz[base + i];
                }
            }
        });
    }
    if let Some(dr) = out.dr {
        dr.copy_from_slice(&dz);
    }
}

/// running = (1 - momentum) * running + momentum * batch (PyTorch's convention).
pub fn update_running<T: Real>(running: &mut [T], batch: &[T], momentum: f64) {
    let (keep, take): (T, T) = (c(1.0 - momentum), c(momentum));
    running
        .iter_mut()
        .zip(batch)
        .for_each(|(r, &b)| *r = keep * *r + take * b);
}
