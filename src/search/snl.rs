//! The SNL baseline's linearisation (Selective Network Linearization, Cho et al. 2022;
//! baselines.md §2): every ReLU site of a copy of the all-ReLU teacher becomes
//! y = α·ReLU(z) + (1 − α)·z with a learnable α per element (α = 1 to start: the teacher
//! itself), trained with Adam on CE + KD(T) + λ·Σ|α| while λ grows by `growth` after every
//! epoch (from epoch `patience_from` on) whose count of α > `threshold` is not a new minimum.
//! The run stops at the first epoch whose count is at most the budget; then α is binarised.
//!
//! **Exact budget.** SNL binarises at the threshold, so its count lands a little under the
//! budget (14,621 for 15,000 in its logs). rlnet instead keeps the `budget` sites with the
//! largest α over the whole network (every site above the threshold plus the largest ones
//! below it), so SNL, SENet and RLNet compare at exactly the same ReLU count. A run that hits
//! its epoch cap first is binarised the same way and says that the budget was not reached.
//!
//! **Counting convention.** rlnet's models have a ReLU site after the stem (557,056 for
//! ResNet18 on CIFAR); SNL's code has none there (491,520). Here the stem site is linearised
//! like every other, so budgets count the same sites for all three methods.
//!
//! The training driver runs the loop; this file holds SNL's own settings, state and epoch-end
//! rule (its mask policy is in `policies`).

use super::{set_model_masks, top_k_indices};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::nn::Model;
use crate::optim::AdamConfig;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Prefix of the real-valued α inside a checkpoint (its mask entries hold only 0/1).
const ALPHA_PREFIX: &str = "snl.alpha.";

/// SNL's settings (baselines.md §2.3; the defaults are the paper's scripts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnlConfig {
    /// ReLUs the binarised network keeps, exactly.
    pub budget: usize,
    /// λ at the start (the scripts' `alpha`, 1e-5).
    pub lambda: f32,
    /// λ's factor after an epoch without a new minimum count (1.1).
    pub growth: f32,
    /// λ never grows before this epoch (from 0; 5 in the code).
    pub patience_from: usize,
    /// A site counts as a ReLU while α > threshold (0.01).
    pub threshold: f32,
    pub adam: AdamConfig,
}

impl SnlConfig {
    pub fn new(budget: usize) -> SnlConfig {
        SnlConfig {
            budget,
            lambda: 1e-5,
            growth: 1.1,
            patience_from: 5,
            threshold: 0.01,
            adam: AdamConfig::default(),
        }
    }

    pub fn validate(&self, total_relus: usize) -> Result<()> {
        if self.budget == 0 || self.budget > total_relus {
            return Err(Error::Config(format!(
                "SNL budget {}: expected 1 to the model's {total_relus} ReLUs",
                self.budget
            )));
        }
        for (flag, v, ok, want) in [
            ("--lambda", self.lambda, self.lambda > 0.0, "> 0"),
            ("--lambda-growth", self.growth, self.growth >= 1.0, ">= 1"),
            ("--threshold", self.threshold, self.threshold >= 0.0, ">= 0"),
        ] {
            if !(ok && v.is_finite()) {
                return Err(Error::Config(format!(
                    "{flag} {v}: expected a finite number ({want})"
                )));
            }
        }
        Ok(())
    }
}

/// Where the linearisation stands; saved in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnlProgress {
    /// λ of the coming epoch.
    pub lambda: f32,
    /// The smallest count (α > threshold) after any epoch so far.
    pub min_count: Option<usize>,
    /// The count after the last epoch.
    pub count: usize,
    /// Whether that count reached the budget (the run's end).
    pub reached: bool,
    /// The epoch (from 0) after which α was binarised; None while still learning.
    pub binarised_after: Option<usize>,
    /// Adam's per-entry step counts (its moments are checkpoint tensors).
    pub adam_steps: Vec<(String, u64)>,
}

impl SnlProgress {
    pub fn start(cfg: &SnlConfig, total_relus: usize) -> SnlProgress {
        SnlProgress {
            lambda: cfg.lambda,
            min_count: None,
            count: total_relus,
            reached: false,
            binarised_after: None,
            adam_steps: Vec::new(),
        }
    }

    /// SNL's epoch-end rule for the count after `epoch`: a new minimum is recorded, otherwise
    /// (from `patience_from` on) λ grows; a count within the budget ends the learning.
    pub fn end_epoch(&mut self, cfg: &SnlConfig, epoch: usize, count: usize) {
        self.count = count;
        if self.min_count.is_none_or(|m| count < m) {
            self.min_count = Some(count);
        } else if epoch >= cfg.patience_from {
            self.lambda *= cfg.growth;
        }
        self.reached = count <= cfg.budget;
    }
}

/// Sites whose α exceeds `threshold`, over the whole model (α on any device).
pub fn count_alive(model: &Model, threshold: f32) -> Result<usize> {
    let mut n = 0;
    for l in &model.relu_layers {
        let a = model.store.get(l.mask).to_host()?;
        n += a.data().iter().filter(|&&v| v > threshold).count();
    }
    Ok(n)
}

/// Every layer's α, named for a checkpoint.
pub fn alpha_tensors(model: &Model) -> Vec<(String, &Tensor)> {
    model
        .relu_layers
        .iter()
        .map(|l| (format!("{ALPHA_PREFIX}{}", l.name), model.store.get(l.mask)))
        .collect()
}

/// Puts the α saved in checkpoint `c` (read from `path`) back into the mask entries and
/// returns the model to soft mode.
pub fn restore_alphas(c: &Checkpoint, model: &mut Model, path: &Path) -> Result<()> {
    for l in &model.relu_layers {
        let name = format!("{ALPHA_PREFIX}{}", l.name);
        let a = c.tensor(&name).ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: format!("SNL checkpoint without {name}"),
        })?;
        model.store.set(l.mask, a.clone())?;
    }
    model.soft_masks = true;
    Ok(())
}

/// Replaces every α by a 0/1 mask keeping exactly `budget` sites: those with the largest α
/// over the whole network (ties to the earlier layer and element, NaN last), and leaves soft
/// mode. Returns the per-layer kept counts.
pub fn binarise_top(model: &mut Model, budget: usize) -> Result<Vec<usize>> {
    let mut all: Vec<f32> = Vec::with_capacity(model.total_relus());
    for l in &model.relu_layers {
        all.extend_from_slice(model.store.get(l.mask).to_host()?.data());
    }
    let mut flat = vec![0u8; all.len()];
    for i in top_k_indices(&all, budget)? {
        flat[i] = 1;
    }
    let mut masks = Vec::with_capacity(model.relu_layers.len());
    let mut start = 0;
    for l in &model.relu_layers {
        masks.push(flat[start..start + l.count()].to_vec());
        start += l.count();
    }
    let kept = masks
        .iter()
        .map(|m| m.iter().map(|&v| v as usize).sum())
        .collect();
    model.soft_masks = false;
    set_model_masks(model, &masks)?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_grows_only_when_the_count_stalls_after_patience() {
        let cfg = SnlConfig {
            patience_from: 2,
            ..SnlConfig::new(10)
        };
        let mut p = SnlProgress::start(&cfg, 100);
        p.end_epoch(&cfg, 0, 90); // new minimum
        p.end_epoch(&cfg, 1, 95); // stalled, but before patience
        assert_eq!(p.lambda, 1e-5);
        p.end_epoch(&cfg, 2, 95); // stalled: grows
        assert!((p.lambda - 1.1e-5).abs() < 1e-12);
        p.end_epoch(&cfg, 3, 80); // new minimum: unchanged
        assert!((p.lambda - 1.1e-5).abs() < 1e-12);
        assert_eq!(p.min_count, Some(80));
        assert!(!p.reached);
        p.end_epoch(&cfg, 4, 10);
        assert!(p.reached);
    }

    #[test]
    fn settings_are_checked() {
        assert!(SnlConfig::new(0).validate(100).is_err());
        assert!(SnlConfig::new(101).validate(100).is_err());
        assert!(SnlConfig::new(100).validate(100).is_ok());
        let bad = SnlConfig {
            growth: 0.5,
            ..SnlConfig::new(5)
        };
        assert!(bad
            .validate(100)
            .unwrap_err()
            .to_string()
            .contains("growth"));
    }
}
