//! The L∞ PGD adversary (spec §3): one uniform random start, K signed-gradient steps,
//! projection onto the eps-ball then onto [0,1]. The model runs in eval mode with the BN set of
//! the domain under attack, and the graph asks for input gradients only.

use crate::autograd::{GradMode, Graph};
use crate::device::ok;
use crate::nn::{Domain, Model, Pass};
use crate::ops::loss::Labels;
use crate::ops::pgd as pgd_ops;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PgdConfig {
    pub eps: f32,
    pub alpha: f32,
    pub steps: usize,
}

impl PgdConfig {
    /// ε = 8/255, α = 2/255, K steps (7 in training, 20 for the final test).
    pub fn linf(steps: usize) -> Self {
        PgdConfig {
            eps: 8.0 / 255.0,
            alpha: 2.0 / 255.0,
            steps,
        }
    }
}

/// What the attack maximises.
pub enum AttackLoss<'a> {
    /// Cross-entropy summed over the batch (teacher training and every evaluation).
    CrossEntropySum,
    /// RSLAD: KL_T(model(x_adv) ‖ target logits) (student training, stage 2 and 3).
    Kl { target: &'a Tensor, temp: f64 },
}

/// One attack's settings: the PGD parameters, the BN set under attack, the objective, and the
/// seed of the random starts.
pub struct Attack<'a> {
    pub pgd: &'a PgdConfig,
    pub domain: Domain,
    pub loss: AttackLoss<'a>,
    pub seed: u64,
}

/// Adversarial examples (on the model's device) for raw [0,1] images `x` with labels. `key` makes the random start of
/// this call distinct from every other call of the run.
pub fn attack(model: &Model, x: &Tensor, labels: &[u32], a: &Attack<'_>, key: u64) -> Tensor {
    let cfg = a.pgd;
    let device = model.store.device();
    let x0 = ok(x.to_device(device));
    let mut adv = x0.clone();
    if cfg.steps == 0 {
        return adv;
    }
    ok(pgd_ops::random_start(
        device, &x0, cfg.eps, a.seed, key, &mut adv,
    ));
    let pass = Pass {
        domain: a.domain,
        train: false,
    };
    // Uploaded once for the K steps.
    let labels = ok(Labels::on(device, labels));
    for _ in 0..cfg.steps {
        let mut g = Graph::new(&model.store, GradMode::InputsOnly);
        let xv = g.input(adv.clone(), true);
        let out = model.forward(&mut g, xv, pass);
        let l = match &a.loss {
            AttackLoss::CrossEntropySum => g.cross_entropy_of(out.logits, &labels, true),
            AttackLoss::Kl { target, temp } => g.kl_div(out.logits, target, *temp),
        };
        let grads = g.backward(l);
        let gx = grads
            .input(xv)
            .expect("the attacked input carries a gradient");
        ok(pgd_ops::step(device, &mut adv, &x0, gx, cfg.alpha, cfg.eps));
    }
    adv
}
