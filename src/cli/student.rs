//! What `rlnet search`, `rlnet distill` and `rlnet snl` share: the device, the run flags and
//! running the stage's config to its summary.

use super::common::{attack_finished, attack_plan, DeviceArgs, RunFlags};
use super::outcome::print_student;
use crate::error::Result;
use crate::recipe::AttackArgs;
use crate::train::student::{self, StudentConfig};
use clap::Args;
use std::path::Path;

#[derive(Args, Debug)]
pub struct StudentRun {
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    run: RunFlags,
    /// Attacks of the final evaluation beyond its PGD (run on the evaluated checkpoint).
    #[command(flatten)]
    attacks: AttackArgs,
    /// No progress bars and no device line.
    #[arg(long)]
    quiet: bool,
}

impl StudentRun {
    /// Runs (or resumes) the stage `cfg` into `out` and prints its summary.
    pub fn run(&self, cfg: Result<StudentConfig>, out: &Path) -> Result<()> {
        let cfg = cfg?;
        let device = self.device.choose(self.quiet)?.device;
        let classes = cfg.model.num_classes;
        let plan = attack_plan(&self.attacks, cfg.eval_pgd_steps, cfg.run.seed, classes)?;
        let opts = self.run.options(out, device.clone(), self.quiet);
        let report = student::run(&cfg, &opts)?;
        print_student(report.as_ref(), out);
        if let (Some(plan), Some(_)) = (plan, report) {
            attack_finished(out, &plan, &device, self.quiet)?;
        }
        Ok(())
    }
}
