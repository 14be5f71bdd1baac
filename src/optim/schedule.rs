//! Learning-rate schedules stepped once per epoch: PyTorch's MultiStepLR, or its
//! CosineAnnealingLR (the SNL baseline's fine-tune).

use serde::{Deserialize, Serialize};

/// lr(epoch) = base · factor^(number of milestones ≤ epoch), epochs counted from 0
/// (PyTorch MultiStepLR stepped once per epoch); with `cosine_epochs = Some(T)` instead
/// lr(epoch) = base · (1 + cos(π·epoch/T)) / 2 (CosineAnnealingLR, η_min = 0, T_max = T).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSchedule {
    pub base_lr: f32,
    pub milestones: Vec<usize>,
    pub factor: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosine_epochs: Option<usize>,
}

impl StepSchedule {
    /// The multi-step schedule.
    pub fn steps(base_lr: f32, milestones: Vec<usize>, factor: f32) -> StepSchedule {
        StepSchedule {
            base_lr,
            milestones,
            factor,
            cosine_epochs: None,
        }
    }

    pub fn lr(&self, epoch: usize) -> f32 {
        if let Some(t) = self.cosine_epochs {
            let phase = std::f64::consts::PI * epoch as f64 / t.max(1) as f64;
            return (self.base_lr as f64 * (1.0 + phase.cos()) / 2.0) as f32;
        }
        let k = self.milestones.iter().filter(|&&m| m <= epoch).count();
        self.base_lr * self.factor.powi(k as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistep_and_cosine() {
        let s = StepSchedule::steps(0.1, vec![2, 4], 0.1);
        assert_eq!(s.lr(1), 0.1);
        assert!((s.lr(2) - 0.01).abs() < 1e-9);
        assert!((s.lr(5) - 0.001).abs() < 1e-9);
        let c = StepSchedule {
            cosine_epochs: Some(4),
            ..StepSchedule::steps(1.0, vec![1], 0.1)
        };
        let got: Vec<f32> = (0..5).map(|e| c.lr(e)).collect();
        let want = [1.0, 0.853_553_4, 0.5, 0.146_446_6, 0.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }
}
