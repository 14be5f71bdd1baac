//! `rlnet export`: a checkpoint's inference graph under one BN set as ONNX (`crate::export`),
//! and its weights as the reference code's PyTorch checkpoint (`crate::pytorch`).

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::export::onnx;
use crate::files::write_atomic;
use crate::nn::{BnMode, Domain, Model};
use crate::pytorch::reference::{self, Layout};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

/// The BN set the exported graph normalises with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportBn {
    /// BN_c: clean and AugMix inputs (CA and NPA are read under it).
    Clean,
    /// BN_a: adversarial inputs (AdvA is read under it).
    Adv,
    /// BN_r: AugMix inputs, in a triple-BN model.
    Aug,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("output").required(true).multiple(true).args(["onnx", "state_dict"])))]
pub struct ExportArgs {
    /// The checkpoint (any stage's: teacher, search, distill, snl).
    checkpoint: PathBuf,
    /// Write the inference graph as ONNX (opset 17) to this file.
    #[arg(long)]
    onnx: Option<PathBuf>,
    /// Write the weights as a .pth (torch.save's zip format) that the reference code's model
    /// of --layout loads with load_state_dict(strict=True).
    #[arg(long)]
    state_dict: Option<PathBuf>,
    /// The reference classes the .pth is for (default: rlnet-teacher for a model with every
    /// ReLU, rlnet-student otherwise).
    #[arg(long, value_enum, requires = "state_dict")]
    layout: Option<Layout>,
    /// The BN set the ONNX graph uses, and the one a single-BN layout (snl) takes.
    #[arg(long, value_enum, default_value_t = ExportBn::Clean)]
    bn: ExportBn,
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: ExportArgs) -> Result<()> {
    let model = checkpoint::load(&a.checkpoint)?.model()?;
    let domain = match a.bn {
        ExportBn::Clean => Domain::Clean,
        ExportBn::Adv => Domain::Adv,
        ExportBn::Aug if model.config.bn == BnMode::Triple => Domain::Aug,
        ExportBn::Aug => {
            return Err(Error::Config(format!(
                "--bn aug: {} has dual BN (BN_c and BN_a); BN_r exists only in triple-BN models",
                a.checkpoint.display()
            )))
        }
    };
    if let Some(path) = &a.onnx {
        let bytes = onnx::export(&model, domain)?;
        write_atomic(path, &bytes)?;
        if !a.quiet {
            println!(
                "wrote {} ({} bytes): {} under BN_{}, {} of {} ReLUs kept; input [batch, 3, \
                 {s}, {s}] pixels in [0, 1], output logits [batch, {}]",
                path.display(),
                bytes.len(),
                model.config.arch.name(),
                crate::eval::bn_name(domain),
                model.kept_relus(),
                model.total_relus(),
                model.config.num_classes,
                s = model.config.input_size,
            );
        }
    }
    if let Some(path) = &a.state_dict {
        export_state_dict(&model, &a, domain, path)?;
    }
    Ok(())
}

fn export_state_dict(model: &Model, a: &ExportArgs, domain: Domain, path: &Path) -> Result<()> {
    let layout = a
        .layout
        .unwrap_or(match model.kept_relus() == model.total_relus() {
            true => Layout::RlnetTeacher,
            false => Layout::RlnetStudent,
        });
    let bytes = reference::export(model, layout, domain)?;
    write_atomic(path, &bytes)?;
    if !a.quiet {
        let load = match layout {
            Layout::Snl => "model.load_state_dict(torch.load(FILE)['state_dict'])",
            Layout::RlnetTeacher => "model.load_state_dict(torch.load(FILE)['model'])",
            Layout::RlnetStudent => {
                "model.load_state_dict(torch.load(FILE)['model']), masks in ['mask_epoch']"
            }
        };
        let bn = match layout {
            Layout::Snl => format!(", BN_{} as its one BN", crate::eval::bn_name(domain)),
            _ => String::new(),
        };
        println!(
            "wrote {} ({} bytes): {} {}{bn}; {load}",
            path.display(),
            bytes.len(),
            layout.name(),
            model.config.arch.name(),
        );
    }
    Ok(())
}
