//! kernels/corrupt_elastic.cu: elastic_transform and spatter's mud branch (severities 4-5) of
//! an [`ImageBatch`]. The Gaussian taps and severity parameters come from the CPU modules
//! (src/corrupt/elastic.rs, spatter.rs), so both backends use the same bits. The small tap
//! tables uploaded per launch are freed in stream order when dropped, so they outlive the
//! kernel.

use super::ImageBatch;
use crate::corrupt::filter::gaussian_taps;
use crate::corrupt::{elastic, spatter, Severity};
use crate::device::args::Arg;
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::int;
use crate::device::kernels::KernelId;
use crate::error::{Error, Result};

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

/// elastic_transform (`corrupt::elastic::elastic_transform`, bit-identical), keyed by the
/// batch's draw keys; one block per image.
pub fn elastic_transform(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    let (alpha, sigma, jitter) = elastic::PARAMS[s.index()];
    let (taps, radius) = taps_arg(dev, sigma, elastic::FIELD_TRUNCATE)?;
    let [family_seed, first] = b.keys();
    let params = [
        b.n_arg(),
        family_seed,
        first,
        Arg::read(&taps, radius as usize + 1),
        radius.into(),
        alpha.into(),
        jitter.into(),
    ];
    b.launch(
        dev,
        KernelId::CORRUPT_ELASTIC_TRANSFORM,
        b.per_image(1),
        params,
    )
}

/// spatter at severity 4 or 5 (mud), mirroring `corrupt::spatter::spatter`. Severities 1-3
/// (water) have no kernel: this returns an error for them, and callers run those on the CPU
/// (`corrupt::corrupt_batch`).
pub fn spatter(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    let c = spatter::PARAMS[s.index()];
    if !c.mud {
        return Err(Error::Config(format!(
            "spatter severity {} (water) has no GPU kernel: its Canny, distance transform and \
             histogram equalisation run on the CPU (corrupt::corrupt_batch); only severities 4-5 \
             (mud) run on the GPU",
            s.get()
        )));
    }
    let (layer_taps, layer_radius) = taps_arg(dev, c.blur, spatter::TRUNCATE)?;
    let (mud_taps, mud_radius) = taps_arg(dev, c.k, spatter::TRUNCATE)?;
    let [family_seed, first] = b.keys();
    let params = [
        b.n_arg(),
        family_seed,
        first,
        Arg::read(&layer_taps, layer_radius as usize + 1),
        layer_radius.into(),
        Arg::read(&mud_taps, mud_radius as usize + 1),
        mud_radius.into(),
        c.mean.into(),
        c.std.into(),
        c.threshold.into(),
    ];
    b.launch(
        dev,
        KernelId::CORRUPT_ELASTIC_SPATTER_MUD,
        b.per_image(1),
        params,
    )
}
