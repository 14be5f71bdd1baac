//! Dense f32 tensors. Shapes are row-major (NCHW for images, OIHW for conv weights).
//!
//! Storage is an enum with one variant per device: a plain `Vec<f32>` that the CPU reference
//! ops read and write directly, or GPU memory that the CUDA launchers use. The one arithmetic
//! the tape itself needs, accumulating gradients (`add_assign`), lives here too, so that the
//! tape (autograd) depends on no op.

use crate::device::args::Arg;
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::Device;
use crate::error::{Error, Result};
use rayon::prelude::*;

pub mod channel_sums;
pub mod precision;
mod recycle;

#[derive(Clone, Debug)]
pub enum Storage {
    Cpu(Vec<f32>),
    Cuda(DeviceBuffer<f32>),
}

#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

/// A CPU tensor's storage goes back to the recycling pool (large ones only; see `recycle`).
impl Drop for Tensor {
    fn drop(&mut self) {
        if let Storage::Cpu(v) = &mut self.storage {
            recycle::give(std::mem::take(v));
        }
    }
}

/// Equal shapes and values; GPU tensors are never equal to anything (download them first).
impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        match (&self.storage, &other.storage) {
            (Storage::Cpu(a), Storage::Cpu(b)) => self.shape == other.shape && a == b,
            _ => false,
        }
    }
}

impl Tensor {
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor::full(shape, 0.0)
    }

    pub fn full(shape: &[usize], v: f32) -> Self {
        let n = shape.iter().product();
        Tensor {
            shape: shape.to_vec(),
            storage: Storage::Cpu(vec![v; n]),
        }
    }

    /// A tensor over `data`, which must hold exactly `shape.iter().product()` values.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::shape(
                "Tensor::from_vec",
                format!("{n} values for shape {shape:?}"),
                format!("{} values", data.len()),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: Storage::Cpu(data),
        })
    }

    pub fn scalar(v: f32) -> Self {
        Tensor {
            shape: vec![1],
            storage: Storage::Cpu(vec![v]),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of dimension `i`.
    pub fn dim(&self, i: usize) -> usize {
        self.shape[i]
    }

    /// The values of a CPU tensor. A GPU tensor here is a bug in the caller (the ops dispatch
    /// on the storage before touching values), hence the panic.
    pub fn data(&self) -> &[f32] {
        match &self.storage {
            Storage::Cpu(v) => v,
            Storage::Cuda(_) => {
                panic!("Tensor::data on a GPU tensor: download it with to_host() first")
            }
        }
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        match &mut self.storage {
            Storage::Cpu(v) => v,
            Storage::Cuda(_) => panic!("Tensor::data_mut on a GPU tensor"),
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn is_cuda(&self) -> bool {
        matches!(self.storage, Storage::Cuda(_))
    }

    /// The GPU buffer of a GPU tensor (see `data` for why a CPU tensor panics).
    pub fn gpu(&self) -> &DeviceBuffer<f32> {
        match &self.storage {
            Storage::Cuda(s) => s,
            Storage::Cpu(_) => panic!("Tensor::gpu on a CPU tensor"),
        }
    }

    pub fn gpu_mut(&mut self) -> &mut DeviceBuffer<f32> {
        match &mut self.storage {
            Storage::Cuda(s) => s,
            Storage::Cpu(_) => panic!("Tensor::gpu_mut on a CPU tensor"),
        }
    }

    /// A CPU tensor of `shape` for an op to write in full: recycled storage of a dropped tensor
    /// when one of the same size is idle, with its old values (NaN in debug builds and under
    /// `RLNET_POISON_UNINIT=1`, so an op that leaves part of it unwritten fails its tests). The CPU twin of `uninit_gpu`.
    pub fn uninit_cpu(shape: &[usize]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            storage: Storage::Cpu(recycle::take(shape.iter().product())),
        }
    }

    /// Under poisoning (see `uninit_cpu`), panics naming `op` when this output of `uninit_cpu`
    /// still holds the poison NaN after its op ran: the op left part of it unwritten (or read
    /// it). NaNs that arithmetic made, as in a diverged run, carry another payload.
    pub fn check_written(&self, op: &str) {
        if let Storage::Cpu(v) = &self.storage {
            if recycle::poisoned() {
                let poison = recycle::POISON_BITS;
                if let Some(i) = v.iter().position(|x| x.to_bits() == poison) {
                    panic!(
                        "{op} left element {i} of its {:?} output unwritten",
                        self.shape
                    );
                }
            }
        }
    }

    /// A GPU tensor of `shape` for a kernel to write in full: no zeroing pass (the emulator
    /// poisons it, so a kernel that leaves part of it unwritten fails the parity tests).
    pub fn uninit_gpu(d: &CudaDevice, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_gpu(shape, d.alloc(shape.iter().product())?))
    }

    /// Zeros of `shape` on `device` (state that accumulates, such as optimiser moments).
    pub fn zeros_on(device: &Device, shape: &[usize]) -> Result<Tensor> {
        match device {
            Device::Cpu => Ok(Tensor::zeros(shape)),
            Device::Cuda(d) => Ok(Tensor::from_gpu(shape, d.zeros(shape.iter().product())?)),
        }
    }

    /// self += v, on the device both live on (`device` runs the kernel when they are on the
    /// GPU): the tape's gradient accumulation.
    pub fn add_assign(&mut self, v: &Tensor, device: &Device) -> Result<()> {
        if self.numel() != v.numel() {
            return Err(Error::shape(
                "Tensor::add_assign",
                format!("{} values", self.numel()),
                v.numel(),
            ));
        }
        match (&mut self.storage, &v.storage, device) {
            (Storage::Cpu(a), Storage::Cpu(b), _) => {
                // Spread over the threads: a step adds up tens of MB of activation gradients
                // here, and a single thread left the others idle (5% of a CPU step, `perf`).
                const CHUNK: usize = 1 << 15;
                a.par_chunks_mut(CHUNK)
                    .zip(b.par_chunks(CHUNK))
                    .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, &b)| *a += b));
                Ok(())
            }
            (Storage::Cuda(a), Storage::Cuda(b), Device::Cuda(d)) => {
                let n = b.len();
                d.launch(
                    KernelId::ELEMENTWISE_ACCUMULATE,
                    crate::device::launch_1d(n),
                    &[
                        Arg::write(a, n),
                        Arg::read(b, n),
                        crate::device::int(n)?.into(),
                    ],
                )
            }
            _ => Err(Error::Config(
                "Tensor::add_assign: the two tensors are on different devices".into(),
            )),
        }
    }

    /// A GPU tensor over `slice`, which holds `shape.iter().product()` values.
    pub fn from_gpu(shape: &[usize], slice: DeviceBuffer<f32>) -> Tensor {
        debug_assert_eq!(slice.len(), shape.iter().product::<usize>().max(1));
        Tensor {
            shape: shape.to_vec(),
            storage: Storage::Cuda(slice),
        }
    }

    /// A copy on `device` (the same tensor when it is already there).
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        match (device, &self.storage) {
            (Device::Cpu, _) => self.to_host(),
            (Device::Cuda(_), Storage::Cuda(_)) => Ok(self.clone()),
            (Device::Cuda(d), Storage::Cpu(v)) => Ok(Tensor::from_gpu(&self.shape, d.upload(v)?)),
        }
    }

    /// This tensor on `device`, moved without a copy when it is already there.
    pub fn into_device(self, device: &Device) -> Result<Tensor> {
        match (device, &self.storage) {
            (Device::Cpu, Storage::Cpu(_)) | (Device::Cuda(_), Storage::Cuda(_)) => Ok(self),
            _ => self.to_device(device),
        }
    }

    /// A CPU copy (a download for a GPU tensor: it waits for the stream).
    pub fn to_host(&self) -> Result<Tensor> {
        match &self.storage {
            Storage::Cpu(_) => Ok(self.clone()),
            Storage::Cuda(s) => {
                let mut v = s.to_vec()?;
                v.truncate(self.numel());
                Tensor::from_vec(&self.shape, v)
            }
        }
    }

    pub fn into_vec(mut self) -> Vec<f32> {
        match &mut self.storage {
            Storage::Cpu(v) => std::mem::take(v),
            Storage::Cuda(_) => self.to_host().expect("download a GPU tensor").into_vec(),
        }
    }

    /// The first value (the value of a one-element tensor such as a loss); a GPU tensor's value
    /// is downloaded (one scalar: what a progress bar needs).
    pub fn item(&self) -> f32 {
        match &self.storage {
            Storage::Cpu(v) => v[0],
            Storage::Cuda(_) => self.to_host().expect("download a scalar").data()[0],
        }
    }

    /// The same values under another shape with the same number of elements.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return Err(Error::shape(
                "Tensor::reshape",
                format!("{} elements", self.numel()),
                format!("shape {shape:?}"),
            ));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Rows `start..end` of the leading dimension (a sub-batch), copied on the same device.
    pub fn slice_rows(&self, start: usize, end: usize) -> Tensor {
        let row: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        let storage = match &self.storage {
            Storage::Cpu(v) => Storage::Cpu(v[start * row..end * row].to_vec()),
            Storage::Cuda(s) => Storage::Cuda(
                s.copy_range(start * row..end * row)
                    .unwrap_or_else(|e| panic!("GPU failure copying rows: {e}")),
            ),
        };
        Tensor { shape, storage }
    }
}
