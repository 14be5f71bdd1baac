//! Auto-PGD (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
//! diverse parameter-free attacks", ICML 2020), L∞: APGD-CE with the cross-entropy loss and
//! APGD-T with the targeted DLR loss over the most likely wrong classes.
//!
//! Per image: a random start at the ε-ball's surface scale, step size η = 2ε, momentum 0.75
//! after the first step, the point of highest loss kept, and at each checkpoint
//! w_j = ⌈p_j·N⌉ (p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)) η halves
//! and the iterate restarts from the best point when
//! 1. the loss rose in at most ρ = 0.75 of the steps since the last checkpoint (`≤`, as
//!    AutoAttack's code compares; the first window starts at the random start's loss), or
//! 2. η was not halved at the last checkpoint and the best loss has not improved since.
//!
//! An image counts as robust only if every point visited is classified correctly. The state
//! per image lives on the host; the model's loss and gradient come through its graph
//! (`Victim::probe`), so the attack runs unchanged on every device.

use super::objective::{correct, ranked_classes, Objective};
use super::victim::Victim;
use crate::rng::{self, stream};
use crate::tensor::Tensor;

/// Momentum of every step after the first.
pub const MOMENTUM: f32 = 0.75;
/// The share of rising steps below which (inclusive) a checkpoint halves η.
pub const RHO: f64 = 0.75;

#[derive(Clone, Debug, PartialEq)]
pub struct ApgdConfig {
    pub eps: f32,
    /// N, the iterations per run (100 in AutoAttack).
    pub iters: usize,
    pub seed: u64,
}

/// The checkpoints w_1 < w_2 < … ≤ N, in iterations done. The p_j are kept in hundredths so
/// that ⌈p_j·N⌉ is exact (0.22·100 is 22, not the float 22.000000000000004).
pub fn checkpoints(iters: usize) -> Vec<usize> {
    let (mut p, mut step) = (22usize, 22usize);
    let mut out = Vec::new();
    loop {
        let w = (p * iters).div_ceil(100);
        if w > iters || p > 100 {
            return out;
        }
        if out.last() != Some(&w) && w > 0 {
            out.push(w);
        }
        step = step.saturating_sub(3).max(6);
        p += step;
    }
}

/// One APGD run's record, for inspection: per point visited (0 = the random start), each
/// image's loss and the step size it moved with next.
#[derive(Clone, Debug, Default)]
pub struct ApgdTrace {
    pub losses: Vec<Vec<f64>>,
    pub step_sizes: Vec<Vec<f32>>,
}

/// What one run found: which images stayed correctly classified at every point visited,
/// and per image the point to report (a misclassified one where found, else the best).
pub struct ApgdOutcome {
    pub robust: Vec<bool>,
    pub adversarial: Vec<f32>,
    pub trace: ApgdTrace,
}

/// One APGD run on host images `x0` [n, c, h, w] with `labels`; `ids` are the images' indices
/// in the test set, which key their random starts (with `run`, distinct per target class).
pub fn run(
    victim: Victim<'_>,
    x0: &Tensor,
    labels: &[u32],
    ids: &[u64],
    obj: Objective<'_>,
    cfg: &ApgdConfig,
    run: u64,
) -> ApgdOutcome {
    let shape = x0.shape().to_vec();
    let n = labels.len();
    let d = x0.numel() / n.max(1);
    let k = victim.classes();
    let eps = cfg.eps;
    let x0 = x0.data();
    let mut x = random_start(x0, d, ids, eps, cfg.seed, run);
    let probe = |x: &[f32]| victim.probe(&host(&shape, x), labels, obj);
    let first = probe(&x);
    let mut robust: Vec<bool> = correct(&first.logits, k, labels);
    let mut adversarial = x.clone();
    let mut grad = first.grad;
    let mut loss_best = first.losses.clone();
    let mut prev_loss = first.losses.clone();
    let (mut x_best, mut grad_best) = (x.clone(), grad.clone());
    let mut eta = vec![2.0 * eps; n];
    let mut trace = ApgdTrace {
        losses: vec![first.losses],
        step_sizes: vec![eta.clone()],
    };
    let mut x_prev = x.clone();
    let mut rises = vec![0usize; n];
    let mut reduced_last = vec![true; n];
    let mut loss_best_last = loss_best.clone();
    let marks = checkpoints(cfg.iters);
    let (mut mark, mut last_mark) = (0usize, 0usize);
    for i in 0..cfg.iters {
        let a = if i == 0 { 1.0 } else { MOMENTUM };
        let next: Vec<f32> = (0..x.len())
            .map(|j| {
                let lo = (x0[j] - eps).max(0.0);
                let hi = (x0[j] + eps).min(1.0);
                let z = (x[j] + eta[j / d] * sign(grad[j])).clamp(lo, hi);
                (x[j] + a * (z - x[j]) + (1.0 - a) * (x[j] - x_prev[j])).clamp(lo, hi)
            })
            .collect();
        x_prev = std::mem::replace(&mut x, next);
        let p = probe(&x);
        let now_correct = correct(&p.logits, k, labels);
        for img in 0..n {
            let r = img * d..(img + 1) * d;
            if !now_correct[img] {
                robust[img] = false;
                adversarial[r.clone()].copy_from_slice(&x[r.clone()]);
            }
            if p.losses[img] > prev_loss[img] {
                rises[img] += 1;
            }
            if p.losses[img] > loss_best[img] {
                loss_best[img] = p.losses[img];
                x_best[r.clone()].copy_from_slice(&x[r.clone()]);
                grad_best[r.clone()].copy_from_slice(&p.grad[r]);
            }
        }
        grad = p.grad;
        prev_loss.clone_from(&p.losses);
        if marks.get(mark) == Some(&(i + 1)) {
            let window = (i + 1 - last_mark) as f64;
            for img in 0..n {
                let oscillating = rises[img] as f64 <= RHO * window;
                let stalled = !reduced_last[img] && loss_best_last[img] >= loss_best[img];
                let halve = oscillating || stalled;
                reduced_last[img] = halve;
                loss_best_last[img] = loss_best[img];
                rises[img] = 0;
                if halve {
                    let r = img * d..(img + 1) * d;
                    eta[img] /= 2.0;
                    x[r.clone()].copy_from_slice(&x_best[r.clone()]);
                    grad[r.clone()].copy_from_slice(&grad_best[r]);
                }
            }
            last_mark = i + 1;
            mark += 1;
        }
        trace.losses.push(p.losses);
        trace.step_sizes.push(eta.clone());
    }
    for (img, _) in robust.iter().enumerate().filter(|(_, &r)| r) {
        let r = img * d..(img + 1) * d;
        adversarial[r.clone()].copy_from_slice(&x_best[r]);
    }
    ApgdOutcome {
        robust,
        adversarial,
        trace,
    }
}

/// The target classes of APGD-T run `t` (0-based): each image's (t+2)-th most likely class on
/// its clean logits, i.e. the (t+1)-th most likely wrong class of a correctly classified image.
pub fn targets(clean_logits: &[f32], k: usize, t: usize) -> Vec<u32> {
    clean_logits
        .chunks(k)
        .map(|row| ranked_classes(row)[t + 1] as u32)
        .collect()
}

/// AutoAttack's start: x0 + ε·t/‖t‖∞ with t uniform in [−1, 1]^d per image, clipped to [0, 1].
fn random_start(x0: &[f32], d: usize, ids: &[u64], eps: f32, seed: u64, run: u64) -> Vec<f32> {
    let mut x = vec![0f32; x0.len()];
    for (img, &id) in ids.iter().enumerate() {
        let key = rng::hash(
            rng::hash(seed, stream::APGD_START, id),
            stream::APGD_START,
            run,
        );
        let t: Vec<f32> = (0..d)
            .map(|j| 2.0 * rng::uniform(key, stream::APGD_START, j as u64) - 1.0)
            .collect();
        let scale = t
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(f32::MIN_POSITIVE);
        let r = img * d..(img + 1) * d;
        for ((xv, &x0v), tv) in x[r.clone()].iter_mut().zip(&x0[r]).zip(&t) {
            *xv = (x0v + eps * tv / scale).clamp(0.0, 1.0);
        }
    }
    x
}

fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn host(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_vec(shape, data.to_vec()).expect("the attacked batch keeps its shape")
}

#[cfg(test)]
mod tests {
    use super::checkpoints;

    #[test]
    fn checkpoints_follow_the_published_sequence() {
        assert_eq!(checkpoints(100), vec![22, 41, 57, 70, 80, 87, 93, 99]);
        // ⌈p_j·N⌉ for N = 20: 4.4, 8.2, 11.4, 14, 16, 17.4, 18.6, 19.8.
        assert_eq!(checkpoints(20), vec![5, 9, 12, 14, 16, 18, 19, 20]);
        assert_eq!(checkpoints(1), vec![1]);
        assert!(checkpoints(0).is_empty());
    }
}
