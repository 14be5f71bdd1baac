//! kernels/bn_act.cu: fused BatchNorm (+ residual) (+ masked ReLU), statistics, backward,
//! running-statistics update.

use crate::device::args::Arg;
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_1d, launch_grid, launch_update};
use crate::error::Result;
use crate::geom::BnGeom;

/// Slices of the batch per channel in the two reductions: enough blocks for ~4 per SM.
fn splits(dev: &CudaDevice, g: &BnGeom) -> usize {
    (4 * dev.sm_count())
        .div_ceil(g.c.max(1))
        .clamp(1, g.n.max(1))
}

/// Batch mean, 1/sqrt(biased var + eps) and unbiased variance per channel (train mode).
pub fn stats(
    dev: &CudaDevice,
    g: &BnGeom,
    x: &DeviceBuffer<f32>,
    eps: f32,
    mean: &mut DeviceBuffer<f32>,
    invstd: &mut DeviceBuffer<f32>,
    var_unbiased: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let s = splits(dev, g);
    let (n, c, hw, si) = (int(g.n)?, int(g.c)?, int(g.hw)?, int(s)?);
    // Every (channel, slice) block writes its pair of partial sums.
    let mut partial = dev.alloc::<f64>(g.c * s * 2)?;
    dev.launch(
        KernelId::BN_ACT_STATS,
        launch_grid(g.c as u32, s as u32, 1, (256, 1, 1)),
        &[
            Arg::read(x, g.len()),
            n.into(),
            c.into(),
            hw.into(),
            si.into(),
            Arg::write(&mut partial, g.c * s * 2),
        ],
    )?;
    stats_from_sums(dev, g, &partial, s, eps, mean, invstd, var_unbiased)
}

/// `stats` from per-channel partial sums of x ([c][slices][2] f64, `ChannelSums`), merged in a
/// fixed order.
#[allow(clippy::too_many_arguments)]
pub fn stats_from_sums(
    dev: &CudaDevice,
    g: &BnGeom,
    partial: &DeviceBuffer<f64>,
    slices: usize,
    eps: f32,
    mean: &mut DeviceBuffer<f32>,
    invstd: &mut DeviceBuffer<f32>,
    var_unbiased: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let (n, c, hw) = (int(g.n)?, int(g.c)?, int(g.hw)?);
    dev.launch(
        KernelId::BN_ACT_STATS_FINAL,
        launch_grid(g.c as u32, 1, 1, (256, 1, 1)),
        &[
            Arg::read(partial, g.c * slices * 2),
            n.into(),
            c.into(),
            hw.into(),
            int(slices)?.into(),
            eps.into(),
            Arg::write(mean, g.c),
            Arg::write(invstd, g.c),
            Arg::write(var_unbiased, g.c),
        ],
    )
}

/// The BN inputs of one application: statistics (batch or running) and the affine parameters.
pub struct BnParams<'a> {
    pub mean: &'a DeviceBuffer<f32>,
    pub invstd: &'a DeviceBuffer<f32>,
    pub gamma: &'a DeviceBuffer<f32>,
    pub beta: &'a DeviceBuffer<f32>,
    /// [c * hw] of 0/1, or None: every element keeps its ReLU.
    pub mask: Option<&'a DeviceBuffer<f32>>,
    pub relu: bool,
}

/// y = act(gamma * (x - mean) * invstd + beta (+ residual)).
pub fn forward(
    dev: &CudaDevice,
    g: &BnGeom,
    x: &DeviceBuffer<f32>,
    residual: Option<&DeviceBuffer<f32>>,
    p: &BnParams<'_>,
    y: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let (len, c) = (g.len(), g.c);
    dev.launch(
        KernelId::BN_ACT_FWD,
        launch_1d(len),
        &[
            Arg::read(x, len),
            Arg::read_opt(residual, len),
            Arg::read(p.mean, c),
            Arg::read(p.invstd, c),
            Arg::read(p.gamma, c),
            Arg::read(p.beta, c),
            Arg::read_opt(p.mask, c * g.hw),
            (p.relu as i32).into(),
            int(g.n)?.into(),
            int(c)?.into(),
            int(g.hw)?.into(),
            Arg::write(y, len),
        ],
    )
}

/// Gradient outputs; each is computed only when present.
pub struct BnGradsGpu<'a> {
    pub dx: Option<&'a mut DeviceBuffer<f32>>,
    pub dgamma: Option<&'a mut DeviceBuffer<f32>>,
    pub dbeta: Option<&'a mut DeviceBuffer<f32>>,
    pub dr: Option<&'a mut DeviceBuffer<f32>>,
}

/// The forward output as the backward's ReLU gate needs it.
#[derive(Clone, Copy)]
pub enum Gate<'a> {
    /// The forward added a residual: its output `y` says which ReLUs passed.
    Output(&'a DeviceBuffer<f32>),
    /// No residual: the kernels recompute the BN output from x (one read of y saved).
    FromInput,
}

/// Backward of `forward`; `gate` decides which ReLUs passed.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dev: &CudaDevice,
    g: &BnGeom,
    x: &DeviceBuffer<f32>,
    gate: Gate<'_>,
    dy: &DeviceBuffer<f32>,
    p: &BnParams<'_>,
    train: bool,
    out: BnGradsGpu<'_>,
) -> Result<()> {
    let (len, c) = (g.len(), g.c);
    // Without a ReLU the gate reads nothing.
    let y = match gate {
        Gate::Output(y) if p.relu => Some(y),
        _ => None,
    };
    let (n_i, c_i, hw_i, relu) = (int(g.n)?, int(c)?, int(g.hw)?, p.relu as i32);
    let need_sums = train && out.dx.is_some() || out.dgamma.is_some() || out.dbeta.is_some();
    // bn_act_bwd_reduce_final always writes `sums` in full; apply reads it only in train mode.
    let mut sums = dev.alloc::<f32>(2 * c)?;
    if need_sums {
        let s = splits(dev, g);
        let si = int(s)?;
        let mut partial = dev.alloc::<f64>(c * s * 2)?;
        dev.launch(
            KernelId::BN_ACT_BWD_REDUCE,
            launch_grid(c as u32, s as u32, 1, (256, 1, 1)),
            &[
                Arg::read(x, len),
                Arg::read_opt(y, len),
                Arg::read(dy, len),
                Arg::read(p.mean, c),
                Arg::read(p.invstd, c),
                Arg::read(p.gamma, c),
                Arg::read(p.beta, c),
                Arg::read_opt(p.mask, c * g.hw),
                relu.into(),
                n_i.into(),
                c_i.into(),
                hw_i.into(),
                si.into(),
                Arg::write(&mut partial, c * s * 2),
            ],
        )?;
        dev.launch(
            KernelId::BN_ACT_BWD_REDUCE_FINAL,
            launch_1d(c),
            &[
                Arg::read(&partial, c * s * 2),
                Arg::read(p.invstd, c),
                c_i.into(),
                si.into(),
                Arg::write(&mut sums, 2 * c),
                Arg::write_opt(out.dgamma, c),
                Arg::write_opt(out.dbeta, c),
            ],
        )?;
    }
    if out.dx.is_none() && out.dr.is_none() {
        return Ok(());
    }
    dev.launch(
        KernelId::BN_ACT_BWD_APPLY,
        launch_1d(len),
        &[
            Arg::read(x, len),
            Arg::read_opt(y, len),
            Arg::read(dy, len),
            Arg::read(p.mean, c),
            Arg::read(p.invstd, c),
            Arg::read(p.gamma, c),
            Arg::read(p.beta, c),
            Arg::read_opt(p.mask, c * g.hw),
            relu.into(),
            (train as i32).into(),
            // Read only in train mode, where it was computed above.
            Arg::read_opt(train.then_some(&sums), 2 * c),
            n_i.into(),
            c_i.into(),
            hw_i.into(),
            Arg::write_opt(out.dx, len),
            Arg::write_opt(out.dr, len),
        ],
    )
}

/// running = (1 - momentum) * running + momentum * batch, for mean and variance.
pub fn running_update(
    dev: &CudaDevice,
    running_mean: &mut DeviceBuffer<f32>,
    running_var: &mut DeviceBuffer<f32>,
    mean: &DeviceBuffer<f32>,
    var_unbiased: &DeviceBuffer<f32>,
    momentum: f64,
) -> Result<()> {
    let (keep, take) = ((1.0 - momentum) as f32, momentum as f32);
    launch_update(
        dev,
        KernelId::BN_ACT_RUNNING_UPDATE,
        vec![running_mean, running_var],
        &[mean, var_unbiased],
        vec![keep.into(), take.into()],
    )
}

/// invstd = 1 / sqrt(running_var + eps), for eval-mode passes.
pub fn eval_invstd(
    dev: &CudaDevice,
    running_var: &DeviceBuffer<f32>,
    eps: f32,
    invstd: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let c = running_var.len();
    dev.launch(
        KernelId::BN_ACT_EVAL_INVSTD,
        launch_1d(c),
        &[
            Arg::read(running_var, c),
            int(c)?.into(),
            eps.into(),
            Arg::write(invstd, c),
        ],
    )
}
