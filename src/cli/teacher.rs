//! `rlnet teacher`: stage 1 from the command line.

use super::common::{DeviceArgs, RunFlags};
use super::outcome::print_teacher;
use crate::error::Result;
use crate::recipe::teacher::TeacherRecipe;
use crate::train::teacher;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TeacherArgs {
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    recipe: TeacherRecipe,
    #[command(flatten)]
    run: RunFlags,
    /// Output folder (teacher.safetensors, report.json).
    #[arg(long, default_value = "runs/teacher")]
    out: PathBuf,
    /// No progress bars and no device line.
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: TeacherArgs) -> Result<()> {
    let device = a.device.choose(a.quiet)?.device;
    let cfg = a.recipe.config()?;
    let opts = a.run.options(&a.out, device, a.quiet);
    print_teacher(teacher::run(&cfg, &opts)?.as_ref(), &a.out);
    Ok(())
}
