//! Reverse pass over a graph: each node's gradient is handed to its op's backward rule, which
//! produces gradients for the inputs that need them.

use super::{EntryId, Graph, Op, Var};
use crate::ops::bn_act::{self, Activation, BnGrads};
use crate::ops::{conv, elementwise, linear, loss, pool};
use std::collections::HashMap;

/// Gradients produced by `Graph::backward`.
#[derive(Debug, Default)]
pub struct Gradients {
    params: HashMap<EntryId, Vec<f32>>,
    inputs: HashMap<usize, Vec<f32>>,
}

impl Gradients {
    /// The gradient of a store parameter (None if the loss does not depend on it).
    pub fn param(&self, id: EntryId) -> Option<&[f32]> {
        self.params.get(&id).map(|v| v.as_slice())
    }

    /// The gradient of an input created with `requires_grad`.
    pub fn input(&self, v: Var) -> Option<&[f32]> {
        self.inputs.get(&v.0).map(|g| g.as_slice())
    }

    pub fn take_input(&mut self, v: Var) -> Option<Vec<f32>> {
        self.inputs.remove(&v.0)
    }
}

fn accumulate(grads: &mut [Option<Vec<f32>>], v: Var, g: Vec<f32>) {
    match &mut grads[v.0] {
        Some(acc) => elementwise::add_assign(acc, &g),
        slot @ None => *slot = Some(g),
    }
}

impl Graph<'_> {
    /// Gradients of the scalar `loss` with respect to every parameter and marked input.
    pub fn backward(&self, loss: Var) -> Gradients {
        assert_eq!(
            self.value(loss).numel(),
            1,
            "backward: the loss must be a scalar"
        );
        let mut grads: Vec<Option<Vec<f32>>> = (0..self.nodes.len()).map(|_| None).collect();
        grads[loss.0] = Some(vec![1.0]);
        let mut out = Gradients::default();
        for i in (0..=loss.0).rev() {
            let node = &self.nodes[i];
            if !node.needs_grad {
                continue;
            }
            let Some(g) = grads[i].take() else { continue };
            match &node.op {
                Op::Input => {
                    out.inputs.insert(i, g);
                }
                Op::Param(id) => {
                    out.params.insert(*id, g);
                }
                op => self.backward_op(op, Var(i), &g, &mut grads),
            }
        }
        out
    }

    fn zeros_like(&self, v: Var) -> Vec<f32> {
        vec![0.0; self.value(v).numel()]
    }

    fn backward_op(&self, op: &Op, out: Var, g: &[f32], grads: &mut [Option<Vec<f32>>]) {
        match op {
            Op::Input | Op::Param(_) => unreachable!("leaves are handled by backward"),
            Op::Conv { x, w, geom } => {
                if self.needs(*x) {
                    let mut dx = self.zeros_like(*x);
                    conv::backward_data(geom, self.data(*w), g, &mut dx);
                    accumulate(grads, *x, dx);
                }
                if self.needs(*w) {
                    let mut dw = self.zeros_like(*w);
                    conv::backward_weight(geom, self.data(*x), g, &mut dw);
                    accumulate(grads, *w, dw);
                }
            }
            Op::BnAct {
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
            } => {
                let mut dx = self.needs(*x).then(|| self.zeros_like(*x));
                let mut dgamma = self.needs(*gamma).then(|| self.zeros_like(*gamma));
                let mut dbeta = self.needs(*beta).then(|| self.zeros_like(*beta));
                let mut dr = residual
                    .filter(|r| self.needs(*r))
                    .map(|r| self.zeros_like(r));
                let act = Activation {
                    relu: *relu,
                    mask: mask.map(|m| self.store.get(m).data()),
                };
                bn_act::backward(
                    geom,
                    self.data(*x),
                    self.data(out),
                    mean,
                    invstd,
                    self.data(*gamma),
                    act,
                    *train,
                    g,
                    BnGrads {
                        dx: dx.as_deref_mut(),
                        dgamma: dgamma.as_deref_mut(),
                        dbeta: dbeta.as_deref_mut(),
                        dr: dr.as_deref_mut(),
                    },
                );
                if let Some(d) = dx {
                    accumulate(grads, *x, d);
                }
                if let Some(d) = dgamma {
                    accumulate(grads, *gamma, d);
                }
                if let Some(d) = dbeta {
                    accumulate(grads, *beta, d);
                }
                if let (Some(r), Some(d)) = (residual, dr) {
                    accumulate(grads, *r, d);
                }
            }
            Op::Linear { x, w, b } => {
                let xs = self.value(*x).shape();
                let (n, inp, o) = (xs[0], xs[1], self.value(*w).dim(0));
                if self.needs(*x) {
                    let mut dx = self.zeros_like(*x);
                    linear::backward_data(self.data(*w), g, n, inp, o, &mut dx);
                    accumulate(grads, *x, dx);
                }
                if self.needs(*w) || self.needs(*b) {
                    let (mut dw, mut db) = (self.zeros_like(*w), self.zeros_like(*b));
                    linear::backward_params(self.data(*x), g, n, inp, o, &mut dw, &mut db);
                    accumulate(grads, *w, dw);
                    accumulate(grads, *b, db);
                }
            }
            Op::AvgPool { x, hw } => {
                let mut dx = self.zeros_like(*x);
                pool::backward(g, g.len(), *hw, &mut dx);
                accumulate(grads, *x, dx);
            }
            Op::Add { a, b } => {
                if self.needs(*a) {
                    accumulate(grads, *a, g.to_vec());
                }
                if self.needs(*b) {
                    accumulate(grads, *b, g.to_vec());
                }
            }
            Op::Scale { x, factor } => {
                accumulate(grads, *x, g.iter().map(|v| v * factor).collect());
            }
            Op::ChannelAffine { x, scale } => {
                let s = self.value(*x).shape();
                let mut dx = self.zeros_like(*x);
                elementwise::channel_affine_backward(g, scale, s[2..].iter().product(), &mut dx);
                accumulate(grads, *x, dx);
            }
            Op::CrossEntropy {
                logits,
                labels,
                sum,
                probs,
            } => {
                let k = self.value(*logits).dim(1);
                let mut dz = self.zeros_like(*logits);
                loss::cross_entropy_backward(probs, labels, k, *sum, g[0], &mut dz);
                accumulate(grads, *logits, dz);
            }
            Op::KlDiv { s, temp, ps, pt } => {
                let k = self.value(*s).dim(1);
                let mut ds = self.zeros_like(*s);
                loss::kl_div_backward(ps, pt, k, *temp, g[0], &mut ds);
                accumulate(grads, *s, ds);
            }
            Op::Attention {
                fs,
                target,
                a,
                norms,
            } => {
                let sh = self.value(*fs).shape();
                let (n, ch, hw) = (sh[0], sh[1], sh[2..].iter().product());
                let mut d = self.zeros_like(*fs);
                loss::attention_backward(self.data(*fs), a, norms, target, n, ch, hw, g[0], &mut d);
                accumulate(grads, *fs, d);
            }
        }
    }
}
