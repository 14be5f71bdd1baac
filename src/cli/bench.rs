//! `rlnet bench`: a short run of the hot-path benchmark set (the same items as
//! `cargo bench --bench hot_path`), printed as a table with each item's fraction of its floor,
//! optionally beside PyTorch running the same items on the same machine.

use super::common::DeviceArgs;
use crate::bench::peaks::Peaks;
use crate::bench::report::{Report, Row};
use crate::bench::timing::{measure, Budget};
use crate::bench::torch::{find_script, run_peer, PeerConfig, Variant};
use crate::bench::work::{Bench, Prepared};
use crate::bench::{items, Selection, BATCH};
use crate::corrupt::Resources;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::Arch;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file (written whole, under a temporary name first).
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Only list the items that would run.
    #[arg(long)]
    list: bool,
    /// Networks whose layer shapes the convolution and BN items cover.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Arch::ResNet18, Arch::Wrn22_8])]
    models: Vec<Arch>,
    /// Batch of every item (the stage-1 step splits it into clean and attacked halves).
    #[arg(long, default_value_t = BATCH)]
    batch: usize,
    /// Network of the whole stage-1 step item.
    #[arg(long, value_enum, default_value_t = Arch::ResNet18)]
    step_model: Arch,
    /// Width multiplier of the stage-1 step's network.
    #[arg(long, default_value_t = 1.0)]
    step_width: f32,
    /// Leave the whole stage-1 step out.
    #[arg(long)]
    no_step: bool,
    /// Keep only items whose name contains one of these (comma-separated), e.g. conv/resnet18,bn_relu.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Untimed runs of each item before timing.
    #[arg(long, default_value_t = Budget::QUICK.warmup)]
    warmup: usize,
    /// Timed samples per item, at least.
    #[arg(long, default_value_t = Budget::QUICK.min_samples)]
    min_samples: usize,
    /// Keep sampling an item until this many seconds were timed.
    #[arg(long, default_value_t = Budget::QUICK.min_time_s)]
    min_time: f64,
    /// Folder of the frost textures (frost is skipped without it).
    #[arg(long)]
    frost_dir: Option<PathBuf>,
    /// Copy bandwidth of the floor in GB/s, instead of the device's (H200: 4300; CPU: measured).
    #[arg(long)]
    peak_bandwidth: Option<f64>,
    /// Matmul rate of the floor in TFLOP/s, instead of the device's (H200: 790 bf16; CPU: measured).
    #[arg(long)]
    peak_tflops: Option<f64>,
    /// Also run tools/torch_peer.py on the same items and report PyTorch's times and the ratios.
    #[arg(long)]
    compare_torch: bool,
    /// Python interpreter with PyTorch, for --compare-torch.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Path of tools/torch_peer.py (default: found from the working directory or the binary).
    #[arg(long)]
    torch_peer: Option<PathBuf>,
    /// PyTorch variants, {eager|compile}-{f32|bf16}[-cl] (default: GPU eager-f32,
    /// eager-bf16-cl, compile-f32, compile-bf16-cl; CPU eager-f32, compile-f32).
    #[arg(long, value_delimiter = ',')]
    torch_variants: Vec<String>,
}

fn positive(name: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::Config(format!(
            "{name} must be a positive number, got {v}"
        )))
    }
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.batch < 2 {
        return Err(Error::Config(format!(
            "--batch must be at least 2 (dual BN and the stage-1 step split it in halves), got {}",
            a.batch
        )));
    }
    positive("--step-width", a.step_width as f64)?;
    if !(0.0..=3600.0).contains(&a.min_time) {
        return Err(Error::Config(format!(
            "--min-time must be between 0 and 3600 seconds, got {}",
            a.min_time
        )));
    }
    let variants = a
        .torch_variants
        .iter()
        .map(|v| Variant::parse(v))
        .collect::<Result<Vec<_>>>()?;
    let script = a
        .compare_torch
        .then(|| find_script(a.torch_peer.as_deref()))
        .transpose()?;
    let choice = a.device.choose(a.json)?;
    let device = choice.device;
    if device.gpu().is_some_and(|d| d.is_emulated()) {
        return Err(Error::Config(
            "rlnet bench times the CPU or a real GPU: the CUDA emulator's times say nothing about \
             a GPU (use --device cuda on a GPU machine, or --device cpu)"
                .into(),
        ));
    }
    let sel = Selection {
        models: a.models.clone(),
        batch: a.batch,
        step: (!a.no_step).then_some((a.step_model, a.step_width)),
        tensor_cores: device.gpu().is_some(),
        filters: a.only.clone(),
    };
    let items = items(&sel)?;
    if items.is_empty() {
        return Err(Error::Config(format!(
            "--only {:?} matches no item (try --list without --only)",
            a.only
        )));
    }
    if a.list {
        for i in &items {
            println!("{}", i.name);
        }
        return Ok(());
    }
    let bandwidth = a
        .peak_bandwidth
        .map(|b| positive("--peak-bandwidth", b).map(|b| b * 1e9))
        .transpose()?;
    let flops = a
        .peak_tflops
        .map(|f| positive("--peak-tflops", f).map(|f| f * 1e12))
        .transpose()?;
    let peaks = match (Peaks::of(&device), bandwidth, flops) {
        (Some(p), _, _) => p.with_overrides(bandwidth, flops),
        (None, Some(bandwidth), Some(flops)) => Peaks {
            bandwidth,
            flops,
            source: format!("{}: figures given on the command line", choice.reason),
        },
        (None, _, _) => {
            return Err(Error::Config(format!(
            "no floor is known for this GPU ({}): pass --peak-bandwidth (GB/s) and --peak-tflops",
            choice.reason
        )))
        }
    };
    let resources = match &a.frost_dir {
        Some(d) => Resources::with_frost_dir(d)?,
        None => Resources::default(),
    };
    let bench = Bench::new(device.clone(), a.batch, resources)?;
    let budget = Budget {
        warmup: a.warmup,
        min_samples: a.min_samples.max(1),
        max_samples: Budget::QUICK.max_samples.max(a.min_samples),
        min_time_s: a.min_time,
    };

    let mut rows = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let m = match bench.prepare(item)? {
            Prepared::Skip(why) => Err(why),
            Prepared::Run(mut r) => Ok(measure(&device, &mut r, budget)?),
        };
        let row = Row::new(item, &peaks, m);
        if !a.json {
            match row.ms() {
                Some(ms) => eprintln!("[{}/{}] {}: {ms:.4} ms", k + 1, items.len(), item.name),
                None => eprintln!("[{}/{}] {}: skipped", k + 1, items.len(), item.name),
            }
        }
        rows.push(row);
    }
    let mut report = Report {
        rlnet_version: env!("CARGO_PKG_VERSION"),
        device: choice.reason.clone(),
        batch: a.batch,
        peaks,
        torch_version: None,
        torch_device: None,
        rows,
    };

    if let Some(script) = script {
        let gpu = matches!(device, Device::Cuda(_));
        let variants = if variants.is_empty() {
            let names: &[&str] = if gpu {
                &[
                    "eager-f32",
                    "eager-bf16-cl",
                    "compile-f32",
                    "compile-bf16-cl",
                ]
            } else {
                &["eager-f32", "compile-f32"]
            };
            names
                .iter()
                .map(|v| Variant::parse(v))
                .collect::<Result<_>>()?
        } else {
            variants
        };
        let cfg = PeerConfig {
            python: a.python.clone(),
            script,
            device: if gpu { "cuda" } else { "cpu" },
            variants,
            threads: (!gpu).then(rayon::current_num_threads),
            warmup: a.warmup.max(1),
            reps: a.min_samples.max(1),
            min_time_s: a.min_time,
        };
        let runnable: Vec<_> = items
            .iter()
            .zip(&report.rows)
            .filter(|(_, r)| r.measurement.is_some())
            .map(|(i, _)| i.clone())
            .collect();
        report.add_torch(run_peer(&cfg, &runnable)?);
    }

    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| Error::Data(format!("bench report as JSON: {e}")))?;
    if let Some(path) = &a.json_out {
        crate::files::write_atomic(path, text.as_bytes())?;
    }
    if a.json {
        println!("{text}");
    } else {
        print!("{}", report.markdown());
    }
    Ok(())
}
