//! Implicit-GEMM convolutions, f32 on AVX-512 CPUs: the strided convolutions' weight
//! gradient, and the forward and stride-1 backward-data where much of the input is padding.
//! The blocked GEMM packs its B panels straight from a transposed copy of the input (no
//! im2col matrix) and skips every tile that only padding feeds.
//!
//! Why these: a 3x3 stride-2 convolution cannot use Winograd, and on small late maps much of
//! an im2col matrix is padding (a 4x4 output from an 8x8 input reads padding in 16% of its
//! (tap, position) pairs, a stride-1 4x4 output in 31%), which oneDNN's direct kernels skip
//! and an im2col GEMM multiplies. Ordering the GEMM so that a whole tile shares one tap and
//! one output position makes the padding whole tiles, which the GEMM driver skips
//! (`PackB::live`). The strided weight gradient gains even without much padding: its im2col
//! GEMM has both operands transposed in memory.
//!
//! Forward: Y[co][(o, s)] = Σ_(t, ci) W[co][(t, ci)] · X[(t, ci)][(o, s)], columns ordered
//! output position o major, sample s minor, so an NR-column panel is one position of 32
//! samples: with the input transposed to [ci][pixel][s], each of its rows is one contiguous
//! run of the input, or all padding.
//! Weight gradient: dW[co][(t, ci)] = Σ_(o, s) dY[co][(o, s)] · X[(o, s)][(t, ci)], depth
//! ordered the same way and blocked at position boundaries; with the input in [s][pixel][ci]
//! (NHWC), each step of a panel is one contiguous run of channels, or all padding.
//!
//! Every sum runs in a fixed order whatever the thread count (the GEMM splits columns only).

use crate::geom::ConvGeom;
use crate::ops::matmul::blocked::{
    self, interleave, transpose_block, Layout, PackA, PackB, PrepackedA, NR,
};
use crate::ops::matmul::MatRef;
use crate::ops::scratch::Scratch;
use rayon::prelude::*;

/// Input channels below which the tap-sized depth blocks get too short for the register tile.
const MIN_CHANNELS: usize = 32;

/// Share of the forward's (tap, output position) pairs that read padding, from which the
/// skipped tiles repay the transposes: measured with the `conv` bench items and A/B builds,
/// 16% (a 4x4 output from 8x8) ran 10% faster than im2col + a GEMM; 8% (8x8 from
/// 16x16) and 4% (16x16 from 32x32) ran as fast, not faster.
const MIN_FORWARD_PADDING: f64 = 0.15;

/// Whether the implicit GEMM can take this convolution at all (`backward_weight` takes every
/// strided one: it was faster than im2col on every strided ResNet18 shape).
pub fn applies(g: &ConvGeom) -> bool {
    blocked::available() && g.k > 1 && g.c_in >= MIN_CHANNELS
}

/// The padding share past which the implicit forward also beats Winograd F(2x2, 3x3) (the
/// stride-1 3x3 convolutions): measured on ResNet18's 512x4x4 layer (31% padding: 15.4 ms
/// against Winograd's 18.9) and 256x8x8 (16%: 23.0 against 16.2).
const MIN_PADDING_VS_WINOGRAD: f64 = 0.25;

/// Whether `forward` here takes this convolution.
pub fn applies_forward(g: &ConvGeom) -> bool {
    let least = if g.stride == 1 && g.k == 3 {
        MIN_PADDING_VS_WINOGRAD
    } else {
        MIN_FORWARD_PADDING
    };
    applies(g) && padding_share(g) >= least
}

/// The share of (tap, output position) pairs whose input pixel lies in the padding.
fn padding_share(g: &ConvGeom) -> f64 {
    let kk = g.k * g.k;
    let outside = (0..kk)
        .flat_map(|t| (0..g.hw_out()).map(move |o| (t, o)))
        .filter(|&(t, o)| tap_inside(g, t, o).is_none())
        .count();
    outside as f64 / (kk * g.hw_out()) as f64
}

/// Whether tap `t` (ky * k + kx) reads inside the image at output position `o` (oy * w_out + ox).
pub(super) fn tap_inside(g: &ConvGeom, t: usize, o: usize) -> Option<(usize, usize)> {
    let (ky, kx) = (t / g.k, t % g.k);
    let (oy, ox) = (o / g.w_out(), o % g.w_out());
    let iy = (oy * g.stride + ky)
        .checked_sub(g.pad)
        .filter(|&v| v < g.h)?;
    let ix = (ox * g.stride + kx)
        .checked_sub(g.pad)
        .filter(|&v| v < g.w)?;
    Some((iy, ix))
}

/// Side of the square blocks `transpose` moves through (the AVX-512 register transpose's).
const BLOCK: usize = 16;

/// `dst[c * rows + r] = src[r * cols + c]`, the destination's 16-row blocks spread over the
/// threads.
pub(super) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    debug_assert!(src.len() == rows * cols && dst.len() == rows * cols);
    dst.par_chunks_mut(BLOCK * rows)
        .enumerate()
        .for_each(|(cb, out)| transpose_columns(src, rows, cols, cb * BLOCK, out));
}

/// `transpose` on the calling thread (for the per-sample transposes that already run in
/// parallel).
fn transpose_serial(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    for (cb, out) in dst.chunks_mut(BLOCK * rows).enumerate() {
        transpose_columns(src, rows, cols, cb * BLOCK, out);
    }
}

/// Columns `c0..c0+16` (or to the end) of `src` (rows x cols) as the rows of `out`, 16x16
/// blocks (ragged at the edges) in registers.
fn transpose_columns(src: &[f32], rows: usize, cols: usize, c0: usize, out: &mut [f32]) {
    let cn = BLOCK.min(cols - c0);
    for r0 in (0..rows).step_by(BLOCK) {
        let rn = BLOCK.min(rows - r0);
        transpose_block(
            &src[r0 * cols + c0..],
            cols,
            rn,
            cn,
            &mut out[r0..],
            rows,
            rn,
        );
    }
}

/// `dst = src` for one run of a panel step: a whole-panel run (the common case) as a copy of
/// constant length, which compiles to vector moves instead of a memcpy call per step.
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    if let (Ok(d), Ok(s)) = (
        <&mut [f32; NR]>::try_from(&mut *dst),
        <&[f32; NR]>::try_from(src),
    ) {
        *d = *s;
    } else {
        dst.copy_from_slice(src);
    }
}

/// Zeros lanes `lanes` of every NR-wide step of a panel (padding, or columns past B's edge).
fn zero_lanes(steps: &mut [f32], lanes: std::ops::Range<usize>) {
    if !lanes.is_empty() {
        steps
            .chunks_exact_mut(NR)
            .for_each(|step| step[lanes.clone()].fill(0.0));
    }
}

/// W [c_out][ci][t] read as the GEMM's A, with its depth ordered (t, ci); with `adjoint`,
/// the weights of backward-data's convolution instead (`g` being that convolution):
/// W'[ci][co][t] = W[co][ci][kk - 1 - t].
struct WeightByTap<'a> {
    w: &'a [f32],
    g: &'a ConvGeom,
    adjoint: bool,
}

impl PackA for WeightByTap<'_> {
    fn rows(&self) -> usize {
        self.g.c_out
    }
    fn depth(&self) -> usize {
        self.g.ckk()
    }
    fn pack(&self, i0: usize, mc: usize, p0: usize, kc: usize, dst: &mut [f32]) {
        let (kk, ckk, c) = (self.g.k * self.g.k, self.g.ckk(), self.g.c_in);
        // W's strides between rows of A (lanes) and between channels of one tap (steps).
        let (lane, step) = if self.adjoint {
            (kk, self.g.c_out * kk)
        } else {
            (ckk, kk)
        };
        let mr = blocked::MR;
        for r in 0..mc.div_ceil(mr) {
            let rows = mr.min(mc - r * mr);
            let panel = &mut dst[r * kc * mr..(r + 1) * kc * mr];
            // The depth range tap by tap: within a tap, channels are kk apart in W.
            let mut p = p0;
            while p < p0 + kc {
                let (t, ci) = (p / c, p % c);
                let run = (c - ci).min(p0 + kc - p);
                let tap = if self.adjoint { kk - 1 - t } else { t };
                let first = (i0 + r * mr) * lane + ci * step + tap;
                let at = (p - p0) * mr;
                interleave::<{ blocked::MR }>(
                    self.w,
                    first,
                    rows,
                    lane,
                    step,
                    run,
                    &mut panel[at..],
                );
                p += run;
            }
        }
    }
}

/// The forward's B: X[(t, ci)][(o, s)] from the input in [ci][pixel][s].
struct ForwardColumns<'a> {
    xt: &'a [f32],
    g: &'a ConvGeom,
}

impl ForwardColumns<'_> {
    /// Columns `j0..j0+len` as runs of one output position: (position, first sample, length).
    fn runs(&self, j0: usize, len: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let n = self.g.n;
        let mut j = j0;
        std::iter::from_fn(move || {
            (j < j0 + len).then(|| {
                let (o, s) = (j / n, j % n);
                let run = (n - s).min(j0 + len - j);
                j += run;
                (o, s, run)
            })
        })
    }
}

impl PackB for ForwardColumns<'_> {
    const SKIPS: bool = true;
    fn cols(&self) -> usize {
        self.g.hw_out() * self.g.n
    }
    fn depth(&self) -> usize {
        self.g.ckk()
    }
    fn block(&self, p0: usize, max: usize) -> usize {
        // Whole taps: one tap's channels at a time when a tap fills a block, else as many
        // whole taps as fit (a dead tap inside a live block is packed as zeros).
        let c = self.g.c_in;
        if c >= max {
            max.min(c - p0 % c)
        } else {
            (max / c * c).min(self.depth() - p0)
        }
    }
    fn live(&self, p0: usize, kc: usize, j0: usize, cols: usize) -> bool {
        let c = self.g.c_in;
        (p0 / c..=(p0 + kc - 1) / c).any(|t| {
            self.runs(j0, cols)
                .any(|(o, _, _)| tap_inside(self.g, t, o).is_some())
        })
    }
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        let g = self.g;
        let (n, hw) = (g.n, g.h * g.w);
        for q in 0..nc.div_ceil(NR) {
            let panel = &mut dst[q * kc * NR..(q + 1) * kc * NR];
            let cols = NR.min(nc - q * NR);
            // The block tap by tap: steps `at..at + len` of the panel are tap t's channels
            // ci0.. .
            let mut at = 0;
            while at < kc {
                let (t, ci0) = ((p0 + at) / g.c_in, (p0 + at) % g.c_in);
                let len = (g.c_in - ci0).min(kc - at);
                let steps = &mut panel[at * NR..(at + len) * NR];
                let mut lane = 0;
                for (o, s, run) in self.runs(j0 + q * NR, cols) {
                    match tap_inside(g, t, o) {
                        Some((iy, ix)) => {
                            let first = (ci0 * hw + iy * g.w + ix) * n + s;
                            for (p, step) in steps.chunks_exact_mut(NR).enumerate() {
                                let from = first + p * hw * n;
                                copy_run(&mut step[lane..lane + run], &self.xt[from..from + run]);
                            }
                        }
                        None => zero_lanes(steps, lane..lane + run),
                    }
                    lane += run;
                }
                at += len;
            }
            zero_lanes(panel, cols..NR);
        }
    }
}

/// y = conv(x, w) for a convolution where `applies(g)` (`applies_forward` says when it pays).
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    convolve(
        g,
        x,
        &WeightByTap {
            w,
            g,
            adjoint: false,
        },
        y,
    );
}

/// The convolution that backward-data is at stride 1: dy convolved with the flipped,
/// transposed weights, padded by k - 1 - pad.
fn adjoint(g: &ConvGeom) -> ConvGeom {
    ConvGeom {
        n: g.n,
        c_in: g.c_out,
        h: g.h_out(),
        w: g.w_out(),
        c_out: g.c_in,
        k: g.k,
        stride: 1,
        pad: g.k - 1 - g.pad,
    }
}

/// Whether `backward_data` here takes this convolution: stride 1 (where backward-data is a
/// convolution) with that convolution's padding share past Winograd's break-even.
pub fn applies_backward_data(g: &ConvGeom) -> bool {
    g.stride == 1 && g.pad < g.k && applies_forward(&adjoint(g))
}

/// dx from the weights and dy (overwrites dx) for a convolution where
/// `applies_backward_data(g)`.
pub fn backward_data(g: &ConvGeom, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let ga = adjoint(g);
    convolve(
        &ga,
        dy,
        &WeightByTap {
            w,
            g: &ga,
            adjoint: true,
        },
        dx,
    );
}

/// y = conv(x, ·) with the weights given as the GEMM's A.
fn convolve(g: &ConvGeom, x: &[f32], weights: &WeightByTap<'_>, y: &mut [f32]) {
    let (n, hw_out) = (g.n, g.hw_out());
    let mut xt = Scratch::take(x.len());
    transpose(x, n, g.c_in * g.h * g.w, &mut xt);
    let cols = hw_out * n;
    let mut out = Scratch::take(g.c_out * cols);
    let a = PrepackedA::new(weights);
    let b = ForwardColumns { xt: &xt, g };
    blocked::sgemm_with(&mut out, Layout::rows(cols), &a, &b, false, true);
    // [(co, o)][s] → [s][(co, o)].
    transpose(&out, g.c_out * hw_out, n, y);
}

/// The weight gradient's B: X[(o, s)][(t, ci)] from the input in [s][pixel][ci].
struct WeightGradRows<'a> {
    xhwc: &'a [f32],
    g: &'a ConvGeom,
}

impl PackB for WeightGradRows<'_> {
    const SKIPS: bool = true;
    fn cols(&self) -> usize {
        self.g.ckk()
    }
    fn depth(&self) -> usize {
        self.g.hw_out() * self.g.n
    }
    fn block(&self, p0: usize, max: usize) -> usize {
        max.min(self.g.n - p0 % self.g.n)
    }
    fn live(&self, p0: usize, _kc: usize, j0: usize, cols: usize) -> bool {
        let o = p0 / self.g.n;
        let (t0, t1) = (j0 / self.g.c_in, (j0 + cols - 1) / self.g.c_in);
        (t0..=t1).any(|t| tap_inside(self.g, t, o).is_some())
    }
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        let g = self.g;
        let (o, s0, c) = (p0 / g.n, p0 % g.n, g.c_in);
        let per_sample = g.h * g.w * c;
        for q in 0..nc.div_ceil(NR) {
            let panel = &mut dst[q * kc * NR..(q + 1) * kc * NR];
            let cols = NR.min(nc - q * NR);
            let mut lane = 0;
            while lane < cols {
                let j = j0 + q * NR + lane;
                let (t, ci) = (j / c, j % c);
                let len = (c - ci).min(cols - lane);
                match tap_inside(g, t, o) {
                    Some((iy, ix)) => {
                        let first = s0 * per_sample + (iy * g.w + ix) * c + ci;
                        for (p, step) in panel.chunks_exact_mut(NR).enumerate() {
                            let at = first + p * per_sample;
                            copy_run(&mut step[lane..lane + len], &self.xhwc[at..at + len]);
                        }
                    }
                    None => zero_lanes(panel, lane..lane + len),
                }
                lane += len;
            }
            zero_lanes(panel, cols..NR);
        }
    }
}

/// dw from x and dy (overwrites dw) for a convolution where `applies(g)`.
pub fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (n, hw_out, hw) = (g.n, g.hw_out(), g.h * g.w);
    // x [s][ci][pixel] → [s][pixel][ci].
    let mut xhwc = Scratch::take(x.len());
    xhwc.par_chunks_mut(g.c_in * hw)
        .zip(x.par_chunks(g.c_in * hw))
        .for_each(|(dst, src)| transpose_serial(src, g.c_in, hw, dst));
    // dy [s][(co, o)] → [(co, o)][s]: the GEMM's A, row-major with depth (o, s).
    let mut dyt = Scratch::take(dy.len());
    transpose(dy, n, g.c_out * hw_out, &mut dyt);
    let a = PrepackedA::new(&MatRef::rm(&dyt, g.c_out, hw_out * n));
    let b = WeightGradRows { xhwc: &xhwc, g };
    let mut by_tap = Scratch::take(g.c_out * g.ckk());
    blocked::sgemm_with(&mut by_tap, Layout::rows(g.ckk()), &a, &b, false, true);
    // [co][(t, ci)] → [co][(ci, t)].
    let kk = g.k * g.k;
    for (dst, src) in dw.chunks_mut(g.ckk()).zip(by_tap.chunks(g.ckk())) {
        for (t, run) in src.chunks(g.c_in).enumerate() {
            for (ci, &v) in run.iter().enumerate() {
                dst[ci * kk + t] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::cpu;
    use crate::ops::conv::test_inputs::values;

    /// Shapes around every edge: batches that do not fill a 32-sample panel or straddle one,
    /// channel counts that end a panel inside a tap, odd maps, no padding, a 5x5 kernel.
    fn shapes() -> Vec<ConvGeom> {
        let geom = |n, c_in, h, c_out, k, stride, pad| ConvGeom {
            n,
            c_in,
            h,
            w: h,
            c_out,
            k,
            stride,
            pad,
        };
        vec![
            geom(5, 32, 8, 16, 3, 2, 1),
            geom(40, 40, 8, 30, 3, 2, 1),
            geom(33, 64, 7, 17, 3, 2, 1),
            geom(3, 48, 9, 8, 3, 2, 0),
            geom(2, 32, 11, 5, 5, 3, 2),
            geom(64, 256, 8, 64, 3, 2, 1),
        ]
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            // Sums of up to a few thousand terms of size <= 1: f32 rounding stays near 1e-4.
            assert!(
                (a - b).abs() <= 2e-4 * (1.0 + b.abs()),
                "{what}: element {i} is {a}, not {b}"
            );
        }
    }

    #[test]
    fn the_implicit_backward_data_is_the_adjoint_of_the_direct_convolution() {
        if !blocked::available() {
            return;
        }
        let geom = |n, c_in, h, c_out, k, pad| ConvGeom {
            n,
            c_in,
            h,
            w: h,
            c_out,
            k,
            stride: 1,
            pad,
        };
        for g in [
            geom(35, 40, 4, 33, 3, 1),
            geom(3, 64, 5, 32, 3, 1),
            geom(2, 32, 6, 40, 3, 0),
        ] {
            let (x, w, dy) = (
                values(g.x_len(), 1),
                values(g.w_len(), 2),
                values(g.y_len(), 3),
            );
            let mut y = vec![0f32; g.y_len()];
            cpu::forward_naive(&g, &x, &w, &mut y);
            let mut dx = vec![f32::NAN; g.x_len()];
            backward_data(&g, &w, &dy, &mut dx);
            // <conv(x), dy> = <x, dx> for every x: checked on x and on each unit vector's
            // worth of x through the im2col reference.
            let dot = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(&p, &q)| p as f64 * q as f64)
                    .sum::<f64>()
            };
            let (lhs, rhs) = (dot(&y, &dy), dot(&x, &dx));
            assert!(
                (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
                "{g:?}: {lhs} vs {rhs}"
            );
            let mut want = vec![0f32; g.x_len()];
            cpu::im2col_backward_data(&g, &w, &dy, &mut want);
            assert_close(&dx, &want, &format!("backward data {g:?}"));
        }
    }

    #[test]
    fn both_directions_give_the_same_bits_on_one_thread_as_on_three() {
        if !blocked::available() {
            return;
        }
        let g = shapes()[1];
        let (x, w, dy) = (
            values(g.x_len(), 5),
            values(g.w_len(), 6),
            values(g.y_len(), 7),
        );
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            pool.install(|| {
                let mut y = vec![0f32; g.y_len()];
                let mut dw = vec![0f32; g.w_len()];
                forward(&g, &x, &w, &mut y);
                backward_weight(&g, &x, &dy, &mut dw);
                (y, dw)
            })
        };
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let ((y1, dw1), (y3, dw3)) = (run(1), run(3));
        assert_eq!(bits(&y1), bits(&y3));
        assert_eq!(bits(&dw1), bits(&dw3));
    }

    #[test]
    fn the_padding_share_counts_the_taps_outside_the_image() {
        let g = |h, stride| ConvGeom {
            n: 1,
            c_in: 64,
            h,
            w: h,
            c_out: 64,
            k: 3,
            stride,
            pad: 1,
        };
        // 4x4 from 8x8 at stride 2: 1 - (11/12)^2 of the pairs (16%); 8x8 from 16x16:
        // 1 - (23/24)^2 (8%).
        assert!((padding_share(&g(8, 2)) - (1.0 - (11.0f64 / 12.0).powi(2))).abs() < 1e-12);
        assert!((padding_share(&g(16, 2)) - (1.0 - (23.0f64 / 24.0).powi(2))).abs() < 1e-12);
        assert_eq!(applies_forward(&g(8, 2)), blocked::available());
        assert!(!applies_forward(&g(16, 2)));
    }

    #[test]
    fn the_transposes_move_every_element_to_its_mirror_place() {
        if !blocked::available() {
            return;
        }
        for (rows, cols) in [(16, 16), (35, 50), (128, 256), (3, 70), (64, 17)] {
            let src = values(rows * cols, 9);
            let mut par = vec![f32::NAN; rows * cols];
            let mut ser = vec![f32::NAN; rows * cols];
            transpose(&src, rows, cols, &mut par);
            transpose_serial(&src, rows, cols, &mut ser);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        par[c * rows + r],
                        src[r * cols + c],
                        "{rows}x{cols} at ({r}, {c})"
                    );
                    assert_eq!(
                        ser[c * rows + r],
                        src[r * cols + c],
                        "{rows}x{cols} at ({r}, {c})"
                    );
                }
            }
        }
    }

    #[test]
    fn the_implicit_forward_matches_the_direct_convolution() {
        if !blocked::available() {
            return;
        }
        for g in shapes() {
            assert!(applies(&g), "{g:?}");
            // `forward` itself runs whatever the padding share (`applies_forward` only picks).
            let (x, w) = (values(g.x_len(), 1), values(g.w_len(), 2));
            let mut want = vec![0f32; g.y_len()];
            cpu::forward_naive(&g, &x, &w, &mut want);
            let mut got = vec![f32::NAN; g.y_len()];
            forward(&g, &x, &w, &mut got);
            assert_close(&got, &want, &format!("forward {g:?}"));
        }
    }

    #[test]
    fn the_implicit_weight_gradient_matches_im2col() {
        if !blocked::available() {
            return;
        }
        for g in shapes() {
            let (x, dy) = (values(g.x_len(), 3), values(g.y_len(), 4));
            let mut want = vec![0f32; g.w_len()];
            cpu::im2col_backward_weight(&g, &x, &dy, &mut want);
            let mut got = vec![f32::NAN; g.w_len()];
            backward_weight(&g, &x, &dy, &mut got);
            assert_close(&got, &want, &format!("weight gradient {g:?}"));
        }
    }
}
