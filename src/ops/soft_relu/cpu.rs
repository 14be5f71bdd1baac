//! SNL's soft ReLU (Cho et al., ICML 2022; baselines.md §2.1): every ReLU site becomes
//!   y = α ⊙ relu(z) + (1 − α) ⊙ z,
//! with one learnable real α per element of the site's [C, H, W], shared by the batch and not
//! clamped (α may leave [0, 1]). Written piecewise, y = z where z ≥ 0 and (1 − α)·z where
//! z < 0, which for α ∈ {0, 1} is exactly the hard masked ReLU's value (a kept ReLU gives −0
//! instead of +0 on negative inputs, which no later op distinguishes).
//!
//! Gradients follow PyTorch's autograd of `α * relu(z) + (1 − α) * z` (relu'(0) = 0):
//!   dz = dy                where z > 0,  dy·(1 − α) where z ≤ 0;
//!   dα[i] = Σ_n dy[n, i]·(relu(z) − z)[n, i] = Σ_n dy·max(−z, 0),
//! the sum taken over the samples in order (deterministic, as every training reduction here).
//! `z` and `dy` are [n, len] with len = α.len() (= C·H·W).

use crate::ops::Real;

fn check_lengths(name: &str, z: usize, alpha: usize, other: usize) {
    assert!(
        alpha > 0 && z.is_multiple_of(alpha),
        "soft_relu {name}: {z} values are not whole samples of α's {alpha}"
    );
    assert_eq!(z, other, "soft_relu {name}: lengths differ");
}

/// y = z where z ≥ 0, (1 − α)·z where z < 0.
pub fn forward<T: Real>(z: &[T], alpha: &[T], y: &mut [T]) {
    check_lengths("forward", z.len(), alpha.len(), y.len());
    for (ys, zs) in y.chunks_mut(alpha.len()).zip(z.chunks(alpha.len())) {
        for ((yv, &zv), &a) in ys.iter_mut().zip(zs).zip(alpha) {
            *yv = if zv < T::zero() {
                (T::one() - a) * zv
            } else {
                zv
            };
        }
    }
}

/// dz = dy where z > 0, dy·(1 − α) where z ≤ 0.
pub fn backward_input<T: Real>(z: &[T], alpha: &[T], dy: &[T], dz: &mut [T]) {
    check_lengths("backward_input", z.len(), alpha.len(), dy.len());
    assert_eq!(
        z.len(),
        dz.len(),
        "soft_relu backward_input: lengths differ"
    );
    let len = alpha.len();
    for ((ds, zs), gs) in dz.chunks_mut(len).zip(z.chunks(len)).zip(dy.chunks(len)) {
        for (((d, &zv), &g), &a) in ds.iter_mut().zip(zs).zip(gs).zip(alpha) {
            *d = if zv > T::zero() {
                g
            } else {
                g * (T::one() - a)
            };
        }
    }
}

/// The term sample n adds to dα[i]: dy·(−z) where z < 0, else 0.
#[inline]
fn alpha_term<T: Real>(z: T, dy: T) -> T {
    if z < T::zero() {
        dy * -z
    } else {
        T::zero()
    }
}

/// dα[i] = Σ_n dy[n, i]·max(−z[n, i], 0), adding the samples to 0 in order n = 0, 1, ...
pub fn backward_alpha<T: Real>(z: &[T], dy: &[T], dalpha: &mut [T]) {
    check_lengths("backward_alpha", z.len(), dalpha.len(), dy.len());
    dalpha.iter_mut().for_each(|v| *v = T::zero());
    let len = dalpha.len();
    for (zs, gs) in z.chunks(len).zip(dy.chunks(len)) {
        for ((acc, &zv), &g) in dalpha.iter_mut().zip(zs).zip(gs) {
            *acc += alpha_term(zv, g);
        }
    }
}
