//! kernels/optim.cu: the SGD-momentum and Adam updates of one parameter tensor.

use crate::device::args::Arg;
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_1d};
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
    let total = p.len();
    dev.launch(
        KernelId::OPTIM_SGD_MOMENTUM_UPDATE,
        launch_1d(total),
        &[
            Arg::write(p, total),
            Arg::write(buf, total),
            Arg::read(g, total),
            int(total)?.into(),
            lr.into(),
            cfg.momentum.into(),
            cfg.weight_decay.into(),
            (first_step as i32).into(),
        ],
    )
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
    let total = p.len();
    dev.launch(
        KernelId::OPTIM_ADAM_UPDATE,
        launch_1d(total),
        &[
            Arg::write(p, total),
            Arg::write(m, total),
            Arg::write(v, total),
            Arg::read(g, total),
            int(total)?.into(),
            k.neg_step_size.into(),
            k.bias_correction2_sqrt.into(),
            k.one_minus_beta1.into(),
            k.beta2.into(),
            k.one_minus_beta2.into(),
            k.eps.into(),
            k.weight_decay.into(),
            k.l1.into(),
        ],
    )
}
