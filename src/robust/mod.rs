//! Robustness: the PGD adversary (spec §3).

pub mod pgd;
