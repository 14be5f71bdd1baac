//! `rlnet distill`: stage 3, distillation with the frozen stage-2 mask, from the command line.

use super::student::{print_outcome, StageDefaults, StudentArgs};
use crate::checkpoint::load_search_student;
use crate::error::Result;
use crate::search::MaskPlan;
use crate::train::distill_step::LossMode;
use crate::train::student;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DistillArgs {
    #[command(flatten)]
    common: StudentArgs,
    /// The stage-2 checkpoint (`rlnet search`'s search_best.safetensors): weights and mask.
    #[arg(long)]
    student: PathBuf,
    /// The distillation loss: `rslad` (the KL term) joined by `+` with any of `attn`,
    /// `augattn`, `advattn` (attention transfer on the clean, AugMix and adversarial views) and
    /// `ce` (rslad+attn+augattn+ce is the paper's); or pgd-at (CE alone), or natural.
    #[arg(long, default_value = "rslad+attn+augattn+ce")]
    mode: String,
    /// Output folder (distill.safetensors, distill_best.safetensors, report.json).
    #[arg(long, default_value = "runs/distill")]
    out: PathBuf,
}

pub fn run(a: DistillArgs) -> Result<()> {
    let mode = LossMode::parse(&a.mode)?;
    let model = load_search_student(&a.student)?.config;
    // Spec §6: 240 epochs, lr 0.01, x0.1 at 150/180/210.
    let defaults = StageDefaults::rlnet(240, 0.01, vec![150, 180, 210]);
    let masks = MaskPlan::Frozen {
        from: a.student.clone(),
    };
    let cfg = a.common.config(defaults, masks, model, mode)?;
    let opts = a.common.options(&a.out)?;
    print_outcome(student::run(&cfg, &opts)?, &a.out);
    Ok(())
}
