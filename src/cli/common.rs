//! Flags shared by several commands.

use crate::device::{Device, DeviceChoice, DeviceRequest};
use crate::error::Result;
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
