//! The RLNet training stages (spec §4-§6) on one run loop (`driver`: resume, steps, progress,
//! checkpoints and stops, validation cadence, report). Stage 1, the robust all-ReLU teacher, is
//! `teacher` (its per-step work in `step`); the student stages, 2 (mask search), 3
//! (distillation with the frozen mask) and SNL's linearisation, are `student`, which differ
//! only in their mask policy (`search::policy`). The student's step (its loss terms, and the
//! stage-2 mask statistic) is `distill_step`, its optimiser `student_optim`.

pub mod distill_step;
pub mod driver;
pub mod step;
pub mod student;
mod student_optim;
pub mod tally;
pub mod teacher;

pub use driver::{validate_domains, RunOptions};
