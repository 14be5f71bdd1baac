//! Where tensors live and ops run. All cudarc calls stay in this folder.
//!
//! `Device::auto()` probes for a GPU without ever letting cudarc panic: cudarc panics when
//! libcuda is missing, so the dlopen probe (`is_culib_present`) runs before any other call.

pub mod cuda;
pub mod kernels;
pub mod launch;
pub mod nvrtc;
mod probe;

pub use probe::{probe_gpu, GpuProbe};

use crate::error::{Error, Result};

/// The compute device of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    /// The reference backend: every op in Rust, parallel with rayon.
    Cpu,
}

/// What the user asked for on the command line (`--device`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda,
}

/// A chosen device and, in words, why it was chosen.
#[derive(Clone, Debug)]
pub struct DeviceChoice {
    pub device: Device,
    pub reason: String,
}

impl Device {
    /// The best device present: a usable GPU when the CUDA backend can drive it, else the CPU,
    /// with the reason recorded.
    pub fn auto() -> DeviceChoice {
        match probe_gpu() {
            GpuProbe::Absent(why) => DeviceChoice {
                device: Device::Cpu,
                reason: format!("CPU: {why}"),
            },
            GpuProbe::Present { name, .. } => DeviceChoice {
                device: Device::Cpu,
                reason: format!(
                    "CPU: found {name}, but training on the GPU is not wired into the autodiff graph yet (its kernels are tested alone)"
                ),
            },
        }
    }

    /// Resolves a `--device` request. An explicit `cuda` that cannot be honoured is an error,
    /// never a silent fallback to the CPU.
    pub fn from_request(req: DeviceRequest) -> Result<DeviceChoice> {
        match req {
            DeviceRequest::Auto => Ok(Device::auto()),
            DeviceRequest::Cpu => Ok(DeviceChoice {
                device: Device::Cpu,
                reason: "CPU: requested with --device cpu".into(),
            }),
            DeviceRequest::Cuda => match probe_gpu() {
                GpuProbe::Absent(why) => Err(Error::NoGpu { reason: why }),
                GpuProbe::Present { name, .. } => Err(Error::NoGpu {
                    reason: format!(
                        "found {name}, but training on the GPU is not wired into the autodiff graph yet; use --device cpu or auto"
                    ),
                }),
            },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
        }
    }
}
