//! The student loop's optimiser: SGD for stages 2 and 3, Adam over the weights and every α for
//! the SNL baseline (with SNL's L1 penalty on the α), and how each is checkpointed.

use super::distill_step::{
    distill_gradients, distill_step, Adversary, DistillBatch, DistillWeights, LossMode,
};
use super::snl::{alpha_tensors, SnlProgress};
use super::step::{StepKey, StepStats};
use super::student::{MaskPlan, StudentConfig};
use crate::autograd::EntryId;
use crate::checkpoint::Checkpoint;
use crate::device::ok;
use crate::error::{Error, Result};
use crate::nn::Model;
use crate::ops::bn_act;
use crate::optim::{Adam, Sgd};
use crate::robust::pgd::PgdConfig;
use crate::tensor::Tensor;
use std::path::Path;

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
    pub fn for_plan(cfg: &StudentConfig, model: &Model) -> Optim {
        match &cfg.masks {
            MaskPlan::Linearize(snl) => {
                let alphas: Vec<EntryId> = model.relu_layers.iter().map(|l| l.mask).collect();
                let mut ids = model.store.param_ids();
                ids.extend(&alphas);
                Optim::Adam {
                    adam: Adam::new(snl.adam.clone(), ids),
                    alphas,
                }
            }
            _ => Optim::Sgd(Sgd::new(cfg.sgd.clone(), &model.store)),
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

    /// The SGD to save with the model (Adam's state goes in `extra_tensors`).
    pub fn sgd(&self) -> Option<&Sgd> {
        match self {
            Optim::Sgd(s) => Some(s),
            Optim::Adam { .. } => None,
        }
    }

    /// Adam's moments and, while SNL still learns them, the real α, as extra checkpoint
    /// tensors; Adam's step counts go into `snl` (the checkpoint's JSON header).
    pub fn extra_tensors<'a>(
        &'a self,
        model: &'a Model,
        snl: Option<&mut SnlProgress>,
    ) -> Vec<(String, &'a Tensor)> {
        let Optim::Adam { adam, .. } = self else {
            return Vec::new();
        };
        if let Some(p) = snl {
            p.adam_steps = adam.step_counts(&model.store);
        }
        let mut out = adam.state_tensors(&model.store);
        if model.soft_masks {
            out.extend(alpha_tensors(model));
        }
        out
    }

    /// Restores the optimiser's state saved in `c` (`snl`: the run's saved progress).
    pub fn restore(
        &mut self,
        c: &Checkpoint,
        model: &Model,
        snl: Option<&SnlProgress>,
        ckpt: &Path,
    ) -> Result<()> {
        match (self, snl) {
            (Optim::Sgd(sgd), _) => c.restore_optimizer(model, sgd),
            (Optim::Adam { adam, .. }, Some(p)) => {
                adam.restore(&model.store, &p.adam_steps, |n| c.tensor(n).cloned())
            }
            (Optim::Adam { .. }, None) => Err(Error::Checkpoint {
                path: ckpt.to_path_buf(),
                msg: "an SNL checkpoint without its progress".into(),
            }),
        }
    }
}
