//! Stage 2, the ReLU mask search (research spec §5): the budget machinery the search loop
//! builds on. `budget` turns a reference budget list or an arbitrary ReLU total into exact
//! per-layer counts; `sensitivity` derives per-layer weights for any budget and model from
//! the teacher's pruning sensitivity (SENet); `mask` turns per-layer scores into exact top-k
//! masks and sets them on a model.

pub mod budget;
pub mod mask;
pub mod sensitivity;

pub use budget::{allocate, parse_budget, reference_layer_sizes, uniform_weights, Preset, PRESETS};
pub use mask::{apply_top_k, select_masks, set_model_masks, top_k_indices, top_k_mask};
