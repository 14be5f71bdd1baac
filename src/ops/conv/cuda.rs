//! kernels/conv2d.cu, kernels/conv2d_tc.cu and kernels/conv2d_bf16.cu: implicit-GEMM
//! convolution, v1 (SIMT f32), v2 (TF32 tensor cores) and the bf16 tensor-core forward (with
//! its operands converted to bf16 first).

use crate::device::args::Arg;
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_1d, launch_grid};
use crate::error::{Error, Result};
use crate::geom::ConvGeom;
use crate::tensor::channel_sums::ChannelSums;

/// Which implementation: v1 is exact f32; v2 runs on tensor cores with TF32 inputs (~1e-3
/// relative error, PyTorch's default precision for convolutions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvVersion {
    V1,
    V2,
}

impl ConvVersion {
    /// The (forward, backward-data, backward-weight) kernels.
    fn kernels(self) -> [KernelId; 3] {
        match self {
            ConvVersion::V1 => [
                KernelId::CONV2D_FWD,
                KernelId::CONV2D_BWD_DATA,
                KernelId::CONV2D_BWD_WEIGHT,
            ],
            ConvVersion::V2 => [
                KernelId::CONV2D_FWD_V2,
                KernelId::CONV2D_BWD_DATA_V2,
                KernelId::CONV2D_BWD_WEIGHT_V2,
            ],
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

/// The ten geometry arguments every convolution kernel takes after its buffers.
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

/// `buffers` followed by the geometry (and `extra` scalars).
fn with_geometry<'a>(buffers: [Arg<'a>; 3], g: &ConvGeom, extra: &[i32]) -> Result<Vec<Arg<'a>>> {
    let mut args: Vec<Arg<'a>> = buffers.into();
    args.extend(
        geometry(g)?
            .into_iter()
            .chain(extra.iter().copied())
            .map(Arg::from),
    );
    Ok(args)
}

pub fn forward(
    dev: &CudaDevice,
    g: &ConvGeom,
    x: &DeviceBuffer<f32>,
    w: &DeviceBuffer<f32>,
    y: &mut DeviceBuffer<f32>,
    v: ConvVersion,
) -> Result<()> {
    let args = with_geometry(
        [
            Arg::read(x, g.x_len()),
            Arg::read(w, g.w_len()),
            Arg::write(y, g.y_len()),
        ],
        g,
        &[],
    )?;
    let pixels = g.n * g.h_out() * g.w_out();
    let cfg = launch_grid(
        pixels.div_ceil(v.n_tile()) as u32,
        g.c_out.div_ceil(64) as u32,
        1,
        (256, 1, 1),
    );
    dev.launch(v.kernels()[0], cfg, &args)
}

pub fn backward_data(
    dev: &CudaDevice,
    g: &ConvGeom,
    w: &DeviceBuffer<f32>,
    dy: &DeviceBuffer<f32>,
    dx: &mut DeviceBuffer<f32>,
    v: ConvVersion,
) -> Result<()> {
    let args = with_geometry(
        [
            Arg::read(w, g.w_len()),
            Arg::read(dy, g.y_len()),
            Arg::write(dx, g.x_len()),
        ],
        g,
        &[],
    )?;
    let pixels = g.n * g.h * g.w;
    let cfg = launch_grid(
        pixels.div_ceil(v.n_tile()) as u32,
        g.c_in.div_ceil(64) as u32,
        1,
        (256, 1, 1),
    );
    dev.launch(v.kernels()[1], cfg, &args)
}

/// Split-K factor: enough blocks for about two waves on the GPU, each split keeping at least
/// 1024 (sample, pixel) terms of the reduction.
fn weight_splits(dev: &CudaDevice, g: &ConvGeom, n_tile: usize) -> usize {
    let tiles = (g.ckk().div_ceil(n_tile) * g.c_out.div_ceil(64)).max(1);
    let reduction = g.n * g.h_out() * g.w_out();
    (2 * dev.sm_count())
        .div_ceil(tiles)
        .clamp(1, reduction.div_ceil(1024).max(1))
}

pub fn backward_weight(
    dev: &CudaDevice,
    g: &ConvGeom,
    x: &DeviceBuffer<f32>,
    dy: &DeviceBuffer<f32>,
    dw: &mut DeviceBuffer<f32>,
    v: ConvVersion,
) -> Result<()> {
    let inputs = [Arg::read(x, g.x_len()), Arg::read(dy, g.y_len())];
    let grid = (g.ckk().div_ceil(v.n_tile()), g.c_out.div_ceil(64));
    let splits = weight_splits(dev, g, v.n_tile());
    launch_split_k(
        dev,
        g,
        v.kernels()[2],
        inputs,
        dw,
        g.w_len(),
        grid,
        splits,
        Vec::new(),
    )
}

/// Launches a split-K GEMM kernel over a `grid` of (x, y) tiles times `splits` (the kernels
/// take the split count after the geometry, then the arguments of `tail`): into `out` (which
/// must hold `len` values) directly with one split, else into per-split partials of `len`
/// values that conv2d_bwd_weight_reduce adds in split order (deterministic).
#[allow(clippy::too_many_arguments)]
fn launch_split_k<'a>(
    dev: &CudaDevice,
    g: &ConvGeom,
    kernel: KernelId,
    inputs: [Arg<'a>; 2],
    out: &'a mut DeviceBuffer<f32>,
    len: usize,
    grid: (usize, usize),
    splits: usize,
    tail: Vec<Arg<'a>>,
) -> Result<()> {
    let splits_i = int(splits)?;
    let cfg = launch_grid(grid.0 as u32, grid.1 as u32, splits as u32, (256, 1, 1));
    let [a, b] = inputs;
    if splits == 1 {
        let mut args = with_geometry([a, b, Arg::write(out, len)], g, &[splits_i])?;
        args.extend(tail);
        return dev.launch(kernel, cfg, &args);
    }
    // Every split writes its whole slice of the partials (zeros where its chunk is empty).
    let mut partial = dev.alloc::<f32>(splits * len)?;
    let mut args = with_geometry(
        [a, b, Arg::write(&mut partial, splits * len)],
        g,
        &[splits_i],
    )?;
    args.extend(tail);
    dev.launch(kernel, cfg, &args)?;
    dev.launch(
        KernelId::CONV2D_BWD_WEIGHT_REDUCE,
        launch_1d(len),
        &[
            Arg::read(&partial, splits * len),
            splits_i.into(),
            int(len)?.into(),
            Arg::write(out, len),
        ],
    )
}

/// Split-K factor of a bf16 forward or data gradient whose output is `tiles` blocks over a K
/// of `k` (steps of 32): as many copies of the grid as fit the GPU's resident blocks at once
/// (2 per SM, the kernels' register limit), each split keeping at least 8 steps. A split costs
/// one more output-sized partial written and read by the reduce, which pays on the late layers
/// whose grids fill under half the GPU: ResNet18's 4x4 layers at batch 128 give 128 blocks, 2
/// splits; their partials add ~8 MB of traffic (~2 µs at 4.3 TB/s) to ~12 µs of tensor-core
/// work that one split would run on half the SMs (BENCHMARKS.md has the per-shape table).
fn bf16_splits(dev: &CudaDevice, tiles: usize, k: usize) -> usize {
    let steps = k.div_ceil(32);
    (2 * dev.sm_count() / tiles.max(1)).clamp(1, (steps / 8).max(1))
}

/// Whether the bf16 forward takes this convolution: each of its 16-byte copies is 8 input
/// channels of one pixel, so c_in must be a multiple of 8 (not the 3-channel stem).
pub fn bf16_applies(g: &ConvGeom) -> bool {
    g.c_in.is_multiple_of(8)
}

/// Whether the bf16 data gradient takes this convolution: its copies are 8 output channels.
pub fn bf16_applies_backward_data(g: &ConvGeom) -> bool {
    g.c_out.is_multiple_of(8)
}

/// Whether the bf16 weight gradient takes this convolution: it copies 8 channels of x and of dy.
pub fn bf16_applies_backward_weight(g: &ConvGeom) -> bool {
    bf16_applies(g) && bf16_applies_backward_data(g)
}

/// An error unless `channels` (the `which` channels) come in eights.
fn require_eights(which: &str, channels: usize) -> Result<()> {
    if channels.is_multiple_of(8) {
        return Ok(());
    }
    Err(Error::Shape {
        op: "the bf16 convolution".into(),
        expected: format!("{which} channels in a multiple of 8"),
        got: format!("{channels} channels"),
    })
}

/// An NCHW f32 tensor of `n` x `c` x `hw` as NHWC bf16, two channels per word (the even one
/// low), rounded to nearest even.
fn nhwc_bf16(
    dev: &CudaDevice,
    x: &DeviceBuffer<f32>,
    n: usize,
    c: usize,
    hw: usize,
) -> Result<DeviceBuffer<u32>> {
    let words = n * c * hw / 2;
    let mut xh = dev.alloc::<u32>(words)?;
    dev.launch(
        KernelId::CONV2D_NHWC_BF16,
        launch_grid(
            hw.div_ceil(32) as u32,
            c.div_ceil(64) as u32,
            n as u32,
            (32, 8, 1),
        ),
        &[
            Arg::read(x, 2 * words),
            Arg::write(&mut xh, words),
            int(n)?.into(),
            int(c)?.into(),
            int(hw)?.into(),
        ],
    )?;
    Ok(xh)
}

/// x as the bf16 forward's input (NHWC bf16 pairs).
pub fn input_bf16(
    dev: &CudaDevice,
    g: &ConvGeom,
    x: &DeviceBuffer<f32>,
) -> Result<DeviceBuffer<u32>> {
    require_eights("input", g.c_in)?;
    nhwc_bf16(dev, x, g.n, g.c_in, g.h * g.w)
}

/// dy as the bf16 data gradient's input (NHWC bf16 pairs).
pub fn grad_output_bf16(
    dev: &CudaDevice,
    g: &ConvGeom,
    dy: &DeviceBuffer<f32>,
) -> Result<DeviceBuffer<u32>> {
    require_eights("output", g.c_out)?;
    nhwc_bf16(dev, dy, g.n, g.c_out, g.hw_out())
}

/// w ([c_out][c_in][k][k] f32) in bf16 pairs, as the forward reads it ([c_out][k][k][c_in],
/// `KernelId::CONV2D_WEIGHTS_BF16`) or the data gradient ([c_in][k][k][c_out],
/// `KernelId::CONV2D_WEIGHTS_T_BF16`).
fn weights_as(
    dev: &CudaDevice,
    g: &ConvGeom,
    w: &DeviceBuffer<f32>,
    kernel: KernelId,
) -> Result<DeviceBuffer<u32>> {
    let words = g.w_len() / 2;
    let mut wh = dev.alloc::<u32>(words)?;
    dev.launch(
        kernel,
        launch_1d(words),
        &[
            Arg::read(w, g.w_len()),
            Arg::write(&mut wh, words),
            int(g.c_out)?.into(),
            int(g.c_in)?.into(),
            int(g.k * g.k)?.into(),
        ],
    )?;
    Ok(wh)
}

/// w as the bf16 forward's weights: [c_out][k][k][c_in], two channels per word.
pub fn weights_bf16(
    dev: &CudaDevice,
    g: &ConvGeom,
    w: &DeviceBuffer<f32>,
) -> Result<DeviceBuffer<u32>> {
    require_eights("input", g.c_in)?;
    weights_as(dev, g, w, KernelId::CONV2D_WEIGHTS_BF16)
}

/// w as the bf16 data gradient's weights: [c_in][k][k][c_out], two channels per word.
pub fn weights_t_bf16(
    dev: &CudaDevice,
    g: &ConvGeom,
    w: &DeviceBuffer<f32>,
) -> Result<DeviceBuffer<u32>> {
    require_eights("output", g.c_out)?;
    weights_as(dev, g, w, KernelId::CONV2D_WEIGHTS_T_BF16)
}

/// What the bf16 forward's epilogue may do besides storing y: round it to bf16 (as
/// `Precision::Bf16.store` would, saving that pass) and sum each channel of the stored y for
/// the BatchNorm after it (saving the statistics pass its read of y).
#[derive(Clone, Copy, Debug, Default)]
pub struct Bf16Epilogue {
    pub round: bool,
    pub sums: bool,
}

/// What the epilogue did: a launch split along K does neither (its epilogue sees part of each
/// sum; the reduce adds them), so y then holds the unrounded f32 result.
#[derive(Debug)]
pub struct Bf16Fused {
    pub rounded: bool,
    pub sums: Option<ChannelSums>,
}

/// y = conv(x, w) on bf16 tensor cores with f32 accumulation, from the `input_bf16` and
/// `weights_bf16` copies of x and w, with the `epilogue` fusions where the launch allows them.
pub fn forward_bf16(
    dev: &CudaDevice,
    g: &ConvGeom,
    xh: &DeviceBuffer<u32>,
    wh: &DeviceBuffer<u32>,
    y: &mut DeviceBuffer<f32>,
    epilogue: Bf16Epilogue,
) -> Result<Bf16Fused> {
    require_eights("input", g.c_in)?;
    let inputs = [Arg::read(xh, g.x_len() / 2), Arg::read(wh, g.w_len() / 2)];
    let grid = (
        (g.n * g.h_out() * g.w_out()).div_ceil(128),
        g.c_out.div_ceil(64),
    );
    let splits = bf16_splits(dev, grid.0 * grid.1, g.ckk());
    let rounded = epilogue.round && splits == 1;
    // Every (channel, block column) pair is written by the block that owns it.
    let sums_len = g.c_out * grid.0 * 2;
    let mut sums = (epilogue.sums && splits == 1)
        .then(|| dev.alloc::<f64>(sums_len))
        .transpose()?;
    let tail = vec![
        i32::from(rounded).into(),
        Arg::write_opt(sums.as_mut(), sums_len),
    ];
    launch_split_k(
        dev,
        g,
        KernelId::CONV2D_FWD_BF16,
        inputs,
        y,
        g.y_len(),
        grid,
        splits,
        tail,
    )?;
    Ok(Bf16Fused {
        rounded,
        sums: sums.map(|partial| ChannelSums {
            partial,
            channels: g.c_out,
            slices: grid.0,
        }),
    })
}

/// dx from the `weights_t_bf16` and `grad_output_bf16` copies of w and dy, on bf16 tensor
/// cores with f32 accumulation (overwrites dx).
pub fn backward_data_bf16(
    dev: &CudaDevice,
    g: &ConvGeom,
    wth: &DeviceBuffer<u32>,
    dyh: &DeviceBuffer<u32>,
    dx: &mut DeviceBuffer<f32>,
) -> Result<()> {
    require_eights("output", g.c_out)?;
    let inputs = [Arg::read(wth, g.w_len() / 2), Arg::read(dyh, g.y_len() / 2)];
    let grid = ((g.n * g.h * g.w).div_ceil(128), g.c_in.div_ceil(64));
    let splits = bf16_splits(dev, grid.0 * grid.1, g.c_out * g.k * g.k);
    launch_split_k(
        dev,
        g,
        KernelId::CONV2D_BWD_DATA_BF16,
        inputs,
        dx,
        g.x_len(),
        grid,
        splits,
        Vec::new(),
    )
}

/// dw from the `input_bf16` and `grad_output_bf16` copies of x and dy, on bf16 tensor cores
/// with f32 accumulation, split-K like `backward_weight` (overwrites dw).
pub fn backward_weight_bf16(
    dev: &CudaDevice,
    g: &ConvGeom,
    xh: &DeviceBuffer<u32>,
    dyh: &DeviceBuffer<u32>,
    dw: &mut DeviceBuffer<f32>,
) -> Result<()> {
    require_eights("input", g.c_in)?;
    require_eights("output", g.c_out)?;
    let inputs = [Arg::read(xh, g.x_len() / 2), Arg::read(dyh, g.y_len() / 2)];
    let grid = (g.ckk().div_ceil(128), g.c_out.div_ceil(64));
    let splits = weight_splits(dev, g, 128);
    launch_split_k(
        dev,
        g,
        KernelId::CONV2D_BWD_WEIGHT_BF16,
        inputs,
        dw,
        g.w_len(),
        grid,
        splits,
        Vec::new(),
    )
}

#[cfg(all(test, feature = "emu"))]
mod tests {
    use super::*;
    use crate::device::emu::EmuConfig;

    /// On 132 SMs (264 resident blocks): ResNet18's 4x4 layers at batch 128 (128 tiles) split
    /// in two, grids of a wave or more do not split, and a short K caps the split.
    #[test]
    fn bf16_splits_fill_the_gpu_without_starving_a_split_of_k() {
        let dev = CudaDevice::emulated(EmuConfig::default()).unwrap();
        assert_eq!(bf16_splits(&dev, 128, 9 * 512), 2);
        assert_eq!(bf16_splits(&dev, 256, 9 * 256), 1);
        assert_eq!(bf16_splits(&dev, 1024, 9 * 64), 1);
        // 3 tiles could take 88 splits; 576 of K is 18 steps, 2 splits of at least 8.
        assert_eq!(bf16_splits(&dev, 3, 576), 2);
        assert_eq!(bf16_splits(&dev, 3, 72), 1);
    }
}
