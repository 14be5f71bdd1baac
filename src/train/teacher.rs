//! Stage 1: the robust all-ReLU teacher (spec §4), with resumable checkpoints and a report.

use super::step::{plain_step, teacher_step, AugViews, StepKey};
use super::tally::{after_step, AfterStep, EpochTally};
use crate::augmix::{augmix_batch, AugMixConfig};
use crate::batches::GpuImages;
use crate::checkpoint::{self, CheckpointMeta, FORMAT_VERSION};
use crate::data::batch::{epoch_order, make_batch, CropFlip};
use crate::data::source::DatasetSpec;
use crate::data::{ImageSet, Split};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::{evaluate, Accuracy, EvalOptions};
use crate::nn::{Domain, Model, ModelConfig};
use crate::optim::{Sgd, SgdConfig, StepSchedule};
use crate::report::run::{relu_layers, LayerRelus};
use crate::report::{write_json, Progress};
use crate::rng::{self, stream};
use crate::robust::pgd::PgdConfig;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const CHECKPOINT_NAME: &str = "teacher.safetensors";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeacherConfig {
    pub model: ModelConfig,
    pub data: DatasetSpec,
    pub epochs: usize,
    pub batch_size: usize,
    pub schedule: StepSchedule,
    pub sgd: SgdConfig,
    /// The training attack (PGD-7 in the reference).
    pub pgd: PgdConfig,
    /// PGD steps of the final evaluation (20 in the reference).
    pub eval_pgd_steps: usize,
    pub eval_batch: usize,
    pub crop_pad: usize,
    pub seed: u64,
    /// Validate (clean + PGD, both BNs) every this many epochs; 0 = only at the end.
    pub eval_every: usize,
    /// Also checkpoint every this many steps inside an epoch; 0 = at epoch ends only.
    pub checkpoint_every: usize,
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
    /// Epochs fully done.
    pub epoch: usize,
    /// Steps done inside `epoch` (non-zero only for a mid-epoch checkpoint).
    pub step_in_epoch: usize,
    pub history: Vec<EpochLog>,
    pub train_secs: f64,
    pub images_trained: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub lr: f32,
    pub loss: f32,
    pub clean_train_acc: f32,
    pub adv_train_acc: f32,
    pub images_per_sec: f32,
    pub val: Vec<Accuracy>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SavedState {
    config: TeacherConfig,
    progress: TeacherState,
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

/// Options of one invocation (not part of the training config).
pub struct RunOptions {
    pub out_dir: PathBuf,
    pub resume: bool,
    /// Stop (checkpointed and resumable) once this many epochs are done in total.
    pub stop_after: Option<usize>,
    /// Stop (checkpointed, resumable) once this many steps are done in total.
    pub stop_after_steps: Option<usize>,
    pub show_progress: bool,
    pub device: Device,
}

impl RunOptions {
    /// The stop flags, checked before any work.
    pub(crate) fn check(&self) -> Result<()> {
        if self.stop_after == Some(0) || self.stop_after_steps == Some(0) {
            return Err(Error::Config(
                "--stop-after / --stop-after-steps must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A stage's training and test sets, checked against its model, and on a GPU the training
/// set's resident copy (batches are then assembled by a kernel).
pub(crate) struct Datasets {
    pub train: ImageSet,
    pub test: ImageSet,
    gpu: Option<GpuImages>,
}

impl Datasets {
    pub(crate) fn load(data: &DatasetSpec, model: &ModelConfig, device: &Device) -> Result<Self> {
        let train = data.load(Split::Train)?;
        let test = data.load(Split::Test)?;
        if train.len() < 2 {
            return Err(Error::Data(format!(
                "{} training images: need at least 2",
                train.len()
            )));
        }
        if train.num_classes != model.num_classes || train.height != model.input_size {
            return Err(Error::Config(format!(
                "data has {} classes at {} px, the model expects {} at {} px",
                train.num_classes, train.height, model.num_classes, model.input_size
            )));
        }
        let gpu = device
            .gpu()
            .map(|d| GpuImages::upload(&train, d))
            .transpose()?;
        Ok(Datasets { train, test, gpu })
    }

    pub(crate) fn train_data(&self) -> TrainData<'_> {
        TrainData {
            set: &self.train,
            gpu: self.gpu.as_ref(),
        }
    }
}

/// Trains (or resumes) a teacher; writes the checkpoint and report.json into `out_dir`.
/// Returns None when the run stopped early on `stop_after`.
pub fn run(cfg: &TeacherConfig, opts: &RunOptions) -> Result<Option<TeacherReport>> {
    validate(cfg)?;
    opts.check()?;
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    let ckpt = opts.out_dir.join(CHECKPOINT_NAME);
    let (mut model, mut sgd, mut state) = start_or_resume(cfg, &ckpt, opts.resume, &opts.device)?;
    let sets = Datasets::load(&cfg.data, &cfg.model, &opts.device)?;
    let (train, test) = (&sets.train, &sets.test);
    let data = sets.train_data();
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let last_epoch = opts.stop_after.map_or(cfg.epochs, |s| s.min(cfg.epochs));
    let mut stopped = false;
    while state.epoch < last_epoch && !stopped {
        stopped = train_epoch(
            cfg,
            opts,
            &ckpt,
            &data,
            test,
            &mut model,
            &mut sgd,
            &mut state,
            steps_per_epoch,
        )?;
    }
    if state.epoch < cfg.epochs {
        return Ok(None);
    }
    let report = final_report(cfg, opts, &model, test, &state);
    write_json(&opts.out_dir.join("report.json"), &report)?;
    Ok(Some(report))
}

fn validate(cfg: &TeacherConfig) -> Result<()> {
    cfg.model.validate()?;
    if !cfg.robust && (cfg.augment.augmix.is_some() || cfg.augment.jsd_lambda > 0.0) {
        return Err(Error::Config(
            "the non-robust recipe has no AugMix view: drop --augment augmix / --jsd".into(),
        ));
    }
    if cfg.batch_size < 2 {
        return Err(Error::Config(format!(
            "batch size {}: need at least 2 (half clean, half adversarial)",
            cfg.batch_size
        )));
    }
    if cfg.epochs == 0 {
        return Err(Error::Config("epochs must be at least 1".into()));
    }
    Ok(())
}

fn start_or_resume(
    cfg: &TeacherConfig,
    ckpt: &Path,
    resume: bool,
    device: &Device,
) -> Result<(Model, Sgd, TeacherState)> {
    if ckpt.exists() {
        if !resume {
            return Err(Error::Config(format!(
                "{} already exists: pass --resume to continue it, or choose another --out",
                ckpt.display()
            )));
        }
        let c = checkpoint::load(ckpt)?;
        let saved: SavedState =
            serde_json::from_value(c.meta.state.clone()).map_err(|e| Error::Checkpoint {
                path: ckpt.to_path_buf(),
                msg: format!("not a teacher checkpoint: {e}"),
            })?;
        if saved.config != *cfg {
            return Err(Error::Config(format!(
                "{} was started with different settings; resume with the same flags (saved: {})",
                ckpt.display(),
                serde_json::to_string(&saved.config).unwrap_or_default()
            )));
        }
        let mut model = c.model()?;
        model.to_device(device)?;
        let mut sgd = Sgd::new(cfg.sgd.clone(), &model.store);
        c.restore_optimizer(&model, &mut sgd)?;
        return Ok((model, sgd, saved.progress));
    }
    let mut model = Model::new(cfg.model.clone(), cfg.seed)?;
    model.to_device(device)?;
    let sgd = Sgd::new(cfg.sgd.clone(), &model.store);
    Ok((model, sgd, TeacherState::default()))
}

fn save(
    ckpt: &Path,
    cfg: &TeacherConfig,
    model: &Model,
    sgd: &Sgd,
    state: &TeacherState,
) -> Result<()> {
    let saved = SavedState {
        config: cfg.clone(),
        progress: state.clone(),
    };
    let meta = CheckpointMeta {
        format_version: FORMAT_VERSION,
        stage: "teacher".into(),
        model: cfg.model.clone(),
        state: serde_json::to_value(saved).map_err(|e| Error::Config(e.to_string()))?,
    };
    checkpoint::save(ckpt, model, Some(sgd), &meta)
}

/// The training set, and its GPU-resident copy when training on a GPU (shared with the
/// stage-2/3 loops in `student`).
pub(crate) struct TrainData<'a> {
    pub(crate) set: &'a ImageSet,
    pub(crate) gpu: Option<&'a GpuImages>,
}

impl TrainData<'_> {
    /// The AugMix views of the clean half (spec §1.2): the same images, cropped and flipped
    /// with their own draws, then augmented; the JSD's second view re-augments the same crop
    /// with independent AugMix draws.
    fn aug_views(
        &self,
        indices: &[usize],
        cfg: &TeacherConfig,
        am: &AugMixConfig,
        key: u64,
    ) -> Result<AugViews> {
        let view = |seed: u64| self.augmix_view(indices, cfg.crop_pad, cfg.seed, am, key, seed);
        let jsd = cfg.augment.jsd_lambda > 0.0;
        Ok(AugViews {
            first: view(cfg.seed)?,
            second: jsd
                .then(|| view(rng::hash(cfg.seed, stream::AUGMIX, 1)))
                .transpose()?,
            jsd_lambda: cfg.augment.jsd_lambda,
        })
    }

    /// One AugMix view of `indices`: cropped and flipped with the run's AugMix crop draws
    /// (`run_seed`), augmented with the draws of `view_seed`.
    pub(crate) fn augmix_view(
        &self,
        indices: &[usize],
        crop_pad: usize,
        run_seed: u64,
        am: &AugMixConfig,
        key: u64,
        view_seed: u64,
    ) -> Result<Tensor> {
        let crop = CropFlip {
            pad: crop_pad,
            seed: rng::hash(run_seed, stream::AUGMIX, 0),
        };
        match self.gpu {
            Some(g) => g.augmix_batch(indices, Some(crop), key, am, view_seed),
            None => augmix_batch(self.set, indices, Some(crop), key, am, view_seed),
        }
    }

    pub(crate) fn batch(
        &self,
        indices: &[usize],
        crop: CropFlip,
        key: u64,
    ) -> Result<(Tensor, Vec<u32>)> {
        match self.gpu {
            Some(g) => Ok((
                g.batch(indices, Some(crop), key)?,
                indices.iter().map(|&i| self.set.labels[i]).collect(),
            )),
            None => Ok(make_batch(self.set, indices, Some(crop), key)),
        }
    }
}

/// Trains the rest of the current epoch; returns true when `stop_after_steps` ended it early
/// (after a mid-epoch checkpoint).
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    cfg: &TeacherConfig,
    opts: &RunOptions,
    ckpt: &Path,
    data: &TrainData<'_>,
    test: &ImageSet,
    model: &mut Model,
    sgd: &mut Sgd,
    state: &mut TeacherState,
    steps: usize,
) -> Result<bool> {
    let epoch = state.epoch;
    let lr = cfg.schedule.lr(epoch);
    let train = data.set;
    let order = epoch_order(cfg.seed, epoch, train.len());
    let crop = CropFlip {
        pad: cfg.crop_pad,
        seed: cfg.seed,
    };
    let mut bar = Progress::new(
        opts.show_progress,
        steps,
        &format!("teacher epoch {}/{}", epoch + 1, cfg.epochs),
    );
    bar.set_position(state.step_in_epoch);
    let mut tally = EpochTally::default();
    let started = Instant::now();
    for step in state.step_in_epoch..steps {
        let idx = &order[step * cfg.batch_size..((step + 1) * cfg.batch_size).min(train.len())];
        if idx.len() < 2 {
            continue; // a last batch of one image cannot be split into clean and adversarial halves
        }
        let draw_key = (epoch * train.len() + step * cfg.batch_size) as u64;
        let (x, y) = data.batch(idx, crop, draw_key)?;
        let key = StepKey {
            seed: cfg.seed,
            step: (epoch * steps + step) as u64,
        };
        let s = if cfg.robust {
            let views = match &cfg.augment.augmix {
                Some(am) => {
                    Some(data.aug_views(&idx[..idx.len().div_ceil(2)], cfg, am, draw_key)?)
                }
                None => None,
            };
            teacher_step(model, sgd, &x, views.as_ref(), &y, lr, &cfg.pgd, key)
        } else {
            plain_step(model, sgd, &x, &y, Domain::Clean, lr)
        };
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
            state.step_in_epoch = step + 1;
            state.train_secs += started.elapsed().as_secs_f64();
            state.images_trained += tally.images;
            save(ckpt, cfg, model, sgd, state)?;
            if next == AfterStep::Stop {
                bar.finish();
                return Ok(true);
            }
            state.train_secs -= started.elapsed().as_secs_f64();
            state.images_trained -= tally.images;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    bar.finish();
    state.train_secs += secs;
    state.images_trained += tally.images;
    let val = if cfg.eval_every > 0
        && (epoch + 1).is_multiple_of(cfg.eval_every)
        && epoch + 1 < cfg.epochs
    {
        validate_both(cfg, model, test, cfg.pgd.steps, opts.show_progress)
    } else {
        Vec::new()
    };
    state.history.push(EpochLog {
        epoch,
        lr,
        loss: tally.mean_loss(),
        clean_train_acc: tally.clean_acc(),
        adv_train_acc: tally.adv_acc(),
        images_per_sec: tally.images_per_sec(secs),
        val,
    });
    state.epoch += 1;
    state.step_in_epoch = 0;
    save(ckpt, cfg, model, sgd, state)?;
    Ok(opts.stop_after_steps == Some(epoch * steps + steps))
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
    validate_domains(model, test, Some(&pgd), cfg.eval_batch, cfg.seed, show)
}

/// Clean (and, with `pgd`, PGD) accuracy under BN_c and BN_a, with progress bars.
pub fn validate_domains(
    model: &Model,
    test: &ImageSet,
    pgd: Option<&PgdConfig>,
    batch: usize,
    seed: u64,
    show: bool,
) -> Vec<Accuracy> {
    [Domain::Clean, Domain::Adv]
        .into_iter()
        .map(|d| {
            let attack = pgd.map_or(String::new(), |p| format!(" PGD-{}", p.steps));
            let mut bar = Progress::new(
                show,
                test.len(),
                &format!("eval BN_{}{attack}", crate::eval::bn_name(d)),
            );
            let mut done = 0;
            let eo = EvalOptions {
                batch,
                pgd,
                seed,
                keep_logits: false,
            };
            let (acc, _) = evaluate(model, test, d, &eo, |n| {
                done += n;
                bar.update(done, "");
            });
            bar.finish();
            acc
        })
        .collect()
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
        epochs: cfg.epochs,
        metrics: Metrics {
            clean_acc: per_bn[0].clean_acc,
            pgd_acc: per_bn[1].pgd_acc.unwrap_or(0.0),
            pgd_steps: cfg.eval_pgd_steps,
            per_bn,
        },
        images_per_sec: (state.images_trained as f64 / state.train_secs.max(1e-9)) as f32,
        device: opts.device.name().into(),
        train_secs: state.train_secs,
        config: cfg.clone(),
        total_relus: model.total_relus(),
        kept_relus: model.kept_relus(),
        relu_layers: relu_layers(model),
        params: model.num_params(),
        history: state.history.clone(),
    }
}
