//! Runs of one method over several seeds, summarised: the mean and sample standard deviation
//! of each headline number (CA, NPA, AdvA, AutoAttack) for the student and for its teacher.
//! Runs belong to one method when their folders have the same name (`seed0/snl`,
//! `seed1/snl`, ...), the layout `tools/compare_methods.sh` writes.

use super::run::{Headlines, Run};

/// Mean and sample standard deviation (n − 1; 0 for a single value) of `n` values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Stat {
    /// None when `values` is empty.
    pub fn of(values: &[f64]) -> Option<Stat> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = match n {
            1 => 0.0,
            _ => values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64,
        };
        Some(Stat {
            mean,
            std: var.sqrt(),
            n,
        })
    }
}

/// The headline numbers a summary covers, in percent.
pub const METRICS: [&str; 4] = ["CA", "NPA", "AdvA", "AA"];

/// One model's headline numbers in percent, in [`METRICS`] order.
fn metrics(m: &impl Headlines) -> [Option<f64>; 4] {
    let p = |v: Option<f32>| v.map(|v| 100.0 * v as f64);
    [
        p(m.ca()),
        p(m.npa()),
        p(m.adva().map(|a| a.0)),
        p(m.attack("AA")),
    ]
}

/// What a method's runs measured, each number over the runs that have it.
#[derive(Clone, Debug)]
pub struct MethodSummary {
    /// The run folders' shared name.
    pub name: String,
    pub runs: usize,
    /// ReLUs kept by the students (the largest, should they differ).
    pub kept_relus: usize,
    /// The students' numbers, in [`METRICS`] order.
    pub student: [Option<Stat>; 4],
    /// Their teachers' (pipeline runs measure the teacher beside the student).
    pub teacher: [Option<Stat>; 4],
    pub teacher_relus: Option<usize>,
}

fn stats(rows: &[[Option<f64>; 4]]) -> [Option<Stat>; 4] {
    std::array::from_fn(|k| Stat::of(&rows.iter().filter_map(|r| r[k]).collect::<Vec<_>>()))
}

/// The runs grouped by folder name, in first-seen order; None when no name occurs twice
/// (nothing to summarise over seeds).
pub fn by_method(runs: &[Run]) -> Option<Vec<MethodSummary>> {
    let mut names: Vec<String> = Vec::new();
    for r in runs {
        if !names.contains(&r.name()) {
            names.push(r.name());
        }
    }
    if names.len() == runs.len() {
        return None;
    }
    let summaries = names
        .into_iter()
        .map(|name| {
            let group: Vec<&Run> = runs.iter().filter(|r| r.name() == name).collect();
            let students: Vec<_> = group.iter().map(|r| metrics(&r.report)).collect();
            let teachers: Vec<_> = group
                .iter()
                .filter_map(|r| r.report.teacher.as_ref().map(metrics))
                .collect();
            MethodSummary {
                runs: group.len(),
                kept_relus: group.iter().map(|r| r.report.kept_relus).max().unwrap_or(0),
                student: stats(&students),
                teacher: stats(&teachers),
                teacher_relus: group
                    .iter()
                    .find_map(|r| r.report.teacher.as_ref().map(|t| t.kept_relus)),
                name,
            }
        })
        .collect();
    Some(summaries)
}

#[cfg(test)]
mod tests {
    use super::Stat;

    #[test]
    fn mean_and_sample_deviation() {
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(s.mean, 2.5);
        assert!((s.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(Stat::of(&[7.0]).unwrap().std, 0.0);
        assert!(Stat::of(&[]).is_none());
    }
}
