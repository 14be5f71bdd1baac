//! One student optimisation step of stage 2 (spec §5.1 step 2.2) and stage 3 (spec §6 steps
//! 1-6): the first half H1 = ⌈B/2⌉ of the batch is clean (BN_c) with its AugMix view (BN_c),
//! the rest H2 is PGD-attacked against the student (BN_a, eval mode, the RSLAD KL objective
//! against the teacher's clean logits); the frozen teacher runs in eval mode with no gradient.
//! The loss is one of spec §6's modes; every KL target is the teacher's CLEAN logits (§9.5).
//! Stage 2 also accumulates the mask statistic D_l += Σ_{H1} |A^T_l − A^S_l| (`scores`).

use crate::autograd::{GradMode, Gradients, Graph, StatUpdate, Var};
use crate::device::ok;
use crate::error::{Error, Result};
use crate::eval::correct;
use crate::nn::{Domain, Model, ModelOutput, Pass};
use crate::ops::{bn_act, elementwise};
use crate::optim::Sgd;
use crate::robust::pgd::{attack, Attack, AttackLoss, PgdConfig};
use crate::tensor::Tensor;
use crate::train::step::{StepKey, StepStats};
use serde::{Deserialize, Serialize};

/// The student loss (spec §6's table). CE = (CE_n+CE_a+CE_adv)/3, KL = (KL_n+KL_a+KL_adv)/3,
/// AT_v = Σ over the model's taps of AT(S_v, T_v).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LossMode {
    /// KL
    #[serde(rename = "rslad")]
    Rslad,
    /// γ·CE + α·KL (stage 2's mode)
    #[serde(rename = "rslad+ce")]
    RsladCe,
    /// KL + β·AT_n
    #[serde(rename = "rslad+attn")]
    RsladAttn,
    /// KL + β·(AT_n+AT_a)/2
    #[serde(rename = "rslad+attn+augattn")]
    RsladAttnAugattn,
    /// γ·CE + α·KL + β·(AT_n+AT_a)/2 (stage 3's default)
    #[serde(rename = "rslad+attn+augattn+ce")]
    RsladAttnAugattnCe,
    /// KL + β·(AT_n+AT_a+AT_adv)/3, AT_adv against the teacher's BN_a taps on x_adv
    #[serde(rename = "rslad+attn+augattn+advattn")]
    RsladAttnAugattnAdvattn,
    /// γ·CE + α·KL + β·(AT_n+AT_a+AT_adv)/3
    #[serde(rename = "rslad+attn+augattn+advattn+ce")]
    RsladAttnAugattnAdvattnCe,
    /// CE alone (PGD-AT; its attack maximises the summed CE, spec §3)
    #[serde(rename = "pgd-at")]
    PgdAt,
    /// The non-robust SENet recipe (spec §6 end): the whole batch clean through BN_c, no
    /// attack, no AugMix: γ·CE + α·KL_T + β·AT (β = 0 leaves the AT term out).
    #[serde(rename = "natural")]
    Natural,
}

impl LossMode {
    pub const ALL: [LossMode; 9] = [
        LossMode::Rslad,
        LossMode::RsladCe,
        LossMode::RsladAttn,
        LossMode::RsladAttnAugattn,
        LossMode::RsladAttnAugattnCe,
        LossMode::RsladAttnAugattnAdvattn,
        LossMode::RsladAttnAugattnAdvattnCe,
        LossMode::PgdAt,
        LossMode::Natural,
    ];

    pub fn parse(s: &str) -> Result<LossMode> {
        LossMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = LossMode::ALL.iter().map(|m| m.name()).collect();
                Error::Config(format!(
                    "unknown loss mode {s:?}: expected one of {}",
                    known.join(", ")
                ))
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            LossMode::Rslad => "rslad",
            LossMode::RsladCe => "rslad+ce",
            LossMode::RsladAttn => "rslad+attn",
            LossMode::RsladAttnAugattn => "rslad+attn+augattn",
            LossMode::RsladAttnAugattnCe => "rslad+attn+augattn+ce",
            LossMode::RsladAttnAugattnAdvattn => "rslad+attn+augattn+advattn",
            LossMode::RsladAttnAugattnAdvattnCe => "rslad+attn+augattn+advattn+ce",
            LossMode::PgdAt => "pgd-at",
            LossMode::Natural => "natural",
        }
    }

    /// Whether the second half of each batch is attacked.
    pub fn needs_attack(self) -> bool {
        self != LossMode::Natural
    }

    /// Whether the batch carries an AugMix view of its first half (every robust mode assumes
    /// AugMix, spec §6).
    pub fn needs_augmix(self) -> bool {
        self != LossMode::Natural
    }

    /// Whether the loss is γ·CE + α·KL (+ AT) rather than KL (+ AT) alone.
    fn weighted_ce(self) -> bool {
        matches!(
            self,
            LossMode::RsladCe | LossMode::RsladAttnAugattnCe | LossMode::RsladAttnAugattnAdvattnCe
        )
    }

    /// How many of the views (clean, AugMix, adversarial) enter the AT term.
    fn at_views(self) -> usize {
        match self {
            LossMode::RsladAttn => 1,
            LossMode::RsladAttnAugattn | LossMode::RsladAttnAugattnCe => 2,
            LossMode::RsladAttnAugattnAdvattn | LossMode::RsladAttnAugattnAdvattnCe => 3,
            _ => 0,
        }
    }
}

impl std::str::FromStr for LossMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<LossMode> {
        LossMode::parse(s)
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
    if mode == LossMode::Natural {
        return natural_gradients(student, teacher, batch, w, scores);
    }
    let temp = w.temperature as f64;
    let n = batch.labels.len();
    let h = n.div_ceil(2);
    let (y_clean, y_adv) = batch.labels.split_at(h);
    let aug = batch
        .aug
        .expect("validated: robust modes carry the AugMix view");
    let at_views = mode.at_views();

    // Teacher: the full clean batch (logits t, taps T_n, activations A^T), AugMix H1 (T_a).
    let clean = teacher_pass(teacher, batch.x, Domain::Clean, scores.is_some());
    let t_h1 = clean.logits.slice_rows(0, h);
    let t_h2 = clean.logits.slice_rows(h, n);
    let taps_n = rows(&clean.taps, 0, h);
    let relus_t = rows(&clean.relus, 0, h);
    drop(clean);
    // Dual BN routes AugMix to BN_c; a triple-BN model has BN_r for it.
    let taps_a = (at_views >= 2).then(|| teacher_pass(teacher, aug, Domain::Aug, false).taps);

    // The adversarial half: PGD on the student, in eval mode with BN_a (spec §3).
    let x_adv = match adversary {
        _ if y_adv.is_empty() => None,
        Adversary::Given(x) => Some((*x).clone()),
        Adversary::Pgd { config, key } => {
            let loss = match mode {
                LossMode::PgdAt => AttackLoss::CrossEntropySum,
                _ => AttackLoss::Kl {
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
    let taps_adv = match (&x_adv, at_views) {
        (Some(x), 3) => Some(teacher_pass(teacher, x, Domain::Adv, false).taps),
        _ => None,
    };

    let mut g = Graph::new(&student.store, GradMode::All);
    let mut stats = StepStats::default();
    let (mut ce, mut kl, mut at) = (Vec::new(), Vec::new(), Vec::new());
    let train = |domain| Pass {
        domain,
        train: true,
    };

    let xv = g.input(batch.x.slice_rows(0, h), false);
    let out_n: ModelOutput = student.forward(&mut g, xv, train(Domain::Clean));
    ce.push(g.cross_entropy(out_n.logits, y_clean, false));
    kl.push(g.kl_div(out_n.logits, &t_h1, temp));
    if at_views >= 1 {
        at.push(attention_sum(&mut g, &out_n.taps, &taps_n));
    }
    if let Some(scores) = scores {
        accumulate_scores(scores, &relus_t, &g, &out_n.relus)?;
    }
    // Logits come to the host only to count correct answers for the progress bar.
    stats.clean_correct = correct(&g.value(out_n.logits).to_host()?, y_clean);
    stats.clean_seen = h;

    let av = g.input(aug.clone(), false);
    let out_a = student.forward(&mut g, av, train(Domain::Aug));
    ce.push(g.cross_entropy(out_a.logits, y_clean, false));
    kl.push(g.kl_div(out_a.logits, &t_h1, temp));
    if let Some(taps_a) = &taps_a {
        at.push(attention_sum(&mut g, &out_a.taps, taps_a));
    }

    if let Some(x_adv) = x_adv {
        let xv = g.input(x_adv, false);
        let out = student.forward(&mut g, xv, train(Domain::Adv));
        ce.push(g.cross_entropy(out.logits, y_adv, false));
        kl.push(g.kl_div(out.logits, &t_h2, temp));
        if let Some(taps_adv) = &taps_adv {
            at.push(attention_sum(&mut g, &out.taps, taps_adv));
        }
        stats.adv_correct = correct(&g.value(out.logits).to_host()?, y_adv);
        stats.adv_seen = y_adv.len();
    }

    let loss = match mode {
        LossMode::PgdAt => mean(&mut g, &ce),
        _ => {
            let kl = mean(&mut g, &kl);
            let mut loss = match mode.weighted_ce() {
                true => {
                    let ce = mean(&mut g, &ce);
                    let (ce, kl) = (g.scale(ce, w.gamma), g.scale(kl, w.alpha));
                    g.add(ce, kl)
                }
                false => kl,
            };
            if !at.is_empty() {
                let a = mean(&mut g, &at);
                let a = g.scale(a, w.beta);
                loss = g.add(loss, a);
            }
            loss
        }
    };
    finish(g, loss, stats)
}

/// Spec §6's non-robust recipe: the whole batch clean through BN_c, γ·CE + α·KL_T + β·AT.
fn natural_gradients(
    student: &Model,
    teacher: &Model,
    batch: &DistillBatch,
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
    let ce = g.cross_entropy(out.logits, batch.labels, false);
    let kl = g.kl_div(out.logits, &t.logits, w.temperature as f64);
    let (ce, kl) = (g.scale(ce, w.gamma), g.scale(kl, w.alpha));
    let mut loss = g.add(ce, kl);
    // Stage 2's natural recipe has no AT (β = 0): skip the term rather than compute it × 0.
    if w.beta != 0.0 {
        let a = attention_sum(&mut g, &out.taps, &t.taps);
        let a = g.scale(a, w.beta);
        loss = g.add(loss, a);
    }
    // Every image is clean here, so all of them enter the mask statistic.
    if let Some(scores) = scores {
        accumulate_scores(scores, &t.relus, &g, &out.relus)?;
    }
    let stats = StepStats {
        clean_correct: correct(&g.value(out.logits).to_host()?, batch.labels),
        clean_seen: batch.labels.len(),
        ..StepStats::default()
    };
    finish(g, loss, stats)
}

fn finish(mut g: Graph<'_>, loss: Var, mut stats: StepStats) -> Result<DistillGrads> {
    stats.loss = g.value(loss).item();
    let grads = g.backward(loss);
    let updates = g.take_stat_updates();
    Ok(DistillGrads {
        stats,
        grads,
        updates,
    })
}
