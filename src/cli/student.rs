//! Flags shared by `rlnet search` (stage 2) and `rlnet distill` (stage 3), and turning them
//! into a [`StudentConfig`].

use super::common::{show_progress, DataArgs, DeviceArgs, TrainingArgs};
use crate::augmix::AugMixConfig;
use crate::checkpoint::teacher_settings;
use crate::data::source::{DatasetKind, DatasetSpec};
use crate::error::{Error, Result};
use crate::nn::ModelConfig;
use crate::optim::{SgdConfig, StepSchedule};
use crate::robust::pgd::PgdConfig;
use crate::search::MaskPlan;
use crate::train::distill_step::{DistillWeights, LossMode};
use crate::train::driver::LoopConfig;
use crate::train::student::{StudentConfig, StudentReport};
use crate::train::RunOptions;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The reference recipe (search: 150 epochs at a constant lr 0.05; distill: 240 epochs,
    /// lr 0.01 x0.1 at 150/180/210), batch 128, PGD-7 training, PGD-20 evaluation.
    Paper,
    /// A few minutes on 2 CPU cores: 3 epochs on 2,000 synthetic images (500 test), batch 64,
    /// PGD-2 training, PGD-5 evaluation. Meant for the smoke teacher (width 0.125).
    Smoke,
}

#[derive(Args, Debug)]
pub struct StudentArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// Dataset flags; without --dataset the teacher's own dataset settings are used.
    #[command(flatten)]
    data: DataArgs,
    /// The stage-1 teacher checkpoint (`rlnet teacher`'s teacher.safetensors).
    #[arg(long)]
    pub teacher: PathBuf,
    /// Starting values for every setting below; explicit flags override them.
    #[arg(long, value_enum, default_value_t = Preset::Paper)]
    preset: Preset,
    #[command(flatten)]
    run: TrainingArgs,
    /// Weight of the cross-entropy terms.
    #[arg(long)]
    gamma: Option<f32>,
    /// Weight of the KL (RSLAD soft-label) terms.
    #[arg(long)]
    alpha: Option<f32>,
    /// Weight of the attention-transfer terms.
    #[arg(long)]
    beta: Option<f32>,
    /// Distillation temperature.
    #[arg(long)]
    temperature: Option<f32>,
    /// Cosine-anneal the learning rate to 0 over the run's epochs instead of stepping it at
    /// milestones (the SNL baseline's fine-tune).
    #[arg(long, conflicts_with = "milestones")]
    cosine: bool,
    /// No progress bars and no device line.
    #[arg(long)]
    quiet: bool,
}

/// What differs between the stages' defaults.
pub struct StageDefaults {
    pub epochs: usize,
    /// Epochs under the smoke preset.
    pub smoke_epochs: usize,
    pub lr: f32,
    pub milestones: Vec<usize>,
    pub weights: DistillWeights,
}

impl StageDefaults {
    /// Stages 2 and 3: 3 smoke epochs, the spec's loss weights.
    pub fn rlnet(epochs: usize, lr: f32, milestones: Vec<usize>) -> StageDefaults {
        StageDefaults {
            epochs,
            smoke_epochs: 3,
            lr,
            milestones,
            weights: DistillWeights::default(),
        }
    }
}

impl StudentArgs {
    /// The config for a stage with the given mask plan, student model and loss mode.
    pub fn config(
        &self,
        defaults: StageDefaults,
        masks: MaskPlan,
        model: ModelConfig,
        loss: LossMode,
    ) -> Result<StudentConfig> {
        let smoke = self.preset == Preset::Smoke;
        let data = self.data_spec()?;
        let epochs = self.run.epochs.unwrap_or(if smoke {
            defaults.smoke_epochs
        } else {
            defaults.epochs
        });
        let milestones = match &self.run.milestones {
            Some(m) => m.clone(),
            // Keep the reference's milestones at the same fractions of the run.
            None => defaults
                .milestones
                .iter()
                .map(|&m| m * epochs / defaults.epochs.max(1))
                .collect(),
        };
        let lr = self.run.lr.unwrap_or(defaults.lr);
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::Config(format!(
                "--lr {lr}: expected a positive number"
            )));
        }
        let d = defaults.weights;
        let weights = DistillWeights {
            gamma: self.gamma.unwrap_or(d.gamma),
            alpha: self.alpha.unwrap_or(d.alpha),
            beta: self.beta.unwrap_or(d.beta),
            temperature: self.temperature.unwrap_or(d.temperature),
        };
        for (flag, v) in [
            ("--gamma", weights.gamma),
            ("--alpha", weights.alpha),
            ("--beta", weights.beta),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::Config(format!("{flag} {v}: expected a number >= 0")));
            }
        }
        if !(weights.temperature > 0.0 && weights.temperature.is_finite()) {
            return Err(Error::Config(format!(
                "--temperature {}: expected a positive number",
                weights.temperature
            )));
        }
        Ok(StudentConfig {
            masks,
            teacher: self.teacher.clone(),
            model,
            data,
            run: LoopConfig {
                epochs,
                batch_size: self.run.batch_size.unwrap_or(if smoke { 64 } else { 128 }),
                schedule: StepSchedule {
                    cosine_epochs: self.cosine.then_some(epochs),
                    ..StepSchedule::steps(lr, milestones, 0.1)
                },
                crop_pad: 4,
                seed: self.run.seed,
                eval_every: self.run.eval_every.unwrap_or(0),
                checkpoint_every: self.run.checkpoint_every.unwrap_or(0),
            },
            sgd: SgdConfig::default(),
            loss: loss.name(),
            weights,
            pgd: PgdConfig::linf(self.run.pgd_steps.unwrap_or(if smoke { 2 } else { 7 })),
            // The reference's AugMix (`--augment_mode augmix`).
            augmix: AugMixConfig::default(),
            eval_pgd_steps: self
                .run
                .eval_pgd_steps
                .unwrap_or(if smoke { 5 } else { 20 }),
            eval_batch: 200,
        })
    }

    pub fn smoke(&self) -> bool {
        self.preset == Preset::Smoke
    }

    /// The teacher's model config (the student's starting point in stage 2).
    pub fn teacher_model(&self) -> Result<ModelConfig> {
        Ok(teacher_settings(&self.teacher)?.0)
    }

    /// --dataset and friends when given, else the teacher's dataset (with --data-dir and the
    /// limits still applied); the smoke preset trims synthetic data to 2,000 + 500 images.
    fn data_spec(&self) -> Result<DatasetSpec> {
        let mut spec = match (self.data.dataset, teacher_settings(&self.teacher)?.1) {
            (None, Some(mut s)) => {
                if self.data.data_dir.is_some() {
                    s.data_dir = self.data.data_dir.clone();
                }
                if self.data.train_limit.is_some() {
                    s.train_limit = self.data.train_limit;
                }
                if self.data.test_limit.is_some() {
                    s.test_limit = self.data.test_limit;
                }
                s
            }
            _ => self.data.spec(DatasetKind::Synthetic),
        };
        if self.preset == Preset::Smoke && spec.kind == DatasetKind::Synthetic {
            spec.synthetic_train = 2000;
            spec.synthetic_test = 500;
        }
        Ok(spec)
    }

    pub fn options(&self, out: &Path) -> Result<RunOptions> {
        let device = self.device.choose(self.quiet)?;
        Ok(RunOptions {
            out_dir: out.to_path_buf(),
            resume: self.run.resume,
            stop_after: self.run.stop_after,
            stop_after_steps: self.run.stop_after_steps,
            show_progress: show_progress(self.quiet),
            device: device.device,
        })
    }
}

/// Prints a finished (or stopped) run's summary.
pub fn print_outcome(report: Option<StudentReport>, out: &Path) {
    let Some(r) = report else {
        println!(
            "stopped as asked; continue with --resume (checkpoint in {})",
            out.display()
        );
        return;
    };
    println!(
        "{} {} on {} ({}): {} epochs, {:.0} images/s, best epoch {}",
        r.stage,
        r.model,
        r.dataset,
        r.loss,
        r.epochs,
        r.images_per_sec,
        r.best.map_or(0, |b| b.epoch + 1)
    );
    println!(
        "  kept ReLUs {} of {}; Delphi PI cost {:.0} ms online, {:.0} ms offline, {:.1} MB",
        r.kept_relus,
        r.total_relus,
        r.pi_cost.cost.online_ms,
        r.pi_cost.cost.offline_ms,
        r.pi_cost.cost.comm_mb
    );
    for acc in &r.metrics.per_bn {
        println!(
            "  BN_{:<5} clean {:6.2}%  PGD-{} {:6.2}%",
            acc.bn,
            100.0 * acc.clean_acc,
            r.metrics.pgd_steps,
            100.0 * acc.pgd_acc.unwrap_or(0.0)
        );
    }
    println!("wrote {}", out.join("report.json").display());
}
