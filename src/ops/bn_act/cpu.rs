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

use crate::geom::BnGeom;
use crate::ops::{c, Real};
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

    /// The mask entries of channel `ch` ([hw]), or None when every site keeps its ReLU.
    fn channel_mask(&self, ch: usize, hw: usize) -> Option<&[T]> {
        self.mask.map(|m| &m[ch * hw..(ch + 1) * hw])
    }
}

/// A ReLU site with mask entry `m` (1: keeps its ReLU) zeroes a negative z. Written as a
/// select over whole planes so the loops vectorise.
#[inline(always)]
fn gate<T: Real>(z: T, m: T) -> T {
    if (z < T::zero()) & (m != T::zero()) {
        T::zero()
    } else {
        z
    }
}

/// Does the gradient pass a site whose forward output is y? Only a kept ReLU that output 0
/// blocks it (y ≤ 0 there means the ReLU clipped).
#[inline(always)]
fn passes<T: Real>(y: T, m: T) -> bool {
    // `|`, not `||`: no branch, so the plane loops vectorise (the signs of y are random).
    (m == T::zero()) | (y > T::zero())
}

/// Σ a·(b − shift) in 8 interleaved partial sums (see `lane_sum`).
#[inline(always)]
fn lane_dot<T: Real>(a: &[T], b: &[T], shift: T) -> T {
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (u, v) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += u[j] * (v[j] - shift);
        }
    }
    let s = acc.iter().fold(T::zero(), |x, &y| x + y);
    ta.iter().zip(tb).fold(s, |s, (&u, &v)| s + u * (v - shift))
}

/// Σ f(v) over `v`, in 8 interleaved partial sums so the loop vectorises (the order of the
/// additions differs from a left-to-right sum by rounding only).
#[inline(always)]
fn lane_sum<T: Real>(v: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::zero(); 8];
    let chunks = v.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            acc[j] += f(c[j]);
        }
    }
    let s = acc.iter().fold(T::zero(), |a, &b| a + b);
    tail.iter().fold(s, |s, &t| s + f(t))
}

/// Per-channel statistics of a train-mode pass.
#[derive(Clone, Debug)]
pub struct BatchStats<T> {
    pub mean: Vec<T>,
    pub invstd: Vec<T>,
    /// Unbiased variance, for the running estimate.
    pub var_unbiased: Vec<T>,
}

/// Σ over the batch of channel `ch`'s plane sums of f.
fn channel_sum<T: Real>(g: &BnGeom, x: &[T], ch: usize, f: impl Fn(T) -> T + Copy) -> T {
    (0..g.n)
        .map(|n| {
            let base = (n * g.c + ch) * g.hw;
            lane_sum(&x[base..base + g.hw], f)
        })
        .fold(T::zero(), |a, b| a + b)
}

/// Batch mean and variance per channel (two passes, so large means do not cancel).
pub fn batch_stats<T: Real>(g: &BnGeom, x: &[T], eps: f64) -> BatchStats<T> {
    let m = (g.n * g.hw) as f64;
    let per: Vec<(T, T, T)> = (0..g.c)
        .into_par_iter()
        .map(|ch| {
            let mean = channel_sum(g, x, ch, |v| v) / c(m);
            let ss = channel_sum(g, x, ch, |v| (v - mean) * (v - mean));
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
        let xp = &x[plane * g.hw..(plane + 1) * g.hw];
        for (yv, &xv) in yp.iter_mut().zip(xp) {
            *yv = xv * scale + shift;
        }
        if let Some(r) = residual {
            for (yv, &rv) in yp.iter_mut().zip(&r[plane * g.hw..(plane + 1) * g.hw]) {
                *yv += rv;
            }
        }
        if act.relu {
            match act.channel_mask(ch, g.hw) {
                Some(m) => yp
                    .iter_mut()
                    .zip(m)
                    .for_each(|(yv, &mv)| *yv = gate(*yv, mv)),
                None => yp.iter_mut().for_each(|yv| *yv = gate(*yv, T::one())),
            }
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
    // dz = dy gated by the ReLU that fired, one plane at a time (never the whole tensor).
    let gate_plane =
        |plane: usize, dzp: &mut [T]| {
            let k = plane * g.hw..(plane + 1) * g.hw;
            let (dyp, yp) = (&dy[k.clone()], &y[k]);
            dzp.copy_from_slice(dyp);
            if act.relu {
                let ch = plane % g.c;
                match act.channel_mask(ch, g.hw) {
                    Some(m) => dzp.iter_mut().zip(yp).zip(m).for_each(|((d, &yv), &mv)| {
                        *d = if passes(yv, mv) { *d } else { T::zero() }
                    }),
                    None => dzp.iter_mut().zip(yp).for_each(|(d, &yv)| {
                        *d = if passes(yv, T::one()) { *d } else { T::zero() }
                    }),
                }
            }
        };
    // Per channel: Σ dz and Σ dz·x̂.
    let sums: Vec<(T, T)> = (0..g.c)
        .into_par_iter()
        .map(|ch| {
            let mut dzp = vec![T::zero(); g.hw];
            let (mut s, mut sx) = (T::zero(), T::zero());
            for n in 0..g.n {
                let plane = n * g.c + ch;
                gate_plane(plane, &mut dzp);
                let xp = &x[plane * g.hw..(plane + 1) * g.hw];
                s += lane_sum(&dzp, |d| d);
                sx += lane_dot(&dzp, xp, mean[ch]);
            }
            (s, sx * invstd[ch])
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
            gate_plane(plane, dp);
            let k = gamma[ch] * invstd[ch];
            if train {
                let xp = &x[plane * g.hw..(plane + 1) * g.hw];
                let (s, sx) = sums[ch];
                let (a, b) = (s / m, sx / m * invstd[ch]);
                for (d, &xv) in dp.iter_mut().zip(xp) {
                    *d = k * (*d - a - (xv - mean[ch]) * b);
                }
            } else {
                dp.iter_mut().for_each(|d| *d = k * *d);
            }
        });
    }
    if let Some(dr) = out.dr {
        dr.par_chunks_mut(g.hw)
            .enumerate()
            .for_each(|(plane, dp)| gate_plane(plane, dp));
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
