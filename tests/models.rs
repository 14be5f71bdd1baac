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

/// Loss, logits and gradients of one CPU pass of `m` on `x` (GradMode::All, mean CE).
fn soft_pass(m: &Model, x: &Tensor, train: bool) -> (f32, Vec<f32>, rlnet::autograd::Gradients) {
    let mut g = Graph::new(&m.store, GradMode::All);
    let xv = g.input(x.clone(), false);
    let pass = Pass {
        domain: Domain::Clean,
        train,
    };
    let out = m.forward(&mut g, xv, pass);
    let l = g.cross_entropy(out.logits, &[3, 8], false);
    let grads = g.backward(l);
    (
        g.value(l).item(),
        g.value(out.logits).data().to_vec(),
        grads,
    )
}

/// SNL's soft-mask mode (Model::soft_masks): with 0/1 masks the soft ReLU is the hard masked
/// ReLU, so logits and weight gradients agree; only in soft mode do masks get a gradient (dα,
/// of the mask's shape), which matches finite differences of the loss through the whole model.
#[test]
fn soft_masks_match_hard_masks_and_give_alpha_gradients() {
    let mut m = Model::new(config(Arch::ResNet18, 32, 0.0625, BnMode::Dual), 5).unwrap();
    let mut s = rlnet::rng::Stream::new(5, 1);
    for (i, l) in m.relu_layers.clone().iter().enumerate() {
        let mask: Vec<f32> = (0..l.count())
            .map(|_| (s.uniform() < 0.5) as u8 as f32)
            .collect();
        m.set_mask(i, Tensor::from_vec(&l.shape, mask).unwrap())
            .unwrap();
    }
    let x: Vec<f32> = (0..2 * 3 * 32 * 32).map(|_| s.uniform() as f32).collect();
    let x = Tensor::from_vec(&[2, 3, 32, 32], x).unwrap();
    let conv = m.store.id("layer2.0.conv1.weight").unwrap();
    for train in [true, false] {
        let (_, hard, hard_grads) = soft_pass(&m, &x, train);
        m.soft_masks = true;
        let (_, soft, soft_grads) = soft_pass(&m, &x, train);
        m.soft_masks = false;
        assert!(hard.iter().zip(&soft).all(|(a, b)| (a - b).abs() <= 1e-6));
        let (gh, gs) = (
            hard_grads.param(conv).unwrap(),
            soft_grads.param(conv).unwrap(),
        );
        let scale = gh.data().iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(gh
            .data()
            .iter()
            .zip(gs.data())
            .all(|(a, b)| (a - b).abs() <= 1e-5 * scale));
        for l in &m.relu_layers {
            assert!(hard_grads.param(l.mask).is_none(), "{}: hard mask", l.name);
            let da = soft_grads.param(l.mask).expect("soft mode gives dα");
            assert_eq!(da.shape(), &l.shape[..], "{}", l.name);
        }
    }

    // dα of the last block's second ReLU against central differences of the f32 loss (eval
    // mode, so only α moves), on the elements with the largest gradients. The op's own
    // gradients are checked in f64 by tests/gradcheck.rs; this checks the wiring through BN,
    // convs and the residual path.
    m.soft_masks = true;
    let layer = m.relu_layers.last().unwrap().clone();
    let (_, _, grads) = soft_pass(&m, &x, false);
    let da = grads.param(layer.mask).unwrap().data().to_vec();
    let mut order: Vec<usize> = (0..da.len()).collect();
    order.sort_by(|&a, &b| da[b].abs().total_cmp(&da[a].abs()));
    let h = 1e-2f32;
    for &j in &order[..4] {
        let at = |m: &mut Model, v: f32| {
            m.store.get_mut(layer.mask).data_mut()[j] = v;
            soft_pass(m, &x, false).0
        };
        let a0 = m.store.get(layer.mask).data()[j];
        let num = (at(&mut m, a0 + h) - at(&mut m, a0 - h)) / (2.0 * h);
        at(&mut m, a0);
        assert!(
            (num - da[j]).abs() <= 0.05 * da[j].abs() + 1e-5,
            "dα[{j}] = {} but finite differences give {num}",
            da[j]
        );
    }
}
