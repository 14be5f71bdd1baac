//! kernels/corrupt_weather.cu: the motion_blur, snow, fog and frost corruptions on the GPU, for
//! images u8 [n, 3, 32, 32] already on the device. Each draws exactly what the CPU draws
//! (src/corrupt/motion.rs, weather.rs, frost.rs) for dataset images first..first + n.

use super::{cifar_batch, CIFAR_IMAGE};
use crate::corrupt::frost::{self, FrostTiles};
use crate::corrupt::{filter, motion, weather, Severity};
use crate::device::args::{Arg, Len};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_grid};
use crate::error::{Error, Result};

/// The side every kernel of the file is written for.
const SIDE: usize = 32;
/// Threads per block of every kernel of the file.
const BLOCK: u32 = 256;
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

/// motion_blur of `n` images (spec §4.8).
pub fn motion_blur(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    family_seed: u64,
    first: u64,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let (ni, total) = cifar_batch("corrupt_weather_motion_blur", images, n, out)?;
    let (radius, sigma) = motion::params(s);
    let (taps, ntaps) = upload_taps(dev, radius, sigma)?;
    let pixel_blocks = (SIDE * SIDE).div_ceil(BLOCK as usize) as u32;
    dev.launch(
        KernelId::CORRUPT_WEATHER_MOTION_BLUR,
        launch_grid(n as u32, pixel_blocks, 1, (BLOCK, 1, 1)),
        &[
            Arg::read(images, total as usize),
            ni.into(),
            Arg::read(&taps, ntaps),
            int(ntaps)?.into(),
            motion::ANGLE_LO.into(),
            motion::ANGLE_SPAN.into(),
            family_seed.into(),
            first.into(),
            Arg::write(out, total as usize),
        ],
    )
}

/// snow of `n` images (spec §4.10).
pub fn snow(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    family_seed: u64,
    first: u64,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let (ni, total) = cifar_batch("corrupt_weather_snow", images, n, out)?;
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
    dev.launch(
        KernelId::CORRUPT_WEATHER_SNOW,
        launch_grid(n as u32, 1, 1, (BLOCK, 1, 1)),
        &[
            Arg::read(images, total as usize),
            ni.into(),
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
            family_seed.into(),
            first.into(),
            Arg::write(out, total as usize),
        ],
    )
}

/// fog of `n` images (spec §4.12).
pub fn fog(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    family_seed: u64,
    first: u64,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let (ni, total) = cifar_batch("corrupt_weather_fog", images, n, out)?;
    let (strength, decay) = weather::fog_params(s);
    dev.launch(
        KernelId::CORRUPT_WEATHER_FOG,
        launch_grid(n as u32, 1, 1, (BLOCK, 1, 1)),
        &[
            Arg::read(images, total as usize),
            ni.into(),
            strength.into(),
            decay.into(),
            family_seed.into(),
            first.into(),
            Arg::write(out, total as usize),
        ],
    )
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

/// frost of `n` images with the uploaded tiles (spec §4.11).
#[allow(clippy::too_many_arguments)]
pub fn frost(
    dev: &CudaDevice,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    family_seed: u64,
    first: u64,
    tiles: &FrostDeviceTiles,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    let (ni, total) = cifar_batch("corrupt_weather_frost", images, n, out)?;
    let (a, w) = frost::weights(s);
    let value_blocks = CIFAR_IMAGE.div_ceil(BLOCK as usize) as u32;
    dev.launch(
        KernelId::CORRUPT_WEATHER_FROST,
        launch_grid(n as u32, value_blocks, 1, (BLOCK, 1, 1)),
        &[
            Arg::read(images, total as usize),
            ni.into(),
            Arg::read(&tiles.tiles, Len::AtLeast(1)),
            Arg::read(&tiles.table, 3 * frost::FILES.len()),
            a.into(),
            w.into(),
            family_seed.into(),
            first.into(),
            Arg::write(out, total as usize),
        ],
    )
}
