//! `rlnet import` and `rlnet export --state-dict` against PyTorch itself.
//!
//! tools/reference_models.py builds models with the reference repositories' module names
//! (RLNet's teachers and students, SNL's), random weights, BN statistics and masks, and saves
//! them as their training scripts do. rlnet imports each file and its logits must equal
//! PyTorch's on 256 images under every BN set, within 1e-5 of the largest logit; exported back,
//! the file must load with `load_state_dict(strict=True)` and give the same logits again. An
//! rlnet model exported directly must give rlnet's logits in PyTorch.
//!
//! PyTorch comes from `RLNET_TORCH_PYTHON` (tools/setup_torch.sh prints it), else `python3`;
//! without it these tests are skipped with a message, unless REQUIRE_TORCH=1 (CI). The bad-input
//! tests need no Python.

mod common;

use common::{assert_close, root, save_distilled};
use rlnet::eval::logits;
use rlnet::nn::{Arch, BnMode, Domain, Model, ModelConfig};
use rlnet::rng::Stream;
use rlnet::tensor::Tensor;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rlnet-pytorch-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The Python with torch, or None (the caller skips) unless REQUIRE_TORCH=1.
fn torch_python() -> Option<String> {
    let py = std::env::var("RLNET_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import torch, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("REQUIRE_TORCH").is_ok_and(|v| v == "1") {
        panic!("REQUIRE_TORCH=1 but {py} cannot import torch and numpy (RLNET_TORCH_PYTHON=$(tools/setup_torch.sh))");
    }
    if !ok {
        println!("skipped: {py} cannot import torch and numpy (RLNET_TORCH_PYTHON=$(tools/setup_torch.sh))");
    }
    ok.then_some(py)
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn rlnet(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rlnet"));
    c.args(args);
    c
}

fn reference(py: &str, args: &[&str]) -> Command {
    let mut c = Command::new(py);
    c.arg(root().join("tools/reference_models.py")).args(args);
    c
}

/// PyTorch's logits of the case's model loaded strictly from `pth`, on `images`, written to
/// `prefix`<BN set>.f32.
fn torch_logits(py: &str, case: &Path, pth: &Path, images: &Path, prefix: &Path) {
    let paths = [case, pth, images, prefix].map(|p| arg(p).to_string());
    let args: Vec<&str> = std::iter::once("logits")
        .chain(paths.iter().map(String::as_str))
        .collect();
    run(&mut reference(py, &args));
}

/// A path as a command-line argument.
fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn read_f32(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// `got` equals `want` within `tol` of want's largest magnitude.
fn assert_logits(name: &str, got: &[f32], want: &[f32], tol: f64) {
    let scale = want.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
    assert!(scale > 0.1, "{name}: logits too small to compare ({scale})");
    assert_close(name, got, want, tol * scale, 0.0);
}

struct Case {
    name: &'static str,
    arch: &'static str,
    layout: &'static str,
    bn: usize,
    width: f32,
    format: &'static str,
    dtype: &'static str,
    prefix: bool,
}

impl Case {
    fn json(&self, images: usize) -> String {
        serde_json::json!({
            "arch": self.arch, "layout": self.layout, "bn": self.bn, "width": self.width,
            "format": self.format, "dtype": self.dtype, "prefix": self.prefix, "seed": 11,
            // The single-BN teacher's file is its state dict alone.
            "wrap": self.bn != 1 || self.layout == "snl",
            "images": images,
        })
        .to_string()
    }

    /// The BN sets the PyTorch model runs, by its file suffix, and rlnet's domain for each.
    fn sets(&self) -> Vec<(&'static str, Domain)> {
        match (self.layout, self.bn) {
            ("snl", _) | (_, 1) => vec![("BN", Domain::Clean), ("BN", Domain::Adv)],
            (_, 2) => vec![("BN_c", Domain::Clean), ("BN_a", Domain::Adv)],
            _ => vec![
                ("BN_c", Domain::Clean),
                ("BN_r", Domain::Aug),
                ("BN_a", Domain::Adv),
            ],
        }
    }

    fn rlnet_layout(&self) -> &'static str {
        match self.layout {
            "teacher" => "rlnet-teacher",
            "student" => "rlnet-student",
            _ => "snl",
        }
    }
}

#[rustfmt::skip]
const CASES: [Case; 8] = [
    Case { name: "resnet18-student-dual-full-width", arch: "resnet18", layout: "student", bn: 2, width: 1.0, format: "zip", dtype: "f32", prefix: false },
    Case { name: "resnet18-teacher-dual-shared-shortcut-bn", arch: "resnet18", layout: "teacher", bn: 2, width: 0.25, format: "zip", dtype: "f32", prefix: true },
    Case { name: "resnet18-teacher-triple-bf16", arch: "resnet18", layout: "teacher", bn: 3, width: 0.25, format: "zip", dtype: "bf16", prefix: false },
    Case { name: "resnet18-student-triple-legacy", arch: "resnet18", layout: "student", bn: 3, width: 0.25, format: "legacy", dtype: "f32", prefix: false },
    Case { name: "resnet18-teacher-single-bn", arch: "resnet18", layout: "teacher", bn: 1, width: 0.25, format: "zip", dtype: "f32", prefix: false },
    Case { name: "wrn22-8-student-dual-f16", arch: "wrn", layout: "student", bn: 2, width: 0.125, format: "zip", dtype: "f16", prefix: true },
    Case { name: "resnet18-snl", arch: "resnet18", layout: "snl", bn: 1, width: 0.25, format: "zip", dtype: "f32", prefix: false },
    Case { name: "wrn22-8-snl-legacy", arch: "wrn", layout: "snl", bn: 1, width: 0.125, format: "legacy", dtype: "f32", prefix: false },
];

/// Images the logits are compared on (32 for the full-width model).
const IMAGES: usize = 256;

fn images(path: &Path) -> Tensor {
    let data = read_f32(path);
    let n = data.len() / (3 * 32 * 32);
    Tensor::from_vec(&[n, 3, 32, 32], data).unwrap()
}

#[test]
fn reference_checkpoints_import_with_pytorchs_logits_and_export_back_strictly() {
    let Some(py) = torch_python() else { return };
    for case in &CASES {
        let dir = tmp(case.name);
        let spec = dir.join("case.json");
        // The full-width model checks the reference's own shapes; fewer images keep it quick.
        let count = if case.width >= 1.0 { 32 } else { IMAGES };
        std::fs::write(&spec, case.json(count)).unwrap();
        let d = arg(&dir);
        run(&mut reference(&py, &["make", arg(&spec), d]));
        let ckpt = dir.join("model.safetensors");
        let pth = dir.join("model.pth");
        let said = run(&mut rlnet(&["import", arg(&pth), "--out", arg(&ckpt)]));
        assert!(said.contains("imported"), "{said}");
        let model = rlnet::checkpoint::load(&ckpt).unwrap().model().unwrap();
        let x = images(&dir.join("images.f32"));
        for (file, domain) in case.sets() {
            let want = read_f32(&dir.join(format!("logits_{file}.f32")));
            let got = logits(&model, &x, domain);
            let name = format!(
                "{}: rlnet's logits under {domain:?} against PyTorch's {file}",
                case.name
            );
            assert_logits(&name, got.data(), &want, 1e-5);
        }
        // RLNet's 1-BN mode is imported (into both BN sets) but not written back.
        if case.bn == 1 && case.layout != "snl" {
            continue;
        }
        let back = dir.join("back.pth");
        let mut export = vec!["export", arg(&ckpt), "--state-dict", arg(&back)];
        export.extend(["--layout", case.rlnet_layout()]);
        run(&mut rlnet(&export));
        torch_logits(
            &py,
            &spec,
            &back,
            &dir.join("images.f32"),
            &dir.join("back_"),
        );
        for (file, _) in case.sets() {
            let want = read_f32(&dir.join(format!("logits_{file}.f32")));
            let got = read_f32(&dir.join(format!("back_{file}.f32")));
            let name = format!("{}: exported back, loaded strictly, {file}", case.name);
            assert_logits(&name, &got, &want, 1e-6);
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// An rlnet model with everything that makes the mapping non-trivial: BN statistics that
/// differ per set, masks mixing kept and linear ReLUs, one site fully linear, one fully kept.
fn rlnet_model(cfg: ModelConfig, linear_site: Option<&str>) -> Model {
    let mut m = Model::new(cfg, 5).unwrap();
    let mut s = Stream::new(19, 2);
    for id in 0..m.store.len() {
        let e = m.store.entry(id);
        let (name, shape) = (e.name.clone(), e.tensor.shape().to_vec());
        let n: usize = shape.iter().product();
        let v: Vec<f32> = match () {
            _ if name.ends_with("running_mean") => {
                (0..n).map(|_| 0.2 * s.normal() as f32).collect()
            }
            _ if name.ends_with("running_var") => {
                (0..n).map(|_| 0.5 + s.uniform() as f32).collect()
            }
            _ if name.ends_with(".bias")
                && !name.starts_with("linear")
                && !name.starts_with("fc") =>
            {
                (0..n).map(|_| 0.2 * s.normal() as f32).collect()
            }
            _ => continue,
        };
        m.store
            .set(id, Tensor::from_vec(&shape, v).unwrap())
            .unwrap();
    }
    for l in 0..m.relu_layers.len() {
        let layer = &m.relu_layers[l];
        let n = layer.count();
        let all_linear = Some(layer.name.as_str()) == linear_site || l == 1;
        let mask: Vec<f32> = (0..n)
            .map(|_| match (all_linear, l) {
                (true, _) => 0.0,
                (_, 2) => 1.0,
                _ => (s.uniform() < 0.3) as u8 as f32,
            })
            .collect();
        let shape = m.store.get(layer.mask).shape().to_vec();
        m.set_mask(l, Tensor::from_vec(&shape, mask).unwrap())
            .unwrap();
    }
    m
}

#[test]
fn an_rlnet_model_exported_loads_strictly_into_the_reference_with_rlnets_logits() {
    let Some(py) = torch_python() else { return };
    let triple = ModelConfig {
        bn: BnMode::Triple,
        ..ModelConfig::new(Arch::ResNet18, 0.25)
    };
    let wrn = ModelConfig::new(Arch::Wrn22_8, 0.125);
    let student = |name, arch, bn, cfg| (name, arch, "student", bn, cfg, None, "clean");
    let runs = [
        student("resnet18-student-triple", "resnet18", 3, triple),
        student("wrn-student-dual", "wrn", 2, wrn.clone()),
        // SNL's WRN has no ReLU after its final BN: that site is linear here.
        ("wrn-snl", "wrn", "snl", 1, wrn, Some("relu"), "adv"),
    ];
    for (name, arch, layout, bn, cfg, linear, bn_flag) in runs {
        let dir = tmp(name);
        let m = rlnet_model(cfg, linear);
        let ckpt = dir.join("m.safetensors");
        save_distilled(&ckpt, &m);
        let pth = dir.join("m.pth");
        let rl_layout = if layout == "snl" {
            "snl"
        } else {
            "rlnet-student"
        };
        run(&mut rlnet(&[
            "export",
            arg(&ckpt),
            "--state-dict",
            arg(&pth),
            "--layout",
            rl_layout,
            "--bn",
            bn_flag,
        ]));
        let case = Case {
            name: "",
            arch,
            layout,
            bn,
            width: m.config.width_mult,
            format: "zip",
            dtype: "f32",
            prefix: false,
        };
        let spec = dir.join("case.json");
        std::fs::write(&spec, case.json(0)).unwrap();
        let mut s = Stream::new(29, 1);
        let pixels: Vec<f32> = (0..64 * 3 * 32 * 32).map(|_| s.uniform() as f32).collect();
        let x = Tensor::from_vec(&[64, 3, 32, 32], pixels.clone()).unwrap();
        let bytes: Vec<u8> = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
        let img = dir.join("x.f32");
        std::fs::write(&img, bytes).unwrap();
        torch_logits(&py, &spec, &pth, &img, &dir.join("torch_"));
        for (file, domain) in case.sets() {
            // SNL's one BN is the set exported with --bn.
            let domain = match (layout, bn_flag) {
                ("snl", "adv") => Domain::Adv,
                ("snl", _) => Domain::Clean,
                _ => domain,
            };
            let want = logits(&m, &x, domain);
            let got = read_f32(&dir.join(format!("torch_{file}.f32")));
            assert_logits(
                &format!("{name}: PyTorch {file} against rlnet {domain:?}"),
                &got,
                want.data(),
                1e-5,
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}

// ---- Bad input: each a clear error naming what is wrong, never a panic, never code run. ----

/// `rlnet import` of `bytes`: its exit code must be 1 (an error, not a panic); returns stderr.
fn import_error(name: &str, bytes: &[u8]) -> String {
    let dir = tmp("bad");
    let pth = dir.join(format!("{name}.pth"));
    std::fs::write(&pth, bytes).unwrap();
    let out = dir.join(format!("{name}.safetensors"));
    let o = rlnet(&["import", arg(&pth), "--out", arg(&out)])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{name}: exit code (stderr: {err})"
    );
    assert!(!out.exists(), "{name}: nothing is written");
    err
}

/// A torch.save-style zip holding `pickle` as data.pkl and `storages` as data/<i>.
fn zip_pth(pickle: &[u8], storages: &[Vec<u8>]) -> Vec<u8> {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("m/data.pkl", o).unwrap();
    z.write_all(pickle).unwrap();
    for (i, s) in storages.iter().enumerate() {
        z.start_file(format!("m/data/{i}"), o).unwrap();
        z.write_all(s).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// A valid RLNet-student .pth of a small ResNet18, as rlnet exports it.
fn student_pth() -> (Model, Vec<u8>) {
    let m = rlnet_model(ModelConfig::new(Arch::ResNet18, 0.125), None);
    let bytes = rlnet::pytorch::reference::export(
        &m,
        rlnet::pytorch::reference::Layout::RlnetStudent,
        Domain::Clean,
    )
    .unwrap();
    (m, bytes)
}

/// A tensor's values as a test edits them.
enum Owned {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// The student's state dict (name, shape, values) and masks (shape, values).
type Parts = (
    Vec<(String, Vec<usize>, Owned)>,
    Vec<(Vec<usize>, Vec<i64>)>,
);

/// The student's .pth re-saved with `edit` applied to its tensors and masks.
fn edited(edit: impl Fn(&mut Parts)) -> Vec<u8> {
    use rlnet::pytorch::writer::{pth, Entry, Item, Values};
    let (_, bytes) = student_pth();
    let archive = rlnet::pytorch::archive::read(&bytes, "x").unwrap();
    let saved = rlnet::pytorch::tensors::saved(&archive, "x").unwrap();
    let tensors = saved.state_dict.iter().map(|(n, t)| {
        let values = match t.floats(n) {
            Ok(v) => Owned::F32(v.to_vec()),
            Err(_) => Owned::I64(vec![0; t.shape.iter().product()]),
        };
        (n.clone(), t.shape.clone(), values)
    });
    let masks = saved.masks.as_ref().unwrap().iter().map(|t| {
        let v = t.binary("m").unwrap().iter().map(|&v| v as i64).collect();
        (t.shape.clone(), v)
    });
    let mut parts: Parts = (tensors.collect(), masks.collect());
    edit(&mut parts);
    let sd = parts.0.iter().map(|(n, s, v)| Entry {
        name: n.clone(),
        shape: s.clone(),
        values: match v {
            Owned::F32(v) => Values::F32(v),
            Owned::I64(v) => Values::I64(v.clone()),
        },
    });
    let masks = parts.1.iter().map(|(s, v)| Entry {
        name: String::new(),
        shape: s.clone(),
        values: Values::I64(v.clone()),
    });
    pth(&[
        ("model", Item::StateDict(sd.collect())),
        ("mask_epoch", Item::List(masks.collect())),
    ])
    .unwrap()
}

#[test]
fn an_exported_student_imports_back_to_the_same_model_without_python() {
    let (m, bytes) = student_pth();
    let dir = tmp("roundtrip");
    let (pth, out) = (dir.join("s.pth"), dir.join("s.safetensors"));
    // The edit helper itself changes nothing when it edits nothing.
    for file in [bytes, edited(|_| {})] {
        std::fs::write(&pth, &file).unwrap();
        let args = ["import", arg(&pth), "--out", arg(&out), "--quiet"];
        run(&mut rlnet(&args));
        let back = rlnet::checkpoint::load(&out).unwrap().model().unwrap();
        assert_eq!(back.config, m.config);
        for id in 0..m.store.len() {
            let (a, b) = (m.store.entry(id), back.store.entry(id));
            assert_eq!(a.name, b.name);
            assert_eq!(a.tensor.data(), b.tensor.data(), "{}", a.name);
        }
    }
}

#[test]
fn damaged_or_foreign_checkpoints_are_clear_errors() {
    let (_, good) = student_pth();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 2].to_vec(), "zip archive"),
        (
            "not-a-checkpoint",
            b"{\"a\": 1} and some more text".to_vec(),
            "not a PyTorch checkpoint",
        ),
        ("empty", Vec::new(), "too short"),
        (
            "code",
            zip_pth(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsR.", &[]),
            "refusing the global os.system",
        ),
        (
            "whole-model",
            zip_pth(b"\x80\x02cmodels.resnet\nResNet18\n)\x81}b.", &[]),
            "refusing the global models.resnet.ResNet18",
        ),
        (
            "unexpected-call",
            zip_pth(b"\x80\x02ctorch\nFloatStorage\n)R.", &[]),
            "refusing a call of torch.FloatStorage",
        ),
        (
            "missing-tensor",
            edited(|(sd, _)| sd.retain(|(n, _, _)| n != "layer3.1.conv2.weight")),
            "no layer3.1.conv2.weight",
        ),
        (
            "misshaped-tensor",
            edited(|(sd, _)| {
                let w = sd
                    .iter_mut()
                    .find(|(n, _, _)| n == "linear.weight")
                    .unwrap();
                w.1.reverse();
            }),
            "linear.weight has shape [64, 10]; expected [10, 64]",
        ),
        (
            "extra-tensor",
            edited(|(sd, _)| {
                let extra = (
                    "layer5.0.conv1.weight".into(),
                    vec![2],
                    Owned::F32(vec![0.0, 1.0]),
                );
                sd.push(extra)
            }),
            "layer5.0.conv1.weight",
        ),
        (
            "unknown-architecture",
            edited(|(sd, _)| {
                for (n, _, _) in sd.iter_mut() {
                    *n = n.replace("layer", "stage");
                }
            }),
            "an unknown architecture",
        ),
    ];
    for (name, bytes, expect) in cases {
        let err = import_error(name, &bytes);
        assert!(
            err.contains(expect),
            "{name}: expected {expect:?} in: {err}"
        );
        assert!(
            err.contains(&format!("{name}.pth")),
            "{name}: the message names the file: {err}"
        );
    }
}

#[test]
fn masks_that_are_not_binary_and_weights_of_other_dtypes_are_refused_by_name() {
    let int_weight = edited(|(sd, _)| {
        let w = sd.iter_mut().find(|(n, _, _)| n == "conv1.weight").unwrap();
        w.2 = Owned::I64(vec![1; w.1.iter().product()]);
    });
    let err = import_error("int-weight", &int_weight);
    let want = "conv1.weight is int64: rlnet reads float32, float16 and bfloat16";
    assert!(err.contains(want), "{err}");
    let mask_of_2 = edited(|(_, masks)| masks[4].1[0] = 2);
    let err = import_error("mask-of-2", &mask_of_2);
    let want = "mask_epoch[4]: element 0 is 2; a ReLU mask holds only 0 (identity) and 1 (ReLU)";
    assert!(err.contains(want), "{err}");
    let short = edited(|(_, masks)| {
        masks.pop();
    });
    let err = import_error("16-masks", &short);
    assert!(
        err.contains("mask_epoch holds 16 masks; resnet18 has 17"),
        "{err}"
    );
}

#[test]
fn both_torch_save_formats_read_every_dtype_and_strided_views_exactly() {
    for file in ["legacy.pth", "zip.pth"] {
        let path = root().join("tests/fixtures/pytorch").join(file);
        let saved = rlnet::pytorch::read(&path).unwrap();
        let t = |name: &str| &saved.state_dict.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(t("conv.weight").shape, [2, 3, 1, 1]);
        assert_eq!(
            t("conv.weight").floats("c").unwrap(),
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
        assert_eq!(
            t("bn.running_var").floats("v").unwrap(),
            [0.5, 2.0],
            "{file}: float16"
        );
        assert_eq!(
            t("bn.weight").floats("w").unwrap(),
            [1.5, -1.0],
            "{file}: bfloat16"
        );
        let counter = t("bn.num_batches_tracked");
        assert_eq!(counter.dtype, rlnet::pytorch::DType::I64);
        assert!(counter.shape.is_empty());
        let e = counter
            .floats("bn.num_batches_tracked")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bn.num_batches_tracked is int64"), "{e}");
        assert_eq!(t("t.weight").shape, [3, 2]);
        assert_eq!(
            t("t.weight").floats("t").unwrap(),
            [0.0, 3.0, 1.0, 4.0, 2.0, 5.0],
            "{file}: the transpose's row-major values"
        );
        let masks = saved.masks.as_ref().unwrap();
        assert_eq!(masks.len(), 2);
        assert_eq!(masks[0].binary("m").unwrap(), [1.0, 0.0, 0.0, 1.0]);
        assert_eq!(masks[1].binary("m").unwrap(), [1.0; 4]);
    }
}

#[test]
fn imported_checkpoints_are_taken_by_info_eval_search_and_distill() {
    use rlnet::pytorch::reference::{export, Layout};
    let dir = tmp("commands");
    let teacher_cfg = ModelConfig {
        shared_shortcut_bn: true,
        ..ModelConfig::new(Arch::ResNet18, 0.125)
    };
    let teacher = Model::new(teacher_cfg, 3).unwrap();
    let (_, student) = student_pth();
    let files = [
        (
            "teacher",
            export(&teacher, Layout::RlnetTeacher, Domain::Clean).unwrap(),
        ),
        ("student", student),
    ];
    for (name, bytes) in &files {
        let pth = dir.join(format!("{name}.pth"));
        std::fs::write(&pth, bytes).unwrap();
        let out = dir.join(format!("{name}.safetensors"));
        let said = run(&mut rlnet(&["import", arg(&pth), "--out", arg(&out)]));
        let stage = if *name == "teacher" {
            "stage 'teacher'"
        } else {
            "stage 'search'"
        };
        assert!(said.contains(stage), "{said}");
    }
    let ckpt = |n: &str| {
        dir.join(format!("{n}.safetensors"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let (t, s) = (ckpt("teacher"), ckpt("student"));
    let said = run(&mut rlnet(&["info", "--checkpoint", &s]));
    assert!(said.contains("total"), "{said}");
    let small = ["--dataset", "synthetic", "--test-limit", "16"];
    let said = run(&mut rlnet(
        &[&["eval", "--checkpoint", &s][..], &small].concat(),
    ));
    assert!(said.contains("BN_adv"), "{said}");
    // A student stage from the imported checkpoints: `stage` with `with`, a few steps.
    let stage = |stage: &str, with: &[&str]| {
        let out = dir.join(stage);
        let o = arg(&out);
        let train = [
            "--preset",
            "smoke",
            "--epochs",
            "1",
            "--train-limit",
            "64",
            "--quiet",
        ];
        let args = [
            &[stage, "--teacher", &t, "--out", o][..],
            with,
            &small,
            &train,
        ]
        .concat();
        run(&mut rlnet(&args));
        out.join(format!("{stage}.safetensors"))
    };
    assert!(stage("search", &["--budget", "5k"]).is_file());
    let out = stage("distill", &["--student", &s]);
    assert!(out.is_file());
    std::fs::remove_dir_all(&dir).ok();
}
