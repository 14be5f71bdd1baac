//! The evaluation attacks against their published algorithms, step by step on a small model:
//! APGD's checkpoints and step-size rule re-derived from its recorded losses, APGD-T's target
//! classes, Square's budget and ball, AutoAttack as the worst case of its parts, and the
//! gradient-masking checks firing on a saturated model and staying quiet on a normal one.

mod common;

use rlnet::checkpoint;
use rlnet::data::batch::make_batch;
use rlnet::data::source::{DatasetKind, DatasetSpec};
use rlnet::data::{ImageSet, Split};
use rlnet::eval::attacks::{evaluate_attacks, AttackKind, AttackSettings};
use rlnet::eval::masking;
use rlnet::eval::robustness::RobustnessPlan;
use rlnet::eval::{evaluate, EvalOptions};
use rlnet::nn::{Domain, Model};
use rlnet::optim::{SgdConfig, StepSchedule};
use rlnet::rng::Stream;
use rlnet::robust::apgd::{self, checkpoints, ApgdConfig, RHO};
use rlnet::robust::objective::{self, margins, Objective};
use rlnet::robust::pgd::PgdConfig;
use rlnet::robust::square::{self, SquareConfig};
use rlnet::robust::victim::{rows, Victim};
use rlnet::tensor::precision::Precision;
use rlnet::tensor::Tensor;
use rlnet::train::driver::LoopConfig;
use rlnet::train::teacher::{self, AugmentConfig, TeacherConfig};
use rlnet::train::RunOptions;

const EPS: f32 = 8.0 / 255.0;

/// A model trained naturally for two epochs on 512 synthetic images (about 10 s on 2 cores):
/// an untrained network is nearly constant in its input, so nothing can fool it even at
/// ε = 1, which the masking checks rightly flag. Returns it with its synthetic test set.
fn trained_model() -> (Model, ImageSet) {
    // Trained once per test binary; each caller gets its own copy from the checkpoint bytes.
    static TRAINED: std::sync::OnceLock<(Vec<u8>, ImageSet)> = std::sync::OnceLock::new();
    let (bytes, set) = TRAINED.get_or_init(train_small);
    let model = checkpoint::from_bytes(bytes, std::path::Path::new("trained"))
        .unwrap()
        .model()
        .unwrap();
    (model, set.clone())
}

fn train_small() -> (Vec<u8>, ImageSet) {
    let mut data = DatasetSpec::new(DatasetKind::Synthetic, None);
    data.synthetic_train = 2000;
    data.synthetic_test = 32;
    let cfg = TeacherConfig {
        model: common::small_model(0).config.clone(),
        data: data.clone(),
        run: LoopConfig {
            epochs: 2,
            batch_size: 32,
            schedule: StepSchedule::steps(0.1, vec![], 0.1),
            crop_pad: 0,
            seed: 1,
            eval_every: 0,
            checkpoint_every: 0,
            precision: Precision::F32,
        },
        sgd: SgdConfig::default(),
        pgd: PgdConfig::linf(1),
        eval_pgd_steps: 1,
        eval_batch: 32,
        augment: AugmentConfig::default(),
        robust: false,
    };
    let dir = std::env::temp_dir().join(format!("rlnet-attacks-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let opts = RunOptions {
        out_dir: dir.clone(),
        resume: false,
        stop_after: None,
        stop_after_steps: None,
        show_progress: false,
        device: rlnet::device::Device::Cpu,
    };
    teacher::run(&cfg, &opts)
        .unwrap()
        .expect("the run finishes");
    let bytes = std::fs::read(dir.join(teacher::CHECKPOINT_NAME)).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    (bytes, data.load(Split::Test).unwrap())
}

/// `n` random 32×32 images labelled with `model`'s own predictions, so every image starts
/// correctly classified and the attacks have something to break.
fn own_labels(model: &Model, n: usize) -> ImageSet {
    let mut rng = Stream::new(3, 77);
    let images: Vec<u8> = (0..n * 3072)
        .map(|_| (rng.next_u64() % 256) as u8)
        .collect();
    let mut set = ImageSet {
        images,
        labels: vec![0; n],
        channels: 3,
        height: 32,
        width: 32,
        num_classes: 10,
    };
    let (x, _) = batch(&set);
    let z = Victim::new(model, Domain::Adv).logits(&x);
    set.labels = z
        .chunks(10)
        .map(|row| rlnet::eval::argmax(row) as u32)
        .collect();
    set
}

fn batch(set: &ImageSet) -> (Tensor, Vec<u32>) {
    let idx: Vec<usize> = (0..set.len()).collect();
    make_batch(set, &idx, None, 0)
}

/// APGD's step size re-derived from the losses it recorded: at each checkpoint w_j, η halves
/// iff the loss rose in at most ρ·(w_j − w_{j−1}) of the steps since w_{j−1}, or η did not
/// halve at w_{j−1} and the best loss has not grown since; it never changes elsewhere.
#[test]
fn apgd_halves_its_step_exactly_where_the_published_rule_says() {
    let (model, set) = trained_model();
    let (x, y) = batch(&set.subset(&(0..12).collect::<Vec<_>>()));
    let ids: Vec<u64> = (0..12).collect();
    let cfg = ApgdConfig {
        eps: EPS,
        iters: 30,
        seed: 9,
    };
    let victim = Victim::new(&model, Domain::Clean);
    let out = apgd::run(victim, &x, &y, &ids, Objective::CrossEntropy, &cfg, 0);
    let marks = checkpoints(30);
    assert_eq!(marks, vec![7, 13, 18, 21, 24, 27, 28, 30]);
    assert_eq!(out.trace.losses.len(), 31);
    // Halvings decided by each condition alone.
    let (mut by_rises, mut by_stall) = (0, 0);
    for img in 0..12 {
        let loss = |t: usize| out.trace.losses[t][img];
        let mut eta = 2.0 * EPS;
        let (mut last, mut reduced_last) = (0usize, true);
        let mut best_last = loss(0);
        for t in 0..=30 {
            if marks.contains(&t) {
                let rises = (last + 1..=t).filter(|&u| loss(u) > loss(u - 1)).count();
                let best = (0..=t).map(loss).fold(f64::NEG_INFINITY, f64::max);
                let oscillating = rises as f64 <= RHO * (t - last) as f64;
                let stalled = !reduced_last && best_last >= best;
                let halve = oscillating || stalled;
                if halve {
                    eta /= 2.0;
                }
                by_rises += usize::from(oscillating && !stalled);
                by_stall += usize::from(stalled && !oscillating);
                reduced_last = halve;
                best_last = best;
                last = t;
            }
            assert_eq!(
                out.trace.step_sizes[t][img], eta,
                "image {img}, point {t}: step size"
            );
        }
    }
    println!("halvings by the rise count alone: {by_rises}, by the stall alone: {by_stall}");
    // The stall condition alone rarely decides on real losses; the unit test of `StepSize`
    // drives it with made-up ones.
    assert!(
        by_rises > 0,
        "no checkpoint halved: the comparison tested little"
    );
    for (a, b) in out.adversarial.iter().zip(x.data()) {
        assert!((0.0..=1.0).contains(a) && (a - b).abs() <= EPS + 1e-6);
    }
    // The CE loss is what it maximises: the best point found beats the random start.
    let best_loss = |img: usize| {
        (0..=30)
            .map(|t| out.trace.losses[t][img])
            .fold(f64::NEG_INFINITY, f64::max)
    };
    assert!((0..12).all(|img| best_loss(img) >= out.trace.losses[0][img]));
    assert!((0..12).any(|img| best_loss(img) > out.trace.losses[0][img] + 1e-3));
    let again = apgd::run(victim, &x, &y, &ids, Objective::CrossEntropy, &cfg, 0);
    assert_eq!(again.robust, out.robust, "the same key gives the same run");
}

#[test]
fn apgd_t_targets_the_most_likely_wrong_classes_in_order() {
    // Two rows of 5 classes; row 0 ranks 2 > 0 > 4 > 1 > 3, row 1 ranks 4 > 3 > 2 > 1 > 0.
    let z = [1.0, -1.0, 3.0, -2.0, 0.5, 0.0, 1.0, 2.0, 3.0, 4.0];
    assert_eq!(apgd::targets(&z, 5, 0), vec![0, 3]);
    assert_eq!(apgd::targets(&z, 5, 1), vec![4, 2]);
    assert_eq!(apgd::targets(&z, 5, 3), vec![3, 0]);
    // The targeted DLR loss rises as the target's logit closes on the label's.
    let near = [3.0, 2.9, 0.0, -1.0, -2.0];
    let far = [3.0, -0.5, 0.0, -1.0, -2.0];
    let loss = |row: &[f32]| {
        rlnet::robust::objective::loss_and_grad(Objective::DlrTargeted(&[1]), row, 5, &[0]).0[0]
    };
    assert!(loss(&near) > loss(&far));
}

/// APGD-T run by run: run t attacks exactly the images every earlier run left correct, each
/// towards its (t+1)-th most likely wrong class on the clean logits.
#[test]
fn apgd_t_runs_target_by_target_on_the_survivors() {
    let (model, test) = trained_model();
    let victim = Victim::new(&model, Domain::Clean);
    let (x, y) = batch(&test);
    let z = victim.logits(&x);
    let keep: Vec<usize> = objective::correct(&z, 10, &y)
        .iter()
        .enumerate()
        .filter(|(_, &c)| c)
        .map(|(i, _)| i)
        .take(10)
        .collect();
    let x = rows(&x, &keep);
    let y: Vec<u32> = keep.iter().map(|&i| y[i]).collect();
    let z: Vec<f32> = keep
        .iter()
        .flat_map(|&i| z[i * 10..(i + 1) * 10].to_vec())
        .collect();
    let ids: Vec<u64> = keep.iter().map(|&i| i as u64).collect();
    let cfg = ApgdConfig {
        eps: 1.0 / 255.0,
        iters: 10,
        seed: 2,
    };
    let out = apgd::run_targeted(victim, &x, &y, &ids, &z, 3, &cfg);
    assert!(
        out.runs.len() >= 2,
        "a second target run was reached: {:?}",
        out.runs
    );
    assert!(out.runs.len() <= 3);
    assert_eq!(out.runs[0].images, (0..keep.len()).collect::<Vec<_>>());
    for (t, run) in out.runs.iter().enumerate() {
        for (&img, &target) in run.images.iter().zip(&run.targets) {
            let ranked = objective::ranked_classes(&z[img * 10..(img + 1) * 10]);
            assert_eq!(
                ranked[0], y[img] as usize,
                "the label leads the clean logits"
            );
            assert_eq!(target as usize, ranked[t + 1], "run {t}, image {img}");
        }
        if let Some(next) = out.runs.get(t + 1) {
            assert!(next.images.iter().all(|i| run.images.contains(i)));
        }
    }
    let last = &out.runs.last().unwrap().images;
    for (img, &r) in out.robust.iter().enumerate() {
        assert!(
            !r || last.contains(&img),
            "a survivor went through every run"
        );
    }
}

#[test]
fn square_keeps_to_the_ball_and_the_budget_and_reports_true_margins() {
    let (model, test) = trained_model();
    let set = test.subset(&(0..6).collect::<Vec<_>>());
    let (x, y) = batch(&set);
    let ids: Vec<u64> = (10..16).collect();
    let cfg = SquareConfig {
        eps: EPS,
        queries: 40,
        seed: 4,
    };
    let victim = Victim::new(&model, Domain::Clean);
    let out = square::run(victim, &x, &y, &ids, &cfg);
    for (a, b) in out.adversarial.iter().zip(x.data()) {
        assert!((0.0..=1.0).contains(a) && (a - b).abs() <= cfg.eps + 1e-6);
        // Every pixel sits on the ball's surface or at the [0, 1] clip (the stripes' rule).
        let on_surface = ((a - b).abs() - cfg.eps).abs() < 1e-6 || *a == 0.0 || *a == 1.0;
        assert!(on_surface, "pixel {a} from {b}");
    }
    let adv = Tensor::from_vec(x.shape(), out.adversarial.clone()).unwrap();
    let recomputed = margins(&victim.logits(&adv), 10, &y);
    for (img, &m) in recomputed.iter().enumerate() {
        assert!((m - out.margins[img]).abs() < 1e-4);
        assert_eq!(out.robust[img], out.margins[img] > 0.0);
        assert!((1..=cfg.queries + 1).contains(&out.queries[img]));
        if out.robust[img] {
            assert_eq!(
                out.queries[img],
                cfg.queries + 1,
                "a robust image uses the budget"
            );
        }
    }
    assert!(
        out.robust.contains(&false),
        "Square fooled nothing: the checks tested little"
    );
}

fn small_settings() -> AttackSettings {
    AttackSettings {
        eps: 1.0 / 255.0,
        pgd_steps: 10,
        restarts: 1,
        apgd_iters: 20,
        targets: 3,
        square_queries: 60,
        seed: 5,
    }
}

#[test]
fn autoattack_is_the_worst_case_of_its_parts_and_pgd_matches_the_evaluation() {
    let model = common::small_model(3);
    let set = own_labels(&model, 12);
    let s = small_settings();
    let kinds = [
        AttackKind::Pgd,
        AttackKind::ApgdCe,
        AttackKind::ApgdT,
        AttackKind::Square,
        AttackKind::AutoAttack,
    ];
    let r = evaluate_attacks(&model, &set, Domain::Adv, &kinds, &s, 5, |_| {});
    assert_eq!(r.clean_acc, 1.0, "own labels: every image starts correct");
    let acc: Vec<f32> = r.attacks.iter().map(|a| a.acc).collect();
    assert!(acc[4] <= acc[1].min(acc[2]).min(acc[3]));
    let alone = evaluate_attacks(
        &model,
        &set,
        Domain::Adv,
        &[AttackKind::AutoAttack],
        &s,
        5,
        |_| {},
    );
    assert_eq!(
        alone.attacks[0].acc, acc[4],
        "the cascade alone finds the same points"
    );
    // PGD here is the evaluation's PGD: same keys, same batches, same accuracy.
    let cfg = s.pgd();
    let eo = EvalOptions {
        batch: 5,
        pgd: Some(&cfg),
        seed: s.seed,
        keep_logits: false,
    };
    let (plain, _) = evaluate(&model, &set, Domain::Adv, &eo, |_| {});
    assert_eq!(plain.pgd_acc, Some(acc[0]));
    let mut restarts = s.clone();
    restarts.restarts = 3;
    let r3 = evaluate_attacks(
        &model,
        &set,
        Domain::Adv,
        &[AttackKind::Pgd],
        &restarts,
        5,
        |_| {},
    );
    assert!(
        r3.attacks[0].acc <= acc[0],
        "more restarts never help the model"
    );
    assert_eq!(r3.attacks[0].attack, "PGD-10x3");
}

/// A model that masks gradients: the classifier scaled by 10⁶ saturates the softmax, so the
/// cross-entropy gradient is exactly 0 for every correctly classified image and PGD and
/// APGD-CE cannot move, while the scale-free DLR loss and the gradient-free Square still can.
fn saturate(m: &mut Model) {
    for name in ["linear.weight", "linear.bias"] {
        let id = m
            .store
            .id(name)
            .unwrap_or_else(|| panic!("no entry {name}"));
        let t = m.store.get_mut(id);
        for v in t.data_mut() {
            *v *= 1e6;
        }
    }
}

fn masking_verdict(model: &Model, set: &ImageSet) -> masking::MaskingReport {
    let plan = RobustnessPlan {
        attacks: vec![AttackKind::Pgd],
        settings: AttackSettings {
            eps: 4.0 / 255.0,
            ..small_settings()
        },
        sweep: None,
        masking: true,
    };
    let eo = EvalOptions {
        batch: 8,
        pgd: None,
        seed: 0,
        keep_logits: false,
    };
    let (mut acc, _) = evaluate(model, set, Domain::Clean, &eo, |_| {});
    plan.run(model, set, Domain::Clean, 8, &mut acc, |_| {});
    assert_eq!(
        acc.eps_sweep.len(),
        4,
        "the default sweep: 2, 4, 8, 16 / 255"
    );
    let m = acc.masking.expect("the masking checks ran");
    println!("clean {:.1}%: {}", 100.0 * acc.clean_acc, m.verdict);
    for c in &m.checks {
        println!("  {}: {} ({})", c.check, c.passed, c.detail);
    }
    m
}

#[test]
fn masking_checks_fire_on_a_saturated_model_and_stay_quiet_on_a_normal_one() {
    let (model, set) = trained_model();
    let quiet = masking_verdict(&model, &set);
    assert!(!quiet.suspected, "normal model: {quiet:#?}");

    let (mut model, set) = trained_model();
    saturate(&mut model);
    let r = masking_verdict(&model, &set);
    assert!(r.suspected, "saturated model: {r:#?}");
    let failed: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.check.as_str())
        .collect();
    assert!(failed.iter().any(|c| c.contains("eps = 1")), "{r:#?}");
    assert!(failed.iter().any(|c| c.contains("black-box")), "{r:#?}");
    assert!(!r.warnings("clean").is_empty());
}
