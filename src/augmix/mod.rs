//! AugMix (Hendrycks et al. 2020; google-research/augmix `augment_and_mix`, corruptions-spec.md
//! §7, rlnet-spec.md §1.2-1.3): `width` chains of 1-3 random Pillow ops applied to an 8-bit
//! image, mixed with Dirichlet weights, then mixed with the image by a Beta weight m:
//!
//!   out = (1 − m)·x/255 + m·Σᵢ wᵢ·chainᵢ(x)/255,   in [0, 1], not normalised (the model
//!   normalises as its first layer; normalising is affine and the weights sum to 1, so this is
//!   the reference's output before its Normalize).
//!
//! Every draw is keyed by (seed, image key, draw number) ([`draws`], which documents the
//! numbering), so an image's augmentation depends on nothing else, and the CUDA kernel
//! (`kernels/augmix.cu`, launched from cuda.rs and reached through
//! [`crate::batches::GpuImages::augmix_batch`])
//! computes the same result bit for bit: the ops are integer or fixed-order IEEE arithmetic,
//! and the mix is, in f32, p(v) = v/255, acc = 0, acc = acc + wᵢ·p(chainᵢ) for i = 0, 1, …,
//! out = clamp((1 − m)·p(x) + m·acc, 0, 1). The clamp only catches f32 rounding past 1.
//!
//! The JSD consistency loss that pairs two AugMix views lives with the losses, not here.

pub mod cuda;
pub mod draws;
pub mod ops;

use crate::data::batch::{crop_flip_u8, CropFlip};
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use draws::ImageDraws;
use ops::{Op, Param};
use rayon::prelude::*;

/// AugMix's settings; `Default` is the reference's (`cifar.py`: width 3, random depth,
/// severity 3, alpha 1, the 9 default ops).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AugMixConfig {
    /// Number of chains mixed (`--mixture-width`).
    pub width: usize,
    /// Ops per chain; None draws it uniformly from 1..=3 per chain (`--mixture-depth -1`).
    pub depth: Option<usize>,
    /// Op levels are drawn from U(0.1, severity) (`--aug-severity`).
    pub severity: f64,
    /// Use all 13 ops instead of the 9 that do not overlap CIFAR-C (`--all-ops`).
    pub all_ops: bool,
    /// The Dirichlet and Beta concentration.
    pub alpha: f64,
}

impl Default for AugMixConfig {
    fn default() -> Self {
        AugMixConfig {
            width: 3,
            depth: None,
            severity: 3.0,
            all_ops: false,
            alpha: 1.0,
        }
    }
}

impl AugMixConfig {
    /// The most chains (the GPU kernel keeps their weights in shared memory).
    pub const MAX_WIDTH: usize = 32;
    /// The largest fixed depth accepted (a chain's op slots must fit its 2³² draw indices).
    pub const MAX_DEPTH: usize = 1 << 20;

    /// Checks the ranges every part of AugMix relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config(format!("augmix: {what}")));
        if !(1..=Self::MAX_WIDTH).contains(&self.width) {
            return bad(format!(
                "width {} is out of range: expected 1 to {}",
                self.width,
                Self::MAX_WIDTH
            ));
        }
        if let Some(d) = self.depth {
            if !(1..=Self::MAX_DEPTH).contains(&d) {
                return bad(format!(
                    "depth {d} is out of range: expected 1 to {} (or random)",
                    Self::MAX_DEPTH
                ));
            }
        }
        // The reference documents severities 1 to 10; 10 bounds the rotations at 29 degrees,
        // the range the GPU's rotation table covers.
        if !(self.severity >= 0.1 && self.severity <= 10.0) {
            return bad(format!(
                "severity {} is out of range: expected 0.1 to 10",
                self.severity
            ));
        }
        // Below 0.1 the Gamma draws can underflow to 0 and the weights become 0/0.
        if !(self.alpha >= 0.1 && self.alpha <= 1e6) {
            return bad(format!(
                "alpha {} is out of range: expected 0.1 to 1e6",
                self.alpha
            ));
        }
        Ok(())
    }

    /// The ops a chain picks from.
    pub fn ops(&self) -> &'static [Op] {
        if self.all_ops {
            &Op::ALL
        } else {
            &Op::DEFAULT
        }
    }
}

/// Everything AugMix drew for one image, with the ops resolved to Pillow's arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The chain weights (f32, as the reference casts them).
    pub weights: Vec<f32>,
    /// The mixing weight m.
    pub m: f32,
    /// Each chain's ops, in order of application.
    pub chains: Vec<Vec<Param>>,
}

/// The draws of image `key` for an h×w image.
pub fn plan(cfg: &AugMixConfig, seed: u64, key: u64, h: usize, w: usize) -> Plan {
    let d = ImageDraws::new(seed, key);
    let ops = cfg.ops();
    let chains = (0..cfg.width as u64)
        .map(|c| {
            (0..d.depth(c, cfg.depth) as u64)
                .map(|t| {
                    let op = ops[d.op(c, t, ops.len())];
                    op.resolve(d.level(c, t, cfg.severity), d.negate(c, t), h, w)
                })
                .collect()
        })
        .collect();
    Plan {
        weights: d.weights(cfg.width, cfg.alpha),
        m: d.mixing(cfg.width, cfg.alpha),
        chains,
    }
}

/// One 8-bit value in [0, 1], as ToTensor (and `make_batch`) computes it.
#[inline]
fn unit(v: u8) -> f32 {
    v as f32 / 255.0
}

/// Applies `plan` to the CHW RGB image `img` (3·h·w bytes): f32 [3, h, w] in [0, 1].
pub fn apply_plan(img: &[u8], h: usize, w: usize, plan: &Plan) -> Vec<f32> {
    let n = img.len();
    let mut acc = vec![0f32; n];
    let (mut cur, mut next) = (vec![0u8; n], vec![0u8; n]);
    for (chain, &wt) in plan.chains.iter().zip(&plan.weights) {
        cur.copy_from_slice(img);
        for &p in chain {
            ops::apply(p, &cur, &mut next, h, w);
            std::mem::swap(&mut cur, &mut next);
        }
        acc.iter_mut()
            .zip(&cur)
            .for_each(|(a, &v)| *a += wt * unit(v));
    }
    let keep = 1.0 - plan.m;
    acc.iter()
        .zip(img)
        .map(|(&a, &x)| (keep * unit(x) + plan.m * a).clamp(0.0, 1.0))
        .collect()
}

fn check_image(img: &[u8], h: usize, w: usize) -> Result<()> {
    if img.len() != 3 * h * w || img.is_empty() {
        return Err(Error::shape(
            "augmix",
            format!("a non-empty 3x{h}x{w} RGB image"),
            format!("{} bytes", img.len()),
        ));
    }
    Ok(())
}

/// AugMix of one CHW RGB image (3·h·w bytes) with the draws of image `key`: f32 [3, h, w].
pub fn augment_and_mix(
    img: &[u8],
    h: usize,
    w: usize,
    cfg: &AugMixConfig,
    seed: u64,
    key: u64,
) -> Result<Vec<f32>> {
    cfg.validate()?;
    check_image(img, h, w)?;
    Ok(apply_plan(img, h, w, &plan(cfg, seed, key, h, w)))
}

/// The AugMix view of a batch: f32 [b, 3, h, w], the counterpart of `data::batch::make_batch`.
/// Image j (key k = key + j) is first cropped and flipped with exactly make_batch's draws for
/// `crop` at k (when given), then augmented with the AugMix draws of (seed, k).
pub fn augmix_batch(
    set: &ImageSet,
    indices: &[usize],
    crop: Option<CropFlip>,
    key: u64,
    cfg: &AugMixConfig,
    seed: u64,
) -> Result<Tensor> {
    cfg.validate()?;
    let (h, w) = (set.height, set.width);
    if set.channels != 3 || h * w == 0 {
        return Err(Error::shape(
            "augmix batch",
            "non-empty RGB images",
            format!("{}x{h}x{w}", set.channels),
        ));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= set.len()) {
        return Err(Error::shape(
            "augmix batch",
            format!("image indices below {}", set.len()),
            bad,
        ));
    }
    let per = 3 * h * w;
    let mut data = vec![0f32; indices.len() * per];
    data.par_chunks_mut(per).enumerate().for_each(|(j, out)| {
        let k = key + j as u64;
        let src = set.image(indices[j]);
        let cropped;
        let img = match crop {
            None => src,
            Some(a) => {
                let mut buf = vec![0u8; per];
                crop_flip_u8(src, &mut buf, 3, h, w, a.draws(k));
                cropped = buf;
                &cropped
            }
        };
        out.copy_from_slice(&apply_plan(img, h, w, &plan(cfg, seed, k, h, w)));
    });
    Tensor::from_vec(&[indices.len(), 3, h, w], data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_rejects_out_of_range_values() {
        assert!(AugMixConfig::default().validate().is_ok());
        let bad = [
            AugMixConfig {
                width: 0,
                ..Default::default()
            },
            AugMixConfig {
                depth: Some(0),
                ..Default::default()
            },
            AugMixConfig {
                severity: 11.0,
                ..Default::default()
            },
            AugMixConfig {
                severity: f64::NAN,
                ..Default::default()
            },
            AugMixConfig {
                alpha: 0.0,
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        assert!(augment_and_mix(&[0; 5], 1, 2, &AugMixConfig::default(), 0, 0).is_err());
    }
}
