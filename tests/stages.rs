//! Stages 2 and 3 end to end on tiny synthetic data: exact budgets after the search, a frozen
//! mask in the distillation, bit-identical resumes, and clear CLI errors.

use rlnet::augmix::AugMixConfig;
use rlnet::checkpoint::load_teacher;
use rlnet::checkpoint::{self, CheckpointMeta, FORMAT_VERSION};
use rlnet::data::source::{DatasetKind, DatasetSpec};
use rlnet::device::Device;
use rlnet::nn::{Arch, Model, ModelConfig};
use rlnet::optim::{SgdConfig, StepSchedule};
use rlnet::robust::pgd::PgdConfig;
use rlnet::search::plan::StudentInit;
use rlnet::search::snl::SnlConfig;
use rlnet::search::{layer_counts, layer_sizes, student_config, Fractions, MaskPlan};
use rlnet::tensor::precision::Precision;
use rlnet::train::distill_step::DistillWeights;
use rlnet::train::driver::LoopConfig;
use rlnet::train::student::{self, StudentConfig};
use rlnet::train::RunOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("rlnet-stages-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&p).ok();
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn data() -> DatasetSpec {
    let mut d = DatasetSpec::new(DatasetKind::Synthetic, None);
    d.synthetic_train = 32;
    d.synthetic_test = 16;
    d
}

/// An (untrained) teacher checkpoint at width 1/16: the loops only need a frozen network.
fn teacher(dir: &Path) -> PathBuf {
    let (norm_mean, norm_std) = DatasetKind::Synthetic.normalization();
    let cfg = ModelConfig {
        norm_mean,
        norm_std,
        ..ModelConfig::new(Arch::ResNet18, 0.0625)
    };
    let model = Model::new(cfg.clone(), 3).unwrap();
    let path = dir.join("teacher.safetensors");
    let meta = CheckpointMeta {
        format_version: FORMAT_VERSION,
        stage: "teacher".into(),
        model: cfg,
        state: serde_json::json!({ "config": { "data": data() } }),
    };
    checkpoint::save(&path, &model, None, &meta).unwrap();
    path
}

fn config(teacher: &Path, masks: MaskPlan, model: ModelConfig, loss: &str) -> StudentConfig {
    StudentConfig {
        masks,
        teacher: teacher.to_path_buf(),
        model,
        data: data(),
        run: LoopConfig {
            epochs: 2,
            batch_size: 16,
            schedule: StepSchedule::steps(0.05, vec![1], 0.1),
            crop_pad: 4,
            seed: 9,
            eval_every: 1,
            checkpoint_every: 0,
            precision: Precision::F32,
        },
        sgd: SgdConfig::default(),
        loss: loss.into(),
        weights: DistillWeights::default(),
        pgd: PgdConfig::linf(1),
        augmix: AugMixConfig::default(),
        eval_pgd_steps: 1,
        eval_batch: 8,
    }
}

fn search_config(teacher_path: &Path, budget: usize, fractions: Fractions) -> StudentConfig {
    let teacher = load_teacher(teacher_path, &Device::Cpu).unwrap();
    let model = student_config(&teacher.config);
    let sizes = layer_sizes(&model).unwrap();
    let (ks, how) = layer_counts(model.arch, 32, &sizes, budget, &fractions, &teacher).unwrap();
    assert_eq!(ks.iter().sum::<usize>(), budget);
    let masks = MaskPlan::Search {
        budget,
        fractions: how,
        ks,
        init: StudentInit::Random,
    };
    config(teacher_path, masks, model, "rslad+ce")
}

fn opts(dir: &Path, resume: bool, stop_after_steps: Option<usize>) -> RunOptions {
    RunOptions {
        out_dir: dir.to_path_buf(),
        resume,
        stop_after: None,
        stop_after_steps,
        show_progress: false,
        device: Device::Cpu,
    }
}

/// Every tensor of a checkpoint's model (weights, BN statistics, masks), by name.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let m = checkpoint::load(path).unwrap().model().unwrap();
    m.store
        .entries()
        .iter()
        .map(|e| (e.name.clone(), e.tensor.data().to_vec()))
        .collect()
}

fn masks(path: &Path) -> Vec<(String, Vec<f32>)> {
    tensors(path)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".mask"))
        .collect()
}

fn kept(path: &Path) -> usize {
    checkpoint::load(path)
        .unwrap()
        .model()
        .unwrap()
        .kept_relus()
}

#[test]
fn search_keeps_exactly_the_budget() {
    let root = tmp("budgets");
    let t = teacher(&root);
    let total: usize = layer_sizes(&student_config(&checkpoint::load(&t).unwrap().meta.model))
        .unwrap()
        .iter()
        .sum();
    for (i, (budget, fr)) in [
        (1_000, Fractions::Auto),
        (3_333, Fractions::Uniform),
        (7_777, Fractions::Named("relu82k".into())),
    ]
    .into_iter()
    .enumerate()
    {
        let mut cfg = search_config(&t, budget, fr);
        cfg.run.epochs = 1;
        let out = root.join(format!("s{i}"));
        let r = student::run(&cfg, &opts(&out, false, None))
            .unwrap()
            .expect("finished");
        assert_eq!(r.kept_relus, budget);
        assert_eq!(r.total_relus, total);
        assert_eq!(r.pi_cost.kept, budget);
        assert!(r.history.iter().all(|h| h.kept_relus == budget));
        assert_eq!(kept(&out.join("search.safetensors")), budget);
        assert_eq!(kept(&out.join("search_best.safetensors")), budget);
        let report = std::fs::read_to_string(out.join("report.json")).unwrap();
        // The report says how the budget was spread: auto at a budget no list totals falls
        // back to the teacher's pruning sensitivity.
        let how = [
            "sensitivity: one-shot global magnitude pruning",
            "uniform",
            "list relu82k",
        ];
        assert!(report.contains(how[i]), "{}", how[i]);
    }
}

#[test]
fn distill_keeps_the_mask_and_both_stages_resume_bit_identically() {
    let root = tmp("resume");
    let t = teacher(&root);
    let cfg = search_config(&t, 2_000, Fractions::Auto);
    // Straight through, then stopped mid-epoch (after 1 of 2 steps, scores half accumulated)
    // and resumed twice.
    let (a, b) = (root.join("search_a"), root.join("search_b"));
    student::run(&cfg, &opts(&a, false, None))
        .unwrap()
        .expect("finished");
    assert!(student::run(&cfg, &opts(&b, false, Some(1)))
        .unwrap()
        .is_none());
    assert!(
        student::run(&cfg, &opts(&b, false, None)).is_err(),
        "an existing run is not overwritten without --resume"
    );
    assert!(student::run(&cfg, &opts(&b, true, Some(3)))
        .unwrap()
        .is_none());
    student::run(&cfg, &opts(&b, true, None))
        .unwrap()
        .expect("finished");
    for name in ["search.safetensors", "search_best.safetensors"] {
        assert_eq!(tensors(&a.join(name)), tensors(&b.join(name)), "{name}");
    }

    let student = a.join("search_best.safetensors");
    let model = checkpoint::load(&student).unwrap().model().unwrap().config;
    let dcfg = config(
        &t,
        MaskPlan::Frozen {
            from: student.clone(),
        },
        model,
        "rslad+attn+augattn+ce",
    );
    let (c, d) = (root.join("distill_c"), root.join("distill_d"));
    let r = student::run(&dcfg, &opts(&c, false, None))
        .unwrap()
        .expect("finished");
    assert_eq!(r.kept_relus, 2_000);
    for name in ["distill.safetensors", "distill_best.safetensors"] {
        assert_eq!(masks(&c.join(name)), masks(&student), "{name}: mask frozen");
    }
    assert_ne!(
        tensors(&c.join("distill.safetensors")),
        tensors(&student),
        "the weights trained"
    );
    assert!(student::run(&dcfg, &opts(&d, false, Some(1)))
        .unwrap()
        .is_none());
    student::run(&dcfg, &opts(&d, true, None))
        .unwrap()
        .expect("finished");
    assert_eq!(
        tensors(&c.join("distill.safetensors")),
        tensors(&d.join("distill.safetensors"))
    );
}

/// An SNL linearisation of the teacher, strong enough (λ, lr) to reach `budget` within a few
/// epochs of 2 steps on this tiny model.
fn snl_config(t: &Path, budget: usize, epochs: usize) -> StudentConfig {
    let model = checkpoint::load(t).unwrap().meta.model;
    let snl = SnlConfig {
        lambda: 1e-2,
        growth: 2.0,
        patience_from: 0,
        ..SnlConfig::new(budget)
    };
    let base = config(t, MaskPlan::Linearize(snl), model, "natural");
    StudentConfig {
        run: LoopConfig {
            epochs,
            schedule: StepSchedule::steps(0.2, Vec::new(), 0.1),
            ..base.run.clone()
        },
        weights: DistillWeights {
            gamma: 1.0,
            alpha: 1.0,
            beta: 0.0,
            temperature: 4.0,
        },
        ..base
    }
}

#[test]
fn snl_linearises_to_exactly_the_budget_and_resumes_bit_identically() {
    let root = tmp("snl");
    let t = teacher(&root);
    let total = checkpoint::load(&t).unwrap().model().unwrap().total_relus();
    let budget = total / 4;
    let cfg = snl_config(&t, budget, 12);
    let a = root.join("snl_a");
    let r = student::run(&cfg, &opts(&a, false, None))
        .unwrap()
        .expect("finished");
    let p = r.snl.as_ref().expect("an SNL report says how it ended");
    assert!(p.reached, "count {} never reached {budget}", p.count);
    let last = p.binarised_after.expect("binarised");
    assert!(last + 1 < cfg.run.epochs, "ended early, at the budget");
    assert_eq!(r.history.len(), last + 1);
    assert!(p.count <= budget);
    // The count falls from the all-ReLU network; the last epoch's is binarised to the budget.
    let counts: Vec<usize> = r.history.iter().map(|e| e.kept_relus).collect();
    assert!(counts.windows(2).all(|w| w[1] <= w[0]), "{counts:?}");
    assert!(counts[counts.len() - 2] > budget, "{counts:?}");
    assert_eq!(r.kept_relus, budget, "exactly the budget, not under it");
    assert_eq!(kept(&a.join("snl_best.safetensors")), budget);
    assert!(r.history.iter().all(|e| e.lambda.is_some()));

    // Stopped mid-epoch twice (Adam's moments and the real α in the checkpoint), resumed:
    // the same network bit for bit.
    let b = root.join("snl_b");
    assert!(student::run(&cfg, &opts(&b, false, Some(1)))
        .unwrap()
        .is_none());
    assert!(student::run(&cfg, &opts(&b, true, Some(4)))
        .unwrap()
        .is_none());
    let rb = student::run(&cfg, &opts(&b, true, None))
        .unwrap()
        .expect("finished");
    assert_eq!(rb.snl, r.snl);
    for name in ["snl.safetensors", "snl_best.safetensors"] {
        assert_eq!(tensors(&a.join(name)), tensors(&b.join(name)), "{name}");
    }

    // Its binarised network fine-tunes like a searched one; the mask stays.
    let student = a.join("snl_best.safetensors");
    let model = checkpoint::load(&student).unwrap().model().unwrap().config;
    let dcfg = config(
        &t,
        MaskPlan::Frozen {
            from: student.clone(),
        },
        model,
        "natural",
    );
    let f = root.join("finetune");
    let r = student::run(&dcfg, &opts(&f, false, None))
        .unwrap()
        .expect("finished");
    assert_eq!(r.kept_relus, budget);
    assert_eq!(masks(&f.join("distill.safetensors")), masks(&student));
    // A checkpoint still learning α is refused as a student.
    let c = root.join("snl_c");
    assert!(student::run(&cfg, &opts(&c, false, Some(1)))
        .unwrap()
        .is_none());
    let early = config(
        &t,
        MaskPlan::Frozen {
            from: c.join("snl.safetensors"),
        },
        checkpoint::load(&t).unwrap().meta.model,
        "natural",
    );
    let e = student::run(&early, &opts(&root.join("early"), false, None)).unwrap_err();
    assert!(e.to_string().contains("binarised"), "{e}");
}

#[test]
fn snl_hits_its_epoch_cap_and_still_keeps_exactly_the_budget() {
    let root = tmp("snl-cap");
    let t = teacher(&root);
    // A budget of 10 sites cannot be reached in 1 epoch.
    let r = student::run(&snl_config(&t, 10, 1), &opts(&root.join("s"), false, None))
        .unwrap()
        .expect("finished");
    let p = r.snl.unwrap();
    assert!(!p.reached);
    assert_eq!(p.binarised_after, Some(0));
    assert_eq!(r.kept_relus, 10);
}

fn rlnet(args: &[&str]) -> std::process::Output {
    let bin = std::env::var_os("RLNET_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_rlnet").into());
    Command::new(bin).args(args).output().expect("run rlnet")
}

fn assert_clean_error(o: &std::process::Output, needle: &str) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure; stderr: {e}");
    assert!(!e.contains("panicked"), "panic instead of an error: {e}");
    assert!(
        e.to_lowercase().contains(&needle.to_lowercase()),
        "error does not mention {needle:?}: {e}"
    );
}

#[test]
fn cli_errors_are_clear() {
    let root = tmp("cli");
    let t = teacher(&root);
    let t = t.to_str().unwrap();
    let out = root.join("out");
    let out = out.to_str().unwrap();
    let missing = root.join("nope.safetensors");
    let missing = missing.to_str().unwrap();
    let base = ["--device", "cpu", "--quiet", "--out", out];
    let run = |extra: &[&str]| rlnet(&[extra, &base[..]].concat());
    assert_clean_error(
        &run(&["search", "--teacher", missing, "--budget", "1k"]),
        "teacher checkpoint",
    );
    assert_clean_error(
        &run(&["search", "--teacher", t, "--budget", "1m"]),
        "exceeds the model's 34816 ReLUs",
    );
    assert_clean_error(
        &run(&[
            "search",
            "--teacher",
            t,
            "--budget",
            "1k",
            "--fractions",
            "relu7k",
        ]),
        "no ReLU budget list 'relu7k'",
    );
    assert_clean_error(
        &run(&[
            "search",
            "--teacher",
            t,
            "--budget",
            "1k",
            "--fractions",
            "sensitivity:1.5",
        ]),
        "--fractions 'sensitivity:1.5'",
    );
    assert_clean_error(
        &run(&["search", "--teacher", t, "--budget", "lots"]),
        "ReLU budget 'lots'",
    );
    assert_clean_error(
        &run(&[
            "search",
            "--teacher",
            t,
            "--budget",
            "1k",
            "--mode",
            "magic",
        ]),
        "unknown loss mode",
    );
    assert_clean_error(
        &run(&["distill", "--teacher", t, "--student", missing]),
        "student checkpoint",
    );
    assert_clean_error(
        &run(&["distill", "--teacher", t, "--student", t]),
        "expects a stage-2 search or an snl checkpoint",
    );
    assert_clean_error(
        &run(&["snl", "--teacher", t, "--budget", "40k"]),
        "expected 1 to the model's 34816 ReLUs",
    );
    assert_clean_error(
        &run(&[
            "snl",
            "--teacher",
            t,
            "--budget",
            "1k",
            "--lambda-growth",
            "0.5",
        ]),
        "--lambda-growth 0.5",
    );
    assert_clean_error(
        &run(&[
            "distill",
            "--teacher",
            t,
            "--student",
            t,
            "--cosine",
            "--milestones",
            "3",
        ]),
        "cannot be used with",
    );
}

#[test]
fn a_diverging_student_stage_writes_no_checkpoint_of_its_bad_state() {
    let root = tmp("diverge");
    let t = teacher(&root);
    let mut cfg = search_config(&t, 1_000, Fractions::Uniform);
    // At lr 1e4 the BN running variances overflow in the second epoch.
    cfg.run.batch_size = 16;
    cfg.run.schedule = StepSchedule::steps(1e4, Vec::new(), 0.1);
    let out = root.join("s");
    let e = student::run(&cfg, &opts(&out, false, None)).unwrap_err();
    assert!(matches!(e, rlnet::Error::Diverged { .. }), "{e}");
    assert!(e.to_string().contains("search diverged at step"), "{e}");
    // Neither the run's checkpoint nor the best one holds a non-finite value.
    for f in ["search.safetensors", "search_best.safetensors"] {
        let p = out.join(f);
        if p.is_file() {
            for (name, v) in tensors(&p) {
                assert!(v.iter().all(|x| x.is_finite()), "{f}: {name} is not finite");
            }
        }
    }
    std::fs::remove_dir_all(&root).ok();
}

/// `--student-init teacher`: the search's student starts with the teacher's weights (a shared
/// teacher shortcut BN feeding both of the student's BN sets), keeps its own starting mask, and
/// a teacher whose network is not the student's is a clear error.
#[test]
fn a_student_initialised_from_the_teacher_starts_with_its_weights() {
    let dir = tmp("init");
    // A teacher with the reference's shared shortcut BN, so the BN mapping is exercised.
    let (norm_mean, norm_std) = DatasetKind::Synthetic.normalization();
    let cfg = ModelConfig {
        norm_mean,
        norm_std,
        shared_shortcut_bn: true,
        ..ModelConfig::new(Arch::ResNet18, 0.0625)
    };
    let path = dir.join("shared.safetensors");
    let trained = Model::new(cfg.clone(), 11).unwrap();
    let meta = CheckpointMeta {
        format_version: FORMAT_VERSION,
        stage: "teacher".into(),
        model: cfg,
        state: serde_json::json!({ "config": { "data": data() } }),
    };
    checkpoint::save(&path, &trained, None, &meta).unwrap();
    let mut sc = search_config(&path, 2_000, Fractions::Uniform);
    let with_init = |sc: &mut StudentConfig, want: StudentInit| {
        if let MaskPlan::Search { init, .. } = &mut sc.masks {
            *init = want;
        }
    };
    with_init(&mut sc, StudentInit::Teacher);
    let student = sc
        .masks
        .policy()
        .starting_student(&sc.model, 9, &path)
        .unwrap();
    let (mut same, mut mapped) = (0, 0);
    for e in student.store.entries() {
        if e.name.ends_with(".mask") {
            continue;
        }
        let id = trained.store.id(&e.name).or_else(|| {
            mapped += 1;
            trained
                .store
                .id(&e.name.replacen(".BN_a.", ".", 1).replacen(".BN_c.", ".", 1))
        });
        let t = trained
            .store
            .get(id.unwrap_or_else(|| panic!("no source for {}", e.name)));
        assert_eq!(t.data(), e.tensor.data(), "{}", e.name);
        same += 1;
    }
    assert!(
        same > 100 && mapped > 0,
        "{same} tensors copied, {mapped} through a shared BN"
    );
    // The default starts from fresh weights, not the teacher's, with the same starting mask.
    with_init(&mut sc, StudentInit::Random);
    let fresh = sc
        .masks
        .policy()
        .starting_student(&sc.model, 9, &path)
        .unwrap();
    let conv = fresh.store.id("conv1.weight").unwrap();
    assert_ne!(fresh.store.get(conv).data(), trained.store.get(conv).data());
    for l in &student.relu_layers {
        assert_eq!(
            student.mask(l),
            fresh.mask(l),
            "{}: the mask is the search's own",
            l.name
        );
    }
    assert!(student.kept_relus() < student.total_relus());
    // Another width is refused, naming the tensor that does not fit.
    with_init(&mut sc, StudentInit::Teacher);
    sc.model.width_mult = 0.125;
    let e = sc
        .masks
        .policy()
        .starting_student(&sc.model, 9, &path)
        .err()
        .expect("a wider student cannot take this teacher's weights")
        .to_string();
    assert!(
        e.contains("--student-init teacher") && e.contains("in the teacher but"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
