//! `rlnet search`: stage 2, the ReLU mask search, from the command line.

use super::student::StudentRun;
use crate::error::Result;
use crate::recipe::student::SearchRecipe;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    recipe: SearchRecipe,
    #[command(flatten)]
    run: StudentRun,
    /// Output folder (search.safetensors, search_best.safetensors, report.json).
    #[arg(long, default_value = "runs/search")]
    out: PathBuf,
}

pub fn run(a: SearchArgs) -> Result<()> {
    a.run.run(a.recipe.config(), &a.out)
}
