//! Robustness: the PGD adversary of training and evaluation (spec §3), and the stronger
//! evaluation attacks (APGD-CE, APGD-T, Square) with the objectives they maximise.

pub mod apgd;
pub mod objective;
pub mod pgd;
pub mod square;
pub mod victim;
