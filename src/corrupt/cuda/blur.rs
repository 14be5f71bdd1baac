//! kernels/corrupt_blur.cu: the blur corruptions (gaussian, glass, defocus, zoom) of a batch of
//! CIFAR images resident on the device, bit-identical to src/corrupt/blur.rs and glass.rs. The
//! filter weights come from the CPU functions, so both backends use the same bits. The small
//! weight tables uploaded per launch are freed in stream order when dropped (cudarc frees
//! asynchronously on the stream, or synchronises first), so they outlive the kernel.

use super::{cifar_batch, CIFAR_IMAGE};
use crate::corrupt::blur::{defocus_kernel, zoom_factors, DEFOCUS_SIDE, GAUSSIAN_SIGMA};
use crate::corrupt::filter::{gaussian_taps, ZoomGeometry};
use crate::corrupt::glass::GLASS;
use crate::corrupt::{Severity, CIFAR_PLANE};
use crate::device::args::{Arg, LaunchConfig};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_grid};
use crate::error::{Error, Result};

const THREADS: u32 = 256;
/// The kernels hold at most this many Gaussian taps per side (gaussian_blur's σ = 1 needs 4).
const MAX_RADIUS: usize = 4;

/// The Gaussian taps as the kernels take them: the radius and 5 values, zero past the radius.
fn taps_arg(sigma: f64) -> Result<(i32, [f64; MAX_RADIUS + 1])> {
    let taps = gaussian_taps(sigma, 4.0);
    if taps.len() > MAX_RADIUS + 1 {
        return Err(Error::Config(format!(
            "Gaussian σ {sigma} needs radius {}, the blur kernels hold at most {MAX_RADIUS}",
            taps.len() - 1
        )));
    }
    let mut t = [0f64; MAX_RADIUS + 1];
    t[..taps.len()].copy_from_slice(&taps);
    Ok((int(taps.len() - 1)?, t))
}

/// One block per image ([`CIFAR_IMAGE`] values, whole image in shared memory).
fn per_image(n: usize) -> LaunchConfig {
    launch_grid(n as u32, 1, 1, (THREADS, 1, 1))
}

/// One thread per output value.
fn per_value(n: usize) -> LaunchConfig {
    launch_grid(
        (n * CIFAR_IMAGE).div_ceil(THREADS as usize) as u32,
        1,
        1,
        (THREADS, 1, 1),
    )
}

/// gaussian_blur of `n` images [n, 3, 32, 32] into `out` (blur::gaussian_blur).
pub fn gaussian_blur(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let (ni, total) = cifar_batch("corrupt_blur_gaussian", images, n, out)?;
    let (radius, t) = taps_arg(GAUSSIAN_SIGMA[s.index()])?;
    let mut args = vec![Arg::read(images, total as usize), ni.into(), radius.into()];
    args.extend(t.iter().map(|&v| Arg::from(v)));
    args.push(Arg::write(out, total as usize));
    dev.launch(KernelId::CORRUPT_BLUR_GAUSSIAN, per_image(n), &args)
}

/// glass_blur of `n` images (dataset images first..first+n) into `out` (glass::glass_blur);
/// `family_seed` = `ImageKey::family_seed(seed, Corruption::GlassBlur, s)`.
#[allow(clippy::too_many_arguments)]
pub fn glass_blur(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    family_seed: u64,
    first: u64,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let (ni, total) = cifar_batch("corrupt_blur_glass", images, n, out)?;
    let (sigma, passes) = GLASS[s.index()];
    let (radius, t) = taps_arg(sigma)?;
    let mut args = vec![Arg::read(images, total as usize), ni.into(), radius.into()];
    args.extend(t.iter().map(|&v| Arg::from(v)));
    args.extend([
        int(passes)?.into(),
        family_seed.into(),
        first.into(),
        Arg::write(out, total as usize),
    ]);
    dev.launch(KernelId::CORRUPT_BLUR_GLASS, per_image(n), &args)
}

/// defocus_blur of `n` images into `out` (blur::defocus_blur).
pub fn defocus_blur(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let (ni, total) = cifar_batch("corrupt_blur_defocus", images, n, out)?;
    let kernel = dev.upload(&defocus_kernel(s))?;
    dev.launch(
        KernelId::CORRUPT_BLUR_DEFOCUS,
        per_value(n),
        &[
            Arg::read(images, total as usize),
            ni.into(),
            Arg::read(&kernel, DEFOCUS_SIDE * DEFOCUS_SIDE),
            Arg::write(out, total as usize),
        ],
    )
}

/// zoom_blur of `n` images into `out` (blur::zoom_blur).
pub fn zoom_blur(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let (ni, total) = cifar_batch("corrupt_blur_zoom", images, n, out)?;
    let factors = zoom_factors(s);
    let geometry: Vec<f64> = factors
        .iter()
        .flat_map(|&z| {
            let g = ZoomGeometry::new(CIFAR_PLANE.h, z);
            [g.s as f64, g.o as f64, g.t as f64, g.scale]
        })
        .collect();
    let geometry = dev.upload(&geometry)?;
    dev.launch(
        KernelId::CORRUPT_BLUR_ZOOM,
        per_value(n),
        &[
            Arg::read(images, total as usize),
            ni.into(),
            int(factors.len())?.into(),
            Arg::read(&geometry, 4 * factors.len()),
            Arg::write(out, total as usize),
        ],
    )
}
