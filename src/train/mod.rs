//! The RLNet training stages (spec §4-§6). Stage 1, the robust all-ReLU teacher, lives in
//! `teacher` (its per-step work in `step`); stages 2 (mask search, `search`) and 3
//! (distillation with the frozen mask, `distill`) share the run loop in `student`, as does the
//! SNL baseline's linearisation (`snl`). The student's step (every loss mode, and the stage-2
//! mask statistic) is `distill_step`.

pub mod distill;
pub mod distill_step;
pub mod search;
pub mod snl;
pub mod step;
pub mod student;
mod student_optim;
pub mod tally;
pub mod teacher;
