//! kernels/optim.cu: the SGD-momentum update of one parameter tensor.

use super::{func, int, launch, linear_grid};
use crate::device::cuda::CudaDevice;
use crate::error::Result;
use crate::optim::SgdConfig;
use cudarc::driver::{CudaSlice, PushKernelArg};

/// p -= lr * buf after buf = momentum * buf + g + wd * p (buf = g + wd * p on the first step).
pub fn sgd_update(
    dev: &CudaDevice,
    p: &mut CudaSlice<f32>,
    buf: &mut CudaSlice<f32>,
    g: &CudaSlice<f32>,
    lr: f32,
    cfg: &SgdConfig,
    first_step: bool,
) -> Result<()> {
    let total = p.len();
    let (t, first) = (int(total)?, first_step as i32);
    let f = func(dev, "optim", "optim_sgd_momentum_update")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(p)
        .arg(buf)
        .arg(g)
        .arg(&t)
        .arg(&lr)
        .arg(&cfg.momentum)
        .arg(&cfg.weight_decay)
        .arg(&first);
    launch("optim_sgd_momentum_update", b, linear_grid(total))
}
