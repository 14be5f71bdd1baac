//! `rlnet snl`: the SNL baseline's linearisation (baselines.md §2.3) from the command line.
//! Fine-tuning its binarised network is `rlnet distill --student <out>/snl_best.safetensors`
//! (`rlnet pipeline --method snl` chains both).

use super::student::StudentRun;
use crate::error::Result;
use crate::recipe::student::SnlRecipe;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SnlArgs {
    #[command(flatten)]
    recipe: SnlRecipe,
    #[command(flatten)]
    run: StudentRun,
    /// Output folder (snl.safetensors, snl_best.safetensors: the binarised network, report.json).
    #[arg(long, default_value = "runs/snl")]
    out: PathBuf,
}

pub fn run(a: SnlArgs) -> Result<()> {
    a.run.run(a.recipe.config(), &a.out)
}
