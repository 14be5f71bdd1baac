//! Tests of src/corrupt/motion.rs: the blur at fixed angles value for value against
//! ImageMagick (through Wand, with the reference's PNG round trips), the random corruption by
//! the statistics of its change, and the CUDA kernel against the CPU. Also the GPU parity
//! helper the snow, fog and frost tests share.

use super::{common, harness};
use rlnet::corrupt::cuda::weather as gpu;
use rlnet::corrupt::cuda::ImageBatch;
use rlnet::corrupt::{self, motion, Corruption, Severity};
use rlnet::device::cuda::CudaDevice;

/// Values that differ, and the largest difference.
pub(super) fn mismatches(got: &[u8], want: &[u8]) -> (usize, u8) {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).fold((0, 0), |(n, worst), (&a, &b)| {
        (n + (a != b) as usize, worst.max(a.abs_diff(b)))
    })
}

/// f64 (or int) values of a fixture .npy, with its shape.
pub(super) fn npy_f64(name: &str) -> (Vec<usize>, Vec<f64>) {
    common::npy(&harness::fixture_path(name))
}

#[test]
fn motion_blur_matches_imagemagick_at_fixed_angles() {
    let Some(set) = harness::mini_test() else {
        return;
    };
    // [angle, severity, image, 32, 32, 3], written by `python -m oracle.weather`.
    let (shape, want) = harness::npy_u8("motion_blur_exact.npy");
    let (_, angles) = npy_f64("motion_blur_exact_angles.npy");
    let (count, per) = (shape[2], 3 * harness::PLANE.len());
    let clean = harness::first_images(set, count);
    let mut out = vec![0u8; per];
    for s in Severity::ALL {
        let (mut bad, mut worst, mut total) = (0, 0, 0);
        for (a, &angle) in angles.iter().enumerate() {
            let block = (a * 5 + s.index()) * count * per;
            let want_chw = harness::hwc_to_chw(&want[block..block + count * per], harness::PLANE);
            for j in 0..count {
                let img = &clean[j * per..(j + 1) * per];
                motion::motion_blur_at(s, img, harness::PLANE, angle, &mut out);
                let (b, w) = mismatches(&out, &want_chw[j * per..(j + 1) * per]);
                bad += b;
                worst = worst.max(w);
                total += per;
            }
        }
        println!(
            "motion_blur s{} at {} fixed angles: {bad} of {total} values differ from ImageMagick (max diff {worst})",
            s.get(),
            angles.len()
        );
        // The spec's emulation of IM 6.9.11 Q16 is exact: no value may differ.
        assert_eq!(bad, 0, "severity {}: max diff {worst}", s.get());
    }
}

#[test]
fn motion_blur_matches_reference_statistics() {
    harness::check_against_stats(Corruption::MotionBlur);
}

/// The GPU launcher signature of the corruptions.
pub(super) type Launcher<'a> =
    &'a dyn Fn(&CudaDevice, Severity, &mut ImageBatch) -> rlnet::error::Result<()>;

/// Runs `launch` on 300 cifar10-mini images starting at dataset image 17 (so the per-image
/// keys are offset) at every severity and compares with the CPU. `exact`: every value equal
/// (the kernel does the CPU's f32/f64 operations in the CPU's order); otherwise at least
/// 99.9% of values within one grey level (for kernels whose draws go through f64 log/cos,
/// whose last bit may differ between CUDA and Rust's libm).
pub(super) fn check_gpu(dev: &CudaDevice, c: Corruption, launch: Launcher, exact: bool) {
    let Some(set) = harness::mini_test() else {
        return;
    };
    let (first, n, per) = (17usize, 300usize, 3 * harness::PLANE.len());
    let images = &set.images[first * per..(first + n) * per];
    let res = harness::resources().cloned().unwrap_or_default();
    let d_images = dev.upload(images).unwrap();
    for s in Severity::ALL {
        let want = corrupt::corrupt_batch(
            c,
            s,
            images,
            harness::PLANE,
            first as u64,
            harness::SEED,
            &res,
        )
        .unwrap();
        let mut d_out = dev.alloc::<u8>(images.len()).unwrap();
        let seed = corrupt::ImageKey::family_seed(harness::SEED, c, s);
        let mut batch = ImageBatch::new(c.name(), &d_images, n, &mut d_out)
            .unwrap()
            .keyed(seed, first as u64);
        launch(dev, s, &mut batch).unwrap();
        let got = dev.download(&d_out).unwrap();
        let (bad, worst) = mismatches(&got, &want);
        let (within, _) = harness::agreement(&got, &want);
        println!(
            "{} s{} GPU vs CPU: {bad} of {} values differ (max diff {worst}), {:.4}% within 1",
            c.name(),
            s.get(),
            got.len(),
            100.0 * within
        );
        if exact {
            assert_eq!(bad, 0, "{} severity {}", c.name(), s.get());
        } else {
            assert!(within >= 0.999, "{} severity {}", c.name(), s.get());
        }
    }
}

#[test]
fn gpu_motion_blur_matches_cpu() {
    let Some(dev) = common::gpu() else { return };
    // Exact: the weights come from the host and the sums are the CPU's f64 operations; only
    // a tap offset could move, if i·cosθ fell within an ulp of k + ½.
    check_gpu(&dev, Corruption::MotionBlur, &gpu::motion_blur, true);
}
