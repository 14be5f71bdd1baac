//! kernels/corrupt_pixel.cu: the pixelwise CIFAR-C corruptions on the GPU (the four noises,
//! brightness, contrast, saturate, pixelate), with the draws and arithmetic of
//! `corrupt::noise`, `corrupt::color` and `corrupt::pixelate`. jpeg_compression has no kernel
//! (`corrupt::jpeg` runs on the CPU). Every launcher corrupts one [`ImageBatch`].

use super::{ImageBatch, CIFAR_IMAGE};
use crate::corrupt::{color, noise, pixelate, Corruption, Severity, CIFAR_PLANE};
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_1d};
use crate::error::{Error, Result};

/// One of the four noises (`noise::apply`): gaussian x + σ·z, shot Poisson(c·x)/c, impulse
/// salt and pepper, speckle x + x·σ·z; one thread per value.
pub fn noise(dev: &CudaDevice, c: Corruption, s: Severity, b: &mut ImageBatch) -> Result<()> {
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
    let [family_seed, first] = b.keys();
    let params = [
        b.total_arg(),
        int(CIFAR_IMAGE)?.into(),
        param.into(),
        family_seed,
        first,
    ];
    b.launch(dev, kernel, b.per_value(), params)
}

/// The HSV kernel: mode 0 adds `a` to V, mode 1 maps S to S·a + b.
fn hsv(dev: &CudaDevice, mode: i32, (a, s_b): (f64, f64), b: &mut ImageBatch) -> Result<()> {
    let values = b.count() * CIFAR_PLANE.len();
    let params = [
        int(values)?.into(),
        int(CIFAR_PLANE.len())?.into(),
        mode.into(),
        a.into(),
        s_b.into(),
    ];
    b.launch(dev, KernelId::CORRUPT_PIXEL_HSV, launch_1d(values), params)
}

/// brightness: V ← clip(V + c, 0, 1) in scikit-image's HSV (`color::apply`).
pub fn brightness(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    hsv(dev, 0, (color::BRIGHTNESS[s.index()], 0.0), b)
}

/// saturate: S ← clip(S·a + b, 0, 1) (`color::apply`).
pub fn saturate(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    hsv(dev, 1, color::SATURATE[s.index()], b)
}

/// contrast: (x − μ)·c + μ with per-image, per-channel means (`color::channel_mean`).
pub fn contrast(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    let params = [
        int(CIFAR_PLANE.len())?.into(),
        color::CONTRAST[s.index()].into(),
    ];
    b.launch(
        dev,
        KernelId::CORRUPT_PIXEL_CONTRAST,
        b.per_image(1),
        params,
    )
}

/// pixelate: Pillow BOX down to k×k and back (`pixelate::pixelate`).
pub fn pixelate(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    let p = CIFAR_PLANE;
    let params = [
        int(p.h)?.into(),
        int(p.w)?.into(),
        int(pixelate::reduced_side(s, p.h))?.into(),
        int(pixelate::reduced_side(s, p.w))?.into(),
    ];
    b.launch(
        dev,
        KernelId::CORRUPT_PIXEL_PIXELATE,
        b.per_image(1),
        params,
    )
}
