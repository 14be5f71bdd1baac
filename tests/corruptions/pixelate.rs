//! Tests of src/corrupt/pixelate.rs and its kernel in kernels/corrupt_pixel.cu: Pillow's BOX
//! resizes against the reference fixture (integer maths: expected identical), and CPU/GPU
//! parity.

use super::{common, harness};
use rlnet::corrupt::cuda::pixel as corrupt_pixel;
use rlnet::corrupt::cuda::ImageBatch;
use rlnet::corrupt::{Corruption, Severity};

#[test]
fn pixelate_matches_the_reference() {
    harness::check_against_fixture(Corruption::Pixelate);
}

/// Pillow's arithmetic is integer once the weights are known, so the fixture must agree value
/// for value, not only within one grey level.
#[test]
fn pixelate_is_identical_to_the_reference() {
    let Some(set) = harness::mini_test() else {
        return;
    };
    let (shape, want) = harness::npy_u8("pixelate.npy");
    let n = shape[1];
    let per = n * 3 * harness::PLANE.len();
    let clean = harness::first_images(set, n);
    for s in Severity::ALL {
        let got = harness::run_cpu(Corruption::Pixelate, s, &clean);
        let want = harness::hwc_to_chw(
            &want[s.index() * per..(s.index() + 1) * per],
            harness::PLANE,
        );
        assert_eq!(got, want, "severity {}", s.get());
    }
}

/// Integer maths and the same f64 weights: bit-identical on all 1,017 images.
#[test]
fn gpu_pixelate_is_bit_identical_to_the_cpu() {
    let Some(dev) = common::gpu() else { return };
    let Some(set) = harness::mini_test() else {
        return;
    };
    let n = set.len();
    let d_in = dev.upload(&set.images).unwrap();
    for s in Severity::ALL {
        let mut d_out = dev.alloc::<u8>(set.images.len()).unwrap();
        let mut batch = ImageBatch::new("pixelate", &d_in, n, &mut d_out).unwrap();
        corrupt_pixel::pixelate(&dev, s, &mut batch).unwrap();
        let gpu = dev.download(&d_out).unwrap();
        let cpu = harness::run_cpu(Corruption::Pixelate, s, &set.images);
        assert_eq!(gpu, cpu, "severity {}", s.get());
    }
}
