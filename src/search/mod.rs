//! The ReLU masks of the student stages (research spec §5, baselines.md §2). `budget` turns a
//! reference budget list or an arbitrary ReLU total into exact per-layer counts; `sensitivity`
//! derives per-layer weights for any budget and model from the teacher's pruning sensitivity
//! (SENet); `mask` turns per-layer scores into exact top-k masks and sets them on a model;
//! `plan` says what a stage does with its masks, `policy` is the interface that does it during
//! training, `policies` the three (stage-2 top-k, stage-3 frozen, SNL's learnable α, whose
//! rules are `snl`).

pub mod budget;
pub mod mask;
pub mod plan;
mod policies;
pub mod policy;
pub mod sensitivity;
pub mod snl;

pub use budget::{allocate, parse_budget, reference_layer_sizes, uniform_weights, Preset, PRESETS};
pub use mask::{apply_top_k, select_masks, set_model_masks, top_k_indices, top_k_mask};
pub use plan::{layer_counts, layer_sizes, student_config, Fractions, MaskPlan};
pub use policy::MaskPolicy;
