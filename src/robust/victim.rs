//! The model under attack as the evaluation attacks see it: logits of a batch, and each
//! image's loss with its input gradient, through the model's graph on the model's device.

use super::objective::{loss_and_grad, Objective};
use crate::autograd::{GradMode, Graph};
use crate::device::ok;
use crate::nn::{Domain, Model, Pass};
use crate::tensor::Tensor;

/// A model in eval mode under one BN set.
#[derive(Clone, Copy)]
pub struct Victim<'m> {
    pub model: &'m Model,
    pub domain: Domain,
}

/// One forward and backward pass: host logits [n, k], each image's loss, and the gradient of
/// the summed loss with respect to the input (host, the input's shape).
pub struct Probe {
    pub logits: Vec<f32>,
    pub losses: Vec<f64>,
    pub grad: Vec<f32>,
}

impl<'m> Victim<'m> {
    pub fn new(model: &'m Model, domain: Domain) -> Self {
        Victim { model, domain }
    }

    pub fn classes(&self) -> usize {
        self.model.config.num_classes
    }

    fn pass(&self) -> Pass {
        Pass {
            domain: self.domain,
            train: false,
        }
    }

    /// Host logits [n, k] of host images `x` [n, c, h, w] in [0, 1].
    pub fn logits(&self, x: &Tensor) -> Vec<f32> {
        let mut g = Graph::new(&self.model.store, GradMode::None);
        let xv = g.input(x.clone(), false);
        let out = self.model.forward(&mut g, xv, self.pass());
        ok(g.value(out.logits).to_host()).into_vec()
    }

    /// Logits, per-image `obj` losses and d(Σ loss)/dx for host images `x`.
    pub fn probe(&self, x: &Tensor, labels: &[u32], obj: Objective<'_>) -> Probe {
        let mut g = Graph::new(&self.model.store, GradMode::InputsOnly);
        let xv = g.input(x.clone(), true);
        let out = self.model.forward(&mut g, xv, self.pass());
        let z = ok(g.value(out.logits).to_host());
        let (losses, seed) = loss_and_grad(obj, z.data(), self.classes(), labels);
        let seed = Tensor::from_vec(z.shape(), seed).expect("one gradient per logit");
        let seed = ok(seed.into_device(g.device()));
        let grads = g.backward_from(out.logits, seed);
        let gx = grads
            .input(xv)
            .expect("the attacked input carries a gradient");
        Probe {
            logits: z.into_vec(),
            losses,
            grad: ok(gx.to_host()).into_vec(),
        }
    }
}

/// A host batch of `shape` from the attack's working copy of its pixels.
pub fn host_batch(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_vec(shape, data.to_vec()).expect("an attacked batch keeps its shape")
}

/// The rows `pick` of a host batch [n, ...].
pub fn rows(x: &Tensor, pick: &[usize]) -> Tensor {
    let d = x.numel() / x.dim(0).max(1);
    let data: Vec<f32> = pick
        .iter()
        .flat_map(|&i| x.data()[i * d..(i + 1) * d].iter().copied())
        .collect();
    let mut shape = x.shape().to_vec();
    shape[0] = pick.len();
    Tensor::from_vec(&shape, data).expect("rows keep the row shape")
}
