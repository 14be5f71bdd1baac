//! The stage checkpoints the later stages start from, each checked for what it must be: a
//! stage-1 teacher, or a stage-2 (search) or binarised SNL student.

use super::load;
use crate::data::source::DatasetSpec;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{Model, ModelConfig};
use std::path::Path;

fn missing(path: &Path, what: &str, how: &str) -> Error {
    Error::Config(format!(
        "{what} checkpoint {}: no such file ({how})",
        path.display()
    ))
}

/// A stage-1 teacher checkpoint, on `device`.
pub fn load_teacher(path: &Path, device: &Device) -> Result<Model> {
    if !path.is_file() {
        return Err(missing(path, "teacher", "train one with `rlnet teacher`"));
    }
    let c = load(path)?;
    if c.meta.stage != "teacher" {
        return Err(Error::Config(format!(
            "{} is a '{}' checkpoint; --teacher expects a stage-1 teacher checkpoint",
            path.display(),
            c.meta.stage
        )));
    }
    let mut m = c.model()?;
    m.to_device(device)?;
    Ok(m)
}

/// A teacher checkpoint's model config and the dataset settings it was trained with (absent
/// from checkpoints that do not record them).
pub fn teacher_settings(path: &Path) -> Result<(ModelConfig, Option<DatasetSpec>)> {
    if !path.is_file() {
        return Err(missing(path, "teacher", "train one with `rlnet teacher`"));
    }
    let c = load(path)?;
    let data = c
        .meta
        .state
        .get("config")
        .and_then(|v| v.get("data"))
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    Ok((c.meta.model, data))
}

/// The student of a stage-2 (`search`) or SNL (`snl`) checkpoint: its weights and mask.
pub fn load_search_student(path: &Path) -> Result<Model> {
    if !path.is_file() {
        return Err(missing(
            path,
            "student",
            "run `rlnet search` or `rlnet snl` first",
        ));
    }
    let c = load(path)?;
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
