//! Evaluation: clean accuracy and white-box PGD accuracy under a chosen BN set (spec §7), the
//! strong attacks (`attacks`), the gradient-masking checks (`masking`) and the corruptions.

pub mod attacks;
pub mod corrupt;
pub mod masking;
pub mod robustness;

use crate::data::batch::make_batch;
use crate::data::ImageSet;
use crate::nn::{Domain, Model};
use crate::robust::objective;
use crate::robust::pgd::{attack, Attack, AttackLoss, PgdConfig};
use crate::robust::victim::Victim;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// The predicted class of a row of logits.
pub use crate::robust::objective::argmax;

/// Logits (on the host) of raw [0,1] images in eval mode under `domain`'s BN set.
pub fn logits(model: &Model, x: &Tensor, domain: Domain) -> Tensor {
    let z = Victim::new(model, domain).logits(x);
    Tensor::from_vec(&[x.dim(0), model.config.num_classes], z).expect("one row per image")
}

/// Number of rows whose arg-max equals the label.
pub fn correct(logits: &Tensor, labels: &[u32]) -> usize {
    let k = logits.dim(1);
    objective::correct(logits.data(), k, labels)
        .iter()
        .filter(|&&c| c)
        .count()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// "clean" (BN_c) or "adv" (BN_a).
    pub bn: String,
    pub images: usize,
    pub clean_acc: f32,
    /// PGD accuracy, attacking the evaluated model with the same BN set: the images
    /// classified correctly both clean and attacked.
    pub pgd_acc: Option<f32>,
    pub pgd_steps: Option<usize>,
    /// The strong evaluation's accuracies (`--attack`), when run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attacks: Vec<attacks::AttackAccuracy>,
    /// PGD accuracy against ε (`--eps-sweep` or the masking checks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eps_sweep: Vec<masking::EpsPoint>,
    /// The gradient-masking checks and their verdict, when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masking: Option<masking::MaskingReport>,
}

pub fn bn_name(d: Domain) -> &'static str {
    match d {
        Domain::Clean => "clean",
        Domain::Aug => "aug",
        Domain::Adv => "adv",
    }
}

/// How to evaluate: batch size, the attack (None: clean only), its seed, and whether to keep
/// the clean logits.
pub struct EvalOptions<'a> {
    pub batch: usize,
    pub pgd: Option<&'a PgdConfig>,
    pub seed: u64,
    pub keep_logits: bool,
}

/// Clean (and, with a PGD config, adversarial) accuracy on `set` under `domain`'s BN set.
/// Returns the accuracy and, when asked, the clean logits [n, classes]. `progress` hears how
/// many images each batch finished.
pub fn evaluate(
    model: &Model,
    set: &ImageSet,
    domain: Domain,
    opts: &EvalOptions<'_>,
    mut progress: impl FnMut(usize),
) -> (Accuracy, Option<Vec<f32>>) {
    let (batch, pgd) = (opts.batch, opts.pgd);
    let (mut clean, mut robust) = (0, 0);
    let mut all_logits = opts.keep_logits.then(Vec::new);
    let indices: Vec<usize> = (0..set.len()).collect();
    for (bi, chunk) in indices.chunks(batch.max(1)).enumerate() {
        let (x, y) = make_batch(set, chunk, None, 0);
        // One upload serves both the clean pass and the attack.
        let x = crate::device::ok(x.into_device(model.store.device()));
        let z = logits(model, &x, domain);
        clean += correct(&z, &y);
        if let Some(all) = all_logits.as_mut() {
            all.extend_from_slice(z.data());
        }
        if let Some(cfg) = pgd {
            let spec = Attack {
                pgd: cfg,
                domain,
                loss: AttackLoss::CrossEntropySum,
                seed: opts.seed,
            };
            let adv = attack(model, &x, &y, &spec, bi as u64);
            // Robust: correct on the clean image and on the attacked one (the attack's ball
            // holds the clean image too), as AutoAttack and RobustBench count.
            let k = z.dim(1);
            let za = logits(model, &adv, domain);
            let attacked = objective::correct(za.data(), k, &y);
            robust += objective::correct(z.data(), k, &y)
                .iter()
                .zip(attacked)
                .filter(|(&c, a)| c && *a)
                .count();
        }
        progress(chunk.len());
    }
    let n = set.len().max(1) as f32;
    let acc = Accuracy {
        bn: bn_name(domain).into(),
        images: set.len(),
        clean_acc: clean as f32 / n,
        pgd_acc: pgd.map(|_| robust as f32 / n),
        pgd_steps: pgd.map(|c| c.steps),
        attacks: Vec::new(),
        eps_sweep: Vec::new(),
        masking: None,
    };
    (acc, all_logits)
}
