//! report.md for one run folder and comparison.md across runs (the file names of the charts
//! they link to are the `*_SVG` constants).

use super::run::{compact_count, BnAccuracy, Headlines, Run, RunReport};
use super::seeds::{self, MethodSummary, Stat};
use std::fmt::Write;

pub const RELUS_SVG: &str = "relus_per_layer.svg";
pub const CORRUPTIONS_SVG: &str = "accuracy_per_corruption.svg";
pub const COMPARISON_SVG: &str = "comparison.svg";
pub const EPS_SVG: &str = "accuracy_vs_eps.svg";
pub const CURVES_SVG: &str = "training_curves.svg";
pub const SEEDS_SVG: &str = "comparison_seeds.svg";

fn pct(v: Option<f32>) -> String {
    v.map_or("–".into(), |v| format!("{:.2}", 100.0 * v))
}

/// Seconds as "42.0 s", "12.5 min" or "3.2 h".
fn duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.1} s")
    } else if secs < 7200.0 {
        format!("{:.1} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

fn kept(r: &RunReport) -> String {
    let share = 100.0 * r.kept_relus as f64 / r.total_relus.max(1) as f64;
    format!("{} / {} ({share:.2}%)", r.kept_relus, r.total_relus)
}

/// The report of one run folder; `charts` are the SVG files written next to it.
pub fn run_report(run: &Run, charts: &[&str]) -> String {
    let r = &run.report;
    let mut s = String::new();
    let _ = writeln!(s, "# Run report: {}\n", run.name());
    s.push_str("## Summary\n\n| field | value |\n|---|---|\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(s, "| {k} | {v} |");
    };
    row("stage", r.stage.clone());
    if let Some(m) = &r.method {
        row("method", m.clone());
    }
    row("model", r.model.clone());
    row("dataset", r.dataset.clone());
    row("device", r.device.clone().unwrap_or_else(|| "–".into()));
    if let Some(b) = r.budget {
        row("ReLU budget", format!("{b} ({})", compact_count(b)));
    }
    row("ReLUs kept / total", kept(r));
    let cost = r.pi_cost();
    row(
        "PI cost (Delphi, ReLUs only, per image)",
        format!(
            "{:.1} ms online, {:.1} ms offline, {:.1} MB",
            cost.online_ms, cost.offline_ms, cost.comm_mb
        ),
    );
    row("CA (BN_c) %", pct(r.ca()));
    row("NPA (BN_c) %", pct(r.npa()));
    let adva = r.adva();
    let steps = adva
        .and_then(|a| a.1)
        .map_or(String::new(), |k| format!(", PGD-{k}"));
    row(&format!("AdvA (BN_a{steps}) %"), pct(adva.map(|a| a.0)));
    // Training and evaluation apart, each what the clock said while it ran.
    if let Some(t) = r.train_secs {
        let what = match r.stages.is_empty() {
            true => "training time",
            false => "training time (stages summed)",
        };
        row(what, duration(t));
    }
    if let Some(t) = r.eval_secs {
        row("final evaluation time", duration(t));
    }
    if let Some(ips) = r.images_per_sec {
        row("images/s", format!("{ips:.1}"));
    }

    if let Some(t) = &r.teacher {
        teacher_and_student(&mut s, t, r);
    }

    if !r.stages.is_empty() {
        s.push_str("\n## Time per stage\n\n| stage | time | images/s |\n|---|---|---|\n");
        for st in &r.stages {
            let ips = st.images_per_sec.map_or("–".into(), |v| format!("{v:.1}"));
            let _ = writeln!(s, "| {} | {} | {ips} |", st.stage, duration(st.secs));
        }
    }

    if !r.metrics.per_bn.is_empty() {
        s.push_str("\n## Accuracy per BN set\n\n| BN | clean % | PGD % | PGD steps | NPA % |\n|---|---|---|---|---|\n");
        for a in &r.metrics.per_bn {
            let npa = r
                .corruptions
                .iter()
                .find(|c| c.bn == a.bn)
                .and_then(|c| c.npa);
            let steps = a.pgd_steps.map_or("–".into(), |k| k.to_string());
            let _ = writeln!(
                s,
                "| BN_{} | {} | {} | {steps} | {} |",
                a.bn,
                pct(Some(a.clean_acc)),
                pct(a.pgd_acc),
                pct(npa)
            );
        }
    }

    robustness_tables(&mut s, &r.metrics.per_bn);

    s.push_str("\n## ReLUs per layer\n\n");
    if r.relu_layers.is_empty() {
        s.push_str("The report lists no per-layer ReLU counts (`relu_layers`).\n");
    } else {
        s.push_str("| # | layer | ReLUs | kept | kept % |\n|---|---|---|---|---|\n");
        for (i, l) in r.relu_layers.iter().enumerate() {
            let share = 100.0 * l.kept as f64 / l.relus.max(1) as f64;
            let _ = writeln!(
                s,
                "| {i} | {} | {} | {} | {share:.2} |",
                l.name, l.relus, l.kept
            );
        }
        let _ = writeln!(s, "| | total | {} | {} | |", r.total_relus, r.kept_relus);
    }

    if !r.corruptions.is_empty() {
        s.push_str("\n## Accuracy per corruption (mean over severities, %)\n\n");
        corruption_table(&mut s, r);
    }

    if !charts.is_empty() {
        s.push_str("\n## Charts\n\n");
        for c in charts {
            let _ = writeln!(s, "![{c}]({c})\n");
        }
    }
    s
}

/// The all-ReLU teacher and the linearised student side by side, and the change.
fn teacher_and_student(s: &mut String, t: &impl Headlines, st: &RunReport) {
    let t_relus = t.kept();
    s.push_str("\n## Teacher and student\n\n");
    let steps = st
        .adva()
        .and_then(|a| a.1)
        .map_or(String::new(), |k| format!(", PGD-{k}"));
    let _ = writeln!(
        s,
        "| model | ReLUs | PI online ms | PI comm MB | CA % | NPA % | AdvA (BN_a{steps}) % |\n\
         |---|---|---|---|---|---|---|"
    );
    let line = |name: &str, m: &dyn Headlines| {
        let c = m.pi_cost();
        format!(
            "| {name} | {} | {:.1} | {:.1} | {} | {} | {} |",
            m.kept(),
            c.online_ms,
            c.comm_mb,
            pct(m.ca()),
            pct(m.npa()),
            pct(m.adva().map(|a| a.0))
        )
    };
    let _ = writeln!(s, "{}", line("teacher (all-ReLU)", t));
    let _ = writeln!(s, "{}", line("student", st));
    let diff = |a: Option<f32>, b: Option<f32>| match (a, b) {
        (Some(a), Some(b)) => format!("{:+.2}", 100.0 * (a - b)),
        _ => "–".into(),
    };
    let (tc, sc) = (t.pi_cost(), st.pi_cost());
    let _ = writeln!(
        s,
        "| change | ÷{:.1} | ÷{:.1} | ÷{:.1} | {} | {} | {} |",
        t_relus as f64 / st.kept().max(1) as f64,
        tc.online_ms / sc.online_ms.max(1e-9),
        tc.comm_mb / sc.comm_mb.max(1e-9),
        diff(st.ca(), t.ca()),
        diff(st.npa(), t.npa()),
        diff(st.adva().map(|a| a.0), t.adva().map(|a| a.0)),
    );
}

/// The attack labels of `rows` in first-seen order ("PGD-20", "APGD-CE", ...).
fn attack_columns<'a>(rows: impl Iterator<Item = &'a BnAccuracy>) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for a in rows {
        for at in &a.attacks {
            if !cols.contains(&at.attack) {
                cols.push(at.attack.clone());
            }
        }
    }
    cols
}

/// A BN set's cells of a robust-accuracy table: its name, clean accuracy, then each attack's
/// of `cols` ("–" where it was not run).
fn attack_row(a: &BnAccuracy, cols: &[String]) -> String {
    let mut cells = vec![format!("BN_{}", a.bn), pct(Some(a.clean_acc))];
    for label in cols {
        cells.push(pct(a
            .attacks
            .iter()
            .find(|x| &x.attack == label)
            .map(|x| x.acc)));
    }
    cells.join(" | ")
}

/// The RobustBench-style table (clean and each attack per BN set), how far AA falls below
/// PGD, and the gradient-masking verdicts with their checks.
fn robustness_tables(s: &mut String, per_bn: &[BnAccuracy]) {
    let cols = attack_columns(per_bn.iter());
    if !cols.is_empty() {
        let eps = per_bn.iter().flat_map(|a| &a.attacks).map(|a| a.eps).next();
        let _ = writeln!(
            s,
            "\n## Robust accuracy (L-inf, eps = {:.1}/255)\n",
            255.0 * eps.unwrap_or(0.0)
        );
        let _ = writeln!(s, "| BN | clean % | {} % |", cols.join(" % | "));
        let _ = writeln!(s, "|---|---|{}", "---|".repeat(cols.len()));
        for a in per_bn {
            let _ = writeln!(s, "| {} |", attack_row(a, &cols));
        }
        if cols.iter().any(|c| c == "AA") {
            s.push_str(
                "\nAA: AutoAttack's standard ensemble without FAB-T (APGD-CE, then APGD-T, then \
                 Square on the points still correct; an image counts only if it survives all \
                 three).\n",
            );
        }
        for a in per_bn {
            let find = |p: &dyn Fn(&str) -> bool| a.attacks.iter().find(|x| p(&x.attack));
            if let (Some(pgd), Some(aa)) = (find(&|l| l.starts_with("PGD-")), find(&|l| l == "AA"))
            {
                let gap = 100.0 * (pgd.acc - aa.acc);
                let side = if gap >= 0.0 { "below" } else { "above" };
                let _ = writeln!(
                    s,
                    "\nBN_{}: AA is {:.2} points {side} {} ({} against {}).",
                    a.bn,
                    gap.abs(),
                    pgd.attack,
                    pct(Some(aa.acc)),
                    pct(Some(pgd.acc))
                );
            }
        }
        let secs: Vec<String> = per_bn
            .iter()
            .map(|a| {
                let ran = |l: &str| a.attacks.iter().any(|x| x.attack == l);
                let reused = ["APGD-CE", "APGD-T", "Square"].iter().all(|l| ran(l));
                let parts: Vec<String> = a
                    .attacks
                    .iter()
                    .map(|x| match x.attack == "AA" && reused {
                        true => "AA from those three".to_string(),
                        false => format!("{} {}", x.attack, duration(x.secs)),
                    })
                    .collect();
                format!("BN_{}: {}", a.bn, parts.join(", "))
            })
            .collect();
        let _ = writeln!(s, "\nAttack wall times: {}.", secs.join("; "));
    }
    for a in per_bn {
        if let Some(m) = &a.masking {
            let _ = writeln!(
                s,
                "\n## Gradient-masking checks, BN_{}\n\n**{}**\n",
                a.bn, m.verdict
            );
            s.push_str("| check | result | numbers |\n|---|---|---|\n");
            for c in &m.checks {
                let mark = if c.passed { "pass" } else { "**FAIL**" };
                let _ = writeln!(s, "| {} | {mark} | {} |", c.check, c.detail);
            }
        }
    }
}

/// One row per corruption, one column per BN set, then the NPA and all-corruption means.
fn corruption_table(s: &mut String, r: &RunReport) {
    let reports = &r.corruptions;
    let mut names: Vec<&str> = Vec::new();
    for rep in reports {
        for c in &rep.corruptions {
            if !names.contains(&c.corruption.as_str()) {
                names.push(&c.corruption);
            }
        }
    }
    s.push_str("| corruption |");
    for rep in reports {
        let _ = write!(s, " BN_{} |", rep.bn);
    }
    s.push_str("\n|---|");
    s.push_str(&"---|".repeat(reports.len()));
    s.push('\n');
    for name in &names {
        let _ = write!(s, "| {name} |");
        for rep in reports {
            let v = rep
                .corruptions
                .iter()
                .find(|c| c.corruption == *name)
                .map(|c| c.mean);
            let _ = write!(s, " {} |", pct(v));
        }
        s.push('\n');
    }
    s.push_str("| **NPA** |");
    for rep in reports {
        let _ = write!(
            s,
            " **{}** ({} corruptions) |",
            pct(rep.npa),
            rep.npa_corruptions
        );
    }
    s.push_str("\n| mean of all evaluated |");
    for rep in reports {
        let _ = write!(s, " {} |", pct(Some(rep.mean_all)));
    }
    s.push('\n');
    for rep in reports {
        for (c, why) in &rep.skipped {
            let _ = writeln!(s, "\nSkipped under BN_{}: {c} ({why}).", rep.bn);
        }
    }
}

/// comparison.md: one row per run (links relative to `out_dir` are the caller's job:
/// `links[i]` is the path of run i's report.md as seen from the comparison file).
pub fn comparison(runs: &[Run], links: &[String]) -> String {
    let mut s = String::from("# Comparison\n\n");
    s.push_str(
        "| run | stage | method | model | dataset | budget | ReLUs kept | CA % | NPA % | AdvA % | PI online ms | PI comm MB | report |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (run, link) in runs.iter().zip(links) {
        let r = &run.report;
        let cost = r.pi_cost();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | [report.md]({link}) |",
            run.name(),
            r.stage,
            r.method.as_deref().unwrap_or("–"),
            r.model,
            r.dataset,
            r.budget.map_or("–".into(), |b| b.to_string()),
            r.kept_relus,
            pct(r.ca()),
            pct(r.npa()),
            pct(r.adva().map(|a| a.0)),
            cost.online_ms,
            cost.comm_mb,
        );
    }
    let rows: Vec<(String, &BnAccuracy)> = runs
        .iter()
        .flat_map(|run| {
            run.report
                .metrics
                .per_bn
                .iter()
                .map(move |a| (run.name(), a))
        })
        .collect();
    let cols = attack_columns(rows.iter().map(|(_, a)| *a));
    if !cols.is_empty() {
        s.push_str("\n## Robust accuracy per BN set\n\n");
        let _ = writeln!(s, "| run | BN | clean % | {} % |", cols.join(" % | "));
        let _ = writeln!(s, "|---|---|---|{}", "---|".repeat(cols.len()));
        for (name, a) in &rows {
            let _ = writeln!(s, "| {name} | {} |", attack_row(a, &cols));
        }
    }
    if let Some(methods) = seeds::by_method(runs) {
        seeds_table(&mut s, &methods);
        let _ = writeln!(s, "\n![{SEEDS_SVG}]({SEEDS_SVG})");
    }
    let _ = writeln!(s, "\n![{COMPARISON_SVG}]({COMPARISON_SVG})");
    s
}

/// "61.20 ± 1.05"; "–" when not measured.
fn mean_std(v: &Option<Stat>) -> String {
    v.map_or("–".into(), |v| format!("{:.2} ± {:.2}", v.mean, v.std))
}

/// One row per method: its students' and teachers' headline numbers over the seeds.
fn seeds_table(s: &mut String, methods: &[MethodSummary]) {
    s.push_str(
        "\n## Mean ± standard deviation over seeds\n\n\
         Sample standard deviation (n − 1) over the runs of each method (folders of the same \
         name). AdvA: PGD under BN_a (BN_c for single-BN methods); AA: AutoAttack under the same \
         BN set.\n\n",
    );
    let cols: Vec<String> = seeds::METRICS.iter().map(|m| format!("{m} %")).collect();
    let _ = writeln!(
        s,
        "| method | runs | ReLUs | {} | teacher {} |\n|---|---|---|{}",
        cols.join(" | "),
        cols.join(" | teacher "),
        "---|".repeat(2 * cols.len())
    );
    for m in methods {
        let student: Vec<String> = m.student.iter().map(mean_std).collect();
        let teacher: Vec<String> = m.teacher.iter().map(mean_std).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            m.name,
            m.runs,
            m.kept_relus,
            student.join(" | "),
            teacher.join(" | ")
        );
    }
}
