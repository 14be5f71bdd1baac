//! `rlnet pipeline`: the whole method in one resumable run folder (`recipe::pipeline`), with
//! each stage's summary as its own command prints it.

use super::common::{show_progress, DeviceArgs};
use super::outcome::{print_accuracy, print_student, print_teacher, warn_masking};
use crate::error::Result;
use crate::recipe::evaluation::Headline;
use crate::recipe::pipeline::{PipelineEvent, PipelineOutcome, PipelineRecipe, StageOutcome};
use crate::report::pi_cost::CostModel;
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
    // Before the run folder is written: every stage would refuse it.
    a.recipe.precision.check(&device)?;
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
    let (t, st) = (&f.teacher, &f.student);
    let npa = |h: &Headline| {
        h.npa.map_or(String::new(), |(n, over)| {
            format!(", NPA {:.2}% over {over}", 100.0 * n)
        })
    };
    let pi = |h: &Headline| {
        let c = CostModel::DELPHI.cost(h.kept_relus);
        format!("Delphi {:.1} ms online, {:.1} MB", c.online_ms, c.comm_mb)
    };
    println!(
        "teacher: {} ReLUs ({}); BN_c clean {:.2}%, BN_a PGD-{} {:.2}%{}",
        t.total_relus,
        pi(t),
        100.0 * t.clean_acc,
        f.pgd_steps,
        100.0 * t.pgd_acc,
        npa(t)
    );
    println!(
        "student: {} ReLUs kept of {} ({}); BN_c clean {:.2}%, BN_a PGD-{} {:.2}%{}",
        st.kept_relus,
        st.total_relus,
        pi(st),
        100.0 * st.clean_acc,
        f.pgd_steps,
        100.0 * st.pgd_acc,
        npa(st)
    );
    let change = |s: f32, t: f32| format!("{:+.2}", 100.0 * (s - t));
    println!(
        "change: {:.1}x fewer ReLUs; CA {}, AdvA {}{} points",
        t.kept_relus as f64 / st.kept_relus.max(1) as f64,
        change(st.clean_acc, t.clean_acc),
        change(st.pgd_acc, t.pgd_acc),
        match (st.npa, t.npa) {
            (Some(s), Some(t)) => format!(", NPA {}", change(s.0, t.0)),
            _ => String::new(),
        }
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
