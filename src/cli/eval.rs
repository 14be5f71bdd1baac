//! `rlnet eval`: clean and PGD accuracy of a checkpoint under BN_c and/or BN_a.

use super::common::{show_progress, DataArgs, DeviceArgs};
use crate::checkpoint;
use crate::data::source::{DatasetKind, DatasetSpec};
use crate::data::Split;
use crate::error::{Error, Result};
use crate::eval::{evaluate, Accuracy, EvalOptions};
use crate::nn::Domain;
use crate::report::Progress;
use crate::robust::pgd::PgdConfig;
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
    /// PGD steps (eps 8/255, step 2/255, one random start); 0 skips the attack.
    #[arg(long, default_value_t = 20)]
    pgd_steps: usize,
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
    let pgd = (a.pgd_steps > 0).then(|| PgdConfig::linf(a.pgd_steps));
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
            pgd: pgd.as_ref(),
            seed: a.seed,
            keep_logits: a.dump_logits.is_some(),
        };
        let (acc, z) = evaluate(&model, &test, d, &eo, |n| {
            done += n;
            bar.update(done, "");
        });
        bar.finish();
        results.push(acc);
        logits.extend(z.unwrap_or_default());
    }
    if let Some(path) = &a.dump_logits {
        let k = model.config.num_classes;
        let shape: Vec<u64> = if domains.len() == 1 {
            vec![test.len() as u64, k as u64]
        } else {
            vec![domains.len() as u64, test.len() as u64, k as u64]
        };
        write_npy(path, &shape, &logits)?;
    }
    if a.json {
        let out = serde_json::json!({
            "checkpoint": a.checkpoint,
            "dataset": spec.kind.name(),
            "images": test.len(),
            "pgd_steps": a.pgd_steps,
            "kept_relus": model.kept_relus(),
            "total_relus": model.total_relus(),
            "results": results,
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
            match r.pgd_acc {
                Some(p) => println!(
                    "  BN_{:<5} clean {:6.2}%  PGD-{} {:6.2}%",
                    r.bn,
                    100.0 * r.clean_acc,
                    a.pgd_steps,
                    100.0 * p
                ),
                None => println!("  BN_{:<5} clean {:6.2}%", r.bn, 100.0 * r.clean_acc),
            }
        }
    }
    Ok(())
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
    crate::checkpoint::write_atomic(path, &buf)
}
