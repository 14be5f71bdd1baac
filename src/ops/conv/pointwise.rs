//! The 1x1 convolutions' weight gradient on the packed GEMM, f32 on AVX-512 CPUs, with both
//! operands read from their NCHW arrays: dW[co][ci] = Σ_(s, o) dY[co][(s, o)] · Xs[ci][(s, o)],
//! Xs being x at the output positions (x itself at stride 1).
//!
//! Why: the im2col path copies dy and the subsampled x into per-group matrices with
//! [channel][(sample, position)] rows before it packs them; on ResNet18's 1x1 stride-2
//! shortcuts that ran at 0.67x PyTorch eager. Here the depth (sample, position) runs through
//! the samples as NCHW lays them out, so dy is packed straight from its array and x needs only
//! its subsampling (into a buffer of one group, which stays in cache). The product is split
//! along the depth into fixed groups of samples, one per task, because its depth (the batch's
//! positions) dwarfs its sides: split by columns, every thread would stream all of dy once per
//! 32 columns. The groups' partial products are summed in a fixed order, so every element comes
//! out the same whatever the thread count.

use crate::geom::ConvGeom;
use crate::ops::matmul::blocked::{self, interleave, Layout, PackA, PackB, MR, NR};
use crate::ops::scratch::Scratch;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Whether `backward_weight` can take this convolution: AVX-512 and a 1x1 kernel without
/// padding (any stride).
pub fn applies(g: &ConvGeom) -> bool {
    blocked::available() && g.k == 1 && g.pad == 0
}

/// Depth (samples x output positions) of one group's product: enough to fill the register
/// tile's depth blocks many times over, few enough that the group's subsampled input stays in
/// cache while it is packed.
const GROUP_DEPTH: usize = 1024;

/// dw from x and dy (overwrites dw) for a convolution where `applies(g)`.
pub fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    assert!(
        applies(g),
        "pointwise weight gradient: unsupported geometry {g:?}"
    );
    assert!(x.len() == g.x_len() && dy.len() == g.y_len() && dw.len() == g.w_len());
    let (run, x_per, y_per) = (g.hw_out(), g.c_in * g.h * g.w, g.c_out * g.hw_out());
    let per = GROUP_DEPTH.div_ceil(run).min(g.n.max(1));
    // Fixed groups summed in a fixed order: the same bits whatever the thread count. The
    // partial products share one buffer, taken and given back on this thread.
    let size = g.c_out * g.c_in;
    let mut partials = Scratch::take(g.n.div_ceil(per) * size);
    partials
        .par_chunks_mut(size)
        .enumerate()
        .for_each(|(gi, partial)| {
            let samples = gi * per..((gi + 1) * per).min(g.n);
            let xg = &x[samples.start * x_per..samples.end * x_per];
            let subsampled;
            let xs = if g.stride == 1 {
                xg
            } else {
                subsampled = at_output_positions(g, xg);
                &subsampled[..]
            };
            let a = SampleRuns {
                data: &dy[samples.start * y_per..samples.end * y_per],
                channels: g.c_out,
                run,
            };
            let b = SampleRuns {
                data: xs,
                channels: g.c_in,
                run,
            };
            blocked::sgemm_with(partial, Layout::rows(g.c_in), &a, &b, false, false);
        });
    dw.fill(0.0);
    for p in partials.chunks_exact(size) {
        dw.iter_mut().zip(p).for_each(|(d, v)| *d += v);
    }
}

/// The samples in `x` ([s][ci][h][w]) at the pixels a strided 1x1 convolution reads:
/// [s][ci][h_out][w_out].
fn at_output_positions(g: &ConvGeom, x: &[f32]) -> Scratch<f32> {
    let mut xs = Scratch::take(x.len() / (g.h * g.w) * g.hw_out());
    if g.stride == 2 && g.w_out() >= MIN_VECTOR_ROW {
        // SAFETY: `applies` checked AVX-512F.
        unsafe { every_second(g, x, &mut xs) };
        return xs;
    }
    let (w_out, hw_out, plane) = (g.w_out(), g.hw_out(), g.h * g.w);
    for (out, from) in xs.chunks_exact_mut(hw_out).zip(x.chunks_exact(plane)) {
        for (oy, row) in out.chunks_exact_mut(w_out).enumerate() {
            let line = &from[oy * g.stride * g.w..];
            for (ox, v) in row.iter_mut().enumerate() {
                *v = line[ox * g.stride];
            }
        }
    }
    xs
}

/// The narrowest output row `every_second` takes. Measured on 2 cores at batch 128 (weight
/// gradient, medians): 128x16x16→256 3.05 → 2.65 ms and 64x32x32→128 4.7 → 3.55 ms with it,
/// but 256x8x8→512 (rows of 4) 1.5 → 1.85 ms, where one permute per row fills a quarter of
/// its lanes and the scalar loop's four loads and stores are cheaper.
const MIN_VECTOR_ROW: usize = 8;

/// `at_output_positions` at stride 2, 16 pixels of a row at a time: two loads and one permute
/// where the scalar loop took a third of ResNet18's 1x1 stride-2 weight gradient (perf,
/// 128x16x16→256).
///
/// # Safety
/// AVX-512F is available.
#[target_feature(enable = "avx512f")]
unsafe fn every_second(g: &ConvGeom, x: &[f32], xs: &mut [f32]) {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let first = |n: usize| ((1u32 << n) - 1) as u16;
    let (w_out, plane) = (g.w_out(), g.h * g.w);
    for (out, from) in xs.chunks_exact_mut(g.hw_out()).zip(x.chunks_exact(plane)) {
        for (oy, row) in out.chunks_exact_mut(w_out).enumerate() {
            let line = &from[2 * oy * g.w..];
            for i in (0..w_out).step_by(16) {
                let m = (w_out - i).min(16);
                // Reads stop at the last pixel used, 2 (i + m - 1) <= w - 1: inside the line.
                let need = 2 * m - 1;
                let at = line.as_ptr().add(2 * i);
                let lo = _mm512_maskz_loadu_ps(first(need.min(16)), at);
                // `wrapping_add`: for short rows the second half starts past the line, and
                // then its mask is empty and nothing is read.
                let hi = _mm512_maskz_loadu_ps(first(need.saturating_sub(16)), at.wrapping_add(16));
                let v = _mm512_permutex2var_ps(lo, even, hi);
                _mm512_mask_storeu_ps(row.as_mut_ptr().add(i), first(m), v);
            }
        }
    }
}

/// An NCHW array read as the matrix [channel][(sample, position)]: element (c, (s, o)) at
/// (s * channels + c) * run + o.
struct SampleRuns<'a> {
    data: &'a [f32],
    channels: usize,
    run: usize,
}

impl SampleRuns<'_> {
    /// Depth `p0..p0+len` as runs inside one sample: (the offset of channel 0's element, the
    /// run's place in the block, its length).
    fn runs(&self, p0: usize, len: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let mut p = p0;
        std::iter::from_fn(move || {
            (p < p0 + len).then(|| {
                let (s, o) = (p / self.run, p % self.run);
                let n = (self.run - o).min(p0 + len - p);
                let item = (s * self.channels * self.run + o, p - p0, n);
                p += n;
                item
            })
        })
    }

    fn depth(&self) -> usize {
        self.data.len() / self.channels
    }
}

impl PackA for SampleRuns<'_> {
    fn rows(&self) -> usize {
        self.channels
    }
    fn depth(&self) -> usize {
        SampleRuns::depth(self)
    }
    fn pack(&self, i0: usize, mc: usize, p0: usize, kc: usize, dst: &mut [f32]) {
        for r in 0..mc.div_ceil(MR) {
            let (c0, rows) = (i0 + r * MR, MR.min(mc - r * MR));
            let panel = &mut dst[r * kc * MR..(r + 1) * kc * MR];
            for (first, at, len) in self.runs(p0, kc) {
                let from = first + c0 * self.run;
                interleave::<MR>(
                    self.data,
                    from,
                    rows,
                    self.run,
                    1,
                    len,
                    &mut panel[at * MR..],
                );
            }
        }
    }
}

impl PackB for SampleRuns<'_> {
    fn cols(&self) -> usize {
        self.channels
    }
    fn depth(&self) -> usize {
        SampleRuns::depth(self)
    }
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        for q in 0..nc.div_ceil(NR) {
            let (c0, cols) = (j0 + q * NR, NR.min(nc - q * NR));
            let panel = &mut dst[q * kc * NR..(q + 1) * kc * NR];
            for (first, at, len) in self.runs(p0, kc) {
                let from = first + c0 * self.run;
                interleave::<NR>(
                    self.data,
                    from,
                    cols,
                    self.run,
                    1,
                    len,
                    &mut panel[at * NR..],
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::cpu::im2col_backward_weight;
    use crate::ops::conv::test_inputs::{square, values};

    /// Against im2col on shapes that cross every edge: several groups and a short last one,
    /// runs shorter than a depth block and blocks that span samples, odd maps (stride 2 from
    /// 9x9), rows wider than one 16-lane gather (stride 2 from 41x41), row and column panels
    /// cut short, stride 1 (x read as it is).
    #[test]
    fn matches_im2col() {
        if !blocked::available() {
            return;
        }
        for g in [
            square(37, 70, 16, 29, 1, 2),
            square(5, 33, 9, 17, 1, 2),
            square(3, 12, 41, 20, 1, 2),
            square(3, 40, 8, 45, 1, 1),
        ] {
            let (x, dy) = (values(g.x_len(), 1), values(g.y_len(), 2));
            let mut want = vec![0f32; g.w_len()];
            im2col_backward_weight(&g, &x, &dy, &mut want);
            let mut got = vec![f32::NAN; g.w_len()];
            backward_weight(&g, &x, &dy, &mut got);
            let scale = ((g.n * g.hw_out()) as f32).sqrt();
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                let close = (a - b).abs() <= 1e-5 * scale * (1.0 + b.abs());
                assert!(close, "{g:?} dw[{i}]: {a} vs {b}");
            }
        }
    }

    /// The same bits on one thread as on three (three groups).
    #[test]
    fn thread_count_does_not_change_the_bits() {
        if !blocked::available() {
            return;
        }
        let g = square(40, 96, 16, 40, 1, 2);
        let (x, dy) = (values(g.x_len(), 3), values(g.y_len(), 4));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut dw = vec![0f32; g.w_len()];
            pool.install(|| backward_weight(&g, &x, &dy, &mut dw));
            dw
        };
        assert_eq!(run(1), run(3));
    }
}
