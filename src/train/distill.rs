//! Stage 3: three-way robust distillation with the frozen stage-2 mask (spec §6). The student
//! starts from the stage-2 checkpoint's weights and mask; `student` runs the loop. The same
//! stage fine-tunes the SNL baseline's binarised network (from an `snl` checkpoint).

use super::student::{self, MaskPlan, StudentConfig, StudentReport};
use super::teacher::RunOptions;
use crate::checkpoint;
use crate::error::{Error, Result};
use crate::nn::Model;
use std::path::Path;

/// The student of a stage-2 (`search`) or SNL (`snl`) checkpoint: its weights and mask.
pub fn load_search_student(path: &Path) -> Result<Model> {
    if !path.is_file() {
        return Err(Error::Config(format!(
            "student checkpoint {}: no such file (run `rlnet search` or `rlnet snl` first)",
            path.display()
        )));
    }
    let c = checkpoint::load(path)?;
    if c.meta.stage != "search" && c.meta.stage != "snl" {
        return Err(Error::Config(format!(
            "{} is a '{}' checkpoint; --student expects a stage-2 search or an snl checkpoint",
            path.display(),
            c.meta.stage
        )));
    }
    // An SNL run's checkpoint holds a usable mask only once its α are binarised.
    let binarised = c
        .meta
        .state
        .pointer("/progress/snl/binarised_after")
        .is_some_and(|v| !v.is_null());
    if c.meta.stage == "snl" && !binarised {
        return Err(Error::Config(format!(
            "{} is an SNL run that has not binarised its α yet; use its snl_best.safetensors \
             once the run has finished",
            path.display()
        )));
    }
    c.model()
}

/// Runs (or resumes) a distillation configured by `cfg` (whose `masks` is a
/// [`MaskPlan::Frozen`]).
pub fn run(cfg: &StudentConfig, opts: &RunOptions) -> Result<Option<StudentReport>> {
    let MaskPlan::Frozen { from } = &cfg.masks else {
        return Err(Error::Config(
            "distill::run needs a frozen mask plan".into(),
        ));
    };
    student::run(cfg, opts, |_| load_search_student(from))
}
