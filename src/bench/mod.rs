//! The hot path as a list of benchmark items, shared by the criterion benches
//! (`benches/hot_path.rs`) and `rlnet bench`: every distinct convolution of ResNet18 and
//! WRN-22-8 in its three directions, dual-BN + masked ReLU forward and backward at every
//! ReLU-site shape, the PGD update, AugMix, each corruption, and one whole stage-1 step.
//!
//! Each item carries the work it measures and its floor: the fewest bytes the operation must
//! move (f32 values, each read or written once per pass of its algorithm) and its FLOPs; the
//! floor time is the larger of bytes / copy bandwidth and FLOPs / matmul rate (`peaks`).

pub mod peaks;
pub mod report;
pub mod shapes;
pub mod timing;
pub mod torch;
pub mod work;

use crate::corrupt::Corruption;
use crate::geom::ConvGeom;
use crate::nn::Arch;
use crate::ops::conv::cuda::{
    bf16_applies, bf16_applies_backward_data, bf16_applies_backward_weight,
};
use crate::tensor::precision::Precision;
use serde_json::json;
use shapes::ModelShapes;

/// Batch of the benches: the paper's training batch.
pub const BATCH: usize = 128;

/// Which direction of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvDir {
    Forward,
    BackwardData,
    BackwardWeight,
}

impl ConvDir {
    pub const ALL: [ConvDir; 3] = [
        ConvDir::Forward,
        ConvDir::BackwardData,
        ConvDir::BackwardWeight,
    ];

    fn name(self) -> &'static str {
        match self {
            ConvDir::Forward => "fwd",
            ConvDir::BackwardData => "dgrad",
            ConvDir::BackwardWeight => "wgrad",
        }
    }

    fn torch_kind(self) -> &'static str {
        match self {
            ConvDir::Forward => "conv_fwd",
            ConvDir::BackwardData => "conv_bwd_data",
            ConvDir::BackwardWeight => "conv_bwd_weight",
        }
    }
}

/// What an item runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Work {
    /// One convolution direction at a precision: f32 (v1 on the GPU), TF32 (the v2 tensor-core
    /// kernels) or bf16 (the bf16 tensor-core kernels, timed on operands already converted to
    /// bf16, as a bf16 pipeline holds them). The tensor-core versions run on the GPU only.
    Conv {
        geom: ConvGeom,
        dir: ConvDir,
        precision: Precision,
    },
    /// Train-mode dual BN + masked ReLU over a [clean | adversarial] batch of `n` samples of
    /// `chw` ([C, H, W]): each half with its own statistics and parameter set, half the mask's
    /// elements keeping their ReLU.
    DualBnRelu {
        n: usize,
        chw: [usize; 3],
        backward: bool,
    },
    /// The PGD signed step and projection over `n` CIFAR images.
    PgdUpdate { n: usize },
    /// AugMix views of `n` CIFAR images (crop and flip first, as in training).
    AugMix { n: usize },
    /// One corruption at severity 3 over `n` CIFAR images.
    Corrupt { corruption: Corruption, n: usize },
    /// One stage-1 optimisation step: `batch` labels, the first half clean (BN_c) plus its
    /// AugMix view (BN_c), the second half PGD-7-attacked (BN_a), SGD.
    Stage1Step {
        arch: Arch,
        width: f32,
        batch: usize,
    },
}

/// Which family an item belongs to (criterion groups, report sections).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Conv,
    BnRelu,
    Pgd,
    AugMix,
    Corrupt,
    Step,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Conv => "conv",
            Family::BnRelu => "bn_relu",
            Family::Pgd => "pgd",
            Family::AugMix => "augmix",
            Family::Corrupt => "corrupt",
            Family::Step => "stage1_step",
        }
    }
}

/// One benchmark item.
#[derive(Clone, Debug)]
pub struct Item {
    /// Unique, stable, filterable: "conv/resnet18/64x32x32-64-k3s1/fwd".
    pub name: String,
    pub work: Work,
    /// Fewest bytes the operation moves.
    pub bytes: f64,
    /// Floating-point operations (2 per multiply-add).
    pub flops: f64,
}

impl Item {
    pub fn family(&self) -> Family {
        match self.work {
            Work::Conv { .. } => Family::Conv,
            Work::DualBnRelu { .. } => Family::BnRelu,
            Work::PgdUpdate { .. } => Family::Pgd,
            Work::AugMix { .. } => Family::AugMix,
            Work::Corrupt { .. } => Family::Corrupt,
            Work::Stage1Step { .. } => Family::Step,
        }
    }

    /// Is the floor set by compute rather than memory (at the given peaks)?
    pub fn compute_bound(&self, p: &peaks::Peaks) -> bool {
        self.flops / p.flops > self.bytes / p.bandwidth
    }

    /// Seconds at the floor.
    pub fn floor_s(&self, p: &peaks::Peaks) -> f64 {
        (self.flops / p.flops).max(self.bytes / p.bandwidth)
    }

    /// The item as tools/torch_peer.py's items mode reads it (kinds without a PyTorch
    /// counterpart say so and are skipped there).
    pub fn torch_spec(&self) -> serde_json::Value {
        match &self.work {
            Work::Conv { geom: g, dir, .. } => json!({
                "name": self.name, "kind": dir.torch_kind(), "n": g.n, "c_in": g.c_in,
                "h": g.h, "w": g.w, "c_out": g.c_out, "k": g.k, "stride": g.stride, "pad": g.pad,
            }),
            Work::DualBnRelu {
                n,
                chw: [c, h, w],
                backward,
            } => json!({
                "name": self.name,
                "kind": if *backward { "dual_bn_relu_bwd" } else { "dual_bn_relu_fwd" },
                "n": n, "c": c, "h": h, "w": w,
            }),
            Work::PgdUpdate { n } => json!({
                "name": self.name, "kind": "pgd_update", "n": n, "c": 3, "h": 32, "w": 32,
            }),
            Work::AugMix { n } => json!({"name": self.name, "kind": "augmix", "n": n}),
            Work::Corrupt { n, .. } => json!({"name": self.name, "kind": "corrupt", "n": n}),
            Work::Stage1Step { arch, width, batch } => json!({
                "name": self.name, "kind": "stage1_step", "model": arch.name(),
                "width_mult": width, "batch": batch, "pgd_steps": 7, "augmix": true,
            }),
        }
    }
}

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct Selection {
    /// Whose layer shapes the conv and BN items cover.
    pub models: Vec<Arch>,
    /// Batch of the conv, BN, AugMix and corruption items, and of the stage-1 step.
    pub batch: usize,
    /// The stage-1 step's network and width multiplier (None: no step item).
    pub step: Option<(Arch, f32)>,
    /// Also the tensor-core versions of the convolutions (they exist on the GPU only): TF32 in
    /// all three directions, bf16 in each direction where the channels it copies (input,
    /// output) come in eights.
    pub tensor_cores: bool,
    /// Keep only items whose name contains one of these (empty: keep all).
    pub filters: Vec<String>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            models: vec![Arch::ResNet18, Arch::Wrn22_8],
            batch: BATCH,
            step: Some((Arch::ResNet18, 1.0)),
            tensor_cores: false,
            filters: Vec::new(),
        }
    }
}

fn shape_name(g: &ConvGeom) -> String {
    format!(
        "{}x{}x{}-{}-k{}s{}",
        g.c_in, g.h, g.w, g.c_out, g.k, g.stride
    )
}

/// Distinct values of `key` over the models, each with the names of the models using it.
fn distinct<K: PartialEq + Clone>(per_model: &[(Arch, Vec<K>)]) -> Vec<(K, String)> {
    let mut out: Vec<(K, Vec<&str>)> = Vec::new();
    for (arch, keys) in per_model {
        for k in keys {
            match out.iter_mut().find(|(o, _)| o == k) {
                Some((_, users)) if users.contains(&arch.name()) => {}
                Some((_, users)) => users.push(arch.name()),
                None => out.push((k.clone(), vec![arch.name()])),
            }
        }
    }
    out.into_iter().map(|(k, u)| (k, u.join("+"))).collect()
}

/// The items of `sel`, in report order: convolutions, BN + ReLU, PGD, AugMix, corruptions,
/// the stage-1 step.
pub fn items(sel: &Selection) -> crate::error::Result<Vec<Item>> {
    let n = sel.batch;
    let shapes: Vec<ModelShapes> = sel
        .models
        .iter()
        .map(|&a| ModelShapes::of(a, 1.0))
        .collect::<crate::error::Result<_>>()?;
    let mut out = Vec::new();

    let convs: Vec<(Arch, Vec<ConvGeom>)> = shapes
        .iter()
        .map(|s| {
            (
                s.arch,
                s.convs.iter().map(|g| ConvGeom { n, ..*g }).collect(),
            )
        })
        .collect();
    for (g, users) in distinct(&convs) {
        let flops = 2.0 * g.macs() as f64;
        for dir in ConvDir::ALL {
            // The direction's two operands and its result, in elements.
            let (operands, result) = match dir {
                ConvDir::Forward => (g.x_len() + g.w_len(), g.y_len()),
                ConvDir::BackwardData => (g.w_len() + g.y_len(), g.x_len()),
                ConvDir::BackwardWeight => (g.x_len() + g.y_len(), g.w_len()),
            };
            let bf16_kernel = match dir {
                ConvDir::Forward => bf16_applies(&g),
                ConvDir::BackwardData => bf16_applies_backward_data(&g),
                ConvDir::BackwardWeight => bf16_applies_backward_weight(&g),
            };
            for precision in [Precision::F32, Precision::Tf32, Precision::Bf16] {
                let (suffix, operand_bytes) = match precision {
                    Precision::F32 => ("", 4.0),
                    _ if !sel.tensor_cores => continue,
                    Precision::Tf32 => ("-tf32", 4.0),
                    Precision::Bf16 if bf16_kernel => ("-bf16", 2.0),
                    Precision::Bf16 => continue,
                };
                // The bf16 kernels read their operands as bf16 and write an f32 result.
                let bytes = operand_bytes * operands as f64 + 4.0 * result as f64;
                out.push(Item {
                    name: format!("conv/{users}/{}/{}{suffix}", shape_name(&g), dir.name()),
                    work: Work::Conv {
                        geom: g,
                        dir,
                        precision,
                    },
                    bytes,
                    flops,
                });
            }
        }
    }

    let relus: Vec<(Arch, Vec<[usize; 3]>)> =
        shapes.iter().map(|s| (s.arch, s.relus.clone())).collect();
    for (chw, users) in distinct(&relus) {
        let [c, h, w] = chw;
        let len = (n * c * h * w) as f64;
        // Forward: one read for the statistics, one read and one write to apply. Backward:
        // x and dy read for the two channel sums, then again with dx written.
        for (backward, per_elem) in [(false, 12.0), (true, 20.0)] {
            out.push(Item {
                name: format!(
                    "bn_relu/{users}/{c}x{h}x{w}/{}",
                    if backward { "bwd" } else { "fwd" }
                ),
                work: Work::DualBnRelu { n, chw, backward },
                bytes: per_elem * len,
                flops: 0.0,
            });
        }
    }

    // The attacked half of a training batch: read x, x0 and the gradient, write x.
    let attacked = n.div_ceil(2);
    out.push(Item {
        name: format!("pgd/update/{attacked}x3x32x32"),
        work: Work::PgdUpdate { n: attacked },
        bytes: (16 * attacked * 3072) as f64,
        flops: 0.0,
    });
    // u8 images in, f32 views out.
    out.push(Item {
        name: format!("augmix/{n}x3x32x32"),
        work: Work::AugMix { n },
        bytes: (n * 3072 * 5) as f64,
        flops: 0.0,
    });
    for corruption in Corruption::ALL {
        out.push(Item {
            name: format!("corrupt/{}", corruption.name()),
            work: Work::Corrupt { corruption, n },
            bytes: (n * 3072 * 2) as f64,
            flops: 0.0,
        });
    }

    if let Some((arch, width)) = sel.step {
        let f = ModelShapes::of(arch, width)?.forward_flops();
        let half = n.div_ceil(2) as f64;
        // Clean and AugMix halves: forward + both backward GEMMs (3F each); attacked half:
        // 7 x (forward + input gradient) + a training pass (17F). perf-anchors.md §3.1.
        let flops = f * (half * 3.0 + half * 3.0 + (n as f64 - half) * 17.0);
        out.push(Item {
            name: format!("stage1_step/{}x{width}/b{n}", arch.name()),
            work: Work::Stage1Step {
                arch,
                width,
                batch: n,
            },
            bytes: 0.0,
            flops,
        });
    }

    if !sel.filters.is_empty() {
        out.retain(|i| sel.filters.iter().any(|f| i.name.contains(f.as_str())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_distinct_layer_shape_appears_once_per_direction() {
        let items = items(&Selection::default()).unwrap();
        let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "names are unique");
        let convs = items.iter().filter(|i| i.family() == Family::Conv).count();
        // ResNet18: stem, 64>64, 64>128 s2, 128>128, 64>128 1x1, 128>256 s2, 256>256,
        // 128>256 1x1, 256>512 s2, 512>512, 256>512 1x1 = 11. WRN-22-8: stem 3>16,
        // 16>128, 128>128, 16>128 1x1, 128>256 s2, 256>256, 128>256 1x1 s2, 256>512 s2,
        // 512>512, 256>512 1x1 s2 = 10; the stem 3>16 differs from ResNet18's 3>64.
        assert_eq!(convs, 3 * (11 + 10), "{names:#?}");
        assert!(names.contains(&"conv/resnet18/64x32x32-64-k3s1/dgrad"));
        assert!(names.contains(&"bn_relu/wrn22-8/128x32x32/bwd"));
        assert_eq!(
            items.iter().filter(|i| i.family() == Family::Step).count(),
            1
        );
        assert_eq!(
            items
                .iter()
                .filter(|i| i.family() == Family::Corrupt)
                .count(),
            19
        );
    }

    #[test]
    fn tensor_core_items_are_tf32_in_every_direction_and_bf16_where_its_kernels_apply() {
        let sel = Selection {
            models: vec![Arch::ResNet18],
            step: None,
            tensor_cores: true,
            ..Selection::default()
        };
        let items = items(&sel).unwrap();
        let named = |suffix: &str| -> Vec<&str> {
            items
                .iter()
                .filter(|i| i.family() == Family::Conv && i.name.ends_with(suffix))
                .map(|i| i.name.as_str())
                .collect()
        };
        assert_eq!(named("-tf32").len(), 3 * 11);
        let bf16 = named("-bf16");
        // Every ResNet18 direction but the 3-channel stem's forward and weight gradient (its
        // data gradient copies the 64 output channels).
        assert_eq!(bf16.len(), 3 * 11 - 2, "{bf16:#?}");
        assert!(!bf16.contains(&"conv/resnet18/3x32x32-64-k3s1/fwd-bf16"));
        assert!(!bf16.contains(&"conv/resnet18/3x32x32-64-k3s1/wgrad-bf16"));
        assert!(bf16.contains(&"conv/resnet18/3x32x32-64-k3s1/dgrad-bf16"));
        let fwd = items
            .iter()
            .find(|i| i.name == "conv/resnet18/64x32x32-64-k3s1/fwd-bf16")
            .unwrap();
        let g = ConvGeom {
            n: BATCH,
            c_in: 64,
            h: 32,
            w: 32,
            c_out: 64,
            k: 3,
            stride: 1,
            pad: 1,
        };
        // x and w as bf16, y as f32.
        let bytes = 2.0 * (g.x_len() + g.w_len()) as f64 + 4.0 * g.y_len() as f64;
        assert_eq!(fwd.bytes, bytes);
    }

    #[test]
    fn stage1_step_costs_23_forward_passes_per_image_pair() {
        let sel = Selection {
            models: vec![],
            step: Some((Arch::ResNet18, 1.0)),
            filters: vec!["stage1".into()],
            ..Selection::default()
        };
        let item = &items(&sel).unwrap()[0];
        // 64 x 23 F with F = 1.111 GFLOP (perf-anchors.md §3.1).
        assert!((item.flops / 1e12 - 64.0 * 23.0 * 1.1108e9 / 1e12).abs() < 0.01);
    }

    #[test]
    fn filters_keep_matching_items_only() {
        let sel = Selection {
            models: vec![Arch::ResNet18],
            step: None,
            filters: vec!["bn_relu/".into(), "pgd".into()],
            ..Selection::default()
        };
        let items = items(&sel).unwrap();
        assert!(!items.is_empty());
        assert!(items
            .iter()
            .all(|i| matches!(i.family(), Family::BnRelu | Family::Pgd)));
    }
}
