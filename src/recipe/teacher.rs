//! Stage 1's recipe: the teacher's config from a preset and the settings given (`rlnet
//! teacher`, and the pipeline's first stage).

use super::flags::{DataArgs, ModelArgs, Preset, TrainingArgs};
use crate::augmix::AugMixConfig;
use crate::data::source::DatasetKind;
use crate::error::{Error, Result};
use crate::nn::Arch;
use crate::optim::{SgdConfig, StepSchedule};
use crate::robust::pgd::PgdConfig;
use crate::train::driver::LoopConfig;
use crate::train::teacher::{AugmentConfig, TeacherConfig};
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AugmentChoice {
    None,
    Augmix,
}

/// What makes a teacher: the preset and every setting that overrides it.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct TeacherRecipe {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Starting values for every setting below; explicit flags override them.
    #[arg(long, value_enum, default_value_t)]
    pub preset: Preset,
    #[command(flatten)]
    pub training: TrainingArgs,
    /// The natural-robustness view of the clean half: AugMix (the paper's recipe) or none.
    #[arg(long, value_enum)]
    pub augment: Option<AugmentChoice>,
    /// AugMix with all 13 ops (adds color, contrast, brightness, sharpness, which overlap the
    /// CIFAR-C corruptions and are left out by default).
    #[arg(long)]
    pub augmix_all_ops: bool,
    /// AugMix chains mixed (default 3).
    #[arg(long)]
    pub augmix_width: Option<usize>,
    /// Ops per chain (0 or left out: uniform 1-3 per chain).
    #[arg(long)]
    pub augmix_depth: Option<usize>,
    /// AugMix op severity: levels drawn from U(0.1, severity) (default 3).
    #[arg(long)]
    pub augmix_severity: Option<f64>,
    /// Add AugMix's Jensen-Shannon consistency loss over the clean and two AugMix views, with
    /// weight 12 (change it with --jsd-lambda).
    #[arg(long)]
    pub jsd: bool,
    #[arg(long, requires = "jsd")]
    pub jsd_lambda: Option<f32>,
    /// The non-robust recipe of the SENet/SNL baselines: every image clean through BN_c, no
    /// attack, no AugMix (spec §6 end).
    #[arg(long, conflicts_with_all = ["augment", "jsd"])]
    pub non_robust: bool,
}

/// The config a preset gives before explicit flags are applied.
fn preset_config(a: &TeacherRecipe) -> TeacherConfig {
    let smoke = a.preset == Preset::Smoke;
    let mut data = a.data.spec(DatasetKind::Synthetic);
    if smoke {
        data.synthetic_train = 4000;
        data.synthetic_test = 500;
    }
    let model = a
        .model
        .config(&data, Arch::ResNet18, if smoke { 0.125 } else { 1.0 });
    let (epochs, milestones, batch) = if smoke {
        (3, vec![2], 64)
    } else {
        (240, vec![150, 180, 210], 128)
    };
    TeacherConfig {
        model,
        data,
        run: LoopConfig {
            epochs,
            batch_size: batch,
            schedule: StepSchedule::steps(0.05, milestones, 0.1),
            crop_pad: 4,
            seed: a.training.seed,
            eval_every: 0,
            checkpoint_every: 0,
            precision: a.training.precision,
        },
        sgd: SgdConfig::default(),
        pgd: PgdConfig::linf(if smoke { 3 } else { 7 }),
        eval_pgd_steps: if smoke { 10 } else { 20 },
        eval_batch: 200,
        // The reference teacher trains with AugMix (`--augment_mode augmix`, no JSD).
        augment: AugmentConfig {
            augmix: Some(AugMixConfig::default()),
            jsd_lambda: 0.0,
        },
        robust: true,
    }
}

impl TeacherRecipe {
    /// The stage-1 config: the preset's, with every given setting applied and checked.
    pub fn config(&self) -> Result<TeacherConfig> {
        build_config(self)
    }
}

fn build_config(a: &TeacherRecipe) -> Result<TeacherConfig> {
    let mut c = preset_config(a);
    if let Some(e) = a.training.epochs {
        c.run.epochs = e;
        if a.training.milestones.is_none() {
            // Keep the reference's milestones at the same fractions of the run.
            c.run.schedule.milestones = c
                .run
                .schedule
                .milestones
                .iter()
                .map(|&m| m * e / preset_config(a).run.epochs.max(1))
                .collect();
        }
    }
    if let Some(b) = a.training.batch_size {
        c.run.batch_size = b;
    }
    if let Some(lr) = a.training.lr {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::Config(format!(
                "--lr {lr}: expected a positive number"
            )));
        }
        c.run.schedule.base_lr = lr;
    }
    if let Some(m) = &a.training.milestones {
        c.run.schedule.milestones = m.clone();
    }
    if let Some(s) = a.training.pgd_steps {
        c.pgd.steps = s;
    }
    if let Some(s) = a.training.eval_pgd_steps {
        c.eval_pgd_steps = s;
    }
    if let Some(e) = a.training.eval_every {
        c.run.eval_every = e;
    }
    if let Some(k) = a.training.checkpoint_every {
        c.run.checkpoint_every = k;
    }
    if a.non_robust {
        c.robust = false;
        c.augment.augmix = None;
    }
    if a.augment == Some(AugmentChoice::None) {
        c.augment.augmix = None;
    }
    if let Some(am) = &mut c.augment.augmix {
        let d = AugMixConfig::default();
        am.width = a.augmix_width.unwrap_or(d.width);
        am.depth = a.augmix_depth.filter(|&n| n > 0);
        am.severity = a.augmix_severity.unwrap_or(d.severity);
        am.all_ops = a.augmix_all_ops;
        am.validate()?;
    }
    if a.jsd {
        if c.augment.augmix.is_none() {
            return Err(Error::Config(
                "--jsd needs AugMix views: drop --augment none".into(),
            ));
        }
        let lambda = a.jsd_lambda.unwrap_or(12.0);
        if !(lambda > 0.0 && lambda.is_finite()) {
            return Err(Error::Config(format!(
                "--jsd-lambda {lambda}: expected a positive number"
            )));
        }
        c.augment.jsd_lambda = lambda;
    }
    Ok(c)
}
