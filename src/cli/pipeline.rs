//! `rlnet pipeline`: the whole method in one resumable run folder (`recipe::pipeline`), with
//! each stage's summary as its own command prints it.

use super::common::{show_progress, DeviceArgs};
use super::outcome::{print_accuracy, print_student, print_teacher, warn_masking};
use crate::error::Result;
use crate::recipe::pipeline::{PipelineEvent, PipelineOutcome, PipelineRecipe, StageOutcome};
use clap::Args;

#[derive(Args, Debug)]
pub struct PipelineArgs {
    #[command(flatten)]
    recipe: PipelineRecipe,
    #[command(flatten)]
    device: DeviceArgs,
    /// Stop the stage that is running after this many of its optimisation steps (checkpointed;
    /// run the same command without this flag to continue).
    #[arg(long)]
    stop_after_steps: Option<usize>,
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: PipelineArgs) -> Result<()> {
    let device = a.device.choose(a.quiet)?.device;
    let quiet = a.quiet;
    let show = show_progress(quiet);
    let outcome = a
        .recipe
        .run(&device, show, a.stop_after_steps, |event| match event {
            PipelineEvent::Reused(s) if !quiet => {
                eprintln!("{}: finished earlier, reused ({})", s.name, s.dir.display())
            }
            PipelineEvent::Starting { stage, resumed } if !quiet => {
                let how = if resumed { "resumed" } else { "started" };
                eprintln!("== {} ({how}): {}", stage.name, stage.dir.display())
            }
            PipelineEvent::Ran { stage, outcome } => match outcome {
                StageOutcome::Teacher(r) => print_teacher(r.as_deref(), &stage.dir),
                StageOutcome::Student(r) => print_student(r.as_deref(), &stage.dir),
            },
            _ => {}
        })?;
    let f = match outcome {
        PipelineOutcome::Stopped(stage) => {
            println!(
                "pipeline stopped in {stage} as asked; run the same command again to continue"
            );
            return Ok(());
        }
        PipelineOutcome::Finished(f) => f,
    };
    let npa = f
        .npa
        .map(|(n, over)| format!(", NPA {:.2}% over {over}", 100.0 * n))
        .unwrap_or_default();
    println!(
        "pipeline: {} ReLUs kept of {}; BN_c clean {:.2}%, BN_a PGD-{} {:.2}%{npa}",
        f.kept_relus,
        f.total_relus,
        100.0 * f.clean_acc,
        f.pgd_steps,
        100.0 * f.pgd_acc
    );
    if f.per_bn
        .iter()
        .any(|r| !r.attacks.is_empty() || r.masking.is_some())
    {
        for r in &f.per_bn {
            print_accuracy(r);
            warn_masking(r);
        }
    }
    println!("wrote {}", f.report.display());
    for p in f.charts {
        println!("wrote {}", p.display());
    }
    Ok(())
}
