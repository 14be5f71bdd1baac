//! kernels/corrupt_weather.cu: the motion_blur, snow, fog and frost corruptions of an
//! [`ImageBatch`]. Each draws exactly what the CPU draws (src/corrupt/motion.rs, weather.rs,
//! frost.rs) for the batch's dataset images.

use super::{ImageBatch, CIFAR_IMAGE, THREADS};
use crate::corrupt::frost::{self, FrostTiles};
use crate::corrupt::{filter, motion, weather, Severity};
use crate::device::args::{Arg, Len};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::int;
use crate::device::kernels::KernelId;
use crate::error::{Error, Result};

/// The side every kernel of the file is written for.
const SIDE: usize = 32;
/// The most motion-blur taps the kernels hold (their shared arrays).
const MAX_TAPS: usize = 32;

/// IM's motion-blur weights for (radius, sigma), on the device, and their count.
fn upload_taps(dev: &CudaDevice, radius: f64, sigma: f64) -> Result<(DeviceBuffer<f64>, usize)> {
    let taps = motion::taps(radius, sigma);
    if taps.len() > MAX_TAPS {
        return Err(Error::Config(format!(
            "motion blur with radius {radius} needs {} taps, the weather kernels hold at most \
             {MAX_TAPS}",
            taps.len()
        )));
    }
    Ok((dev.upload(&taps)?, taps.len()))
}

/// motion_blur (spec §4.8); (n, pixels / 256) blocks.
pub fn motion_blur(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    let (radius, sigma) = motion::params(s);
    let (taps, ntaps) = upload_taps(dev, radius, sigma)?;
    let [family_seed, first] = b.keys();
    let params = [
        b.n_arg(),
        Arg::read(&taps, ntaps),
        int(ntaps)?.into(),
        motion::ANGLE_LO.into(),
        motion::ANGLE_SPAN.into(),
        family_seed,
        first,
    ];
    let cfg = b.per_image((SIDE * SIDE).div_ceil(THREADS as usize));
    b.launch(dev, KernelId::CORRUPT_WEATHER_MOTION_BLUR, cfg, params)
}

/// snow (spec §4.10); one block per image.
pub fn snow(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    let sp = weather::snow_params(s);
    let (taps, ntaps) = upload_taps(dev, sp.radius, sp.sigma)?;
    // filter::center_zoom's geometry: crop side, crop origin, trim of the zoomed square, and
    // the corner-aligned source step.
    let side = (SIDE as f64 / sp.zoom).ceil() as usize;
    let origin = (SIDE - side) / 2;
    let zoomed = filter::round_half_even(side as f64 * sp.zoom) as usize;
    let trim = (zoomed - SIDE) / 2;
    let scale = if zoomed > 1 {
        (side - 1) as f64 / (zoomed - 1) as f64
    } else {
        0.0
    };
    let keep = sp.blend as f32;
    let lighten = (1.0 - sp.blend) as f32;
    let [family_seed, first] = b.keys();
    let params = [
        b.n_arg(),
        Arg::read(&taps, ntaps),
        int(ntaps)?.into(),
        sp.mean.into(),
        sp.std.into(),
        int(side)?.into(),
        int(origin)?.into(),
        int(trim)?.into(),
        scale.into(),
        sp.threshold.into(),
        keep.into(),
        lighten.into(),
        weather::SNOW_ANGLE_LO.into(),
        weather::SNOW_ANGLE_SPAN.into(),
        family_seed,
        first,
    ];
    b.launch(dev, KernelId::CORRUPT_WEATHER_SNOW, b.per_image(1), params)
}

/// fog (spec §4.12); one block per image.
pub fn fog(dev: &CudaDevice, s: Severity, b: &mut ImageBatch) -> Result<()> {
    let (strength, decay) = weather::fog_params(s);
    let [family_seed, first] = b.keys();
    let params = [b.n_arg(), strength.into(), decay.into(), family_seed, first];
    b.launch(dev, KernelId::CORRUPT_WEATHER_FOG, b.per_image(1), params)
}

/// The five frost tiles on the device, uploaded once and reused by every [`frost`] launch.
pub struct FrostDeviceTiles {
    /// The tiles' RGB HWC bytes, back to back.
    tiles: DeviceBuffer<u8>,
    /// Per tile: (offset in `tiles`, height, width).
    table: DeviceBuffer<i32>,
}

/// Uploads the frost tiles in the order the texture draw indexes them.
pub fn upload_frost_tiles(dev: &CudaDevice, tiles: &FrostTiles) -> Result<FrostDeviceTiles> {
    let mut bytes = Vec::new();
    let mut table = Vec::new();
    for t in tiles.tiles() {
        table.extend([int(bytes.len())?, int(t.h)?, int(t.w)?]);
        bytes.extend_from_slice(&t.rgb);
    }
    Ok(FrostDeviceTiles {
        tiles: dev.upload(&bytes)?,
        table: dev.upload(&table)?,
    })
}

/// frost with the uploaded tiles (spec §4.11); (n, values / 256) blocks.
pub fn frost(
    dev: &CudaDevice,
    s: Severity,
    tiles: &FrostDeviceTiles,
    b: &mut ImageBatch,
) -> Result<()> {
    let (a, w) = frost::weights(s);
    let [family_seed, first] = b.keys();
    let params = [
        b.n_arg(),
        Arg::read(&tiles.tiles, Len::AtLeast(1)),
        Arg::read(&tiles.table, 3 * frost::FILES.len()),
        a.into(),
        w.into(),
        family_seed,
        first,
    ];
    let cfg = b.per_image(CIFAR_IMAGE.div_ceil(THREADS as usize));
    b.launch(dev, KernelId::CORRUPT_WEATHER_FROST, cfg, params)
}
