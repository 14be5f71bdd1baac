//! `rlnet bench`'s output: one row per item with our time, the achieved rate, the floor and the
//! fraction of it reached, and (with --compare-torch) PyTorch's best eager and best compiled
//! times with their ratios to ours; as a Markdown table or as JSON.

use super::peaks::Peaks;
use super::timing::Measurement;
use super::torch::PeerRun;
use super::Item;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One item's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub family: &'static str,
    pub bytes: f64,
    pub flops: f64,
    /// None when the item could not run here (`skipped` says why).
    pub measurement: Option<Measurement>,
    pub skipped: Option<String>,
    /// "memory" or "compute": which term sets the floor.
    pub bound: &'static str,
    pub floor_ms: f64,
    /// Floor time over our median time (1.0 = at the floor).
    pub floor_fraction: Option<f64>,
    /// PyTorch's median ms per variant ("eager-f32" ...), when compared.
    pub torch_ms: BTreeMap<String, f64>,
    /// PyTorch's notes, errors and skips per variant.
    pub torch_notes: BTreeMap<String, String>,
}

impl Row {
    pub fn new(item: &Item, peaks: &Peaks, m: Result<Measurement, String>) -> Row {
        let floor_s = item.floor_s(peaks);
        let (measurement, skipped) = match m {
            Ok(m) => (Some(m), None),
            Err(why) => (None, Some(why)),
        };
        Row {
            name: item.name.clone(),
            family: item.family().name(),
            bytes: item.bytes,
            flops: item.flops,
            floor_fraction: measurement.map(|m| floor_s / m.median_s),
            measurement,
            skipped,
            bound: if item.compute_bound(peaks) {
                "compute"
            } else {
                "memory"
            },
            floor_ms: floor_s * 1e3,
            torch_ms: BTreeMap::new(),
            torch_notes: BTreeMap::new(),
        }
    }

    pub fn ms(&self) -> Option<f64> {
        self.measurement.map(|m| m.median_s * 1e3)
    }

    /// The achieved rate in the floor's unit: GB/s for memory-bound items, TFLOP/s otherwise.
    pub fn achieved(&self) -> Option<String> {
        let s = self.measurement?.median_s;
        Some(if self.bound == "compute" {
            format!("{:.2} TFLOP/s", self.flops / s / 1e12)
        } else {
            format!("{:.1} GB/s", self.bytes / s / 1e9)
        })
    }

    /// PyTorch's fastest variant whose name starts with `mode` ("eager" or "compile").
    pub fn torch_best(&self, mode: &str) -> Option<(&str, f64)> {
        self.torch_ms
            .iter()
            .filter(|(v, _)| v.starts_with(mode))
            .map(|(v, &ms)| (v.as_str(), ms))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub rlnet_version: &'static str,
    pub device: String,
    pub batch: usize,
    pub peaks: Peaks,
    pub torch_version: Option<String>,
    pub torch_device: Option<String>,
    pub rows: Vec<Row>,
}

impl Report {
    /// Folds the peer's answers into the rows (matched by item name).
    pub fn add_torch(&mut self, run: PeerRun) {
        self.torch_version = Some(run.torch_version);
        self.torch_device = Some(run.device);
        for r in run.results {
            let Some(row) = self.rows.iter_mut().find(|row| row.name == r.name) else {
                continue;
            };
            let variant = r.variant.clone().unwrap_or_else(|| "all".into());
            if let Some(ms) = r.ms {
                row.torch_ms.insert(variant.clone(), ms);
            }
            let note = [r.skipped, r.error.map(|e| format!("error: {e}")), r.note]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            if !note.is_empty() {
                row.torch_notes.insert(variant, note);
            }
        }
    }

    fn compared(&self) -> bool {
        self.torch_version.is_some()
    }

    /// A Markdown table, one section per family, then the geometric means of the fractions of
    /// the floor and of the speed ratios.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "rlnet {} on {}, batch {}",
            self.rlnet_version, self.device, self.batch
        );
        let _ = writeln!(
            s,
            "floor: {:.1} GB/s copy, {:.2} TFLOP/s matmul ({})",
            self.peaks.bandwidth / 1e9,
            self.peaks.flops / 1e12,
            self.peaks.source
        );
        if let (Some(v), Some(d)) = (&self.torch_version, &self.torch_device) {
            let _ = writeln!(
                s,
                "PyTorch {v} on {d}: best eager and best compiled variant per item; ratio = PyTorch time / ours (> 1: we are faster)"
            );
        }
        let mut header = "| item | ours (ms) | achieved | floor (ms) | of floor |".to_string();
        let mut rule = "|---|---:|---:|---:|---:|".to_string();
        if self.compared() {
            header +=
                " PyTorch eager (ms) | PyTorch compiled (ms) | eager / ours | compiled / ours |";
            rule += "---:|---:|---:|---:|";
        }
        let mut family = "";
        for row in &self.rows {
            if row.family != family {
                family = row.family;
                let _ = writeln!(s, "\n### {family}\n\n{header}\n{rule}");
            }
            let _ = writeln!(s, "{}", self.line(row));
        }
        s += &self.summary();
        s
    }

    fn line(&self, row: &Row) -> String {
        let Some(ms) = row.ms() else {
            return format!(
                "| {} | skipped: {} |",
                row.name,
                row.skipped.as_deref().unwrap_or("")
            );
        };
        let mut l = format!(
            "| {} | {} | {} | {} | {:.1}% |",
            row.name,
            fmt_ms(ms),
            row.achieved().unwrap_or_default(),
            fmt_ms(row.floor_ms),
            100.0 * row.floor_fraction.unwrap_or(0.0)
        );
        if self.compared() {
            let cells: Vec<(String, String)> = ["eager", "compile"]
                .iter()
                .map(|mode| match row.torch_best(mode) {
                    Some((v, t)) => (
                        format!(
                            "{} ({})",
                            fmt_ms(t),
                            v.trim_start_matches(mode).trim_start_matches('-')
                        ),
                        format!("{:.2}x", t / ms),
                    ),
                    None => ("—".into(), "—".into()),
                })
                .collect();
            l += &format!(
                " {} | {} | {} | {} |",
                cells[0].0, cells[1].0, cells[0].1, cells[1].1
            );
        }
        l
    }

    /// Geometric means per family: how close to the floor, and how we compare with PyTorch.
    fn summary(&self) -> String {
        let mut s = String::from("\n### summary (geometric means)\n\n");
        let mut families: Vec<&str> = self.rows.iter().map(|r| r.family).collect();
        families.dedup();
        for f in families {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.family == f).collect();
            let floor = geomean(rows.iter().filter_map(|r| r.floor_fraction));
            let mut line = format!("- {f}: {:.1}% of floor", 100.0 * floor.unwrap_or(0.0));
            for mode in ["eager", "compile"] {
                let ratios = rows
                    .iter()
                    .filter_map(|r| Some(r.torch_best(mode)?.1 / r.ms()?));
                if let Some(g) = geomean(ratios) {
                    let _ = write!(line, ", PyTorch {mode} / ours {g:.2}x");
                }
            }
            s += &line;
            s.push('\n');
        }
        s
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.4}")
    }
}

fn geomean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for x in v.filter(|x| *x > 0.0) {
        sum += x.ln();
        n += 1;
    }
    (n > 0).then(|| (sum / n as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::torch::{PeerResult, PeerRun};
    use crate::bench::{items, Selection};

    fn peaks() -> Peaks {
        Peaks {
            bandwidth: 1e11,
            flops: 1e12,
            source: "test".into(),
        }
    }

    #[test]
    fn rows_carry_floor_fractions_and_torch_ratios() {
        let sel = Selection {
            models: vec![crate::nn::Arch::ResNet18],
            step: None,
            filters: vec!["pgd/".into()],
            ..Selection::default()
        };
        let item = &items(&sel).unwrap()[0];
        let floor_s = item.bytes / 1e11;
        let m = Measurement {
            median_s: 2.0 * floor_s,
            min_s: floor_s,
            samples: 3,
            runs_per_sample: 1,
        };
        let mut rep = Report {
            rlnet_version: "test",
            device: "cpu".into(),
            batch: 128,
            peaks: peaks(),
            torch_version: None,
            torch_device: None,
            rows: vec![Row::new(item, &peaks(), Ok(m))],
        };
        assert_eq!(rep.rows[0].bound, "memory");
        assert!((rep.rows[0].floor_fraction.unwrap() - 0.5).abs() < 1e-12);
        let ours_ms = 2e3 * floor_s;
        rep.add_torch(PeerRun {
            torch_version: "2.5.1".into(),
            device: "cpu".into(),
            threads: Some(2),
            results: ["eager-f32", "eager-bf16", "compile-f32"]
                .iter()
                .zip([3.0, 1.5, 4.0])
                .map(|(v, k)| PeerResult {
                    name: item.name.clone(),
                    variant: Some(v.to_string()),
                    ms: Some(k * ours_ms),
                    note: None,
                    error: None,
                    skipped: None,
                })
                .collect(),
        });
        let best = rep.rows[0].torch_best("eager").unwrap();
        assert_eq!(best.0, "eager-bf16");
        let md = rep.markdown();
        assert!(md.contains("| 1.50x | 4.00x |"), "{md}");
        assert!(md.contains("50.0%"), "{md}");
        assert!(
            md.contains("PyTorch eager / ours 1.50x, PyTorch compile / ours 4.00x"),
            "{md}"
        );
    }
}
