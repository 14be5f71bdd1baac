//! AugMix: every op against Pillow 13 value for value (fixtures written by
//! tools/make_augmix_fixtures.py), the mixing and its draws, the batch path against
//! `make_batch`'s crop/flip, and GPU parity (bit for bit: the kernel repeats the CPU's integer
//! and IEEE arithmetic in the same order).

mod common;

use rlnet::augmix::draws::ImageDraws;
use rlnet::augmix::ops::{self, Op, Param};
use rlnet::augmix::{self, apply_plan, augment_and_mix, augmix_batch, AugMixConfig, Plan};
use rlnet::batches::GpuImages;
use rlnet::data::batch::{crop_flip_u8, make_batch, CropFlip};
use rlnet::data::ImageSet;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    common::root().join("tests/fixtures/augmix").join(name)
}

/// A uint8 .npy: (shape, bytes).
fn npy_u8(name: &str) -> (Vec<usize>, Vec<u8>) {
    let path = fixture(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = f.shape().iter().map(|&d| d as usize).collect();
    (shape, f.into_vec::<u8>().unwrap())
}

/// HWC RGB images back to back → CHW.
fn hwc_to_chw(hwc: &[u8], h: usize, w: usize) -> Vec<u8> {
    let n = h * w;
    let mut out = vec![0u8; hwc.len()];
    for (i, o) in hwc.chunks(3 * n).zip(out.chunks_mut(3 * n)) {
        for p in 0..n {
            for c in 0..3 {
                o[c * n + p] = i[p * 3 + c];
            }
        }
    }
    out
}

/// The fixture inputs of one size, CHW, with their count.
fn inputs(size: usize) -> (usize, Vec<u8>) {
    let (shape, hwc) = npy_u8(&format!("inputs_{size}.npy"));
    assert_eq!(shape[1..], [size, size, 3]);
    (shape[0], hwc_to_chw(&hwc, size, size))
}

fn image_set(size: usize) -> ImageSet {
    let (n, images) = inputs(size);
    ImageSet {
        images,
        labels: vec![0; n],
        channels: 3,
        height: size,
        width: size,
        num_classes: 1,
    }
}

/// Compares Pillow's outputs in `<file>.npy` with `ops::apply` of the params the reference
/// computed (checking `Op::resolve` gives exactly those, when the case has a level).
/// Returns (cases, values compared, mismatching values).
fn check_op_file(file: &str, op: Op, size: usize, images: &[u8]) -> (usize, usize, usize) {
    let (shape, want) = npy_u8(&format!("{file}.npy"));
    let (pshape, params) = common::npy(&fixture(&format!("{file}.params.npy")));
    let (cases, n_img) = (shape[0], shape[1]);
    assert_eq!(pshape, [cases, 3]);
    assert_eq!(shape[2..], [size, size, 3]);
    let per = 3 * size * size;
    let want = hwc_to_chw(&want, size, size);
    let mut bad = 0;
    let mut first_bad = None;
    for case in 0..cases {
        let (level, negate, value) = (
            params[3 * case],
            params[3 * case + 1] == 1.0,
            params[3 * case + 2],
        );
        let p = if level.is_nan() {
            Param::Rotate(value as i32)
        } else {
            let p = op.resolve(level, negate, size, size);
            assert_eq!(
                p,
                param_from(op, value),
                "{file}: level {level} negate {negate}"
            );
            p
        };
        for (i, img) in images.chunks(per).take(n_img).enumerate() {
            let mut got = vec![0u8; per];
            ops::apply(p, img, &mut got, size, size);
            let off = (case * n_img + i) * per;
            let wrong = got
                .iter()
                .zip(&want[off..off + per])
                .filter(|(g, w)| g != w)
                .count();
            if wrong > 0 && first_bad.is_none() {
                first_bad = Some((p, i, wrong));
            }
            bad += wrong;
        }
    }
    let values = cases * n_img * per;
    println!(
        "{file:<20} {cases:>3} cases x {n_img} images: {bad} of {values} values differ from Pillow"
    );
    assert_eq!(bad, 0, "{file}: first failing case {first_bad:?}");
    (cases, values, bad)
}

/// The `Param` the fixture's parameter column describes for `op`.
fn param_from(op: Op, v: f64) -> Param {
    match op {
        Op::AutoContrast => Param::AutoContrast,
        Op::Equalize => Param::Equalize,
        Op::Posterize => Param::Posterize(v as i32),
        Op::Rotate => Param::Rotate(v as i32),
        Op::Solarize => Param::Solarize(v as i32),
        Op::ShearX => Param::ShearX(v),
        Op::ShearY => Param::ShearY(v),
        Op::TranslateX => Param::TranslateX(v as i32),
        Op::TranslateY => Param::TranslateY(v as i32),
        Op::Color => Param::Color(v),
        Op::Contrast => Param::Contrast(v),
        Op::Brightness => Param::Brightness(v),
        Op::Sharpness => Param::Sharpness(v),
    }
}

#[test]
fn every_op_matches_pillow_exactly_on_32x32() {
    let (_, images) = inputs(32);
    for op in Op::ALL {
        check_op_file(&format!("{}_32", op.name()), op, 32, &images);
    }
}

#[test]
fn every_op_matches_pillow_exactly_on_64x64() {
    let (_, images) = inputs(64);
    for op in Op::ALL {
        check_op_file(&format!("{}_64", op.name()), op, 64, &images);
    }
}

#[test]
fn rotation_by_every_degree_matches_pillow_exactly() {
    let (_, images) = inputs(32);
    let noise = &images[2 * 3 * 32 * 32..3 * 3 * 32 * 32];
    let (cases, _, _) = check_op_file("rotate_degrees_32", Op::Rotate, 32, noise);
    assert_eq!(cases, 69);
}

fn keys() -> impl Iterator<Item = u64> {
    0..20_000u64
}

#[test]
fn dirichlet_and_beta_draws_have_their_moments() {
    let cfg = AugMixConfig::default();
    let n = keys().count() as f64;
    let (mut w_sum, mut w_sq, mut m_sum, mut m_sq) = ([0f64; 3], 0f64, 0f64, 0f64);
    for k in keys() {
        let d = ImageDraws::new(11, k);
        let w = d.weights(3, cfg.alpha);
        let total: f32 = w.iter().sum();
        assert!(
            (total - 1.0).abs() <= 2.0 * f32::EPSILON,
            "weights sum {total}"
        );
        assert!(w.iter().all(|&v| (0.0..=1.0).contains(&v)));
        for i in 0..3 {
            w_sum[i] += w[i] as f64;
        }
        w_sq += (w[0] as f64).powi(2);
        let m = d.mixing(3, cfg.alpha) as f64;
        assert!((0.0..1.0).contains(&m), "m = {m}");
        m_sum += m;
        m_sq += m * m;
    }
    // Dirichlet(1,1,1): each weight has mean 1/3 and variance 1/18; Beta(1,1) = U(0,1): mean
    // 1/2, variance 1/12. Tolerances are 5 standard errors.
    for (i, s) in w_sum.iter().enumerate() {
        let mean = s / n;
        assert!(
            (mean - 1.0 / 3.0).abs() < 5.0 * (1.0 / 18.0 / n).sqrt(),
            "w{i} mean {mean}"
        );
    }
    let w_var = w_sq / n - (w_sum[0] / n).powi(2);
    assert!((w_var - 1.0 / 18.0).abs() < 0.004, "w0 variance {w_var}");
    let m_mean = m_sum / n;
    assert!(
        (m_mean - 0.5).abs() < 5.0 * (1.0 / 12.0 / n).sqrt(),
        "m mean {m_mean}"
    );
    assert!((m_sq / n - m_mean * m_mean - 1.0 / 12.0).abs() < 0.003);
    println!(
        "Dirichlet means {:?}, Beta mean {m_mean:.4}",
        w_sum.map(|s| s / n)
    );
}

#[test]
fn other_alphas_give_dirichlet_and_beta_means() {
    for alpha in [0.5, 4.0] {
        let n = 8_000;
        let (mut w0, mut msum) = (0f64, 0f64);
        for k in 0..n {
            let d = ImageDraws::new(3, k);
            let w = d.weights(3, alpha);
            assert!((w.iter().sum::<f32>() - 1.0).abs() <= 2.0 * f32::EPSILON);
            w0 += w[0] as f64;
            msum += d.mixing(3, alpha) as f64;
        }
        let (w0, m) = (w0 / n as f64, msum / n as f64);
        assert!((w0 - 1.0 / 3.0).abs() < 0.01, "alpha {alpha}: w0 mean {w0}");
        assert!((m - 0.5).abs() < 0.012, "alpha {alpha}: m mean {m}");
    }
}

#[test]
fn depth_op_level_and_sign_draws_are_uniform() {
    let cfg = AugMixConfig::default();
    let mut depths = [0usize; 4];
    let mut op_counts = [0usize; 9];
    let (mut negs, mut draws, mut level_sum) = (0usize, 0usize, 0f64);
    for k in keys() {
        let d = ImageDraws::new(7, k);
        for c in 0..3 {
            let depth = d.depth(c, None);
            depths[depth] += 1;
            for t in 0..depth as u64 {
                op_counts[d.op(c, t, 9)] += 1;
                let l = d.level(c, t, cfg.severity);
                assert!((0.1..3.0).contains(&l), "level {l}");
                level_sum += l;
                negs += d.negate(c, t) as usize;
                draws += 1;
            }
        }
        assert_eq!(d.depth(0, Some(5)), 5);
    }
    let chains = 3 * keys().count();
    assert_eq!(depths[0], 0);
    for (dep, &count) in depths.iter().enumerate().skip(1) {
        let f = count as f64 / chains as f64;
        assert!((f - 1.0 / 3.0).abs() < 0.01, "depth {dep}: {f}");
    }
    for (i, &count) in op_counts.iter().enumerate() {
        let f = count as f64 / draws as f64;
        assert!((f - 1.0 / 9.0).abs() < 0.006, "op {i}: {f}");
    }
    let neg = negs as f64 / draws as f64;
    let mean_level = level_sum / draws as f64;
    assert!((neg - 0.5).abs() < 0.01, "negated {neg}");
    assert!((mean_level - 1.55).abs() < 0.015, "level mean {mean_level}");
    println!("depths 1/2/3: {:?} of {chains} chains", &depths[1..]);
}

#[test]
fn mixing_is_the_convex_combination_and_identity_when_m_is_zero() {
    let (_, images) = inputs(32);
    let img = &images[..3 * 32 * 32];
    let cfg = AugMixConfig::default();
    for key in 0..50 {
        let plan = augmix::plan(&cfg, 1, key, 32, 32);
        assert_eq!(plan.chains.len(), 3);
        assert!(plan.chains.iter().all(|c| (1..=3).contains(&c.len())));
        let out = apply_plan(img, 32, 32, &plan);
        assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(out, augment_and_mix(img, 32, 32, &cfg, 1, key).unwrap());
        // The same mix in f64 from the chains' 8-bit outputs.
        let chains: Vec<Vec<u8>> = plan
            .chains
            .iter()
            .map(|chain| {
                let mut cur = img.to_vec();
                for &p in chain {
                    let mut next = vec![0u8; cur.len()];
                    ops::apply(p, &cur, &mut next, 32, 32);
                    cur = next;
                }
                cur
            })
            .collect();
        for (e, &o) in out.iter().enumerate() {
            let mix: f64 = chains
                .iter()
                .zip(&plan.weights)
                .map(|(c, &w)| w as f64 * c[e] as f64 / 255.0)
                .sum();
            let want = (1.0 - plan.m as f64) * img[e] as f64 / 255.0 + plan.m as f64 * mix;
            assert!((o as f64 - want).abs() < 1e-6, "key {key} value {e}");
        }
    }
    // m = 0: the image itself, exactly as make_batch converts it.
    let plan = Plan {
        weights: vec![0.2, 0.3, 0.5],
        m: 0.0,
        chains: vec![vec![Param::Rotate(5)], vec![Param::Equalize], vec![]],
    };
    let out = apply_plan(img, 32, 32, &plan);
    assert!(out.iter().zip(img).all(|(&o, &v)| o == v as f32 / 255.0));
    // m = 1 with one identity chain of weight 1: the image again.
    let plan = Plan {
        weights: vec![1.0],
        m: 1.0,
        chains: vec![vec![Param::Rotate(0)]],
    };
    let out = apply_plan(img, 32, 32, &plan);
    assert!(out.iter().zip(img).all(|(&o, &v)| o == v as f32 / 255.0));
}

#[test]
fn all_ops_config_draws_the_extra_ops() {
    let cfg = AugMixConfig {
        all_ops: true,
        depth: Some(3),
        ..Default::default()
    };
    let mut seen = std::collections::HashSet::new();
    for key in 0..400 {
        for chain in augmix::plan(&cfg, 2, key, 32, 32).chains {
            assert_eq!(chain.len(), 3);
            for p in chain {
                seen.insert(std::mem::discriminant(&p));
            }
        }
    }
    assert_eq!(seen.len(), 13, "every op of the 13 is drawn");
    let default_ops: std::collections::HashSet<_> = (0..400)
        .flat_map(|key| augmix::plan(&AugMixConfig::default(), 2, key, 32, 32).chains)
        .flatten()
        .map(|p| std::mem::discriminant(&p))
        .collect();
    assert_eq!(default_ops.len(), 9);
}

#[test]
fn batch_crops_like_make_batch_then_augments_each_image() {
    let set = image_set(32);
    let indices = [3, 0, 2, 2, 1];
    let crop = CropFlip { pad: 4, seed: 9 };
    let (key, seed) = (100, 5);
    let cfg = AugMixConfig::default();
    let got = augmix_batch(&set, &indices, Some(crop), key, &cfg, seed).unwrap();
    assert_eq!(got.shape(), [5, 3, 32, 32]);
    let (plain, _) = make_batch(&set, &indices, Some(crop), key);
    let per = 3 * 32 * 32;
    for (j, &i) in indices.iter().enumerate() {
        let k = key + j as u64;
        let mut cropped = vec![0u8; per];
        crop_flip_u8(set.image(i), &mut cropped, 3, 32, 32, crop.draws(k));
        // The u8 crop is make_batch's crop before its conversion.
        let conv: Vec<f32> = cropped.iter().map(|&v| v as f32 / 255.0).collect();
        assert_eq!(conv, plain.data()[j * per..(j + 1) * per], "image {j}");
        let want = augment_and_mix(&cropped, 32, 32, &cfg, seed, k).unwrap();
        assert_eq!(want, got.data()[j * per..(j + 1) * per], "image {j}");
    }
    // Without a crop the images are augmented as they are.
    let got = augmix_batch(&set, &indices[..2], None, key, &cfg, seed).unwrap();
    let want = augment_and_mix(set.image(3), 32, 32, &cfg, seed, key).unwrap();
    assert_eq!(want, got.data()[..per]);
    // Bad input is an error, not a panic.
    assert!(augmix_batch(&set, &[4], None, 0, &cfg, 0).is_err());
    let bad = AugMixConfig {
        width: 0,
        ..Default::default()
    };
    assert!(augmix_batch(&set, &[0], None, 0, &bad, 0).is_err());
}

#[test]
fn augmix_on_a_64x64_image() {
    let set = image_set(64);
    let cfg = AugMixConfig {
        all_ops: true,
        ..Default::default()
    };
    let crop = CropFlip { pad: 8, seed: 1 };
    let out = augmix_batch(&set, &[0, 0, 0], Some(crop), 0, &cfg, 3).unwrap();
    assert_eq!(out.shape(), [3, 3, 64, 64]);
    assert!(out.data().iter().all(|v| (0.0..=1.0).contains(v)));
    let per = 3 * 64 * 64;
    assert_ne!(out.data()[..per], out.data()[per..2 * per], "keys differ");
    // Translations scale with the side: IMAGE_SIZE / 3 = 21.33 at most ±21 pixels.
    assert_eq!(
        Op::TranslateX.resolve(9.9999, false, 64, 64),
        Param::TranslateX(21)
    );
}

#[test]
fn gpu_augmix_matches_cpu_bit_for_bit() {
    let Some(dev) = common::gpu() else { return };
    // Bit-identical: the kernel repeats the CPU's integer ops and its f32/f64 IEEE operations
    // in the same order with non-contracting intrinsics; the rotation cos/sin come from the
    // host; the Gamma samplers use draws::ln/exp (basic operations only).
    let configs = [
        AugMixConfig::default(),
        AugMixConfig {
            all_ops: true,
            ..Default::default()
        },
        AugMixConfig {
            all_ops: true,
            depth: Some(4),
            width: 5,
            severity: 10.0,
            alpha: 0.5,
        },
        AugMixConfig {
            alpha: 2.5,
            severity: 1.0,
            ..Default::default()
        },
    ];
    for size in [32, 64] {
        let set = image_set(size);
        let gpu = GpuImages::upload(&set, &dev).unwrap();
        let indices: Vec<usize> = (0..64).map(|i| i % set.len()).collect();
        for (ci, cfg) in configs.iter().enumerate() {
            for crop in [None, Some(CropFlip { pad: 4, seed: 8 })] {
                let want = augmix_batch(&set, &indices, crop, 1000, cfg, 42).unwrap();
                let got = gpu
                    .augmix_batch(&indices, crop, 1000, cfg, 42)
                    .unwrap()
                    .to_host()
                    .unwrap();
                assert_eq!(got.shape(), want.shape());
                let differ = got
                    .data()
                    .iter()
                    .zip(want.data())
                    .filter(|(g, w)| g.to_bits() != w.to_bits())
                    .count();
                println!(
                    "{size}x{size} config {ci} crop {}: {differ} of {} values differ",
                    crop.is_some(),
                    want.numel()
                );
                assert_eq!(differ, 0, "{size}x{size} config {ci} {cfg:?} crop {crop:?}");
            }
        }
    }
}

/// Images whose two shared-memory copies pass the 48 KiB every block gets (90 x 90: 48,608
/// bytes of dynamic and ~4.3 KB of static shared memory) opt in to more and stay bit-identical
/// to the CPU; images beyond what a block can hold (200 x 200: 240,000 bytes) are refused with
/// an error that says which sizes fit.
#[test]
fn gpu_augmix_of_large_images_opts_in_to_more_shared_memory() {
    let Some(dev) = common::gpu() else { return };
    let random_set = |side: usize, n: usize| {
        let mut s = rlnet::rng::Stream::new(5, side as u64);
        ImageSet {
            images: (0..n * 3 * side * side)
                .map(|_| s.below(256) as u8)
                .collect(),
            labels: vec![0; n],
            channels: 3,
            height: side,
            width: side,
            num_classes: 1,
        }
    };
    let set = random_set(90, 2);
    let cfg = AugMixConfig::default();
    let want = augmix_batch(&set, &[0, 1], None, 7, &cfg, 3).unwrap();
    let got = GpuImages::upload(&set, &dev)
        .unwrap()
        .augmix_batch(&[0, 1], None, 7, &cfg, 3)
        .unwrap()
        .to_host()
        .unwrap();
    assert!(
        got.data()
            .iter()
            .zip(want.data())
            .all(|(g, w)| g.to_bits() == w.to_bits()),
        "90x90 AugMix differs from the CPU"
    );
    let big = random_set(200, 1);
    let e = GpuImages::upload(&big, &dev)
        .unwrap()
        .augmix_batch(&[0], None, 7, &cfg, 3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("200x200 images need 240000 bytes") && e.contains("images up to"),
        "{e}"
    );
}
