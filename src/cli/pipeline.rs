//! `rlnet pipeline`: the whole RLNet method in one run folder: stage 1 (`teacher/`), stage 2
//! (`search/`), stage 3 (`distill/`), then a final evaluation of the distilled student (CA and
//! PGD accuracy under BN_c and BN_a, NPA over the standard corruptions, ReLU counts, the
//! Delphi PI cost) into `report.json`. `--method senet` runs SENet's non-robust recipe through
//! the same stages; `--method snl` replaces the search by SNL's linearisation (`snl/`) and
//! stage 3 by SNL's fine-tune, so the three methods compare at the same exact ReLU budget.
//!
//! Each stage runs as its own command would, with the same flags, in this process. The folder
//! is the state: a stage whose `report.json` exists is finished and reused (so an existing
//! teacher is never retrained), one with only a checkpoint is resumed, and the final
//! evaluation runs once all three are done. An interrupted pipeline therefore continues where
//! it stopped when the same command runs again, and gives what an uninterrupted one gives
//! (every stage resumes bit-identically).

use super::common::{show_progress, DeviceArgs};
use super::{dispatch, Cli};
use crate::checkpoint;
use crate::corrupt::{Corruption, Resources, Severity};
use crate::data::source::DatasetSpec;
use crate::data::Split;
use crate::device::DeviceRequest;
use crate::error::{Error, Result};
use crate::eval::corrupt::{evaluate_corruptions, CorruptionSource, NpaReport};
use crate::eval::{bn_name, evaluate, Accuracy, EvalOptions};
use crate::nn::Domain;
use crate::report::folders::write_run;
use crate::report::pi_cost::{estimate_model, CostModel};
use crate::report::run::{relu_layers, Run};
use crate::report::{write_json, Progress};
use crate::robust::pgd::PgdConfig;
use clap::{Args, Parser, ValueEnum};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The reference recipe for every stage (240 + 150 + 240 epochs, batch 128, PGD-7,
    /// PGD-20 evaluation).
    Paper,
    /// Minutes on 2 CPU cores: each stage's smoke preset on synthetic data (ResNet18 x0.125).
    Smoke,
}

impl Preset {
    fn name(self) -> &'static str {
        match self {
            Preset::Paper => "paper",
            Preset::Smoke => "smoke",
        }
    }
}

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
    fn name(self) -> &'static str {
        match self {
            Method::Rlnet => "rlnet",
            Method::Senet => "senet",
            Method::Snl => "snl",
        }
    }

    /// Whether the method trains for robustness (the baselines use BN_c only).
    fn robust(self) -> bool {
        self == Method::Rlnet
    }
}

#[derive(Args, Debug)]
pub struct PipelineArgs {
    #[arg(long, value_enum, default_value_t = Method::Rlnet)]
    method: Method,
    #[command(flatten)]
    device: DeviceArgs,
    #[arg(long, value_enum, default_value_t = Preset::Paper)]
    preset: Preset,
    /// ReLUs the final network keeps, exactly (e.g. 50k).
    #[arg(long)]
    budget: String,
    /// How stage 2 spreads the budget over layers (see `rlnet search --help`; not with
    /// --method snl, which places ReLUs over the whole network itself).
    #[arg(long, default_value = "auto")]
    fractions: String,
    /// Stage 3's loss mode (see `rlnet distill --help`; default rslad+attn+augattn+ce, and
    /// natural for --method senet).
    #[arg(long)]
    mode: Option<String>,
    /// Dataset of every stage (default: the built-in synthetic set).
    #[arg(long)]
    dataset: Option<String>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    train_limit: Option<usize>,
    #[arg(long)]
    test_limit: Option<usize>,
    /// The teacher's architecture and width (the students follow the teacher).
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    width_mult: Option<f32>,
    /// Epochs of every stage (default: each stage's preset); SNL's linearisation is the
    /// exception: it runs until its count is within the budget.
    #[arg(long)]
    epochs: Option<usize>,
    /// PGD steps of the final evaluation (default: 20, or 10 with the smoke preset).
    #[arg(long)]
    eval_pgd_steps: Option<usize>,
    /// Corruptions of the final NPA: "standard" (the 15), "all", a list, or "none".
    #[arg(long, default_value = "standard")]
    corruptions: String,
    /// Frost textures for the NPA (without them frost is skipped and NPA says so).
    #[arg(long)]
    frost_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop the stage that is running after this many of its optimisation steps (checkpointed;
    /// run the same command without this flag to continue).
    #[arg(long)]
    stop_after_steps: Option<usize>,
    /// The run folder.
    #[arg(long, default_value = "runs/pipeline")]
    out: PathBuf,
    #[arg(long)]
    quiet: bool,
}

/// The part of a stage's report.json the pipeline reads.
#[derive(Deserialize)]
struct StageReport {
    #[serde(default)]
    train_secs: f64,
    #[serde(default)]
    images_per_sec: f32,
}

/// One stage: its folder, the file that marks it finished, its checkpoint, its command line.
struct Stage {
    name: &'static str,
    dir: PathBuf,
    checkpoint: &'static str,
    args: Vec<String>,
}

impl PipelineArgs {
    fn data_flags(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(value) = value {
                v.push(flag.to_string());
                v.push(value);
            }
        };
        push("--dataset", self.dataset.clone());
        push(
            "--data-dir",
            self.data_dir.as_ref().map(|p| p.display().to_string()),
        );
        push("--train-limit", self.train_limit.map(|n| n.to_string()));
        push("--test-limit", self.test_limit.map(|n| n.to_string()));
        v
    }

    fn distill_mode(&self) -> &str {
        match (&self.mode, self.method) {
            (Some(m), _) => m,
            (None, Method::Rlnet) => "rslad+attn+augattn+ce",
            (None, Method::Senet | Method::Snl) => "natural",
        }
    }

    /// Flags every stage takes.
    fn common(&self) -> Vec<String> {
        let mut v = vec![
            "--preset".into(),
            self.preset.name().into(),
            "--seed".into(),
            self.seed.to_string(),
            "--device".into(),
            device_flag(self.device.device).into(),
        ];
        if self.quiet {
            v.push("--quiet".into());
        }
        v.extend(self.data_flags());
        v
    }

    fn stages(&self) -> Vec<Stage> {
        let dir = |s: &str| self.out.join(s);
        let path = |p: PathBuf| p.display().to_string();
        let teacher_ckpt = path(dir("teacher").join("teacher.safetensors"));
        let mut teacher = vec!["teacher".to_string()];
        if !self.method.robust() {
            teacher.push("--non-robust".into());
        }
        if let Some(m) = &self.model {
            teacher.extend(["--model".into(), m.clone()]);
        }
        if let Some(w) = self.width_mult {
            teacher.extend(["--width-mult".into(), w.to_string()]);
        }
        // Stage 2: the mask search, or SNL's linearisation.
        let (second, second_ckpt) = match self.method {
            Method::Snl => ("snl", "snl.safetensors"),
            _ => ("search", "search.safetensors"),
        };
        let mut search = vec![
            second.into(),
            "--teacher".into(),
            teacher_ckpt.clone(),
            "--budget".into(),
            self.budget.clone(),
        ];
        let mut distill = vec![
            "distill".into(),
            "--teacher".into(),
            teacher_ckpt,
            "--student".into(),
            path(dir(second).join(format!("{second}_best.safetensors"))),
            "--mode".into(),
            self.distill_mode().into(),
        ];
        match self.method {
            Method::Rlnet => search.extend(["--fractions".into(), self.fractions.clone()]),
            Method::Senet => {
                search.extend(["--fractions".into(), self.fractions.clone()]);
                search.extend(["--mode", "natural", "--beta", "0"].map(String::from));
                distill.extend(["--gamma", "0.1"].map(String::from));
            }
            Method::Snl => {
                // SNL's fine-tune: CE + KD (weights 1, 1), SGD lr 1e-3 cosine over 100 epochs.
                distill.extend(
                    [
                        "--gamma", "1", "--alpha", "1", "--beta", "0", "--lr", "0.001", "--cosine",
                    ]
                    .map(String::from),
                );
                if self.epochs.is_none() && self.preset == Preset::Paper {
                    distill.extend(["--epochs", "100"].map(String::from));
                }
            }
        }
        [
            ("teacher", "teacher.safetensors", teacher),
            (second, second_ckpt, search),
            ("distill", "distill.safetensors", distill),
        ]
        .into_iter()
        .map(|(name, checkpoint, mut args)| {
            args.extend(self.common());
            // --epochs sets training lengths; SNL's linearisation runs until its count is
            // within the budget (its preset's cap bounds it), so it does not get it.
            if let Some(n) = self.epochs.filter(|_| name != "snl") {
                args.extend(["--epochs".into(), n.to_string()]);
            }
            args.extend(["--out".into(), path(dir(name))]);
            Stage {
                name,
                dir: dir(name),
                checkpoint,
                args,
            }
        })
        .collect()
    }
}

/// The settings that make a run folder what it is; a rerun must repeat them (the evaluation
/// settings, the device and the stop flag may change).
fn identity(a: &PipelineArgs) -> serde_json::Value {
    serde_json::json!({
        "method": a.method.name(), "preset": a.preset.name(), "budget": a.budget,
        "fractions": a.fractions, "mode": a.distill_mode(),
        "dataset": a.dataset, "data_dir": a.data_dir, "train_limit": a.train_limit,
        "test_limit": a.test_limit, "model": a.model, "width_mult": a.width_mult,
        "epochs": a.epochs, "seed": a.seed,
    })
}

/// Records the run's identity in `pipeline.json`, or checks a rerun against it.
fn claim_folder(a: &PipelineArgs) -> Result<()> {
    let path = a.out.join("pipeline.json");
    let want = identity(a);
    if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let have: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Data(format!("{}: unreadable: {e}", path.display())))?;
        if have != want {
            let differs: Vec<String> = want
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| have.get(k.as_str()) != Some(v))
                .map(|(k, v)| {
                    format!(
                        "--{} (run: {}, now: {v})",
                        k.replace('_', "-"),
                        have[k.as_str()]
                    )
                })
                .collect();
            return Err(Error::Config(format!(
                "{} holds a pipeline run made with other settings: {}; rerun with the same \
                 flags to continue it, or choose another --out",
                a.out.display(),
                differs.join(", ")
            )));
        }
        return Ok(());
    }
    write_json(&path, &want)
}

pub fn run(a: PipelineArgs) -> Result<()> {
    // A malformed budget or --fractions fails now, not after the teacher has trained.
    crate::search::parse_budget(&a.budget)?;
    crate::search::Fractions::parse(&a.fractions)?;
    if a.method == Method::Snl && a.fractions != "auto" {
        return Err(Error::Config(format!(
            "--fractions {}: SNL places its ReLUs over the whole network itself; leave \
             --fractions out with --method snl",
            a.fractions
        )));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    claim_folder(&a)?;
    for stage in a.stages() {
        if stage.dir.join("report.json").is_file() {
            if !a.quiet {
                eprintln!(
                    "{}: finished earlier, reused ({})",
                    stage.name,
                    stage.dir.display()
                );
            }
            continue;
        }
        let mut args = vec!["rlnet".to_string()];
        args.extend(stage.args.iter().cloned());
        if stage.dir.join(stage.checkpoint).is_file() {
            args.push("--resume".into());
        }
        if let Some(s) = a.stop_after_steps {
            args.extend(["--stop-after-steps".into(), s.to_string()]);
        }
        if !a.quiet {
            eprintln!("== {}: {}", stage.name, args[1..].join(" "));
        }
        let cli = Cli::try_parse_from(&args)
            .map_err(|e| Error::Config(format!("pipeline: bad {} flags: {e}", stage.name)))?;
        dispatch(cli.command)?;
        if !stage.dir.join("report.json").is_file() {
            println!(
                "pipeline stopped in {} as asked; run the same command again to continue",
                stage.name
            );
            return Ok(());
        }
    }
    final_evaluation(&a)
}

/// CA / AdvA under both BN sets and NPA, on the distilled student, into `<out>/report.json`.
fn final_evaluation(a: &PipelineArgs) -> Result<()> {
    let t0 = Instant::now();
    let device = a.device.choose(a.quiet)?.device;
    let best = a.out.join("distill").join("distill_best.safetensors");
    let ckpt = checkpoint::load(&best)?;
    let mut model = ckpt.model()?;
    model.to_device(&device)?;
    let data: DatasetSpec = ckpt
        .meta
        .state
        .get("config")
        .and_then(|c| c.get("data"))
        .and_then(|d| serde_json::from_value(d.clone()).ok())
        .ok_or_else(|| Error::Checkpoint {
            path: best.clone(),
            msg: "no dataset settings in its metadata".into(),
        })?;
    let test = data.load(Split::Test)?;
    let steps = a
        .eval_pgd_steps
        .unwrap_or(if a.preset == Preset::Smoke { 10 } else { 20 });
    let pgd = (steps > 0).then(|| PgdConfig::linf(steps));
    let eo = EvalOptions {
        batch: 200,
        pgd: pgd.as_ref(),
        seed: a.seed,
        keep_logits: false,
    };
    // The non-robust recipe trains BN_c only: BN_a is never used, so it is not reported.
    let domains: &[Domain] = match a.method.robust() {
        true => &[Domain::Clean, Domain::Adv],
        false => &[Domain::Clean],
    };
    let mut per_bn: Vec<Accuracy> = Vec::new();
    for &d in domains {
        let mut bar = Progress::new(
            show_progress(a.quiet),
            test.len(),
            &format!("eval BN_{}", bn_name(d)),
        );
        let mut done = 0;
        let (acc, _) = evaluate(&model, &test, d, &eo, |n| {
            done += n;
            bar.update(done, "");
        });
        bar.finish();
        per_bn.push(acc);
    }
    let mut corruptions: Vec<NpaReport> = Vec::new();
    if a.corruptions != "none" {
        let list = Corruption::parse_list(&a.corruptions)?;
        let res = match &a.frost_dir {
            Some(d) => Resources::with_frost_dir(d)?,
            None => Resources::default(),
        };
        let source = CorruptionSource::OnTheFly {
            test: &test,
            device: &device,
            seed: a.seed,
            res: &res,
        };
        for &d in domains {
            let r =
                evaluate_corruptions(&model, &list, &Severity::ALL, &source, d, 200, |_, _| {})?;
            corruptions.push(r);
        }
    }
    let eval_secs = t0.elapsed().as_secs_f64();
    let mut stages = Vec::new();
    let mut train_secs = 0.0;
    for s in a.stages() {
        let r: StageReport = read_stage(&s.dir)?;
        train_secs += r.train_secs;
        stages.push(serde_json::json!({
            "stage": s.name, "secs": r.train_secs, "images_per_sec": r.images_per_sec,
        }));
    }
    stages.push(serde_json::json!({"stage": "evaluation", "secs": eval_secs}));
    let cost = estimate_model(&CostModel::DELPHI, &model);
    // CA under BN_c, AdvA under BN_a (spec §7); a single-BN run reports its one BN for both.
    let headline = |bn: &str| {
        per_bn
            .iter()
            .find(|r| r.bn == bn)
            .or_else(|| (per_bn.len() == 1).then(|| &per_bn[0]))
    };
    let report = serde_json::json!({
        "stage": "pipeline",
        "method": a.method.name(),
        "model": model.config.arch.name(),
        "dataset": data.kind.name(),
        "device": device.name(),
        "budget": crate::search::parse_budget(&a.budget)?,
        "total_relus": model.total_relus(),
        "kept_relus": model.kept_relus(),
        "metrics": {
            "clean_acc": headline("clean").map(|r| r.clean_acc),
            "pgd_acc": headline("adv").and_then(|r| r.pgd_acc),
            "npa": corruptions.first().and_then(|r| r.npa),
            "pgd_steps": steps,
            "per_bn": per_bn,
        },
        "corruptions": corruptions,
        "relu_layers": relu_layers(&model),
        "pi_cost": cost,
        "train_secs": train_secs,
        "stages": stages,
        "evaluated": best,
        "config": {
            "preset": a.preset.name(), "budget": a.budget, "fractions": a.fractions,
            "method": a.method.name(), "mode": a.distill_mode(), "seed": a.seed, "corruptions": a.corruptions,
            "frost_dir": a.frost_dir,
        },
    });
    write_json(&a.out.join("report.json"), &report)?;
    let charts = write_run(&Run::load(&a.out)?)?;
    println!(
        "pipeline: {} ReLUs kept of {}; BN_c clean {:.2}%, BN_a PGD-{steps} {:.2}%{}",
        model.kept_relus(),
        model.total_relus(),
        100.0 * headline("clean").map_or(0.0, |r| r.clean_acc),
        100.0 * headline("adv").and_then(|r| r.pgd_acc).unwrap_or(0.0),
        corruptions
            .first()
            .and_then(|r| r.npa.map(|n| format!(
                ", NPA {:.2}% over {}",
                100.0 * n,
                r.npa_corruptions
            )))
            .unwrap_or_default()
    );
    println!("wrote {}", a.out.join("report.json").display());
    for p in charts {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// The --device value that asks for `d`.
fn device_flag(d: DeviceRequest) -> &'static str {
    match d {
        DeviceRequest::Auto => "auto",
        DeviceRequest::Cpu => "cpu",
        DeviceRequest::Cuda => "cuda",
        DeviceRequest::CudaEmu => "cuda-emu",
    }
}

fn read_stage(dir: &Path) -> Result<StageReport> {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Data(format!("{}: not a stage report: {e}", path.display())))
}
