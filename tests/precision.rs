//! `--precision`: bf16 on the CPU rounds exactly what the module documentation says it rounds
//! (and nothing else), f32 stays the exact reference, and TF32 runs the tensor-core kernels on
//! the GPU (here the CUDA emulator, or a real GPU when present).

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
    let err = Precision::Bf16.check(&device).unwrap_err().to_string();
    assert!(
        err.contains("bf16") && err.contains("not available on the GPU yet"),
        "{err}"
    );
}
