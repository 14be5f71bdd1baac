//! Adam against PyTorch (the `adam` golden fixture, replayed on the CPU) and its checkpoint
//! state: a save/restore round trip resumes bit for bit, and bad saved state is refused.

mod common;

use common::{assert_close, fixture_dir, load_f32, shape};
use rlnet::autograd::{EntryId, EntryKind, Gradients, ParamStore};
use rlnet::error::Error;
use rlnet::optim::{Adam, AdamConfig};
use rlnet::tensor::Tensor;
use std::collections::HashMap;

const CASE: &str = "adam";
const NAMES: [&str; 3] = ["w", "alpha", "b"];
const STEPS: usize = 4;
const LR: f32 = 0.01;
/// Two f32 ulps, relative.
const ULPS: f64 = 2.5e-7;

fn tensor(name: &str) -> Tensor {
    Tensor::from_vec(&shape(CASE, name), load_f32(CASE, name)).unwrap()
}

fn exists(name: &str) -> bool {
    fixture_dir(CASE).join(format!("{name}.npy")).exists()
}

/// Replays one run of the fixture: `wd` and `l1` as tools/make_golden.py's ADAM_RUNS.
fn replay(run: &str, weight_decay: f32, l1: f32) {
    let mut store = ParamStore::new();
    let ids: Vec<EntryId> = NAMES
        .iter()
        .map(|n| {
            let kind = if *n == "alpha" {
                EntryKind::Mask
            } else {
                EntryKind::Param
            };
            store.add(n, kind, tensor(&format!("{run}_init__{n}")))
        })
        .collect();
    let alpha = [ids[1]];
    let config = AdamConfig {
        weight_decay,
        ..AdamConfig::default()
    };
    let mut adam = Adam::new(config, ids.clone());
    for k in 0..STEPS {
        let grads = Gradients::from_params(NAMES.iter().zip(&ids).filter_map(|(n, id)| {
            let f = format!("{run}_grad{k}__{n}");
            exists(&f).then(|| (*id, tensor(&f)))
        }));
        let l1 = (l1 != 0.0).then_some((&alpha[..], l1));
        adam.step(&mut store, &grads, LR, l1);
        let moments: HashMap<String, &Tensor> = adam.state_tensors(&store).into_iter().collect();
        for (n, id) in NAMES.iter().zip(&ids) {
            let what = format!("{run} step {k} {n}");
            let want = load_f32(CASE, &format!("{run}_step{k}__{n}"));
            // f32 on both sides with the same roundings and fused multiply-adds: all but one
            // element of the fixture agree bit for bit, that one by an ulp; allow two.
            assert_close(&what, store.get(*id).data(), &want, 0.0, ULPS);
            let m = format!("{run}_exp_avg{k}__{n}");
            let stepped = exists(&m);
            assert_eq!(
                moments.contains_key(&format!("optimizer.adam.exp_avg.{n}")),
                stepped,
                "{what}: moments present"
            );
            if stepped {
                let got = moments[&format!("optimizer.adam.exp_avg.{n}")].data();
                assert_close(
                    &format!("{what} exp_avg"),
                    got,
                    &load_f32(CASE, &m),
                    0.0,
                    ULPS,
                );
                let v = format!("{run}_exp_avg_sq{k}__{n}");
                let got = moments[&format!("optimizer.adam.exp_avg_sq.{n}")].data();
                assert_close(
                    &format!("{what} exp_avg_sq"),
                    got,
                    &load_f32(CASE, &v),
                    0.0,
                    ULPS,
                );
            }
        }
    }
    // The skipped steps do not count: b missed one step; alpha missed one only without L1.
    let counts: HashMap<String, u64> = adam.step_counts(&store).into_iter().collect();
    let alpha_steps = if l1 != 0.0 { STEPS } else { STEPS - 1 } as u64;
    assert_eq!(counts["w"], STEPS as u64, "{run}");
    assert_eq!(counts["b"], STEPS as u64 - 1, "{run}");
    assert_eq!(counts["alpha"], alpha_steps, "{run}");
}

#[test]
fn adam_matches_pytorch_with_the_snl_l1_term() {
    replay("snl", 0.0, 0.3);
}

#[test]
fn adam_matches_pytorch_with_weight_decay() {
    replay("wd", 0.01, 0.0);
}

fn small_store() -> (ParamStore, Vec<EntryId>) {
    let mut store = ParamStore::new();
    let w = store.add("w", EntryKind::Param, tensor("snl_init__w"));
    let a = store.add("alpha", EntryKind::Mask, tensor("snl_init__alpha"));
    (store, vec![w, a])
}

/// The fixture's gradients of step k (alpha has none at step 2).
fn grads_at(ids: &[EntryId], k: usize) -> Gradients {
    Gradients::from_params(ids.iter().zip(["w", "alpha"]).filter_map(|(id, n)| {
        let f = format!("snl_grad{k}__{n}");
        exists(&f).then(|| (*id, tensor(&f)))
    }))
}

fn saved(adam: &Adam, store: &ParamStore) -> (Vec<(String, u64)>, HashMap<String, Tensor>) {
    let tensors = adam
        .state_tensors(store)
        .into_iter()
        .map(|(n, t)| (n, t.clone()))
        .collect();
    (adam.step_counts(store), tensors)
}

#[test]
fn adam_state_round_trip_resumes_bit_for_bit() {
    let (mut store, ids) = small_store();
    let mut adam = Adam::new(AdamConfig::default(), ids.clone());
    let l1 = Some((&ids[1..], 0.3f32));
    for k in 0..2 {
        adam.step(&mut store, &grads_at(&ids, k), 1e-3, l1);
    }
    let (counts, tensors) = saved(&adam, &store);
    assert_eq!(counts, vec![("w".to_string(), 2), ("alpha".to_string(), 2)]);
    let mut resumed = Adam::new(AdamConfig::default(), ids.clone());
    resumed
        .restore(&store, &counts, |n| tensors.get(n).cloned())
        .unwrap();
    let mut store2 = store.clone();
    adam.step(&mut store, &grads_at(&ids, 2), 1e-3, l1);
    resumed.step(&mut store2, &grads_at(&ids, 2), 1e-3, l1);
    for id in &ids {
        let (a, b) = (store.get(*id).data(), store2.get(*id).data());
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{}: {a:?} vs {b:?}",
            store.entry(*id).name
        );
    }
    // A fresh optimiser differs (bias corrections restart at t = 1), so the state mattered.
    let mut store3 = store2.clone();
    let mut fresh = Adam::new(AdamConfig::default(), ids.clone());
    resumed.step(&mut store2, &grads_at(&ids, 3), 1e-3, l1);
    fresh.step(&mut store3, &grads_at(&ids, 3), 1e-3, l1);
    assert_ne!(store2.get(ids[0]).data(), store3.get(ids[0]).data());
}

#[test]
fn adam_restore_refuses_missing_or_misshapen_state() {
    let (mut store, ids) = small_store();
    let mut adam = Adam::new(AdamConfig::default(), ids.clone());
    adam.step(&mut store, &grads_at(&ids, 0), 1e-3, None);
    let (counts, mut tensors) = saved(&adam, &store);
    let restore = |tensors: &HashMap<String, Tensor>, counts: &[(String, u64)]| {
        let mut fresh = Adam::new(AdamConfig::default(), ids.clone());
        fresh.restore(&store, counts, |n| tensors.get(n).cloned())
    };
    restore(&tensors, &counts).unwrap();

    let key = "optimizer.adam.exp_avg_sq.alpha";
    let good = tensors.remove(key).unwrap();
    let err = restore(&tensors, &counts).unwrap_err();
    assert!(
        matches!(&err, Error::Data(m) if m.contains(key) && m.contains("alpha")),
        "{err}"
    );

    tensors.insert(key.to_string(), Tensor::zeros(&[10]));
    let err = restore(&tensors, &counts).unwrap_err();
    assert!(
        matches!(&err, Error::Shape { op, expected, got }
            if op.contains(key) && expected.contains("[2, 5]") && got.contains("[10]")),
        "{err}"
    );

    tensors.insert(key.to_string(), good);
    let unknown = vec![("b".to_string(), 1)];
    let err = restore(&tensors, &unknown).unwrap_err();
    assert!(
        matches!(&err, Error::Data(m) if m.contains("entry b")),
        "{err}"
    );
}
