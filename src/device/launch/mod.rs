//! Rust launchers of the CUDA kernels, one file per kernel file: each sets the grid and block
//! its kernel's header comment asks for, and passes the arguments through the typed launch path
//! (`CudaDevice::launch`) with the length every buffer must have for the geometry. Launchers
//! write into buffers the caller owns and never synchronise: everything runs in stream order.

pub mod augment;
pub mod augmix;
pub mod bn_act;
pub mod conv2d;
pub mod corrupt_blur;
pub mod corrupt_elastic;
pub mod corrupt_pixel;
pub mod corrupt_weather;
pub mod elementwise;
pub mod linear;
pub mod loss;
pub mod optim;
pub mod pgd;
pub mod soft_relu;

use super::args::LaunchConfig;
use super::buffer::DeviceBuffer;
use crate::error::{Error, Result};

/// The threads per block of every 1-D launch (the kernels' `__launch_bounds__`).
pub(crate) const BLOCK: u32 = 256;

/// Blocks of `BLOCK` threads covering `n` elements.
pub(crate) fn blocks(n: usize) -> u32 {
    n.div_ceil(BLOCK as usize).max(1) as u32
}

pub(crate) fn grid(x: u32, y: u32, z: u32, block: (u32, u32, u32)) -> LaunchConfig {
    LaunchConfig {
        grid: (x.max(1), y.max(1), z.max(1)),
        block,
        shared_bytes: 0,
    }
}

pub(crate) fn linear_grid(n: usize) -> LaunchConfig {
    grid(blocks(n), 1, 1, (BLOCK, 1, 1))
}

/// Sizes passed to kernels as `int`: every tensor the models use has fewer than 2^31 elements.
pub(crate) fn int(v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::shape("CUDA launch", "fewer than 2^31 elements", v))
}

/// Bytes of one CIFAR image, u8 [3, 32, 32]: the corruption kernels' unit.
pub const CIFAR_IMAGE: usize = 3 * 32 * 32;

/// Checks that `images` and `out` hold `n` CIFAR images each and returns (n, n·3·32·32) as
/// kernel `int`s (for the corruption launchers).
pub fn cifar_batch(
    name: &str,
    images: &DeviceBuffer<u8>,
    n: usize,
    out: &DeviceBuffer<u8>,
) -> Result<(i32, i32)> {
    let total = n
        .checked_mul(CIFAR_IMAGE)
        .ok_or_else(|| Error::shape(name, "fewer than 2^31 values", n))?;
    if images.len() != total.max(1) || out.len() != total.max(1) {
        return Err(Error::shape(
            name,
            format!("{n} images of 3x32x32 bytes in and out ({total} bytes)"),
            format!("{} bytes in, {} out", images.len(), out.len()),
        ));
    }
    Ok((int(n)?, int(total)?))
}
