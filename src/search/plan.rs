//! The plan of a student stage (spec §5, §6; baselines.md §2): which masks it trains
//! ([`MaskPlan`]), and for the stage-2 search how the budget is spread over the layers
//! ([`Fractions`], [`layer_counts`]) and the random channel-uniform mask it starts from.

use super::sensitivity::{check_density, sensitivity, DEFAULT_DENSITY, FLOOR};
use super::snl::SnlConfig;
use super::{allocate, uniform_weights, Preset, PRESETS};
use crate::error::{Error, Result};
use crate::nn::{Arch, Model, ModelConfig};
use crate::optim::AdamConfig;
use crate::rng::{self, stream};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the stage-2 student's weights start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StudentInit {
    /// Freshly initialised weights (the reference's default, spec §5.1 step 1).
    #[default]
    Random,
    /// The trained teacher's weights (the reference's `--pretrain_load`): every BN set of the
    /// student takes the teacher's matching one, a shared teacher BN feeding each.
    Teacher,
}

impl StudentInit {
    /// A preset's default: the smoke preset starts the student from its teacher (a few
    /// epochs cannot catch up from random weights), the paper preset from random weights as
    /// the reference does.
    pub fn preset_default(smoke: bool) -> StudentInit {
        match smoke {
            true => StudentInit::Teacher,
            false => StudentInit::Random,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StudentInit::Random => "random",
            StudentInit::Teacher => "teacher",
        }
    }
}

/// What happens to the student's ReLU masks (its policy at work: [`MaskPlan::policy`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MaskPlan {
    /// Stage 2: after every epoch keep exactly `ks[l]` ReLUs in layer l (Σ ks = `budget`).
    Search {
        budget: usize,
        /// How the per-layer counts were chosen (for the report).
        fractions: String,
        ks: Vec<usize>,
        /// Where the student's weights start (absent in checkpoints from before the choice
        /// existed: random).
        #[serde(default)]
        init: StudentInit,
    },
    /// Stage 3: the mask of the stage-2 checkpoint `from`, never changed.
    Frozen { from: PathBuf },
    /// The SNL baseline: learnable α per site until at most `budget` remain, then exactly
    /// `budget` binary sites. `epochs` is a cap; the run usually ends earlier.
    Linearize(SnlConfig),
}

impl MaskPlan {
    /// The stage name, used for checkpoint headers and file names.
    pub fn stage(&self) -> &'static str {
        match self {
            MaskPlan::Search { .. } => "search",
            MaskPlan::Frozen { .. } => "distill",
            MaskPlan::Linearize(_) => "snl",
        }
    }

    /// The Adam that trains the weights and the α together (SNL), None for SGD on the weights.
    pub fn alpha_optimiser(&self) -> Option<&AdamConfig> {
        match self {
            MaskPlan::Linearize(snl) => Some(&snl.adam),
            _ => None,
        }
    }
}

/// How the budget is spread over the layers.
#[derive(Clone, Debug, PartialEq)]
pub enum Fractions {
    /// The reference list whose total is the budget; otherwise SENet-style sensitivity from
    /// the teacher at the default density.
    Auto,
    /// Every layer keeps the same fraction.
    Uniform,
    /// A named reference list (`relu50k`, ...) rescaled to the budget.
    Named(String),
    /// SENet-style sensitivity: layer l gets ReLUs in proportion to 1 − d_l, where d_l is the
    /// weight density of the conv feeding it after global magnitude pruning of the teacher's
    /// conv weights to `density` (`search::sensitivity`).
    Sensitivity { density: f64 },
}

impl Fractions {
    /// `auto`, `uniform`, `sensitivity`, `sensitivity:<density>` (0 < density < 1) or a
    /// reference list's name (checked against the model later, by [`layer_counts`]).
    pub fn parse(text: &str) -> Result<Fractions> {
        let t = text.trim().to_ascii_lowercase();
        let bad = |why: String| {
            Error::Config(format!(
                "--fractions '{text}': {why} (expected auto, uniform, sensitivity, \
                 sensitivity:<density> with 0 < density < 1, or a list name such as relu50k)"
            ))
        };
        if let Some(rest) = t.strip_prefix("sensitivity") {
            let density = match rest.strip_prefix(':') {
                None if rest.is_empty() => DEFAULT_DENSITY,
                None => return Err(bad("unknown setting".into())),
                Some(d) => d
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| bad(format!("density '{}' is not a number", d.trim())))?,
            };
            check_density(density).map_err(|e| bad(e.to_string()))?;
            return Ok(Fractions::Sensitivity { density });
        }
        Ok(match t.as_str() {
            "" => return Err(bad("empty".into())),
            "auto" => Fractions::Auto,
            "uniform" => Fractions::Uniform,
            name => Fractions::Named(name.to_string()),
        })
    }
}

/// The student of a teacher (spec §2.4): the same network, but with a dual shortcut BN like
/// every other BN (the reference's 2BN student; its teacher shares the shortcut BN).
pub fn student_config(teacher: &ModelConfig) -> ModelConfig {
    ModelConfig {
        shared_shortcut_bn: false,
        ..teacher.clone()
    }
}

/// The ReLU-layer sizes |A_l| of a model built from `cfg`.
pub fn layer_sizes(cfg: &ModelConfig) -> Result<Vec<usize>> {
    Ok(Model::new(cfg.clone(), 0)?
        .relu_layers
        .iter()
        .map(|l| l.count())
        .collect())
}

/// Per-layer counts summing exactly to `budget` over the student's layer `sizes`, and a
/// sentence saying how they were chosen. `teacher` (the trained stage-1 model, same ReLU sites)
/// is read by the sensitivity rule.
pub fn layer_counts(
    arch: Arch,
    input_size: usize,
    sizes: &[usize],
    budget: usize,
    fractions: &Fractions,
    teacher: &Model,
) -> Result<(Vec<usize>, String)> {
    let total: usize = sizes.iter().sum();
    if budget > total {
        return Err(Error::Config(format!(
            "ReLU budget {budget} exceeds the model's {total} ReLUs"
        )));
    }
    match fractions {
        Fractions::Uniform => Ok((
            allocate(budget, sizes, &uniform_weights(sizes))?,
            "uniform: every layer keeps the same fraction".into(),
        )),
        Fractions::Named(name) => {
            let p = Preset::find(arch, input_size, name)?;
            Ok((
                p.allocate(budget, sizes)?,
                format!("list {} scaled to {budget}", p.name),
            ))
        }
        Fractions::Sensitivity { density } => by_sensitivity(budget, sizes, teacher, *density),
        Fractions::Auto => {
            for p in PRESETS
                .iter()
                .filter(|p| p.arch == arch && p.input_size == input_size)
            {
                if p.nominal_total(sizes)? == budget {
                    return Ok((
                        p.allocate(budget, sizes)?,
                        format!("list {} (its total is the budget)", p.name),
                    ));
                }
            }
            let (ks, how) = by_sensitivity(budget, sizes, teacher, DEFAULT_DENSITY)?;
            Ok((ks, format!("{how} (no reference list totals {budget})")))
        }
    }
}

/// Counts in proportion to the teacher's per-site sensitivity (`search::sensitivity`).
fn by_sensitivity(
    budget: usize,
    sizes: &[usize],
    teacher: &Model,
    density: f64,
) -> Result<(Vec<usize>, String)> {
    let teacher_sizes: Vec<usize> = teacher.relu_layers.iter().map(|l| l.count()).collect();
    if teacher_sizes != sizes {
        return Err(Error::Config(format!(
            "the teacher's ReLU layers ({} layers, sizes {teacher_sizes:?}) differ from the \
             student's ({} layers, sizes {sizes:?}): expected the same network",
            teacher_sizes.len(),
            sizes.len()
        )));
    }
    let s = sensitivity(teacher, density)?;
    let d: Vec<String> = s.densities.iter().map(|d| format!("{d:.4}")).collect();
    Ok((
        allocate(budget, sizes, &s.weights)?,
        format!(
            "sensitivity: one-shot global magnitude pruning of the teacher to {}% of conv \
             weights ({} of {}); per-layer weight densities d_l = [{}]; ReLUs in proportion \
             to 1 - d_l (floored at {}% of the largest)",
            // Percent to 4 decimals, free of binary noise (0.07 shows as 7, not 7.000000000000001).
            (s.density * 1e6).round() / 1e4,
            s.kept,
            s.total,
            d.join(", "),
            FLOOR * 100.0
        ),
    ))
}

/// The initial mask (spec §5.1 step 1): per layer, u ~ U(0,1) over H×W, kept where
/// u > 1 − ρ_l, repeated over the channels; ρ_l = k_l / |A_l|. Keyed by `seed`.
pub fn initial_masks(model: &Model, ks: &[usize], seed: u64) -> Vec<Vec<u8>> {
    model
        .relu_layers
        .iter()
        .zip(ks)
        .enumerate()
        .map(|(l, (layer, &k))| {
            let [c, h, w] = layer.shape;
            let rho = k as f64 / layer.count() as f64;
            let plane: Vec<u8> = (0..h * w)
                .map(|i| {
                    let u =
                        rng::uniform_f64(seed, stream::MASK_INIT, ((l as u64) << 32) | i as u64);
                    (u > 1.0 - rho) as u8
                })
                .collect();
            plane.repeat(c)
        })
        .collect()
}
