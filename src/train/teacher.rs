//! Stage 1: the robust all-ReLU teacher (spec §4), with resumable checkpoints and a report.

use super::driver::{
    self, validate_domains, Clock, Datasets, EpochDone, EpochTraining, LoopConfig, RunOptions,
    Stage, StageConfig, StepBatch, TrainData,
};
use super::step::{plain_step, teacher_step, AugViews, StepStats};
use crate::augmix::AugMixConfig;
use crate::checkpoint;
use crate::data::source::DatasetSpec;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::eval::Accuracy;
use crate::nn::{Domain, Model, ModelConfig};
use crate::optim::{Sgd, SgdConfig};
use crate::report::run::{relu_layers, LayerRelus};
use crate::rng::{self, stream};
use crate::robust::pgd::PgdConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const CHECKPOINT_NAME: &str = "teacher.safetensors";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeacherConfig {
    pub model: ModelConfig,
    pub data: DatasetSpec,
    /// Epochs, batch size, learning rate, seed, validation and checkpoint cadence.
    #[serde(flatten)]
    pub run: LoopConfig,
    pub sgd: SgdConfig,
    /// The training attack (PGD-7 in the reference).
    pub pgd: PgdConfig,
    /// PGD steps of the final evaluation (20 in the reference).
    pub eval_pgd_steps: usize,
    pub eval_batch: usize,
    /// The AugMix view (absent in checkpoints written before it existed: no AugMix).
    #[serde(default)]
    pub augment: AugmentConfig,
    /// false: the non-robust recipe of the SENet/SNL baselines (spec §6 end): every image
    /// clean through BN_c, no attack and no AugMix.
    #[serde(default = "robust_by_default")]
    pub robust: bool,
}

fn robust_by_default() -> bool {
    true
}

/// The natural-robustness part of stage 1 (rlnet-spec §1.2-§1.3, §4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// An AugMix view of the clean half through BN_c (BN_r with triple BN); None: clean and
    /// adversarial views only.
    pub augmix: Option<AugMixConfig>,
    /// Weight of AugMix's Jensen-Shannon consistency loss over (clean, AugMix, a second
    /// independent AugMix draw); 0 turns it off (the reference's `no_jsd`).
    pub jsd_lambda: f32,
}

/// Progress saved in the checkpoint, enough to continue exactly where the run stopped.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TeacherState {
    #[serde(flatten)]
    pub clock: Clock,
    pub history: Vec<EpochLog>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochLog {
    #[serde(flatten)]
    pub training: EpochTraining,
    pub val: Vec<Accuracy>,
}

/// What `rlnet teacher` writes to report.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TeacherReport {
    pub stage: String,
    pub model: String,
    pub dataset: String,
    pub epochs: usize,
    /// clean_acc: BN_c clean accuracy; pgd_acc: BN_a PGD accuracy (the usual dual-BN reporting).
    pub metrics: Metrics,
    pub images_per_sec: f32,
    pub device: String,
    pub train_secs: f64,
    pub config: TeacherConfig,
    pub total_relus: usize,
    pub kept_relus: usize,
    /// Per ReLU layer (read by `rlnet report`).
    #[serde(default)]
    pub relu_layers: Vec<LayerRelus>,
    pub params: usize,
    pub history: Vec<EpochLog>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Metrics {
    pub clean_acc: f32,
    pub pgd_acc: f32,
    pub pgd_steps: usize,
    pub per_bn: Vec<Accuracy>,
}

/// Trains (or resumes) a teacher; writes the checkpoint and report.json into `out_dir`.
/// Returns None when the run stopped early on `stop_after`.
pub fn run(cfg: &TeacherConfig, opts: &RunOptions) -> Result<Option<TeacherReport>> {
    validate(cfg)?;
    opts.check(&cfg.run)?;
    opts.create_out_dir()?;
    let ckpt = opts.out_dir.join(CHECKPOINT_NAME);
    let mut run = start_or_resume(cfg, opts, ckpt)?;
    let sets = Datasets::load(&cfg.data, &cfg.model, &opts.device)?;
    run.test = Some(&sets.test);
    if !driver::train(&mut run, &sets.train_data(), opts)? {
        return Ok(None);
    }
    let report = final_report(cfg, opts, &run.model, &sets.test, &run.state);
    driver::write_report(opts, report).map(Some)
}

fn validate(cfg: &TeacherConfig) -> Result<()> {
    cfg.model.validate()?;
    if !cfg.robust && (cfg.augment.augmix.is_some() || cfg.augment.jsd_lambda > 0.0) {
        return Err(Error::Config(
            "the non-robust recipe has no AugMix view: drop --augment augmix / --jsd".into(),
        ));
    }
    cfg.run.validate()
}

/// A teacher run: the model, its SGD and its progress.
struct TeacherRun<'a> {
    cfg: &'a TeacherConfig,
    opts: &'a RunOptions,
    ckpt: PathBuf,
    model: Model,
    sgd: Sgd,
    state: TeacherState,
    /// The validation set (set once the data is loaded).
    test: Option<&'a ImageSet>,
}

fn start_or_resume<'a>(
    cfg: &'a TeacherConfig,
    opts: &'a RunOptions,
    ckpt: PathBuf,
) -> Result<TeacherRun<'a>> {
    let (model, sgd, state) = match driver::reopen(&ckpt, opts.resume, "teacher", cfg)? {
        Some((c, state)) => {
            let mut model = c.model()?;
            model.to_device(&opts.device)?;
            let mut sgd = Sgd::new(cfg.sgd.clone(), &model.store);
            c.restore_optimizer(&model, &mut sgd)?;
            (model, sgd, state)
        }
        None => {
            let mut model = Model::new(cfg.model.clone(), cfg.run.seed)?;
            model.to_device(&opts.device)?;
            let sgd = Sgd::new(cfg.sgd.clone(), &model.store);
            (model, sgd, TeacherState::default())
        }
    };
    Ok(TeacherRun {
        cfg,
        opts,
        ckpt,
        model,
        sgd,
        state,
        test: None,
    })
}

/// The AugMix views of the clean half (spec §1.2): the same images, cropped and flipped with
/// their own draws, then augmented; the JSD's second view re-augments the same crop with
/// independent AugMix draws.
fn aug_views(
    data: &TrainData<'_>,
    indices: &[usize],
    cfg: &TeacherConfig,
    am: &AugMixConfig,
    key: u64,
) -> Result<AugViews> {
    let view = |seed: u64| data.augmix_view(indices, cfg.run.crop_pad, cfg.run.seed, am, key, seed);
    let jsd = cfg.augment.jsd_lambda > 0.0;
    Ok(AugViews {
        first: view(cfg.run.seed)?,
        second: jsd
            .then(|| view(rng::hash(cfg.run.seed, stream::AUGMIX, 1)))
            .transpose()?,
        jsd_lambda: cfg.augment.jsd_lambda,
    })
}

impl StageConfig for TeacherConfig {
    fn loop_config(&self) -> &LoopConfig {
        &self.run
    }

    fn loop_config_mut(&mut self) -> &mut LoopConfig {
        &mut self.run
    }
}

impl Stage for TeacherRun<'_> {
    fn name(&self) -> &str {
        "teacher"
    }

    fn loop_config(&self) -> &LoopConfig {
        &self.cfg.run
    }

    fn clock(&mut self) -> &mut Clock {
        &mut self.state.clock
    }

    fn finished(&mut self) -> bool {
        self.state.clock.epoch >= self.cfg.run.epochs
    }

    fn step(&mut self, data: &TrainData<'_>, b: StepBatch<'_>) -> Result<StepStats> {
        let cfg = self.cfg;
        let precision = cfg.run.precision;
        if !cfg.robust {
            let (m, sgd) = (&mut self.model, &mut self.sgd);
            return Ok(m.at_precision(precision, |m| {
                plain_step(m, sgd, &b.x, &b.labels, Domain::Clean, b.lr)
            }));
        }
        let views = match &cfg.augment.augmix {
            Some(am) => {
                let half = &b.indices[..b.indices.len().div_ceil(2)];
                Some(aug_views(data, half, cfg, am, b.draw_key)?)
            }
            None => None,
        };
        let (m, sgd) = (&mut self.model, &mut self.sgd);
        let (x, y) = (&b.x, &b.labels);
        Ok(m.at_precision(precision, |m| {
            teacher_step(m, sgd, x, views.as_ref(), y, b.lr, &cfg.pgd, b.key)
        }))
    }

    fn end_epoch(&mut self, done: EpochDone<'_>) -> Result<()> {
        let (cfg, test) = (self.cfg, self.test.expect("the data is loaded"));
        let val = match cfg.run.full_validation_due(done.epoch) {
            true => validate_both(
                cfg,
                &self.model,
                test,
                cfg.pgd.steps,
                self.opts.show_progress,
            ),
            false => Vec::new(),
        };
        self.state.history.push(EpochLog {
            training: done.log(),
            val,
        });
        Ok(())
    }

    fn checkpointed(&self) -> (&Model, &Path) {
        (&self.model, &self.ckpt)
    }

    fn save(&mut self) -> Result<()> {
        let meta = driver::header("teacher", &self.cfg.model, self.cfg, &self.state)?;
        checkpoint::save(&self.ckpt, &self.model, Some(&self.sgd), &meta)
    }
}

/// Clean and PGD accuracy under BN_c and BN_a.
pub fn validate_both(
    cfg: &TeacherConfig,
    model: &Model,
    test: &ImageSet,
    steps: usize,
    show: bool,
) -> Vec<Accuracy> {
    let pgd = PgdConfig {
        steps,
        ..cfg.pgd.clone()
    };
    validate_domains(model, test, Some(&pgd), cfg.eval_batch, cfg.run.seed, show)
}

fn final_report(
    cfg: &TeacherConfig,
    opts: &RunOptions,
    model: &Model,
    test: &ImageSet,
    state: &TeacherState,
) -> TeacherReport {
    let per_bn = validate_both(cfg, model, test, cfg.eval_pgd_steps, opts.show_progress);
    TeacherReport {
        stage: "teacher".into(),
        model: cfg.model.arch.name().into(),
        dataset: cfg.data.kind.name().into(),
        epochs: cfg.run.epochs,
        metrics: Metrics {
            clean_acc: per_bn[0].clean_acc,
            pgd_acc: per_bn[1].pgd_acc.unwrap_or(0.0),
            pgd_steps: cfg.eval_pgd_steps,
            per_bn,
        },
        images_per_sec: state.clock.images_per_sec(),
        device: opts.device.name().into(),
        train_secs: state.clock.train_secs,
        config: cfg.clone(),
        total_relus: model.total_relus(),
        kept_relus: model.kept_relus(),
        relu_layers: relu_layers(model),
        params: model.num_params(),
        history: state.history.clone(),
    }
}
