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
use super::victim::{host_batch as host, rows, Victim};
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
    let (mut x_best, mut grad_best) = (x.clone(), grad.clone());
    let mut steps: Vec<StepSize> = first
        .losses
        .iter()
        .map(|&l| StepSize::new(eps, l))
        .collect();
    let etas = |steps: &[StepSize]| steps.iter().map(|s| s.eta).collect::<Vec<f32>>();
    let mut trace = ApgdTrace {
        step_sizes: vec![etas(&steps)],
        losses: vec![first.losses],
    };
    let mut x_prev = x.clone();
    let marks = checkpoints(cfg.iters);
    let (mut mark, mut last_mark) = (0usize, 0usize);
    for i in 0..cfg.iters {
        let a = if i == 0 { 1.0 } else { MOMENTUM };
        let next: Vec<f32> = (0..x.len())
            .map(|j| {
                let lo = (x0[j] - eps).max(0.0);
                let hi = (x0[j] + eps).min(1.0);
                let z = (x[j] + steps[j / d].eta * sign(grad[j])).clamp(lo, hi);
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
            if steps[img].observe(p.losses[img]) {
                x_best[r.clone()].copy_from_slice(&x[r.clone()]);
                grad_best[r.clone()].copy_from_slice(&p.grad[r]);
            }
        }
        grad = p.grad;
        if marks.get(mark) == Some(&(i + 1)) {
            let window = i + 1 - last_mark;
            for (img, step) in steps.iter_mut().enumerate() {
                if step.checkpoint(window) {
                    let r = img * d..(img + 1) * d;
                    x[r.clone()].copy_from_slice(&x_best[r.clone()]);
                    grad[r.clone()].copy_from_slice(&grad_best[r]);
                }
            }
            last_mark = i + 1;
            mark += 1;
        }
        trace.losses.push(p.losses);
        trace.step_sizes.push(etas(&steps));
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

/// One APGD-T target run, for inspection: the images it attacked (indices into the batch)
/// and the target class of each.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetRun {
    pub images: Vec<usize>,
    pub targets: Vec<u32>,
}

/// What APGD-T found: the images correct at every point of every run, and the runs made.
pub struct TargetedOutcome {
    pub robust: Vec<bool>,
    pub runs: Vec<TargetRun>,
}

/// APGD-T as AutoAttack runs it: one APGD run with the targeted DLR loss per target class,
/// the (t+1)-th most likely wrong class on `clean_logits` for run t, up to `targets_wanted` runs (at
/// most classes − 1), each on the images every run before left correct. `x0`'s images should
/// be correctly classified (`clean_logits` rank their labels first).
pub fn run_targeted(
    victim: Victim<'_>,
    x0: &Tensor,
    labels: &[u32],
    ids: &[u64],
    clean_logits: &[f32],
    targets_wanted: usize,
    cfg: &ApgdConfig,
) -> TargetedOutcome {
    let k = victim.classes();
    let mut alive = vec![true; labels.len()];
    let mut runs = Vec::new();
    for t in 0..targets_wanted.min(k - 1) {
        let pick: Vec<usize> = (0..labels.len()).filter(|&i| alive[i]).collect();
        if pick.is_empty() {
            break;
        }
        let all = targets(clean_logits, k, t);
        let run_targets: Vec<u32> = pick.iter().map(|&i| all[i]).collect();
        let ys: Vec<u32> = pick.iter().map(|&i| labels[i]).collect();
        let run_ids: Vec<u64> = pick.iter().map(|&i| ids[i]).collect();
        let obj = Objective::DlrTargeted(&run_targets);
        let out = run(
            victim,
            &rows(x0, &pick),
            &ys,
            &run_ids,
            obj,
            cfg,
            t as u64 + 1,
        );
        for (&i, r) in pick.iter().zip(out.robust) {
            alive[i] = r;
        }
        runs.push(TargetRun {
            images: pick,
            targets: run_targets,
        });
    }
    TargetedOutcome {
        robust: alive,
        runs,
    }
}

/// One image's step size η and the rule that halves it at the checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSize {
    pub eta: f32,
    /// Steps since the last checkpoint whose loss rose over the step before.
    rises: usize,
    previous: f64,
    best: f64,
    best_at_last_checkpoint: f64,
    /// Whether the last checkpoint halved η (true before the first, as in AutoAttack: the
    /// stall condition cannot fire at the first checkpoint).
    halved_last: bool,
}

impl StepSize {
    /// η = 2ε at a start whose loss is `first`.
    pub fn new(eps: f32, first: f64) -> Self {
        StepSize {
            eta: 2.0 * eps,
            rises: 0,
            previous: first,
            best: first,
            best_at_last_checkpoint: first,
            halved_last: true,
        }
    }

    /// Records the loss of the next point; true when it is the best so far.
    pub fn observe(&mut self, loss: f64) -> bool {
        self.rises += usize::from(loss > self.previous);
        self.previous = loss;
        let best = loss > self.best;
        if best {
            self.best = loss;
        }
        best
    }

    /// The checkpoint `window` steps after the last one: halves η (true) when the loss rose
    /// in at most ρ·window of those steps, or when η was not halved last time and the best
    /// loss has not grown since.
    pub fn checkpoint(&mut self, window: usize) -> bool {
        let oscillating = self.rises as f64 <= RHO * window as f64;
        let stalled = !self.halved_last && self.best_at_last_checkpoint >= self.best;
        let halve = oscillating || stalled;
        if halve {
            self.eta /= 2.0;
        }
        self.halved_last = halve;
        self.best_at_last_checkpoint = self.best;
        self.rises = 0;
        halve
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

#[cfg(test)]
mod tests {
    use super::{checkpoints, StepSize};

    /// Feeds `losses` after a start of loss 5 and checkpoints after the whole window.
    fn halves(s: &mut StepSize, losses: &[f64]) -> bool {
        for &l in losses {
            s.observe(l);
        }
        s.checkpoint(losses.len())
    }

    #[test]
    fn each_condition_halves_the_step_on_its_own() {
        let mut s = StepSize::new(0.5, 5.0);
        // Rising in every step: no halving (the first checkpoint cannot stall).
        assert!(!halves(&mut s, &[6.0, 7.0, 8.0, 9.0]));
        assert_eq!(s.eta, 1.0);
        // Rising in 4 of 5 steps (more than 0.75·5) but never past the best 9: the stall alone.
        assert!(halves(&mut s, &[1.0, 2.0, 3.0, 4.0, 4.5]));
        assert_eq!(s.eta, 0.5);
        // Halved last time, so a stall cannot repeat; rising in 4 of 4 past the best: none.
        assert!(!halves(&mut s, &[5.0, 10.0, 11.0, 12.0]));
        // Rising in 3 of 4 (= 0.75·4, the inclusive bound) while improving: the rise count.
        assert!(halves(&mut s, &[13.0, 14.0, 15.0, 14.5]));
        assert_eq!(s.eta, 0.25);
        // Rising in 2 of 4 steps, no new best, halved last time: the rise count again.
        assert!(halves(&mut s, &[14.0, 14.2, 13.0, 14.1]));
        assert_eq!(s.eta, 0.125);
    }

    #[test]
    fn checkpoints_follow_the_published_sequence() {
        assert_eq!(checkpoints(100), vec![22, 41, 57, 70, 80, 87, 93, 99]);
        // ⌈p_j·N⌉ for N = 20: 4.4, 8.2, 11.4, 14, 16, 17.4, 18.6, 19.8.
        assert_eq!(checkpoints(20), vec![5, 9, 12, 14, 16, 18, 19, 20]);
        assert_eq!(checkpoints(1), vec![1]);
        assert!(checkpoints(0).is_empty());
    }
}
