//! `rlnet teacher`: stage 1 from the command line.

use super::common::{show_progress, DataArgs, DeviceArgs, ModelArgs};
use crate::data::source::DatasetKind;
use crate::error::{Error, Result};
use crate::nn::Arch;
use crate::optim::{SgdConfig, StepSchedule};
use crate::robust::pgd::PgdConfig;
use crate::train::teacher::{run as run_teacher, RunOptions, TeacherConfig};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The reference recipe: ResNet18, 240 epochs, batch 128, lr 0.05 (x0.1 at 150/180/210),
    /// PGD-7 training, PGD-20 evaluation.
    Paper,
    /// About a minute on 2 CPU cores: ResNet18 at width 0.125 on 4,000 synthetic images,
    /// 3 epochs (lr x0.1 after 2), PGD-3 training, PGD-10 evaluation on 500 test images.
    Smoke,
}

#[derive(Args, Debug)]
pub struct TeacherArgs {
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Starting values for every setting below; explicit flags override them.
    #[arg(long, value_enum, default_value_t = Preset::Paper)]
    preset: Preset,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f32>,
    /// Epochs (from 0) after which the learning rate is multiplied by 0.1, comma separated.
    #[arg(long, value_delimiter = ',')]
    milestones: Option<Vec<usize>>,
    /// PGD steps of the training attack.
    #[arg(long)]
    pgd_steps: Option<usize>,
    /// PGD steps of the final evaluation.
    #[arg(long)]
    eval_pgd_steps: Option<usize>,
    /// Validate every N epochs (0: only at the end).
    #[arg(long)]
    eval_every: Option<usize>,
    /// Also checkpoint every N steps inside an epoch (0: at epoch ends only).
    #[arg(long)]
    checkpoint_every: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (teacher.safetensors, report.json).
    #[arg(long, default_value = "runs/teacher")]
    out: PathBuf,
    /// Continue the run saved in --out.
    #[arg(long)]
    resume: bool,
    /// Stop after this many epochs in total (checkpointed; continue later with --resume).
    #[arg(long)]
    stop_after: Option<usize>,
    /// Stop after this many optimisation steps in total (checkpointed mid-epoch; continue
    /// later with --resume).
    #[arg(long)]
    stop_after_steps: Option<usize>,
    /// No progress bars and no device line.
    #[arg(long)]
    quiet: bool,
}

/// The config a preset gives before explicit flags are applied.
fn preset_config(a: &TeacherArgs) -> TeacherConfig {
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
        epochs,
        batch_size: batch,
        schedule: StepSchedule {
            base_lr: 0.05,
            milestones,
            factor: 0.1,
        },
        sgd: SgdConfig::default(),
        pgd: PgdConfig::linf(if smoke { 3 } else { 7 }),
        eval_pgd_steps: if smoke { 10 } else { 20 },
        eval_batch: 200,
        crop_pad: 4,
        seed: a.seed,
        eval_every: 0,
        checkpoint_every: 0,
    }
}

pub fn build_config(a: &TeacherArgs) -> Result<TeacherConfig> {
    let mut c = preset_config(a);
    if let Some(e) = a.epochs {
        c.epochs = e;
        if a.milestones.is_none() {
            // Keep the reference's milestones at the same fractions of the run.
            c.schedule.milestones = c
                .schedule
                .milestones
                .iter()
                .map(|&m| m * e / preset_config(a).epochs.max(1))
                .collect();
        }
    }
    if let Some(b) = a.batch_size {
        c.batch_size = b;
    }
    if let Some(lr) = a.lr {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::Config(format!(
                "--lr {lr}: expected a positive number"
            )));
        }
        c.schedule.base_lr = lr;
    }
    if let Some(m) = &a.milestones {
        c.schedule.milestones = m.clone();
    }
    if let Some(s) = a.pgd_steps {
        c.pgd.steps = s;
    }
    if let Some(s) = a.eval_pgd_steps {
        c.eval_pgd_steps = s;
    }
    if let Some(e) = a.eval_every {
        c.eval_every = e;
    }
    if let Some(k) = a.checkpoint_every {
        c.checkpoint_every = k;
    }
    Ok(c)
}

pub fn run(a: TeacherArgs) -> Result<()> {
    let device = a.device.choose(a.quiet)?;
    let cfg = build_config(&a)?;
    let opts = RunOptions {
        out_dir: a.out.clone(),
        resume: a.resume,
        stop_after: a.stop_after,
        stop_after_steps: a.stop_after_steps,
        show_progress: show_progress(a.quiet),
        device: device.device.clone(),
    };
    match run_teacher(&cfg, &opts)? {
        None => println!(
            "stopped as asked; continue with --resume (checkpoint in {})",
            a.out.display()
        ),
        Some(r) => {
            println!(
                "teacher {} on {}: {} epochs, {:.0} images/s",
                r.model, r.dataset, r.epochs, r.images_per_sec
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
            println!("wrote {}", a.out.join("report.json").display());
        }
    }
    Ok(())
}
