//! `rlnet search`: stage 2, the ReLU mask search, from the command line.

use super::student::{print_outcome, StageDefaults, StudentArgs};
use crate::checkpoint::load_teacher;
use crate::device::Device;
use crate::error::Result;
use crate::search::{layer_counts, layer_sizes, parse_budget, student_config, Fractions, MaskPlan};
use crate::train::distill_step::LossMode;
use crate::train::student;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    common: StudentArgs,
    /// ReLUs to keep, exactly: a number (49971) or with a k/m suffix (50k).
    #[arg(long)]
    budget: String,
    /// How the budget is spread over the layers: auto (the reference list whose total is the
    /// budget, else sensitivity), sensitivity[:D] (SENet-style: ReLUs in proportion to
    /// 1 - d_l, d_l = the weight density of the conv feeding layer l after one-shot global
    /// magnitude pruning of the teacher's conv weights to density D, default 0.1), uniform, or
    /// a reference list's name (relu25k, relu50k, relu82k, relu100k, relu120k, relu150k,
    /// relu300k, relu240k) rescaled to the budget. report.json records which was used.
    #[arg(long, default_value = "auto")]
    fractions: String,
    /// The loss of the search (spec §5: rslad+ce).
    #[arg(long, default_value = "rslad+ce")]
    mode: String,
    /// Output folder (search.safetensors, search_best.safetensors, report.json).
    #[arg(long, default_value = "runs/search")]
    out: PathBuf,
}

pub fn run(a: SearchArgs) -> Result<()> {
    let budget = parse_budget(&a.budget)?;
    let mode = LossMode::parse(&a.mode)?;
    let fractions = Fractions::parse(&a.fractions)?;
    let model = student_config(&a.common.teacher_model()?);
    // On the host: the sensitivity rule reads the teacher's conv weights once.
    let teacher = load_teacher(&a.common.teacher, &Device::Cpu)?;
    let sizes = layer_sizes(&model)?;
    let (ks, fractions) = layer_counts(
        model.arch,
        model.input_size,
        &sizes,
        budget,
        &fractions,
        &teacher,
    )?;
    drop(teacher);
    let masks = MaskPlan::Search {
        budget,
        fractions,
        ks,
    };
    // Spec §5: 150 epochs whose milestones (150/180/210) are never reached: a constant lr.
    let defaults = StageDefaults::rlnet(150, 0.05, Vec::new());
    let cfg = a.common.config(defaults, masks, model, mode)?;
    let opts = a.common.options(&a.out)?;
    print_outcome(student::run(&cfg, &opts)?, &a.out);
    Ok(())
}
