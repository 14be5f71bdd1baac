//! kernels/elementwise.cu: per-channel affine, add, scale, fill, abs-diff accumulation
//! (the accumulation of gradients is `Tensor::add_assign`, the pool is ops::pool).

use crate::device::args::Arg;
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_1d};
use crate::error::{Error, Result};

/// Checks that `channels` divides the planes of `total` values of `hw` pixels.
fn planes_of(op: &str, total: usize, hw: usize, channels: usize) -> Result<()> {
    if hw == 0 || channels == 0 || !total.is_multiple_of(hw * channels) {
        return Err(Error::shape(
            op,
            format!("[n, {channels}, {hw}] values"),
            format!("{total} values"),
        ));
    }
    Ok(())
}

/// y = x * scale[c] + shift[c] over [n, c, hw].
pub fn channel_affine(
    dev: &CudaDevice,
    x: &DeviceBuffer<f32>,
    scale: &DeviceBuffer<f32>,
    shift: &DeviceBuffer<f32>,
    hw: usize,
    y: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let (total, c) = (x.len(), scale.len());
    planes_of("channel_affine", total, hw, c)?;
    dev.launch(
        KernelId::ELEMENTWISE_CHANNEL_AFFINE_FWD,
        launch_1d(total),
        &[
            Arg::read(x, total),
            Arg::read(scale, c),
            Arg::read(shift, c),
            int(total)?.into(),
            int(hw)?.into(),
            int(c)?.into(),
            Arg::write(y, total),
        ],
    )
}

pub fn channel_affine_backward(
    dev: &CudaDevice,
    dy: &DeviceBuffer<f32>,
    scale: &DeviceBuffer<f32>,
    hw: usize,
    dx: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let (total, c) = (dy.len(), scale.len());
    planes_of("channel_affine_backward", total, hw, c)?;
    dev.launch(
        KernelId::ELEMENTWISE_CHANNEL_AFFINE_BWD,
        launch_1d(total),
        &[
            Arg::read(dy, total),
            Arg::read(scale, c),
            int(total)?.into(),
            int(hw)?.into(),
            int(c)?.into(),
            Arg::write(dx, total),
        ],
    )
}

/// out = a + b.
pub fn add(
    dev: &CudaDevice,
    a: &DeviceBuffer<f32>,
    b: &DeviceBuffer<f32>,
    out: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let total = a.len();
    dev.launch(
        KernelId::ELEMENTWISE_ADD,
        launch_1d(total),
        &[
            Arg::read(a, total),
            Arg::read(b, total),
            int(total)?.into(),
            Arg::write(out, total),
        ],
    )
}

/// y = alpha * x.
pub fn scale(
    dev: &CudaDevice,
    x: &DeviceBuffer<f32>,
    alpha: f32,
    y: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let total = x.len();
    dev.launch(
        KernelId::ELEMENTWISE_SCALE,
        launch_1d(total),
        &[
            Arg::read(x, total),
            alpha.into(),
            int(total)?.into(),
            Arg::write(y, total),
        ],
    )
}

pub fn fill(dev: &CudaDevice, y: &mut DeviceBuffer<f32>, value: f32) -> Result<()> {
    let total = y.len();
    dev.launch(
        KernelId::ELEMENTWISE_FILL,
        launch_1d(total),
        &[Arg::write(y, total), value.into(), int(total)?.into()],
    )
}

/// acc[i] += Σ_k |a[k·len + i] − b[k·len + i]| with len = acc.len() and a, b holding
/// `a.len() / len` samples of `len` values.
pub fn abs_diff_accumulate(
    dev: &CudaDevice,
    acc: &mut DeviceBuffer<f32>,
    a: &DeviceBuffer<f32>,
    b: &DeviceBuffer<f32>,
) -> Result<()> {
    let len = acc.len();
    if a.len() != b.len() || len == 0 || !a.len().is_multiple_of(len) {
        return Err(Error::shape(
            "abs_diff_accumulate",
            format!("two equal inputs of a whole number of {len}-value samples"),
            format!("{} and {} values", a.len(), b.len()),
        ));
    }
    let n = a.len() / len;
    dev.launch(
        KernelId::ELEMENTWISE_ABSDIFF_ACCUMULATE,
        launch_1d(len),
        &[
            Arg::write(acc, len),
            Arg::read(a, n * len),
            Arg::read(b, n * len),
            int(len)?.into(),
            int(n)?.into(),
        ],
    )
}
