//! kernels/augment.cu: training batches assembled on the GPU from the resident u8 dataset.

use super::{func, grid, int, launch};
use crate::device::cuda::CudaDevice;
use crate::error::Result;
use cudarc::driver::{CudaSlice, PushKernelArg};

/// Image size of the resident dataset: [count, c, h, w] u8.
#[derive(Clone, Copy, Debug)]
pub struct ImageShape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

/// out [batch, c, h, w] = images[indices] / 255, randomly cropped (zero padding `pad`) and
/// flipped with the draws of `data::batch::make_batch` at `key`.
#[allow(clippy::too_many_arguments)]
pub fn crop_flip(
    dev: &CudaDevice,
    images: &CudaSlice<u8>,
    indices: &CudaSlice<u32>,
    s: ImageShape,
    pad: usize,
    seed: u64,
    key: u64,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    let batch = indices.len();
    let (bi, c, h, w, p) = (int(batch)?, int(s.c)?, int(s.h)?, int(s.w)?, int(pad)?);
    let f = func(dev, "augment", "augment_crop_flip")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(images)
        .arg(indices)
        .arg(&bi)
        .arg(&c)
        .arg(&h)
        .arg(&w)
        .arg(&p)
        .arg(&seed)
        .arg(&key)
        .arg(out);
    launch(
        "augment_crop_flip",
        b,
        grid(
            (s.c * s.h * s.w).div_ceil(256) as u32,
            batch as u32,
            1,
            (256, 1, 1),
        ),
    )
}

/// out [batch, c, h, w] = images[indices] / 255.
pub fn to_float(
    dev: &CudaDevice,
    images: &CudaSlice<u8>,
    indices: &CudaSlice<u32>,
    s: ImageShape,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    let batch = indices.len();
    let per = s.c * s.h * s.w;
    let (bi, pi) = (int(batch)?, int(per)?);
    let f = func(dev, "augment", "augment_to_float")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(images).arg(indices).arg(&bi).arg(&pi).arg(out);
    launch(
        "augment_to_float",
        b,
        grid(per.div_ceil(256) as u32, batch as u32, 1, (256, 1, 1)),
    )
}
