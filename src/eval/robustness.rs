//! The robustness evaluation of one BN set as `rlnet eval` and the pipeline run it: the
//! chosen attacks, the ε sweep and the gradient-masking checks, written into its `Accuracy`.

use super::attacks::{evaluate_attacks, pgd_accuracy, AttackKind, AttackSettings};
use super::masking::{self, EpsPoint};
use super::Accuracy;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::nn::{Domain, Model};

/// What to run beyond clean accuracy.
#[derive(Clone, Debug, PartialEq)]
pub struct RobustnessPlan {
    pub attacks: Vec<AttackKind>,
    pub settings: AttackSettings,
    /// The ε values of the sweep (fractions of 1), when asked.
    pub sweep: Option<Vec<f32>>,
    /// Run the gradient-masking checks (adds PGD, APGD-CE and Square to the attacks).
    pub masking: bool,
}

impl RobustnessPlan {
    /// Plain PGD-K at 8/255 with one start: the training reports' evaluation.
    pub fn pgd(steps: usize, seed: u64) -> Self {
        RobustnessPlan {
            attacks: vec![AttackKind::Pgd],
            settings: AttackSettings {
                pgd_steps: steps,
                ..AttackSettings::standard(seed)
            },
            sweep: None,
            masking: false,
        }
    }

    /// The settings checked, for a model with `classes` classes.
    pub fn validate(&self, classes: usize) -> Result<()> {
        self.settings.validate()?;
        let targeted = self
            .attacks
            .iter()
            .any(|k| matches!(k, AttackKind::ApgdT | AttackKind::AutoAttack));
        if targeted && classes < 4 {
            return Err(Error::Config(format!(
                "APGD-T's DLR loss needs at least 4 classes; the model has {classes}"
            )));
        }
        if let Some(sweep) = &self.sweep {
            if let Some(bad) = sweep.iter().find(|e| !(**e > 0.0 && **e <= 1.0)) {
                return Err(Error::Config(format!(
                    "--eps-sweep values must be in (0, 255] (units of 1/255), got {}",
                    bad * 255.0
                )));
            }
        }
        Ok(())
    }

    /// The attacks run: those asked for, plus what the masking checks compare.
    pub fn attacks_run(&self) -> Vec<AttackKind> {
        let mut kinds = self.attacks.clone();
        if self.masking {
            for k in masking::NEEDED {
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
        }
        kinds
    }

    /// Runs the plan on `set` under `domain` and writes the results into `acc` (whose clean
    /// accuracy was measured on the same set): the attacks, PGD's accuracy as `pgd_acc`, the
    /// sweep and the masking verdict. `progress` hears each finished batch of the attacks.
    pub fn run(
        &self,
        model: &Model,
        set: &ImageSet,
        domain: Domain,
        batch: usize,
        acc: &mut Accuracy,
        progress: impl FnMut(usize),
    ) {
        let s = &self.settings;
        let report = evaluate_attacks(model, set, domain, &self.attacks_run(), s, batch, progress);
        if self.attacks.contains(&AttackKind::Pgd) {
            let label = s.label(AttackKind::Pgd);
            acc.pgd_acc = report
                .attacks
                .iter()
                .find(|a| a.attack == label)
                .map(|a| a.acc);
            acc.pgd_steps = Some(s.pgd_steps);
        }
        let sweep_eps = self.sweep.clone().unwrap_or_else(|| match self.masking {
            true => masking::DEFAULT_SWEEP.iter().map(|e| e / 255.0).collect(),
            false => Vec::new(),
        });
        if self.masking {
            let evidence = masking::gather(model, set, domain, s, &report, &sweep_eps, batch);
            acc.eps_sweep = evidence.sweep.clone();
            acc.masking = Some(masking::judge(&evidence));
        } else if !sweep_eps.is_empty() {
            acc.eps_sweep = sweep_eps
                .iter()
                .map(|&eps| EpsPoint {
                    eps,
                    acc: pgd_accuracy(
                        model,
                        set,
                        domain,
                        &AttackSettings { eps, ..s.clone() },
                        batch,
                    ),
                })
                .collect();
        }
        acc.attacks = report
            .attacks
            .into_iter()
            .filter(|a| self.attacks.iter().any(|&k| s.label(k) == a.attack))
            .collect();
    }
}

/// Parses an ε: a fraction ("0.03137") or a count of 1/255 ("8/255").
pub fn parse_eps(s: &str) -> Result<f32> {
    let bad = || {
        Error::Config(format!(
            "--eps takes a number in (0, 1] or N/255 (e.g. 8/255), got {s:?}"
        ))
    };
    let v = match s.split_once('/') {
        Some((num, den)) => {
            let num: f32 = num.trim().parse().map_err(|_| bad())?;
            let den: f32 = den.trim().parse().map_err(|_| bad())?;
            num / den
        }
        None => s.trim().parse().map_err(|_| bad())?,
    };
    if !(v > 0.0 && v <= 1.0) {
        return Err(Error::Config(format!(
            "the attack radius ε must be in (0, 1] for images in [0, 1], got {s}"
        )));
    }
    Ok(v)
}

/// Parses `--eps-sweep`: comma-separated values in units of 1/255.
pub fn parse_sweep(s: &str) -> Result<Vec<f32>> {
    s.split(',')
        .map(|v| {
            let x: f32 = v.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "--eps-sweep takes comma-separated numbers in units of 1/255 (e.g. 2,4,8,16), got {v:?}"
                ))
            })?;
            if !(x > 0.0 && x <= 255.0) {
                return Err(Error::Config(format!(
                    "--eps-sweep values must be in (0, 255] (units of 1/255), got {x}"
                )));
            }
            Ok(x / 255.0)
        })
        .collect()
}
