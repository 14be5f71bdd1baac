//! Gradient-masking checks (Athalye, Carlini & Wagner 2018; Carlini et al. 2019, "On
//! evaluating adversarial robustness"): signs that a white-box attack's numbers overstate
//! robustness because its gradients are useless, not because the model is robust.
//!
//! 1. At ε = 1 any image can be replaced by any other: APGD-CE's accuracy must fall to about 0.
//! 2. More iterations cannot help the model: PGD-100 ≤ PGD-K.
//! 3. A stronger optimiser cannot help it either: APGD-CE ≤ PGD-K.
//! 4. A black-box attack must not beat the white-box ones: Square ≥ the best white-box.
//! 5. Accuracy falls (does not rise) as ε grows.
//!
//! Each comparison allows a tolerance of one image or one percentage point, whichever is
//! larger, since the attacks' random starts differ.

use super::attacks::{evaluate_attacks, pgd_accuracy, AttackKind, AttackReport, AttackSettings};
use crate::data::ImageSet;
use crate::nn::{Domain, Model};
use serde::{Deserialize, Serialize};

/// Accuracy at ε = 1 below which check 1 passes (plus the one-image tolerance).
pub const EPS_ONE_MAX_ACC: f32 = 0.02;
/// The default ε sweep, in units of 1/255.
pub const DEFAULT_SWEEP: [f32; 4] = [2.0, 4.0, 8.0, 16.0];

/// Accuracy under PGD at one radius.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpsPoint {
    pub eps: f32,
    pub acc: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaskingCheck {
    pub check: String,
    pub passed: bool,
    /// The numbers compared, e.g. "PGD-100 41.0% vs PGD-20 42.0%".
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaskingReport {
    pub checks: Vec<MaskingCheck>,
    /// True when any check failed.
    pub suspected: bool,
    pub verdict: String,
}

/// The accuracies the checks compare.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskingEvidence {
    pub images: usize,
    /// The PGD of the run's settings (K steps) and its label.
    pub pgd: (String, f32),
    pub pgd_100: f32,
    pub apgd_ce: f32,
    /// The strongest white-box accuracy (lowest): PGD-K, PGD-100, APGD-CE and APGD-T if run.
    pub white_box: f32,
    pub square: f32,
    pub at_eps_one: f32,
    /// PGD-K accuracy at increasing ε.
    pub sweep: Vec<EpsPoint>,
}

/// The attacks the checks need beside PGD-100, ε = 1 and the sweep.
pub const NEEDED: [AttackKind; 3] = [AttackKind::Pgd, AttackKind::ApgdCe, AttackKind::Square];

/// Runs what `report` lacks (PGD-100, APGD-CE at ε = 1, the sweep) and collects the evidence.
/// `report` must hold the attacks of [`NEEDED`], run with `s`.
pub fn gather(
    model: &Model,
    set: &ImageSet,
    domain: Domain,
    s: &AttackSettings,
    report: &AttackReport,
    sweep_eps: &[f32],
    batch: usize,
) -> MaskingEvidence {
    let find = |label: &str| {
        report
            .attacks
            .iter()
            .find(|a| a.attack == label)
            .map(|a| a.acc)
    };
    let pgd_label = s.label(AttackKind::Pgd);
    let pgd_at = |eps: f32, pgd_steps: usize| {
        let cfg = AttackSettings {
            eps,
            pgd_steps,
            ..s.clone()
        };
        pgd_accuracy(model, set, domain, &cfg, batch)
    };
    let pgd = find(&pgd_label).expect("the report holds PGD");
    let pgd_100 = pgd_at(s.eps, 100);
    let apgd_ce = find("APGD-CE").expect("the report holds APGD-CE");
    let white_box = [Some(pgd), Some(pgd_100), Some(apgd_ce), find("APGD-T")]
        .into_iter()
        .flatten()
        .fold(f32::INFINITY, f32::min);
    let mut sweep: Vec<f32> = sweep_eps.to_vec();
    sweep.sort_by(f32::total_cmp);
    sweep.dedup();
    MaskingEvidence {
        images: set.len(),
        pgd: (pgd_label, pgd),
        pgd_100,
        apgd_ce,
        white_box,
        square: find("Square").expect("the report holds Square"),
        at_eps_one: {
            let cfg = AttackSettings {
                eps: 1.0,
                ..s.clone()
            };
            let r = evaluate_attacks(
                model,
                set,
                domain,
                &[AttackKind::ApgdCe],
                &cfg,
                batch,
                |_| {},
            );
            r.attacks[0].acc
        },
        sweep: sweep
            .into_iter()
            .map(|eps| EpsPoint {
                eps,
                acc: if eps == s.eps {
                    pgd
                } else {
                    pgd_at(eps, s.pgd_steps)
                },
            })
            .collect(),
    }
}

impl MaskingReport {
    /// One warning per failed check of BN set `bn`, naming it and its numbers.
    pub fn warnings(&self, bn: &str) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| {
                format!(
                    "BN_{bn}: gradient-masking check failed: {} ({}); the white-box numbers may \
                     overstate robustness",
                    c.check, c.detail
                )
            })
            .collect()
    }
}

/// The five checks and the verdict.
pub fn judge(e: &MaskingEvidence) -> MaskingReport {
    let tol = (1.0 / e.images.max(1) as f32).max(0.01) + 1e-6;
    let pct = |v: f32| format!("{:.1}%", 100.0 * v);
    let (pgd_label, pgd) = (&e.pgd.0, e.pgd.1);
    let rising: Vec<String> = e
        .sweep
        .windows(2)
        .filter(|w| w[1].acc > w[0].acc + tol)
        .map(|w| format!("{:.1}/255 → {:.1}/255", 255.0 * w[0].eps, 255.0 * w[1].eps))
        .collect();
    let sweep_text: Vec<String> = e
        .sweep
        .iter()
        .map(|p| format!("{:.1}/255: {}", 255.0 * p.eps, pct(p.acc)))
        .collect();
    let checks = vec![
        MaskingCheck {
            check: "accuracy at eps = 1 falls to about 0".into(),
            passed: e.at_eps_one <= EPS_ONE_MAX_ACC + tol,
            detail: format!("APGD-CE at eps = 1: {}", pct(e.at_eps_one)),
        },
        MaskingCheck {
            check: format!("PGD-100 <= {pgd_label}"),
            passed: e.pgd_100 <= pgd + tol,
            detail: format!("PGD-100 {} vs {pgd_label} {}", pct(e.pgd_100), pct(pgd)),
        },
        MaskingCheck {
            check: format!("APGD-CE <= {pgd_label}"),
            passed: e.apgd_ce <= pgd + tol,
            detail: format!("APGD-CE {} vs {pgd_label} {}", pct(e.apgd_ce), pct(pgd)),
        },
        MaskingCheck {
            check: "black-box not stronger than white-box".into(),
            passed: e.square + tol >= e.white_box,
            detail: format!(
                "Square {} vs best white-box {}",
                pct(e.square),
                pct(e.white_box)
            ),
        },
        MaskingCheck {
            check: "accuracy falls as eps grows".into(),
            passed: rising.is_empty(),
            detail: match rising.is_empty() {
                true => sweep_text.join(", "),
                false => format!("{}; rises at {}", sweep_text.join(", "), rising.join(", ")),
            },
        },
    ];
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.check.as_str())
        .collect();
    let verdict = match failed.is_empty() {
        true => format!(
            "no sign of gradient masking ({} of {} checks passed)",
            checks.len(),
            checks.len()
        ),
        false => format!("gradient masking suspected: {}", failed.join("; ")),
    };
    MaskingReport {
        suspected: !failed.is_empty(),
        checks,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence() -> MaskingEvidence {
        MaskingEvidence {
            images: 200,
            pgd: ("PGD-20".into(), 0.40),
            pgd_100: 0.39,
            apgd_ce: 0.37,
            white_box: 0.36,
            square: 0.45,
            at_eps_one: 0.0,
            sweep: [(2.0, 0.6), (4.0, 0.5), (8.0, 0.4), (16.0, 0.2)]
                .iter()
                .map(|&(e, acc)| EpsPoint {
                    eps: e / 255.0,
                    acc,
                })
                .collect(),
        }
    }

    #[test]
    fn an_honest_evaluation_passes_every_check() {
        let r = judge(&evidence());
        assert!(!r.suspected, "{r:?}");
        assert!(r.verdict.starts_with("no sign"));
    }

    #[test]
    fn each_check_fires_on_its_symptom() {
        type Spoil = fn(&mut MaskingEvidence);
        let cases: [(&str, Spoil); 5] = [
            ("eps = 1", |e| e.at_eps_one = 0.3),
            ("PGD-100", |e| e.pgd_100 = 0.45),
            ("APGD-CE", |e| e.apgd_ce = 0.5),
            ("black-box", |e| e.square = 0.2),
            ("eps grows", |e| e.sweep[3].acc = 0.5),
        ];
        for (name, spoil) in cases {
            let mut e = evidence();
            spoil(&mut e);
            let r = judge(&e);
            let failed: Vec<&MaskingCheck> = r.checks.iter().filter(|c| !c.passed).collect();
            assert_eq!(failed.len(), 1, "{name}: {r:?}");
            assert!(failed[0].check.contains(name), "{name}: {r:?}");
            assert!(r.suspected && r.verdict.contains(name), "{}", r.verdict);
        }
    }
}
