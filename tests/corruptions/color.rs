//! Tests of src/corrupt/color.rs and its kernels in kernels/corrupt_pixel.cu: brightness,
//! contrast and saturate against the reference fixtures, and CPU/GPU parity.

use super::{common, harness};
use rlnet::corrupt::cuda::pixel as corrupt_pixel;
use rlnet::corrupt::cuda::ImageBatch;
use rlnet::corrupt::{color, Corruption, Severity};

const COLORS: [Corruption; 3] = [
    Corruption::Brightness,
    Corruption::Contrast,
    Corruption::Saturate,
];

#[test]
fn brightness_matches_the_reference() {
    harness::check_against_fixture(Corruption::Brightness);
}

#[test]
fn contrast_matches_the_reference() {
    harness::check_against_fixture(Corruption::Contrast);
}

#[test]
fn saturate_matches_the_reference() {
    harness::check_against_fixture(Corruption::Saturate);
}

/// Saturate at severity 2 (factor 0.1) on a grey image changes nothing, and at severity 5
/// (offset 0.2) turns grey into a tint: S = 0.2 with hue 0 (red), V kept.
#[test]
fn saturate_of_grey_follows_the_hsv_formulas() {
    let plane = harness::PLANE.len();
    let grey = vec![100u8; 3 * plane];
    let s2 = harness::run_cpu(Corruption::Saturate, Severity::ALL[1], &grey);
    assert_eq!(s2, grey);
    let s5 = harness::run_cpu(Corruption::Saturate, Severity::ALL[4], &grey);
    let v = 100.0 / 255.0;
    let (r, g, b) = color::hsv_to_rgb(0.0, 0.2, v);
    let want = [r, g, b].map(|x| (x * 255.0) as u8);
    assert_eq!(want, [100, 80, 80]);
    for ch in 0..3 {
        assert!(s5[ch * plane..(ch + 1) * plane]
            .iter()
            .all(|&x| x == want[ch]));
    }
}

fn run_gpu(c: Corruption, s: Severity, images: &[u8]) -> Vec<u8> {
    let dev = common::gpu().expect("checked by the caller");
    let n = images.len() / (3 * harness::PLANE.len());
    let d_in = dev.upload(images).unwrap();
    let mut d_out = dev.alloc::<u8>(images.len()).unwrap();
    let launch = match c {
        Corruption::Brightness => corrupt_pixel::brightness,
        Corruption::Contrast => corrupt_pixel::contrast,
        Corruption::Saturate => corrupt_pixel::saturate,
        _ => unreachable!(),
    };
    let mut batch = ImageBatch::new(c.name(), &d_in, n, &mut d_out).unwrap();
    launch(&dev, s, &mut batch).unwrap();
    dev.download(&d_out).unwrap()
}

/// The kernels use the CPU's f64 operations in the same order, without FMA contraction (and the
/// contrast means are summed in the same sequential order): bit-identical on all 1,017 images.
#[test]
fn gpu_color_is_bit_identical_to_the_cpu() {
    let Some(_dev) = common::gpu() else { return };
    let Some(set) = harness::mini_test() else {
        return;
    };
    for c in COLORS {
        for s in Severity::ALL {
            let cpu = harness::run_cpu(c, s, &set.images);
            let gpu = run_gpu(c, s, &set.images);
            let same = cpu.iter().zip(&gpu).filter(|(a, b)| a == b).count();
            println!(
                "gpu {} s{}: {same}/{} identical",
                c.name(),
                s.get(),
                cpu.len()
            );
            assert_eq!(gpu, cpu, "{} severity {}", c.name(), s.get());
        }
    }
}
