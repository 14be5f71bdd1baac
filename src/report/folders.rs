//! Finding run folders and writing their reports: report.md and charts into each run
//! folder, comparison.md and comparison.svg into an output folder.

use super::markdown::{
    self, COMPARISON_SVG, CORRUPTIONS_SVG, CURVES_SVG, EPS_SVG, RELUS_SVG, SEEDS_SVG,
};
use super::run::Run;
use super::seeds;
use super::svg;
use crate::error::{Error, Result};
use crate::eval::masking::EpsPoint;
use crate::files::write_atomic;
use std::path::{Component, Path, PathBuf};

/// The runs under `dirs`: a folder with a report.json is a run; otherwise each of its
/// immediate subfolders holding a report.json is one (in name order).
pub fn find_runs(dirs: &[PathBuf]) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for dir in dirs {
        if !dir.is_dir() {
            return Err(Error::Config(format!(
                "{} is not a folder: expected a run folder (holding report.json) or a folder \
                 of run folders",
                dir.display()
            )));
        }
        if dir.join("report.json").exists() {
            runs.push(Run::load(dir)?);
            continue;
        }
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::Config(format!("cannot list {}: {e}", dir.display())))?;
        let mut subs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("report.json").is_file())
            .collect();
        if subs.is_empty() {
            return Err(Error::Config(format!(
                "{} holds no report.json, and none of its subfolders does",
                dir.display()
            )));
        }
        subs.sort();
        for s in subs {
            runs.push(Run::load(&s)?);
        }
    }
    Ok(runs)
}

/// Writes report.md and the charts its data allows into the run's folder; returns the paths.
pub fn write_run(run: &Run) -> Result<Vec<PathBuf>> {
    let r = &run.report;
    let mut charts = Vec::new();
    let mut written = Vec::new();
    if !r.relu_layers.is_empty() {
        let p = run.dir.join(RELUS_SVG);
        write_atomic(
            &p,
            svg::relus_per_layer(&r.model, &r.relu_layers).as_bytes(),
        )?;
        charts.push(RELUS_SVG);
        written.push(p);
    }
    if !r.corruptions.is_empty() {
        let p = run.dir.join(CORRUPTIONS_SVG);
        write_atomic(&p, svg::accuracy_per_corruption(&r.corruptions).as_bytes())?;
        charts.push(CORRUPTIONS_SVG);
        written.push(p);
    }
    if !r.history.is_empty() {
        let curves: Vec<svg::EpochCurve> = r
            .history
            .iter()
            .map(|e| svg::EpochCurve {
                epoch: e.epoch,
                loss: e.loss,
                clean_train_acc: e.clean_train_acc,
                adv_train_acc: e.adv_train_acc,
                val: e.validation(),
            })
            .collect();
        let p = run.dir.join(CURVES_SVG);
        write_atomic(&p, svg::training_curves(&r.stage, &curves).as_bytes())?;
        charts.push(CURVES_SVG);
        written.push(p);
    }
    let sweeps = eps_series(std::slice::from_ref(run), false);
    if !sweeps.is_empty() {
        let p = run.dir.join(EPS_SVG);
        write_atomic(&p, svg::accuracy_vs_eps(&sweeps).as_bytes())?;
        charts.push(EPS_SVG);
        written.push(p);
    }
    let p = run.dir.join("report.md");
    write_atomic(&p, markdown::run_report(run, &charts).as_bytes())?;
    written.push(p);
    Ok(written)
}

/// Writes comparison.md and comparison.svg into `out` (created if missing).
pub fn write_comparison(runs: &[Run], out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", out.display())))?;
    let links: Vec<String> = runs
        .iter()
        .map(|r| relative(out, &r.dir.join("report.md")))
        .collect::<Result<_>>()?;
    let md = out.join("comparison.md");
    write_atomic(&md, markdown::comparison(runs, &links).as_bytes())?;
    let chart = out.join(COMPARISON_SVG);
    write_atomic(&chart, svg::metrics_vs_relus(runs).as_bytes())?;
    let mut written = vec![md, chart];
    if let Some(methods) = seeds::by_method(runs) {
        let p = out.join(SEEDS_SVG);
        write_atomic(&p, svg::seeds_chart(&methods).as_bytes())?;
        written.push(p);
    }
    let sweeps = eps_series(runs, true);
    if !sweeps.is_empty() {
        let p = out.join(EPS_SVG);
        write_atomic(&p, svg::accuracy_vs_eps(&sweeps).as_bytes())?;
        written.push(p);
    }
    Ok(written)
}

/// Each BN set's ε sweep as a chart series, named by its BN set (and run, with `named`).
fn eps_series(runs: &[Run], named: bool) -> Vec<(String, Vec<EpsPoint>)> {
    runs.iter()
        .flat_map(|run| {
            run.report
                .metrics
                .per_bn
                .iter()
                .filter(|a| !a.eps_sweep.is_empty())
                .map(move |a| {
                    let name = match named {
                        true => format!("{} BN_{}", run.name(), a.bn),
                        false => format!("BN_{}", a.bn),
                    };
                    (name, a.eps_sweep.clone())
                })
        })
        .collect()
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p)
        .map_err(|e| Error::Config(format!("cannot resolve {}: {e}", p.display())))
}

/// `to` as a path relative to the folder `from`, with `/` separators (Markdown links).
fn relative(from: &Path, to: &Path) -> Result<String> {
    // Lexical normalisation (no symlink resolution): `/a/./b/../c` → [a, c]. Both paths are
    // absolute, so the root (and on Windows the prefix) is shared or the paths never meet.
    let norm = |p: PathBuf| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in p.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir => {
                    out.pop();
                }
                c => out.push(c.as_os_str().to_string_lossy().into_owned()),
            }
        }
        out
    };
    let (f, t) = (norm(absolute(from)?), norm(absolute(to)?));
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); f.len() - common];
    parts.extend(t[common..].iter().cloned());
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::relative;
    use std::path::Path;

    #[test]
    fn relative_links() {
        let r = |a: &str, b: &str| relative(Path::new(a), Path::new(b)).unwrap();
        assert_eq!(r("/x/out", "/x/runs/a/report.md"), "../runs/a/report.md");
        assert_eq!(r("/x/runs", "/x/runs/a/report.md"), "a/report.md");
        assert_eq!(r("/x/./out/../runs", "/x/runs/b/report.md"), "b/report.md");
    }
}
