//! kernels/bn_act.cu: fused BatchNorm (+ residual) (+ masked ReLU), statistics, backward,
//! running-statistics update.

use super::{func, grid, int, launch, linear_grid, NULL};
use crate::device::cuda::CudaDevice;
use crate::error::Result;
use crate::geom::BnGeom;
use cudarc::driver::{CudaSlice, LaunchArgs, PushKernelArg};

/// Slices of the batch per channel in the two reductions: enough blocks for ~4 per SM.
fn splits(dev: &CudaDevice, g: &BnGeom) -> usize {
    (4 * dev.sm_count())
        .div_ceil(g.c.max(1))
        .clamp(1, g.n.max(1))
}

fn opt<'a>(b: &mut LaunchArgs<'a>, v: Option<&'a CudaSlice<f32>>) {
    match v {
        Some(s) => b.arg(s),
        None => b.arg(&NULL),
    };
}

fn opt_mut<'a>(b: &mut LaunchArgs<'a>, v: Option<&'a mut CudaSlice<f32>>) {
    match v {
        Some(s) => b.arg(s),
        None => b.arg(&NULL),
    };
}

/// Batch mean, 1/sqrt(biased var + eps) and unbiased variance per channel (train mode).
pub fn stats(
    dev: &CudaDevice,
    g: &BnGeom,
    x: &CudaSlice<f32>,
    eps: f32,
    mean: &mut CudaSlice<f32>,
    invstd: &mut CudaSlice<f32>,
    var_unbiased: &mut CudaSlice<f32>,
) -> Result<()> {
    let s = splits(dev, g);
    let (n, c, hw, si) = (int(g.n)?, int(g.c)?, int(g.hw)?, int(s)?);
    let mut partial = dev.zeros::<f64>(g.c * s * 2)?;
    let f = func(dev, "bn_act", "bn_act_stats")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(&n).arg(&c).arg(&hw).arg(&si).arg(&mut partial);
    launch(
        "bn_act_stats",
        b,
        grid(g.c as u32, s as u32, 1, (256, 1, 1)),
    )?;
    let f = func(dev, "bn_act", "bn_act_stats_final")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&partial)
        .arg(&n)
        .arg(&c)
        .arg(&hw)
        .arg(&si)
        .arg(&eps)
        .arg(mean)
        .arg(invstd)
        .arg(var_unbiased);
    launch("bn_act_stats_final", b, linear_grid(g.c))
}

/// The BN inputs of one application: statistics (batch or running) and the affine parameters.
pub struct BnParams<'a> {
    pub mean: &'a CudaSlice<f32>,
    pub invstd: &'a CudaSlice<f32>,
    pub gamma: &'a CudaSlice<f32>,
    pub beta: &'a CudaSlice<f32>,
    /// [c * hw] of 0/1, or None: every element keeps its ReLU.
    pub mask: Option<&'a CudaSlice<f32>>,
    pub relu: bool,
}

/// y = act(gamma * (x - mean) * invstd + beta (+ residual)).
pub fn forward(
    dev: &CudaDevice,
    g: &BnGeom,
    x: &CudaSlice<f32>,
    residual: Option<&CudaSlice<f32>>,
    p: &BnParams<'_>,
    y: &mut CudaSlice<f32>,
) -> Result<()> {
    let (n, c, hw, relu) = (int(g.n)?, int(g.c)?, int(g.hw)?, p.relu as i32);
    let f = func(dev, "bn_act", "bn_act_fwd")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x);
    opt(&mut b, residual);
    b.arg(p.mean).arg(p.invstd).arg(p.gamma).arg(p.beta);
    opt(&mut b, p.mask);
    b.arg(&relu).arg(&n).arg(&c).arg(&hw).arg(y);
    launch("bn_act_fwd", b, linear_grid(g.len()))
}

/// Gradient outputs; each is computed only when present.
pub struct BnGradsGpu<'a> {
    pub dx: Option<&'a mut CudaSlice<f32>>,
    pub dgamma: Option<&'a mut CudaSlice<f32>>,
    pub dbeta: Option<&'a mut CudaSlice<f32>>,
    pub dr: Option<&'a mut CudaSlice<f32>>,
}

/// Backward of `forward`; `y` is the forward output (it decides which ReLUs passed).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dev: &CudaDevice,
    g: &BnGeom,
    x: &CudaSlice<f32>,
    y: &CudaSlice<f32>,
    dy: &CudaSlice<f32>,
    p: &BnParams<'_>,
    train: bool,
    out: BnGradsGpu<'_>,
) -> Result<()> {
    let (n, c, hw, relu, train_i) = (
        int(g.n)?,
        int(g.c)?,
        int(g.hw)?,
        p.relu as i32,
        train as i32,
    );
    let need_sums = train && out.dx.is_some() || out.dgamma.is_some() || out.dbeta.is_some();
    let mut sums = dev.zeros::<f32>(2 * g.c)?;
    if need_sums {
        let s = splits(dev, g);
        let si = int(s)?;
        let mut partial = dev.zeros::<f64>(g.c * s * 2)?;
        let f = func(dev, "bn_act", "bn_act_bwd_reduce")?;
        let mut b = dev.stream().launch_builder(&f);
        b.arg(x).arg(y).arg(dy).arg(p.mean);
        opt(&mut b, p.mask);
        b.arg(&relu)
            .arg(&n)
            .arg(&c)
            .arg(&hw)
            .arg(&si)
            .arg(&mut partial);
        launch(
            "bn_act_bwd_reduce",
            b,
            grid(g.c as u32, s as u32, 1, (256, 1, 1)),
        )?;
        let f = func(dev, "bn_act", "bn_act_bwd_reduce_final")?;
        let mut b = dev.stream().launch_builder(&f);
        b.arg(&partial)
            .arg(p.invstd)
            .arg(&c)
            .arg(&si)
            .arg(&mut sums);
        opt_mut(&mut b, out.dgamma);
        opt_mut(&mut b, out.dbeta);
        launch("bn_act_bwd_reduce_final", b, linear_grid(g.c))?;
    }
    if out.dx.is_none() && out.dr.is_none() {
        return Ok(());
    }
    let f = func(dev, "bn_act", "bn_act_bwd_apply")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x)
        .arg(y)
        .arg(dy)
        .arg(p.mean)
        .arg(p.invstd)
        .arg(p.gamma);
    opt(&mut b, p.mask);
    b.arg(&relu)
        .arg(&train_i)
        .arg(&sums)
        .arg(&n)
        .arg(&c)
        .arg(&hw);
    opt_mut(&mut b, out.dx);
    opt_mut(&mut b, out.dr);
    launch("bn_act_bwd_apply", b, linear_grid(g.len()))
}

/// running = (1 - momentum) * running + momentum * batch, for mean and variance.
pub fn running_update(
    dev: &CudaDevice,
    running_mean: &mut CudaSlice<f32>,
    running_var: &mut CudaSlice<f32>,
    mean: &CudaSlice<f32>,
    var_unbiased: &CudaSlice<f32>,
    momentum: f64,
) -> Result<()> {
    let c = running_mean.len();
    let (ci, keep, take) = (int(c)?, (1.0 - momentum) as f32, momentum as f32);
    let f = func(dev, "bn_act", "bn_act_running_update")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(running_mean)
        .arg(running_var)
        .arg(mean)
        .arg(var_unbiased)
        .arg(&ci)
        .arg(&keep)
        .arg(&take);
    launch("bn_act_running_update", b, linear_grid(c))
}

/// invstd = 1 / sqrt(running_var + eps), for eval-mode passes.
pub fn eval_invstd(
    dev: &CudaDevice,
    running_var: &CudaSlice<f32>,
    eps: f32,
    invstd: &mut CudaSlice<f32>,
) -> Result<()> {
    let c = running_var.len();
    let ci = int(c)?;
    let f = func(dev, "bn_act", "bn_act_eval_invstd")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(running_var).arg(&ci).arg(&eps).arg(invstd);
    launch("bn_act_eval_invstd", b, linear_grid(c))
}
