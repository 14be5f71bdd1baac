//! The pipeline's final evaluation of the distilled student: CA and PGD accuracy under the
//! BN sets the method trains, accuracy on each corruption and NPA, the ReLUs kept per layer,
//! the Delphi PI cost and each stage's time, into the run folder's report.json, report.md and
//! charts.

use crate::checkpoint;
use crate::corrupt::{Corruption, Resources, Severity};
use crate::data::source::DatasetSpec;
use crate::data::Split;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::corrupt::{evaluate_corruptions, CorruptionSource, NpaReport};
use crate::eval::robustness::RobustnessPlan;
use crate::eval::{bn_name, evaluate, Accuracy, EvalOptions};
use crate::nn::{Domain, Model};
use crate::report::folders::write_run;
use crate::report::pi_cost::{estimate_model, CostModel};
use crate::report::run::{relu_layers, Run};
use crate::report::{write_json, Progress};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the final evaluation reads of the run.
pub struct FinalSettings<'a> {
    /// The run folder (distill/ holds the student evaluated).
    pub out: &'a Path,
    pub method: &'static str,
    /// Whether the method trains BN_a too (only then is it evaluated).
    pub robust: bool,
    /// PGD steps of the evaluation (0: no attack).
    pub pgd_steps: usize,
    /// The attacks, sweep and masking checks (None: clean accuracy only).
    pub robustness: Option<RobustnessPlan>,
    pub seed: u64,
    /// "standard", "all", a list, or "none".
    pub corruptions: &'a str,
    pub frost_dir: Option<&'a Path>,
    pub budget: usize,
    /// Each stage's name and folder (their report.json give the training times).
    pub stages: Vec<(&'static str, PathBuf)>,
    /// The run's settings, recorded under "config".
    pub config: serde_json::Value,
}

/// The headline of a finished pipeline, and what it wrote.
pub struct FinalEvaluation {
    pub kept_relus: usize,
    pub total_relus: usize,
    /// BN_c clean accuracy (CA).
    pub clean_acc: f32,
    /// BN_a PGD accuracy (AdvA); a single-BN run reports its one BN.
    pub pgd_acc: f32,
    pub pgd_steps: usize,
    /// NPA and how many corruptions it covers, when corruptions were evaluated.
    pub npa: Option<(f32, usize)>,
    pub report: PathBuf,
    pub charts: Vec<PathBuf>,
    /// Each BN set's accuracies (clean, PGD, the strong attacks, the sweep, masking).
    pub per_bn: Vec<Accuracy>,
}

/// The part of a stage's report.json the pipeline reads.
#[derive(Deserialize)]
struct StageReport {
    #[serde(default)]
    train_secs: f64,
    #[serde(default)]
    images_per_sec: f32,
}

/// CA / AdvA under both BN sets and NPA, on the distilled student, into `<out>/report.json`
/// (with report.md and the charts beside it).
pub(super) fn final_evaluation(
    a: &FinalSettings<'_>,
    device: &Device,
    show: bool,
) -> Result<FinalEvaluation> {
    let t0 = Instant::now();
    let best = a.out.join("distill").join("distill_best.safetensors");
    let (model, data) = load_evaluated(&best, device)?;
    let test = data.load(Split::Test)?;
    let steps = a.pgd_steps;
    let eo = EvalOptions {
        batch: 200,
        pgd: None,
        seed: a.seed,
        keep_logits: false,
    };
    // The non-robust recipe trains BN_c only: BN_a is never used, so it is not reported.
    let domains: &[Domain] = match a.robust {
        true => &[Domain::Clean, Domain::Adv],
        false => &[Domain::Clean],
    };
    let mut per_bn: Vec<Accuracy> = Vec::new();
    for &d in domains {
        let mut bar = Progress::new(show, test.len(), &format!("eval BN_{}", bn_name(d)));
        let mut done = 0;
        let (mut acc, _) = evaluate(&model, &test, d, &eo, |n| {
            done += n;
            bar.update(done, "clean");
        });
        if let Some(plan) = &a.robustness {
            let mut done = 0;
            bar.set_position(0);
            plan.run(&model, &test, d, eo.batch, &mut acc, |n| {
                done += n;
                bar.update(done, "attacks");
            });
        }
        bar.finish();
        per_bn.push(acc);
    }
    let mut corruptions: Vec<NpaReport> = Vec::new();
    if a.corruptions != "none" {
        let list = Corruption::parse_list(a.corruptions)?;
        let res = match a.frost_dir {
            Some(d) => Resources::with_frost_dir(d)?,
            None => Resources::default(),
        };
        let source = CorruptionSource::OnTheFly {
            test: &test,
            device,
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
    let mut timings = Vec::new();
    let mut train_secs = 0.0;
    for (name, dir) in &a.stages {
        let r: StageReport = read_stage(dir)?;
        train_secs += r.train_secs;
        timings.push(serde_json::json!({
            "stage": name, "secs": r.train_secs, "images_per_sec": r.images_per_sec,
        }));
    }
    timings.push(serde_json::json!({"stage": "evaluation", "secs": eval_secs}));
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
        "method": a.method,
        "model": model.config.arch.name(),
        "dataset": data.kind.name(),
        "device": device.name(),
        "budget": a.budget,
        "total_relus": model.total_relus(),
        "kept_relus": model.kept_relus(),
        "metrics": {
            "clean_acc": headline("clean").map(|r| r.clean_acc),
            "pgd_acc": headline("adv").and_then(|r| r.pgd_acc),
            "npa": corruptions.first().and_then(|r| r.npa),
            "pgd_steps": steps,
            "per_bn": &per_bn,
        },
        "corruptions": corruptions,
        "relu_layers": relu_layers(&model),
        "pi_cost": cost,
        "train_secs": train_secs,
        "stages": timings,
        "evaluated": best,
        "config": a.config,
    });
    let path = a.out.join("report.json");
    write_json(&path, &report)?;
    let charts = write_run(&Run::load(a.out)?)?;
    let clean = headline("clean").map_or(0.0, |r| r.clean_acc);
    let pgd_acc = headline("adv").and_then(|r| r.pgd_acc).unwrap_or(0.0);
    let npa = corruptions
        .first()
        .and_then(|r| r.npa.map(|n| (n, r.npa_corruptions)));
    Ok(FinalEvaluation {
        kept_relus: model.kept_relus(),
        total_relus: model.total_relus(),
        clean_acc: clean,
        pgd_acc,
        pgd_steps: steps,
        npa,
        report: path,
        charts,
        per_bn,
    })
}

/// The model of checkpoint `path`, on `device`, and the dataset its stage trained on.
fn load_evaluated(path: &Path, device: &Device) -> Result<(Model, DatasetSpec)> {
    let ckpt = checkpoint::load(path)?;
    let mut model = ckpt.model()?;
    model.to_device(device)?;
    let data: DatasetSpec = ckpt
        .meta
        .state
        .get("config")
        .and_then(|c| c.get("data"))
        .and_then(|d| serde_json::from_value(d.clone()).ok())
        .ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: "no dataset settings in its metadata".into(),
        })?;
    Ok((model, data))
}

/// A finished stage's final evaluation extended by `plan` (the stage commands' `--attack`):
/// the checkpoint the stage's report.json evaluated, attacked under each BN set the report
/// lists; the results replace those entries of `metrics.per_bn`, and the report is rewritten.
/// Returns the updated entries.
pub fn attack_stage(
    dir: &Path,
    plan: &RobustnessPlan,
    device: &Device,
    show: bool,
) -> Result<Vec<Accuracy>> {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut report: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Data(format!("{}: not a stage report: {e}", path.display())))?;
    let evaluated = match report.get("evaluated").and_then(|v| v.as_str()) {
        Some(p) => PathBuf::from(p),
        None => dir.join(crate::train::teacher::CHECKPOINT_NAME),
    };
    let (model, data) = load_evaluated(&evaluated, device)?;
    plan.validate(model.config.num_classes)?;
    let test = data.load(Split::Test)?;
    let entries: Vec<Accuracy> = report
        .pointer("/metrics/per_bn")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or_else(|| Error::Data(format!("{}: no metrics.per_bn", path.display())))?;
    let mut updated = Vec::new();
    for mut acc in entries {
        let domain = match acc.bn.as_str() {
            "clean" => Domain::Clean,
            "adv" => Domain::Adv,
            other => {
                return Err(Error::Data(format!(
                    "{}: unknown BN set {other:?} in metrics.per_bn",
                    path.display()
                )))
            }
        };
        let mut bar = Progress::new(show, test.len(), &format!("attacks BN_{}", acc.bn));
        let mut done = 0;
        plan.run(&model, &test, domain, 200, &mut acc, |n| {
            done += n;
            bar.update(done, "");
        });
        bar.finish();
        updated.push(acc);
    }
    report["metrics"]["per_bn"] = serde_json::to_value(&updated)
        .map_err(|e| Error::Data(format!("the attack results do not serialise: {e}")))?;
    write_json(&path, &report)?;
    Ok(updated)
}

fn read_stage(dir: &Path) -> Result<StageReport> {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Data(format!("{}: not a stage report: {e}", path.display())))
}
