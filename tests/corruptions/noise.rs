//! Tests of src/corrupt/noise.rs and the noise kernels of kernels/corrupt_pixel.cu: the change
//! statistics against the oracle over all 1,017 cifar10-mini test images (the reference's
//! unseeded draws cannot be matched one by one), the documented draw numbering, and CPU/GPU
//! parity.

use super::{common, harness};
use rlnet::corrupt::cuda::pixel as corrupt_pixel;
use rlnet::corrupt::cuda::ImageBatch;
use rlnet::corrupt::{self, noise, Corruption, ImageKey, Resources, Severity};

const NOISES: [Corruption; 4] = [
    Corruption::GaussianNoise,
    Corruption::ShotNoise,
    Corruption::ImpulseNoise,
    Corruption::SpeckleNoise,
];

#[test]
fn gaussian_noise_matches_the_reference_statistics() {
    harness::check_against_stats(Corruption::GaussianNoise);
}

#[test]
fn shot_noise_matches_the_reference_statistics() {
    harness::check_against_stats(Corruption::ShotNoise);
}

#[test]
fn impulse_noise_matches_the_reference_statistics() {
    harness::check_against_stats(Corruption::ImpulseNoise);
}

#[test]
fn speckle_noise_matches_the_reference_statistics() {
    harness::check_against_stats(Corruption::SpeckleNoise);
}

/// A hit changes a value unless salt lands on 255 or pepper on 0, so the changed fraction is
/// amount·(1 − ½·P(v = 255) − ½·P(v = 0)); checked within 5 standard errors per severity.
#[test]
fn impulse_changes_the_expected_fraction_of_values() {
    let Some(set) = harness::mini_test() else {
        return;
    };
    let clean = &set.images;
    let n = clean.len() as f64;
    let white = clean.iter().filter(|&&v| v == 255).count() as f64 / n;
    let black = clean.iter().filter(|&&v| v == 0).count() as f64 / n;
    for s in Severity::ALL {
        let got = harness::run_cpu(Corruption::ImpulseNoise, s, clean);
        let changed = got.iter().zip(clean).filter(|(a, b)| a != b).count() as f64 / n;
        let amount = noise::IMPULSE[s.index()];
        let want = amount * (1.0 - 0.5 * white - 0.5 * black);
        let se = (want * (1.0 - want) / n).sqrt();
        println!(
            "impulse_noise s{}: changed {changed:.5}, expected {want:.5}",
            s.get()
        );
        assert!(
            (changed - want).abs() <= 5.0 * se,
            "severity {}: {changed} changed, expected {want} ± {}",
            s.get(),
            5.0 * se
        );
    }
}

/// The draw numbering the module documents (and the GPU repeats): value i of an image reads
/// normal draw i (gaussian) and uniform draws i and N + i (impulse) of its image's key.
#[test]
fn draws_follow_the_documented_numbering() {
    let Some(set) = harness::mini_test() else {
        return;
    };
    let per = set.image_size();
    let (j, s) = (7usize, Severity::ALL[2]);
    let img = &set.images[j * per..(j + 1) * per];
    let batch = harness::first_images(set, j + 1);

    let got = harness::run_cpu(Corruption::GaussianNoise, s, &batch);
    let key = ImageKey::new(harness::SEED, Corruption::GaussianNoise, s, j as u64);
    for (i, &v) in img.iter().enumerate() {
        let want = noise::gaussian_value(v, noise::GAUSSIAN[2], key.normal(i as u64));
        assert_eq!(got[j * per + i], want, "gaussian value {i}");
    }

    let got = harness::run_cpu(Corruption::ImpulseNoise, s, &batch);
    let key = ImageKey::new(harness::SEED, Corruption::ImpulseNoise, s, j as u64);
    for (i, &v) in img.iter().enumerate() {
        let want = if key.uniform(i as u64) < noise::IMPULSE[2] {
            if key.uniform((per + i) as u64) < 0.5 {
                255
            } else {
                0
            }
        } else {
            v
        };
        assert_eq!(got[j * per + i], want, "impulse value {i}");
    }
}

/// Image j's draws depend on its dataset index only: a batch starting at image 100 gives the
/// same rows as the whole set.
#[test]
fn results_do_not_depend_on_batching() {
    let Some(set) = harness::mini_test() else {
        return;
    };
    let per = set.image_size();
    let s = Severity::ALL[4];
    for c in NOISES {
        let whole = harness::run_cpu(c, s, &harness::first_images(set, 120));
        let part = corrupt::corrupt_batch(
            c,
            s,
            &set.images[100 * per..120 * per],
            harness::PLANE,
            100,
            harness::SEED,
            &Resources::default(),
        )
        .unwrap();
        assert_eq!(&whole[100 * per..], &part[..], "{}", c.name());
    }
}

/// Runs a noise kernel on `images` (image j = dataset image first + j).
fn run_gpu(c: Corruption, s: Severity, images: &[u8], first: u64) -> Vec<u8> {
    let dev = common::gpu().expect("checked by the caller");
    let n = images.len() / (3 * harness::PLANE.len());
    let d_in = dev.upload(images).unwrap();
    let mut d_out = dev.alloc::<u8>(images.len()).unwrap();
    let fam = ImageKey::family_seed(harness::SEED, c, s);
    let mut batch = ImageBatch::new(c.name(), &d_in, n, &mut d_out)
        .unwrap()
        .keyed(fam, first);
    corrupt_pixel::noise(&dev, c, s, &mut batch).unwrap();
    dev.download(&d_out).unwrap()
}

/// GPU against CPU on all 1,017 images at every severity, plus a batch that starts at image 100.
/// impulse compares uniform draws only: bit-identical. gaussian, speckle and shot call f64
/// log/cos/exp, whose CUDA and libm versions may differ in the last bit: at least 99.9% of
/// values within 1 grey level (a Poisson count that flips moves a value by 255/rate).
#[test]
fn gpu_noise_matches_the_cpu() {
    let Some(_dev) = common::gpu() else { return };
    let Some(set) = harness::mini_test() else {
        return;
    };
    let per = set.image_size();
    for c in NOISES {
        for s in Severity::ALL {
            let cpu = harness::run_cpu(c, s, &set.images);
            let gpu = run_gpu(c, s, &set.images, 0);
            let exact = cpu.iter().zip(&gpu).filter(|(a, b)| a == b).count();
            let (frac, worst) = harness::agreement(&gpu, &cpu);
            println!(
                "gpu {} s{}: {:.5}% identical, {:.5}% within 1, max diff {worst}",
                c.name(),
                s.get(),
                100.0 * exact as f64 / cpu.len() as f64,
                100.0 * frac
            );
            if c == Corruption::ImpulseNoise {
                assert_eq!(gpu, cpu, "impulse severity {}", s.get());
            } else {
                assert!(frac >= 0.999, "{} severity {}: {frac}", c.name(), s.get());
            }
            let part = run_gpu(c, s, &set.images[100 * per..200 * per], 100);
            let (frac, _) = harness::agreement(&part, &cpu[100 * per..200 * per]);
            assert!(frac >= 0.999, "{} offset batch: {frac}", c.name());
        }
    }
}
