//! The library's one error type. Every message names what was wrong and what was expected,
//! so a user reading it can fix the input without reading the source.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file or folder that is malformed, truncated or of an unknown layout.
    #[error("data: {0}")]
    Data(String),
    /// Two tensors (or a tensor and a model) disagree about a shape.
    #[error("shape mismatch in {op}: expected {expected}, got {got}")]
    Shape {
        op: String,
        expected: String,
        got: String,
    },
    /// A checkpoint that cannot be read or does not fit the model asked for.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// A configuration value (flag, preset, budget) that is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// `--device cuda` (or a GPU-only operation) where no usable GPU is present.
    #[error("no usable CUDA GPU: {reason}")]
    NoGpu { reason: String },
    /// A kernel launch that does not fit its kernel's signature or the device's limits, or a
    /// fault the CUDA emulator found while running it.
    #[error("launching {kernel}: {msg}")]
    Launch { kernel: String, msg: String },
    /// Training left the finite numbers (a NaN or infinite loss or weight): the run stopped
    /// without writing the bad state.
    #[error("{stage} diverged at {at}: {what}. {recovery}")]
    Diverged {
        stage: String,
        /// Where: the step overall and within its epoch.
        at: String,
        /// What was not finite (the loss, or the first tensor so).
        what: String,
        /// What is kept and what to do.
        recovery: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn shape(op: &str, expected: impl ToString, got: impl ToString) -> Self {
        Error::Shape {
            op: op.to_string(),
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }
}
