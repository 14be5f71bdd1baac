//! The settings several recipes share, as clap argument groups (the commands flatten them; the
//! pipeline fills them in code). Every value left out is None: the recipe's preset decides it.

use crate::data::source::{DatasetKind, DatasetSpec};
use crate::error::{Error, Result};
use crate::eval::attacks::{AttackKind, AttackSettings};
use crate::eval::robustness::{parse_eps, parse_sweep, RobustnessPlan};
use crate::nn::{Arch, BnMode, ModelConfig, WRN_22_8};
use crate::tensor::precision::Precision;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Starting values for every setting of a stage; explicit settings override them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The reference recipe of each stage: the teacher 240 epochs (lr 0.05, x0.1 at
    /// 150/180/210), the search 150 (lr 0.05, constant), the distillation 240 (lr 0.01, x0.1 at
    /// 150/180/210), batch 128, AugMix and PGD-7 training, PGD-20 evaluation.
    #[default]
    Paper,
    /// Minutes on 2 CPU cores: ResNet18 at width 0.125 on synthetic data (4,000 images for the
    /// teacher, 2,000 for the students, 500 test), 3 epochs each, batch 64, PGD-3 (teacher) or
    /// PGD-2 (students) training, PGD-10 / PGD-5 evaluation.
    Smoke,
}

impl Preset {
    /// The --preset value that asks for it.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Paper => "paper",
            Preset::Smoke => "smoke",
        }
    }
}

#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct DataArgs {
    /// Dataset: the built-in synthetic set (no download), or CIFAR-10/100 or Tiny-ImageNet
    /// from --data-dir.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Folder of the CIFAR batches (binary `.bin` or python-pickle layout, or their parent), or
    /// the tiny-imagenet-200 folder (or its parent).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use only the first N training images.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Use only the first N test images.
    #[arg(long)]
    pub test_limit: Option<usize>,
}

impl DataArgs {
    pub fn spec(&self, default: DatasetKind) -> DatasetSpec {
        let mut s = DatasetSpec::new(self.dataset.unwrap_or(default), self.data_dir.clone());
        s.train_limit = self.train_limit;
        s.test_limit = self.test_limit;
        s
    }
}

#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct ModelArgs {
    #[arg(long, value_enum)]
    pub model: Option<Arch>,
    /// Channel width multiplier (1 = the paper's widths; 0.125 = ResNet18 with 8..64 channels).
    #[arg(long)]
    pub width_mult: Option<f32>,
    /// BatchNorm sets per layer.
    #[arg(long, value_enum)]
    pub bn: Option<BnMode>,
    /// Share one shortcut BN across domains, as the reference's ResNet18 teacher does.
    #[arg(long)]
    pub shared_shortcut_bn: bool,
}

impl ModelArgs {
    pub fn config(
        &self,
        data: &DatasetSpec,
        default_arch: Arch,
        default_width: f32,
    ) -> ModelConfig {
        let (norm_mean, norm_std) = data.kind.normalization();
        ModelConfig {
            arch: self.model.unwrap_or(default_arch),
            width_mult: self.width_mult.unwrap_or(default_width),
            input_size: data.kind.input_size(),
            num_classes: data.kind.num_classes(),
            bn: self.bn.unwrap_or(BnMode::Dual),
            shared_shortcut_bn: self.shared_shortcut_bn,
            norm_mean,
            norm_std,
            wrn: WRN_22_8,
        }
    }
}

/// The training-run flags stage 1 and stages 2-3 share; a preset fills what is not given.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct TrainingArgs {
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f32>,
    /// Epochs (from 0) after which the learning rate is multiplied by 0.1, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub milestones: Option<Vec<usize>>,
    /// PGD steps of the training attack.
    #[arg(long)]
    pub pgd_steps: Option<usize>,
    /// PGD steps of the final evaluation.
    #[arg(long)]
    pub eval_pgd_steps: Option<usize>,
    /// Validate clean and PGD accuracy under both BN sets every N epochs (0: only at the end;
    /// stages 2-3 also measure BN_c clean accuracy every epoch to keep the best checkpoint).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Also checkpoint every N steps inside an epoch (0: at epoch ends only).
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Numerics of the training steps: f32 (exact), tf32 (the GPU's TF32 tensor-core
    /// convolutions) or bf16 (bf16 activations and convolution operands; on the CPU an
    /// emulation that shows bf16 training's accuracy cost, slower than f32). Weights,
    /// optimiser state and evaluation stay f32.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
}

/// The robustness evaluation's flags (`rlnet eval`, the pipeline's final evaluation).
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct AttackArgs {
    /// Attacks, comma separated: pgd, apgd-ce, apgd-t, square, aa (AutoAttack's standard
    /// ensemble: APGD-CE, then APGD-T, then Square on the points still correct). Default: pgd.
    #[arg(long)]
    pub attack: Option<String>,
    /// The L∞ radius: a fraction or N/255.
    #[arg(long, default_value = "8/255", allow_hyphen_values = true)]
    pub eps: String,
    /// PGD random starts; an image counts as robust only if it survives all of them.
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// APGD iterations per run (APGD-T runs once per target class).
    #[arg(long, default_value_t = 100)]
    pub apgd_iters: usize,
    /// APGD-T's target classes: the N most likely wrong ones.
    #[arg(long, default_value_t = 9)]
    pub apgd_targets: usize,
    /// Square's queries per image.
    #[arg(long, default_value_t = 5000)]
    pub square_queries: usize,
    /// PGD accuracy against ε at these values, in units of 1/255 (alone: 2,4,8,16).
    #[arg(long, num_args = 0..=1, default_missing_value = "2,4,8,16")]
    pub eps_sweep: Option<String>,
    /// Check for gradient masking (ε = 1, PGD-100 vs PGD-K, APGD vs PGD, Square vs the
    /// white-box attacks, the ε sweep) and write a verdict.
    #[arg(long)]
    pub masking_checks: bool,
}

impl AttackArgs {
    /// Whether anything beyond the stages' own PGD evaluation was asked for.
    pub fn asked(&self) -> bool {
        self.attack.is_some() || self.eps_sweep.is_some() || self.masking_checks
    }

    /// The evaluation these flags ask for, with PGD-`pgd_steps` (0 leaves PGD out when it was
    /// not named); None when nothing beyond clean accuracy is asked.
    pub fn plan(&self, pgd_steps: usize, seed: u64) -> Result<Option<RobustnessPlan>> {
        let named = self.attack.is_some();
        let mut attacks = AttackKind::parse_list(self.attack.as_deref().unwrap_or("pgd"))?;
        if pgd_steps == 0 {
            if (named && attacks.contains(&AttackKind::Pgd)) || self.masking_checks {
                return Err(Error::Config(
                    "PGD needs at least 1 step: --pgd-steps 0 leaves PGD out, but --attack \
                     names it or --masking-checks needs it"
                        .into(),
                ));
            }
            attacks.retain(|&k| k != AttackKind::Pgd);
        }
        let sweep = self.eps_sweep.as_deref().map(parse_sweep).transpose()?;
        if attacks.is_empty() && sweep.is_none() && !self.masking_checks {
            return Ok(None);
        }
        let plan = RobustnessPlan {
            attacks,
            settings: AttackSettings {
                eps: parse_eps(&self.eps)?,
                pgd_steps: pgd_steps.max(1),
                restarts: self.restarts,
                apgd_iters: self.apgd_iters,
                targets: self.apgd_targets,
                square_queries: self.square_queries,
                seed,
            },
            sweep,
            masking: self.masking_checks,
        };
        plan.settings.validate()?;
        Ok(Some(plan))
    }
}
