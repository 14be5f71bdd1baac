//! `rlnet export`: a checkpoint's inference graph under one BN set as ONNX (`crate::export`).

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::export::onnx;
use crate::files::write_atomic;
use crate::nn::{BnMode, Domain};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

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
pub struct ExportArgs {
    /// The checkpoint (any stage's: teacher, search, distill, snl).
    checkpoint: PathBuf,
    /// Write the inference graph as ONNX (opset 17) to this file.
    #[arg(long)]
    onnx: PathBuf,
    /// The BN set the graph uses.
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
    let bytes = onnx::export(&model, domain)?;
    write_atomic(&a.onnx, &bytes)?;
    if !a.quiet {
        println!(
            "wrote {} ({} bytes): {} under BN_{}, {} of {} ReLUs kept; input [batch, 3, {s}, {s}] \
             pixels in [0, 1], output logits [batch, {}]",
            a.onnx.display(),
            bytes.len(),
            model.config.arch.name(),
            crate::eval::bn_name(domain),
            model.kept_relus(),
            model.total_relus(),
            model.config.num_classes,
            s = model.config.input_size,
        );
    }
    Ok(())
}
