//! Layer 1 of the op tests: the CPU reference against PyTorch fixtures written by
//! tools/make_golden.py (computed in float64 by PyTorch, stored as float32), for the fused BN,
//! the JSD's clamp branch and whole networks; every other op is an entry of tests/op_table.rs.

mod common;

use common::{assert_close, load, load_f32, shape};
use rlnet::autograd::{GradMode, Graph};
use rlnet::nn::{Arch, Domain, Model, ModelConfig, Pass, WRN_22_8};
use rlnet::ops::bn_act::{self, Activation, BnGeom, BnGrads, BN_EPS, BN_MOMENTUM};
use rlnet::ops::loss;
use rlnet::tensor::Tensor;

fn bn_case(case: &str, train: bool, relu: bool, residual: bool) {
    let xs = shape(case, "x");
    let g = BnGeom {
        n: xs[0],
        c: xs[1],
        hw: xs[2] * xs[3],
    };
    let x = load_f32(case, "x");
    let (gamma, beta) = (load_f32(case, "gamma"), load_f32(case, "beta"));
    let (rm, rv) = (
        load_f32(case, "running_mean_in"),
        load_f32(case, "running_var_in"),
    );
    let mask = load_f32(case, "mask");
    let r = residual.then(|| load_f32(case, "r"));
    let act = Activation {
        relu,
        mask: Some(&mask),
    };
    let (mean, invstd, var_unbiased) = if train {
        let s = bn_act::cpu::batch_stats(&g, &x, BN_EPS);
        (s.mean, s.invstd, Some(s.var_unbiased))
    } else {
        (rm.clone(), bn_act::cpu::eval_invstd(&rv, BN_EPS), None)
    };
    let mut y = vec![0f32; g.len()];
    bn_act::cpu::forward(
        &g,
        &x,
        &mean,
        &invstd,
        &gamma,
        &beta,
        r.as_deref(),
        act,
        &mut y,
    );
    assert_close(&format!("{case} y"), &y, &load(case, "y"), 1e-5, 1e-5);
    let dy = load_f32(case, "dy");
    let (mut dx, mut dgamma, mut dbeta) = (vec![0f32; g.len()], vec![0f32; g.c], vec![0f32; g.c]);
    let mut dr = vec![0f32; g.len()];
    let grads = BnGrads {
        dx: Some(&mut dx),
        dgamma: Some(&mut dgamma),
        dbeta: Some(&mut dbeta),
        dr: residual.then_some(&mut dr[..]),
    };
    bn_act::cpu::backward(&g, &x, &y, &mean, &invstd, &gamma, act, train, &dy, grads);
    assert_close(&format!("{case} dx"), &dx, &load(case, "dx"), 1e-5, 1e-4);
    assert_close(
        &format!("{case} dgamma"),
        &dgamma,
        &load(case, "dgamma"),
        1e-5,
        1e-5,
    );
    assert_close(
        &format!("{case} dbeta"),
        &dbeta,
        &load(case, "dbeta"),
        1e-5,
        1e-5,
    );
    if residual {
        assert_close(&format!("{case} dr"), &dr, &load(case, "dr"), 1e-6, 1e-6);
    }
    let (mut rm2, mut rv2) = (rm.clone(), rv.clone());
    if let Some(vu) = var_unbiased {
        bn_act::cpu::update_running(&mut rm2, &mean, BN_MOMENTUM);
        bn_act::cpu::update_running(&mut rv2, &vu, BN_MOMENTUM);
    }
    assert_close(
        &format!("{case} running_mean"),
        &rm2,
        &load(case, "running_mean_out"),
        1e-6,
        1e-5,
    );
    assert_close(
        &format!("{case} running_var"),
        &rv2,
        &load(case, "running_var_out"),
        1e-6,
        1e-5,
    );
}

#[test]
fn bn_masked_relu_matches_pytorch() {
    bn_case("bn_relu_train", true, true, false);
    bn_case("bn_train", true, false, false);
    bn_case("bn_add_relu_train", true, true, true);
    bn_case("bn_relu_eval", false, true, false);
    bn_case("bn_relu_train_allones", true, true, false);
}

/// The JSD's clamp branch (the table checks the rest of the case): row 0, class 3 is where M
/// is clamped (make_golden.py). Its gradient is ~1e-13, under any absolute tolerance, and
/// letting the gradient through the clamp there would move it by ~7%, so compare it relatively.
#[test]
fn jsd_clamp_branch_matches_pytorch() {
    let c = "jsd";
    let k = shape(c, "zc")[1];
    let z = [load_f32(c, "zc"), load_f32(c, "z1"), load_f32(c, "z2")];
    let want = [load(c, "dzc"), load(c, "dz1"), load(c, "dz2")];
    let mut d = [
        vec![0f32; z[0].len()],
        vec![0f32; z[0].len()],
        vec![0f32; z[0].len()],
    ];
    let [d0, d1, d2] = &mut d;
    loss::cpu::jsd_backward([&z[0][..], &z[1], &z[2]], k, 1.0, [d0, d1, d2]);
    for (i, name) in ["dzc", "dz1", "dz2"].iter().enumerate() {
        assert_close(
            &format!("jsd {name} at the clamped entry"),
            &d[i][3..4],
            &want[i][3..4],
            0.0,
            1e-3,
        );
    }
}

/// Loads a whole-network case into our model, runs one train-mode forward and backward under
/// BN_c, and compares logits, loss, every gradient, the input gradient, the updated running
/// statistics, the attention taps and an eval-mode BN_a forward.
fn network_case(case: &str, arch: Arch, width: f32, wrn: (usize, usize)) {
    let config = ModelConfig {
        wrn,
        ..ModelConfig::new(arch, width)
    };
    let mut model = Model::new(config, 0).unwrap();
    let ids: Vec<usize> = (0..model.store.len()).collect();
    for id in ids {
        let name = model.store.entry(id).name.clone();
        if name.ends_with(".mask") {
            continue;
        }
        let t = Tensor::from_vec(
            &shape(case, &format!("param__{name}")),
            load_f32(case, &format!("param__{name}")),
        )
        .unwrap();
        model
            .store
            .set(id, t)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for i in 0..model.relu_layers.len() {
        let m = Tensor::from_vec(
            &shape(case, &format!("mask__{i}")),
            load_f32(case, &format!("mask__{i}")),
        )
        .unwrap();
        model.set_mask(i, m).unwrap();
    }
    let x = Tensor::from_vec(&shape(case, "x"), load_f32(case, "x")).unwrap();
    let labels: Vec<u32> = load(case, "labels").iter().map(|&v| v as u32).collect();

    let mut g = Graph::new(&model.store, GradMode::All);
    let xv = g.input(x.clone(), true);
    let out = model.forward(
        &mut g,
        xv,
        Pass {
            domain: Domain::Clean,
            train: true,
        },
    );
    let l = g.cross_entropy(out.logits, &labels, false);
    // Deep f32 nets against a float64 reference: relative 1e-3 on activations and gradients.
    assert_close(
        "logits",
        g.value(out.logits).data(),
        &load(case, "logits"),
        1e-4,
        1e-3,
    );
    assert_close(
        "loss",
        &[g.value(l).item()],
        &load(case, "loss"),
        1e-5,
        1e-4,
    );
    for (j, &t) in out.taps.iter().enumerate() {
        assert_close(
            &format!("tap {}", j + 1),
            g.value(t).data(),
            &load(case, &format!("taps__{}", j + 1)),
            1e-4,
            1e-3,
        );
    }
    let grads = g.backward(l);
    assert_close(
        "dx",
        grads.input(xv).unwrap().data(),
        &load(case, "dx"),
        1e-6,
        2e-3,
    );
    let mut checked = 0;
    for id in model.store.param_ids() {
        let name = &model.store.entry(id).name;
        let file = common::fixture_dir(case).join(format!("grad__{name}.npy"));
        match grads.param(id) {
            Some(got) if file.exists() => {
                let want = common::npy(&file).1;
                let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
                assert_close(
                    &format!("grad {name}"),
                    got.data(),
                    &want,
                    1e-4 * scale.max(1e-3),
                    2e-3,
                );
                checked += 1;
            }
            Some(got) => assert!(
                got.data().iter().all(|&v| v == 0.0),
                "{name}: gradient where PyTorch has none"
            ),
            None => assert!(
                !file.exists(),
                "{name}: PyTorch has a gradient, we have none"
            ),
        }
    }
    assert!(checked > 20, "only {checked} gradients compared");
    let updates = g.take_stat_updates();
    drop(g);
    bn_act::apply_stat_updates(&mut model.store, &updates).unwrap();
    for e in model.store.entries() {
        let file = common::fixture_dir(case).join(format!("running_after__{}.npy", e.name));
        if file.exists() {
            assert_close(
                &format!("running {}", e.name),
                e.tensor.data(),
                &common::npy(&file).1,
                1e-5,
                1e-4,
            );
        }
    }
    let mut g = Graph::new(&model.store, GradMode::None);
    let xv = g.input(x, false);
    let out = model.forward(
        &mut g,
        xv,
        Pass {
            domain: Domain::Adv,
            train: false,
        },
    );
    assert_close(
        "logits eval BN_a",
        g.value(out.logits).data(),
        &load(case, "logits_eval_adv"),
        1e-4,
        1e-3,
    );
}

#[test]
fn resnet18_reduced_width_matches_pytorch() {
    network_case("resnet18_w0125", Arch::ResNet18, 0.125, WRN_22_8);
}

#[test]
fn wrn_tiny_matches_pytorch() {
    // WRN-10-2 at width 0.25: widths [4, 8, 16, 32], one block per group.
    network_case("wrn_tiny", Arch::Wrn22_8, 0.25, (10, 2));
}
