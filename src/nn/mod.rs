//! Models: CIFAR ResNet18 and WRN-22-8 with dual (or triple) BatchNorm and per-element ReLU
//! masks, exactly as in the RLNet reference (research spec §2), plus a width multiplier.

mod builder;
mod resnet;
mod wrn;

use crate::autograd::{EntryId, Graph, ParamStore, Var};
use crate::error::{Error, Result};
use crate::ops::bn_act::BnIds;
use crate::tensor::precision::Precision;
use crate::tensor::Tensor;
use builder::Builder;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Arch {
    #[serde(rename = "resnet18")]
    #[value(name = "resnet18")]
    ResNet18,
    #[serde(rename = "wrn22-8")]
    #[value(name = "wrn22-8")]
    Wrn22_8,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::Wrn22_8 => "wrn22-8",
        }
    }
}

/// How many BatchNorm parameter sets each BN layer has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum BnMode {
    /// BN_c (clean and AugMix) and BN_a (adversarial): the paper's main configuration.
    Dual,
    /// BN_c, BN_r (AugMix) and BN_a (spec §2.4).
    Triple,
}

/// Which input domain a pass is for; it picks the BN set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Domain {
    Clean,
    Aug,
    Adv,
}

/// The largest class count a model may have (Tiny-ImageNet has 200; ImageNet 1,000).
pub const MAX_CLASSES: usize = 100_000;
/// The largest input side (pixels) a model may take.
pub const MAX_INPUT_SIZE: usize = 1024;
/// The deepest WRN a model may be (WRN-22-8 is 22).
pub const MAX_WRN_DEPTH: usize = 1000;
/// The widest WRN widening factor a model may have.
pub const MAX_WRN_WIDEN: usize = 64;

/// Everything that fixes a model's tensors; stored in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub width_mult: f32,
    pub input_size: usize,
    pub num_classes: usize,
    pub bn: BnMode,
    /// The reference teacher's single shortcut BN shared by every domain (spec §2.4, §9.4).
    pub shared_shortcut_bn: bool,
    /// Per-channel input normalisation applied inside the model to [0,1] pixels.
    pub norm_mean: [f32; 3],
    pub norm_std: [f32; 3],
    /// WideResNet depth and widening factor (22 and 8 for WRN-22-8; other values give the
    /// reduced WRNs that tests use).
    #[serde(default = "default_wrn")]
    pub wrn: (usize, usize),
}

fn default_wrn() -> (usize, usize) {
    WRN_22_8
}

/// (depth, widen) of WRN-22-8.
pub const WRN_22_8: (usize, usize) = (22, 8);

impl ModelConfig {
    /// A 10-class, 32 px, dual-BN model with CIFAR-10 normalisation: change fields from here.
    pub fn new(arch: Arch, width_mult: f32) -> Self {
        ModelConfig {
            arch,
            width_mult,
            input_size: 32,
            num_classes: 10,
            bn: BnMode::Dual,
            shared_shortcut_bn: false,
            norm_mean: [0.4914, 0.4822, 0.4465],
            norm_std: [0.2023, 0.1994, 0.2010],
            wrn: WRN_22_8,
        }
    }

    /// The settings a model is built from, in range (the bounds keep a corrupt checkpoint
    /// header from describing a model no machine could hold).
    pub fn validate(&self) -> Result<()> {
        if !(self.width_mult > 0.0 && self.width_mult <= 16.0) {
            return Err(Error::Config(format!(
                "width multiplier {} is out of range (expected 0 < w <= 16)",
                self.width_mult
            )));
        }
        let min = match self.arch {
            Arch::ResNet18 => 8,
            Arch::Wrn22_8 => 4,
        };
        if self.input_size < min || !self.input_size.is_multiple_of(min) {
            return Err(Error::Config(format!(
                "input size {} does not fit {}: expected a multiple of {min} (32 or 64)",
                self.input_size,
                self.arch.name()
            )));
        }
        if !(2..=MAX_CLASSES).contains(&self.num_classes) {
            return Err(Error::Config(format!(
                "{} classes: expected 2 to {MAX_CLASSES}",
                self.num_classes
            )));
        }
        if self.input_size > MAX_INPUT_SIZE {
            return Err(Error::Config(format!(
                "input size {} is too large (expected at most {MAX_INPUT_SIZE})",
                self.input_size
            )));
        }
        if self.arch == Arch::Wrn22_8
            && (self.wrn.0 < 10
                || self.wrn.0 > MAX_WRN_DEPTH
                || !(self.wrn.0 - 4).is_multiple_of(6)
                || !(1..=MAX_WRN_WIDEN).contains(&self.wrn.1))
        {
            return Err(Error::Config(format!(
                "WRN depth {} / widen {}: expected depth = 6n + 4 (10 to {MAX_WRN_DEPTH}) and \
                 widen 1 to {MAX_WRN_WIDEN}",
                self.wrn.0, self.wrn.1
            )));
        }
        if self.norm_std.iter().any(|&s| s <= 0.0) {
            return Err(Error::Config("normalisation std must be positive".into()));
        }
        Ok(())
    }

    /// A channel count scaled by the width multiplier (at least 1).
    pub fn width(&self, base: usize) -> usize {
        ((base as f32 * self.width_mult).round() as usize).max(1)
    }
}

/// A BN layer's parameter set for each domain (dual BN maps AugMix onto BN_c).
#[derive(Clone, Copy, Debug)]
pub struct DomainBn {
    clean: BnIds,
    aug: BnIds,
    adv: BnIds,
}

impl DomainBn {
    pub fn for_domain(&self, d: Domain) -> BnIds {
        match d {
            Domain::Clean => self.clean,
            Domain::Aug => self.aug,
            Domain::Adv => self.adv,
        }
    }
}

/// One masked-ReLU layer, in forward order.
#[derive(Clone, Debug)]
pub struct ReluLayer {
    pub name: String,
    /// [C, H, W]
    pub shape: [usize; 3],
    pub mask: EntryId,
    /// The conv weight whose output (after BN, plus any residual) reaches this site: the layer
    /// that SENet-style sensitivity reads this site's weight density from. Its out-channels
    /// are the site's C.
    pub source_conv: EntryId,
}

impl ReluLayer {
    pub fn count(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One forward pass's settings.
#[derive(Clone, Copy, Debug)]
pub struct Pass {
    pub domain: Domain,
    pub train: bool,
}

/// What a forward pass returns.
pub struct ModelOutput {
    pub logits: Var,
    /// Attention-transfer taps (ResNet18: layer1..layer4 outputs; WRN: the group outputs).
    pub taps: Vec<Var>,
    /// Every masked-ReLU output, in forward order (mask search compares these).
    pub relus: Vec<Var>,
}

enum Layout {
    ResNet(resnet::ResNet),
    Wrn(wrn::Wrn),
}

pub struct Model {
    pub config: ModelConfig,
    pub store: ParamStore,
    pub relu_layers: Vec<ReluLayer>,
    /// SNL's linearisation mode (baselines.md §2.1): when true, `forward` runs every masked
    /// ReLU as the soft ReLU α ⊙ relu(z) + (1 − α) ⊙ z with the mask entries as real α, which
    /// get gradients under GradMode::All (`Graph::set_soft_masks`). False (the default) is the
    /// hard 0/1 mask. A run-time switch only: never saved in checkpoints.
    pub soft_masks: bool,
    /// The numerics of `forward` (`crate::tensor::precision`); f32 unless a training step
    /// sets another for its own passes (`at_precision`). A run-time switch only.
    pub precision: Precision,
    layout: Layout,
    norm_scale: [f32; 3],
    norm_shift: [f32; 3],
}

impl Model {
    /// A freshly initialised model (spec §2 initialisation), all masks ones (every ReLU kept).
    pub fn new(config: ModelConfig, seed: u64) -> Result<Model> {
        config.validate()?;
        let mut b = Builder::new(&config, seed);
        let layout = Self::layout(&mut b);
        let (store, relu_layers) = b.finish();
        let norm_scale = config.norm_std.map(|s| 1.0 / s);
        let norm_shift = [0, 1, 2].map(|i| -config.norm_mean[i] / config.norm_std[i]);
        Ok(Model {
            config,
            store,
            relu_layers,
            soft_masks: false,
            precision: Precision::F32,
            layout,
            norm_scale,
            norm_shift,
        })
    }

    fn layout(b: &mut Builder<'_>) -> Layout {
        match b.cfg.arch {
            Arch::ResNet18 => Layout::ResNet(resnet::ResNet::build(b)),
            Arch::Wrn22_8 => Layout::Wrn(wrn::Wrn::build(b)),
        }
    }

    /// The name and shape of every tensor (parameters, buffers and masks) a model of `config`
    /// holds, in store order, found without allocating any.
    pub fn tensor_shapes(config: &ModelConfig) -> Result<Vec<(String, Vec<usize>)>> {
        config.validate()?;
        let mut b = Builder::counting(config);
        Self::layout(&mut b);
        Ok(b.layout())
    }

    /// Forward pass of raw [0,1] pixels x [n, 3, s, s]; normalisation happens inside. The
    /// graph takes the model's `soft_masks` mode and `precision`.
    pub fn forward(&self, g: &mut Graph<'_>, x: Var, pass: Pass) -> ModelOutput {
        g.set_soft_masks(self.soft_masks);
        g.set_precision(self.precision);
        let xn = g.channel_affine(x, &self.norm_scale, &self.norm_shift);
        match &self.layout {
            Layout::ResNet(m) => m.forward(g, xn, pass),
            Layout::Wrn(m) => m.forward(g, xn, pass),
        }
    }

    /// `f` with `forward` in `precision`, f32 again afterwards: a training step's passes (its
    /// attack's included) run in the run's precision, while validation, reports and
    /// checkpoints see the f32 model.
    pub fn at_precision<R>(&mut self, precision: Precision, f: impl FnOnce(&mut Model) -> R) -> R {
        self.precision = precision;
        let out = f(self);
        self.precision = Precision::F32;
        out
    }

    /// Moves every tensor of the model to `device`.
    pub fn to_device(&mut self, device: &crate::device::Device) -> Result<()> {
        self.store.to_device(device)
    }

    /// Total ReLUs (all elements of every ReLU layer).
    pub fn total_relus(&self) -> usize {
        self.relu_layers.iter().map(|l| l.count()).sum()
    }

    /// ReLUs kept by the masks.
    pub fn kept_relus(&self) -> usize {
        self.relu_layers
            .iter()
            .map(|l| kept_count(&self.mask(l)))
            .sum()
    }

    /// Replaces one layer's mask (values must be 0 or 1).
    pub fn set_mask(&mut self, layer: usize, mask: Tensor) -> Result<()> {
        let mask = mask.to_host()?;
        if mask.data().iter().any(|&v| v != 0.0 && v != 1.0) {
            return Err(Error::Config(format!(
                "mask of {} must hold only 0 and 1",
                self.relu_layers[layer].name
            )));
        }
        self.store.set(self.relu_layers[layer].mask, mask)
    }

    /// Number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.store
            .param_ids()
            .iter()
            .map(|&id| self.store.get(id).numel())
            .sum()
    }
}

impl Model {
    /// A ReLU layer's mask on the host.
    pub fn mask(&self, layer: &ReluLayer) -> Tensor {
        crate::device::ok(self.store.get(layer.mask).to_host())
    }
}

pub fn kept_count(mask: &Tensor) -> usize {
    mask.data().iter().filter(|&&v| v != 0.0).count()
}
