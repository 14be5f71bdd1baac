//! kernels/linear.cu: y = x wᵀ + b and its gradients.

use super::{func, grid, int, launch, linear_grid};
use crate::device::cuda::CudaDevice;
use crate::error::Result;
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

/// The 16x16-thread tiling of the three GEMM kernels over a rows x cols output.
fn tiles(rows: usize, cols: usize) -> LaunchConfig {
    grid(
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
    fn ints(&self) -> Result<(i32, i32, i32)> {
        Ok((int(self.n)?, int(self.inp)?, int(self.out)?))
    }
}

pub fn forward(
    dev: &CudaDevice,
    s: LinearShape,
    x: &CudaSlice<f32>,
    w: &CudaSlice<f32>,
    bias: &CudaSlice<f32>,
    y: &mut CudaSlice<f32>,
) -> Result<()> {
    let (n, i, o) = s.ints()?;
    let f = func(dev, "linear", "linear_fwd")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(w).arg(bias).arg(&n).arg(&i).arg(&o).arg(y);
    launch("linear_fwd", b, tiles(s.n, s.out))
}

pub fn backward_data(
    dev: &CudaDevice,
    s: LinearShape,
    w: &CudaSlice<f32>,
    dy: &CudaSlice<f32>,
    dx: &mut CudaSlice<f32>,
) -> Result<()> {
    let (n, i, o) = s.ints()?;
    let f = func(dev, "linear", "linear_bwd_data")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(w).arg(dy).arg(&n).arg(&i).arg(&o).arg(dx);
    launch("linear_bwd_data", b, tiles(s.n, s.inp))
}

/// dw = dyᵀ x and db = Σ_n dy.
pub fn backward_params(
    dev: &CudaDevice,
    s: LinearShape,
    x: &CudaSlice<f32>,
    dy: &CudaSlice<f32>,
    dw: &mut CudaSlice<f32>,
    db: &mut CudaSlice<f32>,
) -> Result<()> {
    let (n, i, o) = s.ints()?;
    let f = func(dev, "linear", "linear_bwd_weight")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(dy).arg(&n).arg(&i).arg(&o).arg(dw);
    launch("linear_bwd_weight", b, tiles(s.out, s.inp))?;
    let f = func(dev, "linear", "linear_bwd_bias")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(dy).arg(&n).arg(&o).arg(db);
    launch("linear_bwd_bias", b, linear_grid(s.out))
}
