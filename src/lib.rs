//! rlnet: robust linearized networks (RLNet, Sarkar, Kundu & Beerel 2024) for private inference.
//!
//! Layers, top to bottom (a layer only uses the ones below it):
//! `cli` → `train`, `eval`, `search` → `nn` → `autograd` → `ops` → `device`/`tensor`,
//! with `data`, `robust`, `checkpoint` and `report` beside the column.

pub mod augmix;
pub mod autograd;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod corrupt;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod geom;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod report;
pub mod rng;
pub mod robust;
pub mod search;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
