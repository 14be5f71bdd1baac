//! `rlnet distill`: stage 3, distillation with the frozen stage-2 mask, from the command line.

use super::student::StudentRun;
use crate::error::Result;
use crate::recipe::student::DistillRecipe;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DistillArgs {
    #[command(flatten)]
    recipe: DistillRecipe,
    #[command(flatten)]
    run: StudentRun,
    /// Output folder (distill.safetensors, distill_best.safetensors, report.json).
    #[arg(long, default_value = "runs/distill")]
    out: PathBuf,
}

pub fn run(a: DistillArgs) -> Result<()> {
    a.run.run(a.recipe.config(), &a.out)
}
