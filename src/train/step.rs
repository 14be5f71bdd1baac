//! One stage-1 optimisation step (spec §4): the first half of the batch is clean (BN_c), its
//! AugMix view (when on) goes through BN_c too (BN_r with triple BN), the second half is
//! PGD-attacked (BN_a, attack in eval mode); the loss is the mean of the per-view
//! cross-entropies (plus λ·JS with the optional JSD consistency loss), then one SGD step and
//! the BN running-statistics updates.

use crate::autograd::{GradMode, Graph, Var};
use crate::device::ok;
use crate::eval::correct;
use crate::nn::{Domain, Model, Pass};
use crate::ops::bn_act;
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
    let loss = g.value(l).item();
    let clean_correct = correct(&ok(g.value(out.logits).to_host()), labels);
    let grads = g.backward(l);
    let updates = g.take_stat_updates();
    drop(g);
    sgd.step(&mut model.store, &grads, lr);
    ok(bn_act::apply_stat_updates(&mut model.store, &updates));
    StepStats {
        loss,
        clean_correct,
        clean_seen: labels.len(),
        ..StepStats::default()
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct StepStats {
    pub loss: f32,
    pub clean_correct: usize,
    pub clean_seen: usize,
    pub adv_correct: usize,
    pub adv_seen: usize,
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
    let mut stats = StepStats::default();

    let xv = g.input(x_clean, false);
    let out = model.forward(
        &mut g,
        xv,
        Pass {
            domain: Domain::Clean,
            train: true,
        },
    );
    terms.push(g.cross_entropy(out.logits, y_clean, false));
    // The logits come to the host only to count correct answers for the progress bar.
    stats.clean_correct = correct(&ok(g.value(out.logits).to_host()), y_clean);
    stats.clean_seen = h;

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
        terms.push(g.cross_entropy(z1, y_clean, false));
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
        stats.adv_correct = correct(&ok(g.value(out.logits).to_host()), y_adv);
        stats.adv_seen = y_adv.len();
    }

    let mut total = terms[0];
    for &t in &terms[1..] {
        total = g.add(total, t);
    }
    let mut loss = g.scale(total, 1.0 / terms.len() as f32);
    if let Some(js) = jsd {
        loss = g.add(loss, js);
    }
    stats.loss = g.value(loss).item();
    let grads = g.backward(loss);
    let updates = g.take_stat_updates();
    drop(g);
    sgd.step(&mut model.store, &grads, lr);
    ok(bn_act::apply_stat_updates(&mut model.store, &updates));
    stats
}
