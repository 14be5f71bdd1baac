//! The corruptions on the GPU: one dispatch over the CUDA launchers of this folder (one file
//! per kernel file, kernels/corrupt_*.cu), which draw the same keyed numbers as the CPU code. Two
//! corruptions have parts that stay on the CPU, as corruptions-spec.md §4 allows: JPEG
//! (libjpeg-turbo's exact integer pipeline) and spatter's water mode (severities 1-3: Canny,
//! a chamfer distance transform and histogram equalisation, all sequential per image). Those
//! round-trip through the host here, so a caller sees one interface.

pub mod blur;
pub mod elastic;
pub mod pixel;
pub mod weather;

use super::{corrupt_batch, Corruption, ImageKey, Resources, Severity, CIFAR_PLANE};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::int;
use crate::error::{Error, Result};

/// Device copies of what the corruptions need beyond the images (the frost textures).
pub struct GpuResources {
    host: Resources,
    frost: Option<weather::FrostDeviceTiles>,
}

impl GpuResources {
    pub fn upload(dev: &CudaDevice, res: &Resources) -> Result<GpuResources> {
        Ok(GpuResources {
            host: res.clone(),
            frost: res
                .frost
                .as_ref()
                .map(|t| weather::upload_frost_tiles(dev, t))
                .transpose()?,
        })
    }
}

/// Whether (c, s) runs as CUDA kernels (false: the host path of this module's doc).
pub fn has_kernel(c: Corruption, s: Severity) -> bool {
    match c {
        Corruption::JpegCompression => false,
        Corruption::Spatter => s.get() >= 4,
        _ => true,
    }
}

/// Corrupts `n` resident CHW 32×32 images (image j is dataset image `first + j`) into `out`.
#[allow(clippy::too_many_arguments)]
pub fn corrupt_device(
    dev: &CudaDevice,
    c: Corruption,
    s: Severity,
    images: &DeviceBuffer<u8>,
    n: usize,
    first: u64,
    seed: u64,
    res: &GpuResources,
    out: &mut DeviceBuffer<u8>,
) -> Result<()> {
    res.host.check(c)?;
    let fs = ImageKey::family_seed(seed, c, s);
    match c {
        Corruption::GaussianNoise
        | Corruption::ShotNoise
        | Corruption::ImpulseNoise
        | Corruption::SpeckleNoise => pixel::noise(dev, c, s, images, n, fs, first, out),
        Corruption::Brightness => pixel::brightness(dev, s, images, n, out),
        Corruption::Contrast => pixel::contrast(dev, s, images, n, out),
        Corruption::Saturate => pixel::saturate(dev, s, images, n, out),
        Corruption::Pixelate => pixel::pixelate(dev, s, images, n, out),
        Corruption::GaussianBlur => blur::gaussian_blur(dev, s, images, n, out),
        Corruption::DefocusBlur => blur::defocus_blur(dev, s, images, n, out),
        Corruption::GlassBlur => blur::glass_blur(dev, s, images, n, fs, first, out),
        Corruption::ZoomBlur => blur::zoom_blur(dev, s, images, n, out),
        Corruption::MotionBlur => weather::motion_blur(dev, s, images, n, fs, first, out),
        Corruption::Snow => weather::snow(dev, s, images, n, fs, first, out),
        Corruption::Fog => weather::fog(dev, s, images, n, fs, first, out),
        Corruption::Frost => {
            let tiles = res.frost.as_ref().expect("checked by Resources::check");
            weather::frost(dev, s, images, n, fs, first, tiles, out)
        }
        Corruption::ElasticTransform => {
            elastic::elastic_transform(dev, s, images, n, fs, first, out)
        }
        Corruption::Spatter if has_kernel(c, s) => {
            elastic::spatter(dev, s, images, n, fs, first, out)
        }
        Corruption::Spatter | Corruption::JpegCompression => {
            let host = dev.download(images)?;
            let done = corrupt_batch(c, s, &host, CIFAR_PLANE, first, seed, &res.host)?;
            dev.upload_into(&done, out)
        }
    }
}

/// [`super::corrupt_batch`] on the GPU: upload, corrupt, download.
pub fn corrupt_batch_gpu(
    dev: &CudaDevice,
    c: Corruption,
    s: Severity,
    images: &[u8],
    first: u64,
    seed: u64,
    res: &Resources,
) -> Result<Vec<u8>> {
    let per = 3 * CIFAR_PLANE.len();
    if images.is_empty() || !images.len().is_multiple_of(per) {
        return Err(Error::shape(
            c.name(),
            "a whole number of 3x32x32 images",
            format!("{} bytes", images.len()),
        ));
    }
    let n = images.len() / per;
    let input = dev.upload(images)?;
    let mut out = dev.alloc::<u8>(images.len())?;
    let gres = GpuResources::upload(dev, res)?;
    corrupt_device(dev, c, s, &input, n, first, seed, &gres, &mut out)?;
    dev.download(&out)
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
