//! The run loop every training stage shares (stage 1, the student stages, SNL): the datasets,
//! a new run or the resumed one, the epoch and step loop with its progress bar, mid-epoch
//! checkpoints and stops, the validation cadence, the clock, and the report at the end. A stage
//! says what differs ([`Stage`]): its step, its epoch end, its checkpoint and when it is done.

use super::step::{StepKey, StepStats};
use super::tally::{after_step, AfterStep, EpochTally};
use crate::augmix::{augmix_batch, AugMixConfig};
use crate::batches::GpuImages;
use crate::checkpoint::{self, Checkpoint, CheckpointMeta, FORMAT_VERSION};
use crate::data::batch::{epoch_order, make_batch, CropFlip};
use crate::data::source::DatasetSpec;
use crate::data::{ImageSet, Split};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::{evaluate, Accuracy, EvalOptions};
use crate::nn::{Domain, Model, ModelConfig};
use crate::optim::StepSchedule;
use crate::report::{write_json, Progress};
use crate::rng::{self, stream};
use crate::robust::pgd::PgdConfig;
use crate::tensor::precision::Precision;
use crate::tensor::Tensor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// The stop flags and the run's precision on this device, checked before any work.
    pub(crate) fn check(&self, run: &LoopConfig) -> Result<()> {
        if self.stop_after == Some(0) || self.stop_after_steps == Some(0) {
            return Err(Error::Config(
                "--stop-after / --stop-after-steps must be at least 1".into(),
            ));
        }
        run.precision.check(&self.device)
    }

    /// The output folder, created if needed.
    pub(crate) fn create_out_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.out_dir).map_err(|e| Error::io(&self.out_dir, e))
    }
}

/// Where a run stands, saved in every checkpoint of every stage.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Clock {
    /// Epochs fully done.
    pub epoch: usize,
    /// Steps done inside `epoch` (non-zero only for a mid-epoch checkpoint).
    pub step_in_epoch: usize,
    /// Training wall time over every invocation of the run.
    pub train_secs: f64,
    pub images_trained: usize,
}

impl Clock {
    pub fn images_per_sec(&self) -> f32 {
        (self.images_trained as f64 / self.train_secs.max(1e-9)) as f32
    }

    fn add(&mut self, secs: f64, images: usize) {
        self.train_secs += secs;
        self.images_trained += images;
    }

    fn remove(&mut self, secs: f64, images: usize) {
        self.train_secs -= secs;
        self.images_trained -= images;
    }
}

/// What the run loop reads from a stage's config, the same for every stage (flattened into
/// the stage's config, so a checkpoint header lists these fields beside the stage's own).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoopConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub schedule: StepSchedule,
    pub crop_pad: usize,
    pub seed: u64,
    /// Validate clean and PGD accuracy under both BNs every this many epochs; 0 = only at the
    /// end (the student stages also measure BN_c clean accuracy after every epoch).
    pub eval_every: usize,
    /// Also checkpoint every this many steps inside an epoch; 0 = at epoch ends only.
    pub checkpoint_every: usize,
    /// The numerics of the training steps (absent in checkpoints written before it existed:
    /// f32). Validation and the final evaluation run in f32.
    #[serde(default)]
    pub precision: Precision,
}

impl LoopConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.batch_size < 2 {
            return Err(Error::Config(format!(
                "batch size {}: need at least 2 (half clean, half adversarial)",
                self.batch_size
            )));
        }
        if self.epochs == 0 {
            return Err(Error::Config("epochs must be at least 1".into()));
        }
        Ok(())
    }

    /// Whether the epoch just ended (from 0) gets the full validation (clean + PGD under both
    /// BNs): every `eval_every` epochs, but not after the last (the final evaluation covers it).
    pub(crate) fn full_validation_due(&self, epoch: usize) -> bool {
        let every = self.eval_every;
        every > 0 && (epoch + 1).is_multiple_of(every) && epoch + 1 < self.epochs
    }
}

/// One step's batch: the images and labels, and the keys of its random draws.
pub(crate) struct StepBatch<'a> {
    pub indices: &'a [usize],
    pub x: Tensor,
    pub labels: Vec<u32>,
    /// The key of the batch's crop, flip and AugMix draws.
    pub draw_key: u64,
    pub key: StepKey,
    pub lr: f32,
}

/// The epoch just trained, as its end sees it.
pub(crate) struct EpochDone<'a> {
    pub epoch: usize,
    pub lr: f32,
    pub tally: &'a EpochTally,
    pub secs: f64,
}

impl EpochDone<'_> {
    /// The part of the epoch's log every stage writes.
    pub fn log(&self) -> EpochTraining {
        let t = self.tally;
        EpochTraining {
            epoch: self.epoch,
            lr: self.lr,
            loss: t.mean_loss(),
            clean_train_acc: t.clean_acc(),
            adv_train_acc: t.adv_acc(),
            images_per_sec: t.images_per_sec(self.secs),
        }
    }
}

/// How an epoch trained, in every stage's history (flattened into the stage's epoch log).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochTraining {
    pub epoch: usize,
    pub lr: f32,
    pub loss: f32,
    pub clean_train_acc: f32,
    pub adv_train_acc: f32,
    pub images_per_sec: f32,
}

/// What differs between the stages.
pub(crate) trait Stage {
    /// "teacher", "search", ...: the progress bar's label.
    fn name(&self) -> &str;
    fn loop_config(&self) -> &LoopConfig;
    fn clock(&mut self) -> &mut Clock;
    /// Whether training is over (every epoch ran, or the stage ended it).
    fn finished(&mut self) -> bool;
    fn step(&mut self, data: &TrainData<'_>, batch: StepBatch<'_>) -> Result<StepStats>;
    /// After the clock has counted the epoch: mask updates, validation, the epoch's log.
    fn end_epoch(&mut self, done: EpochDone<'_>) -> Result<()>;
    /// The model being trained (checked for non-finite values before every checkpoint) and
    /// the checkpoint `save` writes it to.
    fn checkpointed(&self) -> (&Model, &Path);
    /// The run's resumable checkpoint.
    fn save(&mut self) -> Result<()>;
}

/// The first tensor of `model` holding a NaN or an infinity, with how many such values.
fn non_finite(model: &Model) -> Result<Option<(String, usize)>> {
    let count = |v: &[f32]| v.iter().filter(|x| !x.is_finite()).count();
    for e in model.store.entries() {
        // A host tensor is read where it is; a device one is downloaded.
        let bad = match e.tensor.is_cuda() {
            true => count(e.tensor.to_host()?.data()),
            false => count(e.tensor.data()),
        };
        if bad > 0 {
            return Ok(Some((e.name.clone(), bad)));
        }
    }
    Ok(None)
}

/// Where the run stands, for a divergence error: step `step` (from 0) of epoch `epoch`.
struct Position<'a> {
    stage: &'a str,
    epoch: usize,
    step: usize,
    steps: usize,
}

impl Position<'_> {
    /// The divergence error: what was not finite, and what the checkpoint `ckpt` still holds.
    fn diverged(&self, what: String, opts: &RunOptions, ckpt: &Path) -> Error {
        let recovery = match ckpt.is_file() {
            true => format!(
                "Nothing was written after it: {} still holds the last good state; continue \
                 from it with --resume and a lower --lr (the same settings would repeat these \
                 steps exactly and diverge again)",
                ckpt.display()
            ),
            false => format!(
                "No checkpoint was written in {}; start again with a lower --lr",
                opts.out_dir.display()
            ),
        };
        Error::Diverged {
            stage: self.stage.to_string(),
            at: format!(
                "step {} (epoch {}, step {} of {})",
                self.epoch * self.steps + self.step + 1,
                self.epoch + 1,
                self.step + 1,
                self.steps
            ),
            what,
            recovery,
        }
    }
}

/// An error when the stage's model has left the finite numbers.
fn ensure_finite(stage: &impl Stage, at: &Position<'_>, opts: &RunOptions) -> Result<()> {
    match non_finite(stage.checkpointed().0)? {
        Some((name, count)) => {
            let what = format!("{count} values of {name} are NaN or infinite");
            Err(at.diverged(what, opts, stage.checkpointed().1))
        }
        None => Ok(()),
    }
}

/// Saves the run's checkpoint unless its model has left the finite numbers (then the last
/// good checkpoint stays as it is).
fn save_checked(stage: &mut impl Stage, at: &Position<'_>, opts: &RunOptions) -> Result<()> {
    ensure_finite(stage, at, opts)?;
    stage.save()
}

/// Trains until the stage is finished or an asked-for stop; returns whether it finished.
pub(crate) fn train(
    stage: &mut impl Stage,
    data: &TrainData<'_>,
    opts: &RunOptions,
) -> Result<bool> {
    let epochs = stage.loop_config().epochs;
    let last_epoch = opts.stop_after.map_or(epochs, |s| s.min(epochs));
    while stage.clock().epoch < last_epoch && !stage.finished() {
        if train_epoch(stage, data, opts)? {
            break;
        }
    }
    Ok(stage.finished())
}

/// Trains the rest of the current epoch; returns true when `stop_after_steps` ended the run
/// (after a checkpoint).
fn train_epoch(stage: &mut impl Stage, data: &TrainData<'_>, opts: &RunOptions) -> Result<bool> {
    let Clock {
        epoch,
        step_in_epoch: first,
        ..
    } = *stage.clock();
    let s = stage.loop_config();
    let (epochs, batch_size, seed, every) = (s.epochs, s.batch_size, s.seed, s.checkpoint_every);
    let lr = s.schedule.lr(epoch);
    let crop = CropFlip {
        pad: s.crop_pad,
        seed,
    };
    let train = data.set;
    let steps = train.len().div_ceil(batch_size);
    let order = epoch_order(seed, epoch, train.len());
    let name = stage.name().to_string();
    let label = format!("{name} epoch {}/{epochs}", epoch + 1);
    let mut bar = Progress::new(opts.show_progress, steps, &label);
    bar.set_position(first);
    let mut tally = EpochTally::default();
    let started = Instant::now();
    for step in first..steps {
        let idx = &order[step * batch_size..((step + 1) * batch_size).min(train.len())];
        if idx.len() < 2 {
            continue; // one image cannot be split into clean and adversarial halves
        }
        let draw_key = (epoch * train.len() + step * batch_size) as u64;
        let (x, labels) = data.batch(idx, crop, draw_key)?;
        let batch = StepBatch {
            indices: idx,
            x,
            labels,
            draw_key,
            key: StepKey {
                seed,
                step: (epoch * steps + step) as u64,
            },
            lr,
        };
        let stats = stage.step(data, batch)?;
        let at = Position {
            stage: &name,
            epoch,
            step,
            steps,
        };
        if !stats.loss.is_finite() {
            let what = format!("the loss is {}", stats.loss);
            return Err(at.diverged(what, opts, stage.checkpointed().1));
        }
        tally.add(&stats, idx.len());
        bar.update(step + 1, &tally.progress(started.elapsed().as_secs_f64()));
        let next = after_step(opts.stop_after_steps, every, epoch, steps, step);
        if next == AfterStep::EndEpoch {
            break;
        }
        if matches!(next, AfterStep::Checkpoint | AfterStep::Stop) {
            // The checkpoint counts this invocation's time so far; the epoch end counts it all.
            let secs = started.elapsed().as_secs_f64();
            stage.clock().step_in_epoch = step + 1;
            stage.clock().add(secs, tally.images);
            save_checked(stage, &at, opts)?;
            if next == AfterStep::Stop {
                bar.finish();
                return Ok(true);
            }
            stage.clock().remove(secs, tally.images);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    bar.finish();
    let at = Position {
        stage: &name,
        epoch,
        step: steps - 1,
        steps,
    };
    // Before the epoch's end writes anything (a student's best checkpoint, say).
    ensure_finite(stage, &at, opts)?;
    let clock = stage.clock();
    clock.add(secs, tally.images);
    clock.epoch += 1;
    clock.step_in_epoch = 0;
    stage.end_epoch(EpochDone {
        epoch,
        lr,
        tally: &tally,
        secs,
    })?;
    save_checked(stage, &at, opts)?;
    Ok(opts.stop_after_steps == Some(epoch * steps + steps))
}

/// A stage's config, as the driver sees it.
pub(crate) trait StageConfig: Clone + PartialEq + Serialize + DeserializeOwned {
    fn loop_config(&self) -> &LoopConfig;
    fn loop_config_mut(&mut self) -> &mut LoopConfig;
}

/// A checkpoint's stage state: the run's config and its progress.
#[derive(Deserialize)]
struct Saved<C, P> {
    config: C,
    progress: P,
}

#[derive(Serialize)]
struct SavedRef<'a, C, P> {
    config: &'a C,
    progress: &'a P,
}

/// The checkpoint a run continues from: None for a new run; an error when one exists but
/// `--resume` was not given, or it holds another stage or other settings.
pub(crate) fn reopen<C, P>(
    ckpt: &Path,
    resume: bool,
    stage: &str,
    cfg: &C,
) -> Result<Option<(Checkpoint, P)>>
where
    C: StageConfig,
    P: DeserializeOwned,
{
    if !ckpt.exists() {
        return Ok(None);
    }
    if !resume {
        return Err(Error::Config(format!(
            "{} already exists: pass --resume to continue it, or choose another --out",
            ckpt.display()
        )));
    }
    let c = checkpoint::load(ckpt)?;
    let saved: Saved<C, P> =
        serde_json::from_value(c.meta.state.clone()).map_err(|e| Error::Checkpoint {
            path: ckpt.to_path_buf(),
            msg: format!("not a {stage} checkpoint: {e}"),
        })?;
    // The learning-rate schedule may change on resume (after a divergence, say): the run
    // continues from its checkpoint with the new one; every other setting must be the run's.
    let mut same_but_lr = saved.config.clone();
    same_but_lr.loop_config_mut().schedule = cfg.loop_config().schedule.clone();
    if same_but_lr != *cfg {
        return Err(Error::Config(format!(
            "{} was started with different settings; resume with the same flags, the learning \
             rate schedule aside (saved: {})",
            ckpt.display(),
            serde_json::to_string(&saved.config).unwrap_or_default()
        )));
    }
    Ok(Some((c, saved.progress)))
}

/// The header of a stage's checkpoint: its config and progress under `state`.
pub(crate) fn header<C: Serialize, P: Serialize>(
    stage: &str,
    model: &ModelConfig,
    cfg: &C,
    progress: &P,
) -> Result<CheckpointMeta> {
    let saved = SavedRef {
        config: cfg,
        progress,
    };
    Ok(CheckpointMeta {
        format_version: FORMAT_VERSION,
        stage: stage.into(),
        model: model.clone(),
        state: serde_json::to_value(saved).map_err(|e| Error::Config(e.to_string()))?,
    })
}

/// Writes a finished run's report.json and returns the report.
pub(crate) fn write_report<R: Serialize>(opts: &RunOptions, report: R) -> Result<R> {
    write_json(&opts.out_dir.join("report.json"), &report)?;
    Ok(report)
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

/// The training set, and its GPU-resident copy when training on a GPU.
pub(crate) struct TrainData<'a> {
    pub(crate) set: &'a ImageSet,
    pub(crate) gpu: Option<&'a GpuImages>,
}

impl TrainData<'_> {
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

    fn batch(&self, indices: &[usize], crop: CropFlip, key: u64) -> Result<(Tensor, Vec<u32>)> {
        match self.gpu {
            Some(g) => Ok((
                g.batch(indices, Some(crop), key)?,
                indices.iter().map(|&i| self.set.labels[i]).collect(),
            )),
            None => Ok(make_batch(self.set, indices, Some(crop), key)),
        }
    }
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
