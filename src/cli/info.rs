//! `rlnet info`: a model's ReLU layers, ReLU counts and kept counts, and the private-inference
//! cost estimate of the kept ReLUs under the Delphi cost model (baselines.md §6, see
//! [`crate::report::pi_cost`]).

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::nn::{Arch, BnMode, Model, ModelConfig};
use crate::recipe::ModelArgs;
use crate::report::pi_cost::{estimate_model, CostModel};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Input resolution: 32 (CIFAR) or 64 (Tiny-ImageNet).
    #[arg(long, default_value_t = 32)]
    input_size: usize,
    #[arg(long, default_value_t = 10)]
    num_classes: usize,
    /// Read the model and its masks from a checkpoint instead.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: InfoArgs) -> Result<()> {
    let model = match &a.checkpoint {
        Some(p) => checkpoint::load(p)?.model()?,
        None => {
            let config = ModelConfig {
                input_size: a.input_size,
                num_classes: a.num_classes,
                bn: a.model.bn.unwrap_or(BnMode::Dual),
                shared_shortcut_bn: a.model.shared_shortcut_bn,
                ..ModelConfig::new(
                    a.model.model.unwrap_or(Arch::ResNet18),
                    a.model.width_mult.unwrap_or(1.0),
                )
            };
            Model::new(config, 0)?
        }
    };
    let pi = estimate_model(&CostModel::DELPHI, &model);
    let layers: Vec<serde_json::Value> = model
        .relu_layers
        .iter()
        .zip(&pi.layers)
        .map(|(l, c)| {
            serde_json::json!({
                "name": l.name,
                "shape": l.shape,
                "relus": l.count(),
                "kept": c.kept,
            })
        })
        .collect();
    if a.json {
        let out = serde_json::json!({
            "model": model.config.arch.name(),
            "input_size": model.config.input_size,
            "width_mult": model.config.width_mult,
            "params": model.num_params(),
            "relu_layers": layers,
            "total_relus": model.total_relus(),
            "kept_relus": pi.total.kept,
            "pi_cost": pi,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::Config(e.to_string()))?
        );
        return Ok(());
    }
    println!(
        "{} at {} px (width x{}), {} parameters",
        model.config.arch.name(),
        model.config.input_size,
        model.config.width_mult,
        model.num_params()
    );
    println!(
        "{:>3}  {:<24} {:>16} {:>10} {:>10} {:>11} {:>11} {:>10}",
        "#", "ReLU layer", "shape (C,H,W)", "ReLUs", "kept", "online ms", "offline ms", "comm MB"
    );
    for (i, (l, c)) in model.relu_layers.iter().zip(&pi.layers).enumerate() {
        let shape = format!("{}x{}x{}", l.shape[0], l.shape[1], l.shape[2]);
        println!(
            "{i:>3}  {:<24} {shape:>16} {:>10} {:>10} {:>11.1} {:>11.1} {:>10.1}",
            l.name, c.relus, c.kept, c.cost.online_ms, c.cost.offline_ms, c.cost.comm_mb
        );
    }
    let t = &pi.total;
    println!(
        "     {:<24} {:>16} {:>10} {:>10} {:>11.1} {:>11.1} {:>10.1}",
        "total", "", t.relus, t.kept, t.cost.online_ms, t.cost.offline_ms, t.cost.comm_mb
    );
    let m = &pi.model;
    println!(
        "PI cost per image, {} model (baselines.md §6): {} us online, {} us offline, {} B of \
         garbled circuit per kept ReLU; ReLU part only, not included: {}.",
        m.protocol,
        m.relu_online_us,
        m.relu_offline_us,
        m.relu_bytes,
        pi.not_included.join("; ")
    );
    Ok(())
}
