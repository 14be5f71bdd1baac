//! Helpers shared by the integration tests: fixture reading and the one comparison helper.
#![allow(dead_code)]

use rlnet::device::cuda::CudaDevice;
use rlnet::device::Device;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The project root: RLNET_ROOT when set (test binaries copied to another machine by
/// tools/gpu-check.sh), else where this crate was built.
pub fn root() -> PathBuf {
    std::env::var_os("RLNET_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub fn fixture_dir(case: &str) -> PathBuf {
    root().join("tests/fixtures/golden").join(case)
}

/// The shared data folder: RLNET_SHARED when set (the GPU suite carries a copy of the parts
/// the tests read), else ../shared beside the project, if present.
pub fn shared_dir() -> Option<PathBuf> {
    let p = std::env::var_os("RLNET_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"));
    p.exists().then_some(p)
}

/// Reads an .npy (f32, f64, i64 or u8) as f64 values with its shape.
pub fn npy(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = f.shape().iter().map(|&d| d as usize).collect();
    let data = match f.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => f
            .into_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float => {
            f.into_vec::<f64>().unwrap()
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Int => f
            .into_vec::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Uint && t.size_field() == 1 => f
            .into_vec::<u8>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        other => panic!("{}: unsupported dtype {other:?}", path.display()),
    };
    (shape, data)
}

pub fn load(case: &str, name: &str) -> Vec<f64> {
    npy(&fixture_dir(case).join(format!("{name}.npy"))).1
}

pub fn load_f32(case: &str, name: &str) -> Vec<f32> {
    load(case, name).into_iter().map(|v| v as f32).collect()
}

pub fn shape(case: &str, name: &str) -> Vec<usize> {
    npy(&fixture_dir(case).join(format!("{name}.npy"))).0
}

/// Passes when |got − want| ≤ atol + rtol·|want| everywhere; otherwise panics with the max
/// absolute and relative errors, the worst index and the first mismatches.
pub fn assert_close<A: Into<f64> + Copy, B: Into<f64> + Copy>(
    name: &str,
    got: &[A],
    want: &[B],
    atol: f64,
    rtol: f64,
) {
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: length {} vs {}",
        got.len(),
        want.len()
    );
    let (mut max_abs, mut max_rel, mut worst) = (0f64, 0f64, 0usize);
    let mut bad = Vec::new();
    for i in 0..got.len() {
        let (g, w) = (got[i].into(), want[i].into());
        let d = (g - w).abs();
        if d > max_abs {
            max_abs = d;
            worst = i;
        }
        max_rel = max_rel.max(d / w.abs().max(1e-12));
        // Written so that a NaN on either side counts as a mismatch.
        let within = d <= atol + rtol * w.abs();
        if !within && bad.len() < 5 {
            bad.push((i, g, w));
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: max abs err {max_abs:.3e} (index {worst}), max rel err {max_rel:.3e}; first mismatches (index, got, want): {bad:?}"
    );
}

/// The CUDA device the GPU tests run on: the GPU when one is usable, else the CUDA emulator
/// (the same kernels on the CPU). `RLNET_TEST_DEVICE=cuda|emu` forces one (the GPU suite forces
/// cuda). With `REQUIRE_GPU=1` no GPU test may skip: a missing (or forced but unusable) device
/// fails instead. None (the test prints "skipped" and passes) only in a build without the
/// emulator, on a machine without a GPU.
pub fn gpu() -> Option<Arc<CudaDevice>> {
    static DEV: OnceLock<Result<Arc<CudaDevice>, String>> = OnceLock::new();
    let forced = std::env::var("RLNET_TEST_DEVICE").ok();
    let dev = DEV.get_or_init(|| {
        let real = || match Device::cuda() {
            Ok(Device::Cuda(d)) => Ok(d),
            Ok(Device::Cpu) => Err("no GPU".to_string()),
            Err(e) => Err(e.to_string()),
        };
        let emulated = || match Device::cuda_emu() {
            Ok(Device::Cuda(d)) => Ok(d),
            Ok(Device::Cpu) => Err("no emulator".to_string()),
            Err(e) => Err(e.to_string()),
        };
        match forced.as_deref() {
            Some("cuda") => real(),
            Some("emu") => emulated(),
            Some(other) => Err(format!("RLNET_TEST_DEVICE={other}: expected cuda or emu")),
            None => real()
                .or_else(|gpu_why| emulated().map_err(|emu_why| format!("{gpu_why}; {emu_why}"))),
        }
    });
    match dev {
        Ok(d) => Some(d.clone()),
        Err(why) => {
            let require = std::env::var("REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(
                !require && forced.is_none(),
                "no CUDA device for the GPU tests: {why}"
            );
            println!("skipped: no GPU and no emulator ({why})");
            None
        }
    }
}

/// The `--device` value that selects the device of `gpu()` from the command line.
pub fn device_flag(d: &CudaDevice) -> &'static str {
    if d.is_emulated() {
        "cuda-emu"
    } else {
        "cuda"
    }
}

/// ResNet18 at width 1/16 with the synthetic set's normalisation: the small model of the
/// training and attack tests.
/// Standard normal values, reproducible from `seed`.
pub fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut s = rlnet::rng::Stream::new(seed, 77);
    (0..n).map(|_| s.normal() as f32).collect()
}

pub fn small_model(seed: u64) -> rlnet::nn::Model {
    use rlnet::nn::{Arch, Model, ModelConfig};
    let (norm_mean, norm_std) = rlnet::data::source::DatasetKind::Synthetic.normalization();
    let cfg = ModelConfig {
        norm_mean,
        norm_std,
        ..ModelConfig::new(Arch::ResNet18, 0.0625)
    };
    Model::new(cfg, seed).unwrap()
}

/// `m` as a stage-3 checkpoint at `path` (what export and import read is the model alone).
pub fn save_distilled(path: &std::path::Path, m: &rlnet::nn::Model) {
    let meta = rlnet::checkpoint::CheckpointMeta {
        format_version: rlnet::checkpoint::FORMAT_VERSION,
        stage: "distill".into(),
        model: m.config.clone(),
        state: serde_json::json!({}),
    };
    rlnet::checkpoint::save(path, m, None, &meta).unwrap();
}
