//! Backward-data of the strided convolutions on small maps, f32 on AVX-512 CPUs: the GEMM
//! `dcol = Wᵀ · dY` with its columns ordered output position major, sample minor, so that
//! col2im adds whole rows of samples at a time.
//!
//! Why: the im2col path's col2im walks each sample's planes: on a 4x4 output from an 8x8
//! input every (channel, tap, output row) adds two to four values at stride 2, and that
//! scalar loop took 17% of the 256x8x8→512 backward-data (perf). With the samples innermost,
//! tap t at output position o adds one contiguous run of n samples onto one input pixel's
//! run, which the compiler vectorises. The price is a transpose of dy in and of dx out, and
//! a dcol matrix of ckk x (hw_out · n) floats, which is why only small maps take this path.
//!
//! dcol[(ci, t)][(o, s)] = Σ_co W[co][(ci, t)] · dY[co][(o, s)]: A is W read transposed
//! (packed once), B is dy transposed to [(co, o)][s], read as the row-major [co][(o, s)].
//! Sums run in a fixed order whatever the thread count: each dcol element over the output
//! channels in the GEMM's block order, each dx element over its (position chunk, tap,
//! position) pairs in order, whichever thread owns its channel.

use super::implicit::{tap_inside, transpose};
use crate::geom::ConvGeom;
use crate::ops::matmul::blocked::{self, Layout, PrepackedA};
use crate::ops::matmul::MatRef;
use crate::ops::scratch::Scratch;
use rayon::prelude::*;

/// The largest output map that takes this path: ResNet18's 8x8 and 4x4 strided outputs,
/// where col2im's per-sample runs are shortest. Measured on 2 cores at batch 128: 256x8x8→512
/// 3x3 s2 went from 13.6-14.4 to 11.0 ms, 128x16x16→256 from 12.7-12.9 to 11.9 ms. On the
/// 16x16 outputs im2col's runs are long enough: 64x32x32→128 took 16.8 ms here, 15.1 there.
const MAX_HW_OUT: usize = 64;

/// Whether `backward_data` here takes this convolution: strided and wider than 1x1. A 1x1
/// kernel has one tap per position and no overlapping adds, so col2im is cheap and the two
/// transposes lose (128x16x16→256 1x1 s2: 1.8 ms on im2col, 2.9 ms here).
pub fn applies(g: &ConvGeom) -> bool {
    blocked::available() && g.stride > 1 && g.k > 1 && g.hw_out() <= MAX_HW_OUT
}

/// Output positions per GEMM chunk: a chunk's dcol rows for one thread's channels
/// (ckk / threads x chunk · n floats) stay in L1/L2 until col2im has added them. One
/// position measured fastest (256x8x8→512: 11.0 ms against 11.2 for two and 11.6 for four).
const CHUNK_POSITIONS: usize = 1;

/// dx from the weights and dy (overwrites dx) for a convolution where `applies(g)`.
///
/// Each thread takes a range of input channels: its rows of dcol, computed a few output
/// positions at a time and added onto its own channels' planes straight away, so dcol never
/// leaves the cache and no two threads add onto one pixel.
pub fn backward_data(g: &ConvGeom, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (n, kk, hw, hw_out) = (g.n, g.k * g.k, g.h * g.w, g.hw_out());
    let mut dyt = Scratch::take(dy.len());
    transpose(dy, n, g.c_out * hw_out, &mut dyt);
    let mut dxt = Scratch::take(dx.len());
    let per = g.c_in.div_ceil(rayon::current_num_threads());
    dxt.par_chunks_mut(per * hw * n)
        .enumerate()
        .for_each(|(part, planes)| {
            let (ci0, channels) = (part * per, planes.len() / (hw * n));
            let rows = channels * kk;
            // Wᵀ's rows (ci, t) for these channels: W[co][ci0 * kk + r] at co * ckk + ci0 * kk + r.
            let wt = MatRef {
                data: &w[ci0 * kk..],
                rows,
                cols: g.c_out,
                rs: 1,
                cs: g.ckk(),
            };
            let a = PrepackedA::new(&wt);
            planes.fill(0.0);
            let chunk = CHUNK_POSITIONS * n;
            let mut dcol = Scratch::take(rows * chunk);
            for o0 in (0..hw_out).step_by(CHUNK_POSITIONS) {
                let positions = CHUNK_POSITIONS.min(hw_out - o0);
                let cols = positions * n;
                let b = MatRef {
                    data: &dyt[o0 * n..],
                    rows: g.c_out,
                    cols,
                    rs: hw_out * n,
                    cs: 1,
                };
                blocked::sgemm_with(
                    &mut dcol[..rows * cols],
                    Layout::rows(cols),
                    &a,
                    &b,
                    false,
                    false,
                );
                col2im_add(g, &dcol[..rows * cols], o0, positions, planes);
            }
        });
    // [(ci, pixel)][s] → [s][(ci, pixel)].
    transpose(&dxt, g.c_in * hw, n, dx);
}

/// Adds `dcol` (rows (ci, t) of some channels, columns (o, s) for positions
/// `o0..o0 + positions`) onto those channels' planes in [ci][pixel][s].
fn col2im_add(g: &ConvGeom, dcol: &[f32], o0: usize, positions: usize, planes: &mut [f32]) {
    let (n, kk, hw) = (g.n, g.k * g.k, g.h * g.w);
    let cols = positions * n;
    for (plane, taps) in planes.chunks_mut(hw * n).zip(dcol.chunks(kk * cols)) {
        for (t, tap) in taps.chunks(cols).enumerate() {
            for p in 0..positions {
                if let Some((iy, ix)) = tap_inside(g, t, o0 + p) {
                    let at = (iy * g.w + ix) * n;
                    let run = &tap[p * n..(p + 1) * n];
                    for (d, &v) in plane[at..at + n].iter_mut().zip(run) {
                        *d += v;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::cpu::im2col_backward_data;
    use crate::ops::conv::test_inputs::{square, values};

    /// Strides 2 and 3, 3x3 kernels, 2x2 to 8x8 outputs, batches that are not whole
    /// 16-sample blocks (the transposes' ragged edges).
    fn shapes() -> Vec<ConvGeom> {
        vec![
            square(37, 32, 8, 48, 3, 2),
            square(16, 20, 8, 24, 3, 2),
            square(21, 16, 9, 40, 3, 3),
            square(3, 64, 4, 20, 3, 2),
            square(8, 32, 8, 64, 3, 2),
            square(10, 16, 16, 24, 3, 2),
        ]
    }

    #[test]
    fn the_sample_minor_backward_data_matches_im2col() {
        if !blocked::available() {
            return;
        }
        for g in shapes() {
            assert!(applies(&g), "{g:?} should take this path");
            let (w, dy) = (values(g.w_len(), 1), values(g.y_len(), 2));
            let (mut got, mut want) = (vec![f32::NAN; g.x_len()], vec![f32::NAN; g.x_len()]);
            backward_data(&g, &w, &dy, &mut got);
            im2col_backward_data(&g, &w, &dy, &mut want);
            for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{g:?}: element {i} is {a}, im2col gives {b}"
                );
            }
        }
    }

    #[test]
    fn pointwise_stride_1_and_large_maps_keep_their_paths() {
        let g = shapes()[0];
        for other in [
            ConvGeom { k: 1, pad: 0, ..g },
            ConvGeom { stride: 1, ..g },
            ConvGeom { h: 32, w: 32, ..g },
        ] {
            assert!(!applies(&other), "{other:?} should not take this path");
        }
    }

    #[test]
    fn the_sample_minor_backward_data_gives_the_same_bits_on_one_thread_as_on_three() {
        if !blocked::available() {
            return;
        }
        let g = shapes()[0];
        let (w, dy) = (values(g.w_len(), 3), values(g.y_len(), 4));
        let run = |threads: usize| {
            let mut dx = vec![f32::NAN; g.x_len()];
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| backward_data(&g, &w, &dy, &mut dx));
            dx
        };
        assert_eq!(run(1), run(3));
    }
}
