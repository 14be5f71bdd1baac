//! The student loop's optimiser: SGD for stages 2 and 3, Adam over the weights and every α for
//! the SNL baseline (with SNL's L1 penalty on the α), and how each is checkpointed.

use super::distill_step::{
    distill_gradients, distill_step, Adversary, DistillBatch, DistillWeights, LossMode,
};
use super::step::{StepKey, StepStats};
use crate::autograd::EntryId;
use crate::checkpoint::Checkpoint;
use crate::device::ok;
use crate::error::{Error, Result};
use crate::nn::Model;
use crate::ops::bn_act;
use crate::optim::{Adam, AdamConfig, Sgd, SgdConfig};
use crate::robust::pgd::PgdConfig;
use crate::tensor::Tensor;

/// `alphas`: the mask entries, which SNL's Adam trains and penalises.
pub(super) enum Optim {
    Sgd(Sgd),
    Adam { adam: Adam, alphas: Vec<EntryId> },
}

/// What one step reads besides the models and the batch.
pub(super) struct StepSettings<'a> {
    pub mode: LossMode,
    pub weights: &'a DistillWeights,
    pub pgd: &'a PgdConfig,
    pub lr: f32,
    pub key: StepKey,
    /// SNL's λ (unused by SGD).
    pub lambda: f32,
}

impl Optim {
    /// SGD on the weights, or with `alpha_adam` Adam on the weights and the mask entries.
    pub fn new(sgd: &SgdConfig, alpha_adam: Option<&AdamConfig>, model: &Model) -> Optim {
        match alpha_adam {
            Some(cfg) => {
                let alphas: Vec<EntryId> = model.relu_layers.iter().map(|l| l.mask).collect();
                let mut ids = model.store.param_ids();
                ids.extend(&alphas);
                Optim::Adam {
                    adam: Adam::new(cfg.clone(), ids),
                    alphas,
                }
            }
            None => Optim::Sgd(Sgd::new(sgd.clone(), &model.store)),
        }
    }

    /// One optimisation step of the student; `scores` (stage 2) gets the mask statistic.
    pub fn step(
        &mut self,
        student: &mut Model,
        teacher: &Model,
        batch: &DistillBatch,
        s: &StepSettings,
        scores: Option<&mut [Tensor]>,
    ) -> Result<StepStats> {
        match self {
            Optim::Sgd(sgd) => distill_step(
                student, teacher, sgd, batch, s.mode, s.weights, s.pgd, s.lr, s.key, scores,
            ),
            Optim::Adam { adam, alphas } => {
                let adversary = Adversary::Pgd {
                    config: s.pgd,
                    key: s.key,
                };
                let out = distill_gradients(
                    student, teacher, batch, s.mode, s.weights, &adversary, scores,
                )?;
                // SNL's λ·Σ|α| enters as its subgradient λ·sign(α) on the α.
                adam.step(
                    &mut student.store,
                    &out.grads,
                    s.lr,
                    Some((alphas.as_slice(), s.lambda)),
                );
                ok(bn_act::apply_stat_updates(&mut student.store, &out.updates));
                Ok(out.stats)
            }
        }
    }

    /// The SGD to save with the model (Adam's state goes in `state_tensors`).
    pub fn sgd(&self) -> Option<&Sgd> {
        match self {
            Optim::Sgd(s) => Some(s),
            Optim::Adam { .. } => None,
        }
    }

    /// Adam's moments, as extra checkpoint tensors.
    pub fn state_tensors<'a>(&'a self, model: &'a Model) -> Vec<(String, &'a Tensor)> {
        match self {
            Optim::Adam { adam, .. } => adam.state_tensors(&model.store),
            Optim::Sgd(_) => Vec::new(),
        }
    }

    /// Adam's per-entry step counts (they go in the checkpoint's JSON header).
    pub fn step_counts(&self, model: &Model) -> Option<Vec<(String, u64)>> {
        match self {
            Optim::Adam { adam, .. } => Some(adam.step_counts(&model.store)),
            Optim::Sgd(_) => None,
        }
    }

    /// Restores the optimiser's state saved in `c` (`adam_steps`: Adam's saved step counts).
    pub fn restore(
        &mut self,
        c: &Checkpoint,
        model: &Model,
        adam_steps: Option<&[(String, u64)]>,
    ) -> Result<()> {
        match (self, adam_steps) {
            (Optim::Sgd(sgd), _) => c.restore_optimizer(model, sgd),
            (Optim::Adam { adam, .. }, Some(steps)) => {
                adam.restore(&model.store, steps, |n| c.tensor(n).cloned())
            }
            (Optim::Adam { .. }, None) => Err(Error::Checkpoint {
                path: c.path.clone(),
                msg: "an SNL checkpoint without its progress".into(),
            }),
        }
    }
}
