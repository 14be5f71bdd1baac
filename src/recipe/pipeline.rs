//! The whole method in one run folder: stage 1 (`teacher/`), stage 2 (`search/`, or SNL's
//! linearisation in `snl/`), stage 3 (`distill/`), then a final evaluation of the distilled
//! student (CA and PGD accuracy under BN_c and BN_a, NPA over the standard corruptions, ReLU
//! counts, the Delphi PI cost) into `report.json`. `Method::Senet` runs SENet's non-robust
//! recipe through the same stages; `Method::Snl` replaces the search by SNL's linearisation and
//! stage 3 by SNL's fine-tune, so the three methods compare at the same exact ReLU budget.
//!
//! Each stage is built from its recipe (`teacher`, `student`) exactly as its own command
//! builds it. The folder is the state: a stage whose `report.json` exists is finished and
//! reused (so an existing teacher is never retrained), one with only a checkpoint is resumed,
//! and the final evaluation runs once all three are done. An interrupted pipeline therefore
//! continues where it stopped when run again, and gives what an uninterrupted one gives (every
//! stage resumes bit-identically).

use super::evaluation::{final_evaluation, FinalEvaluation, FinalSettings};
use super::flags::{AttackArgs, DataArgs, ModelArgs, Preset, TrainingArgs};
use super::student::{DistillRecipe, SearchRecipe, SnlRecipe, StudentRecipe};
use super::teacher::TeacherRecipe;
use crate::data::source::DatasetKind;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::report::write_json;
use crate::search::plan::StudentInit;
use crate::search::{parse_budget, Fractions};
use crate::tensor::precision::Precision;
use crate::train::student::{self, StudentConfig, StudentReport};
use crate::train::teacher::{self, TeacherReport};
use crate::train::RunOptions;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Which method the run folder trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// RLNet: robust teacher (clean + AugMix + PGD, dual BN), rslad+ce search, three-way
    /// robust distillation.
    Rlnet,
    /// SENet's non-robust recipe in the same code (spec §6 end): a clean-only teacher, search
    /// with 0.5 CE + 0.5 KL, distillation with 0.1 CE + 0.5 KL + 1000 AT, all through BN_c.
    Senet,
    /// The SNL baseline (baselines.md §2): a clean-only teacher, linearised with learnable α
    /// (`rlnet snl`) to exactly the budget, then fine-tuned with CE + KD at lr 1e-3, cosine.
    Snl,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Rlnet => "rlnet",
            Method::Senet => "senet",
            Method::Snl => "snl",
        }
    }

    /// Whether the method trains for robustness (the baselines use BN_c only).
    pub fn robust(self) -> bool {
        self == Method::Rlnet
    }
}

/// The smoke preset's budget: an 8.7x ReLU cut of its ResNet18 x0.125 (69,632 ReLUs).
pub const SMOKE_BUDGET: &str = "8k";

/// What makes a pipeline run: the method, the budget and the settings every stage shares.
#[derive(Args, Debug, Clone)]
pub struct PipelineRecipe {
    #[arg(long, value_enum, default_value_t = Method::Rlnet)]
    pub method: Method,
    /// Each stage's preset (smoke: minutes on 2 CPU cores, ResNet18 x0.125 on synthetic data).
    #[arg(long, value_enum, default_value_t)]
    pub preset: Preset,
    /// ReLUs the final network keeps, exactly (e.g. 50k); required with --preset paper. The
    /// smoke preset's default, 8k, is 1/8.7 of its model's 69,632 ReLUs.
    #[arg(long)]
    pub budget: Option<String>,
    /// How stage 2 spreads the budget over layers (see `rlnet search --help`; not with
    /// --method snl, which places ReLUs over the whole network itself).
    #[arg(long, default_value = "auto")]
    pub fractions: String,
    /// Where the stage-2 student's weights start: random (the reference's, the paper preset's
    /// default) or the teacher's (the smoke preset's default; see `rlnet search --help`).
    #[arg(long, value_enum)]
    pub student_init: Option<StudentInit>,
    /// Stage 3's loss mode (see `rlnet distill --help`; default rslad+attn+augattn+ce, and
    /// natural for --method senet and snl).
    #[arg(long)]
    pub mode: Option<String>,
    /// Dataset of every stage (default: the built-in synthetic set).
    #[command(flatten)]
    pub data: DataArgs,
    /// The teacher's architecture and width (the students follow the teacher).
    #[arg(long, value_enum)]
    pub model: Option<crate::nn::Arch>,
    #[arg(long)]
    pub width_mult: Option<f32>,
    /// Epochs of every stage (default: each stage's preset); SNL's linearisation is the
    /// exception: it runs until its count is within the budget.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// PGD steps of the final evaluation (default: 20, or 10 with the smoke preset).
    #[arg(long)]
    pub eval_pgd_steps: Option<usize>,
    /// The final evaluation's attacks (default: PGD alone).
    #[command(flatten)]
    pub attacks: AttackArgs,
    /// Corruptions of the final NPA: "standard" (the 15), "all", a list, or "none".
    #[arg(long, default_value = "standard")]
    pub corruptions: String,
    /// Frost textures for the NPA (without them frost is skipped and NPA says so).
    #[arg(long)]
    pub frost_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Numerics of every stage's training steps (see `rlnet teacher --help`).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// The run folder.
    #[arg(long, default_value = "runs/pipeline")]
    pub out: PathBuf,
}

/// A stage's recipe, as its own command would take it.
#[derive(Clone, Debug, PartialEq)]
pub enum StageRecipe {
    Teacher(TeacherRecipe),
    Search(SearchRecipe),
    Snl(SnlRecipe),
    Distill(DistillRecipe),
}

/// What a stage run gives: its report, or None when it stopped as asked.
pub enum StageOutcome {
    Teacher(Option<Box<TeacherReport>>),
    Student(Option<Box<StudentReport>>),
}

impl StageOutcome {
    pub fn finished(&self) -> bool {
        match self {
            StageOutcome::Teacher(r) => r.is_some(),
            StageOutcome::Student(r) => r.is_some(),
        }
    }
}

impl StageRecipe {
    /// Builds the stage's config and runs it (or resumes it) with `opts`.
    pub fn run(&self, opts: &RunOptions) -> Result<StageOutcome> {
        Ok(match self {
            StageRecipe::Teacher(r) => {
                StageOutcome::Teacher(teacher::run(&r.config()?, opts)?.map(Box::new))
            }
            StageRecipe::Search(r) => student_run(r.config()?, opts)?,
            StageRecipe::Snl(r) => student_run(r.config()?, opts)?,
            StageRecipe::Distill(r) => student_run(r.config()?, opts)?,
        })
    }
}

fn student_run(cfg: StudentConfig, opts: &RunOptions) -> Result<StageOutcome> {
    Ok(StageOutcome::Student(
        student::run(&cfg, opts)?.map(Box::new),
    ))
}

/// One stage of the run folder: its name and folder, its checkpoint's file name, its recipe.
pub struct PipelineStage {
    pub name: &'static str,
    pub dir: PathBuf,
    pub checkpoint: &'static str,
    pub recipe: StageRecipe,
}

impl PipelineStage {
    /// A finished stage has its report.json.
    pub fn finished(&self) -> bool {
        self.dir.join("report.json").is_file()
    }

    /// A started one has its checkpoint, and resumes.
    pub fn started(&self) -> bool {
        self.dir.join(self.checkpoint).is_file()
    }
}

/// What happened to a stage, for the caller to show.
pub enum PipelineEvent<'a> {
    /// Finished earlier: reused as it is.
    Reused(&'a PipelineStage),
    /// About to run (resumed: from its checkpoint).
    Starting {
        stage: &'a PipelineStage,
        resumed: bool,
    },
    /// Ran, to its end or to the asked-for stop.
    Ran {
        stage: &'a PipelineStage,
        outcome: &'a StageOutcome,
    },
}

/// How a pipeline invocation ended.
pub enum PipelineOutcome {
    /// Stopped as asked inside this stage (run again to continue).
    Stopped(&'static str),
    Finished(FinalEvaluation),
}

impl PipelineRecipe {
    /// Stage 3's loss mode.
    pub fn distill_mode(&self) -> &str {
        match (&self.mode, self.method) {
            (Some(m), _) => m,
            (None, Method::Rlnet) => "rslad+attn+augattn+ce",
            (None, Method::Senet | Method::Snl) => "natural",
        }
    }

    /// The settings every stage takes from the pipeline: preset, data and seed, and
    /// `epochs` (all but SNL's linearisation, which runs until its count is within the budget).
    fn student(&self, teacher: PathBuf, epochs: bool) -> StudentRecipe {
        StudentRecipe {
            data: self.data.clone(),
            teacher,
            preset: self.preset,
            training: self.training(epochs),
            ..StudentRecipe::default()
        }
    }

    fn training(&self, epochs: bool) -> TrainingArgs {
        TrainingArgs {
            seed: self.seed,
            epochs: self.epochs.filter(|_| epochs),
            precision: self.precision,
            ..TrainingArgs::default()
        }
    }

    /// The three stages, in order.
    pub fn stages(&self) -> Vec<PipelineStage> {
        let dir = |s: &str| self.out.join(s);
        let teacher_ckpt = dir("teacher").join("teacher.safetensors");
        let teacher = TeacherRecipe {
            data: self.data.clone(),
            model: ModelArgs {
                model: self.model,
                width_mult: self.width_mult,
                ..ModelArgs::default()
            },
            preset: self.preset,
            training: self.training(true),
            non_robust: !self.method.robust(),
            ..TeacherRecipe::default()
        };
        // Stage 2: the mask search, or SNL's linearisation.
        let (second, second_ckpt, second_recipe) = match self.method {
            Method::Snl => (
                "snl",
                "snl.safetensors",
                StageRecipe::Snl(SnlRecipe {
                    common: self.student(teacher_ckpt.clone(), false),
                    budget: self.budget().to_string(),
                    ..SnlRecipe::default()
                }),
            ),
            Method::Rlnet | Method::Senet => {
                let mut common = self.student(teacher_ckpt.clone(), true);
                let senet = self.method == Method::Senet;
                if senet {
                    common.beta = Some(0.0);
                }
                (
                    "search",
                    "search.safetensors",
                    StageRecipe::Search(SearchRecipe {
                        common,
                        budget: self.budget().to_string(),
                        fractions: Some(self.fractions.clone()),
                        mode: senet.then(|| "natural".into()),
                        student_init: self.student_init,
                    }),
                )
            }
        };
        let mut common = self.student(teacher_ckpt, true);
        match self.method {
            Method::Rlnet => {}
            Method::Senet => common.gamma = Some(0.1),
            Method::Snl => {
                // SNL's fine-tune: CE + KD (weights 1, 1), SGD lr 1e-3 cosine over 100 epochs.
                common.gamma = Some(1.0);
                common.alpha = Some(1.0);
                common.beta = Some(0.0);
                common.training.lr = Some(0.001);
                common.cosine = true;
                if self.epochs.is_none() && self.preset == Preset::Paper {
                    common.training.epochs = Some(100);
                }
            }
        }
        let distill = DistillRecipe {
            common,
            student: dir(second).join(format!("{second}_best.safetensors")),
            mode: Some(self.distill_mode().into()),
        };
        [
            (
                "teacher",
                "teacher.safetensors",
                StageRecipe::Teacher(teacher),
            ),
            (second, second_ckpt, second_recipe),
            (
                "distill",
                "distill.safetensors",
                StageRecipe::Distill(distill),
            ),
        ]
        .into_iter()
        .map(|(name, checkpoint, recipe)| PipelineStage {
            name,
            dir: dir(name),
            checkpoint,
            recipe,
        })
        .collect()
    }

    /// The settings that make a run folder what it is; a rerun must repeat them (the
    /// evaluation settings, the device and the stop flag may change).
    fn identity(&self) -> serde_json::Value {
        let d = &self.data;
        let mut id = serde_json::json!({
            "method": self.method.name(), "preset": self.preset.name(), "budget": self.budget(),
            "fractions": self.fractions, "mode": self.distill_mode(),
            "dataset": d.dataset.map(|k| k.name()), "data_dir": d.data_dir,
            "train_limit": d.train_limit, "test_limit": d.test_limit,
            "model": self.model.map(|a| a.name()), "width_mult": self.width_mult,
            "epochs": self.epochs, "seed": self.seed,
        });
        // Recorded only when not the default, so folders made before the flag still match.
        if self.student_init() != StudentInit::Random {
            id["student_init"] = self.student_init().name().into();
        }
        id
    }

    /// Records the run's identity in `pipeline.json`, or checks a rerun against it.
    fn claim_folder(&self) -> Result<()> {
        let path = self.out.join("pipeline.json");
        let want = self.identity();
        if !path.is_file() {
            return write_json(&path, &want);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let have: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Data(format!("{}: unreadable: {e}", path.display())))?;
        if have == want {
            return Ok(());
        }
        let differs: Vec<String> = want
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| have.get(k.as_str()) != Some(v))
            .map(|(k, v)| {
                let flag = k.replace('_', "-");
                format!("--{flag} (run: {}, now: {v})", have[k.as_str()])
            })
            .collect();
        Err(Error::Config(format!(
            "{} holds a pipeline run made with other settings: {}; rerun with the same flags \
             to continue it, or choose another --out",
            self.out.display(),
            differs.join(", ")
        )))
    }

    /// The stage-2 student's starting weights, as asked or the preset's default.
    pub fn student_init(&self) -> StudentInit {
        self.student_init
            .unwrap_or(StudentInit::preset_default(self.preset == Preset::Smoke))
    }

    /// The budget asked for, or the smoke preset's default.
    pub fn budget(&self) -> &str {
        self.budget.as_deref().unwrap_or(SMOKE_BUDGET)
    }

    /// Checks the settings that would otherwise fail only after the teacher has trained.
    fn check(&self) -> Result<()> {
        if self.budget.is_none() && self.preset != Preset::Smoke {
            return Err(Error::Config(format!(
                "--budget is required with --preset {} (the ReLUs the final network keeps, \
                 e.g. --budget 50k); only the smoke preset has a default ({SMOKE_BUDGET})",
                self.preset.name()
            )));
        }
        parse_budget(self.budget())?;
        Fractions::parse(&self.fractions)?;
        if let Some(plan) = self
            .attacks
            .plan(self.eval_pgd_steps.unwrap_or(20), self.seed)?
        {
            plan.validate(self.data.spec(DatasetKind::Synthetic).kind.num_classes())?;
        }
        if self.method == Method::Snl && self.fractions != "auto" {
            return Err(Error::Config(format!(
                "--fractions {}: SNL places its ReLUs over the whole network itself; leave \
                 --fractions out with --method snl",
                self.fractions
            )));
        }
        Ok(())
    }

    /// Runs what is left of the run folder on `device`: each unfinished stage (resumed from
    /// its checkpoint, stopped after `stop_after_steps` of its steps when given), then the
    /// final evaluation. `on` hears of every stage.
    pub fn run(
        &self,
        device: &Device,
        show_progress: bool,
        stop_after_steps: Option<usize>,
        mut on: impl FnMut(PipelineEvent<'_>),
    ) -> Result<PipelineOutcome> {
        self.check()?;
        std::fs::create_dir_all(&self.out).map_err(|e| Error::io(&self.out, e))?;
        self.claim_folder()?;
        let stages = self.stages();
        for stage in &stages {
            if stage.finished() {
                on(PipelineEvent::Reused(stage));
                continue;
            }
            let resumed = stage.started();
            on(PipelineEvent::Starting { stage, resumed });
            let opts = RunOptions {
                out_dir: stage.dir.clone(),
                resume: resumed,
                stop_after: None,
                stop_after_steps,
                show_progress,
                device: device.clone(),
            };
            let outcome = stage.recipe.run(&opts)?;
            on(PipelineEvent::Ran {
                stage,
                outcome: &outcome,
            });
            if !outcome.finished() {
                return Ok(PipelineOutcome::Stopped(stage.name));
            }
        }
        let pgd_steps = self.eval_pgd_steps.unwrap_or(match self.preset {
            Preset::Smoke => 10,
            Preset::Paper => 20,
        });
        let settings = FinalSettings {
            out: &self.out,
            method: self.method.name(),
            robust: self.method.robust(),
            pgd_steps,
            robustness: self.attacks.plan(pgd_steps, self.seed)?,
            seed: self.seed,
            corruptions: &self.corruptions,
            frost_dir: self.frost_dir.as_deref(),
            budget: parse_budget(self.budget())?,
            stages: stages.iter().map(|s| (s.name, s.dir.clone())).collect(),
            teacher: self.out.join("teacher").join(teacher::CHECKPOINT_NAME),
            config: serde_json::json!({
                "preset": self.preset.name(), "budget": self.budget(), "fractions": self.fractions,
                "method": self.method.name(), "mode": self.distill_mode(), "seed": self.seed,
                "student_init": self.student_init().name(),
                "corruptions": self.corruptions, "frost_dir": self.frost_dir,
            }),
        };
        final_evaluation(&settings, device, show_progress).map(PipelineOutcome::Finished)
    }
}
