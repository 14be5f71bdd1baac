//! `rlnet snl`: the SNL baseline's linearisation (baselines.md §2.3) from the command line.
//! Fine-tuning its binarised network is `rlnet distill --student <out>/snl_best.safetensors`
//! (`rlnet pipeline --method snl` chains both).

use super::student::{print_outcome, StageDefaults, StudentArgs};
use crate::error::Result;
use crate::search::snl::SnlConfig;
use crate::search::{parse_budget, MaskPlan};
use crate::train::distill_step::{DistillWeights, LossMode};
use crate::train::student;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SnlArgs {
    /// --epochs caps the linearisation (default 2000, smoke 40; the run ends once the count of
    /// α above --threshold is within the budget). --lr is Adam's (default 1e-3, smoke 5e-3:
    /// the smoke preset's 31 steps per epoch need larger steps for α to travel from 1 to 0).
    #[command(flatten)]
    common: StudentArgs,
    /// ReLUs the binarised network keeps, exactly: a number (49971) or with a k/m suffix (50k).
    #[arg(long)]
    budget: String,
    /// Starting weight λ of the L1 penalty λ·Σ|α| (default 1e-5; smoke preset 5e-4).
    #[arg(long)]
    lambda: Option<f32>,
    /// λ's factor after an epoch whose count is not a new minimum (default 1.1; smoke 1.5).
    #[arg(long)]
    lambda_growth: Option<f32>,
    /// λ does not grow before this epoch, counted from 0 (default 5; smoke 1).
    #[arg(long)]
    lambda_patience: Option<usize>,
    /// A site counts as a ReLU while its α exceeds this.
    #[arg(long, default_value_t = 0.01)]
    threshold: f32,
    /// Output folder (snl.safetensors, snl_best.safetensors: the binarised network, report.json).
    #[arg(long, default_value = "runs/snl")]
    out: PathBuf,
}

pub fn run(a: SnlArgs) -> Result<()> {
    let budget = parse_budget(&a.budget)?;
    let smoke = a.common.smoke();
    // The student is the teacher itself, every α = 1.
    let model = a.common.teacher_model()?;
    let base = SnlConfig::new(budget);
    let snl = SnlConfig {
        lambda: a.lambda.unwrap_or(if smoke { 5e-4 } else { base.lambda }),
        growth: a
            .lambda_growth
            .unwrap_or(if smoke { 1.5 } else { base.growth }),
        patience_from: a
            .lambda_patience
            .unwrap_or(if smoke { 1 } else { base.patience_from }),
        threshold: a.threshold,
        ..base
    };
    // SNL's scripts: Adam at lr 1e-3 (constant), CE + KD(T = 4) with weights 1 and 1.
    let defaults = StageDefaults {
        epochs: 2000,
        smoke_epochs: 40,
        lr: if smoke { 5e-3 } else { 1e-3 },
        milestones: Vec::new(),
        weights: DistillWeights {
            gamma: 1.0,
            alpha: 1.0,
            beta: 0.0,
            temperature: 4.0,
        },
    };
    let cfg = a
        .common
        .config(defaults, MaskPlan::Linearize(snl), model, LossMode::NATURAL)?;
    let opts = a.common.options(&a.out)?;
    print_outcome(student::run(&cfg, &opts)?, &a.out);
    Ok(())
}
