//! One student optimisation step of stage 2 (spec §5.1 step 2.2) and stage 3 (spec §6 steps
//! 1-6): the first half H1 = ⌈B/2⌉ of the batch is clean (BN_c) with its AugMix view (BN_c),
//! the rest H2 is PGD-attacked against the student (BN_a, eval mode, the RSLAD KL objective
//! against the teacher's clean logits); the frozen teacher runs in eval mode with no gradient.
//! The loss is one of spec §6's modes; every KL target is the teacher's CLEAN logits (§9.5).
//! Stage 2 also accumulates the mask statistic D_l += Σ_{H1} |A^T_l − A^S_l| (`scores`).

use crate::autograd::{GradMode, Gradients, Graph, StatUpdate, Var};
use crate::device::ok;
use crate::error::{Error, Result};
use crate::nn::{Domain, Model, ModelOutput, Pass};
use crate::ops::{bn_act, elementwise};
use crate::optim::Sgd;
use crate::robust::pgd::{attack, Attack, AttackLoss, PgdConfig};
use crate::tensor::Tensor;
use crate::train::step::{PendingStats, StepKey, StepStats};
use serde::{Deserialize, Serialize};

/// Which views a term sees: the clean first half H1, its AugMix view, the adversarial half H2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Views {
    pub clean: bool,
    pub aug: bool,
    pub adv: bool,
}

impl Views {
    pub const NONE: Views = Views::of(false, false, false);

    const fn of(clean: bool, aug: bool, adv: bool) -> Views {
        Views { clean, aug, adv }
    }
}

/// The student loss as the composition of its terms (spec §6's table). A robust step has three
/// views (H1 clean and its AugMix view through BN_c, H2 adversarial through BN_a): CE and KL
/// are means over the three, AT the mean over `attention`'s views of Σ_taps AT(S_v, T_v), each
/// KL against the teacher's clean logits (§9.5). CE and KL together are weighted γ and α; one
/// alone enters unweighted (as in the reference: `rslad` is KL, `pgd-at` is CE, and PGD-AT's
/// attack then maximises CE instead of the KL); AT is weighted β, and β = 0 leaves it out.
/// The natural recipe has one view, the whole batch clean through BN_c, and no attack.
///
/// Names compose the terms: `rslad` (KL), `attn`, `augattn`, `advattn` (AT on the clean,
/// AugMix and adversarial views), `ce`; `pgd-at` and `natural` stand alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LossMode {
    /// The whole batch clean through BN_c, no attack, no AugMix (spec §6 end).
    pub natural: bool,
    pub ce: bool,
    pub kl: bool,
    pub attention: Views,
}

/// The term names a robust mode composes, in the order its name lists them.
const TERMS: [&str; 5] = ["rslad", "attn", "augattn", "advattn", "ce"];

impl LossMode {
    const fn robust(ce: bool, attention: Views) -> LossMode {
        LossMode {
            natural: false,
            ce,
            kl: true,
            attention,
        }
    }

    /// KL
    pub const RSLAD: LossMode = LossMode::robust(false, Views::NONE);
    /// γ·CE + α·KL (stage 2's mode)
    pub const RSLAD_CE: LossMode = LossMode::robust(true, Views::NONE);
    /// KL + β·AT_n
    pub const RSLAD_ATTN: LossMode = LossMode::robust(false, Views::of(true, false, false));
    /// KL + β·(AT_n+AT_a)/2
    pub const RSLAD_ATTN_AUGATTN: LossMode = LossMode::robust(false, Views::of(true, true, false));
    /// γ·CE + α·KL + β·(AT_n+AT_a)/2 (stage 3's default)
    pub const RSLAD_ATTN_AUGATTN_CE: LossMode =
        LossMode::robust(true, Views::of(true, true, false));
    /// KL + β·(AT_n+AT_a+AT_adv)/3, AT_adv against the teacher's BN_a taps on x_adv
    pub const RSLAD_ATTN_AUGATTN_ADVATTN: LossMode =
        LossMode::robust(false, Views::of(true, true, true));
    /// γ·CE + α·KL + β·(AT_n+AT_a+AT_adv)/3
    pub const RSLAD_ATTN_AUGATTN_ADVATTN_CE: LossMode =
        LossMode::robust(true, Views::of(true, true, true));
    /// CE alone (PGD-AT; its attack maximises the summed CE, spec §3)
    pub const PGD_AT: LossMode = LossMode {
        kl: false,
        ..LossMode::robust(true, Views::NONE)
    };
    /// The non-robust SENet recipe (spec §6 end): γ·CE + α·KL_T + β·AT on the clean batch.
    pub const NATURAL: LossMode = LossMode {
        natural: true,
        ..LossMode::robust(true, Views::of(true, false, false))
    };

    /// The modes of spec §6's table and the two baselines' (any other composition of the
    /// robust terms parses too).
    pub const ALL: [LossMode; 9] = [
        LossMode::RSLAD,
        LossMode::RSLAD_CE,
        LossMode::RSLAD_ATTN,
        LossMode::RSLAD_ATTN_AUGATTN,
        LossMode::RSLAD_ATTN_AUGATTN_CE,
        LossMode::RSLAD_ATTN_AUGATTN_ADVATTN,
        LossMode::RSLAD_ATTN_AUGATTN_ADVATTN_CE,
        LossMode::PGD_AT,
        LossMode::NATURAL,
    ];

    /// `natural`, `pgd-at`, or `rslad` joined by `+` with any of `attn`, `augattn`, `advattn`
    /// and `ce`, each at most once.
    pub fn parse(s: &str) -> Result<LossMode> {
        let bad = |why: &str| {
            let known: Vec<String> = LossMode::ALL.iter().map(|m| m.name()).collect();
            Error::Config(format!(
                "unknown loss mode {s:?}: {why}; expected `rslad` joined by `+` with any of \
                 attn, augattn, advattn, ce (such as {}), or pgd-at, or natural",
                known.join(", ")
            ))
        };
        match s {
            "natural" => return Ok(LossMode::NATURAL),
            "pgd-at" => return Ok(LossMode::PGD_AT),
            _ => {}
        }
        let mut seen = [false; TERMS.len()];
        for term in s.split('+') {
            let i = TERMS
                .iter()
                .position(|t| *t == term)
                .ok_or_else(|| bad(&format!("no term {term:?}")))?;
            if std::mem::replace(&mut seen[i], true) {
                return Err(bad(&format!("{term:?} twice")));
            }
        }
        let [kl, clean, aug, adv, ce] = seen;
        if !kl {
            return Err(bad("every robust mode has the KL term `rslad`"));
        }
        Ok(LossMode::robust(ce, Views::of(clean, aug, adv)))
    }

    /// The canonical name: `natural`, `pgd-at`, or the terms in the order of [`TERMS`].
    pub fn name(self) -> String {
        if self.natural {
            return "natural".into();
        }
        if !self.kl {
            return "pgd-at".into();
        }
        let a = self.attention;
        let on = [true, a.clean, a.aug, a.adv, self.ce];
        let terms: Vec<&str> = TERMS
            .iter()
            .zip(on)
            .filter(|(_, o)| *o)
            .map(|(t, _)| *t)
            .collect();
        terms.join("+")
    }

    /// Whether the second half of each batch is attacked.
    pub fn needs_attack(self) -> bool {
        !self.natural
    }

    /// Whether the batch carries an AugMix view of its first half (every robust mode assumes
    /// AugMix, spec §6).
    pub fn needs_augmix(self) -> bool {
        !self.natural
    }

    /// The views whose AT term enters under weights `w` (none when β = 0).
    fn attention_views(self, w: &DistillWeights) -> Views {
        match w.beta == 0.0 {
            true => Views::NONE,
            false => self.attention,
        }
    }
}

impl std::str::FromStr for LossMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<LossMode> {
        LossMode::parse(s)
    }
}

impl TryFrom<String> for LossMode {
    type Error = Error;
    fn try_from(s: String) -> Result<LossMode> {
        LossMode::parse(&s)
    }
}

impl From<LossMode> for String {
    fn from(m: LossMode) -> String {
        m.name()
    }
}

/// The loss weights: γ (CE), α (KL), β (AT) and the KL temperature T (spec §5, §6).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistillWeights {
    pub gamma: f32,
    pub alpha: f32,
    pub beta: f32,
    pub temperature: f32,
}

impl Default for DistillWeights {
    fn default() -> Self {
        DistillWeights {
            gamma: 0.5,
            alpha: 0.5,
            beta: 1000.0,
            temperature: 4.0,
        }
    }
}

/// One training batch.
pub struct DistillBatch<'a> {
    /// The whole batch [B, 3, H, W], raw pixels in [0, 1].
    pub x: &'a Tensor,
    /// The AugMix view of the first half H1 = ⌈B/2⌉ (robust modes only).
    pub aug: Option<&'a Tensor>,
    pub labels: &'a [u32],
}

/// Where the adversarial half comes from.
pub enum Adversary<'a> {
    /// PGD against the student (spec §3), its random start keyed by the step.
    Pgd { config: &'a PgdConfig, key: StepKey },
    /// Ready adversarial examples of H2 (tests pin them to leave PGD's randomness out).
    Given(&'a Tensor),
}

/// One step's loss and gradients, before the optimiser touches the student.
pub struct DistillGrads {
    pub stats: StepStats,
    pub grads: Gradients,
    /// The student's BN running-statistics updates, in forward order.
    pub updates: Vec<StatUpdate>,
}

/// One optimisation step of the student: loss and gradients (`distill_gradients` with PGD),
/// SGD (masks and running statistics are not parameters, so they get no gradient), then the
/// student's running-statistics updates. `scores` (stage 2) gets the mask statistic.
#[allow(clippy::too_many_arguments)]
pub fn distill_step(
    student: &mut Model,
    teacher: &Model,
    sgd: &mut Sgd,
    batch: &DistillBatch,
    mode: LossMode,
    w: &DistillWeights,
    pgd: &PgdConfig,
    lr: f32,
    key: StepKey,
    scores: Option<&mut [Tensor]>,
) -> Result<StepStats> {
    let adversary = Adversary::Pgd { config: pgd, key };
    let out = distill_gradients(student, teacher, batch, mode, w, &adversary, scores)?;
    sgd.step(&mut student.store, &out.grads, lr);
    ok(bn_act::apply_stat_updates(&mut student.store, &out.updates));
    Ok(out.stats)
}

/// The teacher's results for one input, copied out of its (gradient-free) graph.
struct TeacherOut {
    logits: Tensor,
    taps: Vec<Tensor>,
    relus: Vec<Tensor>,
}

/// The frozen teacher on `x`: eval mode (running statistics read, never updated), no gradient.
fn teacher_pass(teacher: &Model, x: &Tensor, domain: Domain, keep_relus: bool) -> TeacherOut {
    let mut g = Graph::new(&teacher.store, GradMode::None);
    let xv = g.input(x.clone(), false);
    let out = teacher.forward(
        &mut g,
        xv,
        Pass {
            domain,
            train: false,
        },
    );
    let taps = out.taps.iter().map(|&v| g.value(v).clone()).collect();
    let relus = match keep_relus {
        true => out.relus.iter().map(|&v| g.value(v).clone()).collect(),
        false => Vec::new(),
    };
    TeacherOut {
        logits: g.value(out.logits).clone(),
        taps,
        relus,
    }
}

fn rows(ts: &[Tensor], start: usize, end: usize) -> Vec<Tensor> {
    ts.iter().map(|t| t.slice_rows(start, end)).collect()
}

/// Σ_j AT(S^j, T^j) over the model's taps.
fn attention_sum(g: &mut Graph<'_>, student_taps: &[Var], teacher_taps: &[Tensor]) -> Var {
    let terms: Vec<Var> = student_taps
        .iter()
        .zip(teacher_taps)
        .map(|(&s, t)| g.attention(s, t))
        .collect();
    sum(g, &terms)
}

fn sum(g: &mut Graph<'_>, terms: &[Var]) -> Var {
    let mut total = terms[0];
    for &t in &terms[1..] {
        total = g.add(total, t);
    }
    total
}

fn mean(g: &mut Graph<'_>, terms: &[Var]) -> Var {
    if let [one] = terms {
        return *one;
    }
    let s = sum(g, terms);
    g.scale(s, 1.0 / terms.len() as f32)
}

/// scores[l] += Σ over the samples of |A^T_l − A^S_l|, on the scores' device, no gradient.
fn accumulate_scores(
    scores: &mut [Tensor],
    teacher_relus: &[Tensor],
    g: &Graph<'_>,
    student_relus: &[Var],
) -> Result<()> {
    for ((acc, t), &s) in scores.iter_mut().zip(teacher_relus).zip(student_relus) {
        let t = t.to_device(g.device())?;
        let s = g.value(s);
        elementwise::abs_diff_accumulate(g.device(), acc, &t, s)?;
    }
    Ok(())
}

/// The checks that keep bad batches, views, mask-score buffers or mismatched models from
/// reaching a kernel.
fn validate(
    student: &Model,
    teacher: &Model,
    batch: &DistillBatch,
    mode: LossMode,
    adversary: &Adversary,
    scores: Option<&[Tensor]>,
) -> Result<()> {
    let xs = batch.x.shape();
    let n = batch.labels.len();
    if xs.len() != 4 || xs[0] != n || n == 0 {
        return Err(Error::shape(
            "distill_step batch",
            format!("images [B, 3, H, W] with B = {n} labels (B > 0)"),
            format!("{xs:?}"),
        ));
    }
    let h = n.div_ceil(2);
    let per_image = &xs[1..];
    match (mode.needs_augmix(), batch.aug) {
        (true, None) => {
            return Err(Error::Config(format!(
                "loss mode {} needs the AugMix view of the first half of the batch",
                mode.name()
            )))
        }
        (false, Some(_)) => {
            return Err(Error::Config(format!(
                "loss mode {} takes no AugMix view",
                mode.name()
            )))
        }
        (true, Some(a))
            if a.shape().len() != 4 || a.dim(0) != h || &a.shape()[1..] != per_image =>
        {
            return Err(Error::shape(
                "distill_step AugMix view",
                format!("the first ⌈B/2⌉ = {h} images, shaped like the batch's"),
                format!("{:?}", a.shape()),
            ))
        }
        _ => {}
    }
    if let Adversary::Given(x_adv) = adversary {
        let want: Vec<usize> = [&[n - h][..], per_image].concat();
        if !mode.needs_attack() || x_adv.shape() != want.as_slice() {
            return Err(Error::shape(
                "distill_step adversarial half",
                format!("{want:?} in a mode with an attack"),
                format!("{:?} in mode {}", x_adv.shape(), mode.name()),
            ));
        }
    }
    let (sc, tc) = (&student.config, &teacher.config);
    let same_layers = student.relu_layers.len() == teacher.relu_layers.len()
        && student
            .relu_layers
            .iter()
            .zip(&teacher.relu_layers)
            .all(|(a, b)| a.shape == b.shape);
    if sc.arch != tc.arch
        || sc.num_classes != tc.num_classes
        || sc.input_size != tc.input_size
        || !same_layers
    {
        return Err(Error::Config(format!(
            "teacher ({} w{} {} classes) and student ({} w{} {} classes) must share the \
             architecture, width, input size and classes",
            tc.arch.name(),
            tc.width_mult,
            tc.num_classes,
            sc.arch.name(),
            sc.width_mult,
            sc.num_classes
        )));
    }
    if let Some(scores) = scores {
        let on_gpu = student.store.device().gpu().is_some();
        let fits = scores.len() == student.relu_layers.len()
            && scores
                .iter()
                .zip(&student.relu_layers)
                .all(|(s, l)| s.shape() == l.shape && s.is_cuda() == on_gpu);
        if !fits {
            return Err(Error::shape(
                "distill_step mask scores",
                format!(
                    "one [C, H, W] tensor per ReLU layer ({}) on the student's device",
                    student.relu_layers.len()
                ),
                format!(
                    "{:?}",
                    scores
                        .iter()
                        .map(|s| s.shape().to_vec())
                        .collect::<Vec<_>>()
                ),
            ));
        }
    }
    Ok(())
}

/// The student's loss under `mode` and its gradients (spec §5.1 step 2.2, §6 steps 1-5), and
/// with `scores` the stage-2 mask statistic; the models are not changed.
pub fn distill_gradients(
    student: &Model,
    teacher: &Model,
    batch: &DistillBatch,
    mode: LossMode,
    w: &DistillWeights,
    adversary: &Adversary,
    scores: Option<&mut [Tensor]>,
) -> Result<DistillGrads> {
    validate(student, teacher, batch, mode, adversary, scores.as_deref())?;
    if mode.natural {
        return natural_gradients(student, teacher, batch, mode, w, scores);
    }
    let temp = w.temperature as f64;
    let n = batch.labels.len();
    let h = n.div_ceil(2);
    let (y_clean, y_adv) = batch.labels.split_at(h);
    let aug = batch
        .aug
        .expect("validated: robust modes carry the AugMix view");
    let views = mode.attention_views(w);

    // Teacher: the full clean batch (logits t, taps T_n, activations A^T), AugMix H1 (T_a).
    let clean = teacher_pass(teacher, batch.x, Domain::Clean, scores.is_some());
    let t_h1 = clean.logits.slice_rows(0, h);
    let t_h2 = clean.logits.slice_rows(h, n);
    let taps_n = rows(&clean.taps, 0, h);
    let relus_t = rows(&clean.relus, 0, h);
    drop(clean);
    // Dual BN routes AugMix to BN_c; a triple-BN model has BN_r for it.
    let taps_a = views
        .aug
        .then(|| teacher_pass(teacher, aug, Domain::Aug, false).taps);

    // The adversarial half: PGD on the student, in eval mode with BN_a (spec §3).
    let x_adv = match adversary {
        _ if y_adv.is_empty() => None,
        Adversary::Given(x) => Some((*x).clone()),
        Adversary::Pgd { config, key } => {
            let loss = match mode.kl {
                false => AttackLoss::CrossEntropySum,
                true => AttackLoss::Kl {
                    target: &t_h2,
                    temp,
                },
            };
            let spec = Attack {
                pgd: config,
                domain: Domain::Adv,
                loss,
                seed: key.seed,
            };
            let x_rest = batch.x.slice_rows(h, n);
            Some(attack(student, &x_rest, y_adv, &spec, key.step))
        }
    };
    let taps_adv = match &x_adv {
        Some(x) if views.adv => Some(teacher_pass(teacher, x, Domain::Adv, false).taps),
        _ => None,
    };

    let mut g = Graph::new(&student.store, GradMode::All);
    let mut stats = PendingStats::default();
    let mut terms = Terms::default();
    let train = |domain| Pass {
        domain,
        train: true,
    };

    let xv = g.input(batch.x.slice_rows(0, h), false);
    let out_n: ModelOutput = student.forward(&mut g, xv, train(Domain::Clean));
    let clean_taps = views.clean.then_some(taps_n.as_slice());
    terms.add(&mut g, mode, &out_n, y_clean, &t_h1, temp, clean_taps);
    if let Some(scores) = scores {
        accumulate_scores(scores, &relus_t, &g, &out_n.relus)?;
    }
    // Logits come to the host only to count correct answers for the progress bar.
    stats.clean(g.value(out_n.logits), y_clean);

    let av = g.input(aug.clone(), false);
    let out_a = student.forward(&mut g, av, train(Domain::Aug));
    terms.add(
        &mut g,
        mode,
        &out_a,
        y_clean,
        &t_h1,
        temp,
        taps_a.as_deref(),
    );

    if let Some(x_adv) = x_adv {
        let xv = g.input(x_adv, false);
        let out = student.forward(&mut g, xv, train(Domain::Adv));
        terms.add(&mut g, mode, &out, y_adv, &t_h2, temp, taps_adv.as_deref());
        stats.adv(g.value(out.logits), y_adv);
    }
    let loss = terms.combine(&mut g, w);
    finish(g, loss, stats)
}

/// Each view's terms, combined at the end into the loss.
#[derive(Default)]
struct Terms {
    ce: Vec<Var>,
    kl: Vec<Var>,
    at: Vec<Var>,
}

impl Terms {
    /// The terms `mode` has on one view: CE against `labels`, KL against the teacher's
    /// `target` logits, and with `taps` (the teacher's, for this view) AT.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        g: &mut Graph<'_>,
        mode: LossMode,
        out: &ModelOutput,
        labels: &[u32],
        target: &Tensor,
        temp: f64,
        taps: Option<&[Tensor]>,
    ) {
        if mode.ce {
            self.ce.push(g.cross_entropy(out.logits, labels, false));
        }
        if mode.kl {
            self.kl.push(g.kl_div(out.logits, target, temp));
        }
        if let Some(taps) = taps {
            self.at.push(attention_sum(g, &out.taps, taps));
        }
    }

    /// γ·CE + α·KL (or the one present, unweighted) + β·AT, each the mean over its views.
    fn combine(self, g: &mut Graph<'_>, w: &DistillWeights) -> Var {
        let mut loss = match (self.ce.is_empty(), self.kl.is_empty()) {
            (false, false) => {
                let kl = mean(g, &self.kl);
                let ce = mean(g, &self.ce);
                let (ce, kl) = (g.scale(ce, w.gamma), g.scale(kl, w.alpha));
                g.add(ce, kl)
            }
            (false, true) => mean(g, &self.ce),
            (true, false) => mean(g, &self.kl),
            (true, true) => unreachable!("every mode has CE or KL"),
        };
        if !self.at.is_empty() {
            let a = mean(g, &self.at);
            let a = g.scale(a, w.beta);
            loss = g.add(loss, a);
        }
        loss
    }
}

/// Spec §6's non-robust recipe: the whole batch clean through BN_c, γ·CE + α·KL_T + β·AT.
fn natural_gradients(
    student: &Model,
    teacher: &Model,
    batch: &DistillBatch,
    mode: LossMode,
    w: &DistillWeights,
    scores: Option<&mut [Tensor]>,
) -> Result<DistillGrads> {
    let t = teacher_pass(teacher, batch.x, Domain::Clean, scores.is_some());
    let mut g = Graph::new(&student.store, GradMode::All);
    let xv = g.input(batch.x.clone(), false);
    let out = student.forward(
        &mut g,
        xv,
        Pass {
            domain: Domain::Clean,
            train: true,
        },
    );
    let mut terms = Terms::default();
    let taps = mode.attention_views(w).clean.then_some(t.taps.as_slice());
    let temp = w.temperature as f64;
    terms.add(&mut g, mode, &out, batch.labels, &t.logits, temp, taps);
    let loss = terms.combine(&mut g, w);
    // Every image is clean here, so all of them enter the mask statistic.
    if let Some(scores) = scores {
        accumulate_scores(scores, &t.relus, &g, &out.relus)?;
    }
    let mut stats = PendingStats::default();
    stats.clean(g.value(out.logits), batch.labels);
    finish(g, loss, stats)
}

/// The backward pass; the figures are read once it is queued (`PendingStats`).
fn finish(mut g: Graph<'_>, loss: Var, mut stats: PendingStats<'_>) -> Result<DistillGrads> {
    stats.loss(g.value(loss));
    let grads = g.backward(loss);
    let updates = g.take_stat_updates();
    Ok(DistillGrads {
        stats: stats.read()?,
        grads,
        updates,
    })
}
