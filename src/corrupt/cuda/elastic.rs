//! kernels/corrupt_elastic.cu: elastic_transform and spatter's mud branch (severities 4-5) of a
//! batch of CIFAR images resident on the device. The Gaussian taps and severity parameters come
//! from the CPU modules (src/corrupt/elastic.rs, spatter.rs), so both backends use the same bits.
//! The small tap tables uploaded per launch are freed in stream order when dropped, so they
//! outlive the kernel.

use super::cifar_batch;
use crate::corrupt::filter::gaussian_taps;
use crate::corrupt::{elastic, spatter, Severity};
use crate::device::args::{Arg, LaunchConfig};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_grid};
use crate::error::{Error, Result};

const THREADS: u32 = 256;

/// One block per image.
fn per_image(n: usize) -> LaunchConfig {
    launch_grid(n as u32, 1, 1, (THREADS, 1, 1))
}

/// A Gaussian's taps on the device with their radius; σ = 0 becomes the single tap 1.0, which
/// leaves a plane exactly as it is (what scipy and `filter::gaussian_plane` do for σ = 0).
fn taps_arg(dev: &CudaDevice, sigma: f64, truncate: f64) -> Result<(DeviceBuffer<f64>, i32)> {
    let taps = if sigma > 0.0 {
        gaussian_taps(sigma, truncate)
    } else {
        vec![1.0]
    };
    Ok((dev.upload(&taps)?, int(taps.len() - 1)?))
}

/// elastic_transform of `n` images (dataset images first..first+n, draws keyed by
/// `family_seed`) into `out`; bit-identical to `corrupt::elastic::elastic_transform`.
pub fn elastic_transform(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    family_seed: u64,
    first: u64,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let (ni, total) = cifar_batch("corrupt_elastic_transform", images, n, out)?;
    let (alpha, sigma, jitter) = elastic::PARAMS[s.index()];
    let (taps, radius) = taps_arg(dev, sigma, elastic::FIELD_TRUNCATE)?;
    dev.launch(
        KernelId::CORRUPT_ELASTIC_TRANSFORM,
        per_image(n),
        &[
            Arg::read(images, total as usize),
            ni.into(),
            family_seed.into(),
            first.into(),
            Arg::read(&taps, radius as usize + 1),
            radius.into(),
            alpha.into(),
            jitter.into(),
            Arg::write(out, total as usize),
        ],
    )
}

/// spatter of `n` images at severity 4 or 5 (mud) into `out`, mirroring
/// `corrupt::spatter::spatter`. Severities 1-3 (water) have no kernel: this returns an error
/// for them, and callers run those on the CPU (`corrupt::corrupt_batch`).
pub fn spatter(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    family_seed: u64,
    first: u64,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let c = spatter::PARAMS[s.index()];
    if !c.mud {
        return Err(Error::Config(format!(
            "spatter severity {} (water) has no GPU kernel: its Canny, distance transform and \
             histogram equalisation run on the CPU (corrupt::corrupt_batch); only severities 4-5 \
             (mud) run on the GPU",
            s.get()
        )));
    }
    let (ni, total) = cifar_batch("corrupt_elastic_spatter_mud", images, n, out)?;
    let (layer_taps, layer_radius) = taps_arg(dev, c.blur, spatter::TRUNCATE)?;
    let (mud_taps, mud_radius) = taps_arg(dev, c.k, spatter::TRUNCATE)?;
    dev.launch(
        KernelId::CORRUPT_ELASTIC_SPATTER_MUD,
        per_image(n),
        &[
            Arg::read(images, total as usize),
            ni.into(),
            family_seed.into(),
            first.into(),
            Arg::read(&layer_taps, layer_radius as usize + 1),
            layer_radius.into(),
            Arg::read(&mud_taps, mud_radius as usize + 1),
            mud_radius.into(),
            c.mean.into(),
            c.std.into(),
            c.threshold.into(),
            Arg::write(out, total as usize),
        ],
    )
}
