//! rlnet: robust linearized networks (RLNet, Sarkar, Kundu & Beerel 2024) for private inference.
//!
//! Layers, top to bottom (a layer only uses the ones below it; tests/layering.rs checks that no
//! two modules import each other, directly or around a circle, nor two files of one folder):
//!
//! - `cli` (commands: flags, printing) → `recipe` (presets and stage configs, the pipeline
//!   and its final evaluation)
//! - `train` (one run loop for the three stages and the baselines), `bench`, `report`,
//!   `export` (the inference graph as ONNX, read from the tape), `pytorch` (.pth files in and
//!   out, the reference repositories' layouts)
//! - `eval` (clean, PGD and corruption accuracy; the strong attacks as accuracies and the
//!   gradient-masking checks), `search` (budgets, masks, the mask policies of the student
//!   stages), `robust` (the adversaries: PGD, APGD, Square, and their objectives)
//! - `nn` (ResNet18, WRN-22-8), `checkpoint` (and the stage checkpoints later stages load)
//! - `ops` (one folder per op family: CPU reference, CUDA launchers, device dispatch, graph
//!   node), `optim` (SGD, Adam, with their launchers)
//! - `autograd` (the tape and the parameter store, knowing no op)
//! - `tensor` → `device` (the CPU or the CUDA device: GPU or emulator; all cudarc calls)
//!
//! Beside the column: `data` (datasets, CPU batches), `augmix`, `batches` (batches assembled on
//! the GPU), `corrupt` (the 19 corruptions), `files`, `geom`, `rng`, `error`.

pub mod augmix;
pub mod autograd;
pub mod batches;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod corrupt;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod export;
pub mod files;
pub mod geom;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod pytorch;
pub mod recipe;
pub mod report;
pub mod rng;
pub mod robust;
pub mod search;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
