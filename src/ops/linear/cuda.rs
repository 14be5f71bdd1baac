//! kernels/linear.cu: y = x wᵀ + b and its gradients.

use crate::device::args::{Arg, LaunchConfig};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_1d, launch_grid};
use crate::error::Result;

/// The 16x16-thread tiling of the three GEMM kernels over a rows x cols output.
fn tiles(rows: usize, cols: usize) -> LaunchConfig {
    launch_grid(
        cols.div_ceil(16) as u32,
        rows.div_ceil(16) as u32,
        1,
        (16, 16, 1),
    )
}

/// Sizes of one linear layer: x [n, inp], w [out, inp].
#[derive(Clone, Copy, Debug)]
pub struct LinearShape {
    pub n: usize,
    pub inp: usize,
    pub out: usize,
}

impl LinearShape {
    fn ints(&self) -> Result<[Arg<'static>; 3]> {
        Ok([
            int(self.n)?.into(),
            int(self.inp)?.into(),
            int(self.out)?.into(),
        ])
    }
}

pub fn forward(
    dev: &CudaDevice,
    s: LinearShape,
    x: &DeviceBuffer<f32>,
    w: &DeviceBuffer<f32>,
    bias: &DeviceBuffer<f32>,
    y: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let [n, i, o] = s.ints()?;
    dev.launch(
        KernelId::LINEAR_FWD,
        tiles(s.n, s.out),
        &[
            Arg::read(x, s.n * s.inp),
            Arg::read(w, s.out * s.inp),
            Arg::read(bias, s.out),
            n,
            i,
            o,
            Arg::write(y, s.n * s.out),
        ],
    )
}

pub fn backward_data(
    dev: &CudaDevice,
    s: LinearShape,
    w: &DeviceBuffer<f32>,
    dy: &DeviceBuffer<f32>,
    dx: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let [n, i, o] = s.ints()?;
    dev.launch(
        KernelId::LINEAR_BWD_DATA,
        tiles(s.n, s.inp),
        &[
            Arg::read(w, s.out * s.inp),
            Arg::read(dy, s.n * s.out),
            n,
            i,
            o,
            Arg::write(dx, s.n * s.inp),
        ],
    )
}

/// dw = dyᵀ x and db = Σ_n dy.
pub fn backward_params(
    dev: &CudaDevice,
    s: LinearShape,
    x: &DeviceBuffer<f32>,
    dy: &DeviceBuffer<f32>,
    dw: &mut DeviceBuffer<f32>,
    db: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let [n, i, o] = s.ints()?;
    dev.launch(
        KernelId::LINEAR_BWD_WEIGHT,
        tiles(s.out, s.inp),
        &[
            Arg::read(x, s.n * s.inp),
            Arg::read(dy, s.n * s.out),
            n,
            i,
            o,
            Arg::write(dw, s.out * s.inp),
        ],
    )?;
    dev.launch(
        KernelId::LINEAR_BWD_BIAS,
        launch_1d(s.out),
        &[
            Arg::read(dy, s.n * s.out),
            int(s.n)?.into(),
            int(s.out)?.into(),
            Arg::write(db, s.out),
        ],
    )
}
