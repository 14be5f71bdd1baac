//! SENet-style per-layer ReLU fractions from the teacher's pruning sensitivity: which conv feeds
//! each ReLU site, the exact global magnitude threshold, exact budgets on both architectures,
//! the floor, `--fractions` parsing and what `auto` picks.

use rlnet::nn::{Arch, Model, ModelConfig};
use rlnet::search::sensitivity::{conv_ids, sensitivity, DEFAULT_DENSITY, FLOOR};
use rlnet::search::{layer_counts, layer_sizes, student_config, Fractions, Preset, PRESETS};
use rlnet::tensor::Tensor;

fn teacher(arch: Arch, seed: u64) -> Model {
    let mut cfg = ModelConfig::new(arch, 0.125);
    cfg.shared_shortcut_bn = arch == Arch::ResNet18;
    Model::new(cfg, seed).unwrap()
}

fn student_sizes(t: &Model) -> Vec<usize> {
    layer_sizes(&student_config(&t.config)).unwrap()
}

fn name(m: &Model, id: usize) -> &str {
    &m.store.entry(id).name
}

#[test]
fn every_site_knows_the_conv_that_feeds_it() {
    for arch in [Arch::ResNet18, Arch::Wrn22_8] {
        let m = teacher(arch, 1);
        for l in &m.relu_layers {
            let w = m.store.get(l.source_conv);
            assert_eq!(w.shape().len(), 4, "{}", l.name);
            assert_eq!(
                w.shape()[0],
                l.shape[0],
                "{}: {}",
                l.name,
                name(&m, l.source_conv)
            );
        }
        let sources: Vec<&str> = m
            .relu_layers
            .iter()
            .map(|l| name(&m, l.source_conv))
            .collect();
        match arch {
            Arch::ResNet18 => {
                assert_eq!(sources[0], "conv1.weight");
                assert_eq!(sources[1], "layer1.0.conv1.weight");
                assert_eq!(sources[2], "layer1.0.conv2.weight");
                // A projection block: relu2 is fed by conv2, not by the shortcut conv.
                assert_eq!(sources[6], "layer2.0.conv2.weight");
                assert_eq!(sources[16], "layer4.1.conv2.weight");
            }
            Arch::Wrn22_8 => {
                // Pre-activation: a block's first BN-ReLU reads the residual stream, last
                // written by the previous block's conv2 (the stem for the first block).
                assert_eq!(sources[0], "conv1.weight");
                assert_eq!(sources[1], "block1.layer.0.conv1.weight");
                assert_eq!(sources[2], "block1.layer.0.conv2.weight");
                assert_eq!(m.relu_layers[6].name, "block2.layer.0.relu1");
                assert_eq!(sources[6], "block1.layer.2.conv2.weight");
                assert_eq!(sources[7], "block2.layer.0.conv1.weight");
                assert_eq!(sources[18], "block3.layer.2.conv2.weight");
            }
        }
    }
}

#[test]
fn global_threshold_keeps_the_ceiling_and_is_deterministic() {
    for arch in [Arch::ResNet18, Arch::Wrn22_8] {
        let m = teacher(arch, 2);
        let total: usize = conv_ids(&m).iter().map(|&id| m.store.get(id).numel()).sum();
        for d in [0.05, DEFAULT_DENSITY, 0.5, 0.9] {
            let s = sensitivity(&m, d).unwrap();
            assert_eq!(s.total, total);
            assert_eq!(s.kept, (d * total as f64).ceil() as usize, "{arch:?} {d}");
            assert_eq!(s.densities.len(), m.relu_layers.len());
            assert!(s.densities.iter().all(|&x| (0.0..=1.0).contains(&x)));
            let max = s.weights.iter().copied().fold(0.0, f64::max);
            assert!(s.weights.iter().all(|&w| w >= FLOOR * max && w > 0.0));
            // The same weights give the same answer, to the bit.
            assert_eq!(sensitivity(&teacher(arch, 2), d).unwrap(), s);
        }
        // Another teacher gives other densities.
        assert_ne!(
            sensitivity(&teacher(arch, 3), 0.1).unwrap().densities,
            sensitivity(&m, 0.1).unwrap().densities
        );
    }
}

#[test]
fn sensitivity_counts_sum_exactly_to_any_budget() {
    for arch in [Arch::ResNet18, Arch::Wrn22_8] {
        let t = teacher(arch, 4);
        let sizes = student_sizes(&t);
        let total: usize = sizes.iter().sum();
        for budget in [1, 17, 999, 5_000, 12_345, total / 3, total - 1, total] {
            for density in [0.1, 0.07] {
                let fr = Fractions::Sensitivity { density };
                let (ks, how) = layer_counts(arch, 32, &sizes, budget, &fr, &t).unwrap();
                assert_eq!(ks.iter().sum::<usize>(), budget, "{arch:?} {budget}");
                assert!(ks.iter().zip(&sizes).all(|(k, n)| k <= n));
                assert!(
                    how.starts_with(
                        "sensitivity: one-shot global magnitude pruning of the teacher to"
                    ),
                    "{how}"
                );
                assert!(how.contains("d_l = ["), "{how}");
                let pct = if density == 0.1 { "10%" } else { "7%" };
                assert!(
                    how.contains(&format!("teacher to {pct} of conv weights")),
                    "{how}"
                );
            }
        }
        assert!(layer_counts(arch, 32, &sizes, total + 1, &Fractions::Auto, &t).is_err());
        // Kaiming init shrinks the weights of wide convs, so they lose more weights to the
        // global threshold and their sites get more ReLUs than the stem's.
        let (ks, _) = layer_counts(arch, 32, &sizes, total / 10, &Fractions::Auto, &t).unwrap();
        let last = ks.len() - 1;
        assert!(
            ks[last] as f64 / sizes[last] as f64 > ks[0] as f64 / sizes[0] as f64,
            "{ks:?}"
        );
    }
}

#[test]
fn a_fully_kept_conv_gets_the_floor() {
    let mut t = teacher(Arch::ResNet18, 5);
    let l = 3; // layer1.1.relu1, fed by layer1.1.conv1
    let id = t.relu_layers[l].source_conv;
    let shape = t.store.get(id).shape().to_vec();
    t.store.set(id, Tensor::full(&shape, 100.0)).unwrap();
    let s = sensitivity(&t, 0.1).unwrap();
    assert_eq!(s.densities[l], 1.0);
    let max = s.weights.iter().copied().fold(0.0, f64::max);
    assert_eq!(s.weights[l], FLOOR * max);
    assert!(s
        .weights
        .iter()
        .enumerate()
        .all(|(i, &w)| i == l || w > s.weights[l]));
    let sizes = student_sizes(&t);
    let fr = Fractions::Sensitivity { density: 0.1 };
    let (ks, _) = layer_counts(Arch::ResNet18, 32, &sizes, 20_000, &fr, &t).unwrap();
    assert_eq!(ks.iter().sum::<usize>(), 20_000);
    assert!(ks[l] > 0, "the floor keeps the layer alive: {ks:?}");
    assert!(ks.iter().all(|&k| k >= ks[l]), "{ks:?}");
}

#[test]
fn auto_uses_a_list_only_when_its_total_is_the_budget() {
    let t = teacher(Arch::ResNet18, 6);
    let sizes = student_sizes(&t);
    for p in PRESETS
        .iter()
        .filter(|p| p.arch == Arch::ResNet18 && p.input_size == 32)
    {
        let nominal = p.nominal_total(&sizes).unwrap();
        let (ks, how) =
            layer_counts(Arch::ResNet18, 32, &sizes, nominal, &Fractions::Auto, &t).unwrap();
        assert_eq!(how, format!("list {} (its total is the budget)", p.name));
        assert_eq!(ks, p.allocate(nominal, &sizes).unwrap());
        let off = nominal + 1;
        if PRESETS
            .iter()
            .all(|q| q.arch != p.arch || q.nominal_total(&sizes).unwrap() != off)
        {
            let (ks, how) =
                layer_counts(Arch::ResNet18, 32, &sizes, off, &Fractions::Auto, &t).unwrap();
            assert!(how.starts_with("sensitivity: "), "{how}");
            assert!(
                how.contains(&format!("no reference list totals {off}")),
                "{how}"
            );
            let fr = Fractions::Sensitivity {
                density: DEFAULT_DENSITY,
            };
            assert_eq!(
                ks,
                layer_counts(Arch::ResNet18, 32, &sizes, off, &fr, &t)
                    .unwrap()
                    .0
            );
        }
    }
    // WRN-22-8 has a list too; at any other budget it falls back to sensitivity.
    let w = teacher(Arch::Wrn22_8, 6);
    let wsizes = student_sizes(&w);
    let p = Preset::find(Arch::Wrn22_8, 32, "relu240k").unwrap();
    let (_, how) = layer_counts(
        Arch::Wrn22_8,
        32,
        &wsizes,
        p.nominal_total(&wsizes).unwrap(),
        &Fractions::Auto,
        &w,
    )
    .unwrap();
    assert!(how.starts_with("list relu240k"), "{how}");
    let (_, how) = layer_counts(Arch::Wrn22_8, 32, &wsizes, 777, &Fractions::Auto, &w).unwrap();
    assert!(how.starts_with("sensitivity: "), "{how}");
    // A teacher of another network is refused, naming both.
    let err = layer_counts(
        Arch::ResNet18,
        32,
        &sizes,
        777,
        &Fractions::Sensitivity { density: 0.1 },
        &w,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("teacher's ReLU layers (19 layers"), "{err}");
}

#[test]
fn fractions_parse() {
    assert_eq!(Fractions::parse("auto").unwrap(), Fractions::Auto);
    assert_eq!(Fractions::parse(" Uniform ").unwrap(), Fractions::Uniform);
    assert_eq!(
        Fractions::parse("relu50k").unwrap(),
        Fractions::Named("relu50k".into())
    );
    assert_eq!(
        Fractions::parse("sensitivity").unwrap(),
        Fractions::Sensitivity {
            density: DEFAULT_DENSITY
        }
    );
    assert_eq!(
        Fractions::parse("SENSITIVITY:0.05").unwrap(),
        Fractions::Sensitivity { density: 0.05 }
    );
    for bad in [
        "",
        "sensitivity:",
        "sensitivity:0",
        "sensitivity:1",
        "sensitivity:1.5",
        "sensitivity:-0.1",
        "sensitivity:abc",
        "sensitivity:nan",
        "sensitivity:inf",
        "sensitivityx",
        "sensitivity0.1",
    ] {
        let e = Fractions::parse(bad).unwrap_err().to_string();
        assert!(e.contains(&format!("--fractions '{bad}'")), "{bad}: {e}");
        assert!(e.contains("expected"), "{bad}: {e}");
    }
}
