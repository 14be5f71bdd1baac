//! `rlnet eval`: clean and PGD accuracy of a checkpoint under BN_c and/or BN_a.

use super::common::{show_progress, DeviceArgs};
use super::outcome::{print_accuracy, warn_masking};
use crate::checkpoint;
use crate::corrupt::{Corruption, Resources, Severity};
use crate::data::source::{DatasetKind, DatasetSpec};
use crate::data::Split;
use crate::data::{tiny_imagenet, ImageSet};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::corrupt::{evaluate_corruptions, CorruptionSource, NpaReport};
use crate::eval::{evaluate, Accuracy, EvalOptions};
use crate::nn::Domain;
use crate::nn::Model;
use crate::recipe::{AttackArgs, DataArgs};
use crate::report::Progress;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BnChoice {
    Clean,
    Adv,
    Both,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// Dataset to evaluate on; default: the one the checkpoint was trained on.
    #[command(flatten)]
    data: DataArgs,
    #[arg(long)]
    checkpoint: PathBuf,
    /// PGD steps (step ε/4, i.e. 2/255 at ε = 8/255); 0 skips PGD.
    #[arg(long, default_value_t = 20)]
    pgd_steps: usize,
    #[command(flatten)]
    attacks: AttackArgs,
    /// Also write report.json, report.md and the charts (accuracy against ε) into this folder.
    #[arg(long)]
    report: Option<PathBuf>,
    /// BN set(s) to evaluate; the attack uses the BN under evaluation.
    #[arg(long, value_enum, default_value_t = BnChoice::Both)]
    bn: BnChoice,
    /// Write the clean test-set logits as .npy: [N, classes] for one BN, [2, N, classes]
    /// (BN_c then BN_a) for both.
    #[arg(long)]
    dump_logits: Option<PathBuf>,
    #[arg(long, default_value_t = 200)]
    batch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also report accuracy under natural corruptions and NPA: "standard" (the 15 of NPA),
    /// "all" (19) or a comma-separated list of names.
    #[arg(long)]
    corruptions: Option<String>,
    /// Read the corrupted test sets from this CIFAR-10-C / CIFAR-100-C folder instead of
    /// generating them on the fly (on the evaluation device).
    #[arg(long, requires = "corruptions")]
    cifar_c: Option<PathBuf>,
    /// Read the corrupted test sets from this Tiny-ImageNet-C folder
    /// (`<corruption>/<severity>/<wnid>/*.JPEG`); the classes come from --data-dir's wnids.txt.
    #[arg(long, requires = "corruptions", conflicts_with = "cifar_c")]
    tiny_c: Option<PathBuf>,
    /// Severities for --corruptions: 1-5, a comma-separated list, or "all".
    #[arg(long, default_value = "all", requires = "corruptions")]
    severity: String,
    /// Folder of the frost textures for on-the-fly frost; without it frost is skipped.
    #[arg(long, requires = "corruptions")]
    frost_dir: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[arg(long)]
    quiet: bool,
}

/// The dataset a checkpoint's stage recorded (teacher and later stages keep `config.data`).
fn checkpoint_dataset(state: &serde_json::Value) -> Option<DatasetSpec> {
    serde_json::from_value(state.get("config")?.get("data")?.clone()).ok()
}

pub fn run(a: EvalArgs) -> Result<()> {
    let device = a.device.choose(a.quiet || a.json)?.device;
    if a.batch == 0 {
        return Err(Error::Config("--batch must be at least 1".into()));
    }
    let plan = a.attacks.plan(a.pgd_steps, a.seed)?;
    let ckpt = checkpoint::load(&a.checkpoint)?;
    let mut model = ckpt.model()?;
    model.to_device(&device)?;
    let mut spec = match (a.data.dataset, checkpoint_dataset(&ckpt.meta.state)) {
        (None, Some(saved)) => saved,
        _ => a.data.spec(DatasetKind::Synthetic),
    };
    if a.data.data_dir.is_some() {
        spec.data_dir = a.data.data_dir.clone();
    }
    spec.test_limit = a.data.test_limit.or(spec.test_limit);
    let test = spec.load(Split::Test)?;
    if test.num_classes != model.config.num_classes {
        return Err(Error::Config(format!(
            "{} has {} classes but the checkpoint's model has {}",
            spec.kind.name(),
            test.num_classes,
            model.config.num_classes
        )));
    }
    let domains: &[Domain] = match a.bn {
        BnChoice::Clean => &[Domain::Clean],
        BnChoice::Adv => &[Domain::Adv],
        BnChoice::Both => &[Domain::Clean, Domain::Adv],
    };
    if let Some(p) = &plan {
        p.validate(model.config.num_classes)?;
    }
    let mut results: Vec<Accuracy> = Vec::new();
    let mut logits = Vec::new();
    for &d in domains {
        let mut bar = Progress::new(
            show_progress(a.quiet || a.json),
            test.len(),
            &format!("BN_{}", crate::eval::bn_name(d)),
        );
        let mut done = 0;
        let eo = EvalOptions {
            batch: a.batch,
            pgd: None,
            seed: a.seed,
            keep_logits: a.dump_logits.is_some(),
        };
        let (mut acc, z) = evaluate(&model, &test, d, &eo, |n| {
            done += n;
            bar.update(done, "clean");
        });
        if let Some(p) = &plan {
            let mut done = 0;
            bar.set_position(0);
            p.run(&model, &test, d, a.batch, &mut acc, |n| {
                done += n;
                bar.update(done, "attacks");
            });
        }
        bar.finish();
        if !a.json {
            warn_masking(&acc);
        }
        results.push(acc);
        logits.extend(z.unwrap_or_default());
    }
    let npa = match &a.corruptions {
        Some(list) => corruption_reports(
            &a,
            spec.data_dir.as_deref(),
            list,
            &model,
            &test,
            &device,
            domains,
        )?,
        None => Vec::new(),
    };
    if let Some(path) = &a.dump_logits {
        let k = model.config.num_classes;
        let shape: Vec<u64> = if domains.len() == 1 {
            vec![test.len() as u64, k as u64]
        } else {
            vec![domains.len() as u64, test.len() as u64, k as u64]
        };
        write_npy(path, &shape, &logits)?;
    }
    if let Some(dir) = &a.report {
        write_report(dir, &a, &spec, &model, &device, &results, &npa)?;
    }
    if a.json {
        let out = serde_json::json!({
            "checkpoint": a.checkpoint,
            "dataset": spec.kind.name(),
            "images": test.len(),
            "pgd_steps": a.pgd_steps,
            "attack_settings": plan.as_ref().map(|p| &p.settings),
            "kept_relus": model.kept_relus(),
            "total_relus": model.total_relus(),
            "results": results,
            "corruptions": npa,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::Config(e.to_string()))?
        );
    } else {
        println!(
            "{} on {} ({} test images), ReLUs kept {} of {}",
            a.checkpoint.display(),
            spec.kind.name(),
            test.len(),
            model.kept_relus(),
            model.total_relus()
        );
        for r in &results {
            print_accuracy(r);
        }
        for r in &npa {
            print_npa(r);
        }
    }
    Ok(())
}

/// report.json (readable by `rlnet report`), report.md and the charts of this evaluation.
fn write_report(
    dir: &std::path::Path,
    a: &EvalArgs,
    spec: &DatasetSpec,
    model: &Model,
    device: &Device,
    results: &[Accuracy],
    npa: &[NpaReport],
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let report = serde_json::json!({
        "stage": "eval",
        "model": model.config.arch.name(),
        "dataset": spec.kind.name(),
        "device": device.name(),
        "total_relus": model.total_relus(),
        "kept_relus": model.kept_relus(),
        "metrics": {"per_bn": results},
        "corruptions": npa,
        "relu_layers": crate::report::run::relu_layers(model),
        "evaluated": a.checkpoint,
    });
    let path = dir.join("report.json");
    crate::report::write_json(&path, &report)?;
    let charts = crate::report::folders::write_run(&crate::report::run::Run::load(dir)?)?;
    if !a.json {
        println!("wrote {}", path.display());
        for c in charts {
            println!("wrote {}", c.display());
        }
    }
    Ok(())
}

/// Accuracy per corruption and severity, and NPA, under each BN set of `domains`.
#[allow(clippy::too_many_arguments)]
fn corruption_reports(
    a: &EvalArgs,
    data_dir: Option<&std::path::Path>,
    list: &str,
    model: &Model,
    test: &ImageSet,
    device: &Device,
    domains: &[Domain],
) -> Result<Vec<NpaReport>> {
    let list = Corruption::parse_list(list)?;
    let severities = Severity::parse_list(&a.severity)?;
    let res = match &a.frost_dir {
        Some(d) => Resources::with_frost_dir(d)?,
        None => Resources::default(),
    };
    let classes = match (&a.tiny_c, data_dir) {
        (Some(_), Some(d)) => tiny_imagenet::read_classes(d)?,
        (Some(_), None) => {
            return Err(Error::Config(
                "--tiny-c needs the Tiny-ImageNet folder (--data-dir) for its class list".into(),
            ))
        }
        (None, _) => Vec::new(),
    };
    let source = match (&a.cifar_c, &a.tiny_c) {
        (Some(dir), _) => CorruptionSource::CifarC {
            dir,
            num_classes: model.config.num_classes,
        },
        (None, Some(dir)) => CorruptionSource::TinyC {
            dir,
            classes: &classes,
        },
        (None, None) => CorruptionSource::OnTheFly {
            test,
            device,
            seed: a.seed,
            res: &res,
        },
    };
    let mut reports = Vec::new();
    for &d in domains {
        let mut bar = Progress::new(
            show_progress(a.quiet || a.json),
            list.len() * severities.len(),
            &format!("corruptions BN_{}", crate::eval::bn_name(d)),
        );
        let mut done = 0;
        let r = evaluate_corruptions(model, &list, &severities, &source, d, a.batch, |c, s| {
            done += 1;
            bar.update(done, &format!("{} s{}", c.name(), s.get()));
        })?;
        bar.finish();
        for (name, why) in &r.skipped {
            if !a.json {
                eprintln!("{name} skipped: {why}");
            }
        }
        reports.push(r);
    }
    Ok(reports)
}

/// The per-corruption table (one row per corruption, one column per severity) and NPA.
fn print_npa(r: &NpaReport) {
    println!("  corruptions, BN_{}:", r.bn);
    if let Some(first) = r.corruptions.first() {
        let heads: String = first
            .by_severity
            .iter()
            .map(|(s, _)| format!("{:>8}", format!("s{s}")))
            .collect();
        println!("    {:<18}{heads}{:>8}", "corruption", "mean");
    }
    for c in &r.corruptions {
        let cells: String = c
            .by_severity
            .iter()
            .map(|(_, acc)| format!("{:>7.2}%", 100.0 * acc))
            .collect();
        println!("    {:<18}{cells}{:>7.2}%", c.corruption, 100.0 * c.mean);
    }
    match r.npa {
        Some(npa) => println!(
            "    NPA (mean over {} standard corruption{}) {:.2}%",
            r.npa_corruptions,
            if r.npa_corruptions == 1 { "" } else { "s" },
            100.0 * npa
        ),
        None => println!("    NPA: none of the 15 standard corruptions was evaluated"),
    }
}

/// Writes an f32 .npy atomically.
pub fn write_npy(path: &std::path::Path, shape: &[u64], data: &[f32]) -> Result<()> {
    use npyz::WriterBuilder;
    let mut buf = Vec::new();
    {
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut buf)
            .begin_nd()
            .map_err(|e| Error::io(path, e))?;
        w.extend(data.iter().copied())
            .map_err(|e| Error::io(path, e))?;
        w.finish().map_err(|e| Error::io(path, e))?;
    }
    crate::files::write_atomic(path, &buf)
}
