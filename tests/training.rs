//! Stage-1 machinery: PGD, SGD, checkpoints, and resuming an interrupted run.

mod common;

use rlnet::augmix::AugMixConfig;
use rlnet::autograd::{GradMode, Graph};
use rlnet::checkpoint;
use rlnet::data::source::{DatasetKind, DatasetSpec};
use rlnet::nn::{Domain, Model, Pass};
use rlnet::optim::{Sgd, SgdConfig, StepSchedule};
use rlnet::robust::pgd::{attack, Attack, AttackLoss, PgdConfig};
use rlnet::tensor::precision::Precision;
use rlnet::tensor::Tensor;
use rlnet::train::driver::LoopConfig;
use rlnet::train::teacher::{run, AugmentConfig, TeacherConfig, CHECKPOINT_NAME};
use rlnet::train::RunOptions;

fn images(n: usize) -> (Tensor, Vec<u32>) {
    let x = (0..n * 3072)
        .map(|i| ((i * 7919) % 256) as f32 / 255.0)
        .collect();
    (
        Tensor::from_vec(&[n, 3, 32, 32], x).unwrap(),
        (0..n as u32).map(|i| i % 10).collect(),
    )
}

fn ce_sum(m: &Model, x: &Tensor, y: &[u32]) -> f32 {
    let mut g = Graph::new(&m.store, GradMode::None);
    let xv = g.input(x.clone(), false);
    let out = m.forward(
        &mut g,
        xv,
        Pass {
            domain: Domain::Adv,
            train: false,
        },
    );
    let l = g.cross_entropy(out.logits, y, true);
    g.value(l).item()
}

#[test]
fn pgd_stays_in_the_ball_and_raises_the_loss() {
    let m = common::small_model(1);
    let (x, y) = images(4);
    let cfg = PgdConfig::linf(5);
    let spec = Attack {
        pgd: &cfg,
        domain: Domain::Adv,
        loss: AttackLoss::CrossEntropySum,
        seed: 7,
    };
    let adv = attack(&m, &x, &y, &spec, 0);
    for (&a, &c) in adv.data().iter().zip(x.data()) {
        assert!((0.0..=1.0).contains(&a));
        assert!((a - c).abs() <= cfg.eps + 1e-6);
    }
    assert!(
        ce_sum(&m, &adv, &y) > ce_sum(&m, &x, &y),
        "the attack increases the loss"
    );
    let again = attack(&m, &x, &y, &spec, 0);
    assert_eq!(adv, again, "same key, same attack");
    let other = attack(&m, &x, &y, &spec, 1);
    assert_ne!(adv, other, "another key draws another random start");
}

#[test]
fn sgd_follows_pytorch_momentum_and_weight_decay() {
    let m0 = common::small_model(2);
    let mut m = common::small_model(2);
    let (x, y) = images(4);
    let mut sgd = Sgd::new(SgdConfig::default(), &m.store);
    let id = m.store.id("linear.weight").unwrap();
    let mut grads_seen = Vec::new();
    for _ in 0..2 {
        let mut g = Graph::new(&m.store, GradMode::All);
        let xv = g.input(x.clone(), false);
        let out = m.forward(
            &mut g,
            xv,
            Pass {
                domain: Domain::Clean,
                train: true,
            },
        );
        let l = g.cross_entropy(out.logits, &y, false);
        let grads = g.backward(l);
        grads_seen.push(grads.param(id).unwrap().data().to_vec());
        drop(g);
        sgd.step(&mut m.store, &grads, 0.1);
    }
    // p1 = p0 - lr (g0 + wd p0); b1 = g0 + wd p0; b2 = 0.9 b1 + g1 + wd p1; p2 = p1 - lr b2.
    let p0 = m0.store.get(id).data();
    for i in 0..p0.len() {
        let b1 = grads_seen[0][i] + 5e-4 * p0[i];
        let p1 = p0[i] - 0.1 * b1;
        let b2 = 0.9 * b1 + grads_seen[1][i] + 5e-4 * p1;
        let p2 = p1 - 0.1 * b2;
        assert!((m.store.get(id).data()[i] - p2).abs() < 1e-6);
    }
    let s = StepSchedule::steps(0.05, vec![150, 180, 210], 0.1);
    assert_eq!(s.lr(0), 0.05);
    assert!((s.lr(150) - 0.005).abs() < 1e-9 && (s.lr(239) - 0.00005).abs() < 1e-9);
}

fn tiny_teacher(epochs: usize) -> TeacherConfig {
    let mut data = DatasetSpec::new(DatasetKind::Synthetic, None);
    data.synthetic_train = 48;
    data.synthetic_test = 16;
    TeacherConfig {
        model: common::small_model(0).config.clone(),
        data,
        run: LoopConfig {
            epochs,
            batch_size: 16,
            schedule: StepSchedule::steps(0.05, vec![1], 0.1),
            crop_pad: 4,
            seed: 5,
            eval_every: 0,
            checkpoint_every: 0,
            precision: Precision::F32,
        },
        sgd: SgdConfig::default(),
        pgd: PgdConfig::linf(1),
        eval_pgd_steps: 1,
        eval_batch: 8,
        // AugMix with the JSD term, so the resume tests cover every view of the step.
        augment: AugmentConfig {
            augmix: Some(AugMixConfig::default()),
            jsd_lambda: 12.0,
        },
        robust: true,
    }
}

fn opts(dir: &std::path::Path, resume: bool, stop_after: Option<usize>) -> RunOptions {
    RunOptions {
        out_dir: dir.to_path_buf(),
        resume,
        stop_after,
        stop_after_steps: None,
        show_progress: false,
        device: rlnet::device::Device::Cpu,
    }
}

fn all_tensors(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let c = checkpoint::load(path).unwrap();
    let m = c.model().unwrap();
    m.store
        .entries()
        .iter()
        .map(|e| (e.name.clone(), e.tensor.data().to_vec()))
        .collect()
}

#[test]
fn interrupted_and_resumed_run_equals_uninterrupted_run() {
    let root = std::env::temp_dir().join(format!("rlnet-resume-{}", std::process::id()));
    let (a, b, c) = (
        root.join("straight"),
        root.join("resumed"),
        root.join("mid_epoch"),
    );
    let cfg = tiny_teacher(2);
    let report = run(&cfg, &opts(&a, false, None))
        .unwrap()
        .expect("finished");
    assert_eq!(report.history.len(), 2);
    assert!(
        run(&cfg, &opts(&b, false, Some(1))).unwrap().is_none(),
        "stopped after one epoch"
    );
    assert!(
        run(&cfg, &opts(&b, false, None)).is_err(),
        "an existing run is not overwritten without --resume"
    );
    run(&cfg, &opts(&b, true, None)).unwrap().expect("finished");
    assert_eq!(
        all_tensors(&a.join(CHECKPOINT_NAME)),
        all_tensors(&b.join(CHECKPOINT_NAME))
    );

    // Killed mid-epoch: a run stopped (checkpointed) after 2 of its 3 first-epoch steps, then
    // resumed, ends with the same weights as well.
    run(
        &cfg,
        &RunOptions {
            stop_after_steps: Some(2),
            ..opts(&c, false, None)
        },
    )
    .unwrap();
    run(&cfg, &opts(&c, true, None)).unwrap().expect("finished");
    assert_eq!(
        all_tensors(&a.join(CHECKPOINT_NAME)),
        all_tensors(&c.join(CHECKPOINT_NAME))
    );
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn checkpoint_round_trip_keeps_every_tensor_mask_and_momentum() {
    let dir = std::env::temp_dir().join(format!("rlnet-ckpt-{}", std::process::id()));
    let path = dir.join("model.safetensors");
    let mut m = common::small_model(4);
    let mask = Tensor::from_vec(
        &[4, 32, 32],
        (0..4096).map(|i| (i % 3 == 0) as u8 as f32).collect(),
    )
    .unwrap();
    m.set_mask(0, mask.clone()).unwrap();
    let mut sgd = Sgd::new(SgdConfig::default(), &m.store);
    let (x, y) = images(4);
    let mut g = Graph::new(&m.store, GradMode::All);
    let xv = g.input(x, false);
    let out = m.forward(
        &mut g,
        xv,
        Pass {
            domain: Domain::Adv,
            train: true,
        },
    );
    let l = g.cross_entropy(out.logits, &y, false);
    let grads = g.backward(l);
    let updates = g.take_stat_updates();
    drop(g);
    sgd.step(&mut m.store, &grads, 0.1);
    rlnet::ops::bn_act::apply_stat_updates(&mut m.store, &updates).unwrap();
    let meta = checkpoint::CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        stage: "test".into(),
        model: m.config.clone(),
        state: serde_json::json!({"note": "round trip"}),
    };
    checkpoint::save(&path, &m, Some(&sgd), &meta).unwrap();
    assert!(
        !dir.join("model.safetensors.tmp").exists(),
        "the temporary file is renamed away"
    );
    let c = checkpoint::load(&path).unwrap();
    assert_eq!(c.meta.model, m.config);
    assert_eq!(c.meta.state["note"], "round trip");
    let back = c.model().unwrap();
    for (a, b) in m.store.entries().iter().zip(back.store.entries()) {
        assert_eq!(a.name, b.name);
        assert_eq!(
            a.tensor, b.tensor,
            "{} differs after the round trip",
            a.name
        );
    }
    assert_eq!(back.kept_relus(), m.kept_relus());
    assert_eq!(back.store.get(back.relu_layers[0].mask), &mask);
    let mut sgd2 = Sgd::new(SgdConfig::default(), &back.store);
    c.restore_optimizer(&back, &mut sgd2).unwrap();
    let a: Vec<_> = sgd.buffers().map(|(i, b)| (i, b.data().to_vec())).collect();
    let b: Vec<_> = sgd2
        .buffers()
        .map(|(i, b)| (i, b.data().to_vec()))
        .collect();
    assert_eq!(a, b, "momentum buffers survive");
    // A checkpoint missing a tensor is refused by name.
    let mut other = m.config.clone();
    other.width_mult = 0.125;
    let bigger = Model::new(other, 0).unwrap();
    let meta2 = checkpoint::CheckpointMeta {
        model: bigger.config.clone(),
        ..meta
    };
    let wrong = dir.join("wrong.safetensors");
    checkpoint::save(&wrong, &m, None, &meta2).unwrap();
    let err = checkpoint::load(&wrong)
        .unwrap()
        .model()
        .err()
        .expect("shape mismatch")
        .to_string();
    assert!(err.contains("conv1.weight"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_diverging_run_stops_naming_the_step_and_keeps_its_last_good_checkpoint() {
    let dir = std::env::temp_dir().join(format!("rlnet-diverge-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let mut cfg = tiny_teacher(2);
    cfg.run.schedule.base_lr = 1e6;
    cfg.run.checkpoint_every = 1;
    let e = run(&cfg, &opts(&dir, false, None)).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, rlnet::Error::Diverged { .. }) && msg.contains("teacher diverged at step"),
        "{msg}"
    );
    assert!(msg.contains("lower --lr"), "{msg}");
    // The checkpoint of the first step is kept, finite, and loads.
    let ckpt = dir.join(CHECKPOINT_NAME);
    assert!(ckpt.is_file(), "{msg}");
    assert!(msg.contains("still holds the last good state"), "{msg}");
    let model = checkpoint::load(&ckpt).unwrap().model().unwrap();
    for e in model.store.entries() {
        assert!(
            e.tensor.data().iter().all(|v| v.is_finite()),
            "{} saved with non-finite values",
            e.name
        );
    }
    std::fs::remove_dir_all(&dir).ok();

    // As the message says, --resume with a lower learning rate continues from the last good
    // checkpoint: a run that is sane in epoch 1 and diverges in epoch 2 (its lr x1e7).
    let mut cfg = tiny_teacher(2);
    cfg.run.schedule = StepSchedule::steps(0.05, vec![1], 1e7);
    let e = run(&cfg, &opts(&dir, false, None)).unwrap_err().to_string();
    assert!(
        e.contains("diverged at step") && e.contains("(epoch 2,"),
        "{e}"
    );
    cfg.run.schedule = StepSchedule::steps(0.05, vec![1], 0.1);
    let report = run(&cfg, &opts(&dir, true, None)).unwrap().unwrap();
    assert!(report.metrics.clean_acc.is_finite() && report.history.len() == 2);
    // Any other change of settings is still refused.
    cfg.run.batch_size = 8;
    let e = run(&cfg, &opts(&dir, true, None)).unwrap_err().to_string();
    assert!(e.contains("different settings"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
