//! PyTorch checkpoints in and out: `.pth` files read without running any of their code
//! (`archive`: the zip and legacy containers; `storage`: the storages the pickle refers to;
//! `tensors`: the state dict, with only the globals a state dict needs), written as `torch.save` writes them (`writer`), and the reference
//! repositories' module names mapped onto rlnet's models (`reference`).

pub mod archive;
pub mod reference;
pub mod storage;
pub mod tensors;
pub mod writer;

use crate::error::{Error, Result};
use std::path::Path;
pub use storage::DType;
pub use tensors::{Saved, TorchTensor};

/// The state dict and masks saved in the `.pth` file at `path` (see [`tensors::saved`]).
pub fn read(path: &Path) -> Result<Saved> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let what = path.display().to_string();
    tensors::saved(&archive::read(&bytes, &what)?, &what)
}
