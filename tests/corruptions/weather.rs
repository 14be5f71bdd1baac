//! Tests of src/corrupt/weather.rs: snow from fixed normal fields and angles, the plasma from
//! known uniform draws and fog's blend with a fixed plasma, value for value against the
//! reference libraries (fixtures of `python -m oracle.weather`); both random corruptions by the
//! statistics of their change; both CUDA kernels against the CPU.

use super::motion::{check_gpu, mismatches, npy_f64};
use super::{common, harness};
use rlnet::corrupt::cuda::weather as gpu;
use rlnet::corrupt::{weather, Corruption, Severity};

/// The first `count` fixture images and the per-image value count.
fn clean(count: usize) -> Option<(Vec<u8>, usize)> {
    let set = harness::mini_test()?;
    Some((harness::first_images(set, count), 3 * harness::PLANE.len()))
}

#[test]
fn snow_matches_the_reference_with_fixed_field_and_angle() {
    // [severity, image, 32, 32, 3], from fields [severity, image, 32, 32] and angles
    // [severity, image].
    let (shape, want) = harness::npy_u8("snow_exact.npy");
    let (_, fields) = npy_f64("snow_exact_field.npy");
    let (_, angles) = npy_f64("snow_exact_angle.npy");
    let count = shape[1];
    let Some((images, per)) = clean(count) else {
        return;
    };
    let mut out = vec![0u8; per];
    for s in Severity::ALL {
        let block = s.index() * count * per;
        let want_chw = harness::hwc_to_chw(&want[block..block + count * per], harness::PLANE);
        let mut got = Vec::new();
        for j in 0..count {
            let k = s.index() * count + j;
            let field = &fields[k * 1024..(k + 1) * 1024];
            let img = &images[j * per..(j + 1) * per];
            weather::snow_at(s, img, harness::PLANE, field, angles[k], &mut out);
            got.extend_from_slice(&out);
        }
        let (bad, worst) = mismatches(&got, &want_chw);
        let (within, _) = harness::agreement(&got, &want_chw);
        println!(
            "snow s{} (fixed field and angle): {bad} of {} values differ (max diff {worst}), {:.4}% within 1",
            s.get(),
            got.len(),
            100.0 * within
        );
        // The layer is zoomed in f32 (filter::center_zoom) where scipy zooms the f64 field, so
        // a layer value can land on the other side of the threshold or of an 8-bit step.
        assert!(within >= 0.999, "severity {}: max diff {worst}", s.get());
    }
}

#[test]
fn plasma_matches_numpy_from_the_same_draws() {
    // [severity, 1023] uniform draws and the reference's plasma [severity, 32, 32] from them.
    let (_, draws) = npy_f64("fog_exact_draws.npy");
    let (_, want) = npy_f64("fog_exact_plasma.npy");
    for s in Severity::ALL {
        let u = &draws[s.index() * 1023..(s.index() + 1) * 1023];
        let got = weather::plasma(weather::fog_params(s).1, |k| u[k]);
        let want = &want[s.index() * 1024..(s.index() + 1) * 1024];
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f64, f64::max);
        println!("plasma s{}: max |diff| {worst:e}", s.get());
        // The same f64 operations in the same order: bit-identical.
        assert_eq!(got.as_slice(), want, "severity {}", s.get());
    }
}

#[test]
fn fog_matches_the_reference_with_a_fixed_plasma() {
    let (shape, want) = harness::npy_u8("fog_exact.npy");
    let (_, plasmas) = npy_f64("fog_exact_plasma.npy");
    let count = shape[1];
    let Some((images, per)) = clean(count) else {
        return;
    };
    let mut out = vec![0u8; per];
    for s in Severity::ALL {
        let block = s.index() * count * per;
        let want_chw = harness::hwc_to_chw(&want[block..block + count * per], harness::PLANE);
        let field = &plasmas[s.index() * 1024..(s.index() + 1) * 1024];
        let mut got = Vec::new();
        for j in 0..count {
            weather::fog_at(
                s,
                &images[j * per..(j + 1) * per],
                harness::PLANE,
                field,
                &mut out,
            );
            got.extend_from_slice(&out);
        }
        let (bad, worst) = mismatches(&got, &want_chw);
        println!(
            "fog s{} (fixed plasma): {bad} of {} values differ (max diff {worst})",
            s.get(),
            got.len()
        );
        assert_eq!(bad, 0, "severity {}", s.get());
    }
}

#[test]
fn snow_matches_reference_statistics() {
    harness::check_against_stats(Corruption::Snow);
}

#[test]
fn fog_matches_reference_statistics() {
    harness::check_against_stats(Corruption::Fog);
}

#[test]
fn gpu_snow_matches_cpu() {
    let Some(dev) = common::gpu() else { return };
    // Within one level: the normal draws go through CUDA's f64 log/sqrt/cos, which may differ
    // from Rust's libm in the last bit.
    check_gpu(&dev, Corruption::Snow, &gpu::snow, false);
}

#[test]
fn gpu_fog_matches_cpu() {
    let Some(dev) = common::gpu() else { return };
    // Exact: uniform draws are integer maths and every f64 operation is the CPU's, unfused.
    check_gpu(&dev, Corruption::Fog, &gpu::fog, true);
}
