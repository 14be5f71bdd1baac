//! The op table: each op described once (its inputs, its device functions, its f64 reference,
//! its graph method, its tolerances and its PyTorch fixture), and the three layers of op tests
//! run over every entry and every device present (the CPU, and the CUDA device: a GPU when
//! usable, else the emulator):
//! - golden: the CPU against PyTorch's values (tools/make_golden.py);
//! - gradcheck: the f64 backward against central finite differences of the f64 forward;
//! - parity: every device against the CPU, forward and backward, and the graph method on every
//!   device against the op's own functions there (exactly: the node must call them).
//!
//! Adding an op adds one entry to `ops()`: the convolutions, linear, the losses, the soft
//! ReLU, pooling, the element-wise maps and the fused BN + residual + masked ReLU (train and
//! eval mode, its statistics, γ, β and mask in the graph's store) are here. Non-tensor
//! settings (stride, padding, temperature) are part of an entry; labels travel as an input
//! without a gradient. The BN's PyTorch fixtures and running-statistics update, whole
//! networks and the optimisers keep their own tests in golden.rs, gradcheck.rs and
//! gpu_parity.rs, as do the checks of one kernel version or of intermediate buffers.

mod common;

use common::{assert_close, fixture_dir, load_f32, npy};
use rlnet::autograd::{EntryId, EntryKind, GradMode, Graph, ParamStore, Var};
use rlnet::device::Device;
use rlnet::error::Result;
use rlnet::ops::bn_act::{self, Activation, BnGeom, BnGrads, BnIds, BnInputs, BN_EPS};
use rlnet::ops::conv::{self, ConvGeom};
use rlnet::ops::linear::{self, LinearShape};
use rlnet::ops::loss::{self, Labels};
use rlnet::ops::{elementwise, pool, soft_relu};
use rlnet::rng::Stream;
use rlnet::tensor::Tensor;

/// How closely two results must agree: |got − want| ≤ atol + rtol·|want|.
#[derive(Clone, Copy)]
struct Tol {
    atol: f64,
    rtol: f64,
}

const EXACT: Tol = Tol {
    atol: 0.0,
    rtol: 0.0,
};

/// PyTorch's values for an op: the fixture folder and its file names.
struct Golden {
    case: &'static str,
    /// The inputs, in the op's order.
    inputs: &'static [&'static str],
    /// The upstream gradient (None: the output is a scalar loss, whose own gradient is
    /// stored), the output, and each input's gradient (None: none is stored).
    dy: Option<&'static str>,
    y: &'static str,
    grads: &'static [Option<&'static str>],
    /// Against the float64 values PyTorch stored as f32: forward, backward.
    tol: (Tol, Tol),
}

/// Each input's gradient (None for an input without one).
type InputGrads<T> = Vec<Option<T>>;
/// Values of the inputs, and their shapes.
type Values<'a> = &'a [Vec<f64>];
type Shapes<'a> = &'a [&'a [usize]];

/// One op, described once.
struct Op {
    name: &'static str,
    /// The inputs' shapes in the random cases (gradcheck and parity).
    shapes: &'static [&'static [usize]],
    /// Shapes input i's standard-normal draws into the op's domain (away from its kinks).
    draw: fn(usize, &mut [f64]),
    /// Puts input i on the op's kinks (where it has no derivative, so finite differences do
    /// not apply): the parity cases include them, gradcheck does not.
    kinks: fn(usize, &mut [f64]),
    forward: fn(&Device, &[Tensor]) -> Result<Tensor>,
    /// The input gradients for upstream `dy` (None for an input without one).
    backward: fn(&Device, &[Tensor], &Tensor) -> Result<InputGrads<Tensor>>,
    /// The same op in f64, on the inputs' values and shapes.
    forward_f64: fn(Values<'_>, Shapes<'_>) -> Vec<f64>,
    backward_f64: fn(Values<'_>, Shapes<'_>, &[f64]) -> InputGrads<Vec<f64>>,
    /// How many of the last inputs are parameters (weights) in the graph rather than inputs.
    params: usize,
    /// The graph method, on the leading inputs (all wanting their gradients) and the
    /// parameters (in the graph's store).
    /// The inputs' tensors come too, for the inputs a graph method takes as constants
    /// (labels, targets).
    graph: fn(&mut Graph<'_>, &[Var], &[EntryId], &[Tensor]) -> Var,
    /// A CUDA device against the CPU: forward, backward.
    parity: (Tol, Tol),
    /// Its PyTorch fixtures (none for the ops PyTorch has no fixture for here).
    goldens: &'static [Golden],
}

fn no_change(_: usize, _: &mut [f64]) {}

fn ops() -> Vec<Op> {
    vec![
        conv_op::<1, 1>(
            "conv k3 s1 p1",
            &[&[2, 3, 5, 5], &[4, 3, 3, 3]],
            const { &[conv_golden("conv_k3s1p1")] },
        ),
        conv_op::<2, 1>(
            "conv k3 s2 p1",
            &[&[2, 2, 7, 6], &[3, 2, 3, 3]],
            const { &[conv_golden("conv_k3s2p1"), conv_golden("conv_k3s2p1_even")] },
        ),
        conv_op::<2, 0>(
            "conv k1 s2 p0",
            &[&[3, 4, 6, 6], &[5, 4, 1, 1]],
            const { &[conv_golden("conv_k1s2p0")] },
        ),
        conv_op::<1, 0>(
            "conv k1 s1 p0",
            &[&[2, 3, 4, 4], &[2, 3, 1, 1]],
            const { &[conv_golden("conv_k1s1p0")] },
        ),
        Op {
            name: "linear",
            shapes: &[&[37, 130], &[11, 130], &[11]],
            draw: no_change,
            kinks: no_change,
            forward: |d, x| {
                linear::forward(
                    d,
                    linear_shape(x[0].shape(), x[1].shape()),
                    &x[0],
                    &x[1],
                    &x[2],
                )
            },
            backward: |d, x, dy| {
                let s = linear_shape(x[0].shape(), x[1].shape());
                let dx = linear::backward_data(d, s, &x[1], dy)?;
                let (dw, db) = linear::backward_params(d, s, &x[0], dy)?;
                Ok(vec![Some(dx), Some(dw), Some(db)])
            },
            forward_f64: |x, sh| {
                let s = linear_shape(sh[0], sh[1]);
                let mut y = vec![0.0; s.n * s.out];
                linear::cpu::forward(&x[0], &x[1], &x[2], s.n, s.inp, s.out, &mut y);
                y
            },
            backward_f64: |x, sh, dy| {
                let s = linear_shape(sh[0], sh[1]);
                let mut dx = vec![0.0; s.n * s.inp];
                linear::cpu::backward_data(&x[1], dy, s.n, s.inp, s.out, &mut dx);
                let (mut dw, mut db) = (vec![0.0; s.out * s.inp], vec![0.0; s.out]);
                linear::cpu::backward_params(&x[0], dy, s.n, s.inp, s.out, &mut dw, &mut db);
                vec![Some(dx), Some(dw), Some(db)]
            },
            params: 2,
            graph: |g, v, p, _| g.linear(v[0], p[0], p[1]),
            parity: (LINEAR_PARITY, LINEAR_PARITY),
            goldens: &[Golden {
                case: "linear",
                inputs: &["x", "w", "b"],
                dy: Some("dy"),
                y: "y",
                grads: &[Some("dx"), Some("dw"), Some("db")],
                tol: (
                    Tol {
                        atol: 1e-6,
                        rtol: 1e-5,
                    },
                    Tol {
                        atol: 1e-6,
                        rtol: 1e-5,
                    },
                ),
            }],
        },
        ce_op::<false>(
            "cross_entropy mean",
            const { &[ce_golden("loss_mean", &[Some("dlogits_mean"), None])] },
        ),
        ce_op::<true>(
            "cross_entropy sum",
            const { &[ce_golden("loss_sum", &[Some("dlogits_sum"), None])] },
        ),
        Op {
            name: "kl_div T=4",
            shapes: &[&[6, 10], &[6, 10]],
            draw: no_change,
            kinks: no_change,
            forward: |d, x| Ok(loss::kl_div(d, &x[0], &x[1], 4.0)?[0].clone()),
            backward: |d, x, dy| {
                let [_, ps, pt] = loss::kl_div(d, &x[0], &x[1], 4.0)?;
                Ok(vec![
                    Some(loss::kl_div_backward(d, &ps, &pt, 4.0, item(dy))?),
                    None,
                ])
            },
            forward_f64: |x, s| vec![loss::cpu::kl_div(&x[0], &x[1], s[0][1], 4.0).0],
            backward_f64: |x, s, dy| {
                let (_, ps, pt) = loss::cpu::kl_div(&x[0], &x[1], s[0][1], 4.0);
                let mut ds = vec![0.0; x[0].len()];
                loss::cpu::kl_div_backward(&ps, &pt, s[0][1], 4.0, dy[0], &mut ds);
                vec![Some(ds), None]
            },
            params: 0,
            graph: |g, v, _, x| g.kl_div(v[0], &x[1], 4.0),
            parity: LOSS_PARITY,
            goldens: &[Golden {
                case: "kl_t4",
                inputs: &["s", "t"],
                dy: None,
                y: "loss",
                grads: &[Some("ds"), None],
                tol: (
                    Tol {
                        atol: 1e-5,
                        rtol: 1e-5,
                    },
                    Tol {
                        atol: 1e-6,
                        rtol: 1e-5,
                    },
                ),
            }],
        },
        Op {
            name: "attention",
            shapes: &[&[3, 4, 5, 5], &[3, 4, 5, 5]],
            draw: no_change,
            kinks: no_change,
            forward: |d, x| {
                let at = loss::attention_map(d, &x[1])?;
                Ok(loss::attention(d, &x[0], &at)?[0].clone())
            },
            backward: |d, x, dy| {
                let at = loss::attention_map(d, &x[1])?;
                let [_, a, norms] = loss::attention(d, &x[0], &at)?;
                let dfs = loss::attention_backward(d, &x[0], &a, &norms, &at, item(dy))?;
                Ok(vec![Some(dfs), None])
            },
            forward_f64: |x, s| {
                let (n, ch, hw) = (s[0][0], s[0][1], hw(s[0]));
                let (at, _) = loss::cpu::attention_map(&x[1], n, ch, hw);
                vec![loss::cpu::attention(&x[0], &at, n, ch, hw).0]
            },
            backward_f64: |x, s, dy| {
                let (n, ch, hw) = (s[0][0], s[0][1], hw(s[0]));
                let (at, _) = loss::cpu::attention_map(&x[1], n, ch, hw);
                let (_, a, norms) = loss::cpu::attention(&x[0], &at, n, ch, hw);
                let mut d = vec![0.0; x[0].len()];
                loss::cpu::attention_backward(&x[0], &a, &norms, &at, n, ch, hw, dy[0], &mut d);
                vec![Some(d), None]
            },
            params: 0,
            graph: |g, v, _, x| g.attention(v[0], &x[1]),
            // A mean of squares of unit-norm maps' differences: values ~1e-2.
            parity: (
                Tol {
                    atol: 1e-7,
                    rtol: 1e-4,
                },
                Tol {
                    atol: 1e-7,
                    rtol: 1e-4,
                },
            ),
            goldens: &[Golden {
                case: "attention",
                inputs: &["fs", "ft"],
                dy: None,
                y: "loss",
                grads: &[Some("dfs"), None],
                tol: (
                    Tol {
                        atol: 1e-7,
                        rtol: 1e-5,
                    },
                    Tol {
                        atol: 1e-7,
                        rtol: 1e-4,
                    },
                ),
            }],
        },
        Op {
            name: "jsd",
            shapes: &[&[3, 6], &[3, 6], &[3, 6]],
            draw: no_change,
            kinks: no_change,
            forward: |d, x| loss::jsd(d, [&x[0], &x[1], &x[2]]),
            backward: |d, x, dy| {
                let dz = loss::jsd_backward(d, [&x[0], &x[1], &x[2]], item(dy))?;
                Ok(dz.into_iter().map(Some).collect())
            },
            forward_f64: |x, s| vec![loss::cpu::jsd([&x[0][..], &x[1], &x[2]], s[0][1])],
            backward_f64: |x, s, dy| {
                let mut d = [
                    vec![0.0; x[0].len()],
                    vec![0.0; x[0].len()],
                    vec![0.0; x[0].len()],
                ];
                let [d0, d1, d2] = &mut d;
                loss::cpu::jsd_backward([&x[0][..], &x[1], &x[2]], s[0][1], dy[0], [d0, d1, d2]);
                d.into_iter().map(Some).collect()
            },
            params: 0,
            graph: |g, v, _, _| g.jsd(v[0], v[1], v[2]),
            parity: (
                Tol {
                    atol: 1e-7,
                    rtol: 1e-5,
                },
                Tol {
                    atol: 1e-7,
                    rtol: 1e-4,
                },
            ),
            // The clamped entry of the fixture (row 0, class 3) is checked in golden.rs.
            goldens: &[Golden {
                case: "jsd",
                inputs: &["zc", "z1", "z2"],
                dy: None,
                y: "loss",
                grads: &[Some("dzc"), Some("dz1"), Some("dz2")],
                tol: (
                    Tol {
                        atol: 1e-6,
                        rtol: 1e-5,
                    },
                    Tol {
                        atol: 1e-7,
                        rtol: 1e-4,
                    },
                ),
            }],
        },
        Op {
            name: "soft_relu",
            shapes: &[&[3, 4, 5, 7], &[4, 5, 7]],
            draw: |i, v| match i {
                // z away from the kink at 0, farther than finite differences step.
                0 => v
                    .iter_mut()
                    .for_each(|x| *x = x.signum() * (x.abs() + 0.05)),
                // α over [-1, 2]: negative, inside (0, 1) and above 1 (SNL does not clamp it).
                _ => v.iter_mut().for_each(|a| *a += 0.5),
            },
            // Every 7th z exactly 0 (relu'(0) = 0); α exactly 0 and 1 once each.
            kinks: |i, v| match i {
                0 => v.iter_mut().step_by(7).for_each(|x| *x = 0.0),
                _ => v[..2].copy_from_slice(&[0.0, 1.0]),
            },
            forward: |d, x| soft_relu::forward(d, &x[0], &x[1]),
            backward: |d, x, dy| {
                Ok(vec![
                    Some(soft_relu::backward_input(d, &x[0], &x[1], dy)?),
                    Some(soft_relu::backward_alpha(d, &x[0], x[1].shape(), dy)?),
                ])
            },
            forward_f64: |x, _| {
                let mut y = vec![0.0; x[0].len()];
                soft_relu::cpu::forward(&x[0], &x[1], &mut y);
                y
            },
            backward_f64: |x, _, dy| {
                let (mut dz, mut da) = (vec![0.0; x[0].len()], vec![0.0; x[1].len()]);
                soft_relu::cpu::backward_input(&x[0], &x[1], dy, &mut dz);
                soft_relu::cpu::backward_alpha(&x[0], dy, &mut da);
                vec![Some(dz), Some(da)]
            },
            params: 0,
            graph: |g, v, _, _| g.soft_relu(v[0], v[1]),
            parity: (EXACT, EXACT),
            goldens: &[Golden {
                case: "soft_relu",
                inputs: &["z", "alpha"],
                dy: Some("dy"),
                y: "y",
                grads: &[Some("dz"), Some("dalpha")],
                // One rounding per value in f32 against float64; dα sums 4 products.
                tol: (
                    Tol {
                        atol: 1e-7,
                        rtol: 1e-6,
                    },
                    Tol {
                        atol: 1e-6,
                        rtol: 1e-6,
                    },
                ),
            }],
        },
        Op {
            name: "avg_pool",
            shapes: &[&[2, 3, 5, 7]],
            draw: no_change,
            kinks: no_change,
            forward: |d, x| pool::forward(d, &x[0]),
            backward: |d, x, dy| Ok(vec![Some(pool::backward(d, dy, x[0].shape())?)]),
            forward_f64: |x, s| {
                let (planes, hw) = (s[0][0] * s[0][1], s[0][2] * s[0][3]);
                let mut y = vec![0.0; planes];
                pool::cpu::forward(&x[0], planes, hw, &mut y);
                y
            },
            backward_f64: |_, s, dy| {
                let (planes, hw) = (s[0][0] * s[0][1], s[0][2] * s[0][3]);
                let mut dx = vec![0.0; planes * hw];
                pool::cpu::backward(dy, planes, hw, &mut dx);
                vec![Some(dx)]
            },
            params: 0,
            graph: |g, v, _, _| g.avg_pool(v[0]),
            parity: (EXACT, EXACT),
            goldens: &[],
        },
        Op {
            name: "channel_affine",
            shapes: &[&[2, 3, 4, 6]],
            draw: no_change,
            kinks: no_change,
            forward: |d, x| elementwise::channel_affine(d, &x[0], &AFFINE.0, &AFFINE.1),
            backward: |d, _, dy| {
                Ok(vec![Some(elementwise::channel_affine_backward(
                    d, dy, &AFFINE.0,
                )?)])
            },
            forward_f64: |x, s| {
                let (scale, shift) = affine_f64();
                let mut y = vec![0.0; x[0].len()];
                elementwise::cpu::channel_affine(&x[0], &scale, &shift, hw(s[0]), &mut y);
                y
            },
            backward_f64: |_, s, dy| {
                let mut dx = vec![0.0; dy.len()];
                elementwise::cpu::channel_affine_backward(dy, &affine_f64().0, hw(s[0]), &mut dx);
                vec![Some(dx)]
            },
            params: 0,
            graph: |g, v, _, _| g.channel_affine(v[0], &AFFINE.0, &AFFINE.1),
            parity: (EXACT, EXACT),
            goldens: &[],
        },
        Op {
            name: "add",
            shapes: &[&[3, 2, 5, 5], &[3, 2, 5, 5]],
            draw: no_change,
            kinks: no_change,
            forward: |d, x| elementwise::add(d, &x[0], &x[1]),
            backward: |_, _, dy| Ok(vec![Some(dy.clone()), Some(dy.clone())]),
            forward_f64: |x, _| {
                let mut y = x[0].clone();
                elementwise::cpu::add_assign(&mut y, &x[1]);
                y
            },
            backward_f64: |_, _, dy| vec![Some(dy.to_vec()), Some(dy.to_vec())],
            params: 0,
            graph: |g, v, _, _| g.add(v[0], v[1]),
            parity: (EXACT, EXACT),
            goldens: &[],
        },
        Op {
            name: "scale",
            shapes: &[&[4, 3, 3, 5]],
            draw: no_change,
            kinks: no_change,
            forward: |d, x| elementwise::scale(d, &x[0], 0.3),
            backward: |d, _, dy| Ok(vec![Some(elementwise::scale(d, dy, 0.3)?)]),
            forward_f64: |x, _| x[0].iter().map(|v| v * f64::from(0.3f32)).collect(),
            backward_f64: |_, _, dy| vec![Some(dy.iter().map(|v| v * f64::from(0.3f32)).collect())],
            params: 0,
            graph: |g, v, _, _| g.scale(v[0], 0.3),
            parity: (EXACT, EXACT),
            goldens: &[],
        },
        bn_op::<true>("bn + residual + masked relu, train"),
        bn_op::<false>("bn + residual + masked relu, eval"),
    ]
}

/// The convolution of x [n, c_in, h, w] by w [c_out, c_in, k, k] with stride S and padding P.
fn conv_geom<const S: usize, const P: usize>(x: &[usize], w: &[usize]) -> ConvGeom {
    ConvGeom {
        n: x[0],
        c_in: x[1],
        h: x[2],
        w: x[3],
        c_out: w[0],
        k: w[2],
        stride: S,
        pad: P,
    }
}

fn conv_forward<const S: usize, const P: usize>(d: &Device, x: &[Tensor]) -> Result<Tensor> {
    let g = conv_geom::<S, P>(x[0].shape(), x[1].shape());
    conv::forward(d, &g, &x[0], &x[1])
}

fn conv_backward<const S: usize, const P: usize>(
    d: &Device,
    x: &[Tensor],
    dy: &Tensor,
) -> Result<InputGrads<Tensor>> {
    let g = conv_geom::<S, P>(x[0].shape(), x[1].shape());
    let dx = conv::backward_data(d, &g, &x[1], dy)?;
    Ok(vec![
        Some(dx),
        Some(conv::backward_weight(d, &g, &x[0], dy)?),
    ])
}

fn conv_forward_f64<const S: usize, const P: usize>(x: Values<'_>, s: Shapes<'_>) -> Vec<f64> {
    let g = conv_geom::<S, P>(s[0], s[1]);
    let mut y = vec![0.0; g.y_len()];
    conv::cpu::forward(&g, &x[0], &x[1], &mut y);
    y
}

fn conv_backward_f64<const S: usize, const P: usize>(
    x: Values<'_>,
    s: Shapes<'_>,
    dy: &[f64],
) -> InputGrads<Vec<f64>> {
    let g = conv_geom::<S, P>(s[0], s[1]);
    let (mut dx, mut dw) = (vec![0.0; g.x_len()], vec![0.0; g.w_len()]);
    conv::cpu::backward_data(&g, &x[1], dy, &mut dx);
    conv::cpu::backward_weight(&g, &x[0], dy, &mut dw);
    vec![Some(dx), Some(dw)]
}

/// A convolution with stride S and padding P: x [n, c_in, h, w] and the weights, a parameter.
fn conv_op<const S: usize, const P: usize>(
    name: &'static str,
    shapes: &'static [&'static [usize]],
    goldens: &'static [Golden],
) -> Op {
    Op {
        name,
        shapes,
        draw: no_change,
        kinks: no_change,
        forward: conv_forward::<S, P>,
        backward: conv_backward::<S, P>,
        forward_f64: conv_forward_f64::<S, P>,
        backward_f64: conv_backward_f64::<S, P>,
        params: 1,
        graph: |g, v, p, _| g.conv2d(v[0], p[0], S, P),
        parity: (CONV_PARITY, CONV_PARITY),
        goldens,
    }
}

/// The fused BN of a ReLU site: x [3, 5, 4, 4] and its residual, then γ, β, the running mean
/// and variance and the ReLU mask [c·hw], all five held in the graph's store. TRAIN: batch
/// statistics (whose dependence on x the backward includes), else the running ones.
fn bn_op<const TRAIN: bool>(name: &'static str) -> Op {
    Op {
        name,
        shapes: &[&[3, 5, 4, 4], &[3, 5, 4, 4], &[5], &[5], &[5], &[5], &[80]],
        draw: |i, v| match i {
            2 => v.iter_mut().for_each(|x| *x = 1.0 + 0.2 * *x),
            5 => v.iter_mut().for_each(|x| *x = 0.5 + x.abs()),
            6 => v.iter_mut().for_each(|x| *x = (*x > -0.4) as u8 as f64),
            _ => {}
        },
        kinks: no_change,
        forward: bn_forward::<TRAIN>,
        backward: bn_backward::<TRAIN>,
        forward_f64: |x, s| bn_f64::<TRAIN>(x, s, None).0,
        backward_f64: |x, s, dy| bn_f64::<TRAIN>(x, s, Some(dy)).1,
        params: 5,
        graph: |g, v, p, _| {
            let ids = BnIds {
                weight: p[0],
                bias: p[1],
                running_mean: p[2],
                running_var: p[3],
            };
            g.bn_act(v[0], ids, Some(v[1]), true, Some(p[4]), TRAIN)
        },
        parity: BN_PARITY,
        // Its PyTorch fixtures (with the running-statistics update) are golden.rs's.
        goldens: &[],
    }
}

/// The device's channel sums run in another order than the CPU's (gpu_parity.rs: the same).
const BN_PARITY: (Tol, Tol) = (
    Tol {
        atol: 1e-5,
        rtol: 1e-5,
    },
    Tol {
        atol: 1e-5,
        rtol: 1e-4,
    },
);

fn bn_geom(shape: &[usize]) -> BnGeom {
    BnGeom {
        n: shape[0],
        c: shape[1],
        hw: shape[2..].iter().product(),
    }
}

/// The statistics BN normalises with on `d`: the batch's (TRAIN) or the running ones.
fn bn_stats<const TRAIN: bool>(d: &Device, g: &BnGeom, x: &[Tensor]) -> Result<[Tensor; 2]> {
    Ok(match TRAIN {
        true => {
            let [mean, invstd, _] = bn_act::batch_stats(d, g, &x[0], BN_EPS)?;
            [mean, invstd]
        }
        false => [x[4].clone(), bn_act::eval_invstd(d, &x[5], BN_EPS)?],
    })
}

fn bn_inputs<'a>(x: &'a [Tensor], st: &'a [Tensor; 2]) -> BnInputs<'a> {
    BnInputs {
        mean: &st[0],
        invstd: &st[1],
        gamma: &x[2],
        beta: &x[3],
        mask: Some(&x[6]),
        relu: true,
    }
}

fn bn_forward<const TRAIN: bool>(d: &Device, x: &[Tensor]) -> Result<Tensor> {
    let g = bn_geom(x[0].shape());
    let st = bn_stats::<TRAIN>(d, &g, x)?;
    bn_act::forward(d, &g, &x[0], Some(&x[1]), &bn_inputs(x, &st))
}

fn bn_backward<const TRAIN: bool>(
    d: &Device,
    x: &[Tensor],
    dy: &Tensor,
) -> Result<InputGrads<Tensor>> {
    let g = bn_geom(x[0].shape());
    let st = bn_stats::<TRAIN>(d, &g, x)?;
    let p = bn_inputs(x, &st);
    let y = bn_act::forward(d, &g, &x[0], Some(&x[1]), &p)?;
    let (dx, dgamma, dbeta, dr) =
        bn_act::backward(d, &g, &x[0], (&y, true), dy, &p, TRAIN, [true; 4])?;
    Ok(vec![dx, dr, dgamma, dbeta, None, None, None])
}

/// The op in f64: its output, and with `dy` its input gradients.
fn bn_f64<const TRAIN: bool>(
    x: Values<'_>,
    s: Shapes<'_>,
    dy: Option<&[f64]>,
) -> (Vec<f64>, InputGrads<Vec<f64>>) {
    let g = bn_geom(s[0]);
    let (mean, invstd) = match TRAIN {
        true => {
            let st = bn_act::cpu::batch_stats(&g, &x[0], BN_EPS);
            (st.mean, st.invstd)
        }
        false => (x[4].clone(), bn_act::cpu::eval_invstd(&x[5], BN_EPS)),
    };
    let act = || Activation {
        relu: true,
        mask: Some(&x[6][..]),
    };
    let mut y = vec![0.0; g.len()];
    let (gamma, beta) = (&x[2], &x[3]);
    bn_act::cpu::forward(
        &g,
        &x[0],
        &mean,
        &invstd,
        gamma,
        beta,
        Some(&x[1]),
        act(),
        &mut y,
    );
    let Some(dy) = dy else {
        return (y, Vec::new());
    };
    let (mut dx, mut dr) = (vec![0.0; g.len()], vec![0.0; g.len()]);
    let (mut dgamma, mut dbeta) = (vec![0.0; g.c], vec![0.0; g.c]);
    let grads = BnGrads {
        dx: Some(&mut dx),
        dgamma: Some(&mut dgamma),
        dbeta: Some(&mut dbeta),
        dr: Some(&mut dr),
    };
    bn_act::cpu::backward(
        &g,
        &x[0],
        &y,
        &mean,
        &invstd,
        gamma,
        act(),
        TRAIN,
        dy,
        grads,
    );
    let grads = vec![
        Some(dx),
        Some(dr),
        Some(dgamma),
        Some(dbeta),
        None,
        None,
        None,
    ];
    (y, grads)
}

/// The f32 SIMT kernels sum in another order than the CPU: relative to values of ~10.
const CONV_PARITY: Tol = Tol {
    atol: 1e-3,
    rtol: 1e-4,
};

/// A PyTorch conv case: f32 sums of at most 36 products of O(1) values (dw's of at most
/// 162), 1e-5 absolute is ample.
const fn conv_golden(case: &'static str) -> Golden {
    Golden {
        case,
        inputs: &["x", "w"],
        dy: Some("dy"),
        y: "y",
        grads: &[Some("dx"), Some("dw")],
        tol: (
            Tol {
                atol: 1e-5,
                rtol: 1e-5,
            },
            Tol {
                atol: 1e-5,
                rtol: 1e-5,
            },
        ),
    }
}

fn linear_shape(x: &[usize], w: &[usize]) -> LinearShape {
    LinearShape {
        n: x[0],
        inp: x[1],
        out: w[0],
    }
}

/// Input 1 holds class labels 0..10 (as f32 values; it gets no gradient).
fn labels_in_input_1(i: usize, v: &mut [f64]) {
    if i == 1 {
        v.iter_mut()
            .for_each(|x| *x = ((x.abs() * 3.7).floor() % 10.0).max(0.0));
    }
}

fn labels(t: &Tensor) -> Vec<u32> {
    host(t).iter().map(|&v| v as u32).collect()
}

/// A scalar upstream gradient on any device.
fn item(t: &Tensor) -> f32 {
    host(t)[0]
}

/// Softmax cross-entropy of logits [6, 10] (the mean, or with SUM the sum): input 1 holds the
/// labels.
fn ce_op<const SUM: bool>(name: &'static str, goldens: &'static [Golden]) -> Op {
    Op {
        name,
        shapes: &[&[6, 10], &[6]],
        draw: labels_in_input_1,
        kinks: no_change,
        forward: ce_forward::<SUM>,
        backward: ce_backward::<SUM>,
        forward_f64: ce_forward_f64::<SUM>,
        backward_f64: ce_backward_f64::<SUM>,
        params: 0,
        graph: |g, v, _, x| g.cross_entropy(v[0], &labels(&x[1]), SUM),
        parity: LOSS_PARITY,
        goldens,
    }
}

fn ce_forward<const SUM: bool>(d: &Device, x: &[Tensor]) -> Result<Tensor> {
    let labels = Labels::on(d, &labels(&x[1]))?;
    Ok(loss::cross_entropy(d, &x[0], &labels, SUM)?.0)
}

fn ce_backward<const SUM: bool>(
    d: &Device,
    x: &[Tensor],
    dy: &Tensor,
) -> Result<InputGrads<Tensor>> {
    let labels = Labels::on(d, &labels(&x[1]))?;
    let (_, probs) = loss::cross_entropy(d, &x[0], &labels, SUM)?;
    let dz = loss::cross_entropy_backward(d, &probs, &labels, SUM, item(dy))?;
    Ok(vec![Some(dz), None])
}

fn f64_labels(v: &[f64]) -> Vec<u32> {
    v.iter().map(|&x| x as u32).collect()
}

fn ce_forward_f64<const SUM: bool>(x: Values<'_>, s: Shapes<'_>) -> Vec<f64> {
    vec![loss::cpu::cross_entropy(&x[0], &f64_labels(&x[1]), s[0][1], SUM).0]
}

fn ce_backward_f64<const SUM: bool>(
    x: Values<'_>,
    s: Shapes<'_>,
    dy: &[f64],
) -> InputGrads<Vec<f64>> {
    let (k, labels) = (s[0][1], f64_labels(&x[1]));
    let (_, probs) = loss::cpu::cross_entropy(&x[0], &labels, k, SUM);
    let mut dz = vec![0.0; x[0].len()];
    loss::cpu::cross_entropy_backward(&probs, &labels, k, SUM, dy[0], &mut dz);
    vec![Some(dz), None]
}

const fn ce_golden(loss: &'static str, grads: &'static [Option<&'static str>]) -> Golden {
    Golden {
        case: "cross_entropy",
        inputs: &["logits", "labels"],
        dy: None,
        y: loss,
        grads,
        tol: (
            Tol {
                atol: 1e-5,
                rtol: 1e-6,
            },
            Tol {
                atol: 1e-6,
                rtol: 1e-5,
            },
        ),
    }
}

/// The losses sum in f64 on the device in another order; their gradients start from the
/// device's own softmax (gpu_parity.rs checks them exact from the CPU's).
const LOSS_PARITY: (Tol, Tol) = (
    Tol {
        atol: 1e-5,
        rtol: 1e-5,
    },
    Tol {
        atol: 1e-8,
        rtol: 1e-5,
    },
);

/// Sums of 130 products in another order on the device.
const LINEAR_PARITY: Tol = Tol {
    atol: 1e-5,
    rtol: 1e-5,
};

/// The per-channel scale and shift of the channel_affine cases (3 channels).
const AFFINE: ([f32; 3], [f32; 3]) = ([2.0, -0.5, 4.0], [0.1, 0.2, -0.3]);

fn affine_f64() -> (Vec<f64>, Vec<f64>) {
    (
        AFFINE.0.iter().map(|&v| v.into()).collect(),
        AFFINE.1.iter().map(|&v| v.into()).collect(),
    )
}

/// Pixels per plane of an NCHW shape.
fn hw(shape: &[usize]) -> usize {
    shape[2..].iter().product()
}

/// The devices present: the CPU, and the CUDA device (GPU or emulator) when there is one.
fn devices() -> Vec<Device> {
    let mut out = vec![Device::Cpu];
    out.extend(common::gpu().map(Device::Cuda));
    out
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// An op's random inputs (its draws applied, and its kinks with `kinks`) and an upstream
/// gradient for its output, in f64.
fn random_case(op: &Op, seed: u64, kinks: bool) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut s = Stream::new(seed, 99);
    let inputs: Vec<Vec<f64>> = op
        .shapes
        .iter()
        .enumerate()
        .map(|(i, shape)| {
            let mut v: Vec<f64> = (0..numel(shape)).map(|_| s.normal()).collect();
            (op.draw)(i, &mut v);
            if kinks {
                (op.kinks)(i, &mut v);
            }
            v
        })
        .collect();
    let y = (op.forward_f64)(&inputs, op.shapes);
    let dy = (0..y.len()).map(|_| s.normal()).collect();
    (inputs, dy)
}

fn tensor(shape: &[usize], v: &[f64], dev: &Device) -> Tensor {
    let t = Tensor::from_vec(shape, v.iter().map(|&x| x as f32).collect()).unwrap();
    t.into_device(dev).unwrap()
}

fn host(t: &Tensor) -> Vec<f32> {
    t.to_host().unwrap().into_vec()
}

#[test]
fn every_op_matches_pytorch() {
    for op in ops() {
        for gold in op.goldens {
            let c = gold.case;
            let inputs: Vec<Tensor> = gold
                .inputs
                .iter()
                .map(|name| {
                    let (shape, _) = npy(&fixture_dir(c).join(format!("{name}.npy")));
                    Tensor::from_vec(&shape, load_f32(c, name)).unwrap()
                })
                .collect();
            let dy = match gold.dy {
                Some(name) => {
                    let shape = npy(&fixture_dir(c).join(format!("{name}.npy"))).0;
                    Tensor::from_vec(&shape, load_f32(c, name)).unwrap()
                }
                None => Tensor::scalar(1.0),
            };
            let (fwd, bwd) = gold.tol;
            let y = (op.forward)(&Device::Cpu, &inputs).unwrap();
            let want = common::load(c, gold.y);
            assert_close(
                &format!("{} y", op.name),
                y.data(),
                &want,
                fwd.atol,
                fwd.rtol,
            );
            let grads = (op.backward)(&Device::Cpu, &inputs, &dy).unwrap();
            for (g, name) in grads.iter().zip(gold.grads) {
                if let (Some(g), Some(name)) = (g, name) {
                    let want = common::load(c, name);
                    let label = format!("{} {name}", op.name);
                    assert_close(&label, g.data(), &want, bwd.atol, bwd.rtol);
                }
            }
        }
    }
}

/// Central finite differences of <dy, f(x)>, with respect to input `i`.
fn numeric(op: &Op, inputs: &[Vec<f64>], i: usize, dy: &[f64]) -> Vec<f64> {
    const H: f64 = 1e-6;
    let mut x = inputs.to_vec();
    let dot = |x: &[Vec<f64>]| -> f64 {
        let y = (op.forward_f64)(x, op.shapes);
        y.iter().zip(dy).map(|(a, b)| a * b).sum()
    };
    (0..inputs[i].len())
        .map(|j| {
            let v = x[i][j];
            x[i][j] = v + H;
            let up = dot(&x);
            x[i][j] = v - H;
            let down = dot(&x);
            x[i][j] = v;
            (up - down) / (2.0 * H)
        })
        .collect()
}

#[test]
fn every_backward_matches_finite_differences() {
    for op in ops() {
        let (inputs, dy) = random_case(&op, 51, false);
        let grads = (op.backward_f64)(&inputs, op.shapes, &dy);
        for (i, g) in grads.iter().enumerate() {
            if let Some(g) = g {
                // Central differences in f64 agree with exact gradients to ~1e-8 relative on
                // smooth functions.
                let label = format!("{} d(input {i})", op.name);
                assert_close(&label, g, &numeric(&op, &inputs, i, &dy), 1e-6, 1e-5);
            }
        }
    }
}

#[test]
fn every_op_matches_the_cpu_on_every_device_and_in_the_graph() {
    for op in ops() {
        let (inputs, dy) = random_case(&op, 30, true);
        let on = |dev: &Device| -> Vec<Tensor> {
            let shapes = op.shapes.iter().zip(&inputs);
            shapes.map(|(s, v)| tensor(s, v, dev)).collect()
        };
        let cpu_x = on(&Device::Cpu);
        let cpu_y = (op.forward)(&Device::Cpu, &cpu_x).unwrap();
        let cpu_dy = tensor(cpu_y.shape(), &dy, &Device::Cpu);
        let cpu_grads = (op.backward)(&Device::Cpu, &cpu_x, &cpu_dy).unwrap();
        for dev in devices() {
            let (tol, btol) = if dev.gpu().is_some() {
                op.parity
            } else {
                (EXACT, EXACT)
            };
            let name = format!("{} on {}", op.name, dev.name());
            let xs = on(&dev);
            let y = (op.forward)(&dev, &xs).unwrap();
            assert_close(
                &format!("{name}: y"),
                &host(&y),
                cpu_y.data(),
                tol.atol,
                tol.rtol,
            );
            let dyd = tensor(y.shape(), &dy, &dev);
            let grads = (op.backward)(&dev, &xs, &dyd).unwrap();
            for (i, (g, want)) in grads.iter().zip(&cpu_grads).enumerate() {
                if let (Some(g), Some(want)) = (g, want) {
                    let label = format!("{name}: d(input {i})");
                    assert_close(&label, &host(g), want.data(), btol.atol, btol.rtol);
                }
            }

            // The graph method: its value and its input gradients are the op's own, exactly.
            let split = xs.len() - op.params;
            let mut store = ParamStore::new();
            let ids: Vec<EntryId> = xs[split..]
                .iter()
                .enumerate()
                .map(|(i, x)| store.add(&format!("p{i}"), EntryKind::Param, x.to_host().unwrap()))
                .collect();
            store.to_device(&dev).unwrap();
            let mut g = Graph::new(&store, GradMode::All);
            let vars: Vec<Var> = xs[..split]
                .iter()
                .map(|x| g.input(x.clone(), true))
                .collect();
            let out = (op.graph)(&mut g, &vars, &ids, &xs);
            assert_close(
                &format!("{name}: graph y"),
                &host(g.value(out)),
                &host(&y),
                0.0,
                0.0,
            );
            let got = g.backward_from(out, dyd.clone());
            for (i, want) in grads.iter().enumerate() {
                let Some(want) = want else { continue };
                let label = format!("{name}: graph d(input {i})");
                let have = match i < split {
                    true => got.input(vars[i]),
                    false => got.param(ids[i - split]),
                };
                let have = have.unwrap_or_else(|| panic!("{label}: no gradient"));
                assert_close(&label, &host(have), &host(want), 0.0, 0.0);
            }
        }
    }
}
