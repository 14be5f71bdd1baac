//! The step learning-rate schedule (PyTorch MultiStepLR).

use serde::{Deserialize, Serialize};

/// lr(epoch) = base · factor^(number of milestones ≤ epoch), epochs counted from 0
/// (PyTorch MultiStepLR stepped once per epoch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSchedule {
    pub base_lr: f32,
    pub milestones: Vec<usize>,
    pub factor: f32,
}

impl StepSchedule {
    pub fn lr(&self, epoch: usize) -> f32 {
        let k = self.milestones.iter().filter(|&&m| m <= epoch).count();
        self.base_lr * self.factor.powi(k as i32)
    }
}
