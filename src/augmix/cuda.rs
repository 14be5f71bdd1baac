//! kernels/augmix.cu: AugMix of a training batch on the GPU, from the resident u8 dataset.

use crate::augmix::ops::rotation_coeffs;
use crate::augmix::AugMixConfig;
use crate::data::batch::CropFlip;
use crate::data::ImageShape;
use crate::device::args::{Arg, LaunchConfig, Len};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::int;
use crate::device::kernels::KernelId;
use crate::error::{Error, Result};

/// Threads per block (the kernel's `__launch_bounds__`).
const THREADS: u32 = 256;
/// The rotation table's range: whole degrees −MAX_DEG..=MAX_DEG (severity ≤ 10 reaches 29).
const MAX_DEG: i32 = 30;
/// The kernel's static shared memory (histograms, LUTs, chain weights: 4,248 bytes with
/// NVRTC 13 for sm_90), rounded up: the two images in dynamic shared memory get the rest of
/// what one block can have.
const STATIC_SHARED: usize = 4 * 1024 + 256;

/// out [batch, 3, h, w] = `augmix::augmix_batch` of images[indices] (cropped and flipped with
/// `crop`'s draws first when given), bit-identical to the CPU.
#[allow(clippy::too_many_arguments)]
pub fn augmix(
    dev: &CudaDevice,
    images: &DeviceBuffer<u8>,
    indices: &DeviceBuffer<u32>,
    s: ImageShape,
    crop: Option<CropFlip>,
    key: u64,
    cfg: &AugMixConfig,
    seed: u64,
    out: &mut DeviceBuffer<f32>,
) -> Result<()> {
    cfg.validate()?;
    let per = s.c * s.h * s.w;
    if s.c != 3 || per == 0 {
        return Err(Error::shape(
            "augmix batch",
            "non-empty RGB images",
            format!("{}x{}x{}", s.c, s.h, s.w),
        ));
    }
    let shared = (2 * per).next_multiple_of(16);
    let room = dev.max_shared_per_block().saturating_sub(STATIC_SHARED);
    if shared > room {
        let side = ((room / 6) as f64).sqrt() as usize;
        return Err(Error::Config(format!(
            "augmix on the GPU keeps two images in shared memory: {}x{} images need {shared} \
             bytes, more than the {room} this device leaves a block (images up to {side}x{side} \
             fit)",
            s.h, s.w
        )));
    }
    let batch = indices.len();
    if batch == 0 {
        return Ok(());
    }
    let table: Vec<f64> = (-MAX_DEG..=MAX_DEG)
        .flat_map(|d| {
            let (cos, sin) = rotation_coeffs(d);
            [cos, sin]
        })
        .collect();
    let table = dev.upload(&table)?;
    let (pad, crop_seed) = match crop {
        Some(c) => (int(c.pad)?, c.seed),
        None => (-1, 0),
    };
    dev.launch(
        KernelId::AUGMIX_BATCH,
        LaunchConfig {
            grid: (batch as u32, 1, 1),
            block: (THREADS, 1, 1),
            shared_bytes: shared as u32,
        },
        &[
            Arg::read(images, Len::MultipleOf(per)),
            Arg::read(indices, batch),
            int(batch)?.into(),
            int(s.h)?.into(),
            int(s.w)?.into(),
            pad.into(),
            crop_seed.into(),
            key.into(),
            seed.into(),
            int(cfg.width)?.into(),
            int(cfg.depth.unwrap_or(0))?.into(),
            cfg.severity.into(),
            cfg.alpha.into(),
            int(cfg.ops().len())?.into(),
            Arg::read(&table, table.len()),
            Arg::write(out, batch * per),
        ],
    )
}
