//! Recipes: each stage's config built from a preset and the settings given, by one function
//! the commands and the pipeline both call, so a pipeline stage runs exactly as its own command
//! would. The settings are clap argument groups (`flags`): a command is its recipe plus where
//! to write and how to show progress, and the pipeline fills the same structs in code.
//! `teacher` is stage 1's recipe, `student` those of the search, the distillation and SNL,
//! `pipeline` the whole method in one run folder, `evaluation` its final evaluation.

pub mod evaluation;
pub mod flags;
pub mod pipeline;
pub mod student;
pub mod teacher;

pub use flags::{AttackArgs, DataArgs, ModelArgs, Preset, TrainingArgs};
