//! kernels/soft_relu.cu: SNL's soft ReLU forward and its input and α gradients.

use super::{func, int, launch, linear_grid};
use crate::device::cuda::CudaDevice;
use crate::error::{Error, Result};
use cudarc::driver::{CudaSlice, PushKernelArg};

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
    z: &CudaSlice<f32>,
    alpha: &CudaSlice<f32>,
    y: &mut CudaSlice<f32>,
) -> Result<()> {
    let (t, l, _) = sizes("soft_relu_fwd", z.len(), alpha.len(), y.len())?;
    let f = func(dev, "soft_relu", "soft_relu_fwd")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(z).arg(alpha).arg(&t).arg(&l).arg(y);
    launch("soft_relu_fwd", b, linear_grid(z.len()))
}

/// dz = dy where z > 0, dy·(1 − α) where z ≤ 0.
pub fn backward_input(
    dev: &CudaDevice,
    z: &CudaSlice<f32>,
    alpha: &CudaSlice<f32>,
    dy: &CudaSlice<f32>,
    dz: &mut CudaSlice<f32>,
) -> Result<()> {
    let (t, l, _) = sizes("soft_relu_bwd_input", z.len(), alpha.len(), dy.len())?;
    if dz.len() != z.len() {
        return Err(Error::shape(
            "soft_relu_bwd_input",
            format!("{} gradient values", z.len()),
            dz.len(),
        ));
    }
    let f = func(dev, "soft_relu", "soft_relu_bwd_input")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(z).arg(alpha).arg(dy).arg(&t).arg(&l).arg(dz);
    launch("soft_relu_bwd_input", b, linear_grid(z.len()))
}

/// dα[i] = Σ_n dy[n, i]·max(−z[n, i], 0), one thread per α element summing the samples in order.
pub fn backward_alpha(
    dev: &CudaDevice,
    z: &CudaSlice<f32>,
    dy: &CudaSlice<f32>,
    dalpha: &mut CudaSlice<f32>,
) -> Result<()> {
    let len = dalpha.len();
    let (_, l, n) = sizes("soft_relu_bwd_alpha", z.len(), len, dy.len())?;
    let f = func(dev, "soft_relu", "soft_relu_bwd_alpha")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(z).arg(dy).arg(&l).arg(&n).arg(dalpha);
    launch("soft_relu_bwd_alpha", b, linear_grid(len))
}
