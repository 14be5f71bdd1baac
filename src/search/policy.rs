//! What a student stage does with its ReLU masks, as one interface over the three plans: the
//! stage-2 search re-selects the exact per-layer top-k of the teacher-student discrepancy after
//! every epoch, stage 3 keeps the mask it was given, and SNL learns a real α per site until
//! few enough remain (`snl`). The training driver asks the policy, never the plan; the three
//! policies are in `policies`.

use super::snl::SnlProgress;
use crate::checkpoint::Checkpoint;
use crate::device::Device;
use crate::error::Result;
use crate::nn::{Model, ModelConfig};
use crate::tensor::Tensor;
use std::path::Path;

/// A mask plan at work in one run: its state lives here and goes into the run's checkpoints.
pub trait MaskPolicy {
    /// The student a new run starts from, on the host (`model` and `seed`: the run's;
    /// `teacher`: the stage-1 checkpoint).
    fn starting_student(&self, model: &ModelConfig, seed: u64, teacher: &Path) -> Result<Model>;

    /// Checks and prepares a new run's starting student (already on its device).
    fn start(&mut self, model: &mut Model) -> Result<()>;

    /// Takes up a resumed run: `model` is the checkpoint's, still on the host; `progress` the
    /// SNL progress it saved; `mid_epoch` whether it was written inside an epoch.
    fn resume(&mut self, c: &Checkpoint, resumed: Resumed<'_>) -> Result<()>;

    /// The stage-2 statistic the step accumulates into, one [C, H, W] tensor per ReLU layer.
    fn scores(&mut self) -> Option<&mut [Tensor]> {
        None
    }

    /// SNL's λ of the coming epoch (its L1 penalty on the α), None for a binary mask.
    fn penalty(&self) -> Option<f32> {
        None
    }

    /// The epoch's end: the mask update, if the plan has one.
    fn end_epoch(&mut self, model: &mut Model, epoch: usize, last_epoch: bool) -> Result<()>;

    /// The ReLUs to log for the epoch just ended.
    fn kept_relus(&self, model: &Model) -> usize {
        model.kept_relus()
    }

    /// Whether the model is at its budget (only then is it a candidate for the best checkpoint).
    fn at_budget(&self) -> bool {
        true
    }

    /// Whether the plan ended the training before its epochs ran out (SNL once binarised).
    fn ended(&self) -> bool {
        false
    }

    /// The policy's tensors for the run's checkpoint (`mid_epoch`: written inside an epoch).
    fn tensors<'a>(&'a self, model: &'a Model, mid_epoch: bool) -> Vec<(String, &'a Tensor)>;

    /// SNL's progress, saved in the checkpoint's header.
    fn progress(&self) -> Option<&SnlProgress> {
        None
    }

    /// The same, for recording the optimiser's step counts before a checkpoint.
    fn progress_mut(&mut self) -> Option<&mut SnlProgress> {
        None
    }
}

/// What a resumed run hands its policy.
pub struct Resumed<'a> {
    pub path: &'a Path,
    pub model: &'a mut Model,
    pub progress: Option<SnlProgress>,
    pub mid_epoch: bool,
    pub device: &'a Device,
}
