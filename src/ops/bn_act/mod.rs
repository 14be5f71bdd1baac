//! Fused BatchNorm (+ residual add) (+ masked ReLU), the op of every ReLU site and of every BN
//! without one: the CPU reference (cpu.rs, generic over f32/f64), the CUDA launchers (cuda.rs),
//! one function per direction that looks at the device once, the running-statistics update,
//! and the graph node.

pub mod cpu;
pub mod cuda;

pub use crate::geom::BnGeom;
pub use cpu::{Activation, BatchStats, BnGrads, BN_EPS, BN_MOMENTUM};

use crate::autograd::{
    Backward, BackwardPass, EntryId, Graph, ParamStore, StatUpdate, Traced, Var,
};
use crate::device::cuda::CudaDevice;
use crate::device::{ok, Device};
use crate::error::{Error, Result};
use crate::tensor::channel_sums::ChannelSums;
use crate::tensor::precision::Precision;
use crate::tensor::Tensor;

/// The store ids of one BatchNorm parameter set (BN_c, BN_a or BN_r of a layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnIds {
    pub weight: EntryId,
    pub bias: EntryId,
    pub running_mean: EntryId,
    pub running_var: EntryId,
}

/// Train-mode batch statistics of x: (mean, invstd, unbiased variance), each [c].
pub fn batch_stats(dev: &Device, g: &BnGeom, x: &Tensor, eps: f64) -> Result<[Tensor; 3]> {
    let c = [g.c];
    match dev {
        Device::Cpu => {
            let st = cpu::batch_stats(g, x.data(), eps);
            Ok([
                Tensor::from_vec(&c, st.mean)?,
                Tensor::from_vec(&c, st.invstd)?,
                Tensor::from_vec(&c, st.var_unbiased)?,
            ])
        }
        Device::Cuda(d) => {
            let mut out = [
                Tensor::uninit_gpu(d, &c)?,
                Tensor::uninit_gpu(d, &c)?,
                Tensor::uninit_gpu(d, &c)?,
            ];
            let [m, i, v] = &mut out;
            cuda::stats(
                d,
                g,
                x.gpu(),
                eps as f32,
                m.gpu_mut(),
                i.gpu_mut(),
                v.gpu_mut(),
            )?;
            Ok(out)
        }
    }
}

/// `batch_stats` of the GPU tensor whose per-channel sums are `sums` (left by the op that wrote
/// it), without reading it again.
pub fn batch_stats_from_sums(
    d: &CudaDevice,
    g: &BnGeom,
    sums: &ChannelSums,
    eps: f64,
) -> Result<[Tensor; 3]> {
    if sums.channels != g.c {
        return Err(Error::shape(
            "BatchNorm statistics from channel sums",
            format!("sums of {} channels", g.c),
            sums.channels,
        ));
    }
    let c = [g.c];
    let mut out = [
        Tensor::uninit_gpu(d, &c)?,
        Tensor::uninit_gpu(d, &c)?,
        Tensor::uninit_gpu(d, &c)?,
    ];
    let [m, i, v] = &mut out;
    cuda::stats_from_sums(
        d,
        g,
        &sums.partial,
        sums.slices,
        eps as f32,
        m.gpu_mut(),
        i.gpu_mut(),
        v.gpu_mut(),
    )?;
    Ok(out)
}

/// invstd = 1 / sqrt(running_var + eps) (eval mode).
pub fn eval_invstd(dev: &Device, running_var: &Tensor, eps: f64) -> Result<Tensor> {
    match dev {
        Device::Cpu => Tensor::from_vec(
            running_var.shape(),
            cpu::eval_invstd(running_var.data(), eps),
        ),
        Device::Cuda(d) => {
            let mut i = Tensor::uninit_gpu(d, running_var.shape())?;
            cuda::eval_invstd(d, running_var.gpu(), eps as f32, i.gpu_mut())?;
            Ok(i)
        }
    }
}

/// What one application of the op reads besides x: statistics (batch or running), the affine
/// parameters, the mask and whether a ReLU follows.
pub struct BnInputs<'a> {
    pub mean: &'a Tensor,
    pub invstd: &'a Tensor,
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
    /// [c * hw] of 0/1, or None: every element keeps its ReLU.
    pub mask: Option<&'a Tensor>,
    pub relu: bool,
}

impl BnInputs<'_> {
    fn activation(&self) -> Activation<'_, f32> {
        Activation {
            relu: self.relu,
            mask: self.mask.map(|m| m.data()),
        }
    }

    fn gpu(&self) -> cuda::BnParams<'_> {
        cuda::BnParams {
            mean: self.mean.gpu(),
            invstd: self.invstd.gpu(),
            gamma: self.gamma.gpu(),
            beta: self.beta.gpu(),
            mask: self.mask.map(|m| m.gpu()),
            relu: self.relu,
        }
    }
}

/// y = act(gamma * (x - mean) * invstd + beta (+ residual)).
pub fn forward(
    dev: &Device,
    g: &BnGeom,
    x: &Tensor,
    residual: Option<&Tensor>,
    p: &BnInputs<'_>,
) -> Result<Tensor> {
    match dev {
        Device::Cpu => {
            let mut y = Tensor::uninit_cpu(x.shape());
            cpu::forward(
                g,
                x.data(),
                p.mean.data(),
                p.invstd.data(),
                p.gamma.data(),
                p.beta.data(),
                residual.map(|r| r.data()),
                p.activation(),
                y.data_mut(),
            );
            y.check_written("bn_act forward");
            Ok(y)
        }
        Device::Cuda(d) => {
            let mut y = Tensor::uninit_gpu(d, x.shape())?;
            cuda::forward(
                d,
                g,
                x.gpu(),
                residual.map(|r| r.gpu()),
                &p.gpu(),
                y.gpu_mut(),
            )?;
            Ok(y)
        }
    }
}

/// The gradients `backward` returns: (dx, dgamma, dbeta, dr), each None when not wanted.
pub type BnGradients = (
    Option<Tensor>,
    Option<Tensor>,
    Option<Tensor>,
    Option<Tensor>,
);

/// Backward of `forward` (`y` its output, which decides which ReLUs passed; `residual` whether
/// it added one: without one the GPU recomputes the gate from x instead of reading y); `want`
/// says which of (dx, dgamma, dbeta, dr) to compute.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dev: &Device,
    g: &BnGeom,
    x: &Tensor,
    (y, residual): (&Tensor, bool),
    dy: &Tensor,
    p: &BnInputs<'_>,
    train: bool,
    want: [bool; 4],
) -> Result<BnGradients> {
    let c = [g.c];
    match dev {
        Device::Cpu => {
            let mut dx = want[0].then(|| Tensor::uninit_cpu(x.shape()));
            let mut dgamma = want[1].then(|| Tensor::zeros(&c));
            let mut dbeta = want[2].then(|| Tensor::zeros(&c));
            let mut dr = want[3].then(|| Tensor::uninit_cpu(x.shape()));
            cpu::backward(
                g,
                x.data(),
                y.data(),
                p.mean.data(),
                p.invstd.data(),
                p.gamma.data(),
                p.activation(),
                train,
                dy.data(),
                BnGrads {
                    dx: dx.as_mut().map(|t| t.data_mut()),
                    dgamma: dgamma.as_mut().map(|t| t.data_mut()),
                    dbeta: dbeta.as_mut().map(|t| t.data_mut()),
                    dr: dr.as_mut().map(|t| t.data_mut()),
                },
            );
            for (t, name) in [(&dx, "bn_act backward dx"), (&dr, "bn_act backward dr")] {
                if let Some(t) = t {
                    t.check_written(name);
                }
            }
            Ok((dx, dgamma, dbeta, dr))
        }
        Device::Cuda(d) => {
            let out = |want: bool, shape: &[usize]| {
                want.then(|| Tensor::uninit_gpu(d, shape)).transpose()
            };
            let mut dx = out(want[0], x.shape())?;
            let mut dgamma = out(want[1], &c)?;
            let mut dbeta = out(want[2], &c)?;
            let mut dr = out(want[3], x.shape())?;
            cuda::backward(
                d,
                g,
                x.gpu(),
                match residual {
                    true => cuda::Gate::Output(y.gpu()),
                    false => cuda::Gate::FromInput,
                },
                dy.gpu(),
                &p.gpu(),
                train,
                cuda::BnGradsGpu {
                    dx: dx.as_mut().map(|t| t.gpu_mut()),
                    dgamma: dgamma.as_mut().map(|t| t.gpu_mut()),
                    dbeta: dbeta.as_mut().map(|t| t.gpu_mut()),
                    dr: dr.as_mut().map(|t| t.gpu_mut()),
                },
            )?;
            Ok((dx, dgamma, dbeta, dr))
        }
    }
}

/// Applies the BN running-statistics updates a graph recorded, in the order its passes ran:
/// running = (1 - momentum) * running + momentum * batch, for mean and variance.
pub fn apply_stat_updates(store: &mut ParamStore, updates: &[StatUpdate]) -> Result<()> {
    let dev = store.device().clone();
    for u in updates {
        // Two entries of the same store: take one out to borrow both mutably.
        let mut var = std::mem::replace(store.get_mut(u.running_var), Tensor::zeros(&[0]));
        let mean = store.get_mut(u.running_mean);
        match &dev {
            Device::Cpu => {
                cpu::update_running(mean.data_mut(), u.batch_mean.data(), BN_MOMENTUM);
                cpu::update_running(var.data_mut(), u.batch_var_unbiased.data(), BN_MOMENTUM);
            }
            Device::Cuda(d) => cuda::running_update(
                d,
                mean.gpu_mut(),
                var.gpu_mut(),
                u.batch_mean.gpu(),
                u.batch_var_unbiased.gpu(),
                BN_MOMENTUM,
            )?,
        }
        *store.get_mut(u.running_var) = var;
    }
    Ok(())
}

/// The graph node of one fused BN application, with the statistics it normalised with.
struct BnActNode {
    x: Var,
    gamma: Var,
    beta: Var,
    residual: Option<Var>,
    mask: Option<EntryId>,
    relu: bool,
    train: bool,
    geom: BnGeom,
    mean: Tensor,
    invstd: Tensor,
    /// Under bf16 the input gradients are stored rounded, as the activations are.
    precision: Precision,
}

impl Backward for BnActNode {
    fn traced(&self) -> Option<Traced<'_>> {
        Some(Traced::BnAct {
            x: self.x,
            residual: self.residual,
            gamma: self.gamma,
            beta: self.beta,
            mean: &self.mean,
            invstd: &self.invstd,
            relu: self.relu,
            mask: self.mask,
        })
    }

    fn backward(&self, pass: &mut BackwardPass<'_>, out: Var, g: &Tensor) {
        let want = [
            pass.needs(self.x),
            pass.needs(self.gamma),
            pass.needs(self.beta),
            self.residual.is_some_and(|r| pass.needs(r)),
        ];
        let p = BnInputs {
            mean: &self.mean,
            invstd: &self.invstd,
            gamma: pass.value(self.gamma),
            beta: pass.value(self.beta),
            mask: self.mask.map(|m| pass.store().get(m)),
            relu: self.relu,
        };
        let (dx, dgamma, dbeta, dr) = ok(backward(
            pass.device(),
            &self.geom,
            pass.value(self.x),
            (pass.value(out), self.residual.is_some()),
            g,
            &p,
            self.train,
            want,
        ));
        if let Some(d) = dx {
            pass.accumulate(self.x, ok(self.precision.store(d, pass.device())));
        }
        if let Some(d) = dgamma {
            pass.accumulate(self.gamma, d);
        }
        if let Some(d) = dbeta {
            pass.accumulate(self.beta, d);
        }
        if let (Some(r), Some(d)) = (self.residual, dr) {
            pass.accumulate(r, ok(self.precision.store(d, pass.device())));
        }
    }
}

impl Graph<'_> {
    /// Fused BatchNorm (+ residual) (+ masked ReLU) with the parameter set `bn`.
    /// In train mode the batch statistics are used and a running-stat update is recorded.
    /// In soft-mask mode a masked ReLU is the BN (+ residual) followed by `soft_relu` with the
    /// mask entry as α.
    pub fn bn_act(
        &mut self,
        x: Var,
        bn: BnIds,
        residual: Option<Var>,
        relu: bool,
        mask: Option<EntryId>,
        train: bool,
    ) -> Var {
        if let (true, true, Some(m)) = (self.soft_masks(), relu, mask) {
            let z = self.bn_act(x, bn, residual, false, None, train);
            let alpha = self.param(m);
            return self.soft_relu(z, alpha);
        }
        let gamma = self.param(bn.weight);
        let beta = self.param(bn.bias);
        let s = self.value(x).shape().to_vec();
        let geom = BnGeom {
            n: s[0],
            c: s[1],
            hw: s[2..].iter().product(),
        };
        let sums = if train {
            self.take_channel_sums(x)
        } else {
            None
        };
        let (store, dev) = (self.store(), self.device());
        let (mean, invstd) = if train {
            let [mean, invstd, var] = ok(match (dev, sums) {
                (Device::Cuda(d), Some(sums)) => batch_stats_from_sums(d, &geom, &sums, BN_EPS),
                _ => batch_stats(dev, &geom, self.value(x), BN_EPS),
            });
            self.record_stats(StatUpdate {
                running_mean: bn.running_mean,
                running_var: bn.running_var,
                batch_mean: mean.clone(),
                batch_var_unbiased: var,
            });
            (mean, invstd)
        } else {
            (
                store.get(bn.running_mean).clone(),
                ok(eval_invstd(dev, store.get(bn.running_var), BN_EPS)),
            )
        };
        let p = BnInputs {
            mean: &mean,
            invstd: &invstd,
            gamma: self.value(gamma),
            beta: self.value(beta),
            mask: mask.map(|m| store.get(m)),
            relu,
        };
        let y = ok(forward(
            dev,
            &geom,
            self.value(x),
            residual.map(|r| self.value(r)),
            &p,
        ));
        // The activation as this precision stores it (bf16: rounded).
        let precision = self.precision();
        let y = ok(precision.store(y, dev));
        let mut inputs = vec![x, gamma, beta];
        inputs.extend(residual);
        let node = BnActNode {
            x,
            gamma,
            beta,
            residual,
            mask,
            relu,
            train,
            geom,
            mean,
            invstd,
            precision,
        };
        self.push(node, y, &inputs)
    }
}
