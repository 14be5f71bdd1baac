//! kernels/corrupt_blur.cu: the blur corruptions (gaussian, glass, defocus, zoom) of an
//! [`ImageBatch`], bit-identical to src/corrupt/blur.rs and glass.rs. The filter weights come
//! from the CPU functions, so both backends use the same bits. The small weight tables uploaded
//! per launch are freed in stream order when dropped (cudarc frees asynchronously on the
//! stream, or synchronises first), so they outlive the kernel.

use super::ImageBatch;
use crate::corrupt::blur::{defocus_kernel, zoom_factors, DEFOCUS_SIDE, GAUSSIAN_SIGMA};
use crate::corrupt::filter::{gaussian_taps, ZoomGeometry};
use crate::corrupt::glass::GLASS;
use crate::corrupt::{Severity, CIFAR_PLANE};
use crate::device::args::Arg;
use crate::device::cuda::CudaDevice;
use crate::device::int;
use crate::device::kernels::KernelId;
use crate::error::{Error, Result};

/// The kernels hold at most this many Gaussian taps per side (gaussian_blur's σ = 1 needs 4).
const MAX_RADIUS: usize = 4;

/// The Gaussian taps as the kernels take them: the radius, then 5 values, zero past the radius.
fn taps_args(sigma: f64) -> Result<Vec<Arg<'static>>> {
    let taps = gaussian_taps(sigma, 4.0);
    if taps.len() > MAX_RADIUS + 1 {
        return Err(Error::Config(format!(
            "Gaussian σ {sigma} needs radius {}, the blur kernels hold at most {MAX_RADIUS}",
            taps.len() - 1
        )));
    }
    let mut t = [0f64; MAX_RADIUS + 1];
    t[..taps.len()].copy_from_slice(&taps);
    let mut args = vec![int(taps.len() - 1)?.into()];
    args.extend(t.map(Arg::from));
    Ok(args)
}

/// gaussian_blur (blur::gaussian_blur); one block per image, the whole image in shared memory.
pub fn gaussian_blur(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    let mut params = vec![b.n_arg()];
    params.extend(taps_args(GAUSSIAN_SIGMA[s.index()])?);
    b.launch(dev, KernelId::CORRUPT_BLUR_GAUSSIAN, b.per_image(1), params)
}

/// glass_blur (glass::glass_blur), keyed by the batch's draw keys; one block per image.
pub fn glass_blur(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    let (sigma, passes) = GLASS[s.index()];
    let mut params = vec![b.n_arg()];
    params.extend(taps_args(sigma)?);
    params.push(int(passes)?.into());
    params.extend(b.keys());
    b.launch(dev, KernelId::CORRUPT_BLUR_GLASS, b.per_image(1), params)
}

/// defocus_blur (blur::defocus_blur); one thread per value.
pub fn defocus_blur(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    let kernel = dev.upload(&defocus_kernel(s))?;
    let params = [b.n_arg(), Arg::read(&kernel, DEFOCUS_SIDE * DEFOCUS_SIDE)];
    b.launch(dev, KernelId::CORRUPT_BLUR_DEFOCUS, b.per_value(), params)
}

/// zoom_blur (blur::zoom_blur); one thread per value.
pub fn zoom_blur(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    let factors = zoom_factors(s);
    let geometry: Vec<f64> = factors
        .iter()
        .flat_map(|&z| {
            let g = ZoomGeometry::new(CIFAR_PLANE.h, z);
            [g.s as f64, g.o as f64, g.t as f64, g.scale]
        })
        .collect();
    let geometry = dev.upload(&geometry)?;
    let params = [
        b.n_arg(),
        int(factors.len())?.into(),
        Arg::read(&geometry, 4 * factors.len()),
    ];
    b.launch(dev, KernelId::CORRUPT_BLUR_ZOOM, b.per_value(), params)
}
