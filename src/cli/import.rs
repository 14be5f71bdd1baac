//! `rlnet import`: a PyTorch checkpoint of the RLNet or SNL reference code as an rlnet
//! checkpoint (`crate::pytorch`).

use crate::checkpoint::{self, CheckpointMeta, FORMAT_VERSION};
use crate::data::source::DatasetKind;
use crate::error::{Error, Result};
use crate::nn::{Arch, BnMode};
use crate::pytorch::{self, reference, reference::Layout};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The .pth file: a state dict, or a dict holding one (the reference's `model` or
    /// `state_dict`, with `mask_epoch` beside it for an RLNet student); zip or legacy format.
    pth: PathBuf,
    /// The rlnet checkpoint to write (safetensors).
    #[arg(long)]
    out: PathBuf,
    /// The dataset the model was trained on: its normalisation (which the reference applies
    /// in its data pipeline and rlnet inside the model), and the input size of a model
    /// without masks.
    #[arg(long, value_enum, default_value_t = DatasetKind::Cifar10)]
    dataset: DatasetKind,
    /// The architecture the file must hold (read from its tensors; this only checks it).
    #[arg(long, value_enum)]
    model: Option<Arch>,
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: ImportArgs) -> Result<()> {
    let what = a.pth.display().to_string();
    let saved = pytorch::read(&a.pth)?;
    let (model, layout) = reference::import(&saved, a.dataset, &what)?;
    let cfg = &model.config;
    if let Some(arch) = a.model.filter(|&m| m != cfg.arch) {
        return Err(Error::Config(format!(
            "--model {}: {what} holds a {}",
            arch.name(),
            cfg.arch.name()
        )));
    }
    // A model with every ReLU is a teacher (`search --teacher`); a masked one a student
    // (`distill --student`). Both evaluate, report and export alike.
    let stage = match layout {
        Layout::RlnetTeacher => "teacher",
        Layout::RlnetStudent | Layout::Snl => "search",
    };
    let meta = CheckpointMeta {
        format_version: FORMAT_VERSION,
        stage: stage.into(),
        model: cfg.clone(),
        state: serde_json::json!({
            "imported": {
                "from": a.pth.file_name().map(|n| n.to_string_lossy().into_owned()),
                "layout": layout.name(),
                "tensors": saved.state_dict.len(),
                "masks_beside": saved.masks.as_ref().map(Vec::len),
            }
        }),
    };
    checkpoint::save(&a.out, &model, None, &meta)?;
    if !a.quiet {
        let bn = match (
            cfg.bn,
            saved.state_dict.iter().any(|(n, _)| n == "bn1.weight"),
        ) {
            (_, true) => "one BN per layer, copied into BN_c and BN_a",
            (BnMode::Dual, _) => "dual BN",
            (BnMode::Triple, _) => "triple BN",
        };
        println!(
            "imported {what}: {} {} (width x{}, {bn}), {} classes, {} px input, {} of {} ReLUs \
             kept\nwrote {} (stage '{stage}': eval, info, export and {} take it)",
            layout.name(),
            cfg.arch.name(),
            cfg.width_mult,
            cfg.num_classes,
            cfg.input_size,
            model.kept_relus(),
            model.total_relus(),
            a.out.display(),
            match stage {
                "teacher" => "search --teacher",
                _ => "distill --student",
            }
        );
    }
    Ok(())
}
