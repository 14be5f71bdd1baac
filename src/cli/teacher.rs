//! `rlnet teacher`: stage 1 from the command line.

use super::common::{show_progress, DataArgs, DeviceArgs, ModelArgs, TrainingArgs};
use crate::augmix::AugMixConfig;
use crate::data::source::DatasetKind;
use crate::error::{Error, Result};
use crate::nn::Arch;
use crate::optim::{SgdConfig, StepSchedule};
use crate::robust::pgd::PgdConfig;
use crate::train::driver::LoopConfig;
use crate::train::teacher::{run as run_teacher, AugmentConfig, TeacherConfig};
use crate::train::RunOptions;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The reference recipe: ResNet18, 240 epochs, batch 128, lr 0.05 (x0.1 at 150/180/210),
    /// AugMix and PGD-7 training, PGD-20 evaluation.
    Paper,
    /// About a minute on 2 CPU cores: ResNet18 at width 0.125 on 4,000 synthetic images,
    /// 3 epochs (lr x0.1 after 2), AugMix and PGD-3 training, PGD-10 evaluation on 500 test
    /// images.
    Smoke,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AugmentChoice {
    None,
    Augmix,
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
    #[command(flatten)]
    run: TrainingArgs,
    /// Output folder (teacher.safetensors, report.json).
    #[arg(long, default_value = "runs/teacher")]
    out: PathBuf,
    /// The natural-robustness view of the clean half: AugMix (the paper's recipe) or none.
    #[arg(long, value_enum)]
    augment: Option<AugmentChoice>,
    /// AugMix with all 13 ops (adds color, contrast, brightness, sharpness, which overlap the
    /// CIFAR-C corruptions and are left out by default).
    #[arg(long)]
    augmix_all_ops: bool,
    /// AugMix chains mixed.
    #[arg(long, default_value_t = 3)]
    augmix_width: usize,
    /// Ops per chain (0: uniform 1-3 per chain, the default).
    #[arg(long, default_value_t = 0)]
    augmix_depth: usize,
    /// AugMix op severity (levels drawn from U(0.1, severity)).
    #[arg(long, default_value_t = 3.0)]
    augmix_severity: f64,
    /// Add AugMix's Jensen-Shannon consistency loss over the clean and two AugMix views, with
    /// weight 12 (change it with --jsd-lambda).
    #[arg(long)]
    jsd: bool,
    #[arg(long, requires = "jsd")]
    jsd_lambda: Option<f32>,
    /// The non-robust recipe of the SENet/SNL baselines: every image clean through BN_c, no
    /// attack, no AugMix (spec §6 end).
    #[arg(long, conflicts_with_all = ["augment", "jsd"])]
    non_robust: bool,
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
        run: LoopConfig {
            epochs,
            batch_size: batch,
            schedule: StepSchedule::steps(0.05, milestones, 0.1),
            crop_pad: 4,
            seed: a.run.seed,
            eval_every: 0,
            checkpoint_every: 0,
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

pub fn build_config(a: &TeacherArgs) -> Result<TeacherConfig> {
    let mut c = preset_config(a);
    if let Some(e) = a.run.epochs {
        c.run.epochs = e;
        if a.run.milestones.is_none() {
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
    if let Some(b) = a.run.batch_size {
        c.run.batch_size = b;
    }
    if let Some(lr) = a.run.lr {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::Config(format!(
                "--lr {lr}: expected a positive number"
            )));
        }
        c.run.schedule.base_lr = lr;
    }
    if let Some(m) = &a.run.milestones {
        c.run.schedule.milestones = m.clone();
    }
    if let Some(s) = a.run.pgd_steps {
        c.pgd.steps = s;
    }
    if let Some(s) = a.run.eval_pgd_steps {
        c.eval_pgd_steps = s;
    }
    if let Some(e) = a.run.eval_every {
        c.run.eval_every = e;
    }
    if let Some(k) = a.run.checkpoint_every {
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
        am.width = a.augmix_width;
        am.depth = (a.augmix_depth > 0).then_some(a.augmix_depth);
        am.severity = a.augmix_severity;
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

pub fn run(a: TeacherArgs) -> Result<()> {
    let device = a.device.choose(a.quiet)?;
    let cfg = build_config(&a)?;
    let opts = RunOptions {
        out_dir: a.out.clone(),
        resume: a.run.resume,
        stop_after: a.run.stop_after,
        stop_after_steps: a.run.stop_after_steps,
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
