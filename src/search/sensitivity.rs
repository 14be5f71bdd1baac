//! SENet-style ReLU sensitivity from pruning sensitivity (baselines.md §3.1, rlnet-spec §5.2).
//!
//! SENet observes that a layer's ReLU sensitivity is inversely related to its pruning
//! sensitivity: layers that keep many of their weights under global magnitude pruning (early,
//! small convs) need few ReLUs. The reference ships only the resulting lists; this module
//! derives them for any model and budget, on the host, from a trained teacher:
//!
//! 1. one-shot global magnitude pruning of every conv weight of the model to a density D:
//!    exactly K = ⌈D·N⌉ of the N conv weights survive (the K largest |w|; among equal
//!    magnitudes the earlier conv in the store, then the lower flat index, survives);
//! 2. d_l = the surviving fraction of the conv that feeds ReLU site l ([`ReluLayer::source_conv`]);
//! 3. s_l = 1 − d_l, floored at [`FLOOR`] of the largest s so no layer is starved to 0 ReLUs.
//!
//! The per-layer counts are then [`super::allocate`] of the budget with weights s_l.
//!
//! [`ReluLayer::source_conv`]: crate::nn::ReluLayer::source_conv

use crate::autograd::{EntryId, EntryKind};
use crate::error::{Error, Result};
use crate::nn::Model;
use crate::tensor::Tensor;

/// SENet-style default global density: keep 10% of the conv weights.
pub const DEFAULT_DENSITY: f64 = 0.1;

/// The smallest sensitivity, as a fraction of the largest: a layer that keeps all its weights
/// still gets a few ReLUs.
pub const FLOOR: f64 = 0.01;

/// Per-layer weight densities d_l and sensitivities s_l of a model's ReLU sites.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensitivity {
    /// The global density the conv weights were pruned to.
    pub density: f64,
    /// Conv weights kept by the global threshold, ⌈density·total⌉.
    pub kept: usize,
    /// All conv weights of the model.
    pub total: usize,
    /// d_l: the kept fraction of the conv feeding site l.
    pub densities: Vec<f64>,
    /// s_l = max(1 − d_l, FLOOR·max(1 − d)); all 1 when every feeding conv is fully kept.
    pub weights: Vec<f64>,
}

/// Checks a global density: a finite number strictly between 0 and 1.
pub fn check_density(density: f64) -> Result<()> {
    if density.is_finite() && density > 0.0 && density < 1.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "pruning density {density}: expected a number strictly between 0 and 1 (e.g. 0.1)"
        )))
    }
}

/// The conv weights of a model (every 4-d trainable tensor), in store order.
pub fn conv_ids(model: &Model) -> Vec<EntryId> {
    model
        .store
        .ids_of(EntryKind::Param)
        .into_iter()
        .filter(|&id| model.store.get(id).shape().len() == 4)
        .collect()
}

/// How many weights of each tensor survive one-shot global magnitude pruning to `density`:
/// exactly ⌈density·N⌉ of the N weights in all, the largest magnitudes, ties kept in tensor
/// order then flat-index order. Errors on a non-finite weight or a bad density.
pub fn global_prune_counts(tensors: &[&Tensor], density: f64) -> Result<Vec<usize>> {
    check_density(density)?;
    // |w| as IEEE bits: for finite non-negative floats the bit pattern orders like the value.
    let mut bits: Vec<Vec<u32>> = Vec::with_capacity(tensors.len());
    for t in tensors {
        let host = t.to_host()?;
        if let Some(v) = host.data().iter().find(|v| !v.is_finite()) {
            return Err(Error::Config(format!(
                "a conv weight is {v}: pruning sensitivity needs finite weights"
            )));
        }
        bits.push(host.data().iter().map(|v| v.abs().to_bits()).collect());
    }
    let total: usize = bits.iter().map(Vec::len).sum();
    if total == 0 {
        return Err(Error::Config(
            "the model has no conv weights to prune".into(),
        ));
    }
    let keep = ((density * total as f64).ceil() as usize).clamp(1, total);
    // The keep-th largest magnitude is the threshold t.
    let mut all: Vec<u32> = bits.iter().flatten().copied().collect();
    let (_, &mut t, _) = all.select_nth_unstable_by(keep - 1, |a, b| b.cmp(a));
    drop(all);
    let mut counts: Vec<usize> = bits
        .iter()
        .map(|b| b.iter().filter(|&&v| v > t).count())
        .collect();
    // Weights exactly at t fill the rest, first come first kept.
    let mut left = keep - counts.iter().sum::<usize>();
    for (b, c) in bits.iter().zip(&mut counts) {
        let ties = b.iter().filter(|&&v| v == t).count().min(left);
        *c += ties;
        left -= ties;
    }
    debug_assert_eq!(
        left, 0,
        "t is the keep-th largest, so enough weights equal it"
    );
    Ok(counts)
}

/// The sensitivity of every ReLU site of `model` (normally the trained teacher) at the global
/// pruning `density`.
pub fn sensitivity(model: &Model, density: f64) -> Result<Sensitivity> {
    let ids = conv_ids(model);
    let tensors: Vec<&Tensor> = ids.iter().map(|&id| model.store.get(id)).collect();
    let counts = global_prune_counts(&tensors, density)?;
    let densities = model
        .relu_layers
        .iter()
        .map(|l| {
            let i = ids
                .iter()
                .position(|&id| id == l.source_conv)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "ReLU site {}: its source conv is not a conv weight of the model",
                        l.name
                    ))
                })?;
            Ok(counts[i] as f64 / tensors[i].numel() as f64)
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(Sensitivity {
        density,
        kept: counts.iter().sum(),
        total: tensors.iter().map(|t| t.numel()).sum(),
        weights: floored_weights(&densities),
        densities,
    })
}

/// s_l = 1 − d_l floored at [`FLOOR`] of the largest; equal weights when every d_l is 1 (the
/// pruning then says nothing about the sites).
pub fn floored_weights(densities: &[f64]) -> Vec<f64> {
    let s: Vec<f64> = densities.iter().map(|d| 1.0 - d).collect();
    let max = s.iter().copied().fold(0.0, f64::max);
    if max <= 0.0 {
        return vec![1.0; s.len()];
    }
    s.iter().map(|&v| v.max(FLOOR * max)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
    }

    #[test]
    fn keeps_exactly_the_ceiling_with_ties_in_order() {
        let a = t(&[1.0, -3.0, 2.0, 2.0]);
        let b = t(&[-2.0, 0.5, 4.0, 2.0]);
        // 8 weights at 0.5 keep 4: 4, -3, then two of the four 2s: a's two.
        assert_eq!(global_prune_counts(&[&a, &b], 0.5).unwrap(), vec![3, 1]);
        // ⌈0.3·8⌉ = 3: 4, -3 and the first 2.
        assert_eq!(global_prune_counts(&[&a, &b], 0.3).unwrap(), vec![2, 1]);
        // ⌈0.01·8⌉ = 1.
        assert_eq!(global_prune_counts(&[&a, &b], 0.01).unwrap(), vec![0, 1]);
        assert_eq!(global_prune_counts(&[&a, &b], 0.99).unwrap(), vec![4, 4]);
        for bad in [0.0, 1.0, -0.1, f64::NAN, 2.0] {
            assert!(global_prune_counts(&[&a], bad).is_err(), "{bad}");
        }
        assert!(global_prune_counts(&[&t(&[1.0, f32::NAN])], 0.5).is_err());
    }

    #[test]
    fn weights_are_floored() {
        assert_eq!(floored_weights(&[1.0, 0.5, 0.0]), vec![0.01, 0.5, 1.0]);
        assert_eq!(floored_weights(&[1.0, 1.0]), vec![1.0, 1.0]);
    }
}
