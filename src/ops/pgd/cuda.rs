//! kernels/pgd.cu: the PGD random start and the fused signed step + projection.

use crate::device::args::Arg;
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_1d, launch_update};
use crate::error::Result;

/// x = clip(x0 + uniform(−eps, eps), 0, 1) with the draws of `ops::pgd::random_start`.
pub fn random_start(
    dev: &CudaDevice,
    x0: &DeviceBuffer<f32>,
    eps: f32,
    seed: u64,
    key: u64,
    x: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let total = x0.len();
    dev.launch(
        KernelId::PGD_RANDOM_START,
        launch_1d(total),
        &[
            Arg::read(x0, total),
            int(total)?.into(),
            eps.into(),
            seed.into(),
            key.into(),
            Arg::write(x, total),
        ],
    )
}

/// x = project(x + alpha · sign(grad)) onto the eps-ball around x0 and [0, 1].
pub fn step(
    dev: &CudaDevice,
    x: &mut DeviceBuffer<f32>,
    x0: &DeviceBuffer<f32>,
    grad: &DeviceBuffer<f32>,
    alpha: f32,
    eps: f32,
) -> Result<()> {
    let scalars = vec![alpha.into(), eps.into()];
    launch_update(dev, KernelId::PGD_STEP, vec![x], &[x0, grad], scalars)
}
