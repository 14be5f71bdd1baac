//! The `rlnet` binary end to end: the smoke preset's accuracy, checkpoints through `eval`,
//! `info`, and clear errors (never a panic) for bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test: RLNET_BIN when set (the GPU suite's copy), else cargo's build.
/// Runs the binary with recycled CPU buffers poisoned (NaN), so that an op which leaves part of
/// its output unwritten breaks these end-to-end runs instead of reading stale values.
fn rlnet(args: &[&str]) -> Output {
    let bin = std::env::var_os("RLNET_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_rlnet").into());
    Command::new(bin)
        .args(args)
        .env("RLNET_POISON_UNINIT", "1")
        .output()
        .expect("run rlnet")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failed run: non-zero exit, an error message naming `needle`, and no panic.
fn assert_clean_error(o: &Output, needle: &str) {
    let e = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {e}"
    );
    assert!(!e.contains("panicked"), "panic instead of an error: {e}");
    assert!(
        e.to_lowercase().contains(&needle.to_lowercase()),
        "error does not mention {needle:?}: {e}"
    );
}

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("rlnet-cli-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&p).ok();
    p
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_str(&stdout(o)).expect("valid JSON on stdout")
}

#[test]
fn info_reports_the_paper_relu_counts() {
    let r = json(&rlnet(&["info", "--model", "resnet18", "--json"]));
    assert_eq!(r["total_relus"], 557_056);
    assert_eq!(r["kept_relus"], 557_056);
    assert_eq!(r["relu_layers"].as_array().unwrap().len(), 17);
    let r = json(&rlnet(&[
        "info",
        "--model",
        "resnet18",
        "--input-size",
        "64",
        "--json",
    ]));
    assert_eq!(r["total_relus"], 2_228_224);
    let r = json(&rlnet(&["info", "--model", "wrn22-8", "--json"]));
    assert_eq!(r["total_relus"], 1_392_640);
    let table = stdout(&rlnet(&["info", "--model", "resnet18"]));
    assert!(table.contains("layer4.1.relu2") && table.contains("557056"));
}

#[test]
fn info_reports_the_delphi_pi_cost() {
    let r = json(&rlnet(&["info", "--model", "resnet18", "--json"]));
    let pi = &r["pi_cost"];
    assert_eq!(pi["model"]["protocol"], "delphi");
    assert_eq!(pi["model"]["relu_online_us"], 23.0);
    assert_eq!(pi["model"]["relu_offline_us"], 56.0);
    assert_eq!(pi["model"]["relu_bytes"], 18_248.0);
    let layers = pi["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 17);
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
    let t = &pi["total"];
    assert_eq!(t["name"], "total");
    assert_eq!(t["relus"], 557_056);
    assert_eq!(t["kept"], 557_056);
    // 557,056 ReLUs x 23 us, x 56 us, x 18,248 B.
    assert!(close(f(&t["online_ms"]), 12_812.288));
    assert!(close(f(&t["offline_ms"]), 31_195.136));
    assert!(close(f(&t["comm_mb"]), 10_165.157_888));
    for key in ["online_ms", "offline_ms", "comm_mb"] {
        let sum: f64 = layers.iter().map(|l| f(&l[key])).sum();
        assert!(close(sum, f(&t[key])), "{key}");
    }
    assert_eq!(layers[0]["name"], r["relu_layers"][0]["name"]);
    assert_eq!(layers[0]["kept"], 65_536);
    assert!(!pi["not_included"].as_array().unwrap().is_empty());
    let table = stdout(&rlnet(&["info", "--model", "resnet18"]));
    assert!(table.contains("online ms") && table.contains("12812.3"));
}

#[test]
fn bad_flags_and_inputs_give_clear_errors() {
    let o = rlnet(&["info", "--model", "resnet50"]);
    assert_clean_error(&o, "invalid value");
    assert_eq!(o.status.code(), Some(2));
    assert_clean_error(&rlnet(&["teacher", "--device", "tpu"]), "invalid value");
    assert_clean_error(&rlnet(&["teacher", "--precision", "fp8"]), "invalid value");
    assert_clean_error(&rlnet(&["info", "--input-size", "30"]), "input size");
    assert_clean_error(&rlnet(&["info", "--width-mult", "0"]), "width multiplier");
    let out = tmp("errors");
    let out_s = out.to_str().unwrap();
    assert_clean_error(
        &rlnet(&["teacher", "--device", "cuda", "--out", out_s]),
        "no usable CUDA GPU",
    );
    // Numerics a device cannot compute are refused before anything is written.
    let args = [
        "teacher",
        "--device",
        "cpu",
        "--precision",
        "tf32",
        "--out",
        out_s,
    ];
    assert_clean_error(&rlnet(&args), "--precision tf32 needs a GPU");
    assert!(!out.exists(), "a refused run writes nothing");
    assert_clean_error(
        &rlnet(&["bench", "--device", "cuda-emu", "--only", "pgd"]),
        "the CUDA emulator's times say nothing about",
    );
    assert_clean_error(
        &rlnet(&["teacher", "--dataset", "cifar10", "--out", out_s, "--quiet"]),
        "--data-dir",
    );
    assert_clean_error(
        &rlnet(&[
            "teacher",
            "--dataset",
            "cifar10",
            "--data-dir",
            "/nonexistent/cifar",
            "--out",
            out_s,
            "--quiet",
        ]),
        "/nonexistent/cifar",
    );
    assert_clean_error(
        &rlnet(&[
            "teacher",
            "--preset",
            "smoke",
            "--batch-size",
            "1",
            "--out",
            out_s,
            "--quiet",
        ]),
        "batch size",
    );
    assert_clean_error(
        &rlnet(&["eval", "--checkpoint", "/nonexistent/teacher.safetensors"]),
        "nonexistent",
    );
    let eval_bad = |extra: &[&str], needle: &str| {
        let mut args = vec!["eval", "--checkpoint", "/nonexistent/teacher.safetensors"];
        args.extend_from_slice(extra);
        assert_clean_error(&rlnet(&args), needle);
    };
    eval_bad(&["--attack", "pgd,fab"], "unknown attack \"fab\"");
    eval_bad(&["--eps", "0"], "must be in (0, 1]");
    eval_bad(&["--eps", "-8/255"], "must be in (0, 1]");
    eval_bad(&["--eps", "1.5"], "must be in (0, 1]");
    eval_bad(&["--eps", "eight"], "--eps takes");
    eval_bad(
        &["--attack", "apgd-ce", "--apgd-iters", "0"],
        "APGD iterations must be at least 1",
    );
    eval_bad(
        &["--attack", "square", "--square-queries", "0"],
        "Square queries must be at least 1",
    );
    eval_bad(&["--restarts", "0"], "PGD restarts must be at least 1");
    eval_bad(
        &["--attack", "pgd", "--pgd-steps", "0"],
        "PGD needs at least 1 step",
    );
    eval_bad(
        &["--eps-sweep", "2,300"],
        "--eps-sweep values must be in (0, 255]",
    );
    std::fs::create_dir_all(&out).unwrap();
    let junk = out.join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint at all").unwrap();
    assert_clean_error(
        &rlnet(&["eval", "--checkpoint", junk.to_str().unwrap()]),
        "checkpoint",
    );
    std::fs::remove_dir_all(&out).ok();
}

/// The README's promise: the smoke preset reaches at least 85% clean test accuracy; then the
/// checkpoint goes through `eval` (JSON, logits dump), `info`, truncation and `--resume`.
#[test]
fn smoke_teacher_learns_and_its_checkpoint_evaluates() {
    let out = tmp("smoke");
    let out_s = out.to_str().unwrap();
    let o = rlnet(&["teacher", "--preset", "smoke", "--out", out_s, "--quiet"]);
    assert!(o.status.success(), "smoke run failed: {}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for key in ["stage", "model", "dataset", "epochs", "images_per_sec"] {
        assert!(!report[key].is_null(), "report.json lacks {key}");
    }
    let clean = report["metrics"]["clean_acc"].as_f64().unwrap();
    let pgd = report["metrics"]["pgd_acc"].as_f64().unwrap();
    println!(
        "smoke: clean {clean:.3}, pgd {pgd:.3}, {} img/s",
        report["images_per_sec"]
    );
    assert!(clean >= 0.85, "smoke clean accuracy {clean} < 0.85");
    assert!(
        pgd > 0.1,
        "an adversarially trained teacher keeps some PGD accuracy ({pgd})"
    );
    smoke_student_keeps_its_teachers_accuracy(&out, clean);

    let ckpt = out.join("teacher.safetensors");
    let ckpt_s = ckpt.to_str().unwrap();
    let logits = out.join("logits.npy");
    let r = json(&rlnet(&[
        "eval",
        "--checkpoint",
        ckpt_s,
        "--pgd-steps",
        "2",
        "--test-limit",
        "50",
        "--json",
        "--dump-logits",
        logits.to_str().unwrap(),
    ]));
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["bn"], "clean");
    assert_eq!(results[1]["bn"], "adv");
    let (shape, values) = common::npy(&logits);
    assert_eq!(shape, vec![2, 50, 10]);
    assert!(values.iter().all(|v| v.is_finite()));
    let r = json(&rlnet(&[
        "eval",
        "--checkpoint",
        ckpt_s,
        "--bn",
        "clean",
        "--pgd-steps",
        "0",
        "--test-limit",
        "20",
        "--json",
    ]));
    assert_eq!(r["results"].as_array().unwrap().len(), 1);

    // The strong evaluation end to end: every attack, the masking checks, the report folder.
    let rep = out.join("attacks");
    let r = json(&rlnet(&[
        "eval",
        "--checkpoint",
        ckpt_s,
        "--bn",
        "adv",
        "--test-limit",
        "20",
        "--attack",
        "pgd,apgd-ce,apgd-t,square,aa",
        "--apgd-iters",
        "5",
        "--apgd-targets",
        "2",
        "--square-queries",
        "20",
        "--masking-checks",
        "--report",
        rep.to_str().unwrap(),
        "--json",
    ]));
    let adv = &r["results"][0];
    let labels: Vec<&str> = adv["attacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attack"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["PGD-20", "APGD-CE", "APGD-T", "Square", "AA"]);
    let acc = |i: usize| adv["attacks"][i]["acc"].as_f64().unwrap();
    assert!(
        acc(4) <= acc(1).min(acc(2)).min(acc(3)) + 1e-9,
        "AA is the worst case of its parts"
    );
    assert_eq!(adv["masking"]["checks"].as_array().unwrap().len(), 5);
    assert_eq!(adv["eps_sweep"].as_array().unwrap().len(), 4);
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("| BN | clean % | PGD-20 % | APGD-CE % | APGD-T % | Square % | AA % |"));
    assert!(md.contains("## Gradient-masking checks, BN_adv"));
    assert!(rep.join("accuracy_vs_eps.svg").exists());

    let info = json(&rlnet(&["info", "--checkpoint", ckpt_s, "--json"]));
    assert_eq!(info["kept_relus"], info["total_relus"]);

    // NPA from corruptions made on the fly equals NPA from the same corruptions written as a
    // CIFAR-10-C folder by `rlnet corrupt` (same seed), severities picked from the stack.
    let cdir = out.join("c");
    let o = rlnet(&[
        "corrupt",
        "--test-limit",
        "40",
        "--corruption",
        "fog,brightness",
        "--out",
        cdir.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "corrupt failed: {}", stderr(&o));
    let eval_c = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--checkpoint",
            ckpt_s,
            "--bn",
            "clean",
            "--pgd-steps",
            "0",
            "--test-limit",
            "40",
            "--corruptions",
            "fog,brightness",
            "--severity",
            "1,3",
            "--json",
        ];
        args.extend_from_slice(extra);
        json(&rlnet(&args))["corruptions"][0].clone()
    };
    let fly = eval_c(&[]);
    let folder = eval_c(&["--cifar-c", cdir.to_str().unwrap()]);
    assert_eq!(fly["corruptions"], folder["corruptions"]);
    assert_eq!(fly["npa_corruptions"], 2);
    let rows = fly["corruptions"].as_array().unwrap();
    assert_eq!(rows[0]["corruption"], "fog");
    assert_eq!(rows[0]["by_severity"].as_array().unwrap().len(), 2);
    let npa = fly["npa"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&npa), "NPA {npa}");
    assert_clean_error(
        &rlnet(&[
            "eval",
            "--checkpoint",
            ckpt_s,
            "--corruptions",
            "snow",
            "--cifar-c",
            cdir.to_str().unwrap(),
            "--pgd-steps",
            "0",
        ]),
        "snow.npy",
    );

    // Finished runs refuse to be silently overwritten; a truncated checkpoint is an error.
    assert_clean_error(
        &rlnet(&["teacher", "--preset", "smoke", "--out", out_s, "--quiet"]),
        "--resume",
    );
    let bytes = std::fs::read(&ckpt).unwrap();
    let cut = out.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_error(
        &rlnet(&["eval", "--checkpoint", cut.to_str().unwrap()]),
        "truncated",
    );
    std::fs::remove_dir_all(&out).ok();
}

/// The smoke preset's stages 2 and 3 on the smoke teacher in `dir` (the README's main job
/// after its first stage): at 8,000 ReLUs (8.7x fewer) the student keeps its teacher's clean
/// accuracy within 15 points. The drop depends on the teacher's trajectory far more than on
/// stages 2-3: measured on 2026-12-02 (BENCHMARKS.md) it was 6.8 and 11.6 points for seeds 0
/// and 2 at 40f4c65, and 11.2, 8.4 and 20.2 for seeds 0-2 with the Winograd weight gradient;
/// on one seed-0 teacher, the two commits' stages 2-3 land within 1 point of each other. The
/// bound catches a broken search or distillation (a collapsed student),
/// not this seed noise; this test runs seed 0.
fn smoke_student_keeps_its_teachers_accuracy(dir: &Path, teacher_ca: f64) {
    let teacher = dir.join("teacher.safetensors");
    let (search, distill) = (dir.join("search"), dir.join("distill"));
    let common = [
        "--preset",
        "smoke",
        "--teacher",
        teacher.to_str().unwrap(),
        "--quiet",
    ];
    let run = |args: &[&str]| {
        let o = rlnet(&[args, &common[..]].concat());
        assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
    };
    run(&[
        "search",
        "--budget",
        "8k",
        "--out",
        search.to_str().unwrap(),
    ]);
    let best = search.join("search_best.safetensors");
    run(&[
        "distill",
        "--student",
        best.to_str().unwrap(),
        "--out",
        distill.to_str().unwrap(),
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(distill.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["kept_relus"], 8000);
    let ca = report["metrics"]["clean_acc"].as_f64().unwrap();
    println!("smoke student: clean {ca:.3} against its teacher's {teacher_ca:.3}");
    assert!(
        ca >= teacher_ca - 0.15,
        "the smoke student's clean accuracy {ca} fell more than 15 points below its \
         teacher's {teacher_ca}"
    );
}

#[test]
fn teacher_trains_on_real_cifar10_mini() {
    let Some(shared) = common::shared_dir() else {
        println!("skipped: ../shared not present");
        return;
    };
    let dir = shared.join("data/cifar10-mini/cifar-10-batches-bin");
    if !dir.exists() {
        println!("skipped: {} not present", dir.display());
        return;
    }
    let out = tmp("cifar");
    let o = rlnet(&[
        "teacher",
        "--dataset",
        "cifar10",
        "--data-dir",
        dir.to_str().unwrap(),
        "--width-mult",
        "0.0625",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--train-limit",
        "128",
        "--test-limit",
        "64",
        "--pgd-steps",
        "1",
        "--eval-pgd-steps",
        "1",
        "--attack",
        "apgd-ce",
        "--apgd-iters",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["dataset"], "cifar10");
    assert_eq!(report["metrics"]["per_bn"][0]["images"], 64);
    // The stage's final evaluation extended by --attack, written into its report.
    for bn in 0..2 {
        assert_eq!(
            report["metrics"]["per_bn"][bn]["attacks"][0]["attack"],
            "APGD-CE"
        );
    }
    assert!(stdout(&o).contains("APGD-CE"), "{}", stdout(&o));
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn corrupt_writes_the_cifar_c_layout_and_rejects_bad_input() {
    let out = tmp("corrupt");
    let out_s = out.to_str().unwrap();
    let o = rlnet(&[
        "corrupt",
        "--test-limit",
        "6",
        "--corruption",
        "fog,frost,jpeg_compression",
        "--severity",
        "all",
        "--out",
        out_s,
        "--sheet-image",
        "2",
    ]);
    assert!(o.status.success(), "corrupt failed: {}", stderr(&o));
    assert!(stderr(&o).contains("frost skipped"), "{}", stderr(&o));
    assert!(!out.join("frost.npy").exists(), "frost is never faked");
    let (shape, values) = common::npy(&out.join("fog.npy"));
    assert_eq!(shape, vec![30, 32, 32, 3]);
    assert!(values.iter().any(|&v| v != values[0]));
    let (shape, labels) = common::npy(&out.join("labels.npy"));
    assert_eq!(shape, vec![30]);
    assert_eq!(
        labels[..6],
        labels[6..12],
        "labels repeat once per severity"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["contact_sheet"]["rows"],
        serde_json::json!(["fog", "jpeg_compression"])
    );
    let png = std::fs::read(out.join("contact_sheet.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // A uint8 (N, 32, 32, 3) .npy in: the same images give the same output as the dataset.
    let input = out.join("in.npy");
    let (_, fog) = common::npy(&out.join("fog.npy"));
    write_u8_npy(&input, &[6, 32, 32, 3], &fog[..6 * 3072]);
    let again = out.join("again");
    let o = rlnet(&[
        "corrupt",
        "--input",
        input.to_str().unwrap(),
        "--corruption",
        "brightness",
        "--severity",
        "2",
        "--out",
        again.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "corrupt --input failed: {}", stderr(&o));
    assert!(!again.join("labels.npy").exists(), "no labels were given");
    assert_eq!(
        common::npy(&again.join("brightness.npy")).0,
        vec![6, 32, 32, 3]
    );

    let bad = |args: &[&str], needle: &str| {
        let mut a = vec!["corrupt", "--out", out_s];
        a.extend_from_slice(args);
        assert_clean_error(&rlnet(&a), needle);
    };
    bad(&["--corruption", "frost"], "--frost-dir");
    bad(&["--corruption", "blur"], "unknown corruption");
    bad(&["--severity", "6"], "severity");
    bad(&["--frost-dir", "/nonexistent"], "frost");
    let wrong = out.join("wrong.npy");
    write_u8_npy(&wrong, &[6, 32, 32], &fog[..6 * 1024]);
    bad(&["--input", wrong.to_str().unwrap()], "(N, H, W, 3)");
    let bytes = std::fs::read(&input).unwrap();
    let cut = out.join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    bad(&["--input", cut.to_str().unwrap()], "truncated");
    std::fs::remove_dir_all(&out).ok();
}

/// A uint8 .npy for the tests above (values given as the f64s `common::npy` returns).
fn write_u8_npy(path: &std::path::Path, shape: &[u64], values: &[f64]) {
    use npyz::WriterBuilder;
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut buf)
        .begin_nd()
        .unwrap();
    w.extend(values.iter().map(|&v| v as u8)).unwrap();
    w.finish().unwrap();
    std::fs::write(path, buf).unwrap();
}

/// Every stored tensor (weights, BN statistics, masks) of a checkpoint, by name.
fn checkpoint_values(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let m = rlnet::checkpoint::load(path).unwrap().model().unwrap();
    m.store
        .entries()
        .iter()
        .map(|e| (e.name.clone(), e.tensor.data().to_vec()))
        .collect()
}

#[test]
fn pipeline_runs_end_to_end_and_resumes_to_the_same_result() {
    let tiny = [
        "pipeline",
        "--preset",
        "smoke",
        "--budget",
        "1500",
        "--epochs",
        "1",
        "--train-limit",
        "96",
        "--test-limit",
        "32",
        "--corruptions",
        "fog,saturate",
        "--eval-pgd-steps",
        "2",
        "--attack",
        "pgd,aa",
        "--apgd-iters",
        "2",
        "--apgd-targets",
        "1",
        "--square-queries",
        "4",
        "--quiet",
        "--out",
    ];
    let whole = tmp("pipeline-whole");
    let mut args = tiny.to_vec();
    args.push(whole.to_str().unwrap());
    let o = rlnet(&args);
    assert!(o.status.success(), "pipeline failed: {}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["kept_relus"], 1500, "the budget is kept exactly");
    assert_eq!(report["budget"], 1500);
    // The teacher is measured beside the student, with the same PGD and corruptions.
    let t = &report["teacher"];
    assert_eq!(
        t["kept_relus"], t["total_relus"],
        "the teacher keeps every ReLU"
    );
    assert_eq!(t["metrics"]["per_bn"].as_array().unwrap().len(), 2);
    assert_eq!(t["metrics"]["pgd_steps"], 2);
    assert!(t["metrics"]["pgd_acc"].is_f64() && t["corruptions"][0]["npa"].is_f64());
    assert!(whole.join("teacher/evaluation.json").is_file());
    for key in [
        "stage",
        "method",
        "model",
        "dataset",
        "device",
        "total_relus",
        "relu_layers",
        "pi_cost",
        "train_secs",
        "stages",
        "corruptions",
        "config",
    ] {
        assert!(!report[key].is_null(), "report.json lacks {key}");
    }
    let per_bn = report["metrics"]["per_bn"].as_array().unwrap();
    assert_eq!(per_bn.len(), 2);
    assert!(per_bn.iter().all(|r| !r["pgd_acc"].is_null()));
    assert!(per_bn.iter().all(|r| r["attacks"][1]["attack"] == "AA"));
    let md = std::fs::read_to_string(whole.join("report.md")).unwrap();
    assert!(md.contains("| BN | clean % | PGD-2 % | AA % |"), "{md}");
    let npa = &report["corruptions"][0];
    assert_eq!(npa["bn"], "clean");
    assert_eq!(
        npa["npa_corruptions"], 1,
        "saturate is not one of the 15 of NPA"
    );
    assert_eq!(report["stages"].as_array().unwrap().len(), 4);
    let kept: u64 = report["relu_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kept"].as_u64().unwrap())
        .sum();
    assert_eq!(kept, 1500);
    for f in [
        "report.md",
        "relus_per_layer.svg",
        "accuracy_per_corruption.svg",
    ] {
        assert!(whole.join(f).is_file(), "pipeline wrote no {f}");
    }

    // Interrupted inside the teacher, then run again: the same student, bit for bit.
    let parts = tmp("pipeline-parts");
    let mut args = tiny.to_vec();
    args.push(parts.to_str().unwrap());
    let mut stop = args.clone();
    stop.extend(["--stop-after-steps", "1"]);
    let o = rlnet(&stop);
    assert!(
        o.status.success(),
        "interrupted pipeline failed: {}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("stopped in teacher"), "{}", stdout(&o));
    assert!(!parts.join("report.json").exists());
    let o = rlnet(&args);
    assert!(
        o.status.success(),
        "resumed pipeline failed: {}",
        stderr(&o)
    );
    let best = "distill/distill_best.safetensors";
    assert_eq!(
        checkpoint_values(&whole.join(best)),
        checkpoint_values(&parts.join(best)),
        "a resumed pipeline ends with the uninterrupted one's student"
    );
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(parts.join("report.json")).unwrap()).unwrap();
    // Equal but for the attacks' wall times.
    let untimed = |m: &serde_json::Value| {
        let mut m = m.clone();
        for bn in m["per_bn"].as_array_mut().unwrap() {
            for a in bn["attacks"].as_array_mut().unwrap() {
                a.as_object_mut().unwrap().remove("secs");
            }
        }
        m
    };
    assert_eq!(untimed(&again["metrics"]), untimed(&report["metrics"]));
    assert_eq!(again["corruptions"], report["corruptions"]);

    // A finished run folder is reused, stage by stage, never retrained.
    let o = rlnet(
        &args[..args.len() - 2]
            .iter()
            .copied()
            .chain(["--out", parts.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_error(
        &rlnet(&[
            "pipeline",
            "--budget",
            "10m",
            "--preset",
            "smoke",
            "--quiet",
            "--out",
            parts.to_str().unwrap(),
            "--epochs",
            "1",
        ]),
        "budget",
    );
    // Only the smoke preset has a default budget.
    assert_clean_error(
        &rlnet(&[
            "pipeline",
            "--quiet",
            "--out",
            parts.join("paper").to_str().unwrap(),
        ]),
        "--budget is required with --preset paper",
    );
    std::fs::remove_dir_all(&whole).ok();
    std::fs::remove_dir_all(&parts).ok();

    // The non-robust SENet recipe at the same budget: one BN set, no attack in training.
    let senet = tmp("pipeline-senet");
    let mut args = tiny.to_vec();
    args.extend([senet.to_str().unwrap(), "--method", "senet"]);
    let o = rlnet(&args);
    assert!(o.status.success(), "senet pipeline failed: {}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(senet.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["method"], "senet");
    assert_eq!(r["kept_relus"], 1500);
    assert_eq!(r["metrics"]["per_bn"].as_array().unwrap().len(), 1);
    let teacher: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(senet.join("teacher/report.json")).unwrap())
            .unwrap();
    assert_eq!(teacher["config"]["robust"], false);
    assert!(teacher["config"]["augment"]["augmix"].is_null());

    // SNL at the same budget, reusing that clean teacher (a finished stage is never retrained);
    // its linearisation runs until at most 1,500 α remain, then keeps exactly 1,500.
    let snl = tmp("pipeline-snl");
    copy_dir(&senet.join("teacher"), &snl.join("teacher"));
    let mut args = tiny.to_vec();
    args.extend([snl.to_str().unwrap(), "--method", "snl"]);
    let o = rlnet(&args);
    assert!(o.status.success(), "snl pipeline failed: {}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snl.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["method"], "snl");
    assert_eq!(r["kept_relus"], 1500);
    assert_eq!(r["metrics"]["per_bn"].as_array().unwrap().len(), 1);
    let stage: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snl.join("snl/report.json")).unwrap())
            .unwrap();
    assert!(stage["snl"]["binarised_after"].is_u64());
    assert_eq!(stage["kept_relus"], 1500);
    let finetune: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snl.join("distill/report.json")).unwrap())
            .unwrap();
    assert_eq!(finetune["config"]["schedule"]["cosine_epochs"], 1);
    assert_clean_error(
        &rlnet(&[
            "pipeline",
            "--method",
            "snl",
            "--fractions",
            "uniform",
            "--budget",
            "1500",
            "--quiet",
            "--out",
            snl.join("other").to_str().unwrap(),
        ]),
        "--fractions",
    );
    std::fs::remove_dir_all(&senet).ok();
    std::fs::remove_dir_all(&snl).ok();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Is PyTorch importable by `python3` here (the peer's requirement)?
fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn bench_times_items_against_their_floor_and_pytorch() {
    let items = "pgd/,bn_relu/resnet18/512x4x4/bwd,corrupt/contrast,512x4x4-512-k3s1/wgrad,stage1";
    let base = [
        "bench",
        "--device",
        "cpu",
        "--batch",
        "4",
        "--step-width",
        "0.0625",
        "--only",
        items,
        "--min-samples",
        "2",
        "--min-time",
        "0",
        "--warmup",
        "1",
    ];
    let listed = rlnet(&["bench", "--list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    // 21 distinct conv shapes x 3 directions, 8 BN-ReLU shapes x 2, PGD, AugMix, 19
    // corruptions, the stage-1 step.
    assert_eq!(stdout(&listed).lines().count(), 63 + 16 + 1 + 1 + 19 + 1);

    let mut args = base.to_vec();
    args.push("--json");
    let compare = torch_available();
    if compare {
        args.extend(["--compare-torch", "--torch-variants", "eager-f32"]);
    } else {
        eprintln!("python3 has no torch: --compare-torch left out");
    }
    let root = std::env::var("RLNET_ROOT").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let peer = format!("{root}/tools/torch_peer.py");
    if compare {
        args.extend(["--torch-peer", &peer]);
    }
    let report = json(&rlnet(&args));
    let rows = report["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "conv/resnet18/512x4x4-512-k3s1/wgrad",
            "bn_relu/resnet18/512x4x4/bwd",
            "pgd/update/2x3x32x32",
            "corrupt/contrast",
            "stage1_step/resnet18x0.0625/b4"
        ]
    );
    assert!(report["peaks"]["bandwidth"].as_f64().unwrap() > 1e8);
    for r in rows {
        let ms = r["measurement"]["median_s"].as_f64().unwrap();
        let frac = r["floor_fraction"].as_f64().unwrap();
        assert!(ms > 0.0 && frac > 0.0 && frac.is_finite(), "{r}");
        assert_eq!(r["measurement"]["samples"].as_u64(), Some(2), "{r}");
    }
    assert_eq!(rows[0]["bound"], "compute");
    assert_eq!(rows[1]["bound"], "memory");
    if compare {
        assert!(report["torch_version"].is_string());
        for r in [&rows[0], &rows[1], &rows[2], &rows[4]] {
            assert!(r["torch_ms"]["eager-f32"].as_f64().unwrap() > 0.0, "{r}");
        }
        // Corruptions have no PyTorch counterpart: a note, no time.
        assert!(rows[3]["torch_ms"].as_object().unwrap().is_empty());
        assert!(rows[3]["torch_notes"]
            .to_string()
            .contains("no PyTorch counterpart"));
    }

    // The table form carries the floor column and the summary.
    let table = rlnet(&base);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    assert!(
        text.contains("| of floor |") && text.contains("### summary"),
        "{text}"
    );
}

#[test]
fn bench_rejects_bad_input_clearly() {
    let bench = |extra: &[&str]| {
        let mut args = vec!["bench", "--device", "cpu", "--only", "pgd/"];
        args.extend_from_slice(extra);
        rlnet(&args)
    };
    assert_clean_error(
        &bench(&["--torch-variants", "eager-f16"]),
        "unknown PyTorch variant",
    );
    assert_clean_error(
        &rlnet(&["bench", "--only", "no-such-item"]),
        "matches no item",
    );
    assert_clean_error(&bench(&["--batch", "1"]), "--batch must be at least 2");
    assert_clean_error(
        &bench(&["--step-width", "0"]),
        "--step-width must be a positive",
    );
    assert_clean_error(&bench(&["--peak-bandwidth=-3"]), "--peak-bandwidth");
    assert_clean_error(
        &bench(&[
            "--compare-torch",
            "--torch-peer",
            "/nonexistent/torch_peer.py",
        ]),
        "no such file",
    );
    let root = std::env::var("RLNET_ROOT").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let peer = format!("{root}/tools/torch_peer.py");
    assert_clean_error(
        &bench(&[
            "--compare-torch",
            "--torch-peer",
            &peer,
            "--python",
            "/nonexistent/python3",
        ]),
        "cannot run the PyTorch peer",
    );
    assert_clean_error(&bench(&["--models", "vgg"]), "vgg");
}
