//! kernels/elementwise.cu's global average pool and its backward.

use crate::device::args::Arg;
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_1d};
use crate::error::Result;

/// Global average pool of `planes` maps of `hw` pixels.
pub fn avg_pool(
    dev: &CudaDevice,
    x: &DeviceBuffer<f32>,
    planes: usize,
    hw: usize,
    y: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let inv = (1.0 / hw as f64) as f32;
    dev.launch(
        KernelId::ELEMENTWISE_AVGPOOL_FWD,
        launch_1d(planes),
        &[
            Arg::read(x, planes * hw),
            int(planes)?.into(),
            int(hw)?.into(),
            inv.into(),
            Arg::write(y, planes),
        ],
    )
}

pub fn avg_pool_backward(
    dev: &CudaDevice,
    dy: &DeviceBuffer<f32>,
    planes: usize,
    hw: usize,
    dx: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let inv = (1.0 / hw as f64) as f32;
    dev.launch(
        KernelId::ELEMENTWISE_AVGPOOL_BWD,
        launch_1d(planes * hw),
        &[
            Arg::read(dy, planes),
            int(planes)?.into(),
            int(hw)?.into(),
            inv.into(),
            Arg::write(dx, planes * hw),
        ],
    )
}
