//! Training batches on the GPU: the dataset resident on the device, and each batch's crop,
//! flip and conversion (kernels/augment.cu, launched from cuda.rs) or its AugMix view
//! (kernels/augmix.cu, `augmix::cuda`) assembled there with exactly the draws of the CPU's
//! `data::batch::make_batch` and `augmix::augmix_batch`. It sits above data and augmix, which
//! know nothing of it.

pub mod cuda;

use crate::augmix::AugMixConfig;
use crate::data::batch::CropFlip;
use crate::data::{ImageSet, ImageShape};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::sync::Arc;

/// A dataset resident on the GPU, so batches are cropped, flipped and converted there with the
/// same draws as `make_batch` (only the batch's indices travel per step).
pub struct GpuImages {
    images: DeviceBuffer<u8>,
    device: Arc<CudaDevice>,
    shape: ImageShape,
}

impl GpuImages {
    pub fn upload(set: &ImageSet, device: &Arc<CudaDevice>) -> Result<GpuImages> {
        Ok(GpuImages {
            images: device.upload(&set.images)?,
            device: device.clone(),
            shape: set.shape(),
        })
    }

    /// The resident u8 images, [len, c, h, w].
    pub fn images(&self) -> &DeviceBuffer<u8> {
        &self.images
    }

    /// The GPU counterpart of `make_batch` (pixels only; labels come from the host set).
    pub fn batch(&self, indices: &[usize], aug: Option<CropFlip>, key: u64) -> Result<Tensor> {
        let d = &self.device;
        let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        let idx = d.upload(&idx)?;
        let s = self.shape;
        let shape = [indices.len(), s.c, s.h, s.w];
        let mut out = d.alloc::<f32>(shape.iter().product())?;
        match aug {
            Some(a) => cuda::crop_flip(d, &self.images, &idx, s, a.pad, a.seed, key, &mut out)?,
            None => cuda::to_float(d, &self.images, &idx, s, &mut out)?,
        }
        Ok(Tensor::from_gpu(&shape, out))
    }

    /// The GPU counterpart of `augmix::augmix_batch`: the crop/flip and AugMix of every image
    /// on the device (kernels/augmix.cu), bit-identical to the CPU.
    pub fn augmix_batch(
        &self,
        indices: &[usize],
        crop: Option<CropFlip>,
        key: u64,
        cfg: &AugMixConfig,
        seed: u64,
    ) -> Result<Tensor> {
        cfg.validate()?;
        let s = self.shape;
        let count = self.images.len() / (s.c * s.h * s.w).max(1);
        if let Some(&bad) = indices.iter().find(|&&i| i >= count) {
            return Err(Error::shape(
                "augmix batch",
                format!("image indices below {count}"),
                bad,
            ));
        }
        let d = &self.device;
        let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        let idx = d.upload(&idx)?;
        let shape = [indices.len(), s.c, s.h, s.w];
        let mut out = d.alloc::<f32>(shape.iter().product())?;
        crate::augmix::cuda::augmix(d, &self.images, &idx, s, crop, key, cfg, seed, &mut out)?;
        Ok(Tensor::from_gpu(&shape, out))
    }
}
