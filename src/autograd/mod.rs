//! The tape: one `Graph` per step records ops (with what their backward needs) and walks them
//! back for gradients of parameters and of inputs (PGD needs dL/dx).

mod backward;
pub mod gpu;
pub mod store;

pub use backward::Gradients;
pub use store::{Entry, EntryId, EntryKind, ParamStore, StatUpdate};

use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::launch::linear::LinearShape;
use crate::device::Device;
use crate::ops::bn_act::{self, Activation, BnGeom, BN_EPS};
use crate::ops::conv::{self, ConvGeom};
use crate::ops::{elementwise, linear, loss, pool, soft_relu};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

/// A handle to a node of one graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(pub(crate) usize);

/// Which gradients a graph computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradMode {
    /// Forward only (evaluation, the frozen teacher).
    None,
    /// Gradients reach inputs marked `requires_grad` but no parameter: attack steps skip every
    /// weight-gradient GEMM.
    InputsOnly,
    /// Gradients for parameters and marked inputs (training).
    All,
}

/// The store ids of one BatchNorm parameter set (BN_c, BN_a or BN_r of a layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnIds {
    pub weight: EntryId,
    pub bias: EntryId,
    pub running_mean: EntryId,
    pub running_var: EntryId,
}

pub(crate) enum Op {
    Input,
    Param(EntryId),
    Conv {
        x: Var,
        w: Var,
        geom: ConvGeom,
    },
    BnAct {
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
    },
    Linear {
        x: Var,
        w: Var,
        b: Var,
    },
    AvgPool {
        x: Var,
    },
    Add {
        a: Var,
        b: Var,
    },
    Scale {
        x: Var,
        factor: f32,
    },
    ChannelAffine {
        x: Var,
        scale: Vec<f32>,
    },
    CrossEntropy {
        logits: Var,
        labels: Labels,
        sum: bool,
        probs: Tensor,
    },
    KlDiv {
        s: Var,
        temp: f64,
        ps: Tensor,
        pt: Tensor,
    },
    Attention {
        fs: Var,
        target: Tensor,
        a: Tensor,
        norms: Tensor,
    },
    /// AugMix's JSD over (clean, augmented 1, augmented 2) logits; the backward recomputes the
    /// softmaxes from the logits, which are small.
    Jsd {
        z: [Var; 3],
    },
    /// SNL's soft ReLU of z [n, ...] with α of one sample's shape (ops::soft_relu).
    SoftRelu {
        z: Var,
        alpha: Var,
    },
}

/// Class labels, with their GPU copy when the graph runs there.
pub(crate) struct Labels {
    pub host: Vec<u32>,
    pub gpu: Option<DeviceBuffer<u32>>,
}

pub(crate) enum Value {
    Owned(Tensor),
    /// A parameter read in place from the store (no copy per step).
    Stored(EntryId),
}

pub(crate) struct Node {
    pub(crate) op: Op,
    pub(crate) value: Value,
    pub(crate) needs_grad: bool,
}

pub struct Graph<'s> {
    store: &'s ParamStore,
    mode: GradMode,
    nodes: Vec<Node>,
    param_nodes: HashMap<EntryId, Var>,
    stat_updates: Vec<StatUpdate>,
    /// SNL's linearisation mode (see `set_soft_masks`).
    soft_masks: bool,
}

impl<'s> Graph<'s> {
    pub fn new(store: &'s ParamStore, mode: GradMode) -> Self {
        Graph {
            store,
            mode,
            nodes: Vec::new(),
            param_nodes: HashMap::new(),
            stat_updates: Vec::new(),
            soft_masks: false,
        }
    }

    /// SNL's linearisation mode (baselines.md §2.1): while on, every masked ReLU of `bn_act`
    /// (relu with a mask) becomes the soft ReLU `α ⊙ relu(z) + (1 − α) ⊙ z` with α the mask
    /// entry itself, read as real values, and mask entries used from then on are leaves that
    /// get gradients under GradMode::All (`Gradients::param(mask_id)` is dα). Plain ReLUs (no
    /// mask) stay hard. Off (the default) changes nothing. Set it before the forward pass:
    /// a mask entry's leaf is created on first use and keeps its gradient setting.
    pub fn set_soft_masks(&mut self, on: bool) {
        self.soft_masks = on;
    }

    pub fn soft_masks(&self) -> bool {
        self.soft_masks
    }

    pub fn store(&self) -> &'s ParamStore {
        self.store
    }

    pub fn mode(&self) -> GradMode {
        self.mode
    }

    /// The device every tensor of this graph lives on: the store's.
    pub fn device(&self) -> &'s Device {
        self.store.device()
    }

    pub(crate) fn gpu(&self) -> Option<&'s Arc<CudaDevice>> {
        self.store.device().gpu()
    }

    pub fn value(&self, v: Var) -> &Tensor {
        match &self.nodes[v.0].value {
            Value::Owned(t) => t,
            Value::Stored(id) => self.store.get(*id),
        }
    }

    fn data(&self, v: Var) -> &[f32] {
        self.value(v).data()
    }

    fn needs(&self, v: Var) -> bool {
        self.nodes[v.0].needs_grad
    }

    fn push(&mut self, op: Op, value: Tensor, inputs: &[Var]) -> Var {
        let needs_grad = self.mode != GradMode::None && inputs.iter().any(|&v| self.needs(v));
        self.push_node(op, Value::Owned(value), needs_grad)
    }

    fn push_node(&mut self, op: Op, value: Value, needs_grad: bool) -> Var {
        self.nodes.push(Node {
            op,
            value,
            needs_grad,
        });
        Var(self.nodes.len() - 1)
    }

    /// Every convolution this graph has run, in order (benchmarks read a model's layer shapes
    /// from one forward pass).
    pub fn conv_geoms(&self) -> Vec<ConvGeom> {
        self.nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::Conv { geom, .. } => Some(geom),
                _ => None,
            })
            .collect()
    }

    /// A data input, moved to the graph's device; `requires_grad` asks for d(loss)/d(input)
    /// (honoured unless mode is None).
    pub fn input(&mut self, t: Tensor, requires_grad: bool) -> Var {
        let t = gpu::ok(t.into_device(self.device()));
        let needs = requires_grad && self.mode != GradMode::None;
        self.push_node(Op::Input, Value::Owned(t), needs)
    }

    /// A store entry as a leaf; one node per entry, so repeated use accumulates its gradient.
    /// Parameters get gradients under GradMode::All, and so do masks in soft-mask mode (SNL's
    /// α); buffers never do.
    pub fn param(&mut self, id: EntryId) -> Var {
        if let Some(&v) = self.param_nodes.get(&id) {
            return v;
        }
        let trainable = match self.store.entry(id).kind {
            EntryKind::Param => true,
            EntryKind::Mask => self.soft_masks,
            EntryKind::Buffer => false,
        };
        let needs = self.mode == GradMode::All && trainable;
        let v = self.push_node(Op::Param(id), Value::Stored(id), needs);
        self.param_nodes.insert(id, v);
        v
    }

    /// Convolution of x [n, c, h, w] with the store weight `w` [o, c, k, k].
    pub fn conv2d(&mut self, x: Var, w: EntryId, stride: usize, pad: usize) -> Var {
        let wv = self.param(w);
        let (xs, ws) = (self.value(x).shape(), self.value(wv).shape());
        let geom = ConvGeom {
            n: xs[0],
            c_in: xs[1],
            h: xs[2],
            w: xs[3],
            c_out: ws[0],
            k: ws[2],
            stride,
            pad,
        };
        assert_eq!(
            ws[1], xs[1],
            "conv2d: weight expects {} input channels, got {}",
            ws[1], xs[1]
        );
        let y = match self.gpu() {
            Some(d) => gpu::conv2d(d, &geom, self.value(x), self.value(wv)),
            None => {
                let mut y = Tensor::zeros(&[geom.n, geom.c_out, geom.h_out(), geom.w_out()]);
                conv::forward(&geom, self.data(x), self.data(wv), y.data_mut());
                y
            }
        };
        self.push(Op::Conv { x, w: wv, geom }, y, &[x, wv])
    }

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
        if let (true, true, Some(m)) = (self.soft_masks, relu, mask) {
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
        let store = self.store;
        let (mean, invstd) = match (train, self.gpu()) {
            (true, Some(d)) => {
                let (mean, invstd, var) = gpu::bn_stats(d, &geom, self.value(x), BN_EPS);
                self.record_stats(bn, mean.clone(), var);
                (mean, invstd)
            }
            (true, None) => {
                let st = bn_act::batch_stats(&geom, self.data(x), BN_EPS);
                let c = [geom.c];
                let mean = Tensor::from_vec(&c, st.mean).expect("one mean per channel");
                let var = Tensor::from_vec(&c, st.var_unbiased).expect("one variance per channel");
                let invstd = Tensor::from_vec(&c, st.invstd).expect("one invstd per channel");
                self.record_stats(bn, mean.clone(), var);
                (mean, invstd)
            }
            (false, Some(d)) => (
                store.get(bn.running_mean).clone(),
                gpu::bn_eval_invstd(d, store.get(bn.running_var), BN_EPS),
            ),
            (false, None) => (
                store.get(bn.running_mean).clone(),
                Tensor::from_vec(
                    &[geom.c],
                    bn_act::eval_invstd(store.get(bn.running_var).data(), BN_EPS),
                )
                .expect("one invstd per channel"),
            ),
        };
        let mask_t = mask.map(|m| store.get(m));
        let y = match self.gpu() {
            Some(d) => {
                let t = gpu::BnTensors {
                    mean: &mean,
                    invstd: &invstd,
                    gamma: self.value(gamma),
                    beta: self.value(beta),
                    mask: mask_t,
                    relu,
                };
                gpu::bn_forward(d, &geom, self.value(x), residual.map(|r| self.value(r)), &t)
            }
            None => {
                let act = Activation {
                    relu,
                    mask: mask_t.map(|m| m.data()),
                };
                let mut y = Tensor::zeros(&s);
                bn_act::forward(
                    &geom,
                    self.data(x),
                    mean.data(),
                    invstd.data(),
                    self.data(gamma),
                    self.data(beta),
                    residual.map(|r| self.data(r)),
                    act,
                    y.data_mut(),
                );
                y
            }
        };
        let mut inputs = vec![x, gamma, beta];
        inputs.extend(residual);
        let op = Op::BnAct {
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
        };
        self.push(op, y, &inputs)
    }

    fn record_stats(&mut self, bn: BnIds, batch_mean: Tensor, batch_var_unbiased: Tensor) {
        self.stat_updates.push(StatUpdate {
            running_mean: bn.running_mean,
            running_var: bn.running_var,
            batch_mean,
            batch_var_unbiased,
        });
    }

    /// y = x · wᵀ + b for x [n, in].
    pub fn linear(&mut self, x: Var, w: EntryId, b: EntryId) -> Var {
        let (wv, bv) = (self.param(w), self.param(b));
        let s = LinearShape {
            n: self.value(x).dim(0),
            inp: self.value(x).dim(1),
            out: self.value(wv).dim(0),
        };
        let y = match self.gpu() {
            Some(d) => gpu::linear(d, s, self.value(x), self.value(wv), self.value(bv)),
            None => {
                let mut y = Tensor::zeros(&[s.n, s.out]);
                linear::forward(
                    self.data(x),
                    self.data(wv),
                    self.data(bv),
                    s.n,
                    s.inp,
                    s.out,
                    y.data_mut(),
                );
                y
            }
        };
        self.push(Op::Linear { x, w: wv, b: bv }, y, &[x, wv, bv])
    }

    /// Global average pool [n, c, h, w] → [n, c].
    pub fn avg_pool(&mut self, x: Var) -> Var {
        let s = self.value(x).shape().to_vec();
        let y = match self.gpu() {
            Some(d) => gpu::avg_pool(d, self.value(x)),
            None => {
                let mut y = Tensor::zeros(&[s[0], s[1]]);
                pool::forward(self.data(x), s[0] * s[1], s[2] * s[3], y.data_mut());
                y
            }
        };
        self.push(Op::AvgPool { x }, y, &[x])
    }

    pub fn add(&mut self, a: Var, b: Var) -> Var {
        assert_eq!(
            self.value(a).shape(),
            self.value(b).shape(),
            "add: shapes differ"
        );
        let y = match self.gpu() {
            Some(d) => gpu::add(d, self.value(a), self.value(b)),
            None => {
                let mut y = self.value(a).clone();
                elementwise::add_assign(y.data_mut(), self.data(b));
                y
            }
        };
        self.push(Op::Add { a, b }, y, &[a, b])
    }

    pub fn scale(&mut self, x: Var, factor: f32) -> Var {
        let y = match self.gpu() {
            Some(d) => gpu::scale(d, self.value(x), factor),
            None => {
                let mut y = self.value(x).clone();
                y.data_mut().iter_mut().for_each(|v| *v *= factor);
                y
            }
        };
        self.push(Op::Scale { x, factor }, y, &[x])
    }

    /// y = x * scale[c] + shift[c] (input normalisation).
    pub fn channel_affine(&mut self, x: Var, scale: &[f32], shift: &[f32]) -> Var {
        let s = self.value(x).shape().to_vec();
        let y = match self.gpu() {
            Some(d) => gpu::channel_affine(d, self.value(x), scale, shift),
            None => {
                let mut y = Tensor::zeros(&s);
                elementwise::channel_affine(
                    self.data(x),
                    scale,
                    shift,
                    s[2..].iter().product(),
                    y.data_mut(),
                );
                y
            }
        };
        self.push(
            Op::ChannelAffine {
                x,
                scale: scale.to_vec(),
            },
            y,
            &[x],
        )
    }

    /// Softmax cross-entropy, mean (or sum) over the batch.
    pub fn cross_entropy(&mut self, logits: Var, labels: &[u32], sum: bool) -> Var {
        let k = self.value(logits).dim(1);
        assert_eq!(
            self.value(logits).dim(0),
            labels.len(),
            "cross_entropy: batch size"
        );
        let (l, probs, gpu_labels) = match self.gpu() {
            Some(d) => {
                let lg = gpu::ok(d.upload(labels));
                let (l, p) = gpu::cross_entropy(d, self.value(logits), &lg, sum);
                (l, p, Some(lg))
            }
            None => {
                let (l, p) = loss::cross_entropy(self.data(logits), labels, k, sum);
                let p = Tensor::from_vec(self.value(logits).shape(), p).expect("probabilities");
                (Tensor::scalar(l), p, None)
            }
        };
        let op = Op::CrossEntropy {
            logits,
            labels: Labels {
                host: labels.to_vec(),
                gpu: gpu_labels,
            },
            sum,
            probs,
        };
        self.push(op, l, &[logits])
    }

    /// KL_T(student ‖ target) with T² scaling; the target logits are constants.
    pub fn kl_div(&mut self, s: Var, target_logits: &Tensor, temp: f64) -> Var {
        assert_eq!(
            self.value(s).shape(),
            target_logits.shape(),
            "kl_div: shapes differ"
        );
        let k = self.value(s).dim(1);
        let (l, ps, pt) = match self.gpu() {
            Some(d) => {
                let t = gpu::ok(target_logits.to_device(self.device()));
                gpu::kl_div(d, self.value(s), &t, temp)
            }
            None => {
                let (l, ps, pt) = loss::kl_div(self.data(s), target_logits.data(), k, temp);
                let shape = self.value(s).shape();
                let ps = Tensor::from_vec(shape, ps).expect("student probabilities");
                let pt = Tensor::from_vec(shape, pt).expect("target probabilities");
                (Tensor::scalar(l), ps, pt)
            }
        };
        self.push(Op::KlDiv { s, temp, ps, pt }, l, &[s])
    }

    /// Attention transfer against a constant target feature map of the same shape.
    pub fn attention(&mut self, fs: Var, target_features: &Tensor) -> Var {
        let s = self.value(fs).shape().to_vec();
        assert_eq!(
            s.as_slice(),
            target_features.shape(),
            "attention: shapes differ"
        );
        let (n, ch, hw) = (s[0], s[1], s[2..].iter().product());
        let (l, target, a, norms) = match self.gpu() {
            Some(d) => {
                let tf = gpu::ok(target_features.to_device(self.device()));
                let target = gpu::attention_map(d, &tf);
                let (l, a, norms) = gpu::attention(d, self.value(fs), &target);
                (l, target, a, norms)
            }
            None => {
                let (target, _) = loss::attention_map(target_features.data(), n, ch, hw);
                let (l, a, norms) = loss::attention(self.data(fs), &target, n, ch, hw);
                let map = |v: Vec<f32>, shape: &[usize]| {
                    Tensor::from_vec(shape, v).expect("attention shapes")
                };
                (
                    Tensor::scalar(l),
                    map(target, &[n, hw]),
                    map(a, &[n, hw]),
                    map(norms, &[n]),
                )
            }
        };
        let op = Op::Attention {
            fs,
            target,
            a,
            norms,
        };
        self.push(op, l, &[fs])
    }

    /// AugMix's Jensen-Shannon consistency loss of three logit batches [n, k] (clean, augmented
    /// 1, augmented 2); every one of them gets a gradient (M is not detached). λ is the caller's.
    pub fn jsd(&mut self, clean: Var, aug1: Var, aug2: Var) -> Var {
        let z = [clean, aug1, aug2];
        let shape = self.value(clean).shape().to_vec();
        assert_eq!(shape.len(), 2, "jsd: logits must be [n, k]");
        for v in [aug1, aug2] {
            assert_eq!(
                self.value(v).shape(),
                shape.as_slice(),
                "jsd: shapes differ"
            );
        }
        let l = match self.gpu() {
            Some(d) => gpu::jsd(d, z.map(|v| self.value(v))),
            None => Tensor::scalar(loss::jsd(z.map(|v| self.data(v)), shape[1])),
        };
        self.push(Op::Jsd { z }, l, &z)
    }

    /// SNL's soft ReLU (ops::soft_relu): y = z where z ≥ 0, (1 − α)·z where z < 0, for z
    /// [n, ...] and α of one sample's shape (shared by the batch). Both get gradients.
    pub fn soft_relu(&mut self, z: Var, alpha: Var) -> Var {
        let zs = self.value(z).shape().to_vec();
        assert!(
            !zs.is_empty() && self.value(alpha).shape() == &zs[1..],
            "soft_relu: α has shape {:?}, the input {zs:?} needs one sample's shape",
            self.value(alpha).shape()
        );
        let y = match self.gpu() {
            Some(d) => gpu::soft_relu(d, self.value(z), self.value(alpha)),
            None => {
                let mut y = Tensor::zeros(&zs);
                soft_relu::forward(self.data(z), self.data(alpha), y.data_mut());
                y
            }
        };
        self.push(Op::SoftRelu { z, alpha }, y, &[z, alpha])
    }

    /// The BN running-statistics updates recorded by train-mode passes, in order.
    pub fn take_stat_updates(&mut self) -> Vec<StatUpdate> {
        std::mem::take(&mut self.stat_updates)
    }
}
