//! What a training command prints when its run has finished or stopped.

use crate::eval::Accuracy;
use crate::train::student::StudentReport;
use crate::train::teacher::{Metrics, TeacherReport};
use std::path::Path;

fn print_stopped(out: &Path) {
    println!(
        "stopped as asked; continue with --resume (checkpoint in {})",
        out.display()
    );
}

/// Clean and PGD accuracy under each BN set, and where the report went.
fn print_metrics(m: &Metrics, out: &Path) {
    for acc in &m.per_bn {
        println!(
            "  BN_{:<5} clean {:6.2}%  PGD-{} {:6.2}%",
            acc.bn,
            100.0 * acc.clean_acc,
            m.pgd_steps,
            100.0 * acc.pgd_acc.unwrap_or(0.0)
        );
    }
    println!("wrote {}", out.join("report.json").display());
}

/// A stage-1 run's summary.
pub fn print_teacher(report: Option<&TeacherReport>, out: &Path) {
    let Some(r) = report else {
        return print_stopped(out);
    };
    println!(
        "teacher {} on {}: {} epochs in {}, {:.0} images/s",
        r.model, r.dataset, r.epochs, r.config.run.precision, r.images_per_sec
    );
    print_metrics(&r.metrics, out);
}

/// A student stage's summary.
pub fn print_student(report: Option<&StudentReport>, out: &Path) {
    let Some(r) = report else {
        return print_stopped(out);
    };
    println!(
        "{} {} on {} ({}): {} epochs in {}, {:.0} images/s, best epoch {}",
        r.stage,
        r.model,
        r.dataset,
        r.loss,
        r.epochs,
        r.config.run.precision,
        r.images_per_sec,
        r.best.map_or(0, |b| b.epoch + 1)
    );
    println!(
        "  kept ReLUs {} of {}; Delphi PI cost {:.0} ms online, {:.0} ms offline, {:.1} MB",
        r.kept_relus,
        r.total_relus,
        r.pi_cost.cost.online_ms,
        r.pi_cost.cost.offline_ms,
        r.pi_cost.cost.comm_mb
    );
    print_metrics(&r.metrics, out);
}

/// One BN set's line: clean accuracy, each attack's, then the ε sweep and the masking verdict.
pub(super) fn print_accuracy(r: &Accuracy) {
    let mut line = format!("  BN_{:<5} clean {:6.2}%", r.bn, 100.0 * r.clean_acc);
    match (r.attacks.is_empty(), r.pgd_acc, r.pgd_steps) {
        (true, Some(p), Some(k)) => line += &format!("  PGD-{k} {:6.2}%", 100.0 * p),
        _ => {
            for at in &r.attacks {
                line += &format!("  {} {:6.2}%", at.attack, 100.0 * at.acc);
            }
        }
    }
    println!("{line}");
    if !r.eps_sweep.is_empty() {
        let points: Vec<String> = r
            .eps_sweep
            .iter()
            .map(|p| format!("{:.1}/255 {:.2}%", 255.0 * p.eps, 100.0 * p.acc))
            .collect();
        println!("    accuracy against eps: {}", points.join(", "));
    }
    if let Some(m) = &r.masking {
        println!("    gradient masking: {}", m.verdict);
        for c in &m.checks {
            let mark = if c.passed { "pass" } else { "FAIL" };
            println!("      [{mark}] {}: {}", c.check, c.detail);
        }
    }
}

/// A warning on standard error for each failed gradient-masking check.
pub(super) fn warn_masking(r: &Accuracy) {
    for w in r.masking.iter().flat_map(|m| m.warnings(&r.bn)) {
        eprintln!("warning: {w}");
    }
}
