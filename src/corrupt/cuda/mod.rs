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
use crate::device::args::{Arg, LaunchConfig};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_grid};
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
    if !has_kernel(c, s) {
        let host = dev.download(images)?;
        let done = corrupt_batch(c, s, &host, CIFAR_PLANE, first, seed, &res.host)?;
        return dev.upload_into(&done, out);
    }
    let fs = ImageKey::family_seed(seed, c, s);
    let b = &mut ImageBatch::new(c.name(), images, n, out)?.keyed(fs, first);
    match c {
        Corruption::GaussianNoise
        | Corruption::ShotNoise
        | Corruption::ImpulseNoise
        | Corruption::SpeckleNoise => pixel::noise(dev, c, s, b),
        Corruption::Brightness => pixel::brightness(dev, s, b),
        Corruption::Contrast => pixel::contrast(dev, s, b),
        Corruption::Saturate => pixel::saturate(dev, s, b),
        Corruption::Pixelate => pixel::pixelate(dev, s, b),
        Corruption::GaussianBlur => blur::gaussian_blur(dev, s, b),
        Corruption::DefocusBlur => blur::defocus_blur(dev, s, b),
        Corruption::GlassBlur => blur::glass_blur(dev, s, b),
        Corruption::ZoomBlur => blur::zoom_blur(dev, s, b),
        Corruption::MotionBlur => weather::motion_blur(dev, s, b),
        Corruption::Snow => weather::snow(dev, s, b),
        Corruption::Fog => weather::fog(dev, s, b),
        Corruption::Frost => {
            let tiles = res.frost.as_ref().expect("checked by Resources::check");
            weather::frost(dev, s, tiles, b)
        }
        Corruption::ElasticTransform => elastic::elastic_transform(dev, s, b),
        Corruption::Spatter => elastic::spatter(dev, s, b),
        Corruption::JpegCompression => unreachable!("has_kernel is false for jpeg_compression"),
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

/// Threads per block of every corruption kernel: their `__launch_bounds__`, and the per-thread
/// tables of kernels/corrupt_blur.cu, are written for it.
const THREADS: u32 = 256;

/// One launch's images: `n` CIFAR images u8 [n, 3, 32, 32] in, as many out, and the keys of
/// their random draws. Built only through [`ImageBatch::new`], which checks both buffers, so no
/// launcher can hand a kernel a buffer shorter than the images it reads or writes.
pub struct ImageBatch<'a> {
    images: &'a DeviceBuffer<u8>,
    out: &'a mut DeviceBuffer<u8>,
    n: usize,
    /// `ImageKey::family_seed(seed, c, s)` of the corruption being drawn (0 when deterministic).
    family_seed: u64,
    /// The dataset index of image 0, which keys its draws.
    first: u64,
}

impl<'a> ImageBatch<'a> {
    /// Checks that `images` and `out` hold `n` CIFAR images each (`name` says whose batch it is
    /// in the error). An empty batch (n = 0, one-byte buffers) is allowed and launches nothing.
    pub fn new(
        name: &str,
        images: &'a DeviceBuffer<u8>,
        n: usize,
        out: &'a mut DeviceBuffer<u8>,
    ) -> Result<ImageBatch<'a>> {
        let total = n
            .checked_mul(CIFAR_IMAGE)
            .filter(|&t| int(t).is_ok())
            .ok_or_else(|| Error::shape(name, "fewer than 2^31 values", n))?;
        if images.len() != total.max(1) || out.len() != total.max(1) {
            return Err(Error::shape(
                name,
                format!("{n} images of 3x32x32 bytes in and out ({total} bytes)"),
                format!("{} bytes in, {} out", images.len(), out.len()),
            ));
        }
        Ok(ImageBatch {
            images,
            out,
            n,
            family_seed: 0,
            first: 0,
        })
    }

    /// The batch with the draw keys of a random corruption.
    pub fn keyed(self, family_seed: u64, first: u64) -> ImageBatch<'a> {
        ImageBatch {
            family_seed,
            first,
            ..self
        }
    }

    /// The number of images.
    pub fn count(&self) -> usize {
        self.n
    }

    /// `blocks` blocks of [`THREADS`] per image (grid (n, blocks)).
    fn per_image(&self, blocks: usize) -> LaunchConfig {
        launch_grid(self.n as u32, blocks as u32, 1, (THREADS, 1, 1))
    }

    /// One thread per value of the batch.
    fn per_value(&self) -> LaunchConfig {
        let blocks = (self.n * CIFAR_IMAGE).div_ceil(THREADS as usize);
        launch_grid(blocks as u32, 1, 1, (THREADS, 1, 1))
    }

    /// The number of images as a kernel `int` (fits: checked by [`ImageBatch::new`]).
    fn n_arg(&self) -> Arg<'static> {
        (self.n as i32).into()
    }

    /// The number of bytes as a kernel `int`.
    fn total_arg(&self) -> Arg<'static> {
        ((self.n * CIFAR_IMAGE) as i32).into()
    }

    /// The draw keys (family seed, first) as kernel arguments, in that order.
    fn keys(&self) -> [Arg<'static>; 2] {
        [self.family_seed.into(), self.first.into()]
    }

    /// Launches `kernel` with the arguments every corruption kernel has: the images first,
    /// then `params`, then the output. An empty batch launches nothing (a grid is never empty).
    fn launch<'p>(
        &'p mut self,
        dev: &CudaDevice,
        kernel: KernelId,
        cfg: LaunchConfig,
        params: impl IntoIterator<Item = Arg<'p>>,
    ) -> Result<()> {
        if self.n == 0 {
            return Ok(());
        }
        let total = self.n * CIFAR_IMAGE;
        let mut args = vec![Arg::read(self.images, total)];
        args.extend(params);
        args.push(Arg::write(self.out, total));
        dev.launch(kernel, cfg, &args)
    }
}
