//! Tests of src/corrupt/frost.rs: the decoded and shrunken textures against OpenCV's (by a
//! fingerprint of every value), frost at fixed (texture, row, column) value for value against
//! the reference (fixtures of `python -m oracle.weather`), the random corruption by the
//! statistics of its change, and the CUDA kernel against the CPU.

use super::motion::{check_gpu, mismatches, npy_f64};
use super::{common, harness};
use rlnet::corrupt::cuda::weather as gpu;
use rlnet::corrupt::frost::{self, FrostTiles};
use rlnet::corrupt::{Corruption, Severity};

fn tiles() -> Option<&'static FrostTiles> {
    let t = harness::resources().and_then(|r| r.frost.as_ref());
    if t.is_none() {
        println!("skipped: ../shared/data/frost is absent");
    }
    t
}

#[test]
fn textures_decode_and_shrink_as_opencv_does() {
    let Some(tiles) = tiles() else { return };
    let path = harness::fixture_path("frost_tiles.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let want = v["tiles"].as_array().unwrap();
    assert_eq!(want.len(), tiles.tiles().len());
    for (t, w) in tiles.tiles().iter().zip(want) {
        let sum: u64 = t.rgb.iter().map(|&v| v as u64).sum();
        let weighted: u64 = t
            .rgb
            .iter()
            .enumerate()
            .map(|(k, &v)| v as u64 * (k as u64 % 1009 + 1))
            .sum();
        println!(
            "{}: {}x{}, sum {sum}, weighted sum {weighted}",
            w["file"], t.h, t.w
        );
        assert_eq!(
            (t.h as u64, t.w as u64, sum, weighted),
            (
                w["height"].as_u64().unwrap(),
                w["width"].as_u64().unwrap(),
                w["sum"].as_u64().unwrap(),
                w["weighted_sum"].as_u64().unwrap()
            ),
            "{}",
            w["file"]
        );
    }
}

#[test]
fn frost_matches_the_reference_at_fixed_crops() {
    let Some(tiles) = tiles() else { return };
    let Some(set) = harness::mini_test() else {
        return;
    };
    // [severity, image, 32, 32, 3] from params [severity, image, (texture, row, column)].
    let (shape, want) = harness::npy_u8("frost_exact.npy");
    let (_, params) = npy_f64("frost_exact_params.npy");
    let (count, per) = (shape[1], 3 * harness::PLANE.len());
    let images = harness::first_images(set, count);
    let mut out = vec![0u8; per];
    for s in Severity::ALL {
        let block = s.index() * count * per;
        let want_chw = harness::hwc_to_chw(&want[block..block + count * per], harness::PLANE);
        let mut got = Vec::new();
        for j in 0..count {
            let k = 3 * (s.index() * count + j);
            let [idx, r0, c0] = [0, 1, 2].map(|i| params[k + i] as usize);
            let img = &images[j * per..(j + 1) * per];
            frost::frost_at(s, img, harness::PLANE, tiles, idx, r0, c0, &mut out);
            got.extend_from_slice(&out);
        }
        let (bad, worst) = mismatches(&got, &want_chw);
        println!(
            "frost s{} (fixed texture and crop): {bad} of {} values differ (max diff {worst})",
            s.get(),
            got.len()
        );
        assert_eq!(bad, 0, "severity {}", s.get());
    }
}

#[test]
fn frost_matches_reference_statistics() {
    if tiles().is_none() {
        return;
    }
    harness::check_against_stats(Corruption::Frost);
}

#[test]
fn gpu_frost_matches_cpu() {
    let Some(dev) = common::gpu() else { return };
    let Some(tiles) = tiles() else { return };
    let d_tiles = gpu::upload_frost_tiles(&dev, tiles).unwrap();
    // Exact: integer draws and the CPU's two f64 products and one sum, unfused.
    check_gpu(
        &dev,
        Corruption::Frost,
        &|d, s, batch| gpu::frost(d, s, &d_tiles, batch),
        true,
    );
}
