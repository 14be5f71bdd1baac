//! Registers a model's tensors in the store with reference names and initial values.

use super::{BnMode, DomainBn, ModelConfig, ReluLayer};
use crate::autograd::{EntryId, EntryKind, ParamStore};
use crate::ops::bn_act::BnIds;
use crate::rng::{stream, Stream};
use crate::tensor::Tensor;

pub(super) struct Builder<'c> {
    pub cfg: &'c ModelConfig,
    store: ParamStore,
    relus: Vec<ReluLayer>,
    rng: Stream,
    /// Record the shapes without allocating (every tensor stays empty).
    count_only: bool,
    /// The shape of every tensor made, in order (each is registered right after it is made).
    shapes: Vec<Vec<usize>>,
}

impl<'c> Builder<'c> {
    pub fn new(cfg: &'c ModelConfig, seed: u64) -> Self {
        Builder {
            cfg,
            store: ParamStore::new(),
            relus: Vec::new(),
            rng: Stream::new(seed, stream::INIT),
            count_only: false,
            shapes: Vec::new(),
        }
    }

    /// A builder that only records what the model would hold (`shapes`), allocating nothing:
    /// a checkpoint's header is checked against its file with it before any tensor is made.
    pub fn counting(cfg: &'c ModelConfig) -> Self {
        Builder {
            count_only: true,
            ..Builder::new(cfg, 0)
        }
    }

    pub fn finish(self) -> (ParamStore, Vec<ReluLayer>) {
        (self.store, self.relus)
    }

    /// Every registered entry's name and shape, in order.
    pub fn layout(&self) -> Vec<(String, Vec<usize>)> {
        self.store
            .entries()
            .iter()
            .zip(&self.shapes)
            .map(|(e, shape)| (e.name.clone(), shape.clone()))
            .collect()
    }

    /// A tensor of `shape` whose elements `fill` draws in order (empty when only counting).
    fn tensor(&mut self, shape: &[usize], mut fill: impl FnMut(&mut Stream) -> f32) -> Tensor {
        self.shapes.push(shape.to_vec());
        if self.count_only {
            return Tensor::zeros(&[0]);
        }
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| fill(&mut self.rng)).collect();
        Tensor::from_vec(shape, data).expect("the data has the shape's size")
    }

    /// A bias-free conv weight [c_out, c_in, k, k], N(0, 2 / (k·k·c_out)): Kaiming-normal with
    /// fan_out (ResNet18) and WRN's explicit init are the same formula.
    pub fn conv(&mut self, name: &str, c_out: usize, c_in: usize, k: usize) -> EntryId {
        let std = (2.0 / (k * k * c_out) as f64).sqrt();
        let t = self.tensor(&[c_out, c_in, k, k], |r| (r.normal() * std) as f32);
        self.store
            .add(&format!("{name}.weight"), EntryKind::Param, t)
    }

    /// Linear [out, in] with PyTorch's default U(±1/√in) weight; the bias is U(±1/√in) or zero.
    pub fn linear(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
        zero_bias: bool,
    ) -> (EntryId, EntryId) {
        let bound = 1.0 / (inp as f64).sqrt();
        let w = self.tensor(&[out, inp], |r| r.range(-bound, bound) as f32);
        let b = self.tensor(&[out], |r| match zero_bias {
            true => 0.0,
            false => r.range(-bound, bound) as f32,
        });
        let w = self
            .store
            .add(&format!("{name}.weight"), EntryKind::Param, w);
        let b = self.store.add(&format!("{name}.bias"), EntryKind::Param, b);
        (w, b)
    }

    fn bn_set(&mut self, prefix: &str, c: usize) -> BnIds {
        let mut add = |suffix: &str, kind, v: f32| {
            let t = self.tensor(&[c], |_| v);
            self.store.add(&format!("{prefix}.{suffix}"), kind, t)
        };
        BnIds {
            weight: add("weight", EntryKind::Param, 1.0),
            bias: add("bias", EntryKind::Param, 0.0),
            running_mean: add("running_mean", EntryKind::Buffer, 0.0),
            running_var: add("running_var", EntryKind::Buffer, 1.0),
        }
    }

    /// A BN layer with one parameter set per domain (`name.BN_c`, `name.BN_a`, and `name.BN_r`
    /// for triple BN); `shared` gives one plain set (`name.weight`) used by every domain.
    pub fn bn(&mut self, name: &str, c: usize, shared: bool) -> DomainBn {
        if shared {
            let s = self.bn_set(name, c);
            return DomainBn {
                clean: s,
                aug: s,
                adv: s,
            };
        }
        let clean = self.bn_set(&format!("{name}.BN_c"), c);
        let aug = match self.cfg.bn {
            BnMode::Dual => clean,
            BnMode::Triple => self.bn_set(&format!("{name}.BN_r"), c),
        };
        let adv = self.bn_set(&format!("{name}.BN_a"), c);
        DomainBn { clean, aug, adv }
    }

    /// A masked-ReLU layer of shape [c, h, w] fed by the conv weight `source_conv`, every ReLU
    /// kept; returns its index.
    pub fn relu(
        &mut self,
        name: &str,
        c: usize,
        h: usize,
        w: usize,
        source_conv: EntryId,
    ) -> usize {
        let ones = self.tensor(&[c, h, w], |_| 1.0);
        let mask = self
            .store
            .add(&format!("{name}.mask"), EntryKind::Mask, ones);
        self.relus.push(ReluLayer {
            name: name.to_string(),
            shape: [c, h, w],
            mask,
            source_conv,
        });
        self.relus.len() - 1
    }

    pub fn mask_id(&self, relu: usize) -> EntryId {
        self.relus[relu].mask
    }
}
