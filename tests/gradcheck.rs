//! Layer 2 of the op tests: the backward rules of the ops outside tests/op_table.rs (which
//! checks its entries the same way) against central finite differences, in f64.
//! For a random upstream gradient dy, d<dy, f(x)>/dx_i is estimated as
//! (<dy, f(x + h e_i)> − <dy, f(x − h e_i)>) / 2h and compared with the analytic gradient.

mod common;

use common::assert_close;
use rlnet::ops::bn_act::{self, Activation, BnGeom, BnGrads, BN_EPS};
use rlnet::ops::conv::{self, ConvGeom};
use rlnet::rng::Stream;

const H: f64 = 1e-6;

fn randn(n: usize, seed: u64) -> Vec<f64> {
    let mut s = Stream::new(seed, 99);
    (0..n).map(|_| s.normal()).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Numerical gradient of the scalar `f` at `x`.
fn numeric(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let v = xp[i];
            xp[i] = v + H;
            let up = f(&xp);
            xp[i] = v - H;
            let down = f(&xp);
            xp[i] = v;
            (up - down) / (2.0 * H)
        })
        .collect()
}

/// Central differences in f64 agree with exact gradients to ~1e-8 relative on smooth functions.
fn check(name: &str, analytic: &[f64], num: &[f64]) {
    assert_close(name, analytic, num, 1e-6, 1e-5);
}

/// The im2col path against the direct seven-loop oracle (the table checks the gradients).
#[test]
fn conv_im2col_matches_the_naive_loops() {
    for (i, &(n, c_in, h, w, c_out, k, stride, pad)) in [
        (2, 3, 5, 5, 4, 3, 1, 1),
        (2, 2, 7, 6, 3, 3, 2, 1),
        (3, 4, 6, 6, 5, 1, 2, 0),
        (2, 3, 4, 4, 2, 1, 1, 0),
    ]
    .iter()
    .enumerate()
    {
        let g = ConvGeom {
            n,
            c_in,
            h,
            w,
            c_out,
            k,
            stride,
            pad,
        };
        let x = randn(g.x_len(), 1 + i as u64);
        let wt = randn(g.w_len(), 11 + i as u64);
        let (mut y1, mut y2) = (vec![0.0; g.y_len()], vec![0.0; g.y_len()]);
        conv::cpu::forward(&g, &x, &wt, &mut y1);
        conv::cpu::forward_naive(&g, &x, &wt, &mut y2);
        assert_close("conv vs naive", &y1, &y2, 1e-12, 1e-12);
    }
}

/// The fused BN op as a function of (x, gamma, beta, r), for one configuration.
struct BnCase {
    g: BnGeom,
    train: bool,
    relu: bool,
    mask: Option<Vec<f64>>,
    residual: bool,
    running_mean: Vec<f64>,
    running_var: Vec<f64>,
}

impl BnCase {
    fn stats(&self, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
        if self.train {
            let s = bn_act::cpu::batch_stats(&self.g, x, BN_EPS);
            (s.mean, s.invstd)
        } else {
            (
                self.running_mean.clone(),
                bn_act::cpu::eval_invstd(&self.running_var, BN_EPS),
            )
        }
    }

    fn forward(&self, x: &[f64], gamma: &[f64], beta: &[f64], r: &[f64]) -> Vec<f64> {
        let (mean, invstd) = self.stats(x);
        let act = Activation {
            relu: self.relu,
            mask: self.mask.as_deref(),
        };
        let mut y = vec![0.0; self.g.len()];
        let res = self.residual.then_some(r);
        bn_act::cpu::forward(&self.g, x, &mean, &invstd, gamma, beta, res, act, &mut y);
        y
    }
}

#[test]
fn bn_act_gradients() {
    let g = BnGeom { n: 3, c: 2, hw: 6 };
    let mask: Vec<f64> = (0..g.c * g.hw)
        .map(|i| ((i * 7) % 3 != 0) as u8 as f64)
        .collect();
    let configs = [
        (true, true, Some(mask.clone()), false),
        (true, true, None, true),
        (true, false, None, false),
        (true, true, Some(mask.clone()), true),
        (false, true, Some(mask.clone()), false),
        (false, false, None, true),
    ];
    for (ci, (train, relu, m, residual)) in configs.into_iter().enumerate() {
        let case = BnCase {
            g,
            train,
            relu,
            mask: m,
            residual,
            running_mean: randn(g.c, 5).iter().map(|v| 0.1 * v).collect(),
            running_var: vec![0.7, 1.3],
        };
        let s = 100 + 10 * ci as u64;
        let x = randn(g.len(), s);
        let gamma: Vec<f64> = randn(g.c, s + 1).iter().map(|v| 1.0 + 0.3 * v).collect();
        let beta = randn(g.c, s + 2);
        let r = randn(g.len(), s + 3);
        let dy = randn(g.len(), s + 4);
        let (mean, invstd) = case.stats(&x);
        let y = case.forward(&x, &gamma, &beta, &r);
        let (mut dx, mut dgamma, mut dbeta, mut dr) = (
            vec![0.0; g.len()],
            vec![0.0; g.c],
            vec![0.0; g.c],
            vec![0.0; g.len()],
        );
        let act = Activation {
            relu: case.relu,
            mask: case.mask.as_deref(),
        };
        let grads = BnGrads {
            dx: Some(&mut dx),
            dgamma: Some(&mut dgamma),
            dbeta: Some(&mut dbeta),
            dr: residual.then_some(&mut dr[..]),
        };
        bn_act::cpu::backward(&g, &x, &y, &mean, &invstd, &gamma, act, train, &dy, grads);
        let label = format!(
            "bn_act train={train} relu={relu} mask={} residual={residual}",
            case.mask.is_some()
        );
        check(
            &format!("{label} dx"),
            &dx,
            &numeric(&x, |x| dot(&case.forward(x, &gamma, &beta, &r), &dy)),
        );
        check(
            &format!("{label} dgamma"),
            &dgamma,
            &numeric(&gamma, |p| dot(&case.forward(&x, p, &beta, &r), &dy)),
        );
        check(
            &format!("{label} dbeta"),
            &dbeta,
            &numeric(&beta, |p| dot(&case.forward(&x, &gamma, p, &r), &dy)),
        );
        if residual {
            check(
                &format!("{label} dr"),
                &dr,
                &numeric(&r, |r| dot(&case.forward(&x, &gamma, &beta, r), &dy)),
            );
        }
    }
}
