//! Model structure: ReLU counts of the paper's models (spec §2), names, masks, taps.

use rlnet::autograd::{EntryKind, GradMode, Graph};
use rlnet::nn::{Arch, BnMode, Domain, Model, ModelConfig, Pass};
use rlnet::tensor::Tensor;

fn config(arch: Arch, input_size: usize, width: f32, bn: BnMode) -> ModelConfig {
    ModelConfig {
        input_size,
        bn,
        ..ModelConfig::new(arch, width)
    }
}

#[test]
fn relu_counts_match_the_paper_models() {
    let r32 = Model::new(config(Arch::ResNet18, 32, 1.0, BnMode::Dual), 0).unwrap();
    assert_eq!(r32.relu_layers.len(), 17);
    assert_eq!(r32.total_relus(), 557_056);
    assert_eq!(r32.kept_relus(), 557_056, "a new model keeps every ReLU");
    let r64 = Model::new(config(Arch::ResNet18, 64, 1.0, BnMode::Dual), 0).unwrap();
    assert_eq!(r64.total_relus(), 2_228_224);
    let wrn = Model::new(config(Arch::Wrn22_8, 32, 1.0, BnMode::Dual), 0).unwrap();
    assert_eq!(wrn.relu_layers.len(), 19);
    assert_eq!(wrn.total_relus(), 1_392_640);
    // Spec §2.2: the first ReLU of group 2's strided block acts before the stride.
    assert_eq!(wrn.relu_layers[6].shape, [128, 32, 32]);
    assert_eq!(wrn.relu_layers[7].shape, [256, 16, 16]);
}

#[test]
fn state_dict_names_follow_the_reference() {
    let m = Model::new(config(Arch::ResNet18, 32, 0.125, BnMode::Triple), 0).unwrap();
    for name in [
        "conv1.weight",
        "bn1.BN_c.weight",
        "bn1.BN_r.running_var",
        "bn1.BN_a.running_mean",
        "layer2.0.shortcut.0.weight",
        "layer2.0.shortcut.1.BN_a.bias",
        "layer4.1.conv2.weight",
        "linear.weight",
        "linear.bias",
        "layer3.1.relu2.mask",
    ] {
        assert!(m.store.id(name).is_some(), "missing {name}");
    }
    let mut shared = config(Arch::ResNet18, 32, 0.125, BnMode::Dual);
    shared.shared_shortcut_bn = true;
    let m = Model::new(shared, 0).unwrap();
    assert!(m.store.id("layer2.0.shortcut.1.weight").is_some());
    assert!(m.store.id("layer2.0.shortcut.1.BN_c.weight").is_none());
    let w = Model::new(config(Arch::Wrn22_8, 32, 0.25, BnMode::Dual), 0).unwrap();
    for name in [
        "block1.layer.0.convShortcut.weight",
        "block3.layer.2.bn2.BN_a.weight",
        "fc.bias",
        "bn1.BN_c.weight",
    ] {
        assert!(w.store.id(name).is_some(), "missing {name}");
    }
    let fc_bias = w.store.get(w.store.id("fc.bias").unwrap());
    assert!(
        fc_bias.data().iter().all(|&v| v == 0.0),
        "WRN's fc bias starts at zero"
    );
}

#[test]
fn conv_init_has_kaiming_fan_out_scale() {
    let m = Model::new(config(Arch::ResNet18, 32, 1.0, BnMode::Dual), 3).unwrap();
    let w = m.store.get(m.store.id("layer3.0.conv2.weight").unwrap());
    let n = w.numel() as f64;
    let var = w.data().iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n;
    let want = 2.0 / (9.0 * 256.0);
    assert!((var / want - 1.0).abs() < 0.02, "variance {var} vs {want}");
}

#[test]
fn masks_turn_relus_into_identities_and_domains_pick_bn_sets() {
    let mut m = Model::new(config(Arch::ResNet18, 32, 0.125, BnMode::Dual), 1).unwrap();
    let x = Tensor::from_vec(
        &[2, 3, 32, 32],
        (0..6144).map(|i| ((i * 37) % 101) as f32 / 100.0).collect(),
    )
    .unwrap();
    let run = |m: &Model, d: Domain| {
        let mut g = Graph::new(&m.store, GradMode::None);
        let xv = g.input(x.clone(), false);
        let out = m.forward(
            &mut g,
            xv,
            Pass {
                domain: d,
                train: false,
            },
        );
        assert_eq!(out.relus.len(), 17);
        assert_eq!(out.taps.len(), 4);
        let stem = g.value(out.relus[0]).data().to_vec();
        (stem, g.value(out.logits).data().to_vec())
    };
    let (stem, _) = run(&m, Domain::Clean);
    assert!(
        stem.iter().all(|&v| v >= 0.0),
        "all-ReLU stem output is non-negative"
    );
    m.set_mask(0, Tensor::zeros(&[8, 32, 32])).unwrap();
    assert_eq!(m.kept_relus(), m.total_relus() - 8 * 32 * 32);
    let (stem, _) = run(&m, Domain::Clean);
    assert!(
        stem.iter().any(|&v| v < 0.0),
        "a linearised stem passes negatives"
    );
    // Changing BN_a's statistics changes adversarial-domain logits only.
    let (_, clean_before) = run(&m, Domain::Clean);
    let (_, adv_before) = run(&m, Domain::Adv);
    let id = m.store.id("bn1.BN_a.running_mean").unwrap();
    m.store
        .get_mut(id)
        .data_mut()
        .iter_mut()
        .for_each(|v| *v += 0.5);
    assert_eq!(run(&m, Domain::Clean).1, clean_before);
    assert_ne!(run(&m, Domain::Adv).1, adv_before);
    assert!(
        m.set_mask(1, Tensor::full(&[8, 32, 32], 0.5)).is_err(),
        "a mask holds only 0 and 1"
    );
    assert_eq!(m.store.entry(m.relu_layers[0].mask).kind, EntryKind::Mask);
}

#[test]
fn bad_model_configs_are_errors() {
    assert!(Model::new(config(Arch::ResNet18, 30, 1.0, BnMode::Dual), 0).is_err());
    assert!(Model::new(config(Arch::ResNet18, 32, 0.0, BnMode::Dual), 0).is_err());
    let mut c = config(Arch::Wrn22_8, 32, 1.0, BnMode::Dual);
    c.wrn = (21, 8);
    assert!(Model::new(c, 0).is_err());
}
