//! The student step of stages 2 and 3 (train::distill_step): every loss mode against PyTorch
//! (tools/make_golden.py case distill_resnet18_w00625, adversarial half given), the stage-2 mask
//! statistic, what the step may and may not change, and the loss-mode names.

mod common;

use common::{assert_close, load, load_f32, shape};
use rlnet::autograd::{GradMode, Graph};
use rlnet::nn::{Arch, Domain, Model, ModelConfig, Pass};
use rlnet::optim::{Sgd, SgdConfig};
use rlnet::robust::pgd::PgdConfig;
use rlnet::tensor::Tensor;
use rlnet::train::distill_step::{
    distill_gradients, distill_step, Adversary, DistillBatch, DistillWeights, LossMode,
};
use rlnet::train::step::StepKey;

const CASE: &str = "distill_resnet18_w00625";

fn fixture(name: &str) -> Tensor {
    Tensor::from_vec(&shape(CASE, name), load_f32(CASE, name)).unwrap()
}

/// The fixture's student (prefix "param_s", its masks) or teacher ("param_t", all-ones masks).
fn model(prefix: &str) -> Model {
    let mut m = Model::new(ModelConfig::new(Arch::ResNet18, 0.0625), 0).unwrap();
    for id in 0..m.store.len() {
        let name = m.store.entry(id).name.clone();
        if !name.ends_with(".mask") {
            m.store
                .set(id, fixture(&format!("{prefix}__{name}")))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    if prefix == "param_s" {
        for i in 0..m.relu_layers.len() {
            m.set_mask(i, fixture(&format!("mask_s__{i}"))).unwrap();
        }
    }
    m
}

struct Inputs {
    x: Tensor,
    aug: Tensor,
    x_adv: Tensor,
    labels: Vec<u32>,
    weights: DistillWeights,
}

fn inputs() -> Inputs {
    let w = load(CASE, "weights");
    Inputs {
        x: fixture("x"),
        aug: fixture("aug"),
        x_adv: fixture("x_adv"),
        labels: load(CASE, "labels").iter().map(|&v| v as u32).collect(),
        weights: DistillWeights {
            gamma: w[0] as f32,
            alpha: w[1] as f32,
            beta: w[2] as f32,
            temperature: w[3] as f32,
        },
    }
}

fn batch<'a>(i: &'a Inputs, mode: LossMode) -> DistillBatch<'a> {
    DistillBatch {
        x: &i.x,
        aug: mode.needs_augmix().then_some(&i.aug),
        labels: &i.labels,
    }
}

#[test]
fn every_loss_mode_matches_pytorch() {
    let (student, teacher, i) = (model("param_s"), model("param_t"), inputs());
    let no_attack = PgdConfig::linf(0);
    let key = StepKey { seed: 0, step: 0 };
    let grad_params = [
        "conv1.weight",
        "layer2.0.shortcut.1.BN_c.weight",
        "layer4.1.bn2.BN_a.weight",
        "linear.weight",
    ];
    for mode in LossMode::ALL {
        let adversary = match mode.needs_attack() {
            true => Adversary::Given(&i.x_adv),
            false => Adversary::Pgd {
                config: &no_attack,
                key,
            },
        };
        let out = distill_gradients(
            &student,
            &teacher,
            &batch(&i, mode),
            mode,
            &i.weights,
            &adversary,
            None,
        )
        .unwrap();
        let tag = mode.name().replace('+', "_");
        assert_close(
            &format!("{} loss", mode.name()),
            &[out.stats.loss],
            &load(CASE, &format!("loss__{tag}")),
            0.0,
            1e-4,
        );
        for p in grad_params {
            let want = load(CASE, &format!("grad__{tag}__{p}"));
            let id = student.store.id(p).unwrap();
            let got = match out.grads.param(id) {
                Some(t) => t.data().to_vec(),
                None => vec![0.0; want.len()],
            };
            // f32 through a 17-layer net against float64: 1e-4 relative, with 1e-5 of the
            // gradient's scale for entries near zero.
            let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            assert_close(
                &format!("{} grad {p}", mode.name()),
                &got,
                &want,
                1e-5 * scale.max(1e-6),
                1e-4,
            );
        }
    }
}

/// The teacher's and the student's masked-ReLU outputs on the clean first half, computed by
/// plain forward passes, and Σ over the images of |A^T − A^S| per layer.
fn direct_scores(student: &Model, teacher: &Model, x_h1: &Tensor) -> Vec<Vec<f32>> {
    let relus = |m: &Model, train: bool| {
        let mut g = Graph::new(&m.store, GradMode::None);
        let xv = g.input(x_h1.clone(), false);
        let pass = Pass {
            domain: Domain::Clean,
            train,
        };
        let out = m.forward(&mut g, xv, pass);
        out.relus
            .iter()
            .map(|&v| g.value(v).data().to_vec())
            .collect::<Vec<_>>()
    };
    let (t, s) = (relus(teacher, false), relus(student, true));
    t.iter()
        .zip(&s)
        .zip(&student.relu_layers)
        .map(|((t, s), l)| {
            let n = l.count();
            (0..n)
                .map(|j| {
                    (0..t.len() / n)
                        .map(|k| (t[k * n + j] - s[k * n + j]).abs())
                        .sum()
                })
                .collect()
        })
        .collect()
}

#[test]
fn mask_statistic_matches_pytorch_and_a_direct_sum() {
    let (student, teacher, i) = (model("param_s"), model("param_t"), inputs());
    let mode = LossMode::RSLAD_CE;
    // Start from ones: the step adds to what is there.
    let mut scores: Vec<Tensor> = student
        .relu_layers
        .iter()
        .map(|l| Tensor::full(&l.shape, 1.0))
        .collect();
    distill_gradients(
        &student,
        &teacher,
        &batch(&i, mode),
        mode,
        &i.weights,
        &Adversary::Given(&i.x_adv),
        Some(&mut scores),
    )
    .unwrap();
    let direct = direct_scores(&student, &teacher, &i.x.slice_rows(0, 3));
    for (l, s) in scores.iter().enumerate() {
        let added: Vec<f32> = s.data().iter().map(|v| v - 1.0).collect();
        assert_close(
            &format!("scores {l} vs direct"),
            &added,
            &direct[l],
            1e-5,
            1e-5,
        );
        assert_close(
            &format!("scores {l} vs PyTorch"),
            &added,
            &load(CASE, &format!("scores__{l}")),
            1e-5,
            1e-4,
        );
    }
}

#[test]
fn step_trains_the_student_only() {
    let (mut student, teacher, i) = (model("param_s"), model("param_t"), inputs());
    let teacher_before: Vec<Tensor> = teacher
        .store
        .entries()
        .iter()
        .map(|e| e.tensor.clone())
        .collect();
    let student_before: Vec<Tensor> = student
        .store
        .entries()
        .iter()
        .map(|e| e.tensor.clone())
        .collect();
    let mut scores: Vec<Tensor> = student
        .relu_layers
        .iter()
        .map(|l| Tensor::zeros(&l.shape))
        .collect();
    let direct = direct_scores(&student, &teacher, &i.x.slice_rows(0, 3));
    let mut sgd = Sgd::new(SgdConfig::default(), &student.store);
    let mode = LossMode::RSLAD_ATTN_AUGATTN_ADVATTN_CE;
    let stats = distill_step(
        &mut student,
        &teacher,
        &mut sgd,
        &batch(&i, mode),
        mode,
        &i.weights,
        &PgdConfig::linf(2),
        0.05,
        StepKey { seed: 3, step: 1 },
        Some(&mut scores),
    )
    .unwrap();
    assert!(stats.loss.is_finite() && stats.loss > 0.0);
    assert_eq!((stats.clean_seen, stats.adv_seen), (3, 2));
    for (l, s) in scores.iter().enumerate() {
        assert_close(
            &format!("step scores {l}"),
            s.data(),
            &direct[l],
            1e-5,
            1e-5,
        );
    }
    for (e, before) in teacher.store.entries().iter().zip(&teacher_before) {
        assert!(e.tensor == *before, "teacher {} changed", e.name);
    }
    let mut moved = (0, 0);
    for (e, before) in student.store.entries().iter().zip(&student_before) {
        let changed = e.tensor != *before;
        if e.name.ends_with(".mask") {
            assert!(!changed, "mask {} changed", e.name);
        } else if e.name.contains(".running_") {
            moved.0 += changed as usize;
        } else if e.name.contains("conv") || e.name.contains("linear") {
            assert!(changed, "weight {} did not move", e.name);
            moved.1 += 1;
        }
    }
    // Every BN set (BN_c from the clean and AugMix passes, BN_a from the adversarial one)
    // updates its running statistics.
    let running = student
        .store
        .entries()
        .iter()
        .filter(|e| e.name.contains(".running_"))
        .count();
    assert_eq!(moved.0, running, "running statistics left unchanged");
    assert!(moved.1 > 10);
}

#[test]
fn natural_mode_uses_the_whole_clean_batch() {
    let (mut student, teacher, i) = (model("param_s"), model("param_t"), inputs());
    let mut sgd = Sgd::new(SgdConfig::default(), &student.store);
    let mut scores: Vec<Tensor> = student
        .relu_layers
        .iter()
        .map(|l| Tensor::zeros(&l.shape))
        .collect();
    let direct = direct_scores(&student, &teacher, &i.x);
    let bn_a_before = student
        .store
        .get(student.store.id("layer4.1.bn2.BN_a.running_mean").unwrap())
        .clone();
    let stats = distill_step(
        &mut student,
        &teacher,
        &mut sgd,
        &batch(&i, LossMode::NATURAL),
        LossMode::NATURAL,
        &i.weights,
        &PgdConfig::linf(2),
        0.05,
        StepKey { seed: 3, step: 1 },
        Some(&mut scores),
    )
    .unwrap();
    assert_eq!((stats.clean_seen, stats.adv_seen), (5, 0));
    for (l, s) in scores.iter().enumerate() {
        assert_close(
            &format!("natural scores {l}"),
            s.data(),
            &direct[l],
            1e-5,
            1e-5,
        );
    }
    let id = student.store.id("layer4.1.bn2.BN_a.running_mean").unwrap();
    assert!(
        *student.store.get(id) == bn_a_before,
        "BN_a ran in natural mode"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let (mut student, teacher, i) = (model("param_s"), model("param_t"), inputs());
    let mut sgd = Sgd::new(SgdConfig::default(), &student.store);
    let pgd = PgdConfig::linf(1);
    let key = StepKey { seed: 0, step: 0 };
    let mut run = |b: &DistillBatch, mode, scores: Option<&mut [Tensor]>| {
        distill_step(
            &mut student,
            &teacher,
            &mut sgd,
            b,
            mode,
            &i.weights,
            &pgd,
            0.05,
            key,
            scores,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let no_aug = DistillBatch {
        x: &i.x,
        aug: None,
        labels: &i.labels,
    };
    assert!(run(&no_aug, LossMode::RSLAD_CE, None).contains("AugMix"));
    let short = DistillBatch {
        x: &i.x,
        aug: Some(&i.aug),
        labels: &i.labels[..4],
    };
    assert!(run(&short, LossMode::RSLAD_CE, None).contains("B = 4"));
    let mut too_few = vec![Tensor::zeros(&[1])];
    let e = run(
        &batch(&i, LossMode::RSLAD_CE),
        LossMode::RSLAD_CE,
        Some(&mut too_few),
    );
    assert!(e.contains("one [C, H, W] tensor per ReLU layer"), "{e}");
}

#[test]
fn loss_modes_round_trip_and_unknown_names_are_errors() {
    for mode in LossMode::ALL {
        assert_eq!(LossMode::parse(&mode.name()).unwrap(), mode);
        let json = serde_json::to_string(&mode).unwrap();
        assert_eq!(json, format!("\"{}\"", mode.name()));
    }
    assert_eq!(
        LossMode::parse("rslad+attn+augattn+ce").unwrap(),
        LossMode::RSLAD_ATTN_AUGATTN_CE
    );
    let e = LossMode::parse("rslad+kd").unwrap_err().to_string();
    assert!(e.contains("\"rslad+kd\"") && e.contains("pgd-at"), "{e}");
    assert!(!LossMode::NATURAL.needs_attack() && !LossMode::NATURAL.needs_augmix());
    assert!(LossMode::PGD_AT.needs_attack() && LossMode::RSLAD.needs_augmix());
}

#[test]
fn loss_modes_compose_their_terms() {
    // Any set of the robust terms is a mode, named in one canonical order.
    let m = LossMode::parse("ce+advattn+rslad").unwrap();
    assert!(m.ce && m.kl && !m.natural);
    assert!(m.attention.adv && !m.attention.clean && !m.attention.aug);
    assert_eq!(m.name(), "rslad+advattn+ce");
    assert_eq!(
        LossMode::parse("attn+rslad+augattn+ce").unwrap(),
        LossMode::RSLAD_ATTN_AUGATTN_CE
    );
    for bad in ["attn+ce", "rslad+rslad", "natural+ce", "pgd-at+attn", ""] {
        let e = LossMode::parse(bad).unwrap_err().to_string();
        assert!(e.contains("unknown loss mode"), "{bad}: {e}");
    }
}
