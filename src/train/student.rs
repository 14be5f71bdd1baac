//! The student stages: stage 2 (mask search, spec §5) and stage 3 (distillation with a frozen
//! mask, spec §6), and the SNL baseline's linearisation: a student trained against a frozen
//! teacher with `distill_step`, resumable mid-epoch from atomic checkpoints, the
//! best-BN_c-clean-accuracy checkpoint kept (spec §5.1 step 4, §6 step 6), and a final
//! evaluation under BN_c and BN_a. What the stages do with the mask is their
//! [`MaskPolicy`](crate::search::MaskPolicy): stage 2 re-selects the exact per-layer top-k after
//! every epoch, stage 3 never touches it, SNL learns α until few enough remain.

use super::distill_step::{DistillBatch, DistillWeights, LossMode};
use super::driver::{
    self, validate_domains, Clock, Datasets, EpochDone, EpochTraining, LoopConfig, RunOptions,
    Stage, StageConfig, StepBatch, TrainData,
};
use super::step::StepStats;
use super::student_optim::{Optim, StepSettings};
use super::teacher::Metrics;
use crate::augmix::AugMixConfig;
use crate::checkpoint::{self, load_teacher};
use crate::data::source::DatasetSpec;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::eval::Accuracy;
use crate::nn::{Model, ModelConfig};
use crate::optim::SgdConfig;
use crate::report::pi_cost::{estimate_model, CostModel, LayerCost};
use crate::robust::pgd::PgdConfig;
use crate::search::policy::Resumed;
use crate::search::snl::SnlProgress;
use crate::search::{MaskPlan, MaskPolicy};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudentConfig {
    pub masks: MaskPlan,
    /// The stage-1 teacher checkpoint (frozen, eval mode).
    pub teacher: PathBuf,
    /// The student's model (stage 2: the teacher's; stage 3: the stage-2 checkpoint's).
    pub model: ModelConfig,
    pub data: DatasetSpec,
    /// Epochs, batch size, learning rate, seed, validation and checkpoint cadence.
    #[serde(flatten)]
    pub run: LoopConfig,
    pub sgd: SgdConfig,
    /// Loss mode name (`LossMode::parse`).
    pub loss: String,
    pub weights: DistillWeights,
    /// The training attack (PGD-7 with the RSLAD KL objective in the reference).
    pub pgd: PgdConfig,
    pub augmix: AugMixConfig,
    /// PGD steps of the final evaluation (20 in the reference).
    pub eval_pgd_steps: usize,
    pub eval_batch: usize,
}

impl StudentConfig {
    pub fn checkpoint_name(&self) -> String {
        format!("{}.safetensors", self.masks.stage())
    }

    pub fn best_name(&self) -> String {
        format!("{}_best.safetensors", self.masks.stage())
    }

    fn validate(&self) -> Result<LossMode> {
        self.model.validate()?;
        self.run.validate()?;
        self.augmix.validate()?;
        LossMode::parse(&self.loss)
    }
}

/// The epoch with the best BN_c clean test accuracy so far.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Best {
    pub epoch: usize,
    pub clean_acc: f32,
}

/// Progress saved in the checkpoint, enough to continue exactly where the run stopped.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StudentState {
    #[serde(flatten)]
    pub clock: Clock,
    pub history: Vec<EpochLog>,
    pub best: Option<Best>,
    /// SNL runs: λ, counts and Adam's step counts.
    #[serde(default)]
    pub snl: Option<SnlProgress>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochLog {
    #[serde(flatten)]
    pub training: EpochTraining,
    /// ReLUs the mask keeps after this epoch (stage 2: after the top-k update; SNL: sites
    /// with α above the threshold until binarised).
    pub kept_relus: usize,
    /// SNL: the λ this epoch trained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f32>,
    /// BN_c clean test accuracy (picks the best checkpoint).
    pub val_clean_acc: f32,
    /// Clean + PGD accuracy under both BNs, on `eval_every` epochs.
    pub val: Vec<Accuracy>,
}

/// What `rlnet search` / `rlnet distill` write to report.json.
#[derive(Clone, Debug, Serialize)]
pub struct StudentReport {
    pub stage: String,
    pub model: String,
    pub dataset: String,
    pub loss: String,
    pub epochs: usize,
    /// The checkpoint the metrics are for: the best-BN_c one.
    pub evaluated: PathBuf,
    pub best: Option<Best>,
    /// clean_acc: BN_c clean (CA); pgd_acc: BN_a PGD (AdvA); per_bn: both under both BNs.
    pub metrics: Metrics,
    pub total_relus: usize,
    pub kept_relus: usize,
    /// Per-layer kept ReLUs, forward order.
    pub kept_per_layer: Vec<usize>,
    /// The Delphi private-inference cost of the kept ReLUs (report::pi_cost), in total.
    pub pi_cost: LayerCost,
    pub pi_cost_model: CostModel,
    pub params: usize,
    pub images_per_sec: f32,
    /// Training wall time over every invocation of the run.
    pub train_secs: f64,
    pub device: String,
    pub config: StudentConfig,
    /// SNL runs: how the linearisation ended (count reached, λ, epoch of binarisation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snl: Option<SnlProgress>,
    pub history: Vec<EpochLog>,
}

/// Trains (or resumes) a student; writes `<stage>.safetensors`, `<stage>_best.safetensors`
/// and report.json into `out_dir`. A new run starts from the student its mask plan names.
/// Returns None when the run stopped early on `stop_after`/`stop_after_steps`.
pub fn run(cfg: &StudentConfig, opts: &RunOptions) -> Result<Option<StudentReport>> {
    let mode = cfg.validate()?;
    opts.check(&cfg.run)?;
    let teacher = load_teacher(&cfg.teacher, &opts.device)?;
    check_pair(&teacher.config, &cfg.model)?;
    opts.create_out_dir()?;
    let mut run = start_or_resume(cfg, opts, mode, &teacher)?;
    let sets = Datasets::load(&cfg.data, &cfg.model, &opts.device)?;
    run.test = Some(&sets.test);
    if !driver::train(&mut run, &sets.train_data(), opts)? {
        return Ok(None);
    }
    let report = final_report(&run)?;
    driver::write_report(opts, report).map(Some)
}

/// The teacher and the student must agree on what they classify and at what size, and share
/// the architecture (the attention taps pair up layer by layer).
fn check_pair(teacher: &ModelConfig, student: &ModelConfig) -> Result<()> {
    if teacher.arch != student.arch
        || teacher.num_classes != student.num_classes
        || teacher.input_size != student.input_size
    {
        return Err(Error::Config(format!(
            "teacher is {} ({} classes, {} px) but the student is {} ({} classes, {} px)",
            teacher.arch.name(),
            teacher.num_classes,
            teacher.input_size,
            student.arch.name(),
            student.num_classes,
            student.input_size
        )));
    }
    Ok(())
}

/// A student run: the student, its optimiser, its mask policy and its progress.
struct StudentRun<'a> {
    cfg: &'a StudentConfig,
    opts: &'a RunOptions,
    mode: LossMode,
    teacher: &'a Model,
    ckpt: PathBuf,
    model: Model,
    optim: Optim,
    policy: Box<dyn MaskPolicy>,
    state: StudentState,
    /// The validation set (set once the data is loaded).
    test: Option<&'a ImageSet>,
}

fn start_or_resume<'a>(
    cfg: &'a StudentConfig,
    opts: &'a RunOptions,
    mode: LossMode,
    teacher: &'a Model,
) -> Result<StudentRun<'a>> {
    let ckpt = opts.out_dir.join(cfg.checkpoint_name());
    let mut policy = cfg.masks.policy();
    let stage = cfg.masks.stage();
    let (model, optim, state) = match driver::reopen(&ckpt, opts.resume, stage, cfg)? {
        Some((c, state)) => {
            let mut state: StudentState = state;
            let mut model = c.model()?;
            let progress = state.snl.take();
            let adam_steps = progress.as_ref().map(|p| p.adam_steps.clone());
            let resumed = Resumed {
                path: &ckpt,
                model: &mut model,
                progress,
                mid_epoch: state.clock.step_in_epoch > 0,
                device: &opts.device,
            };
            policy.resume(&c, resumed)?;
            model.to_device(&opts.device)?;
            let mut optim = Optim::new(&cfg.sgd, cfg.masks.alpha_optimiser(), &model);
            optim.restore(&c, &model, adam_steps.as_deref())?;
            (model, optim, state)
        }
        None => {
            let mut model = policy.starting_student(&cfg.model, cfg.run.seed, &cfg.teacher)?;
            if model.config != cfg.model {
                return Err(Error::Config(
                    "the starting student's model differs from the run's model config".into(),
                ));
            }
            model.to_device(&opts.device)?;
            policy.start(&mut model)?;
            let optim = Optim::new(&cfg.sgd, cfg.masks.alpha_optimiser(), &model);
            (model, optim, StudentState::default())
        }
    };
    Ok(StudentRun {
        cfg,
        opts,
        mode,
        teacher,
        ckpt,
        model,
        optim,
        policy,
        state,
        test: None,
    })
}

impl StudentRun<'_> {
    /// The checkpoint header, with the policy's progress as it stands.
    fn header(&mut self) -> Result<checkpoint::CheckpointMeta> {
        self.state.snl = self.policy.progress().cloned();
        driver::header(
            self.cfg.masks.stage(),
            &self.cfg.model,
            self.cfg,
            &self.state,
        )
    }

    /// BN_c clean accuracy (every epoch) and, on `eval_every` epochs, clean + PGD under both
    /// BNs with the training attack's step count (spec: PGD-7 validation).
    fn validate(&self, epoch: usize) -> (f32, Vec<Accuracy>) {
        let (cfg, test) = (self.cfg, self.test.expect("the data is loaded"));
        let show = self.opts.show_progress;
        let full = cfg.run.full_validation_due(epoch);
        let pgd = full.then_some(&cfg.pgd);
        let val = validate_domains(&self.model, test, pgd, cfg.eval_batch, cfg.run.seed, show);
        (val[0].clean_acc, if full { val } else { Vec::new() })
    }
}

impl StageConfig for StudentConfig {
    fn loop_config(&self) -> &LoopConfig {
        &self.run
    }

    fn loop_config_mut(&mut self) -> &mut LoopConfig {
        &mut self.run
    }
}

impl Stage for StudentRun<'_> {
    fn name(&self) -> &str {
        self.cfg.masks.stage()
    }

    fn loop_config(&self) -> &LoopConfig {
        &self.cfg.run
    }

    fn clock(&mut self) -> &mut Clock {
        &mut self.state.clock
    }

    /// Every epoch ran, or the policy ended the training (SNL binarised its α).
    fn finished(&mut self) -> bool {
        self.state.clock.epoch >= self.cfg.run.epochs || self.policy.ended()
    }

    fn step(&mut self, data: &TrainData<'_>, b: StepBatch<'_>) -> Result<StepStats> {
        let cfg = self.cfg;
        let aug = match self.mode.needs_augmix() {
            true => {
                let h1 = &b.indices[..b.indices.len().div_ceil(2)];
                let (pad, seed) = (cfg.run.crop_pad, cfg.run.seed);
                Some(data.augmix_view(h1, pad, seed, &cfg.augmix, b.draw_key, seed)?)
            }
            false => None,
        };
        let batch = DistillBatch {
            x: &b.x,
            aug: aug.as_ref(),
            labels: &b.labels,
        };
        let settings = StepSettings {
            mode: self.mode,
            weights: &cfg.weights,
            pgd: &cfg.pgd,
            lr: b.lr,
            key: b.key,
            lambda: self.policy.penalty().unwrap_or(0.0),
        };
        let (model, teacher, optim) = (&mut self.model, self.teacher, &mut self.optim);
        let scores = self.policy.scores();
        // The student's passes (its attack's included) in the run's precision; the frozen
        // teacher's targets stay f32.
        model.at_precision(cfg.run.precision, |m| {
            optim.step(m, teacher, &batch, &settings, scores)
        })
    }

    /// The policy's mask update, validation, the best checkpoint (written before the run's
    /// own: if the run dies between the two writes, the resumed run redoes this epoch bit for
    /// bit and writes the same best checkpoint again).
    fn end_epoch(&mut self, done: EpochDone<'_>) -> Result<()> {
        let epoch = done.epoch;
        let lambda = self.policy.penalty();
        let last = epoch + 1 == self.cfg.run.epochs;
        self.policy.end_epoch(&mut self.model, epoch, last)?;
        let (val_clean_acc, val) = self.validate(epoch);
        let state = &mut self.state;
        let better =
            self.policy.at_budget() && state.best.is_none_or(|b| val_clean_acc > b.clean_acc);
        if better {
            state.best = Some(Best {
                epoch,
                clean_acc: val_clean_acc,
            });
        }
        state.history.push(EpochLog {
            training: done.log(),
            kept_relus: self.policy.kept_relus(&self.model),
            lambda,
            val_clean_acc,
            val,
        });
        if better {
            let best = self.opts.out_dir.join(self.cfg.best_name());
            let meta = self.header()?;
            checkpoint::save(&best, &self.model, None, &meta)?;
        }
        Ok(())
    }

    fn checkpointed(&self) -> (&Model, &Path) {
        (&self.model, &self.ckpt)
    }

    /// Weights, masks, the optimiser's state, progress and the policy's tensors (the scores
    /// of a mid-epoch search, SNL's α), in one atomically written file.
    fn save(&mut self) -> Result<()> {
        if let (Some(p), Some(steps)) = (
            self.policy.progress_mut(),
            self.optim.step_counts(&self.model),
        ) {
            p.adam_steps = steps;
        }
        let meta = self.header()?;
        let mid_epoch = self.state.clock.step_in_epoch > 0;
        let mut extra = self.policy.tensors(&self.model, mid_epoch);
        extra.extend(self.optim.state_tensors(&self.model));
        checkpoint::save_with(&self.ckpt, &self.model, self.optim.sgd(), &extra, &meta)
    }
}

fn final_report(run: &StudentRun<'_>) -> Result<StudentReport> {
    let (cfg, opts, state) = (run.cfg, run.opts, &run.state);
    let evaluated = opts.out_dir.join(cfg.best_name());
    let mut model = checkpoint::load(&evaluated)?.model()?;
    model.to_device(&opts.device)?;
    let pgd = PgdConfig {
        steps: cfg.eval_pgd_steps,
        ..cfg.pgd.clone()
    };
    let per_bn = validate_domains(
        &model,
        run.test.expect("the data is loaded"),
        Some(&pgd),
        cfg.eval_batch,
        cfg.run.seed,
        opts.show_progress,
    );
    let cost = estimate_model(&CostModel::DELPHI, &model);
    Ok(StudentReport {
        stage: cfg.masks.stage().into(),
        model: cfg.model.arch.name().into(),
        dataset: cfg.data.kind.name().into(),
        loss: cfg.loss.clone(),
        epochs: cfg.run.epochs,
        evaluated,
        best: state.best,
        metrics: Metrics {
            clean_acc: per_bn[0].clean_acc,
            pgd_acc: per_bn[1].pgd_acc.unwrap_or(0.0),
            pgd_steps: cfg.eval_pgd_steps,
            per_bn,
        },
        total_relus: model.total_relus(),
        kept_relus: model.kept_relus(),
        kept_per_layer: cost.layers.iter().map(|l| l.kept).collect(),
        pi_cost: cost.total,
        pi_cost_model: cost.model,
        params: model.num_params(),
        images_per_sec: state.clock.images_per_sec(),
        train_secs: state.clock.train_secs,
        device: opts.device.name().into(),
        config: cfg.clone(),
        snl: run.policy.progress().cloned(),
        history: state.history.clone(),
    })
}
