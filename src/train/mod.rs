//! The RLNet training stages (spec §4-§6). Stage 1, the robust all-ReLU teacher, lives in
//! `teacher`; its per-step work in `step`.

pub mod step;
pub mod teacher;
