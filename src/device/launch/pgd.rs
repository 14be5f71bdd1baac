//! kernels/pgd.cu: the PGD random start and the fused signed step + projection.

use super::{func, int, launch, linear_grid};
use crate::device::cuda::CudaDevice;
use crate::error::Result;
use cudarc::driver::{CudaSlice, PushKernelArg};

pub fn random_start(
    dev: &CudaDevice,
    x0: &CudaSlice<f32>,
    eps: f32,
    seed: u64,
    key: u64,
    x: &mut CudaSlice<f32>,
) -> Result<()> {
    let total = x0.len();
    let t = int(total)?;
    let f = func(dev, "pgd", "pgd_random_start")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x0).arg(&t).arg(&eps).arg(&seed).arg(&key).arg(x);
    launch("pgd_random_start", b, linear_grid(total))
}

pub fn step(
    dev: &CudaDevice,
    x: &mut CudaSlice<f32>,
    x0: &CudaSlice<f32>,
    grad: &CudaSlice<f32>,
    alpha: f32,
    eps: f32,
) -> Result<()> {
    let total = x0.len();
    let t = int(total)?;
    let f = func(dev, "pgd", "pgd_step")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(x0).arg(grad).arg(&t).arg(&alpha).arg(&eps);
    launch("pgd_step", b, linear_grid(total))
}
