//! `rlnet teacher`: stage 1 from the command line.

use super::common::{attack_finished, attack_plan, DeviceArgs, RunFlags};
use super::outcome::print_teacher;
use crate::error::Result;
use crate::recipe::teacher::TeacherRecipe;
use crate::recipe::AttackArgs;
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
    /// Attacks of the final evaluation beyond its PGD (run on the finished teacher).
    #[command(flatten)]
    attacks: AttackArgs,
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
    let plan = attack_plan(
        &a.attacks,
        cfg.eval_pgd_steps,
        cfg.run.seed,
        cfg.model.num_classes,
    )?;
    let opts = a.run.options(&a.out, device.clone(), a.quiet);
    let report = teacher::run(&cfg, &opts)?;
    print_teacher(report.as_ref(), &a.out);
    if let (Some(plan), Some(_)) = (plan, report) {
        attack_finished(&a.out, &plan, &device, a.quiet)?;
    }
    Ok(())
}
