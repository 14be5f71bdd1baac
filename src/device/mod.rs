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
use cuda::CudaDevice;
use std::sync::Arc;

/// The compute device of a run.
#[derive(Clone, Debug)]
pub enum Device {
    /// The reference backend: every op in Rust, parallel with rayon.
    Cpu,
    /// One NVIDIA GPU: handwritten kernels compiled by NVRTC.
    Cuda(Arc<CudaDevice>),
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Cuda(a), Device::Cuda(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
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
    /// The best device present: a usable GPU (with NVRTC to compile its kernels), else the CPU,
    /// with the reason recorded.
    pub fn auto() -> DeviceChoice {
        match Device::cuda() {
            Ok(device) => {
                let reason = match &device {
                    Device::Cuda(d) => format!("CUDA: {} ({})", d.name(), d.arch()),
                    Device::Cpu => unreachable!("Device::cuda returns a GPU"),
                };
                DeviceChoice { device, reason }
            }
            Err(e) => DeviceChoice {
                device: Device::Cpu,
                reason: format!(
                    "CPU: {}",
                    e.to_string().trim_start_matches("no usable CUDA GPU: ")
                ),
            },
        }
    }

    /// Opens the first GPU, with NVRTC to compile its kernels.
    pub fn cuda() -> Result<Device> {
        match probe_gpu() {
            GpuProbe::Absent(why) => Err(Error::NoGpu { reason: why }),
            GpuProbe::Present { .. } if !nvrtc::nvrtc_present() => Err(Error::NoGpu {
                reason: "libnvrtc not found: the kernels are compiled at run time (set LD_LIBRARY_PATH; see tools/setup_nvrtc.sh)".into(),
            }),
            GpuProbe::Present { .. } => Ok(Device::Cuda(CudaDevice::open(0)?)),
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
            DeviceRequest::Cuda => {
                let device = Device::cuda()?;
                let reason = match &device {
                    Device::Cuda(d) => format!(
                        "CUDA: {} ({}), requested with --device cuda",
                        d.name(),
                        d.arch()
                    ),
                    Device::Cpu => unreachable!("Device::cuda returns a GPU"),
                };
                Ok(DeviceChoice { device, reason })
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda(_) => "cuda",
        }
    }

    /// The GPU, when this is one.
    pub fn gpu(&self) -> Option<&Arc<CudaDevice>> {
        match self {
            Device::Cuda(d) => Some(d),
            Device::Cpu => None,
        }
    }
}
