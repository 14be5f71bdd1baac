//! Reverse pass over a graph: each node's gradient is handed to its op's backward rule, which
//! produces gradients for the inputs that need them. Gradients live on the graph's device,
//! except those of one-element values (losses and their sums), which stay on the host: a loss
//! kernel then reads its upstream gradient as a plain scalar, with no download.

use super::{gpu, EntryId, Graph, Op, Var};
use crate::ops::bn_act::{self, Activation, BnGrads};
use crate::ops::{conv, elementwise, linear, loss, pool, soft_relu};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Gradients produced by `Graph::backward`, on the graph's device.
#[derive(Debug, Default)]
pub struct Gradients {
    params: HashMap<EntryId, Tensor>,
    inputs: HashMap<usize, Tensor>,
}

impl Gradients {
    /// Parameter gradients given directly rather than by a backward pass (optimiser tests
    /// replaying PyTorch's gradients).
    pub fn from_params(params: impl IntoIterator<Item = (EntryId, Tensor)>) -> Gradients {
        Gradients {
            params: params.into_iter().collect(),
            inputs: HashMap::new(),
        }
    }

    /// The gradient of a store parameter (None if the loss does not depend on it).
    pub fn param(&self, id: EntryId) -> Option<&Tensor> {
        self.params.get(&id)
    }

    /// The gradient of an input created with `requires_grad`.
    pub fn input(&self, v: Var) -> Option<&Tensor> {
        self.inputs.get(&v.0)
    }
}

impl Graph<'_> {
    fn accumulate(&self, grads: &mut [Option<Tensor>], v: Var, g: Tensor) {
        match &mut grads[v.0] {
            Some(acc) => match (self.gpu(), acc.is_cuda()) {
                (Some(d), true) => gpu::accumulate(d, acc, &g),
                _ => elementwise::add_assign(acc.data_mut(), g.data()),
            },
            slot @ None => *slot = Some(g),
        }
    }

    /// Gradients of the scalar `loss` with respect to every parameter and marked input.
    pub fn backward(&self, loss: Var) -> Gradients {
        assert_eq!(
            self.value(loss).numel(),
            1,
            "backward: the loss must be a scalar"
        );
        let mut grads: Vec<Option<Tensor>> = (0..self.nodes.len()).map(|_| None).collect();
        grads[loss.0] = Some(Tensor::scalar(1.0));
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

    fn zeros_like(&self, v: Var) -> Tensor {
        Tensor::zeros(self.value(v).shape())
    }

    fn backward_op(&self, op: &Op, out: Var, g: &Tensor, grads: &mut [Option<Tensor>]) {
        let dev = self.gpu();
        match op {
            Op::Input | Op::Param(_) => unreachable!("leaves are handled by backward"),
            Op::Conv { x, w, geom } => {
                if self.needs(*x) {
                    let dx = match dev {
                        Some(d) => gpu::conv2d_backward_data(d, geom, self.value(*w), g),
                        None => {
                            let mut dx = self.zeros_like(*x);
                            conv::backward_data(geom, self.data(*w), g.data(), dx.data_mut());
                            dx
                        }
                    };
                    self.accumulate(grads, *x, dx);
                }
                if self.needs(*w) {
                    let dw = match dev {
                        Some(d) => gpu::conv2d_backward_weight(d, geom, self.value(*x), g),
                        None => {
                            let mut dw = self.zeros_like(*w);
                            conv::backward_weight(geom, self.data(*x), g.data(), dw.data_mut());
                            dw
                        }
                    };
                    self.accumulate(grads, *w, dw);
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
                let want = [
                    self.needs(*x),
                    self.needs(*gamma),
                    self.needs(*beta),
                    residual.is_some_and(|r| self.needs(r)),
                ];
                let mask_t = mask.map(|m| self.store.get(m));
                let (dx, dgamma, dbeta, dr) = match dev {
                    Some(d) => {
                        let t = gpu::BnTensors {
                            mean,
                            invstd,
                            gamma: self.value(*gamma),
                            beta: self.value(*beta),
                            mask: mask_t,
                            relu: *relu,
                        };
                        gpu::bn_backward(
                            d,
                            geom,
                            self.value(*x),
                            self.value(out),
                            g,
                            &t,
                            *train,
                            want,
                        )
                    }
                    None => {
                        let mut dx = want[0].then(|| self.zeros_like(*x));
                        let mut dgamma = want[1].then(|| self.zeros_like(*gamma));
                        let mut dbeta = want[2].then(|| self.zeros_like(*beta));
                        let mut dr = want[3].then(|| self.zeros_like(*x));
                        let act = Activation {
                            relu: *relu,
                            mask: mask_t.map(|m| m.data()),
                        };
                        bn_act::backward(
                            geom,
                            self.data(*x),
                            self.data(out),
                            mean.data(),
                            invstd.data(),
                            self.data(*gamma),
                            act,
                            *train,
                            g.data(),
                            BnGrads {
                                dx: dx.as_mut().map(|t| t.data_mut()),
                                dgamma: dgamma.as_mut().map(|t| t.data_mut()),
                                dbeta: dbeta.as_mut().map(|t| t.data_mut()),
                                dr: dr.as_mut().map(|t| t.data_mut()),
                            },
                        );
                        (dx, dgamma, dbeta, dr)
                    }
                };
                if let Some(d) = dx {
                    self.accumulate(grads, *x, d);
                }
                if let Some(d) = dgamma {
                    self.accumulate(grads, *gamma, d);
                }
                if let Some(d) = dbeta {
                    self.accumulate(grads, *beta, d);
                }
                if let (Some(r), Some(d)) = (residual, dr) {
                    self.accumulate(grads, *r, d);
                }
            }
            Op::Linear { x, w, b } => {
                let xs = self.value(*x).shape();
                let s = crate::device::launch::linear::LinearShape {
                    n: xs[0],
                    inp: xs[1],
                    out: self.value(*w).dim(0),
                };
                if self.needs(*x) {
                    let dx = match dev {
                        Some(d) => gpu::linear_backward_data(d, s, self.value(*w), g),
                        None => {
                            let mut dx = self.zeros_like(*x);
                            linear::backward_data(
                                self.data(*w),
                                g.data(),
                                s.n,
                                s.inp,
                                s.out,
                                dx.data_mut(),
                            );
                            dx
                        }
                    };
                    self.accumulate(grads, *x, dx);
                }
                if self.needs(*w) || self.needs(*b) {
                    let (dw, db) = match dev {
                        Some(d) => gpu::linear_backward_params(d, s, self.value(*x), g),
                        None => {
                            let (mut dw, mut db) = (self.zeros_like(*w), self.zeros_like(*b));
                            linear::backward_params(
                                self.data(*x),
                                g.data(),
                                s.n,
                                s.inp,
                                s.out,
                                dw.data_mut(),
                                db.data_mut(),
                            );
                            (dw, db)
                        }
                    };
                    self.accumulate(grads, *w, dw);
                    self.accumulate(grads, *b, db);
                }
            }
            Op::AvgPool { x } => {
                let xs = self.value(*x).shape();
                let dx = match dev {
                    Some(d) => gpu::avg_pool_backward(d, g, xs),
                    None => {
                        let mut dx = self.zeros_like(*x);
                        pool::backward(g.data(), xs[0] * xs[1], xs[2] * xs[3], dx.data_mut());
                        dx
                    }
                };
                self.accumulate(grads, *x, dx);
            }
            Op::Add { a, b } => {
                if self.needs(*a) {
                    self.accumulate(grads, *a, g.clone());
                }
                if self.needs(*b) {
                    self.accumulate(grads, *b, g.clone());
                }
            }
            Op::Scale { x, factor } => {
                let dx = match (dev, g.is_cuda()) {
                    (Some(d), true) => gpu::scale(d, g, *factor),
                    _ => {
                        let mut dx = g.clone();
                        dx.data_mut().iter_mut().for_each(|v| *v *= factor);
                        dx
                    }
                };
                self.accumulate(grads, *x, dx);
            }
            Op::ChannelAffine { x, scale } => {
                let dx = match dev {
                    Some(d) => gpu::channel_affine_backward(d, g, scale),
                    None => {
                        let s = self.value(*x).shape();
                        let mut dx = self.zeros_like(*x);
                        elementwise::channel_affine_backward(
                            g.data(),
                            scale,
                            s[2..].iter().product(),
                            dx.data_mut(),
                        );
                        dx
                    }
                };
                self.accumulate(grads, *x, dx);
            }
            Op::CrossEntropy {
                logits,
                labels,
                sum,
                probs,
            } => {
                let dz = match (dev, &labels.gpu) {
                    (Some(d), Some(lg)) => {
                        gpu::cross_entropy_backward(d, probs, lg, *sum, g.item())
                    }
                    _ => {
                        let k = self.value(*logits).dim(1);
                        let mut dz = self.zeros_like(*logits);
                        loss::cross_entropy_backward(
                            probs.data(),
                            &labels.host,
                            k,
                            *sum,
                            g.item(),
                            dz.data_mut(),
                        );
                        dz
                    }
                };
                self.accumulate(grads, *logits, dz);
            }
            Op::KlDiv { s, temp, ps, pt } => {
                let ds = match dev {
                    Some(d) => gpu::kl_div_backward(d, ps, pt, *temp, g.item()),
                    None => {
                        let k = self.value(*s).dim(1);
                        let mut ds = self.zeros_like(*s);
                        loss::kl_div_backward(
                            ps.data(),
                            pt.data(),
                            k,
                            *temp,
                            g.item(),
                            ds.data_mut(),
                        );
                        ds
                    }
                };
                self.accumulate(grads, *s, ds);
            }
            Op::Attention {
                fs,
                target,
                a,
                norms,
            } => {
                let d_fs = match dev {
                    Some(d) => {
                        gpu::attention_backward(d, self.value(*fs), a, norms, target, g.item())
                    }
                    None => {
                        let sh = self.value(*fs).shape();
                        let (n, ch, hw) = (sh[0], sh[1], sh[2..].iter().product());
                        let mut d = self.zeros_like(*fs);
                        loss::attention_backward(
                            self.data(*fs),
                            a.data(),
                            norms.data(),
                            target.data(),
                            n,
                            ch,
                            hw,
                            g.item(),
                            d.data_mut(),
                        );
                        d
                    }
                };
                self.accumulate(grads, *fs, d_fs);
            }
            Op::Jsd { z } => {
                let dz = match dev {
                    Some(d) => gpu::jsd_backward(d, z.map(|v| self.value(v)), g.item()),
                    None => {
                        let k = self.value(z[0]).dim(1);
                        let mut dz = z.map(|v| self.zeros_like(v));
                        let [d0, d1, d2] = &mut dz;
                        loss::jsd_backward(
                            z.map(|v| self.data(v)),
                            k,
                            g.item(),
                            [d0.data_mut(), d1.data_mut(), d2.data_mut()],
                        );
                        dz
                    }
                };
                for (v, d) in z.iter().zip(dz) {
                    if self.needs(*v) {
                        self.accumulate(grads, *v, d);
                    }
                }
            }
            Op::SoftRelu { z, alpha } => {
                let (zv, av) = (self.value(*z), self.value(*alpha));
                if self.needs(*z) {
                    let dz = match dev {
                        Some(d) => gpu::soft_relu_backward_input(d, zv, av, g),
                        None => {
                            let mut dz = self.zeros_like(*z);
                            soft_relu::backward_input(
                                zv.data(),
                                av.data(),
                                g.data(),
                                dz.data_mut(),
                            );
                            dz
                        }
                    };
                    self.accumulate(grads, *z, dz);
                }
                if self.needs(*alpha) {
                    let da = match dev {
                        Some(d) => gpu::soft_relu_backward_alpha(d, zv, av.shape(), g),
                        None => {
                            let mut da = self.zeros_like(*alpha);
                            soft_relu::backward_alpha(zv.data(), g.data(), da.data_mut());
                            da
                        }
                    };
                    self.accumulate(grads, *alpha, da);
                }
            }
        }
    }
}
