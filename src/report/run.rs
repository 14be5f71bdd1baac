//! The fields `rlnet report` reads from a run folder, and the headline numbers derived from
//! them (CA, NPA, AdvA, PI cost).
//!
//! A run folder holds a `report.json` written by a stage (`rlnet teacher`, `search`,
//! `distill`, `pipeline`). Keys read (anything else in the file is ignored):
//!
//! | key | type | required | meaning |
//! |---|---|---|---|
//! | `stage` | string | yes | "teacher", "search", "distill", ... |
//! | `model`, `dataset` | string | yes | architecture and dataset names |
//! | `total_relus`, `kept_relus` | integer | yes | ReLU positions, and those the mask keeps |
//! | `device` | string | no | where the stage ran |
//! | `method` | string | no | label in comparisons (e.g. "rlnet", "snl"); default: `stage` |
//! | `budget` | integer | no | the stage-2 ReLU budget the mask was searched for |
//! | `metrics.per_bn` | list | no | `{bn, images, clean_acc, pgd_acc, pgd_steps}` per BN set ("clean" = BN_c, "adv" = BN_a), fractions in [0,1]; with `--attack` also `attacks: [{attack, eps, acc, secs}]`, `eps_sweep: [{eps, acc}]` and `masking: {checks: [{check, passed, detail}], suspected, verdict}` |
//! | `corruptions` | list | no | `NpaReport`s as `rlnet eval --corruptions .. --json` writes them: `{bn, corruptions: [{corruption, by_severity, mean}], npa, npa_corruptions, mean_all, skipped}` |
//! | `relu_layers` | list | no | `{name, relus, kept}` per ReLU layer, forward order (as `rlnet info --json`) |
//! | `train_secs` | number | no | wall time of the stage, seconds |
//! | `images_per_sec` | number | no | training throughput |
//! | `stages` | list | no | `{stage, secs, images_per_sec}` per stage of a pipeline run |
//! | `teacher` | object | no | the all-ReLU teacher measured beside the student (a pipeline run): `{total_relus, kept_relus, metrics: {per_bn}, corruptions}` as above |
//! | `eval_secs` | number | no | wall time of the final evaluation, seconds |
//! | `history` | list | no | a stage's epochs: `{epoch, loss, clean_train_acc, adv_train_acc, val_clean_acc?, val: [per_bn entries]}` (the training-curve chart) |
//!
//! When `report.json` has no `corruptions` and the folder holds an `eval.json` (the output
//! of `rlnet eval --corruptions .. --json > eval.json`), its `corruptions` are used. When it
//! holds an `attacks.json` (`rlnet eval --attack .. --json > attacks.json`), its attacks join
//! those of the BN sets of the same name (labelled "on N images" when N differs).
//!
//! Headline numbers (spec §7): CA = clean accuracy under BN_c, AdvA = PGD accuracy under BN_a,
//! NPA = mean accuracy over the 15 standard corruptions under BN_c. A report with a single BN
//! set uses it for all three. The PI cost is the Delphi estimate of the kept ReLUs
//! ([`super::pi_cost`]), computed here from `kept_relus` so every report has it.

use super::pi_cost::{Cost, CostModel};
use crate::error::{Error, Result};
use crate::eval::attacks::AttackAccuracy;
use crate::eval::corrupt::NpaReport;
use crate::eval::masking::{EpsPoint, MaskingReport};
use crate::nn::{kept_count, Model};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize)]
pub struct BnAccuracy {
    pub bn: String,
    /// Test images evaluated.
    #[serde(default)]
    pub images: Option<usize>,
    pub clean_acc: f32,
    #[serde(default)]
    pub pgd_acc: Option<f32>,
    #[serde(default)]
    pub pgd_steps: Option<usize>,
    #[serde(default)]
    pub attacks: Vec<AttackAccuracy>,
    #[serde(default)]
    pub eps_sweep: Vec<EpsPoint>,
    #[serde(default)]
    pub masking: Option<MaskingReport>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Metrics {
    #[serde(default)]
    pub per_bn: Vec<BnAccuracy>,
}

/// One ReLU layer's count and kept count, as reports write them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRelus {
    pub name: String,
    pub relus: usize,
    pub kept: usize,
}

/// The `relu_layers` a stage writes into its report.json.
pub fn relu_layers(model: &Model) -> Vec<LayerRelus> {
    model
        .relu_layers
        .iter()
        .map(|l| LayerRelus {
            name: l.name.clone(),
            relus: l.count(),
            kept: kept_count(&model.mask(l)),
        })
        .collect()
}

#[derive(Clone, Debug, Deserialize)]
pub struct StageTime {
    pub stage: String,
    pub secs: f64,
    #[serde(default)]
    pub images_per_sec: Option<f32>,
}

/// The part of a report.json the reports read (see the module doc for the keys).
#[derive(Clone, Debug, Deserialize)]
pub struct RunReport {
    pub stage: String,
    pub model: String,
    pub dataset: String,
    pub total_relus: usize,
    pub kept_relus: usize,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub budget: Option<usize>,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub corruptions: Vec<NpaReport>,
    #[serde(default)]
    pub relu_layers: Vec<LayerRelus>,
    #[serde(default)]
    pub train_secs: Option<f64>,
    #[serde(default)]
    pub images_per_sec: Option<f32>,
    #[serde(default)]
    pub stages: Vec<StageTime>,
    /// A stage's per-epoch log (training curves).
    #[serde(default)]
    pub history: Vec<EpochLog>,
    /// The teacher measured beside the student (pipeline runs).
    #[serde(default)]
    pub teacher: Option<Measurement>,
    #[serde(default)]
    pub eval_secs: Option<f64>,
}

/// A model's ReLUs and measured accuracies: the headline numbers' inputs.
#[derive(Clone, Debug, Deserialize)]
pub struct Measurement {
    pub total_relus: usize,
    pub kept_relus: usize,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub corruptions: Vec<NpaReport>,
}

/// One epoch of a stage's `history`: training loss and accuracies, and the validation run
/// that epoch (the students' BN_c clean accuracy every epoch, full validation when due).
#[derive(Clone, Debug, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f32,
    pub clean_train_acc: f32,
    pub adv_train_acc: f32,
    #[serde(default)]
    pub val_clean_acc: Option<f32>,
    #[serde(default)]
    pub val: Vec<BnAccuracy>,
}

impl EpochLog {
    /// Its validation accuracies as chart series: BN_x clean and BN_x PGD for each BN set
    /// validated, else the students' BN_c clean accuracy.
    pub fn validation(&self) -> Vec<(String, f32)> {
        let mut out = Vec::new();
        for a in &self.val {
            out.push((format!("val BN_{} clean", a.bn), a.clean_acc));
            if let Some(p) = a.pgd_acc {
                out.push((format!("val BN_{} PGD", a.bn), p));
            }
        }
        if out.is_empty() {
            if let Some(v) = self.val_clean_acc {
                out.push(("val BN_clean clean".into(), v));
            }
        }
        out
    }
}

/// The `corruptions` and per-BN `results` of an `rlnet eval --json` output.
#[derive(Deserialize)]
struct EvalJson {
    #[serde(default)]
    corruptions: Vec<NpaReport>,
    #[serde(default)]
    results: Vec<BnAccuracy>,
}

/// The attacks of `extra` (an `attacks.json`) added to the BN sets of `per_bn` with the same
/// name; an attack on another number of images than the run's says so in its label.
fn merge_attacks(per_bn: &mut [BnAccuracy], extra: Vec<BnAccuracy>) {
    for e in extra {
        let Some(b) = per_bn.iter_mut().find(|b| b.bn == e.bn) else {
            continue;
        };
        let subset = match (e.images, b.images) {
            (Some(n), Some(m)) if n != m => format!(" on {n} images"),
            _ => String::new(),
        };
        for mut a in e.attacks {
            a.attack.push_str(&subset);
            if !b.attacks.iter().any(|x| x.attack == a.attack) {
                b.attacks.push(a);
            }
        }
    }
}

/// An `rlnet eval --attack .. --json` output in a run folder: its attacks join the report's.
pub const ATTACKS_JSON: &str = "attacks.json";

/// A run folder and its report.
#[derive(Clone, Debug)]
pub struct Run {
    pub dir: PathBuf,
    pub report: RunReport,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Config(format!(
            "{} is not a run report this version reads: {e} (expected the keys listed in \
             `rlnet report --help`)",
            path.display()
        ))
    })
}

impl Run {
    /// Reads `dir/report.json` (and `dir/eval.json` for corruptions it lacks).
    pub fn load(dir: &Path) -> Result<Run> {
        let path = dir.join("report.json");
        if !path.is_file() {
            return Err(Error::Config(format!(
                "{} not found: a run folder holds the report.json its stage wrote",
                path.display()
            )));
        }
        let mut report: RunReport = read_json(&path)?;
        let eval = dir.join("eval.json");
        if report.corruptions.is_empty() && eval.is_file() {
            report.corruptions = read_json::<EvalJson>(&eval)?.corruptions;
        }
        let attacks = dir.join(ATTACKS_JSON);
        if attacks.is_file() {
            merge_attacks(
                &mut report.metrics.per_bn,
                read_json::<EvalJson>(&attacks)?.results,
            );
        }
        if report.kept_relus > report.total_relus {
            return Err(Error::Config(format!(
                "{}: kept_relus {} exceeds total_relus {}",
                path.display(),
                report.kept_relus,
                report.total_relus
            )));
        }
        Ok(Run {
            dir: dir.to_path_buf(),
            report,
        })
    }

    /// The folder's name, used as the run's name in comparisons.
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    /// The label of the run's points in comparison charts: method, and budget when set.
    pub fn label(&self) -> String {
        let r = &self.report;
        let method = r.method.clone().unwrap_or_else(|| r.stage.clone());
        match r.budget {
            Some(b) => format!("{method} {}", compact_count(b)),
            None => method,
        }
    }
}

/// The BN set named `bn`, or the only one when the model has a single BN set.
fn bn<'a>(per_bn: &'a [BnAccuracy], bn: &str) -> Option<&'a BnAccuracy> {
    per_bn
        .iter()
        .find(|a| a.bn == bn)
        .or_else(|| (per_bn.len() == 1).then(|| &per_bn[0]))
}

/// The headline numbers of a model's measurement (module doc).
pub trait Headlines {
    fn per_bn(&self) -> &[BnAccuracy];
    fn npa_reports(&self) -> &[NpaReport];
    fn kept(&self) -> usize;

    /// Clean accuracy under BN_c, in [0,1].
    fn ca(&self) -> Option<f32> {
        bn(self.per_bn(), "clean").map(|a| a.clean_acc)
    }

    /// PGD accuracy under BN_a, in [0,1], and the attack's steps.
    fn adva(&self) -> Option<(f32, Option<usize>)> {
        bn(self.per_bn(), "adv").and_then(|a| a.pgd_acc.map(|p| (p, a.pgd_steps)))
    }

    /// The accuracy of the attack labelled `label` (or `label` and a note, "AA on 500
    /// images") under the BN set AdvA is read from, in [0,1].
    fn attack(&self, label: &str) -> Option<f32> {
        let named =
            |a: &&AttackAccuracy| a.attack == label || a.attack.starts_with(&format!("{label} "));
        bn(self.per_bn(), "adv").and_then(|b| b.attacks.iter().find(named).map(|a| a.acc))
    }

    /// NPA under BN_c (or the only BN set evaluated), in [0,1].
    fn npa(&self) -> Option<f32> {
        let c = self.npa_reports();
        c.iter()
            .find(|r| r.bn == "clean")
            .or_else(|| (c.len() == 1).then(|| &c[0]))
            .and_then(|r| r.npa)
    }

    /// Delphi PI cost of the kept ReLUs, per image.
    fn pi_cost(&self) -> Cost {
        CostModel::DELPHI.cost(self.kept())
    }
}

/// Both a run's report and its teacher's measurement keep the inputs under the same names.
macro_rules! headlines_from_fields {
    ($($t:ty),*) => {$(
        impl Headlines for $t {
            fn per_bn(&self) -> &[BnAccuracy] {
                &self.metrics.per_bn
            }
            fn npa_reports(&self) -> &[NpaReport] {
                &self.corruptions
            }
            fn kept(&self) -> usize {
                self.kept_relus
            }
        }
    )*};
}
headlines_from_fields!(RunReport, Measurement);

/// 557056 → "557K", 1500000 → "1.5M", 900 → "900".
pub fn compact_count(n: usize) -> String {
    let trim = |v: f64, suffix: &str| {
        let s = format!("{v:.1}");
        let s = s.strip_suffix(".0").unwrap_or(&s).to_string();
        format!("{s}{suffix}")
    };
    if n >= 1_000_000 {
        trim(n as f64 / 1e6, "M")
    } else if n >= 10_000 {
        format!("{}K", (n as f64 / 1e3).round() as usize)
    } else if n >= 1_000 {
        trim(n as f64 / 1e3, "K")
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_counts() {
        assert_eq!(compact_count(557_056), "557K");
        assert_eq!(compact_count(1_500_000), "1.5M");
        assert_eq!(compact_count(2_000_000), "2M");
        assert_eq!(compact_count(1_234), "1.2K");
        assert_eq!(compact_count(999), "999");
    }

    #[test]
    fn single_bn_serves_all_headlines_and_missing_fields_default() {
        let r: RunReport = serde_json::from_str(
            r#"{"stage":"distill","model":"resnet18","dataset":"cifar10",
                "total_relus":100,"kept_relus":10,"unknown":1,
                "metrics":{"per_bn":[{"bn":"student","clean_acc":0.5,"pgd_acc":0.25,"pgd_steps":10}]}}"#,
        )
        .unwrap();
        assert_eq!(r.ca(), Some(0.5));
        assert_eq!(r.adva(), Some((0.25, Some(10))));
        assert_eq!(r.npa(), None);
        assert!(r.relu_layers.is_empty() && r.budget.is_none());
    }
}
