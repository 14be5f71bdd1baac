//! What `rlnet search`, `rlnet distill` and `rlnet snl` share: the device, the run flags and
//! running the stage's config to its summary.

use super::common::{DeviceArgs, RunFlags};
use super::outcome::print_student;
use crate::error::Result;
use crate::train::student::{self, StudentConfig};
use clap::Args;
use std::path::Path;

#[derive(Args, Debug)]
pub struct StudentRun {
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    run: RunFlags,
    /// No progress bars and no device line.
    #[arg(long)]
    quiet: bool,
}

impl StudentRun {
    /// Runs (or resumes) the stage `cfg` into `out` and prints its summary.
    pub fn run(&self, cfg: Result<StudentConfig>, out: &Path) -> Result<()> {
        let cfg = cfg?;
        let device = self.device.choose(self.quiet)?.device;
        let opts = self.run.options(out, device, self.quiet);
        print_student(student::run(&cfg, &opts)?.as_ref(), out);
        Ok(())
    }
}
