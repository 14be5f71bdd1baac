//! SGD with momentum and weight decay (PyTorch semantics).

use super::cuda;
use crate::autograd::{EntryId, Gradients, ParamStore};
use crate::device::ok;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    pub momentum: f32,
    pub weight_decay: f32,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            momentum: 0.9,
            weight_decay: 5e-4,
        }
    }
}

/// g ← grad + wd·p; buf ← momentum·buf + g (buf = g on the first step); p ← p − lr·buf.
/// Weight decay applies to every parameter, BN included, as in the reference. Buffers live on
/// the parameters' device.
pub struct Sgd {
    pub config: SgdConfig,
    /// Momentum buffer per parameter (None until the parameter's first step).
    momentum: Vec<(EntryId, Option<Tensor>)>,
}

impl Sgd {
    pub fn new(config: SgdConfig, store: &ParamStore) -> Self {
        let momentum = store.param_ids().into_iter().map(|id| (id, None)).collect();
        Sgd { config, momentum }
    }

    pub fn step(&mut self, store: &mut ParamStore, grads: &Gradients, lr: f32) {
        let (mu, wd) = (self.config.momentum, self.config.weight_decay);
        let store_device = &store.device().clone();
        let gpu = store_device.gpu();
        for (id, buf) in &mut self.momentum {
            let Some(g) = grads.param(*id) else { continue };
            let p = store.get_mut(*id);
            if let Some(d) = &gpu {
                let first = buf.is_none();
                let b = buf.get_or_insert_with(|| ok(Tensor::zeros_on(store_device, p.shape())));
                let c = &self.config;
                ok(cuda::sgd_update(
                    d,
                    p.gpu_mut(),
                    b.gpu_mut(),
                    g.gpu(),
                    lr,
                    c,
                    first,
                ));
                continue;
            }
            let (p, g) = (p.data_mut(), g.data());
            match buf {
                // First step: the buffer starts as the (decayed) gradient itself.
                None => {
                    let b: Vec<f32> = g.iter().zip(p.iter()).map(|(g, p)| g + wd * p).collect();
                    p.iter_mut().zip(&b).for_each(|(pv, bv)| *pv -= lr * bv);
                    *buf = Some(Tensor::from_vec(&[b.len()], b).expect("flat buffer"));
                }
                Some(b) => {
                    for ((pv, bv), &gv) in p.iter_mut().zip(b.data_mut().iter_mut()).zip(g) {
                        *bv = mu * *bv + gv + wd * *pv;
                        *pv -= lr * *bv;
                    }
                }
            }
        }
    }

    /// Momentum buffers by parameter id, for checkpoints.
    pub fn buffers(&self) -> impl Iterator<Item = (EntryId, &Tensor)> {
        self.momentum
            .iter()
            .filter_map(|(id, b)| b.as_ref().map(|b| (*id, b)))
    }

    /// Restores a momentum buffer (from a checkpoint) on the store's device.
    pub fn set_buffer(&mut self, id: EntryId, values: Tensor) {
        if let Some(slot) = self.momentum.iter_mut().find(|(i, _)| *i == id) {
            slot.1 = Some(values);
        }
    }
}
