//! Where tensors live and ops run. All cudarc calls stay in this folder.
//!
//! `Device::auto()` probes for a GPU without ever letting cudarc panic: cudarc panics when
//! libcuda is missing, so the dlopen probe (`is_culib_present`) runs before any other call.
//! The CUDA device has two backends: the GPU through the driver, and the CUDA emulator
//! (`emu`, `--device cuda-emu`) that runs the same kernels on the CPU. Every launch goes
//! through `CudaDevice::launch` with typed arguments (`args`) checked against the kernel's
//! signature (`kernels`, derived from the .cu sources at build time).

pub mod args;
pub mod buffer;
pub mod cuda;
#[cfg(feature = "emu")]
pub mod emu;
pub mod kernel_source;
pub mod kernels;
pub mod nvrtc;
mod probe;

pub use probe::{probe_gpu, GpuProbe};

use crate::error::{Error, Result};
use cuda::CudaDevice;
use std::sync::Arc;

/// Stops on a device fault with its message. A launch that fails inside a training or
/// evaluation step, whose shapes were checked before, is a driver or hardware fault (or, on the
/// emulator, a kernel bug), not bad input.
pub fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("GPU failure: {e}"))
}

/// The threads per block of every 1-D launch (the kernels' `__launch_bounds__`).
pub const BLOCK: u32 = 256;

/// Blocks of `BLOCK` threads covering `n` elements, one thread each.
pub fn launch_1d(n: usize) -> args::LaunchConfig {
    launch_grid(
        n.div_ceil(BLOCK as usize).max(1) as u32,
        1,
        1,
        (BLOCK, 1, 1),
    )
}

/// A grid of (x, y, z) blocks (each at least 1) of `block` threads, no dynamic shared memory.
pub fn launch_grid(x: u32, y: u32, z: u32, block: (u32, u32, u32)) -> args::LaunchConfig {
    args::LaunchConfig {
        grid: (x.max(1), y.max(1), z.max(1)),
        block,
        shared_bytes: 0,
    }
}

/// An element-wise in-place update over n elements, n the length of the first updated buffer:
/// the kernel takes the buffers it updates, then those it reads (each of n elements), then n,
/// then `scalars` (the optimisers' steps and BN's running statistics).
pub fn launch_update(
    dev: &CudaDevice,
    kernel: kernels::KernelId,
    updated: Vec<&mut buffer::DeviceBuffer<f32>>,
    read: &[&buffer::DeviceBuffer<f32>],
    scalars: Vec<args::Arg<'_>>,
) -> Result<()> {
    let n = updated.first().map_or(0, |b| b.len());
    let mut all: Vec<args::Arg<'_>> = updated
        .into_iter()
        .map(|b| args::Arg::write(b, n))
        .collect();
    all.extend(read.iter().map(|b| args::Arg::read(*b, n)));
    all.push(int(n)?.into());
    all.extend(scalars);
    dev.launch(kernel, launch_1d(n), &all)
}

/// Sizes passed to kernels as `int`: every tensor the models use has fewer than 2^31 elements.
pub fn int(v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::shape("CUDA launch", "fewer than 2^31 elements", v))
}

/// The error of `--device cuda-emu` in a build without the emulator.
pub fn no_emulator() -> Error {
    Error::Config(
        "this rlnet was built without the CUDA emulator (cargo feature `emu`, on by default; it \
         needs a C++17 compiler): rebuild with the default features to use --device cuda-emu"
            .into(),
    )
}

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
#[serde(rename_all = "kebab-case")]
pub enum DeviceRequest {
    /// A usable GPU, else the CPU (never the emulator).
    Auto,
    Cpu,
    Cuda,
    /// The CUDA emulator: the GPU kernels run on the CPU, for kernel development without a
    /// GPU (slow: for small runs and tests).
    CudaEmu,
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
            GpuProbe::Present { .. } => {
                let ctx = probe::context().ok_or_else(|| Error::NoGpu {
                    reason: "the GPU probe kept no context".into(),
                })?;
                Ok(Device::Cuda(CudaDevice::open(ctx)?))
            }
        }
    }

    /// The CUDA emulator (its thread schedule from `RLNET_EMU_SCHEDULE`, forward by default).
    #[cfg(feature = "emu")]
    pub fn cuda_emu() -> Result<Device> {
        let config = emu::EmuConfig::from_env().map_err(Error::Config)?;
        Ok(Device::Cuda(CudaDevice::emulated(config)?))
    }

    /// The CUDA emulator: not in this build.
    #[cfg(not(feature = "emu"))]
    pub fn cuda_emu() -> Result<Device> {
        Err(no_emulator())
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
            DeviceRequest::CudaEmu => Ok(DeviceChoice {
                device: Device::cuda_emu()?,
                reason:
                    "CUDA emulator: the GPU kernels on the CPU, requested with --device cuda-emu"
                        .into(),
            }),
        }
    }

    /// "cpu", "cuda" or "cuda-emu" (the names of `--device`).
    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda(d) if d.is_emulated() => "cuda-emu",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emulator_is_never_chosen_automatically_and_its_absence_is_explained() {
        assert!(!Device::auto().device.gpu().is_some_and(|d| d.is_emulated()));
        let e = no_emulator().to_string();
        assert!(
            e.contains("without the CUDA emulator") && e.contains("--device cuda-emu"),
            "{e}"
        );
        #[cfg(feature = "emu")]
        {
            let d = Device::from_request(DeviceRequest::CudaEmu).unwrap();
            assert_eq!(d.device.name(), "cuda-emu");
            assert!(d.reason.contains("emulator"));
        }
    }
}
