//! The reference repositories' state-dict layouts, mapped onto rlnet's models both ways.
//!
//! - **RLNet** (sreetamasarkar/rlnet). Split BN layers hold `BN_c`, `BN_a` (and `BN_r` for
//!   triple BN) as rlnet's do; its 1-BN mode has one plain BN per layer. The ResNet18 teacher
//!   (`ResNet18`) names its shortcut `shortcut.0` / `shortcut.1`, with one BN shared by every
//!   domain; the triple-BN teacher and the students (`CustomResNet18`, `_3BN`) name it
//!   `conv_sc` / `bn_sc`, split like the others. WRN-22-8 teacher and student share names. The
//!   masks are not in the state dict: the training scripts save them beside it, under
//!   `mask_epoch`, as a list of int64 (C, H, W) tensors in forward order (1 = ReLU). The state
//!   dict sits under `model`.
//! - **SNL** (NYU-DICE-Lab/selective_network_linearization). One plain BN per layer; each
//!   masked ReLU's α (`alpha1.alphas`, `alpha2.alphas`, shape (1, C, H, W)) in the state dict,
//!   binary once the run thresholds it. Its ResNet18 has no ReLU after the stem and its WRN
//!   none after the final BN, so those of rlnet's sites are the identity. The state dict sits
//!   under `state_dict`, beside `arch`.
//!
//! Neither reference normalises inside the model; both normalise in the data pipeline with the
//! dataset's mean and std, which rlnet's model applies itself, so logits agree on the same
//! [0, 1] images.

use super::tensors::{Saved, TorchTensor, MASK_LIST_KEY};
use super::writer::{Entry, Item, Values};
use crate::autograd::{EntryId, EntryKind};
use crate::data::source::DatasetKind;
use crate::error::{Error, Result};
use crate::nn::{Arch, BnMode, Domain, Model, ModelConfig, WRN_22_8};
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};

/// Which repository's model classes a state dict follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// RLNet's all-ReLU teachers: ResNet18 (resnetv2, resnetv2_3BN) and wrn_22_8 (_3BN).
    RlnetTeacher,
    /// RLNet's masked students: CustomResNet18 (_3BN) and Custom_wrn_22_8 (_3BN), with the
    /// masks beside the state dict under `mask_epoch`.
    RlnetStudent,
    /// SNL's resnet18_in and wide_resnet_22_8: one BN per layer, the masks as binary α.
    Snl,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::RlnetTeacher => "RLNet teacher",
            Layout::RlnetStudent => "RLNet student",
            Layout::Snl => "SNL",
        }
    }
}

/// How one layout names rlnet's tensors.
#[derive(Clone, Copy, Debug)]
struct Naming {
    layout: Layout,
    /// One plain BN per layer (SNL, and RLNet's 1-BN mode), not rlnet's sets.
    single_bn: bool,
    /// The ResNet18 shortcut is `conv_sc` / `bn_sc` (students, the triple-BN teacher), not
    /// `shortcut.0` / `shortcut.1`.
    conv_sc: bool,
}

/// Where a layout keeps the value of one of rlnet's tensors.
#[derive(Clone, Debug, PartialEq)]
enum Place {
    Key(String),
    /// `mask_epoch[i]`.
    MaskIndex(usize),
    /// Not stored: a mask of this value throughout (1: the teacher's ReLUs; 0: a site SNL's
    /// model has no ReLU at).
    Constant(f32),
}

const BN_SETS: [&str; 3] = ["BN_c", "BN_r", "BN_a"];

impl Naming {
    fn new(layout: Layout, arch: Arch, single_bn: bool, bn: BnMode) -> Naming {
        let conv_sc = arch == Arch::ResNet18
            && (layout == Layout::RlnetStudent
                || (layout == Layout::RlnetTeacher && bn == BnMode::Triple && !single_bn));
        Naming {
            layout,
            single_bn: single_bn || layout == Layout::Snl,
            conv_sc,
        }
    }

    /// Where the layout keeps rlnet's tensor `name` (of kind `kind`; `relu` is the mask's
    /// index in forward order).
    fn place(&self, name: &str, kind: EntryKind, relu: Option<usize>) -> Place {
        if kind == EntryKind::Mask {
            let site = name.trim_end_matches(".mask");
            let i = relu.expect("every mask belongs to a ReLU layer");
            return match self.layout {
                Layout::RlnetTeacher => Place::Constant(1.0),
                Layout::RlnetStudent => Place::MaskIndex(i),
                // The stem's (ResNet18) and the final BN's (WRN) sites: SNL has no ReLU there.
                Layout::Snl if site == "relu" => Place::Constant(0.0),
                Layout::Snl => Place::Key(
                    site.replace(".relu1", ".alpha1")
                        .replace(".relu2", ".alpha2")
                        + ".alphas",
                ),
            };
        }
        let mut key = name.to_string();
        if self.single_bn {
            for set in BN_SETS {
                key = key.replace(&format!(".{set}."), ".");
            }
        }
        if self.conv_sc {
            key = key
                .replace(".shortcut.0.", ".conv_sc.")
                .replace(".shortcut.1.", ".bn_sc.");
        }
        Place::Key(key)
    }
}

/// The architecture and BN settings a state dict's keys and shapes describe.
struct Found {
    config: ModelConfig,
    naming: Naming,
}

/// `saved` as an rlnet model: the layout, architecture, width, depth, class count, BN sets and
/// input size are read from its keys and shapes; `dataset` gives the normalisation (and the
/// input size of a model without masks, whose file cannot tell it). A single-BN model's BN
/// goes into every one of rlnet's sets. Every tensor must be used, every expected one present
/// with its shape, as `load_state_dict(strict=True)` demands.
pub fn import(saved: &Saved, dataset: DatasetKind, what: &str) -> Result<(Model, Layout)> {
    let by_name: HashMap<&str, &TorchTensor> = saved
        .state_dict
        .iter()
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    let found = detect(saved, &by_name, dataset, what)?;
    let mut model = Model::new(found.config.clone(), 0)?;
    let relu_of = relu_index(&model);
    if let (Layout::RlnetStudent, Some(masks)) = (found.naming.layout, &saved.masks) {
        if masks.len() != model.relu_layers.len() {
            return Err(fail(
                what,
                format!(
                    "{MASK_LIST_KEY} holds {} masks; {} has {} masked ReLU layers",
                    masks.len(),
                    found.config.arch.name(),
                    model.relu_layers.len()
                ),
            ));
        }
    }
    let mut used = HashSet::new();
    for id in 0..model.store.len() {
        let e = model.store.entry(id);
        let (name, kind, shape) = (e.name.clone(), e.kind, e.tensor.shape().to_vec());
        let place = found.naming.place(&name, kind, relu_of.get(&id).copied());
        let (t, label) = match &place {
            Place::Constant(v) => {
                let n = shape.iter().product();
                model
                    .store
                    .set(id, Tensor::from_vec(&shape, vec![*v; n])?)?;
                continue;
            }
            Place::Key(key) => match by_name.get(key.as_str()) {
                Some(t) => {
                    used.insert(key.clone());
                    (*t, key.clone())
                }
                None => {
                    return Err(fail(
                        what,
                        format!(
                            "the state dict has no {key} (a {} {} at this width holds it, \
                             shape {shape:?})",
                            found.naming.layout.name(),
                            found.config.arch.name()
                        ),
                    ))
                }
            },
            Place::MaskIndex(i) => match &saved.masks {
                Some(m) => (&m[*i], format!("{MASK_LIST_KEY}[{i}]")),
                None => unreachable!("detect names the student layout only with masks"),
            },
        };
        // A mask may carry SNL's leading batch dimension of 1.
        let t_shape: &[usize] = match (kind, t.shape.as_slice()) {
            (EntryKind::Mask, [1, rest @ ..]) if rest.len() == 3 => rest,
            (_, s) => s,
        };
        if t_shape != shape.as_slice() {
            return Err(fail(
                what,
                format!("{label} has shape {:?}; expected {shape:?}", t.shape),
            ));
        }
        let values = match kind {
            EntryKind::Mask => t.binary(&format!("{what}: {label}"))?,
            _ => t.floats(&format!("{what}: {label}"))?,
        };
        model
            .store
            .set(id, Tensor::from_vec(&shape, values.to_vec())?)?;
    }
    let unused: Vec<&str> = saved
        .state_dict
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !used.contains(*n))
        .filter(|n| {
            // A BN's step counter: rlnet's BN keeps none (its momentum is fixed).
            let bn = n.strip_suffix(".num_batches_tracked");
            !bn.is_some_and(|p| used.contains(&format!("{p}.running_mean")))
        })
        .collect();
    if let Some(first) = unused.first() {
        return Err(fail(
            what,
            format!(
                "{} tensor(s) a {} {} does not have, first {first} (is the file of another \
                 model?)",
                unused.len(),
                found.naming.layout.name(),
                found.config.arch.name()
            ),
        ));
    }
    Ok((model, found.naming.layout))
}

/// Each mask entry's ReLU layer index (forward order).
fn relu_index(model: &Model) -> HashMap<EntryId, usize> {
    let layers = model.relu_layers.iter().enumerate();
    layers.map(|(i, l)| (l.mask, i)).collect()
}

fn fail(what: &str, msg: impl std::fmt::Display) -> Error {
    Error::Data(format!("{what}: {msg}"))
}

fn detect(
    saved: &Saved,
    t: &HashMap<&str, &TorchTensor>,
    dataset: DatasetKind,
    what: &str,
) -> Result<Found> {
    let dim = |key: &str, d: usize| t.get(key).and_then(|t| t.shape.get(d).copied());
    let (arch, stem, base, head) = if t.contains_key("block1.layer.0.conv1.weight") {
        (Arch::Wrn22_8, "block1.layer.0", 16, "fc.weight")
    } else if t.contains_key("layer1.0.conv1.weight") {
        (Arch::ResNet18, "layer1.0", 64, "linear.weight")
    } else {
        let first: Vec<&str> = saved
            .state_dict
            .iter()
            .take(4)
            .map(|(n, _)| n.as_str())
            .collect();
        return Err(fail(
            what,
            format!(
                "an unknown architecture: neither ResNet18's layer1.0.conv1.weight nor \
                 WRN-22-8's block1.layer.0.conv1.weight is in the state dict (it starts with \
                 {})",
                first.join(", ")
            ),
        ));
    };
    let stem_width = dim("conv1.weight", 0)
        .ok_or_else(|| fail(what, "the state dict has no conv1.weight of rank 4"))?;
    let width_mult = stem_width as f32 / base as f32;
    // The class count from the head's bias: a misshaped weight is then named as such.
    let bias = head.replace(".weight", ".bias");
    let classes = dim(&bias, 0)
        .or_else(|| dim(head, 0))
        .ok_or_else(|| fail(what, format!("the state dict has no {head}")))?;
    let wrn = match arch {
        Arch::ResNet18 => WRN_22_8,
        Arch::Wrn22_8 => {
            let n = (0..)
                .take_while(|i| t.contains_key(format!("block1.layer.{i}.conv1.weight").as_str()))
                .count();
            let group1 = dim(&format!("{stem}.conv1.weight"), 0).unwrap_or(0);
            let widen = (group1 as f32 / (16.0 * width_mult)).round() as usize;
            (6 * n + 4, widen)
        }
    };
    let bn = if t.contains_key("bn1.BN_r.weight") {
        BnMode::Triple
    } else {
        BnMode::Dual
    };
    let single_bn = t.contains_key("bn1.weight");
    let layout = if t.contains_key(format!("{stem}.alpha1.alphas").as_str()) {
        Layout::Snl
    } else if saved.masks.is_some() {
        Layout::RlnetStudent
    } else if t.contains_key("layer2.0.conv_sc.weight") && bn != BnMode::Triple {
        return Err(fail(
            what,
            format!(
                "a CustomResNet18 student without its masks: the file has no {MASK_LIST_KEY} \
                 beside the state dict"
            ),
        ));
    } else {
        Layout::RlnetTeacher
    };
    // The input size: a mask's side (the first site sees the full input), else the dataset's.
    let input_size = match layout {
        Layout::RlnetStudent => saved
            .masks
            .as_ref()
            .and_then(|m| m.first())
            .and_then(|m| m.shape.last().copied()),
        Layout::Snl => dim(&format!("{stem}.alpha1.alphas"), 3),
        Layout::RlnetTeacher => None,
    }
    .unwrap_or(dataset.input_size());
    let (norm_mean, norm_std) = dataset.normalization();
    let config = ModelConfig {
        arch,
        width_mult,
        input_size,
        num_classes: classes,
        bn,
        // The dual-BN ResNet18 teacher's shortcut BN is one plain BN for every domain.
        shared_shortcut_bn: arch == Arch::ResNet18
            && !single_bn
            && t.contains_key("layer2.0.shortcut.1.weight"),
        norm_mean,
        norm_std,
        wrn,
    };
    config
        .validate()
        .map_err(|e| fail(what, format!("the model it describes: {e}")))?;
    Ok(Found {
        naming: Naming::new(layout, arch, single_bn, bn),
        config,
    })
}

/// `model` as the `layout`'s checkpoint dict: `{"model": state_dict}` (with `mask_epoch` for
/// the RLNet student), or `{"arch": ..., "state_dict": ...}` for SNL. A single-BN layout (SNL)
/// takes the BN set of `domain`. Refused, naming why: a teacher layout for a model with
/// linearised ReLUs, the dual-BN ResNet18 teacher for a model with one shortcut BN per domain,
/// SNL for a model that keeps ReLUs where SNL's has none.
pub fn export(model: &Model, layout: Layout, domain: Domain) -> Result<Vec<u8>> {
    let cfg = &model.config;
    let naming = Naming::new(layout, cfg.arch, false, cfg.bn);
    let refuse = |msg: String| {
        Err(Error::Config(format!(
            "--state-dict as {}: {msg}",
            layout.name()
        )))
    };
    let kept = |l: &crate::nn::ReluLayer| crate::nn::kept_count(model.store.get(l.mask));
    if layout == Layout::RlnetTeacher {
        let linear: usize = model.relu_layers.iter().map(|l| l.count() - kept(l)).sum();
        if linear > 0 {
            return refuse(format!(
                "the model linearises {linear} ReLUs and the teacher classes have no masks; \
                 use --layout rlnet-student"
            ));
        }
        if cfg.arch == Arch::ResNet18 && cfg.bn == BnMode::Dual && !cfg.shared_shortcut_bn {
            return refuse(
                "the dual-BN ResNet18 teacher shares one shortcut BN across domains and this \
                 model has one per domain; use --layout rlnet-student (CustomResNet18)"
                    .into(),
            );
        }
    }
    if layout == Layout::Snl {
        if let Some(l) = model
            .relu_layers
            .iter()
            .find(|l| l.name == "relu" && kept(l) > 0)
        {
            let site = match cfg.arch {
                Arch::ResNet18 => "after its stem",
                Arch::Wrn22_8 => "after its final BN",
            };
            return refuse(format!(
                "SNL's {} has no ReLU {site}, and this model keeps {} there",
                cfg.arch.name(),
                kept(l)
            ));
        }
    }
    let set = match domain {
        Domain::Clean => "BN_c",
        Domain::Aug if cfg.bn == BnMode::Triple => "BN_r",
        Domain::Aug => "BN_c",
        Domain::Adv => "BN_a",
    };
    let sets: &[&str] = match cfg.bn {
        BnMode::Dual => &["BN_c", "BN_a"],
        BnMode::Triple => &["BN_c", "BN_r", "BN_a"],
    };
    let relu_of = relu_index(model);
    let mut state = Vec::new();
    let mut masks = Vec::new();
    for id in 0..model.store.len() {
        let e = model.store.entry(id);
        let data = e.tensor.data();
        let shape = e.tensor.shape().to_vec();
        if e.kind == EntryKind::Mask {
            let place = naming.place(&e.name, e.kind, relu_of.get(&id).copied());
            match place {
                Place::Key(key) => state.push(Entry {
                    name: key,
                    shape: [&[1], shape.as_slice()].concat(),
                    values: Values::F32(data),
                }),
                Place::MaskIndex(_) => masks.push(Entry {
                    name: e.name.clone(),
                    shape,
                    values: Values::I64(data.iter().map(|&v| v as i64).collect()),
                }),
                Place::Constant(_) => {}
            }
            continue;
        }
        // A BN entry of one set, or rlnet's shared shortcut BN (no set in its name).
        let own_set = BN_SETS.iter().find(|s| e.name.contains(&format!(".{s}.")));
        let is_bn =
            e.name.contains(".BN_") || cfg.shared_shortcut_bn && e.name.contains(".shortcut.1.");
        let names: Vec<String> = match (is_bn, own_set) {
            // Single BN: one set only.
            (true, Some(s)) if naming.single_bn && *s != set => continue,
            // A shared BN where the layout splits it: the same values under every set.
            (true, None) if naming.conv_sc => {
                let (prefix, param) = e.name.rsplit_once('.').expect("a BN entry has a parameter");
                sets.iter()
                    .map(|s| format!("{prefix}.{s}.{param}"))
                    .collect()
            }
            _ => vec![e.name.clone()],
        };
        for n in names {
            let Place::Key(key) = naming.place(&n, e.kind, None) else {
                unreachable!("only masks have other places")
            };
            let counter = key
                .strip_suffix(".running_var")
                .map(|p| format!("{p}.num_batches_tracked"));
            state.push(Entry {
                name: key,
                shape: shape.clone(),
                values: Values::F32(data),
            });
            if let Some(counter) = counter {
                state.push(Entry {
                    name: counter,
                    shape: Vec::new(),
                    values: Values::I64(vec![0]),
                });
            }
        }
    }
    let root = match layout {
        Layout::Snl => {
            let arch = match cfg.arch {
                Arch::ResNet18 => "resnet18_in",
                Arch::Wrn22_8 => "wide_resnet_22_8",
            };
            vec![
                ("arch", Item::Text(arch.into())),
                ("state_dict", Item::StateDict(state)),
            ]
        }
        Layout::RlnetTeacher => vec![("model", Item::StateDict(state))],
        Layout::RlnetStudent => vec![
            ("model", Item::StateDict(state)),
            (MASK_LIST_KEY, Item::List(masks)),
        ],
    };
    super::writer::pth(&root)
}
