//! Turning an `ImageSet` into training batches: seeded per-epoch shuffling, random crop with
//! zero padding and horizontal flip (spec §1.1), and [0,1] f32 tensors (normalisation happens
//! inside the model). Every draw is keyed by (seed, epoch, position), so a resumed run sees
//! exactly the batches an uninterrupted one would.

use super::ImageSet;

use crate::rng::{self, stream, Stream};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// The visiting order of one epoch.
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    Stream::new(
        rng::hash(seed, stream::SHUFFLE, epoch as u64),
        stream::SHUFFLE,
    )
    .permutation(n)
}

/// Random crop after zero padding, and a horizontal flip with probability 1/2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropFlip {
    pub pad: usize,
    pub seed: u64,
}

/// The random crop and flip of one batch image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropDraws {
    /// out[y][x] reads source row y + dy and column xx + dx (xx = x, or w − 1 − x when flipped).
    pub dy: isize,
    pub dx: isize,
    pub flip: bool,
}

impl CropFlip {
    /// The draws of the batch image keyed `k` (= the batch's key + its position):
    /// dy = below(seed, CROP, 2k, 2·pad + 1) − pad, dx = the same at 2k + 1,
    /// flip = uniform(seed, FLIP, k) < 0.5 (`augment_crop_flip` on the GPU).
    pub fn draws(&self, k: u64) -> CropDraws {
        let span = 2 * self.pad as u64 + 1;
        let pad = self.pad as isize;
        CropDraws {
            dy: rng::below(self.seed, stream::CROP, 2 * k, span) as isize - pad,
            dx: rng::below(self.seed, stream::CROP, 2 * k + 1, span) as isize - pad,
            flip: rng::uniform(self.seed, stream::FLIP, k) < 0.5,
        }
    }
}

/// Images `indices` as f32 [b, c, h, w] in [0, 1] with their labels. `aug` carries the crop/flip
/// settings and `key` the position of this batch's first image in the run's stream of draws.
pub fn make_batch(
    set: &ImageSet,
    indices: &[usize],
    aug: Option<CropFlip>,
    key: u64,
) -> (Tensor, Vec<u32>) {
    let (c, h, w) = (set.channels, set.height, set.width);
    let per = c * h * w;
    let mut data = vec![0f32; indices.len() * per];
    data.par_chunks_mut(per).enumerate().for_each(|(j, out)| {
        let img = set.image(indices[j]);
        match aug {
            None => out
                .iter_mut()
                .zip(img)
                .for_each(|(o, &p)| *o = p as f32 / 255.0),
            Some(a) => {
                let d = a.draws(key + j as u64);
                crop_flip(img, out, c, h, w, d.dy, d.dx, d.flip);
            }
        }
    });
    let labels = indices.iter().map(|&i| set.labels[i]).collect();
    let t = Tensor::from_vec(&[indices.len(), c, h, w], data).expect("batch shape");
    (t, labels)
}

/// out[y][x] = img[y + dy][x + dx] (0 outside), mirrored horizontally when `flip`.
#[allow(clippy::too_many_arguments)]
fn crop_flip(
    img: &[u8],
    out: &mut [f32],
    c: usize,
    h: usize,
    w: usize,
    dy: isize,
    dx: isize,
    flip: bool,
) {
    for ch in 0..c {
        for y in 0..h {
            let sy = y as isize + dy;
            for x in 0..w {
                let xx = if flip { w - 1 - x } else { x };
                let sx = xx as isize + dx;
                let v = if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                    img[(ch * h + sy as usize) * w + sx as usize] as f32 / 255.0
                } else {
                    0.0
                };
                out[(ch * h + y) * w + x] = v;
            }
        }
    }
}

/// `crop_flip` on 8-bit pixels: out[ch][y][x] = img[ch][y + dy][xx + dx] (0 outside), the
/// cropped image AugMix starts from.
pub fn crop_flip_u8(img: &[u8], out: &mut [u8], c: usize, h: usize, w: usize, d: CropDraws) {
    for ch in 0..c {
        for y in 0..h {
            let sy = y as isize + d.dy;
            for x in 0..w {
                let xx = if d.flip { w - 1 - x } else { x };
                let sx = xx as isize + d.dx;
                out[(ch * h + y) * w + x] =
                    if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                        img[(ch * h + sy as usize) * w + sx as usize]
                    } else {
                        0
                    };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_with_zero_offset_and_no_flip_is_identity() {
        let img: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8).collect();
        let mut out = vec![0f32; img.len()];
        crop_flip(&img, &mut out, 2, 3, 4, 0, 0, false);
        assert!(out.iter().zip(&img).all(|(&o, &i)| o == i as f32 / 255.0));
        crop_flip(&img, &mut out, 2, 3, 4, 0, 0, true);
        assert_eq!(out[0], img[3] as f32 / 255.0);
        crop_flip(&img, &mut out, 2, 3, 4, 1, 0, false);
        assert_eq!(out[0], img[4] as f32 / 255.0);
        assert_eq!(out[2 * 4], 0.0, "row shifted in from the padding is zero");
    }

    #[test]
    fn epoch_orders_are_seeded_permutations() {
        assert_eq!(epoch_order(1, 0, 50), epoch_order(1, 0, 50));
        assert_ne!(epoch_order(1, 0, 50), epoch_order(1, 1, 50));
    }
}
