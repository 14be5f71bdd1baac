//! kernels/augment.cu: training batches assembled on the GPU from the resident u8 dataset.

use crate::data::ImageShape;
use crate::device::args::{Arg, Len};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_grid};
use crate::error::Result;

/// out [batch, c, h, w] = images[indices] / 255, randomly cropped (zero padding `pad`) and
/// flipped with the draws of `data::batch::make_batch` at `key`.
#[allow(clippy::too_many_arguments)]
pub fn crop_flip(
    dev: &CudaDevice,
    images: &DeviceBuffer<u8>,
    indices: &DeviceBuffer<u32>,
    s: ImageShape,
    pad: usize,
    seed: u64,
    key: u64,
    out: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let geometry = vec![
        int(s.c)?.into(),
        int(s.h)?.into(),
        int(s.w)?.into(),
        int(pad)?.into(),
        seed.into(),
        key.into(),
    ];
    gather(
        dev,
        KernelId::AUGMENT_CROP_FLIP,
        images,
        indices,
        s,
        geometry,
        out,
    )
}

/// out [batch, c, h, w] = images[indices] / 255.
pub fn to_float(
    dev: &CudaDevice,
    images: &DeviceBuffer<u8>,
    indices: &DeviceBuffer<u32>,
    s: ImageShape,
    out: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let per = s.c * s.h * s.w;
    gather(
        dev,
        KernelId::AUGMENT_TO_FLOAT,
        images,
        indices,
        s,
        vec![int(per)?.into()],
        out,
    )
}

/// A kernel that builds out [batch, c, h, w] from images[indices], one block row per image:
/// its arguments are the images, the indices, the batch size, `settings`, and `out`.
fn gather(
    dev: &CudaDevice,
    kernel: KernelId,
    images: &DeviceBuffer<u8>,
    indices: &DeviceBuffer<u32>,
    s: ImageShape,
    settings: Vec<Arg<'_>>,
    out: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let batch = indices.len();
    let per = s.c * s.h * s.w;
    let grid = launch_grid(per.div_ceil(256) as u32, batch as u32, 1, (256, 1, 1));
    let mut args = vec![
        Arg::read(images, Len::MultipleOf(per)),
        Arg::read(indices, batch),
        int(batch)?.into(),
    ];
    args.extend(settings);
    args.push(Arg::write(out, batch * per));
    dev.launch(kernel, grid, &args)
}
