//! kernels/optim.cu: the SGD-momentum and Adam updates of one parameter tensor.

use super::{func, int, launch, linear_grid};
use crate::device::cuda::CudaDevice;
use crate::error::Result;
use crate::optim::{AdamStep, SgdConfig};
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

/// One Adam step of p with its moments m and v in place (AdamStep documents the update).
pub fn adam_update(
    dev: &CudaDevice,
    p: &mut CudaSlice<f32>,
    m: &mut CudaSlice<f32>,
    v: &mut CudaSlice<f32>,
    g: &CudaSlice<f32>,
    k: &AdamStep,
) -> Result<()> {
    let total = p.len();
    let t = int(total)?;
    let f = func(dev, "optim", "optim_adam_update")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(p)
        .arg(m)
        .arg(v)
        .arg(g)
        .arg(&t)
        .arg(&k.neg_step_size)
        .arg(&k.bias_correction2_sqrt)
        .arg(&k.one_minus_beta1)
        .arg(&k.beta2)
        .arg(&k.one_minus_beta2)
        .arg(&k.eps)
        .arg(&k.weight_decay)
        .arg(&k.l1);
    launch("optim_adam_update", b, linear_grid(total))
}
