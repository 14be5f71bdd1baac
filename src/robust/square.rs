//! The Square attack, L∞ (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): a
//! gradient-free random search that asks the model for logits only, so masked or obfuscated
//! gradients cannot stop it.
//!
//! Per image: start from vertical stripes x0 ± ε (one sign per channel and column); then at
//! query i pick a square of side s = max(round(√(p_i·h·w)), 1) ≤ h − 1 at a uniform position,
//! set it to x0 ± ε with one sign per channel (drawing again, a few times at most, while the
//! square would not change the image), and keep the new image if its margin
//! z_y − max_{j≠y} z_j fell. An image stops once misclassified (margin ≤ 0). The fraction
//! p_i follows AutoAttack's schedule: p_init = 0.8, halved after queries 10, 50, 200, 500,
//! 1000, 2000, 4000, 6000 and 8000 (no rescaling to the query budget, as AutoAttack runs it).

use super::objective::margins;
use super::victim::{host_batch as host, Victim};
use crate::rng::{self, stream};
use crate::tensor::Tensor;

/// AutoAttack's initial square fraction.
pub const P_INIT: f64 = 0.8;
/// Draws of a square's signs before a query is spent on an unchanged image anyway.
const REDRAWS: u64 = 8;

#[derive(Clone, Debug, PartialEq)]
pub struct SquareConfig {
    pub eps: f32,
    /// Queries per image after the initial stripes (5,000 in AutoAttack).
    pub queries: usize,
    pub seed: u64,
}

/// The fraction of the image's pixels the square covers at query `i` (0-based).
pub fn p_selection(i: usize) -> f64 {
    let halvings = match i {
        0..=10 => 0,
        11..=50 => 1,
        51..=200 => 2,
        201..=500 => 3,
        501..=1000 => 4,
        1001..=2000 => 5,
        2001..=4000 => 6,
        4001..=6000 => 7,
        6001..=8000 => 8,
        _ => 9,
    };
    P_INIT / f64::from(1u32 << halvings)
}

/// The square's side at query `i` for an h×w image (h = w for every dataset rlnet reads).
pub fn side(i: usize, h: usize, w: usize) -> usize {
    let s = (p_selection(i) * (h * w) as f64).sqrt().round() as usize;
    s.max(1).min(h.min(w) - 1)
}

/// What one run found: per image whether it survived, its best margin, the queries it used
/// (the stripes count as one), and its final image.
pub struct SquareOutcome {
    pub robust: Vec<bool>,
    pub margins: Vec<f64>,
    pub queries: Vec<usize>,
    pub adversarial: Vec<f32>,
}

/// Square on host images `x0` [n, c, h, w] with `labels`; `ids` key each image's draws.
pub fn run(
    victim: Victim<'_>,
    x0: &Tensor,
    labels: &[u32],
    ids: &[u64],
    cfg: &SquareConfig,
) -> SquareOutcome {
    let shape = x0.shape().to_vec();
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let d = c * h * w;
    let k = victim.classes();
    let eps = cfg.eps;
    let x0 = x0.data();
    let keys: Vec<u64> = ids
        .iter()
        .map(|&id| rng::hash(cfg.seed, stream::SQUARE, id))
        .collect();
    let at = |img: usize, ch: usize, row: usize, col: usize| img * d + (ch * h + row) * w + col;
    let bound = |j: usize, s: f32| (x0[j] + s * eps).clamp(0.0, 1.0);
    // Vertical stripes: one sign per (image, channel, column).
    let mut best = vec![0f32; x0.len()];
    for (img, &key) in keys.iter().enumerate() {
        for ch in 0..c {
            for col in 0..w {
                let s = pm(key, (ch * w + col) as u64);
                for row in 0..h {
                    let j = at(img, ch, row, col);
                    best[j] = bound(j, s);
                }
            }
        }
    }
    let mut margin = margins(&victim.logits(&host(&shape, &best)), k, labels);
    let mut queries = vec![1usize; n];
    for i in 0..cfg.queries {
        let active: Vec<usize> = (0..n).filter(|&img| margin[img] > 0.0).collect();
        if active.is_empty() {
            break;
        }
        let s = side(i, h, w);
        let mut batch = Vec::with_capacity(active.len() * d);
        for &img in &active {
            let key = rng::hash(keys[img], stream::SQUARE, i as u64 + 1);
            let top = rng::below(key, stream::SQUARE, 0, (h - s) as u64) as usize;
            let left = rng::below(key, stream::SQUARE, 1, (w - s) as u64) as usize;
            let mut cand = best[img * d..(img + 1) * d].to_vec();
            for draw in 0..REDRAWS {
                let mut changed = false;
                for ch in 0..c {
                    let sgn = pm(key, 2 + draw * c as u64 + ch as u64);
                    for row in top..top + s {
                        for col in left..left + s {
                            let j = at(img, ch, row, col);
                            let v = bound(j, sgn);
                            changed |= (v - best[j]).abs() >= 1e-7;
                            cand[j - img * d] = v;
                        }
                    }
                }
                if changed {
                    break;
                }
            }
            batch.extend_from_slice(&cand);
        }
        let labels_now: Vec<u32> = active.iter().map(|&img| labels[img]).collect();
        let shape_now = [active.len(), c, h, w];
        let m = margins(&victim.logits(&host(&shape_now, &batch)), k, &labels_now);
        for (slot, &img) in active.iter().enumerate() {
            queries[img] += 1;
            if m[slot] < margin[img] {
                margin[img] = m[slot];
                best[img * d..(img + 1) * d].copy_from_slice(&batch[slot * d..(slot + 1) * d]);
            }
        }
    }
    SquareOutcome {
        robust: margin.iter().map(|&m| m > 0.0).collect(),
        margins: margin,
        queries,
        adversarial: best,
    }
}

/// A uniform ±1.
fn pm(key: u64, index: u64) -> f32 {
    if rng::below(key, stream::SQUARE, 1 << 32 | index, 2) == 0 {
        -1.0
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_square_shrinks_on_autoattacks_schedule() {
        assert_eq!(p_selection(0), 0.8);
        assert_eq!(p_selection(10), 0.8);
        assert_eq!(p_selection(11), 0.4);
        assert_eq!(p_selection(500), 0.1);
        assert_eq!(p_selection(501), 0.05);
        assert_eq!(p_selection(9000), 0.8 / 512.0);
        // 32×32: √(0.8·1024) = 28.6 → 29; at p = 0.8/512, √1.6 = 1.26 → 1.
        assert_eq!(side(0, 32, 32), 29);
        assert_eq!(side(9000, 32, 32), 1);
        // Never the whole image: s ≤ h − 1.
        assert_eq!(side(0, 2, 2), 1);
    }
}
