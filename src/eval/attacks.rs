//! The strong robustness evaluation: PGD with restarts, APGD-CE, APGD-T, Square and
//! AutoAttack's standard ensemble (APGD-CE, then APGD-T, then Square on the points still
//! correct; an image counts as robust only if it survives all three), each as an accuracy
//! over a test set under one BN set, at one L∞ radius.

use super::bn_name;
use crate::data::batch::make_batch;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::nn::{Domain, Model};
use crate::robust::apgd::{self, ApgdConfig};
use crate::robust::objective::{self, Objective};
use crate::robust::pgd::{attack, Attack, AttackLoss, PgdConfig};
use crate::robust::square::{self, SquareConfig};
use crate::robust::victim::{rows, Victim};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One attack of `--attack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttackKind {
    Pgd,
    ApgdCe,
    ApgdT,
    Square,
    /// AutoAttack's standard version without FAB-T: APGD-CE → APGD-T → Square.
    AutoAttack,
}

impl AttackKind {
    pub const ALL: [AttackKind; 5] = [
        AttackKind::Pgd,
        AttackKind::ApgdCe,
        AttackKind::ApgdT,
        AttackKind::Square,
        AttackKind::AutoAttack,
    ];

    /// The name `--attack` takes.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Pgd => "pgd",
            AttackKind::ApgdCe => "apgd-ce",
            AttackKind::ApgdT => "apgd-t",
            AttackKind::Square => "square",
            AttackKind::AutoAttack => "aa",
        }
    }

    /// A comma-separated list, each name once, in the order given.
    pub fn parse_list(s: &str) -> Result<Vec<AttackKind>> {
        let mut out = Vec::new();
        for name in s.split(',').map(str::trim) {
            let kind = Self::ALL
                .into_iter()
                .find(|k| k.name() == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                    Error::Config(format!(
                        "unknown attack {name:?} in --attack; expected a comma-separated list of {}",
                        names.join(", ")
                    ))
                })?;
            if !out.contains(&kind) {
                out.push(kind);
            }
        }
        Ok(out)
    }
}

/// The attacks' parameters. `eps` is the L∞ radius of images in [0, 1].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackSettings {
    pub eps: f32,
    pub pgd_steps: usize,
    /// PGD random starts; an image is robust only if it survives every one.
    pub restarts: usize,
    pub apgd_iters: usize,
    /// APGD-T's target classes per image (9 in AutoAttack, capped at classes − 1).
    pub targets: usize,
    pub square_queries: usize,
    pub seed: u64,
}

impl AttackSettings {
    /// AutoAttack's standard settings at ε = 8/255, with PGD-20 (one start) beside them.
    pub fn standard(seed: u64) -> Self {
        AttackSettings {
            eps: 8.0 / 255.0,
            pgd_steps: 20,
            restarts: 1,
            apgd_iters: 100,
            targets: 9,
            square_queries: 5000,
            seed,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.eps > 0.0 && self.eps <= 1.0) {
            return Err(Error::Config(format!(
                "the attack radius ε must be in (0, 1] for images in [0, 1], got {}",
                self.eps
            )));
        }
        for (what, v) in [
            ("PGD steps", self.pgd_steps),
            ("PGD restarts", self.restarts),
            ("APGD iterations", self.apgd_iters),
            ("APGD-T target classes", self.targets),
            ("Square queries", self.square_queries),
        ] {
            if v == 0 {
                return Err(Error::Config(format!("{what} must be at least 1, got 0")));
            }
        }
        Ok(())
    }

    /// PGD at this radius with the step ε/4 (2/255 at ε = 8/255, the training attack's).
    pub fn pgd(&self) -> PgdConfig {
        PgdConfig {
            eps: self.eps,
            alpha: self.eps / 4.0,
            steps: self.pgd_steps,
        }
    }

    fn apgd(&self) -> ApgdConfig {
        ApgdConfig {
            eps: self.eps,
            iters: self.apgd_iters,
            seed: self.seed,
        }
    }

    /// The label of `kind` in reports: "PGD-20", "PGD-20×5", "APGD-CE", ...
    pub fn label(&self, kind: AttackKind) -> String {
        match kind {
            AttackKind::Pgd if self.restarts > 1 => {
                format!("PGD-{}x{}", self.pgd_steps, self.restarts)
            }
            AttackKind::Pgd => format!("PGD-{}", self.pgd_steps),
            AttackKind::ApgdCe => "APGD-CE".into(),
            AttackKind::ApgdT => "APGD-T".into(),
            AttackKind::Square => "Square".into(),
            AttackKind::AutoAttack => "AA".into(),
        }
    }
}

/// One attack's accuracy on a test set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackAccuracy {
    /// "PGD-20", "APGD-CE", "APGD-T", "Square" or "AA".
    pub attack: String,
    pub eps: f32,
    pub acc: f32,
    /// Wall time of this attack alone (AA: its components not run on their own).
    pub secs: f64,
}

/// The clean accuracy and each attack's, on `set` under `domain`'s BN set.
pub struct AttackReport {
    pub bn: String,
    pub images: usize,
    pub clean_acc: f32,
    pub attacks: Vec<AttackAccuracy>,
}

/// Runs `kinds` over `set` in batches of `batch`; `progress` hears each finished batch's size.
pub fn evaluate_attacks(
    model: &Model,
    set: &ImageSet,
    domain: Domain,
    kinds: &[AttackKind],
    s: &AttackSettings,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> AttackReport {
    let victim = Victim::new(model, domain);
    let mut survivors = vec![0usize; kinds.len()];
    let mut secs = vec![0f64; kinds.len()];
    let mut clean = 0;
    let indices: Vec<usize> = (0..set.len()).collect();
    for (bi, chunk) in indices.chunks(batch.max(1)).enumerate() {
        let (x, y) = make_batch(set, chunk, None, 0);
        let ids: Vec<u64> = chunk.iter().map(|&i| i as u64).collect();
        let z = victim.logits(&x);
        let correct_now = objective::correct(&z, victim.classes(), &y);
        clean += correct_now.iter().filter(|&&c| c).count();
        let mut batch_run = BatchRun {
            victim,
            s,
            x: &x,
            y: &y,
            ids: &ids,
            clean_logits: &z,
            clean: &correct_now,
            key: bi as u64,
            done: Vec::new(),
        };
        for (slot, &kind) in kinds.iter().enumerate() {
            let t0 = Instant::now();
            let robust = batch_run.robust(kind);
            secs[slot] += t0.elapsed().as_secs_f64();
            survivors[slot] += robust.iter().filter(|&&r| r).count();
        }
        progress(chunk.len());
    }
    let n = set.len().max(1) as f32;
    AttackReport {
        bn: bn_name(domain).into(),
        images: set.len(),
        clean_acc: clean as f32 / n,
        attacks: kinds
            .iter()
            .zip(survivors.iter().zip(&secs))
            .map(|(&k, (&left, &t))| AttackAccuracy {
                attack: s.label(k),
                eps: s.eps,
                acc: left as f32 / n,
                secs: t,
            })
            .collect(),
    }
}

/// PGD accuracy with `s`'s steps and restarts.
pub fn pgd_accuracy(
    model: &Model,
    set: &ImageSet,
    domain: Domain,
    s: &AttackSettings,
    batch: usize,
) -> f32 {
    evaluate_attacks(model, set, domain, &[AttackKind::Pgd], s, batch, |_| {}).attacks[0].acc
}

/// One batch under attack: which images survive each attack, each attack run once.
struct BatchRun<'a> {
    victim: Victim<'a>,
    s: &'a AttackSettings,
    x: &'a Tensor,
    y: &'a [u32],
    ids: &'a [u64],
    clean_logits: &'a [f32],
    clean: &'a [bool],
    /// The batch's PGD key (its index), as `super::evaluate` keys it.
    key: u64,
    /// Attacks already run on every clean-correct image, with their survivors.
    done: Vec<(AttackKind, Vec<bool>)>,
}

impl BatchRun<'_> {
    /// Which images are correct under `kind` (clean-misclassified ones never are).
    fn robust(&mut self, kind: AttackKind) -> Vec<bool> {
        if let Some((_, r)) = self.done.iter().find(|(k, _)| *k == kind) {
            return r.clone();
        }
        let r = match kind {
            AttackKind::AutoAttack => {
                let mut alive = self.clean.to_vec();
                for part in [AttackKind::ApgdCe, AttackKind::ApgdT, AttackKind::Square] {
                    let survived = match self.done.iter().find(|(k, _)| *k == part) {
                        Some((_, r)) => r.clone(),
                        None => self.run_on(part, &alive),
                    };
                    for (a, s) in alive.iter_mut().zip(survived) {
                        *a &= s;
                    }
                }
                alive
            }
            AttackKind::Pgd => self.pgd(),
            _ => self.run_on(kind, self.clean),
        };
        self.done.push((kind, r.clone()));
        r
    }

    /// PGD with every restart on the whole batch, as `super::evaluate` attacks it (restart 0
    /// uses the batch key, so PGD-K here is the evaluation's PGD-K).
    fn pgd(&self) -> Vec<bool> {
        let cfg = self.s.pgd();
        let model = self.victim.model;
        let mut alive = self.clean.to_vec();
        for r in 0..self.s.restarts as u64 {
            let spec = Attack {
                pgd: &cfg,
                domain: self.victim.domain,
                loss: AttackLoss::CrossEntropySum,
                seed: self.s.seed,
            };
            let adv = attack(model, self.x, self.y, &spec, self.key | (r << 32));
            // The attacked batch stays on the model's device; only its logits come back.
            let z = super::logits(model, &adv, self.victim.domain);
            let k = self.victim.classes();
            for (a, ok) in alive
                .iter_mut()
                .zip(objective::correct(z.data(), k, self.y))
            {
                *a &= ok;
            }
        }
        alive
    }

    /// `kind` (APGD-CE, APGD-T or Square) on the images flagged in `on`; the rest count as
    /// not robust.
    fn run_on(&self, kind: AttackKind, on: &[bool]) -> Vec<bool> {
        let pick: Vec<usize> = (0..on.len()).filter(|&i| on[i]).collect();
        let mut out = vec![false; on.len()];
        if pick.is_empty() {
            return out;
        }
        let x = rows(self.x, &pick);
        let y: Vec<u32> = pick.iter().map(|&i| self.y[i]).collect();
        let ids: Vec<u64> = pick.iter().map(|&i| self.ids[i]).collect();
        let k = self.victim.classes();
        let survived = match kind {
            AttackKind::ApgdCe => {
                apgd::run(
                    self.victim,
                    &x,
                    &y,
                    &ids,
                    Objective::CrossEntropy,
                    &self.s.apgd(),
                    0,
                )
                .robust
            }
            AttackKind::ApgdT => {
                let z: Vec<f32> = pick
                    .iter()
                    .flat_map(|&i| self.clean_logits[i * k..(i + 1) * k].to_vec())
                    .collect();
                let cfg = self.s.apgd();
                apgd::run_targeted(self.victim, &x, &y, &ids, &z, self.s.targets, &cfg).robust
            }
            AttackKind::Square => {
                let cfg = SquareConfig {
                    eps: self.s.eps,
                    queries: self.s.square_queries,
                    seed: self.s.seed,
                };
                square::run(self.victim, &x, &y, &ids, &cfg).robust
            }
            AttackKind::Pgd | AttackKind::AutoAttack => unreachable!("handled by robust()"),
        };
        for (&i, r) in pick.iter().zip(survived) {
            out[i] = r;
        }
        out
    }
}
