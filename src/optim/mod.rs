//! Optimisers with PyTorch semantics: SGD with momentum (the teacher and the distilled
//! student), Adam (the SNL baseline's mask search), and the step learning-rate schedule.

mod adam;
pub mod cuda;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig, AdamStep};
pub use schedule::StepSchedule;
pub use sgd::{Sgd, SgdConfig};
