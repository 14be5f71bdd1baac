//! kernels/optim.cu: the SGD-momentum and Adam updates of one parameter tensor.

use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::launch_update;
use crate::error::Result;
use crate::optim::{AdamStep, SgdConfig};

/// p -= lr * buf after buf = momentum * buf + g + wd * p (buf = g + wd * p on the first step).
pub fn sgd_update(
    dev: &CudaDevice,
    p: &mut DeviceBuffer<f32>,
    buf: &mut DeviceBuffer<f32>,
    g: &DeviceBuffer<f32>,
    lr: f32,
    cfg: &SgdConfig,
    first_step: bool,
) -> Result<()> {
    let scalars = vec![
        lr.into(),
        cfg.momentum.into(),
        cfg.weight_decay.into(),
        (first_step as i32).into(),
    ];
    let sgd = KernelId::OPTIM_SGD_MOMENTUM_UPDATE;
    launch_update(dev, sgd, vec![p, buf], &[g], scalars)
}

/// One Adam step of p with its moments m and v in place (AdamStep documents the update).
pub fn adam_update(
    dev: &CudaDevice,
    p: &mut DeviceBuffer<f32>,
    m: &mut DeviceBuffer<f32>,
    v: &mut DeviceBuffer<f32>,
    g: &DeviceBuffer<f32>,
    k: &AdamStep,
) -> Result<()> {
    let scalars = vec![
        k.neg_step_size.into(),
        k.bias_correction2_sqrt.into(),
        k.one_minus_beta1.into(),
        k.beta2.into(),
        k.one_minus_beta2.into(),
        k.eps.into(),
        k.weight_decay.into(),
        k.l1.into(),
    ];
    launch_update(
        dev,
        KernelId::OPTIM_ADAM_UPDATE,
        vec![p, m, v],
        &[g],
        scalars,
    )
}
