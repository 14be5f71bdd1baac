//! kernels/loss.cu: cross-entropy, temperature KL, attention transfer and AugMix's JSD; each
//! forward leaves one partial per row and a fixed-order reduction writes the scalar loss.

use crate::device::args::{Arg, LaunchConfig};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_1d, launch_grid};
use crate::error::{Error, Result};

/// One warp per row, 8 rows per block.
fn rows(n: usize) -> LaunchConfig {
    launch_grid(n.div_ceil(8) as u32, 1, 1, (256, 1, 1))
}

/// One block per row.
fn per_row(n: usize) -> LaunchConfig {
    launch_grid(n as u32, 1, 1, (256, 1, 1))
}

/// The number of rows of `len` logits of `k` classes.
fn rows_of(op: &str, len: usize, k: usize) -> Result<usize> {
    if k == 0 || !len.is_multiple_of(k) {
        return Err(Error::shape(
            op,
            format!("[n, {k}] logits"),
            format!("{len} values"),
        ));
    }
    Ok(len / k)
}

/// out[0] = (Σ values) · mul / div, summed in f64 in a fixed order.
fn reduce_sum(
    dev: &CudaDevice,
    values: &DeviceBuffer<f32>,
    count: usize,
    mul: f64,
    div: f64,
    out: &mut DeviceBuffer<f32>,
) -> Result<()> {
    dev.launch(
        KernelId::LOSS_REDUCE_SUM,
        launch_grid(1, 1, 1, (256, 1, 1)),
        &[
            Arg::read(values, count),
            int(count)?.into(),
            mul.into(),
            div.into(),
            Arg::write(out, 1),
        ],
    )
}

/// Launches a forward kernel whose arguments end with a per-row loss of `n` values (appended
/// here), then reduces those to the scalar `loss` = Σ · mul / div.
fn with_row_losses(
    dev: &CudaDevice,
    kernel: KernelId,
    cfg: LaunchConfig,
    args: Vec<Arg<'_>>,
    n: usize,
    (mul, div): (f64, f64),
    loss: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let mut row_loss = dev.alloc::<f32>(n)?;
    let all: Vec<Arg<'_>> = args
        .into_iter()
        .chain([Arg::write(&mut row_loss, n)])
        .collect();
    dev.launch(kernel, cfg, &all)?;
    drop(all);
    reduce_sum(dev, &row_loss, n, mul, div, loss)
}

/// Cross-entropy of logits [n, k]: writes the softmax `probs` and the scalar `loss` (mean or sum).
pub fn cross_entropy(
    dev: &CudaDevice,
    logits: &DeviceBuffer<f32>,
    labels: &DeviceBuffer<u32>,
    k: usize,
    sum: bool,
    probs: &mut DeviceBuffer<f32>,
    loss: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let n = labels.len();
    let args = vec![
        Arg::read(logits, n * k),
        Arg::read(labels, n),
        int(n)?.into(),
        int(k)?.into(),
        Arg::write(probs, n * k),
    ];
    let div = if sum { 1.0 } else { n as f64 };
    with_row_losses(
        dev,
        KernelId::LOSS_CE_FWD,
        rows(n),
        args,
        n,
        (1.0, div),
        loss,
    )
}

/// dz = (probs − onehot) · g (sum) or · g / n (mean).
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_backward(
    dev: &CudaDevice,
    probs: &DeviceBuffer<f32>,
    labels: &DeviceBuffer<u32>,
    k: usize,
    sum: bool,
    g: f32,
    dz: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let n = labels.len();
    let scale = if sum { g } else { g / n as f32 };
    dev.launch(
        KernelId::LOSS_CE_BWD,
        launch_1d(n * k),
        &[
            Arg::read(probs, n * k),
            Arg::read(labels, n),
            int(n)?.into(),
            int(k)?.into(),
            scale.into(),
            Arg::write(dz, n * k),
        ],
    )
}

/// KL_T(s ‖ t) = T² / n · Σ p_t (log p_t − log p_s): writes p_s, p_t and the scalar loss.
#[allow(clippy::too_many_arguments)]
pub fn kl_div(
    dev: &CudaDevice,
    s: &DeviceBuffer<f32>,
    t: &DeviceBuffer<f32>,
    k: usize,
    temp: f64,
    ps: &mut DeviceBuffer<f32>,
    pt: &mut DeviceBuffer<f32>,
    loss: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let n = rows_of("kl_div", s.len(), k)?;
    let args = vec![
        Arg::read(s, n * k),
        Arg::read(t, n * k),
        int(n)?.into(),
        int(k)?.into(),
        (temp as f32).into(),
        Arg::write(ps, n * k),
        Arg::write(pt, n * k),
    ];
    let scale = (temp * temp, n as f64);
    with_row_losses(dev, KernelId::LOSS_KL_FWD, rows(n), args, n, scale, loss)
}

/// ds = (p_s − p_t) · g · T / n.
pub fn kl_div_backward(
    dev: &CudaDevice,
    ps: &DeviceBuffer<f32>,
    pt: &DeviceBuffer<f32>,
    k: usize,
    temp: f64,
    g: f32,
    ds: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let total = ps.len();
    let n = rows_of("kl_div_backward", total, k)?;
    let scale = g * (temp / n as f64) as f32;
    dev.launch(
        KernelId::LOSS_KL_BWD,
        launch_1d(total),
        &[
            Arg::read(ps, total),
            Arg::read(pt, total),
            int(total)?.into(),
            scale.into(),
            Arg::write(ds, total),
        ],
    )
}

/// AugMix's JSD of three logit batches [n, k] (clean, augmented 1, augmented 2): the scalar
/// loss (1/3n) Σ_rows Σ_i KL(p_i ‖ M).
pub fn jsd(
    dev: &CudaDevice,
    z: [&DeviceBuffer<f32>; 3],
    k: usize,
    loss: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let n = rows_of("jsd", z[0].len(), k)?;
    let args = vec![
        Arg::read(z[0], n * k),
        Arg::read(z[1], n * k),
        Arg::read(z[2], n * k),
        int(n)?.into(),
        int(k)?.into(),
    ];
    let scale = (1.0, (3 * n) as f64);
    with_row_losses(
        dev,
        KernelId::LOSS_JSD_FWD,
        per_row(n),
        args,
        n,
        scale,
        loss,
    )
}

/// d JSD / d z_i · g for the three logit batches.
pub fn jsd_backward(
    dev: &CudaDevice,
    z: [&DeviceBuffer<f32>; 3],
    k: usize,
    g: f32,
    dz: [&mut DeviceBuffer<f32>; 3],
) -> Result<()> {
    let n = rows_of("jsd_backward", z[0].len(), k)?;
    let scale = g * (1.0 / (3 * n) as f64) as f32;
    let [d0, d1, d2] = dz;
    dev.launch(
        KernelId::LOSS_JSD_BWD,
        per_row(n),
        &[
            Arg::read(z[0], n * k),
            Arg::read(z[1], n * k),
            Arg::read(z[2], n * k),
            int(n)?.into(),
            int(k)?.into(),
            scale.into(),
            Arg::write(d0, n * k),
            Arg::write(d1, n * k),
            Arg::write(d2, n * k),
        ],
    )
}

/// Sizes of attention maps: features [n, ch, hw].
#[derive(Clone, Copy, Debug)]
pub struct AtShape {
    pub n: usize,
    pub ch: usize,
    pub hw: usize,
}

/// a = q / max(‖q‖, eps) with q = mean_c F², per sample; with a target `at`, also the loss
/// mean((a − at)²).
pub fn attention(
    dev: &CudaDevice,
    s: AtShape,
    f: &DeviceBuffer<f32>,
    at: Option<&DeviceBuffer<f32>>,
    a: &mut DeviceBuffer<f32>,
    norms: &mut DeviceBuffer<f32>,
    loss: Option<&mut DeviceBuffer<f32>>,
) -> Result<()> {
    let inv_c = (1.0 / s.ch as f64) as f32;
    // The per-sample losses exist only with a target (the kernel leaves them alone without).
    let mut row_loss = match at {
        Some(_) => Some(dev.alloc::<f32>(s.n)?),
        None => None,
    };
    dev.launch(
        KernelId::LOSS_AT_MAP,
        per_row(s.n),
        &[
            Arg::read(f, s.n * s.ch * s.hw),
            Arg::read_opt(at, s.n * s.hw),
            int(s.n)?.into(),
            int(s.ch)?.into(),
            int(s.hw)?.into(),
            inv_c.into(),
            Arg::write(a, s.n * s.hw),
            Arg::write(norms, s.n),
            Arg::write_opt(row_loss.as_mut(), s.n),
        ],
    )?;
    match (loss, &row_loss) {
        (Some(l), Some(r)) => reduce_sum(dev, r, s.n, 1.0, (s.n * s.hw) as f64, l),
        _ => Ok(()),
    }
}

/// d AT / d F_s · g.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dev: &CudaDevice,
    s: AtShape,
    fs: &DeviceBuffer<f32>,
    a: &DeviceBuffer<f32>,
    norms: &DeviceBuffer<f32>,
    at: &DeviceBuffer<f32>,
    g: f32,
    dfs: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let scale = g * (2.0 / (s.n * s.hw) as f64) as f32;
    let two_over_c = (2.0 / s.ch as f64) as f32;
    let mut cfg = per_row(s.n);
    // The map's gradient for one sample stays in shared memory: hw floats. Launches that need
    // more than 48 KiB opt in; more than the device allows is a launch error naming the limit.
    cfg.shared_bytes = u32::try_from(s.hw * 4)
        .map_err(|_| Error::shape("attention_backward", "maps of fewer than 2^30 pixels", s.hw))?;
    dev.launch(
        KernelId::LOSS_AT_BWD,
        cfg,
        &[
            Arg::read(fs, s.n * s.ch * s.hw),
            Arg::read(a, s.n * s.hw),
            Arg::read(norms, s.n),
            Arg::read(at, s.n * s.hw),
            int(s.n)?.into(),
            int(s.ch)?.into(),
            int(s.hw)?.into(),
            scale.into(),
            two_over_c.into(),
            Arg::write(dfs, s.n * s.ch * s.hw),
        ],
    )
}
