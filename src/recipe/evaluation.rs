//! The pipeline's final evaluation of the distilled student and, beside it, its all-ReLU
//! teacher: CA and PGD accuracy under the BN sets the method trains, accuracy on each
//! corruption and NPA, the ReLUs kept per layer, the Delphi PI cost and each stage's time,
//! into the run folder's report.json, report.md and charts. The teacher is measured the same
//! way on the same images (its PGD only, not the strong attacks, which cost many times a
//! training stage on a robust model), once per teacher: the result is kept in
//! `teacher/evaluation.json` and reused while the checkpoint and the settings are unchanged.

use crate::checkpoint;
use crate::corrupt::{Corruption, Resources, Severity};
use crate::data::source::DatasetSpec;
use crate::data::ImageSet;
use crate::data::Split;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::attacks::AttackKind;
use crate::eval::corrupt::{evaluate_corruptions, CorruptionSource, NpaReport};
use crate::eval::robustness::RobustnessPlan;
use crate::eval::{bn_name, evaluate, Accuracy, EvalOptions};
use crate::nn::{Domain, Model};
use crate::report::folders::write_run;
use crate::report::pi_cost::{estimate_model, CostModel};
use crate::report::run::{relu_layers, Run};
use crate::report::{write_json, Progress};
use serde::{Deserialize, Serialize};
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
    /// The stage-1 teacher's checkpoint, measured beside the student.
    pub teacher: PathBuf,
    /// The run's settings, recorded under "config".
    pub config: serde_json::Value,
}

/// One model's headline numbers (spec §7).
#[derive(Clone, Debug)]
pub struct Headline {
    pub kept_relus: usize,
    pub total_relus: usize,
    /// BN_c clean accuracy (CA).
    pub clean_acc: f32,
    /// BN_a PGD accuracy (AdvA); a single-BN run reports its one BN.
    pub pgd_acc: f32,
    /// NPA and how many corruptions it covers, when corruptions were evaluated.
    pub npa: Option<(f32, usize)>,
}

/// The headline of a finished pipeline, and what it wrote.
pub struct FinalEvaluation {
    /// The distilled student's.
    pub student: Headline,
    /// The all-ReLU teacher's, measured the same way (PGD only).
    pub teacher: Headline,
    pub pgd_steps: usize,
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

/// What one model measured: each BN set's accuracies and each BN set's corruptions.
#[derive(Serialize, Deserialize)]
struct Measured {
    per_bn: Vec<Accuracy>,
    corruptions: Vec<NpaReport>,
}

impl Measured {
    /// The BN set named `name`, or the only one of a single-BN model.
    fn bn(&self, name: &str) -> Option<&Accuracy> {
        let p = &self.per_bn;
        p.iter()
            .find(|r| r.bn == name)
            .or_else(|| (p.len() == 1).then(|| &p[0]))
    }

    /// CA under BN_c, AdvA under BN_a (spec §7); a single-BN model reports its one BN for both.
    fn headline(&self, model: &Model) -> Headline {
        Headline {
            kept_relus: model.kept_relus(),
            total_relus: model.total_relus(),
            clean_acc: self.bn("clean").map_or(0.0, |r| r.clean_acc),
            pgd_acc: self.bn("adv").and_then(|r| r.pgd_acc).unwrap_or(0.0),
            npa: self
                .corruptions
                .first()
                .and_then(|r| r.npa.map(|n| (n, r.npa_corruptions))),
        }
    }

    /// The `metrics` object of a report.json.
    fn metrics(&self, pgd_steps: usize) -> serde_json::Value {
        serde_json::json!({
            "clean_acc": self.bn("clean").map(|r| r.clean_acc),
            "pgd_acc": self.bn("adv").and_then(|r| r.pgd_acc),
            "npa": self.corruptions.first().and_then(|r| r.npa),
            "pgd_steps": pgd_steps,
            "per_bn": &self.per_bn,
        })
    }
}

impl FinalSettings<'_> {
    /// The BN sets evaluated: the non-robust recipe trains BN_c only, so BN_a is never used
    /// and not reported.
    fn domains(&self) -> &'static [Domain] {
        match self.robust {
            true => &[Domain::Clean, Domain::Adv],
            false => &[Domain::Clean],
        }
    }
}

/// Clean accuracy, `plan`'s attacks and the corruptions of `a` on `model`, under each BN set
/// of `a`; `who` names the model in the progress bars.
fn measure(
    model: &Model,
    test: &ImageSet,
    plan: Option<&RobustnessPlan>,
    a: &FinalSettings<'_>,
    device: &Device,
    show: bool,
    who: &str,
) -> Result<Measured> {
    let eo = EvalOptions {
        batch: 200,
        pgd: None,
        seed: a.seed,
        keep_logits: false,
    };
    let mut per_bn: Vec<Accuracy> = Vec::new();
    for &d in a.domains() {
        let mut bar = Progress::new(show, test.len(), &format!("eval {who} BN_{}", bn_name(d)));
        let mut done = 0;
        let (mut acc, _) = evaluate(model, test, d, &eo, |n| {
            done += n;
            bar.update(done, "clean");
        });
        if let Some(plan) = plan {
            let mut done = 0;
            bar.set_position(0);
            plan.run(model, test, d, eo.batch, &mut acc, |n| {
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
            test,
            device,
            seed: a.seed,
            res: &res,
        };
        for &d in a.domains() {
            let r = evaluate_corruptions(model, &list, &Severity::ALL, &source, d, 200, |_, _| {})?;
            corruptions.push(r);
        }
    }
    Ok(Measured {
        per_bn,
        corruptions,
    })
}

/// Where a teacher's measurement is kept, beside its checkpoint.
const TEACHER_EVALUATION: &str = "evaluation.json";

/// The teacher measured as `a` asks (PGD alone of the attacks), from its cache in the
/// teacher's folder when that was made of the same checkpoint bytes and settings.
fn measure_teacher(
    a: &FinalSettings<'_>,
    device: &Device,
    show: bool,
) -> Result<(Model, Measured)> {
    let (model, data) = load_evaluated(&a.teacher, device)?;
    let bytes = std::fs::read(&a.teacher).map_err(|e| Error::io(&a.teacher, e))?;
    let plan = a
        .robustness
        .as_ref()
        .filter(|p| p.attacks.contains(&AttackKind::Pgd))
        .map(|p| RobustnessPlan {
            attacks: vec![AttackKind::Pgd],
            settings: p.settings.clone(),
            sweep: None,
            masking: false,
        });
    let key = serde_json::json!({
        "checkpoint": format!("{:016x}", fingerprint(&bytes)),
        "pgd": plan.as_ref().map(|p| format!("{:?}", p.settings)),
        "seed": a.seed, "corruptions": a.corruptions, "frost_dir": a.frost_dir,
        "domains": a.domains().iter().map(|&d| bn_name(d)).collect::<Vec<_>>(),
    });
    let cache = a.teacher.with_file_name(TEACHER_EVALUATION);
    if let Ok(text) = std::fs::read_to_string(&cache) {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if v.get("key") == Some(&key) {
            if let Some(m) = v
                .get("measured")
                .and_then(|m| Measured::deserialize(m).ok())
            {
                return Ok((model, m));
            }
        }
    }
    let test = data.load(Split::Test)?;
    let m = measure(&model, &test, plan.as_ref(), a, device, show, "teacher")?;
    write_json(&cache, &serde_json::json!({"key": key, "measured": &m}))?;
    Ok((model, m))
}

/// FNV-1a over `bytes`: the teacher cache's record of which checkpoint it measured.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// CA / AdvA under both BN sets and NPA, on the distilled student and on its teacher, into
/// `<out>/report.json` (with report.md and the charts beside it).
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
    let student = measure(
        &model,
        &test,
        a.robustness.as_ref(),
        a,
        device,
        show,
        "student",
    )?;
    let (teacher_model, teacher) = measure_teacher(a, device, show)?;
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
    let report = serde_json::json!({
        "stage": "pipeline",
        "method": a.method,
        "model": model.config.arch.name(),
        "dataset": data.kind.name(),
        "device": device.name(),
        "budget": a.budget,
        "total_relus": model.total_relus(),
        "kept_relus": model.kept_relus(),
        "metrics": student.metrics(steps),
        "corruptions": &student.corruptions,
        "teacher": {
            "total_relus": teacher_model.total_relus(),
            "kept_relus": teacher_model.kept_relus(),
            "metrics": teacher.metrics(steps),
            "corruptions": &teacher.corruptions,
            "pi_cost": estimate_model(&CostModel::DELPHI, &teacher_model),
            "evaluated": &a.teacher,
        },
        "relu_layers": relu_layers(&model),
        "pi_cost": cost,
        "train_secs": train_secs,
        "eval_secs": eval_secs,
        "stages": timings,
        "evaluated": best,
        "config": a.config,
    });
    let path = a.out.join("report.json");
    write_json(&path, &report)?;
    let charts = write_run(&Run::load(a.out)?)?;
    Ok(FinalEvaluation {
        student: student.headline(&model),
        teacher: teacher.headline(&teacher_model),
        pgd_steps: steps,
        report: path,
        charts,
        per_bn: student.per_bn,
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
