//! kernels/corrupt_pixel.cu: the pixelwise CIFAR-C corruptions on the GPU (the four noises,
//! brightness, contrast, saturate, pixelate), with the draws and arithmetic of
//! `corrupt::noise`, `corrupt::color` and `corrupt::pixelate`. jpeg_compression has no kernel
//! (`corrupt::jpeg` runs on the CPU).
//!
//! Every launcher reads `n` CIFAR images, u8 [n, 3, 32, 32], and writes `out` (same size).
//! Random ones take `family_seed` = `ImageKey::family_seed(seed, c, s)` and `first`, the
//! dataset index of image 0 of the batch.

use super::cifar_batch;
use crate::corrupt::{color, noise, pixelate, Corruption, Severity, CIFAR_PLANE};
use crate::device::args::Arg;
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_1d, launch_grid, BLOCK};
use crate::error::{Error, Result};

/// One of the four noises (`noise::apply`): gaussian x + σ·z, shot Poisson(c·x)/c, impulse
/// salt and pepper, speckle x + x·σ·z; one thread per value.
#[allow(clippy::too_many_arguments)]
pub fn noise(
    dev: &CudaDevice,
    c: Corruption,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    family_seed: u64,
    first: u64,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let i = s.index();
    let (kernel, param) = match c {
        Corruption::GaussianNoise => (KernelId::CORRUPT_PIXEL_GAUSSIAN, noise::GAUSSIAN[i]),
        Corruption::ShotNoise => (KernelId::CORRUPT_PIXEL_SHOT, noise::SHOT[i]),
        Corruption::ImpulseNoise => (KernelId::CORRUPT_PIXEL_IMPULSE, noise::IMPULSE[i]),
        Corruption::SpeckleNoise => (KernelId::CORRUPT_PIXEL_SPECKLE, noise::SPECKLE[i]),
        other => {
            return Err(Error::Config(format!(
                "{} is not one of the noise corruptions",
                other.name()
            )))
        }
    };
    let total = cifar_batch(kernel.name(), images, n, out)?.1;
    if total == 0 {
        return Ok(());
    }
    let len = total as usize;
    dev.launch(
        kernel,
        launch_1d(len),
        &[
            Arg::read(images, len),
            total.into(),
            int(super::CIFAR_IMAGE)?.into(),
            param.into(),
            family_seed.into(),
            first.into(),
            Arg::write(out, len),
        ],
    )
}

/// The HSV kernel: mode 0 adds `a` to V, mode 1 maps S to S·a + b.
fn hsv(
    dev: &CudaDevice,
    name: &str,
    mode: i32,
    (a, b): (f64, f64),
    images: &DeviceBuffer<u8>,
    n: usize,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let total = cifar_batch(name, images, n, out)?.1 as usize;
    if total == 0 {
        return Ok(());
    }
    let plane = CIFAR_PLANE.len();
    dev.launch(
        KernelId::CORRUPT_PIXEL_HSV,
        launch_1d(n * plane),
        &[
            Arg::read(images, total),
            int(n * plane)?.into(),
            int(plane)?.into(),
            mode.into(),
            a.into(),
            b.into(),
            Arg::write(out, total),
        ],
    )
}

/// brightness: V ← clip(V + c, 0, 1) in scikit-image's HSV (`color::apply`).
pub fn brightness(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let c = color::BRIGHTNESS[s.index()];
    hsv(dev, "brightness", 0, (c, 0.0), images, n, out)
}

/// saturate: S ← clip(S·a + b, 0, 1) (`color::apply`).
pub fn saturate(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    hsv(
        dev,
        "saturate",
        1,
        color::SATURATE[s.index()],
        images,
        n,
        out,
    )
}

/// contrast: (x − μ)·c + μ with per-image, per-channel means (`color::channel_mean`).
pub fn contrast(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    // A grid is never empty: with no images, launch nothing.
    let total = cifar_batch("contrast", images, n, out)?.1 as usize;
    if total == 0 {
        return Ok(());
    }
    dev.launch(
        KernelId::CORRUPT_PIXEL_CONTRAST,
        launch_grid(int(n)? as u32, 1, 1, (BLOCK, 1, 1)),
        &[
            Arg::read(images, total),
            int(CIFAR_PLANE.len())?.into(),
            color::CONTRAST[s.index()].into(),
            Arg::write(out, total),
        ],
    )
}

/// pixelate: Pillow BOX down to k×k and back (`pixelate::pixelate`).
pub fn pixelate(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let total = cifar_batch("pixelate", images, n, out)?.1 as usize;
    if total == 0 {
        return Ok(());
    }
    let p = CIFAR_PLANE;
    dev.launch(
        KernelId::CORRUPT_PIXEL_PIXELATE,
        launch_grid(int(n)? as u32, 1, 1, (BLOCK, 1, 1)),
        &[
            Arg::read(images, total),
            int(p.h)?.into(),
            int(p.w)?.into(),
            int(pixelate::reduced_side(s, p.h))?.into(),
            int(pixelate::reduced_side(s, p.w))?.into(),
            Arg::write(out, total),
        ],
    )
}
