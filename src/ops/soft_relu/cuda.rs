//! kernels/soft_relu.cu: SNL's soft ReLU forward and its input and α gradients.

use crate::device::args::Arg;
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_1d};
use crate::error::{Error, Result};

/// (total, len, n) as kernel ints after checking that `z` holds whole samples of α's `len`
/// values and that `other` (y, dy or dz) matches it.
fn sizes(name: &str, z: usize, len: usize, other: usize) -> Result<(i32, i32, i32)> {
    if len == 0 || !z.is_multiple_of(len) || other != z {
        return Err(Error::shape(
            name,
            format!("[n, {len}] activations and gradients for {len} α values"),
            format!("{z} and {other} values"),
        ));
    }
    Ok((int(z)?, int(len)?, int(z / len)?))
}

/// y = z where z ≥ 0, (1 − α)·z where z < 0.
pub fn forward(
    dev: &CudaDevice,
    z: &DeviceBuffer<f32>,
    alpha: &DeviceBuffer<f32>,
    y: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let (t, l, _) = sizes("soft_relu_fwd", z.len(), alpha.len(), y.len())?;
    let (total, len) = (z.len(), alpha.len());
    dev.launch(
        KernelId::SOFT_RELU_FWD,
        launch_1d(total),
        &[
            Arg::read(z, total),
            Arg::read(alpha, len),
            t.into(),
            l.into(),
            Arg::write(y, total),
        ],
    )
}

/// dz = dy where z > 0, dy·(1 − α) where z ≤ 0.
pub fn backward_input(
    dev: &CudaDevice,
    z: &DeviceBuffer<f32>,
    alpha: &DeviceBuffer<f32>,
    dy: &DeviceBuffer<f32>,
    dz: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let (t, l, _) = sizes("soft_relu_bwd_input", z.len(), alpha.len(), dy.len())?;
    let (total, len) = (z.len(), alpha.len());
    dev.launch(
        KernelId::SOFT_RELU_BWD_INPUT,
        launch_1d(total),
        &[
            Arg::read(z, total),
            Arg::read(alpha, len),
            Arg::read(dy, total),
            t.into(),
            l.into(),
            Arg::write(dz, total),
        ],
    )
}

/// dα[i] = Σ_n dy[n, i]·max(−z[n, i], 0), one thread per α element summing the samples in order.
pub fn backward_alpha(
    dev: &CudaDevice,
    z: &DeviceBuffer<f32>,
    dy: &DeviceBuffer<f32>,
    dalpha: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let len = dalpha.len();
    let (_, l, n) = sizes("soft_relu_bwd_alpha", z.len(), len, dy.len())?;
    let total = z.len();
    dev.launch(
        KernelId::SOFT_RELU_BWD_ALPHA,
        launch_1d(len),
        &[
            Arg::read(z, total),
            Arg::read(dy, total),
            l.into(),
            n.into(),
            Arg::write(dalpha, len),
        ],
    )
}
