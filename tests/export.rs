//! `rlnet export --onnx`: the exported graph is well formed (every node input defined before
//! use, every initializer read, one Where per layer whose mask mixes 0s and 1s), and
//! onnxruntime running it gives rlnet's logits under both BN sets. onnxruntime comes from
//! `tools/setup_onnxruntime.sh` on PYTHONPATH; without it the runtime check is skipped with a
//! message, unless REQUIRE_ONNXRUNTIME=1 (CI) makes its absence a failure.

mod common;

use common::{assert_close, save_distilled, small_model};
use prost::Message;
use rlnet::eval::logits;
use rlnet::export::onnx;
use rlnet::export::onnx_proto::{DimValue, ModelProto};
use rlnet::nn::{Domain, Model};
use rlnet::rng::Stream;
use rlnet::tensor::Tensor;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rlnet-export-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The small model with what makes export non-trivial: BN running statistics that differ
/// between BN_c and BN_a, masks that mix kept and linear ReLUs, one layer fully linear and
/// one fully kept.
fn model() -> Model {
    with_stats_and_masks(small_model(5))
}

/// A WRN of depth 10, widening 2, at width 1/4 (its shortcut is a bare conv, its blocks add).
fn wrn() -> Model {
    use rlnet::nn::{Arch, ModelConfig};
    let cfg = ModelConfig {
        wrn: (10, 2),
        ..ModelConfig::new(Arch::Wrn22_8, 0.25)
    };
    with_stats_and_masks(Model::new(cfg, 6).unwrap())
}

fn with_stats_and_masks(mut m: Model) -> Model {
    let mut s = Stream::new(17, 3);
    for id in 0..m.store.len() {
        let e = m.store.entry(id);
        let (name, shape) = (e.name.clone(), e.tensor.shape().to_vec());
        let n: usize = shape.iter().product();
        let v: Vec<f32> = if name.ends_with("running_mean") {
            (0..n).map(|_| 0.2 * s.normal() as f32).collect()
        } else if name.ends_with("running_var") {
            (0..n).map(|_| 0.5 + s.uniform() as f32).collect()
        } else {
            continue;
        };
        m.store
            .set(id, Tensor::from_vec(&shape, v).unwrap())
            .unwrap();
    }
    for l in 0..m.relu_layers.len() {
        let n = m.relu_layers[l].count();
        let keep = |i: usize| match l {
            1 => 0.0,
            2 => 1.0,
            _ => (s.uniform() < 0.3 || i == 0) as u8 as f32,
        };
        let mask: Vec<f32> = (0..n).map(keep).collect();
        let shape = m.store.get(m.relu_layers[l].mask).shape().to_vec();
        m.set_mask(l, Tensor::from_vec(&shape, mask).unwrap())
            .unwrap();
    }
    m
}

#[test]
fn the_onnx_graph_is_well_formed() {
    let m = model();
    let bytes = onnx::export(&m, Domain::Adv).unwrap();
    let proto = ModelProto::decode(&bytes[..]).unwrap();
    assert_eq!(proto.ir_version, 8);
    assert_eq!(proto.opset_import[0].version, 17);
    let g = proto.graph.unwrap();
    let input = &g.input[0];
    assert_eq!(input.name, "input");
    let dims = &input.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
    let dims = &dims.shape.as_ref().unwrap().dim;
    assert_eq!(dims[0].value, Some(DimValue::DimParam("batch".into())));
    assert_eq!(dims[1].value, Some(DimValue::DimValue(3)));
    assert_eq!(g.output[0].name, "logits");
    // Topological order: every input is the graph input, an initializer or an earlier output.
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut defined: HashSet<&str> = inits.clone();
    defined.insert("input");
    let mut read = HashSet::new();
    for n in &g.node {
        for i in &n.input {
            assert!(
                defined.contains(i.as_str()),
                "{} reads {i} before it exists",
                n.name
            );
            read.insert(i.as_str());
        }
        defined.extend(n.output.iter().map(|o| o.as_str()));
    }
    assert!(defined.contains("logits"));
    assert_eq!(
        inits.difference(&read).count(),
        0,
        "every initializer is read"
    );
    // 17 ReLU layers: layer 1 fully linear (no op), layer 2 fully kept (Relu alone), the
    // other 15 mixed (Relu and Where with the mask as a BOOL initializer).
    let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
    assert_eq!(count("Where"), 15);
    assert_eq!(count("Relu"), 16);
    assert_eq!(
        count("Conv"),
        20,
        "17 3x3 convolutions and 3 shortcut convolutions"
    );
    assert_eq!(count("Gemm"), 1);
    let masks = g.initializer.iter().filter(|t| t.data_type == 9);
    assert!(
        masks.clone().all(|t| t.name.ends_with("mask")),
        "masks keep their names"
    );
    assert_eq!(masks.count(), 15);
    // BN_a is the one exported: its statistics differ from BN_c's, so the graphs differ.
    let clean = onnx::export(&m, Domain::Clean).unwrap();
    assert_ne!(clean, bytes);
}

/// Whether `python3` with onnxruntime and numpy is importable here.
fn onnxruntime() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("REQUIRE_ONNXRUNTIME").is_ok_and(|v| v == "1") {
        panic!("REQUIRE_ONNXRUNTIME=1 but python3 cannot import onnxruntime and numpy (PYTHONPATH=$(tools/setup_onnxruntime.sh))");
    }
    ok
}

fn write_npy(path: &Path, shape: &[u64], data: &[f32]) {
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::fs::File::create(path).unwrap())
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

#[test]
fn onnxruntime_gives_rlnets_logits_under_both_bn_sets() {
    if !onnxruntime() {
        println!("skipped: python3 cannot import onnxruntime and numpy (PYTHONPATH=$(tools/setup_onnxruntime.sh))");
        return;
    }
    for (arch, m) in [("resnet18", model()), ("wrn", wrn())] {
        onnxruntime_matches(arch, &m);
    }
}

fn onnxruntime_matches(arch: &str, m: &Model) {
    let dir = tmp(&format!("ort-{arch}"));
    let mut s = Stream::new(23, 1);
    let (n, side) = (256, m.config.input_size);
    let pixels: Vec<f32> = (0..n * 3 * side * side)
        .map(|_| s.uniform() as f32)
        .collect();
    let x = Tensor::from_vec(&[n, 3, side, side], pixels.clone()).unwrap();
    let input = dir.join("x.npy");
    write_npy(&input, &[n as u64, 3, side as u64, side as u64], &pixels);
    for (domain, bn) in [(Domain::Clean, "clean"), (Domain::Adv, "adv")] {
        // Through the command, as a user runs it, from a checkpoint of the model.
        let ckpt = dir.join("m.safetensors");
        save_distilled(&ckpt, m);
        let file = dir.join(format!("{bn}.onnx"));
        let o = Command::new(env!("CARGO_BIN_EXE_rlnet"))
            .args([
                "export",
                ckpt.to_str().unwrap(),
                "--bn",
                bn,
                "--quiet",
                "--onnx",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = dir.join(format!("{bn}.npy"));
        let script = common::root().join("tools/onnx_run.py");
        let o = Command::new("python3")
            .arg(&script)
            .args([&file, &input, &out])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "onnx_run.py: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let (shape, got) = common::npy(&out);
        assert_eq!(shape, vec![n, 10]);
        let want = logits(m, &x, domain);
        assert_close(
            &format!("{arch} BN_{bn} logits"),
            &got,
            want.data(),
            1e-4,
            1e-4,
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn export_rejects_what_it_cannot_write() {
    let dir = tmp("bad");
    let ckpt = dir.join("m.safetensors");
    save_distilled(&ckpt, &model());
    let bytes = std::fs::read(&ckpt).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let out = dir.join("m.onnx");
    // `rlnet export FROM --onnx out EXTRA` fails with an error naming `needle`, writing nothing.
    let refused = |from: &Path, extra: &[&str], needle: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_rlnet"))
            .args([
                "export",
                from.to_str().unwrap(),
                "--onnx",
                out.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "expected a failure naming {needle}");
        assert!(e.contains(needle) && !e.contains("panicked"), "{e}");
        assert!(!out.exists(), "nothing written");
    };
    refused(&ckpt, &["--bn", "aug"], "triple-BN");
    refused(&cut, &[], "truncated");
    refused(&ckpt, &["--bn", "mid"], "mid");
    std::fs::remove_dir_all(&dir).ok();
}
