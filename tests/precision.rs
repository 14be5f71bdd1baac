//! `--precision`: bf16 on the CPU rounds exactly what the module documentation says it rounds
//! (and nothing else), f32 stays the exact reference, TF32 runs the tensor-core kernels on the
//! GPU (here the CUDA emulator, or a real GPU when present), and bf16 on the GPU rounds and
//! multiplies as the CPU does.

mod common;

use common::{gpu, randn, small_model};
use rlnet::autograd::{GradMode, Graph};
use rlnet::device::Device;
use rlnet::nn::{Domain, Pass};
use rlnet::ops::conv::{self, cpu, ConvGeom};
use rlnet::tensor::precision::{round_to_bf16, Precision};
use rlnet::tensor::Tensor;

fn is_bf16(v: &[f32]) -> bool {
    v.iter().all(|x| x.to_bits() & 0xFFFF == 0)
}

fn rounded(v: &[f32]) -> Vec<f32> {
    let mut r = v.to_vec();
    round_to_bf16(&mut r);
    r
}

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, randn(n, seed)).unwrap()
}

/// Each direction under bf16 is the f32 reference applied to the rounded operands, with the
/// stored results (y, dx) rounded and dw not: equal to the bit.
#[test]
fn a_bf16_convolution_is_the_f32_one_on_rounded_operands() {
    let g = ConvGeom {
        n: 3,
        c_in: 5,
        h: 9,
        w: 9,
        c_out: 7,
        k: 3,
        stride: 2,
        pad: 1,
    };
    let (x, w) = (tensor(&[3, 5, 9, 9], 1), tensor(&[7, 5, 3, 3], 2));
    let dy = tensor(&[3, 7, 5, 5], 3);
    let (xr, wr, dyr) = (rounded(x.data()), rounded(w.data()), rounded(dy.data()));
    let bf16 = Precision::Bf16;

    let y = conv::forward_at(&Device::Cpu, &g, &x, &w, bf16).unwrap();
    let mut want = vec![0f32; g.y_len()];
    cpu::forward(&g, &xr, &wr, &mut want);
    assert_eq!(y.data(), rounded(&want).as_slice());

    let dx = conv::backward_data_at(&Device::Cpu, &g, &w, &dy, bf16).unwrap();
    let mut want = vec![0f32; g.x_len()];
    cpu::backward_data(&g, &wr, &dyr, &mut want);
    assert_eq!(dx.data(), rounded(&want).as_slice());

    let dw = conv::backward_weight_at(&Device::Cpu, &g, &x, &dy, bf16).unwrap();
    let mut want = vec![0f32; g.w_len()];
    cpu::backward_weight(&g, &xr, &dyr, &mut want);
    assert_eq!(dw.data(), want.as_slice());
    assert!(
        !is_bf16(dw.data()),
        "dw, the master weights' gradient, stays f32"
    );

    // f32 is the plain reference.
    let y32 = conv::forward_at(&Device::Cpu, &g, &x, &w, Precision::F32).unwrap();
    assert_eq!(y32, conv::forward(&Device::Cpu, &g, &x, &w).unwrap());
    assert!(!is_bf16(y32.data()));
}

/// A model's forward and backward under bf16: every masked-ReLU output (a stored activation)
/// is a bf16, the input gradient is finite, and the logits and the last block's weight
/// gradient stay within what bf16's 8-bit mantissa allows of the f32 pass (relative error
/// 2^-9 per rounding, compounded over the network's ~20 stored layers: a few percent, far
/// from the O(1) of a wrong pass).
#[test]
fn a_bf16_model_stores_bf16_activations_and_stays_near_f32() {
    let mut model = small_model(7);
    let x = Tensor::from_vec(
        &[4, 3, 32, 32],
        randn(4 * 3072, 8)
            .iter()
            .map(|v| (0.5 + 0.2 * v).clamp(0.0, 1.0))
            .collect(),
    )
    .unwrap();
    let labels = [1u32, 4, 2, 9];
    let pass = Pass {
        domain: Domain::Adv,
        train: true,
    };
    let run = |model: &rlnet::nn::Model| {
        let mut g = Graph::new(&model.store, GradMode::All);
        let xv = g.input(x.clone(), true);
        let out = model.forward(&mut g, xv, pass);
        let relus_bf16 = out.relus.iter().all(|&r| is_bf16(g.value(r).data()));
        let logits = g.value(out.logits).data().to_vec();
        let l = g.cross_entropy(out.logits, &labels, false);
        let grads = g.backward(l);
        let dx = grads.input(xv).unwrap().data().to_vec();
        let dw: Vec<Vec<f32>> = ["linear.weight", "layer4.1.conv2.weight", "conv1.weight"]
            .iter()
            .map(|name| {
                let id = model.store.id(name).unwrap();
                grads.param(id).unwrap().data().to_vec()
            })
            .collect();
        (relus_bf16, logits, dx, dw)
    };
    let (f32_relus, f32_logits, _, f32_dw) = run(&model);
    assert!(!f32_relus, "f32 activations are not rounded");
    let (relus, logits, dx, dw) = model.at_precision(Precision::Bf16, |m| run(m));
    assert_eq!(
        model.precision,
        Precision::F32,
        "the model is f32 again afterwards"
    );
    assert!(relus, "every masked-ReLU output under bf16 is a bf16");
    assert!(dx.iter().all(|v| v.is_finite()));
    let rel = |a: &[f32], b: &[f32]| {
        let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
        let den: f32 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    };
    let dl = rel(&logits, &f32_logits);
    assert!(dl > 0.0 && dl < 0.05, "logits: relative error {dl}");
    // The classifier's weight gradient is as close as the logits. Each train-mode BN
    // backward removes the batch-mean parts of its gradient, so on the way to the stem (at
    // batch 4, 16 to 4096 values per channel) what is left is a smaller residual whose
    // relative error grows: the convolutions' gradients keep their direction, not their
    // digits (measured cosines to f32's: 0.99 at layer4.1.conv2, 0.95 at the stem).
    let dg = rel(&dw[0], &f32_dw[0]);
    assert!(dg > 0.0 && dg < 0.05, "linear.weight: relative error {dg}");
    let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
    for (i, least) in [(1, 0.97), (2, 0.9)] {
        let dot: f32 = dw[i].iter().zip(&f32_dw[i]).map(|(a, b)| a * b).sum();
        let cosine = dot / (norm(&dw[i]) * norm(&f32_dw[i]));
        assert!(
            cosine > least,
            "weight gradient {i}: cosine {cosine} to f32's"
        );
    }
}

/// TF32 on the GPU (the emulator in CI) runs the `_v2` tensor-core convolutions: not the
/// exact f32 of v1, but within TF32's rounding (10-bit mantissa: 2^-11 per operand, summed
/// over a few hundred products per output) of the CPU's f32.
#[test]
fn tf32_runs_the_tensor_core_convolutions_on_the_gpu() {
    let Some(d) = gpu() else { return };
    let device = Device::Cuda(d);
    let g = ConvGeom {
        n: 2,
        c_in: 16,
        h: 8,
        w: 8,
        c_out: 16,
        k: 3,
        stride: 1,
        pad: 1,
    };
    let (x, w) = (tensor(&[2, 16, 8, 8], 4), tensor(&[16, 16, 3, 3], 5));
    let want = conv::forward(&Device::Cpu, &g, &x, &w).unwrap();
    let (xd, wd) = (x.to_device(&device).unwrap(), w.to_device(&device).unwrap());
    let at = |p| {
        let y = conv::forward_at(&device, &g, &xd, &wd, p).unwrap();
        y.to_host().unwrap().data().to_vec()
    };
    let (exact, tf32) = (at(Precision::F32), at(Precision::Tf32));
    let worst = |got: &[f32]| {
        got.iter()
            .zip(want.data())
            .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
            .fold(0f32, f32::max)
    };
    assert!(worst(&exact) < 1e-5, "v1 is f32: {}", worst(&exact));
    let e = worst(&tf32);
    assert!(e > 1e-5 && e < 2e-2, "tf32: worst relative error {e}");
}

/// bf16 on the GPU (the emulator in CI) rounds what the CPU rounds and multiplies the same
/// values, on the bf16 tensor-core kernels where a direction's copied channels come in eights
/// and on v1 over rounded operands elsewhere. The two devices add the same exact products in
/// different orders, so a stored (rounded) result may land one bf16 step (2^-7 of its size at
/// most) apart; dw, kept in f32, agrees to f32's rounding.
#[test]
fn bf16_on_the_gpu_rounds_and_multiplies_as_the_cpu_does() {
    let Some(d) = gpu() else { return };
    let device = Device::Cuda(d);
    let bf16 = Precision::Bf16;
    let geom = |n, c_in, h, c_out, stride| ConvGeom {
        n,
        c_in,
        h,
        w: h,
        c_out,
        k: 3,
        stride,
        pad: 1,
    };
    let one_step = |what: &str, got: &[f32], want: &[f32]| {
        assert!(is_bf16(got), "{what}: the GPU stores bf16 values");
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= b.abs() * 2f32.powi(-7) + 1e-6,
                "{what}: element {i} is {a} on the GPU, {b} on the CPU"
            );
        }
    };
    // The stem's forward and weight gradient fall back to v1 (3 input channels); the rest
    // run on the bf16 kernels.
    for (i, g) in [geom(2, 3, 8, 16, 1), geom(3, 16, 9, 24, 2)]
        .into_iter()
        .enumerate()
    {
        let seed = 10 * i as u64;
        let x = tensor(&[g.n, g.c_in, g.h, g.w], seed + 1);
        let w = tensor(&[g.c_out, g.c_in, 3, 3], seed + 2);
        let dy = tensor(&[g.n, g.c_out, g.h_out(), g.w_out()], seed + 3);
        let on_gpu = |t: &Tensor| t.to_device(&device).unwrap();
        let host = |t: Tensor| t.to_host().unwrap().data().to_vec();
        let y = conv::forward_at(&device, &g, &on_gpu(&x), &on_gpu(&w), bf16).unwrap();
        let want = conv::forward_at(&Device::Cpu, &g, &x, &w, bf16).unwrap();
        one_step(&format!("y {g:?}"), &host(y), want.data());
        let dx = conv::backward_data_at(&device, &g, &on_gpu(&w), &on_gpu(&dy), bf16).unwrap();
        let want = conv::backward_data_at(&Device::Cpu, &g, &w, &dy, bf16).unwrap();
        one_step(&format!("dx {g:?}"), &host(dx), want.data());
        let dw = conv::backward_weight_at(&device, &g, &on_gpu(&x), &on_gpu(&dy), bf16).unwrap();
        let want = conv::backward_weight_at(&Device::Cpu, &g, &x, &dy, bf16).unwrap();
        let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in host(dw).iter().zip(want.data()) {
            assert!((a - b).abs() <= 1e-4 * scale, "dw {g:?}: {a} against {b}");
        }
    }
}

/// A whole model's bf16 pass on the GPU against the CPU's. The two add the same exact products
/// in different orders (the CPU's Winograd and blocked GEMMs, the GPU's mma tiles), so now and
/// then a sum falls on the other side of a bf16 rounding boundary and a stored value moves by
/// one bf16 step (2^-8 of it); train-mode BN at batch 4 spreads each such step over its
/// channel, and the later layers differ by more. Measured: the first stored layer agrees to the
/// step, the logits to 4.4e-3 relative (the f32 pass to 5e-7), against the few percent that
/// separate bf16 from f32. A wrong rounding or a wrong product would be of f32-vs-bf16 size, or
/// of O(1).
#[test]
fn a_bf16_model_pass_on_the_gpu_follows_the_cpu_one() {
    let Some(d) = gpu() else { return };
    let device = Device::Cuda(d);
    let mut cpu_model = small_model(11);
    let mut gpu_model = small_model(11);
    gpu_model.to_device(&device).unwrap();
    let x = Tensor::from_vec(
        &[4, 3, 32, 32],
        randn(4 * 3072, 12)
            .iter()
            .map(|v| (0.5 + 0.2 * v).clamp(0.0, 1.0))
            .collect(),
    )
    .unwrap();
    let labels = [3u32, 0, 8, 5];
    let pass = Pass {
        domain: Domain::Clean,
        train: true,
    };
    let run = |model: &rlnet::nn::Model| {
        let mut g = Graph::new(&model.store, GradMode::All);
        let xv = g.input(x.clone(), true);
        let out = model.forward(&mut g, xv, pass);
        let relus: Vec<Vec<f32>> = out
            .relus
            .iter()
            .map(|&r| g.value(r).to_host().unwrap().into_vec())
            .collect();
        let logits = g.value(out.logits).to_host().unwrap().into_vec();
        let l = g.cross_entropy(out.logits, &labels, false);
        let grads = g.backward(l);
        let id = model.store.id("linear.weight").unwrap();
        let dw = grads.param(id).unwrap().to_host().unwrap().into_vec();
        (relus, logits, dw)
    };
    let (want_relus, want_logits, want_dw) = cpu_model.at_precision(Precision::Bf16, |m| run(m));
    let (relus, logits, dw) = gpu_model.at_precision(Precision::Bf16, |m| run(m));
    assert!(
        relus.iter().all(|r| is_bf16(r)),
        "every masked-ReLU output on the GPU is a bf16"
    );
    for (i, (&a, &b)) in relus[0].iter().zip(&want_relus[0]).enumerate() {
        assert!(
            (a - b).abs() <= b.abs() * 2f32.powi(-7) + 1e-6,
            "first stored layer, element {i}: {a} on the GPU, {b} on the CPU"
        );
    }
    let rel = |a: &[f32], b: &[f32]| {
        let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
        let den: f32 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    };
    let (dl, dg) = (rel(&logits, &want_logits), rel(&dw, &want_dw));
    assert!(dl < 1.5e-2, "logits: relative error {dl}");
    assert!(dg < 1.5e-2, "linear.weight gradient: relative error {dg}");
}

/// Under bf16 on the GPU a convolution that its bf16 kernel runs unsplit leaves the sums of
/// its output channels in the graph, the train-mode BatchNorm after it takes them instead of a
/// statistics pass, and normalises exactly as that pass would have it (the statistics differ
/// only by the order of f64 sums, so the outputs by an ulp at most; a BN from wrong sums moves
/// them by O(1)). Eval mode and f32 leave the sums alone.
#[test]
fn a_bf16_convolution_hands_its_channel_sums_to_the_batchnorm_after_it() {
    use rlnet::autograd::{EntryKind, ParamStore};
    use rlnet::ops::bn_act::BnIds;
    let Some(d) = gpu() else { return };
    let device = Device::Cuda(d);
    let (c_in, c_out) = (16, 24);
    let mut store = ParamStore::new();
    let w = store.add("w", EntryKind::Param, tensor(&[c_out, c_in, 3, 3], 21));
    let ones = |n| Tensor::from_vec(&[n], vec![1.0; n]).unwrap();
    let bn = BnIds {
        weight: store.add("g", EntryKind::Param, tensor(&[c_out], 22)),
        bias: store.add("b", EntryKind::Param, tensor(&[c_out], 23)),
        running_mean: store.add("m", EntryKind::Buffer, tensor(&[c_out], 24)),
        running_var: store.add("v", EntryKind::Buffer, ones(c_out)),
    };
    store.to_device(&device).unwrap();
    let x = tensor(&[3, c_in, 10, 10], 25);
    let mut g = Graph::new(&store, GradMode::None);
    g.set_precision(Precision::Bf16);
    let xv = g.input(x.clone(), false);
    let h = g.conv2d(xv, w, 1, 1);
    let sums = g
        .take_channel_sums(h)
        .expect("the bf16 convolution left its sums");
    assert!(g.take_channel_sums(h).is_none(), "the sums are taken once");
    // The statistics pass first, then the same BatchNorm from the sums.
    let by_pass = g.bn_act(h, bn, None, true, None, true);
    g.attach_channel_sums(h, sums);
    let by_sums = g.bn_act(h, bn, None, true, None, true);
    assert!(
        g.take_channel_sums(h).is_none(),
        "the BatchNorm took the sums"
    );
    let a = g.value(by_pass).to_host().unwrap().into_vec();
    let b = g.value(by_sums).to_host().unwrap().into_vec();
    let worst = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (p, q)| m.max((p - q).abs() / p.abs().max(1.0)));
    assert!(worst <= 2f32.powi(-7), "BN from the sums is off by {worst}");

    // Eval mode leaves them unused; f32 never makes them.
    let h2 = g.conv2d(xv, w, 1, 1);
    g.bn_act(h2, bn, None, true, None, false);
    assert!(g.take_channel_sums(h2).is_some(), "eval mode used the sums");
    g.set_precision(Precision::F32);
    let h3 = g.conv2d(xv, w, 1, 1);
    assert!(g.take_channel_sums(h3).is_none(), "f32 made sums");
}

/// The GPU's bf16 convolutions convert a store weight once per form and keep the copy in the
/// store until the weight changes: a second graph over the same weights makes no new copy, a
/// changed weight (the optimiser's `get_mut`, a checkpoint's `set`) drops its copies, and the
/// next pass multiplies the new weights, bit for bit what an uncached conversion gives. A copy
/// that outlived its weight would give the old products, O(1) away.
#[test]
fn stored_weights_keep_their_bf16_copies_until_the_weights_change() {
    use rlnet::autograd::{EntryKind, ParamStore};
    let Some(d) = gpu() else { return };
    let device = Device::Cuda(d);
    let (c_in, c_out) = (16, 24);
    let mut store = ParamStore::new();
    let w = store.add("w", EntryKind::Param, tensor(&[c_out, c_in, 3, 3], 31));
    store.to_device(&device).unwrap();
    let x = tensor(&[2, c_in, 6, 6], 32).into_device(&device).unwrap();
    let geom = ConvGeom {
        n: 2,
        c_in,
        h: 6,
        w: 6,
        c_out,
        k: 3,
        stride: 1,
        pad: 1,
    };
    // One forward and backward through a graph: (y, dx, copies the store holds after it).
    let pass = |store: &ParamStore| {
        let mut g = Graph::new(store, GradMode::All);
        g.set_precision(Precision::Bf16);
        let xv = g.input(x.clone(), true);
        let y = g.conv2d(xv, w, 1, 1);
        let seed = tensor(&[2, c_out, 6, 6], 33).into_device(&device).unwrap();
        let dx = g
            .backward_from(y, seed)
            .input(xv)
            .unwrap()
            .to_host()
            .unwrap();
        let y = g.value(y).to_host().unwrap().into_vec();
        (y, dx.into_vec(), store.derived_copies())
    };
    // What uncached conversions of the store's weights give.
    let fresh = |store: &ParamStore| {
        let seed = tensor(&[2, c_out, 6, 6], 33).into_device(&device).unwrap();
        let bf16 = Precision::Bf16;
        let y = conv::forward_at(&device, &geom, &x, store.get(w), bf16).unwrap();
        let dx = conv::backward_data_at(&device, &geom, store.get(w), &seed, bf16).unwrap();
        (
            y.to_host().unwrap().into_vec(),
            dx.to_host().unwrap().into_vec(),
        )
    };
    assert_eq!(store.derived_copies(), 0);
    let (y1, dx1, copies) = pass(&store);
    assert_eq!(
        copies, 2,
        "one copy for the forward, one for the data gradient"
    );
    assert_eq!((y1.clone(), dx1.clone()), fresh(&store));
    assert_eq!(pass(&store).2, 2, "a second graph made new copies");

    let changed = tensor(&[c_out, c_in, 3, 3], 34)
        .into_device(&device)
        .unwrap();
    *store.get_mut(w) = changed;
    assert_eq!(store.derived_copies(), 0, "get_mut kept the old copies");
    let (y2, dx2, _) = pass(&store);
    assert_eq!((y2.clone(), dx2.clone()), fresh(&store));
    assert!(y2 != y1 && dx2 != dx1, "the new weights changed nothing");

    store
        .set(
            w,
            tensor(&[c_out, c_in, 3, 3], 35)
                .into_device(&device)
                .unwrap(),
        )
        .unwrap();
    assert_eq!(store.derived_copies(), 0, "set kept the old copies");
    assert_eq!(
        {
            let (y, dx, _) = pass(&store);
            (y, dx)
        },
        fresh(&store)
    );
}
