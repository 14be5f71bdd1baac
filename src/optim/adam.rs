//! Adam with PyTorch `torch.optim.Adam` semantics (single-tensor path: no amsgrad, no
//! maximize, no foreach/fused), plus the optional L1 penalty of SNL's mask search
//! (λ·Σ|α|, whose gradient λ·sign(α) joins α's gradient before the update).

use super::cuda;
use crate::autograd::{EntryId, Gradients, ParamStore};
use crate::device::ok;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

const EXP_AVG_PREFIX: &str = "optimizer.adam.exp_avg.";
const EXP_AVG_SQ_PREFIX: &str = "optimizer.adam.exp_avg_sq.";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// The scalars of one element-wise Adam update, rounded to f32 exactly where PyTorch rounds
/// them. Per element (the CPU loop and kernels/optim.cu `optim_adam_update` alike; fma(a,b,c)
/// = a·b + c rounded once):
///   g ← grad + l1·sign(p);  g ← fma(wd, p, g) (when wd ≠ 0)       (add with alpha)
///   m ← fma(1−β1, g − m, m)                                       (lerp_, weight < 0.5)
///   v ← fma((1−β2)·g, g, v·β2)                                    (mul_ then addcmul_)
///   p ← p + (−step_size·m) / (√v / √(1−β2^t) + eps)               (addcdiv_)
/// The fused multiply-adds are where PyTorch's CPU kernels (built with FMA contraction) fuse;
/// with them this reproduces torch.optim.Adam's float32 results bit for bit on the golden
/// fixture but for one last-place difference in p.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// −lr / (1 − β1^t), computed in f64 (Python floats) and rounded once.
    pub neg_step_size: f32,
    /// √(1 − β2^t), computed in f64 and rounded once.
    pub bias_correction2_sqrt: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// λ of the L1 term for this entry (0 for entries without it).
    pub l1: f32,
}

impl AdamStep {
    /// The scalars PyTorch derives from its Python-float hyper-parameters for step `t` (≥ 1).
    pub fn new(config: &AdamConfig, lr: f32, t: u64, l1: f32) -> AdamStep {
        let (b1, b2) = (decimal(config.beta1), decimal(config.beta2));
        let bias_correction1 = 1.0 - b1.powf(t as f64);
        let bias_correction2 = 1.0 - b2.powf(t as f64);
        AdamStep {
            neg_step_size: (-(decimal(lr) / bias_correction1)) as f32,
            bias_correction2_sqrt: bias_correction2.sqrt() as f32,
            one_minus_beta1: (1.0 - b1) as f32,
            beta2: config.beta2,
            one_minus_beta2: (1.0 - b2) as f32,
            eps: config.eps,
            weight_decay: config.weight_decay,
            l1,
        }
    }

    /// One element: returns the new (p, m, v).
    fn update(&self, p: f32, g: f32, m: f32, v: f32) -> (f32, f32, f32) {
        let sign = if p > 0.0 {
            1.0
        } else if p < 0.0 {
            -1.0
        } else {
            0.0
        };
        let mut g = g + self.l1 * sign;
        if self.weight_decay != 0.0 {
            g = self.weight_decay.mul_add(p, g);
        }
        let m = self.one_minus_beta1.mul_add(g - m, m);
        let v = (self.one_minus_beta2 * g).mul_add(g, v * self.beta2);
        let denom = v.sqrt() / self.bias_correction2_sqrt + self.eps;
        (p + (self.neg_step_size * m) / denom, m, v)
    }
}

/// The f64 a user meant by an f32 hyper-parameter: PyTorch keeps lr and the betas as Python
/// floats (0.9, not 0.9f32 widened), and the shortest decimal that round-trips the f32 is that
/// Python float whenever the value was written as a short decimal. This keeps the bias
/// corrections within an f64 rounding of PyTorch's instead of ~1e-7 off.
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// Both moments and the step count of one entry (present once it has stepped).
struct Moments {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// Adam over a chosen set of store entries (trainable parameters and SNL's α mask entries
/// alike). Moments live on the store's device.
pub struct Adam {
    pub config: AdamConfig,
    states: Vec<(EntryId, Option<Moments>)>,
}

impl Adam {
    /// Adam over exactly these store entries (any kind: params and SNL's α mask entries).
    pub fn new(config: AdamConfig, ids: Vec<EntryId>) -> Adam {
        let states = ids.into_iter().map(|id| (id, None)).collect();
        Adam { config, states }
    }

    /// One step at `lr`. `l1` = Some((ids, λ)) adds λ·sign(p) to the gradient of those ids
    /// before the update (sign(0) = 0, the subgradient torch.abs gives). Entries with no
    /// gradient in `grads` are skipped and their step count does not advance (as PyTorch skips
    /// grad = None) — except L1 ids: there the penalty alone is the gradient, as it is in
    /// PyTorch when `loss + λ·Σ|α|` is differentiated and the loss does not reach α.
    pub fn step(
        &mut self,
        store: &mut ParamStore,
        grads: &Gradients,
        lr: f32,
        l1: Option<(&[EntryId], f32)>,
    ) {
        let device = store.device().clone();
        let zeros = |shape: &[usize]| ok(Tensor::zeros_on(&device, shape));
        for (id, state) in &mut self.states {
            let lambda = l1.and_then(|(ids, lambda)| ids.contains(id).then_some(lambda));
            let zero_grad;
            let g = match (grads.param(*id), lambda) {
                (Some(g), _) => g,
                (None, Some(_)) => {
                    zero_grad = zeros(store.get(*id).shape());
                    &zero_grad
                }
                (None, None) => continue,
            };
            let p = store.get_mut(*id);
            // PyTorch starts both moments at zero on a tensor's first step.
            let s = state.get_or_insert_with(|| Moments {
                step: 0,
                exp_avg: zeros(p.shape()),
                exp_avg_sq: zeros(p.shape()),
            });
            s.step += 1;
            let k = AdamStep::new(&self.config, lr, s.step, lambda.unwrap_or(0.0));
            if let Some(d) = device.gpu() {
                let (m, v) = (s.exp_avg.gpu_mut(), s.exp_avg_sq.gpu_mut());
                ok(cuda::adam_update(d, p.gpu_mut(), m, v, g.gpu(), &k));
                continue;
            }
            let (m, v) = (s.exp_avg.data_mut(), s.exp_avg_sq.data_mut());
            for (((pv, &gv), mv), vv) in p.data_mut().iter_mut().zip(g.data()).zip(m).zip(v) {
                (*pv, *mv, *vv) = k.update(*pv, gv, *mv, *vv);
            }
        }
    }

    /// The moment tensors for a checkpoint, named "optimizer.adam.exp_avg.<entry name>" and
    /// "optimizer.adam.exp_avg_sq.<entry name>" (only entries that have stepped).
    pub fn state_tensors<'a>(&'a self, store: &ParamStore) -> Vec<(String, &'a Tensor)> {
        let mut out = Vec::new();
        for (id, s) in &self.states {
            if let Some(s) = s {
                let name = &store.entry(*id).name;
                out.push((format!("{EXP_AVG_PREFIX}{name}"), &s.exp_avg));
                out.push((format!("{EXP_AVG_SQ_PREFIX}{name}"), &s.exp_avg_sq));
            }
        }
        out
    }

    /// Per-entry step counts by entry name (goes into the checkpoint's JSON header).
    pub fn step_counts(&self, store: &ParamStore) -> Vec<(String, u64)> {
        self.states
            .iter()
            .filter_map(|(id, s)| Some((store.entry(*id).name.clone(), s.as_ref()?.step)))
            .collect()
    }

    /// Restores from what `step_counts` and `state_tensors` returned: `tensor(name)` looks a
    /// saved tensor up. Entries not named in `counts` start afresh. Errors, naming the entry,
    /// on an entry this optimiser does not cover, a missing moment or a wrong shape; on error
    /// the optimiser is unchanged. Moments are moved to the store's device.
    pub fn restore(
        &mut self,
        store: &ParamStore,
        counts: &[(String, u64)],
        tensor: impl Fn(&str) -> Option<Tensor>,
    ) -> Result<()> {
        let mut restored: Vec<(EntryId, Option<Moments>)> =
            self.states.iter().map(|(id, _)| (*id, None)).collect();
        for (name, step) in counts {
            let slot = store
                .id(name)
                .and_then(|id| restored.iter_mut().find(|(i, _)| *i == id))
                .ok_or_else(|| {
                    Error::Data(format!(
                        "Adam state names entry {name}, which this optimiser does not update"
                    ))
                })?;
            let want = store.get(slot.0).shape();
            let moment = |prefix: &str| -> Result<Tensor> {
                let key = format!("{prefix}{name}");
                let t = tensor(&key).ok_or_else(|| {
                    Error::Data(format!(
                        "Adam state of {name} ({step} steps) lacks the tensor {key}"
                    ))
                })?;
                if t.shape() != want {
                    return Err(Error::shape(
                        &format!("Adam state {key}"),
                        format!("{want:?} (the shape of {name})"),
                        format!("{:?}", t.shape()),
                    ));
                }
                t.into_device(store.device())
            };
            slot.1 = Some(Moments {
                step: *step,
                exp_avg: moment(EXP_AVG_PREFIX)?,
                exp_avg_sq: moment(EXP_AVG_SQ_PREFIX)?,
            });
        }
        self.states = restored;
        Ok(())
    }
}
