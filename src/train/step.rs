//! One stage-1 optimisation step (spec §4): the first half of the batch is clean (BN_c), its
//! AugMix view (when on) goes through BN_c too (BN_r with triple BN), the second half is
//! PGD-attacked (BN_a, attack in eval mode); the loss is the mean of the per-view
//! cross-entropies (plus λ·JS with the optional JSD consistency loss), then one SGD step and
//! the BN running-statistics updates.

use crate::autograd::{GradMode, Graph, Var};
use crate::device::ok;
use crate::error::Result;
use crate::eval::correct;
use crate::nn::{Domain, Model, Pass};
use crate::ops::bn_act;
use crate::ops::loss::Labels;
use crate::optim::Sgd;
use crate::robust::pgd::{attack, Attack, AttackLoss, PgdConfig};
use crate::tensor::Tensor;

/// One plain (non-robust) step on a batch through one BN set: forward in train mode, mean
/// cross-entropy, backward, SGD, running statistics. Returns the loss and the batch's correct
/// count.
pub fn plain_step(
    model: &mut Model,
    sgd: &mut Sgd,
    x: &Tensor,
    labels: &[u32],
    domain: Domain,
    lr: f32,
) -> StepStats {
    let mut g = Graph::new(&model.store, GradMode::All);
    let xv = g.input(x.clone(), false);
    let out = model.forward(
        &mut g,
        xv,
        Pass {
            domain,
            train: true,
        },
    );
    let l = g.cross_entropy(out.logits, labels, false);
    let mut pending = PendingStats::default();
    pending.clean(g.value(out.logits), labels);
    pending.loss(g.value(l));
    let grads = g.backward(l);
    let updates = g.take_stat_updates();
    drop(g);
    sgd.step(&mut model.store, &grads, lr);
    ok(bn_act::apply_stat_updates(&mut model.store, &updates));
    ok(pending.read())
}

#[derive(Clone, Copy, Debug, Default)]
pub struct StepStats {
    pub loss: f32,
    pub clean_correct: usize,
    pub clean_seen: usize,
    pub adv_correct: usize,
    pub adv_seen: usize,
}

/// A step's `StepStats` while its values may still be on the GPU: reading a GPU value waits
/// for every kernel queued before it, so a step that read its logits and loss where it made
/// them would leave the GPU idle while the host queued the rest of the step. The step keeps
/// them here and reads them once its whole work is queued (on the CPU they are read as they
/// are, at the same point).
#[derive(Default)]
pub(crate) struct PendingStats<'a> {
    loss: Option<Tensor>,
    clean: Option<(Tensor, &'a [u32])>,
    adv: Option<(Tensor, &'a [u32])>,
}

impl<'a> PendingStats<'a> {
    /// The clean (BN_c) logits of `labels`' images, for the correct count.
    pub(crate) fn clean(&mut self, logits: &Tensor, labels: &'a [u32]) {
        self.clean = Some((logits.clone(), labels));
    }

    /// The attacked (BN_a) logits of `labels`' images.
    pub(crate) fn adv(&mut self, logits: &Tensor, labels: &'a [u32]) {
        self.adv = Some((logits.clone(), labels));
    }

    pub(crate) fn loss(&mut self, loss: &Tensor) {
        self.loss = Some(loss.clone());
    }

    /// Downloads what is on the device (the first read waits for the queued work).
    pub(crate) fn read(self) -> Result<StepStats> {
        let count = |half: Option<(Tensor, &[u32])>| -> Result<(usize, usize)> {
            match half {
                Some((logits, labels)) => Ok((correct(&logits.to_host()?, labels), labels.len())),
                None => Ok((0, 0)),
            }
        };
        let (clean_correct, clean_seen) = count(self.clean)?;
        let (adv_correct, adv_seen) = count(self.adv)?;
        let loss = match self.loss {
            Some(l) => l.to_host()?.data()[0],
            None => 0.0,
        };
        Ok(StepStats {
            loss,
            clean_correct,
            clean_seen,
            adv_correct,
            adv_seen,
        })
    }
}

/// The AugMix views of the clean half (rlnet-spec §1.2): independently cropped and flipped,
/// then augmented; `second` is the JSD loss's second, independent AugMix draw of the same crop.
pub struct AugViews {
    pub first: Tensor,
    pub second: Option<Tensor>,
    /// The weight of the Jensen-Shannon consistency term (12 in AugMix); used with `second`.
    pub jsd_lambda: f32,
}

/// Where the random start of this step's attack comes from.
#[derive(Clone, Copy, Debug)]
pub struct StepKey {
    pub seed: u64,
    pub step: u64,
}

#[allow(clippy::too_many_arguments)]
pub fn teacher_step(
    model: &mut Model,
    sgd: &mut Sgd,
    x: &Tensor,
    aug: Option<&AugViews>,
    labels: &[u32],
    lr: f32,
    pgd: &PgdConfig,
    key: StepKey,
) -> StepStats {
    let n = labels.len();
    let h = n.div_ceil(2);
    let (x_clean, y_clean) = (x.slice_rows(0, h), &labels[..h]);
    let (x_rest, y_adv) = (x.slice_rows(h, n), &labels[h..]);
    // The attack reads BN_a's running statistics, which this step's clean passes (BN_c) do not
    // touch, so crafting it before the clean forward gives the reference's result.
    let x_adv = (!y_adv.is_empty()).then(|| {
        let spec = Attack {
            pgd,
            domain: Domain::Adv,
            loss: AttackLoss::CrossEntropySum,
            seed: key.seed,
        };
        attack(model, &x_rest, y_adv, &spec, key.step)
    });

    let mut g = Graph::new(&model.store, GradMode::All);
    let mut terms: Vec<Var> = Vec::new();
    let mut pending = PendingStats::default();

    let xv = g.input(x_clean, false);
    let out = model.forward(
        &mut g,
        xv,
        Pass {
            domain: Domain::Clean,
            train: true,
        },
    );
    // One upload of the clean half's labels for its clean and AugMix passes.
    let clean_labels = ok(Labels::on(g.device(), y_clean));
    terms.push(g.cross_entropy_of(out.logits, &clean_labels, false));
    // The logits come to the host only to count correct answers for the progress bar.
    pending.clean(g.value(out.logits), y_clean);

    let mut jsd = None;
    if let Some(views) = aug {
        let aug_pass = Pass {
            domain: Domain::Aug,
            train: true,
        };
        // Each view is its own forward pass (its own BN batch statistics), as the reference's
        // teacher does for its clean and AugMix views.
        let av = g.input(views.first.clone(), false);
        let z1 = model.forward(&mut g, av, aug_pass).logits;
        terms.push(g.cross_entropy_of(z1, &clean_labels, false));
        if let Some(second) = &views.second {
            let bv = g.input(second.clone(), false);
            let z2 = model.forward(&mut g, bv, aug_pass).logits;
            let js = g.jsd(out.logits, z1, z2);
            jsd = Some(g.scale(js, views.jsd_lambda));
        }
    }

    if let Some(x_adv) = x_adv {
        let av = g.input(x_adv, false);
        let out = model.forward(
            &mut g,
            av,
            Pass {
                domain: Domain::Adv,
                train: true,
            },
        );
        terms.push(g.cross_entropy(out.logits, y_adv, false));
        pending.adv(g.value(out.logits), y_adv);
    }

    let mut total = terms[0];
    for &t in &terms[1..] {
        total = g.add(total, t);
    }
    let mut loss = g.scale(total, 1.0 / terms.len() as f32);
    if let Some(js) = jsd {
        loss = g.add(loss, js);
    }
    pending.loss(g.value(loss));
    let grads = g.backward(loss);
    let updates = g.take_stat_updates();
    drop(g);
    sgd.step(&mut model.store, &grads, lr);
    ok(bn_act::apply_stat_updates(&mut model.store, &updates));
    ok(pending.read())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures come out as the step left them: argmax hits per half, seen counts, the loss.
    #[test]
    fn pending_stats_count_each_half_and_read_the_loss() {
        let logits = Tensor::from_vec(&[3, 2], vec![1.0, 0.0, 0.0, 2.0, 3.0, 1.0]).unwrap();
        let adv = Tensor::from_vec(&[2, 2], vec![0.0, 1.0, 0.0, 1.0]).unwrap();
        let (y_clean, y_adv) = ([0u32, 1, 1], [1u32, 0]);
        let mut p = PendingStats::default();
        p.clean(&logits, &y_clean);
        p.adv(&adv, &y_adv);
        p.loss(&Tensor::from_vec(&[1], vec![0.75]).unwrap());
        let s = p.read().unwrap();
        assert_eq!((s.clean_correct, s.clean_seen), (2, 3));
        assert_eq!((s.adv_correct, s.adv_seen), (1, 2));
        assert_eq!(s.loss, 0.75);
        let empty = PendingStats::default().read().unwrap();
        assert_eq!((empty.clean_seen, empty.adv_seen, empty.loss), (0, 0, 0.0));
    }
}
