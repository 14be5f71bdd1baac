//! Tests of src/corrupt/elastic.rs against the reference libraries, and of
//! kernels/corrupt_elastic.cu (corrupt_elastic_transform) against the CPU. Fixtures:
//! elastic_transform.stats.json (tools/make_corruption_fixtures.py) and elastic_fixed_*.npy
//! (tools/oracle/elastic_spatter.py: OpenCV 3.4 warpAffine + scikit-image gaussian + scipy
//! map_coordinates on given draws).

use super::{common, harness};
use rlnet::corrupt::cuda::elastic as gpu;
use rlnet::corrupt::cuda::ImageBatch;
use rlnet::corrupt::elastic::{self, ElasticDraws};
use rlnet::corrupt::{Corruption, ImageKey, Severity};

#[test]
fn elastic_transform_matches_the_reference_statistics() {
    harness::check_against_stats(Corruption::ElasticTransform);
}

/// A float fixture (f32, f64 or i64 .npy) as (shape, values).
fn float_fixture(name: &str) -> (Vec<usize>, Vec<f64>) {
    common::npy(&harness::fixture_path(name))
}

/// HWC f32 values (the oracle's layout) to CHW (ours), one 32×32×3 image.
fn hwc_to_chw_f32(hwc: &[f64]) -> Vec<f32> {
    let n = harness::PLANE.len();
    let mut out = vec![0f32; 3 * n];
    for i in 0..n {
        for c in 0..3 {
            out[c * n + i] = hwc[i * 3 + c] as f32;
        }
    }
    out
}

/// The whole deterministic pipeline (affine jitter → getAffineTransform → warpAffine, Gaussian
/// displacement fields, map_coordinates) on the draws the oracle used: every float value of the
/// result equal to the reference's, bit for bit, at every severity.
#[test]
fn elastic_pipeline_reproduces_opencv_and_scipy_exactly() {
    let (shape, sev) = float_fixture("elastic_fixed_severity.npy");
    let cases = shape[0];
    let (_, images) = harness::npy_u8("elastic_fixed_in.npy");
    let (_, jitter) = float_fixture("elastic_fixed_jitter.npy");
    let (_, ux) = float_fixture("elastic_fixed_ux.npy");
    let (_, uy) = float_fixture("elastic_fixed_uy.npy");
    let (_, want) = float_fixture("elastic_fixed_out.npy");
    let p = harness::PLANE;
    let (n, per) = (p.len(), 3 * p.len());
    let mut per_severity = [(0usize, 0usize); 5];
    for k in 0..cases {
        let s = Severity::new(sev[k] as usize).unwrap();
        let draws = ElasticDraws {
            jitter: std::array::from_fn(|i| jitter[6 * k + i]),
            ux: ux[k * n..(k + 1) * n].to_vec(),
            uy: uy[k * n..(k + 1) * n].to_vec(),
        };
        let img = harness::hwc_to_chw(&images[k * per..(k + 1) * per], p);
        let got = elastic::elastic_values(s, &img, p, &draws);
        let want = hwc_to_chw_f32(&want[k * per..(k + 1) * per]);
        let same = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() == b.to_bits())
            .count();
        let row = &mut per_severity[s.index()];
        row.0 += same;
        row.1 += per;
    }
    for (i, &(same, total)) in per_severity.iter().enumerate() {
        println!(
            "elastic_transform s{} (fixed draws): {same}/{total} values bit-identical",
            i + 1
        );
        assert_eq!(same, total, "severity {}", i + 1);
    }
}

/// The draws follow the documented numbering: jitter from draws 0..6 scaled to U(−j, j), the
/// fields from draws 6.. and 6 + 1024.., each in [−1, 1).
#[test]
fn draws_follow_the_documented_numbering() {
    let s = Severity::new(2).unwrap();
    let key = ImageKey::new(harness::SEED, Corruption::ElasticTransform, s, 17);
    let d = ElasticDraws::draw(s, harness::PLANE, &key);
    let j = elastic::PARAMS[1].2;
    assert_eq!(d.jitter[3], -j + 2.0 * j * key.uniform(3));
    assert_eq!(d.ux[5], -1.0 + 2.0 * key.uniform(6 + 5));
    assert_eq!(d.uy[0], -1.0 + 2.0 * key.uniform(6 + 1024));
    assert!(d.ux.iter().chain(&d.uy).all(|v| (-1.0..1.0).contains(v)));
}

/// corrupt_elastic_transform against the CPU on 64 test images at every severity: bit-identical
/// (both sides perform the same f32/f64 operations in the same order, with the same draws).
#[test]
fn gpu_elastic_transform_is_bit_identical_to_the_cpu() {
    let Some(dev) = common::gpu() else { return };
    let Some(set) = harness::mini_test() else {
        return;
    };
    let count = 64;
    let clean = harness::first_images(set, count);
    let images = dev.upload(&clean).unwrap();
    let mut out = dev.alloc::<u8>(clean.len()).unwrap();
    for s in Severity::ALL {
        let seed = ImageKey::family_seed(harness::SEED, Corruption::ElasticTransform, s);
        let mut batch = ImageBatch::new("elastic", &images, count, &mut out)
            .unwrap()
            .keyed(seed, 0);
        gpu::elastic_transform(&dev, s, &mut batch).unwrap();
        let got = dev.download(&out).unwrap();
        let want = harness::run_cpu(Corruption::ElasticTransform, s, &clean);
        let same = got.iter().zip(&want).filter(|(a, b)| a == b).count();
        println!(
            "elastic_transform s{} GPU vs CPU: {same}/{} values identical",
            s.get(),
            got.len()
        );
        assert_eq!(same, got.len(), "severity {}", s.get());
    }
}
