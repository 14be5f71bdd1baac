//! `rlnet info`: a model's ReLU layers, ReLU counts and kept counts.

use super::common::ModelArgs;
use crate::checkpoint;
use crate::error::{Error, Result};
use crate::nn::{kept_count, Arch, BnMode, Model, ModelConfig};
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
    let layers: Vec<serde_json::Value> = model
        .relu_layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "name": l.name,
                "shape": l.shape,
                "relus": l.count(),
                "kept": kept_count(&model.mask(l)),
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
            "kept_relus": model.kept_relus(),
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
        "{:>3}  {:<24} {:>16} {:>10} {:>10}",
        "#", "ReLU layer", "shape (C,H,W)", "ReLUs", "kept"
    );
    for (i, l) in model.relu_layers.iter().enumerate() {
        let shape = format!("{}x{}x{}", l.shape[0], l.shape[1], l.shape[2]);
        println!(
            "{i:>3}  {:<24} {shape:>16} {:>10} {:>10}",
            l.name,
            l.count(),
            kept_count(&model.mask(l))
        );
    }
    println!(
        "     {:<24} {:>16} {:>10} {:>10}",
        "total",
        "",
        model.total_relus(),
        model.kept_relus()
    );
    Ok(())
}
