//! Flags shared by several commands.

use super::outcome::{print_accuracy, warn_masking};
use crate::device::{Device, DeviceChoice, DeviceRequest};
use crate::error::Result;
use crate::eval::robustness::RobustnessPlan;
use crate::recipe::evaluation::attack_stage;
use crate::recipe::AttackArgs;
use crate::train::RunOptions;
use clap::Args;
use std::io::IsTerminal;
use std::path::Path;

#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where to compute: auto picks a usable GPU, else the CPU (and says why).
    #[arg(long, value_enum, default_value_t = DeviceRequest::Auto)]
    pub device: DeviceRequest,
}

impl DeviceArgs {
    pub fn choose(&self, quiet: bool) -> Result<DeviceChoice> {
        let choice = Device::from_request(self.device)?;
        if !quiet {
            eprintln!("device: {}", choice.reason);
        }
        Ok(choice)
    }
}

/// How one invocation of a training command runs (not part of the stage's config).
#[derive(Args, Debug, Clone)]
pub struct RunFlags {
    /// Continue the run saved in --out.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs in total (checkpointed; continue later with --resume).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Stop after this many optimisation steps in total (checkpointed mid-epoch; continue
    /// later with --resume).
    #[arg(long)]
    pub stop_after_steps: Option<usize>,
}

impl RunFlags {
    /// The run's options: writing into `out`, on `device`.
    pub fn options(&self, out: &Path, device: Device, quiet: bool) -> RunOptions {
        RunOptions {
            out_dir: out.to_path_buf(),
            resume: self.resume,
            stop_after: self.stop_after,
            stop_after_steps: self.stop_after_steps,
            show_progress: show_progress(quiet),
            device,
        }
    }
}

/// Show progress bars only on a terminal and when not asked to be quiet.
pub fn show_progress(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// The stage commands' extra attacks, checked before training starts (None: none asked).
pub fn attack_plan(
    a: &AttackArgs,
    pgd_steps: usize,
    seed: u64,
    classes: usize,
) -> Result<Option<RobustnessPlan>> {
    if !a.asked() {
        return Ok(None);
    }
    let plan = a.plan(pgd_steps, seed)?;
    if let Some(p) = &plan {
        p.validate(classes)?;
    }
    Ok(plan)
}

/// Runs `plan` on the finished stage in `dir`, updates its report.json and prints the results.
pub fn attack_finished(
    dir: &Path,
    plan: &RobustnessPlan,
    device: &Device,
    quiet: bool,
) -> Result<()> {
    for acc in attack_stage(dir, plan, device, show_progress(quiet))? {
        print_accuracy(&acc);
        warn_masking(&acc);
    }
    Ok(())
}
