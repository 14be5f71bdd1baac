//! The run loop shared by stage 2 (mask search, spec §5) and stage 3 (distillation with a
//! frozen mask, spec §6): a student trained against a frozen teacher with `distill_step`,
//! resumable mid-epoch from atomic checkpoints, the best-BN_c-clean-accuracy checkpoint kept
//! (spec §5.1 step 4, §6 step 6), and a final evaluation under BN_c and BN_a.
//!
//! The stages differ in the mask: stage 2 accumulates the teacher-student activation
//! discrepancy over each epoch and re-selects the exact per-layer top-k at its end
//! ([`MaskPlan::Search`]); stage 3 never touches the mask ([`MaskPlan::Frozen`]); the SNL
//! baseline learns a real α per site with Adam and an L1 penalty until few enough remain, then
//! binarises to the exact budget ([`MaskPlan::Linearize`], rules in `snl`).

use super::distill_step::{DistillBatch, DistillWeights, LossMode};
use super::snl::{binarise_top, count_alive, restore_alphas, SnlConfig, SnlProgress};
use super::step::StepKey;
use super::student_optim::{Optim, StepSettings};
use super::tally::{after_step, AfterStep, EpochTally};
use super::teacher::{validate_domains, Datasets, Metrics, RunOptions, TrainData};
use crate::augmix::AugMixConfig;
use crate::checkpoint::{self, CheckpointMeta, FORMAT_VERSION};
use crate::data::batch::{epoch_order, CropFlip};
use crate::data::source::DatasetSpec;
use crate::data::ImageSet;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::Accuracy;
use crate::nn::{kept_count, Model, ModelConfig};
use crate::optim::{SgdConfig, StepSchedule};
use crate::report::pi_cost::{estimate_model, CostModel, LayerCost};
use crate::report::{write_json, Progress};
use crate::robust::pgd::PgdConfig;
use crate::search::apply_top_k;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Prefix of the search's score accumulators inside a mid-epoch checkpoint.
const SCORES_PREFIX: &str = "search.scores.";

/// What happens to the student's ReLU masks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MaskPlan {
    /// Stage 2: after every epoch keep exactly `ks[l]` ReLUs in layer l (Σ ks = `budget`).
    Search {
        budget: usize,
        /// How the per-layer counts were chosen (for the report).
        fractions: String,
        ks: Vec<usize>,
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
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudentConfig {
    pub masks: MaskPlan,
    /// The stage-1 teacher checkpoint (frozen, eval mode).
    pub teacher: PathBuf,
    /// The student's model (stage 2: the teacher's; stage 3: the stage-2 checkpoint's).
    pub model: ModelConfig,
    pub data: DatasetSpec,
    pub epochs: usize,
    pub batch_size: usize,
    pub schedule: StepSchedule,
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
    pub crop_pad: usize,
    pub seed: u64,
    /// Also validate PGD accuracy (both BNs) every this many epochs; 0 = only at the end. The
    /// BN_c clean accuracy that picks the best checkpoint is measured after every epoch.
    pub eval_every: usize,
    /// Also checkpoint every this many steps inside an epoch; 0 = at epoch ends only.
    pub checkpoint_every: usize,
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
        if self.batch_size < 2 {
            return Err(Error::Config(format!(
                "batch size {}: need at least 2 (half clean, half adversarial)",
                self.batch_size
            )));
        }
        if self.epochs == 0 {
            return Err(Error::Config("epochs must be at least 1".into()));
        }
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
    pub epoch: usize,
    pub step_in_epoch: usize,
    pub history: Vec<EpochLog>,
    pub train_secs: f64,
    pub images_trained: usize,
    pub best: Option<Best>,
    /// SNL runs: λ, counts and Adam's step counts.
    #[serde(default)]
    pub snl: Option<SnlProgress>,
}

impl StudentState {
    /// Whether training is over: every epoch ran, or SNL binarised its α.
    fn finished(&self, epochs: usize) -> bool {
        self.epoch >= epochs
            || self
                .snl
                .as_ref()
                .is_some_and(|p| p.binarised_after.is_some())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub lr: f32,
    pub loss: f32,
    pub clean_train_acc: f32,
    pub adv_train_acc: f32,
    pub images_per_sec: f32,
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

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SavedState {
    config: StudentConfig,
    progress: StudentState,
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

/// A stage-1 teacher checkpoint, on `device`.
pub fn load_teacher(path: &Path, device: &Device) -> Result<Model> {
    if !path.is_file() {
        return Err(Error::Config(format!(
            "teacher checkpoint {}: no such file (train one with `rlnet teacher`)",
            path.display()
        )));
    }
    let c = checkpoint::load(path)?;
    if c.meta.stage != "teacher" {
        return Err(Error::Config(format!(
            "{} is a '{}' checkpoint; --teacher expects a stage-1 teacher checkpoint",
            path.display(),
            c.meta.stage
        )));
    }
    let mut m = c.model()?;
    m.to_device(device)?;
    Ok(m)
}

/// Trains (or resumes) a student; writes `<stage>.safetensors`, `<stage>_best.safetensors`
/// and report.json into `out_dir`. `init` builds the starting student on `device` when the
/// run is new. Returns None when the run stopped early on `stop_after`/`stop_after_steps`.
pub fn run(
    cfg: &StudentConfig,
    opts: &RunOptions,
    init: impl FnOnce(&Device) -> Result<Model>,
) -> Result<Option<StudentReport>> {
    let mode = cfg.validate()?;
    opts.check()?;
    let teacher = load_teacher(&cfg.teacher, &opts.device)?;
    check_pair(&teacher.config, &cfg.model)?;
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    let ckpt = opts.out_dir.join(cfg.checkpoint_name());
    let mut run = start_or_resume(cfg, &ckpt, opts, init)?;
    let sets = Datasets::load(&cfg.data, &cfg.model, &opts.device)?;
    let (train, test) = (&sets.train, &sets.test);
    let data = sets.train_data();
    let ctx = Ctx {
        cfg,
        opts,
        mode,
        teacher: &teacher,
        ckpt: &ckpt,
        data: &data,
        test,
        steps: train.len().div_ceil(cfg.batch_size),
    };
    let last_epoch = opts.stop_after.map_or(cfg.epochs, |s| s.min(cfg.epochs));
    let mut stopped = false;
    while run.state.epoch < last_epoch && !stopped && !run.state.finished(cfg.epochs) {
        stopped = ctx.train_epoch(&mut run)?;
    }
    if !run.state.finished(cfg.epochs) {
        return Ok(None);
    }
    let report = final_report(&ctx, &run.state)?;
    write_json(&opts.out_dir.join("report.json"), &report)?;
    Ok(Some(report))
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

/// The student being trained and everything a checkpoint restores.
struct Run {
    model: Model,
    optim: Optim,
    state: StudentState,
    /// Stage 2: this epoch's accumulated discrepancy per ReLU layer ([C,H,W], model device).
    scores: Option<Vec<Tensor>>,
}

fn zero_scores(model: &Model) -> Result<Vec<Tensor>> {
    model
        .relu_layers
        .iter()
        .map(|l| Tensor::zeros(&l.shape).into_device(model.store.device()))
        .collect()
}

fn start_or_resume(
    cfg: &StudentConfig,
    ckpt: &Path,
    opts: &RunOptions,
    init: impl FnOnce(&Device) -> Result<Model>,
) -> Result<Run> {
    let searching = matches!(cfg.masks, MaskPlan::Search { .. });
    if ckpt.exists() {
        if !opts.resume {
            return Err(Error::Config(format!(
                "{} already exists: pass --resume to continue it, or choose another --out",
                ckpt.display()
            )));
        }
        let c = checkpoint::load(ckpt)?;
        let saved: SavedState =
            serde_json::from_value(c.meta.state.clone()).map_err(|e| Error::Checkpoint {
                path: ckpt.to_path_buf(),
                msg: format!("not a {} checkpoint: {e}", cfg.masks.stage()),
            })?;
        if saved.config != *cfg {
            return Err(Error::Config(format!(
                "{} was started with different settings; resume with the same flags (saved: {})",
                ckpt.display(),
                serde_json::to_string(&saved.config).unwrap_or_default()
            )));
        }
        let mut model = c.model()?;
        let learning_alpha = saved
            .progress
            .snl
            .as_ref()
            .is_some_and(|p| p.binarised_after.is_none());
        if learning_alpha {
            restore_alphas(&c, &mut model, ckpt)?;
        }
        model.to_device(&opts.device)?;
        let mut optim = Optim::for_plan(cfg, &model);
        optim.restore(&c, &model, saved.progress.snl.as_ref(), ckpt)?;
        let scores = if searching {
            let mut s = zero_scores(&model)?;
            if saved.progress.step_in_epoch > 0 {
                for (t, l) in s.iter_mut().zip(&model.relu_layers) {
                    let name = format!("{SCORES_PREFIX}{}", l.name);
                    let v = c.tensor(&name).ok_or_else(|| Error::Checkpoint {
                        path: ckpt.to_path_buf(),
                        msg: format!("mid-epoch search checkpoint without {name}"),
                    })?;
                    *t = v.clone().into_device(&opts.device)?;
                }
            }
            Some(s)
        } else {
            None
        };
        return Ok(Run {
            model,
            optim,
            state: saved.progress,
            scores,
        });
    }
    let mut model = init(&opts.device)?;
    if model.config != cfg.model {
        return Err(Error::Config(
            "the starting student's model differs from the run's model config".into(),
        ));
    }
    model.to_device(&opts.device)?;
    let mut state = StudentState::default();
    if let MaskPlan::Linearize(snl) = &cfg.masks {
        snl.validate(model.total_relus())?;
        // SNL starts from the all-ReLU network: every α = 1.
        for l in &model.relu_layers {
            if kept_count(&model.mask(l)) != l.count() {
                return Err(Error::Config(
                    "SNL starts from an all-ReLU network; the starting model has linear sites"
                        .into(),
                ));
            }
        }
        model.soft_masks = true;
        state.snl = Some(SnlProgress::start(snl, model.total_relus()));
    }
    let optim = Optim::for_plan(cfg, &model);
    let scores = searching.then(|| zero_scores(&model)).transpose()?;
    Ok(Run {
        model,
        optim,
        state,
        scores,
    })
}

fn meta(cfg: &StudentConfig, state: &StudentState) -> Result<CheckpointMeta> {
    let saved = SavedState {
        config: cfg.clone(),
        progress: state.clone(),
    };
    Ok(CheckpointMeta {
        format_version: FORMAT_VERSION,
        stage: cfg.masks.stage().into(),
        model: cfg.model.clone(),
        state: serde_json::to_value(saved).map_err(|e| Error::Config(e.to_string()))?,
    })
}

/// The resumable checkpoint: weights, masks, the optimiser's state, progress, (mid-epoch
/// search) the scores accumulated so far and (SNL) the α, in one atomically written file.
fn save(ckpt: &Path, cfg: &StudentConfig, run: &mut Run) -> Result<()> {
    let mut extra: Vec<(String, &Tensor)> = match (&run.scores, run.state.step_in_epoch > 0) {
        (Some(s), true) => run
            .model
            .relu_layers
            .iter()
            .zip(s)
            .map(|(l, t)| (format!("{SCORES_PREFIX}{}", l.name), t))
            .collect(),
        _ => Vec::new(),
    };
    extra.extend(run.optim.extra_tensors(&run.model, run.state.snl.as_mut()));
    checkpoint::save_with(
        ckpt,
        &run.model,
        run.optim.sgd(),
        &extra,
        &meta(cfg, &run.state)?,
    )
}

/// Everything an epoch reads.
struct Ctx<'a> {
    cfg: &'a StudentConfig,
    opts: &'a RunOptions,
    mode: LossMode,
    teacher: &'a Model,
    ckpt: &'a Path,
    data: &'a TrainData<'a>,
    test: &'a ImageSet,
    steps: usize,
}

impl Ctx<'_> {
    /// Trains the rest of the current epoch; returns true when `stop_after_steps` ended the
    /// run (after a checkpoint).
    fn train_epoch(&self, run: &mut Run) -> Result<bool> {
        let (cfg, opts, steps) = (self.cfg, self.opts, self.steps);
        let epoch = run.state.epoch;
        let lr = cfg.schedule.lr(epoch);
        let train = self.data.set;
        let order = epoch_order(cfg.seed, epoch, train.len());
        let crop = CropFlip {
            pad: cfg.crop_pad,
            seed: cfg.seed,
        };
        let stage = cfg.masks.stage();
        let mut bar = Progress::new(
            opts.show_progress,
            steps,
            &format!("{stage} epoch {}/{}", epoch + 1, cfg.epochs),
        );
        bar.set_position(run.state.step_in_epoch);
        let mut tally = EpochTally::default();
        let started = Instant::now();
        for step in run.state.step_in_epoch..steps {
            let idx = &order[step * cfg.batch_size..((step + 1) * cfg.batch_size).min(train.len())];
            if idx.len() < 2 {
                continue; // one image cannot be split into clean and adversarial halves
            }
            let draw_key = (epoch * train.len() + step * cfg.batch_size) as u64;
            let (x, y) = self.data.batch(idx, crop, draw_key)?;
            let aug = if self.mode.needs_augmix() {
                let h1 = &idx[..idx.len().div_ceil(2)];
                Some(self.data.augmix_view(
                    h1,
                    cfg.crop_pad,
                    cfg.seed,
                    &cfg.augmix,
                    draw_key,
                    cfg.seed,
                )?)
            } else {
                None
            };
            let key = StepKey {
                seed: cfg.seed,
                step: (epoch * steps + step) as u64,
            };
            let batch = DistillBatch {
                x: &x,
                aug: aug.as_ref(),
                labels: &y,
            };
            let settings = StepSettings {
                mode: self.mode,
                weights: &cfg.weights,
                pgd: &cfg.pgd,
                lr,
                key,
                lambda: run.state.snl.as_ref().map_or(0.0, |p| p.lambda),
            };
            let s = run.optim.step(
                &mut run.model,
                self.teacher,
                &batch,
                &settings,
                run.scores.as_deref_mut(),
            )?;
            tally.add(&s, idx.len());
            bar.update(step + 1, &tally.progress(started.elapsed().as_secs_f64()));
            let next = after_step(
                opts.stop_after_steps,
                cfg.checkpoint_every,
                epoch,
                steps,
                step,
            );
            if next == AfterStep::EndEpoch {
                break;
            }
            if matches!(next, AfterStep::Checkpoint | AfterStep::Stop) {
                run.state.step_in_epoch = step + 1;
                run.state.train_secs += started.elapsed().as_secs_f64();
                run.state.images_trained += tally.images;
                save(self.ckpt, cfg, run)?;
                if next == AfterStep::Stop {
                    bar.finish();
                    return Ok(true);
                }
                run.state.train_secs -= started.elapsed().as_secs_f64();
                run.state.images_trained -= tally.images;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        bar.finish();
        run.state.train_secs += secs;
        run.state.images_trained += tally.images;
        let lambda = run.state.snl.as_ref().map(|p| p.lambda);
        self.end_masks(run, epoch)?;
        let (val_clean_acc, val) = self.validate(&run.model, epoch)?;
        // SNL: only the binarised network is a candidate (before that it is not at budget).
        let candidate = run
            .state
            .snl
            .as_ref()
            .is_none_or(|p| p.binarised_after.is_some());
        let better = candidate && run.state.best.is_none_or(|b| val_clean_acc > b.clean_acc);
        if better {
            run.state.best = Some(Best {
                epoch,
                clean_acc: val_clean_acc,
            });
        }
        run.state.history.push(EpochLog {
            epoch,
            lr,
            loss: tally.mean_loss(),
            clean_train_acc: tally.clean_acc(),
            adv_train_acc: tally.adv_acc(),
            images_per_sec: tally.images_per_sec(secs),
            kept_relus: match &run.state.snl {
                Some(p) if p.binarised_after.is_none() => p.count,
                _ => run.model.kept_relus(),
            },
            lambda,
            val_clean_acc,
            val,
        });
        run.state.epoch += 1;
        run.state.step_in_epoch = 0;
        // The best checkpoint first: if the run dies between the two writes, the resumed run
        // redoes this epoch bit for bit and writes the same best checkpoint again.
        if better {
            let best = self.opts.out_dir.join(cfg.best_name());
            checkpoint::save(&best, &run.model, None, &meta(cfg, &run.state)?)?;
        }
        save(self.ckpt, cfg, run)?;
        Ok(opts.stop_after_steps == Some(epoch * steps + steps))
    }

    /// Stage 2's epoch end (spec §5.1 step 2.3): the new mask keeps exactly k_l ReLUs per
    /// layer where the teacher and student differed most; the accumulators start again at 0.
    /// Stage 3: the mask must be what it was. SNL: count, adjust λ, and binarise once the
    /// count is within the budget or the epoch cap is reached.
    fn end_masks(&self, run: &mut Run, epoch: usize) -> Result<()> {
        match (&self.cfg.masks, &mut run.scores) {
            (MaskPlan::Linearize(snl), _) => {
                let count = count_alive(&run.model, snl.threshold)?;
                let p = run
                    .state
                    .snl
                    .as_mut()
                    .expect("an SNL run carries its progress");
                p.end_epoch(snl, epoch, count);
                if p.reached || epoch + 1 == self.cfg.epochs {
                    binarise_top(&mut run.model, snl.budget)?;
                    p.binarised_after = Some(epoch);
                    assert_eq!(run.model.kept_relus(), snl.budget);
                }
            }
            (MaskPlan::Search { budget, ks, .. }, Some(scores)) => {
                let kept = apply_top_k(&mut run.model, scores, ks)?;
                assert_eq!(kept, *budget, "the per-layer counts sum to the budget");
                assert_eq!(
                    run.model.kept_relus(),
                    *budget,
                    "the search keeps exactly the budget after every epoch"
                );
                *scores = zero_scores(&run.model)?;
            }
            (MaskPlan::Search { .. }, None) => unreachable!("a search run has score tensors"),
            (MaskPlan::Frozen { .. }, _) => {}
        }
        Ok(())
    }

    /// BN_c clean accuracy (every epoch) and, on `eval_every` epochs, clean + PGD under both
    /// BNs with the training attack's step count (spec: PGD-7 validation).
    fn validate(&self, model: &Model, epoch: usize) -> Result<(f32, Vec<Accuracy>)> {
        let cfg = self.cfg;
        let show = self.opts.show_progress;
        let full = cfg.eval_every > 0
            && (epoch + 1).is_multiple_of(cfg.eval_every)
            && epoch + 1 < cfg.epochs;
        if full {
            let val = validate_domains(
                model,
                self.test,
                Some(&cfg.pgd),
                cfg.eval_batch,
                cfg.seed,
                show,
            );
            return Ok((val[0].clean_acc, val));
        }
        let clean = validate_domains(model, self.test, None, cfg.eval_batch, cfg.seed, show);
        Ok((clean[0].clean_acc, Vec::new()))
    }
}

fn final_report(ctx: &Ctx<'_>, state: &StudentState) -> Result<StudentReport> {
    let (cfg, opts) = (ctx.cfg, ctx.opts);
    let evaluated = opts.out_dir.join(cfg.best_name());
    let mut model = checkpoint::load(&evaluated)?.model()?;
    model.to_device(&opts.device)?;
    let pgd = PgdConfig {
        steps: cfg.eval_pgd_steps,
        ..cfg.pgd.clone()
    };
    let per_bn = validate_domains(
        &model,
        ctx.test,
        Some(&pgd),
        cfg.eval_batch,
        cfg.seed,
        opts.show_progress,
    );
    let cost = estimate_model(&CostModel::DELPHI, &model);
    Ok(StudentReport {
        stage: cfg.masks.stage().into(),
        model: cfg.model.arch.name().into(),
        dataset: cfg.data.kind.name().into(),
        loss: cfg.loss.clone(),
        epochs: cfg.epochs,
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
        images_per_sec: (state.images_trained as f64 / state.train_secs.max(1e-9)) as f32,
        train_secs: state.train_secs,
        device: opts.device.name().into(),
        config: cfg.clone(),
        snl: state.snl.clone(),
        history: state.history.clone(),
    })
}
