//! Tests of src/corrupt/blur.rs, src/corrupt/glass.rs and the filters they share
//! (src/corrupt/filter.rs) against the reference libraries, and of kernels/corrupt_blur.cu
//! against the CPU. Fixtures: tools/make_corruption_fixtures.py (the 8-image corruption outputs,
//! glass_blur.stats.json) and `python -m oracle.blur` in tools/ (the exact-maths fixtures).

use super::{common, harness};
use rlnet::corrupt::blur::{self, DEFOCUS_SIDE};
use rlnet::corrupt::cuda::blur as gpu;
use rlnet::corrupt::cuda::{corrupt_device, has_kernel, GpuResources, ImageBatch};
use rlnet::corrupt::filter::{center_zoom, gaussian_plane, Border};
use rlnet::corrupt::glass::{self, FIRST_SCANNED};
use rlnet::corrupt::{Corruption, ImageKey, Severity};

#[test]
fn gaussian_blur_matches_the_reference() {
    harness::check_against_fixture(Corruption::GaussianBlur);
}

#[test]
fn defocus_blur_matches_the_reference() {
    harness::check_against_fixture(Corruption::DefocusBlur);
}

#[test]
fn zoom_blur_matches_the_reference() {
    harness::check_against_fixture(Corruption::ZoomBlur);
}

#[test]
fn glass_blur_matches_the_reference_statistics() {
    harness::check_against_stats(Corruption::GlassBlur);
}

/// A float fixture (f32 or f64 .npy) as (shape, values).
fn float_fixture(name: &str) -> (Vec<usize>, Vec<f64>) {
    common::npy(&harness::fixture_path(name))
}

/// scipy's gaussian_filter of a plane with values in [−0.5, 1.5] at the gaussian_blur and
/// glass_blur sigmas. Our taps use the C library's exp and numpy 1.26 (the oracle) its own
/// AVX-512 exp, which differ in the last bit for some taps (filter::gaussian_taps); where the
/// taps agree (σ .4, .8, .05) the filter must agree bit for bit, elsewhere within 1e-15.
#[test]
fn gaussian_plane_reproduces_scipy() {
    let (shape, data) = float_fixture("scipy_gaussian.npy");
    assert_eq!(shape, [8, 32, 32]);
    let plane = &data[..1024];
    let sigmas = [0.4, 0.6, 0.7, 0.8, 1.0, 0.25, 0.05];
    for (k, &sigma) in sigmas.iter().enumerate() {
        let mut got = plane.to_vec();
        gaussian_plane(&mut got, 32, 32, sigma, 4.0, Border::Nearest);
        let want = &data[(k + 1) * 1024..(k + 2) * 1024];
        let exact = got.iter().zip(want).filter(|(a, b)| a == b).count();
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f64, f64::max);
        println!("gaussian σ {sigma}: {exact}/1024 bit-identical, max diff {worst:e}");
        if [0.4, 0.8, 0.05].contains(&sigma) {
            assert_eq!(exact, 1024, "σ {sigma}: max diff {worst:e}");
        } else {
            assert!(worst <= 1e-15, "σ {sigma}: max diff {worst:e}");
        }
    }
}

/// scipy's order-1 zoom (through the reference's crop-zoom-trim) of an f32 plane at every
/// zoom_blur factor of severity 5 (np.arange's values) and snow's 1.25, 1.75, 2.25: bit-identical.
#[test]
fn center_zoom_reproduces_scipy() {
    let (shape, data) = float_fixture("scipy_zoom.npy");
    let mut factors = blur::zoom_factors(Severity::new(5).unwrap());
    factors.extend([1.25, 1.75, 2.25]);
    assert_eq!(shape, [factors.len() + 1, 32, 32]);
    let plane: Vec<f32> = data[..1024].iter().map(|&v| v as f32).collect();
    for (k, &z) in factors.iter().enumerate() {
        let got = center_zoom(&plane, 32, 32, z);
        let want = &data[(k + 1) * 1024..(k + 2) * 1024];
        let bad = got
            .iter()
            .zip(want)
            .filter(|(&a, &b)| a as f64 != b)
            .count();
        assert_eq!(
            bad, 0,
            "zoom {z:.17}: {bad} of 1024 values differ from scipy"
        );
    }
}

#[test]
fn zoom_factor_lists_keep_numpy_arange_float_error() {
    let counts: Vec<usize> = Severity::ALL
        .iter()
        .map(|&s| blur::zoom_factors(s).len())
        .collect();
    assert_eq!(counts, [7, 12, 16, 21, 26]);
    let s5 = blur::zoom_factors(Severity::new(5).unwrap());
    assert_eq!(s5[0], 1.0);
    assert_eq!(s5[25], 1.250_000_000_000_000_2);
}

/// The defocus kernel equals OpenCV's (disk + GaussianBlur) bit for bit, and the 17×17 kernel is
/// zero outside the central 5×5 that the stencil uses.
#[test]
fn defocus_kernel_reproduces_opencv() {
    let (shape, data) = float_fixture("defocus_kernels.npy");
    assert_eq!(shape, [5, 17, 17]);
    let c = 8 - DEFOCUS_SIDE / 2;
    for s in Severity::ALL {
        let full = &data[s.index() * 289..(s.index() + 1) * 289];
        let got = blur::defocus_kernel(s);
        for (i, &v) in full.iter().enumerate() {
            let (y, x) = (i / 17, i % 17);
            let inside = (c..c + DEFOCUS_SIDE).contains(&y) && (c..c + DEFOCUS_SIDE).contains(&x);
            let mine = if inside {
                got[(y - c) * DEFOCUS_SIDE + x - c]
            } else {
                0.0
            };
            assert_eq!(mine, v, "severity {}: tap ({y}, {x})", s.get());
        }
    }
}

/// glass_blur with fixed offsets against the reference's own sequential scan (its one-way
/// "swap" on numpy views) with the same offsets: the parallel gather must reproduce it. Only
/// the Gaussian's last-bit taps can differ (see gaussian_plane_reproduces_scipy), so at least
/// 99.9% of values must be identical and none more than 1 apart.
#[test]
fn glass_blur_with_fixed_offsets_matches_the_sequential_reference() {
    let Some(set) = harness::mini_test() else {
        return;
    };
    let bytes = std::fs::read(harness::fixture_path("glass_blur_offsets.npy")).unwrap();
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(f.shape(), [2, 30, 30, 2]);
    let offsets: Vec<i8> = f.into_vec().unwrap();
    let offset = |k: usize, h: usize, w: usize| {
        let i = ((k * 30 + (31 - h)) * 30 + (31 - w)) * 2;
        (offsets[i] as isize, offsets[i + 1] as isize)
    };
    let (shape, want) = harness::npy_u8("glass_blur_fixed.npy");
    let n = shape[1];
    let per = n * 3 * 1024;
    let clean = harness::first_images(set, n);
    for s in Severity::ALL {
        let mut got = vec![0u8; per];
        for (img, o) in clean.chunks(3072).zip(got.chunks_mut(3072)) {
            glass::glass_blur_with(s, img, harness::PLANE, o, offset);
        }
        let want = harness::hwc_to_chw(
            &want[s.index() * per..(s.index() + 1) * per],
            harness::PLANE,
        );
        let exact = got.iter().zip(&want).filter(|(a, b)| a == b).count();
        let (within, worst) = harness::agreement(&got, &want);
        println!(
            "glass_blur fixed offsets s{}: {:.4}% identical, max diff {worst}",
            s.get(),
            100.0 * exact as f64 / per as f64
        );
        assert!(
            within == 1.0 && exact as f64 >= 0.999 * per as f64,
            "severity {}: {exact} of {per} values identical, max diff {worst}",
            s.get()
        );
    }
}

/// The keyed draws: two per scanned pixel per pass, every index used once, all in {−1, 0}.
#[test]
fn glass_blur_draws_two_offsets_per_scanned_pixel_per_pass() {
    let p = harness::PLANE;
    let mut seen = vec![false; 2 * 2 * 900];
    for k in 0..2 {
        for h in FIRST_SCANNED..32 {
            for w in FIRST_SCANNED..32 {
                let i = glass::draw_index(p, k, h, w) as usize;
                assert!(!seen[i] && !seen[i + 1]);
                (seen[i], seen[i + 1]) = (true, true);
            }
        }
    }
    assert!(seen.iter().all(|&b| b));
    // The reference scans from the bottom-right corner: its first two draws are (31, 31)'s.
    assert_eq!(glass::draw_index(p, 0, 31, 31), 0);
    assert_eq!(glass::draw_index(p, 0, 31, 30), 2);
    let key = ImageKey::new(0, Corruption::GlassBlur, Severity::new(4).unwrap(), 3);
    let mut counts = [0usize; 2];
    for h in FIRST_SCANNED..32 {
        for w in FIRST_SCANNED..32 {
            let (dx, dy) = glass::keyed_offset(&key, p, 1, h, w);
            counts[(dx + 1) as usize] += 1;
            counts[(dy + 1) as usize] += 1;
        }
    }
    // 1800 fair coin flips: each side within 5 standard deviations (≈106) of 900.
    assert!(counts.iter().all(|&c| c.abs_diff(900) < 106), "{counts:?}");
}

/// The GPU kernels against the CPU on 64 cifar10-mini images at every severity: bit-identical
/// (the same f64/f32 operations in the same order, weights from the same host functions, and
/// the glass draws from the same keys). Images 100..164, so glass's streams start at `first`.
#[test]
fn gpu_blurs_match_the_cpu_bit_for_bit() {
    let Some(dev) = common::gpu() else { return };
    let Some(set) = harness::mini_test() else {
        return;
    };
    let (first, n) = (100usize, 64usize);
    let clean = set.images[first * 3072..(first + n) * 3072].to_vec();
    let images = dev.upload(&clean).unwrap();
    let res = rlnet::corrupt::Resources::default(); // the blurs need no textures
    for c in [
        Corruption::GaussianBlur,
        Corruption::GlassBlur,
        Corruption::DefocusBlur,
        Corruption::ZoomBlur,
    ] {
        for s in Severity::ALL {
            let mut out = dev.alloc::<u8>(n * 3072).unwrap();
            let family = ImageKey::family_seed(harness::SEED, c, s);
            let mut batch = ImageBatch::new(c.name(), &images, n, &mut out)
                .unwrap()
                .keyed(family, first as u64);
            match c {
                Corruption::GaussianBlur => gpu::gaussian_blur(&dev, s, &mut batch),
                Corruption::GlassBlur => gpu::glass_blur(&dev, s, &mut batch),
                Corruption::DefocusBlur => gpu::defocus_blur(&dev, s, &mut batch),
                _ => gpu::zoom_blur(&dev, s, &mut batch),
            }
            .unwrap();
            let got = dev.download(&out).unwrap();
            let want = rlnet::corrupt::corrupt_batch(
                c,
                s,
                &clean,
                harness::PLANE,
                first as u64,
                harness::SEED,
                &res,
            )
            .unwrap();
            let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            println!("{} s{} GPU vs CPU: {bad} values differ", c.name(), s.get());
            assert_eq!(bad, 0, "{} severity {}", c.name(), s.get());
        }
    }
}

/// Every corruption kernel is reached through an `ImageBatch`, whose constructor rejects
/// buffers that do not hold `n` images (instead of a kernel reading past them), with an error
/// that says what was expected; an empty batch launches nothing.
#[test]
fn gpu_corruptions_check_buffer_sizes() {
    let Some(dev) = common::gpu() else { return };
    let images = dev.zeros::<u8>(3072).unwrap();
    let mut out = dev.alloc::<u8>(3072).unwrap();
    let res = GpuResources::upload(&dev, &rlnet::corrupt::Resources::default()).unwrap();
    let s = Severity::new(5).unwrap();
    for c in Corruption::ALL {
        if c == Corruption::Frost || !has_kernel(c, s) {
            continue; // frost needs textures; the host paths check their own input
        }
        let err = corrupt_device(&dev, c, s, &images, 2, 0, 0, &res, &mut out).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("2 images of 3x32x32") && msg.contains("3072 bytes in"),
            "{}: {msg}",
            c.name()
        );
    }
    let (empty_in, mut empty_out) = (dev.zeros::<u8>(1).unwrap(), dev.zeros::<u8>(1).unwrap());
    let mut batch = ImageBatch::new("empty", &empty_in, 0, &mut empty_out).unwrap();
    gpu::gaussian_blur(&dev, s, &mut batch).unwrap();
    assert_eq!(dev.download(&empty_out).unwrap(), [0]);
}
