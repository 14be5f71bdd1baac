//! kernels/conv2d.cu: implicit-GEMM convolution, v1 (SIMT f32) and v2 (TF32 tensor cores).

use super::{func, grid, int, launch, linear_grid};
use crate::device::cuda::CudaDevice;
use crate::error::Result;
use crate::geom::ConvGeom;
use cudarc::driver::{CudaSlice, PushKernelArg};

/// Which implementation: v1 is exact f32; v2 runs on tensor cores with TF32 inputs (~1e-3
/// relative error, PyTorch's default precision for convolutions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvVersion {
    V1,
    V2,
}

impl ConvVersion {
    /// The kernel file: v2 lives in kernels/conv2d_tc.cu.
    fn file(self) -> &'static str {
        match self {
            ConvVersion::V1 => "conv2d",
            ConvVersion::V2 => "conv2d_tc",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            ConvVersion::V1 => "",
            ConvVersion::V2 => "_v2",
        }
    }
    /// Width of the N tile (output pixels or weight columns) of one block.
    fn n_tile(self) -> usize {
        match self {
            ConvVersion::V1 => 64,
            ConvVersion::V2 => 128,
        }
    }
}

fn geometry(g: &ConvGeom) -> Result<[i32; 10]> {
    Ok([
        int(g.n)?,
        int(g.c_in)?,
        int(g.h)?,
        int(g.w)?,
        int(g.c_out)?,
        int(g.k)?,
        int(g.stride)?,
        int(g.pad)?,
        int(g.h_out())?,
        int(g.w_out())?,
    ])
}

pub fn forward(
    dev: &CudaDevice,
    g: &ConvGeom,
    x: &CudaSlice<f32>,
    w: &CudaSlice<f32>,
    y: &mut CudaSlice<f32>,
    v: ConvVersion,
) -> Result<()> {
    let f = func(dev, v.file(), &format!("conv2d_fwd{}", v.suffix()))?;
    let geo = geometry(g)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(w).arg(y);
    for a in &geo {
        b.arg(a);
    }
    let pixels = g.n * g.h_out() * g.w_out();
    let cfg = grid(
        pixels.div_ceil(v.n_tile()) as u32,
        g.c_out.div_ceil(64) as u32,
        1,
        (256, 1, 1),
    );
    launch("conv2d_fwd", b, cfg)
}

pub fn backward_data(
    dev: &CudaDevice,
    g: &ConvGeom,
    w: &CudaSlice<f32>,
    dy: &CudaSlice<f32>,
    dx: &mut CudaSlice<f32>,
    v: ConvVersion,
) -> Result<()> {
    let f = func(dev, v.file(), &format!("conv2d_bwd_data{}", v.suffix()))?;
    let geo = geometry(g)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(w).arg(dy).arg(dx);
    for a in &geo {
        b.arg(a);
    }
    let pixels = g.n * g.h * g.w;
    let cfg = grid(
        pixels.div_ceil(v.n_tile()) as u32,
        g.c_in.div_ceil(64) as u32,
        1,
        (256, 1, 1),
    );
    launch("conv2d_bwd_data", b, cfg)
}

/// Split-K factor: enough blocks for about two waves on the GPU, each split keeping at least
/// 1024 (sample, pixel) terms of the reduction.
fn weight_splits(dev: &CudaDevice, g: &ConvGeom, v: ConvVersion) -> usize {
    let tiles = (g.ckk().div_ceil(v.n_tile()) * g.c_out.div_ceil(64)).max(1);
    let reduction = g.n * g.h_out() * g.w_out();
    (2 * dev.sm_count())
        .div_ceil(tiles)
        .clamp(1, reduction.div_ceil(1024).max(1))
}

pub fn backward_weight(
    dev: &CudaDevice,
    g: &ConvGeom,
    x: &CudaSlice<f32>,
    dy: &CudaSlice<f32>,
    dw: &mut CudaSlice<f32>,
    v: ConvVersion,
) -> Result<()> {
    let splits = weight_splits(dev, g, v);
    let f = func(dev, v.file(), &format!("conv2d_bwd_weight{}", v.suffix()))?;
    let geo = geometry(g)?;
    let splits_i = int(splits)?;
    let cfg = grid(
        g.ckk().div_ceil(v.n_tile()) as u32,
        g.c_out.div_ceil(64) as u32,
        splits as u32,
        (256, 1, 1),
    );
    if splits == 1 {
        let mut b = dev.stream().launch_builder(&f);
        b.arg(x).arg(dy).arg(dw);
        for a in &geo {
            b.arg(a);
        }
        b.arg(&splits_i);
        return launch("conv2d_bwd_weight", b, cfg);
    }
    let len = g.w_len();
    let mut partial = dev.zeros::<f32>(splits * len)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(dy).arg(&mut partial);
    for a in &geo {
        b.arg(a);
    }
    b.arg(&splits_i);
    launch("conv2d_bwd_weight", b, cfg)?;
    let r = func(dev, "conv2d", "conv2d_bwd_weight_reduce")?;
    let len_i = int(len)?;
    let mut b = dev.stream().launch_builder(&r);
    b.arg(&partial).arg(&splits_i).arg(&len_i).arg(dw);
    launch("conv2d_bwd_weight_reduce", b, linear_grid(len))?;
    Ok(())
}
