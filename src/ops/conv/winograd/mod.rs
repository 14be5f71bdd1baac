//! Winograd F(2x2, 3x3) for the CPU's 3x3 stride-1 pad-1 convolutions in all three directions:
//! forward, backward-data (which, at stride 1, is the forward convolution of dy with the
//! flipped, transposed weights) and the weight gradient (`weight_grad`).
//!
//! Each 2x2 output tile is Aᵀ [ (G w Gᵀ) ⊙ (Bᵀ d B) ] A for the 4x4 input patch d around it, so
//! the product becomes 16 independent GEMMs, one per element e of the 4x4 transformed tile:
//! M[e] (c_out x tiles) = U[e] (c_out x c_in) · V[e] (c_in x tiles). That is 16 multiplies per
//! 2x2 outputs instead of 36, and no im2col matrix (the transformed input is 4x the input,
//! im2col's is 9x). The transforms only add, subtract and halve, so the rounding error stays
//! that of a few extra additions per output: within 1e-5 relative of the im2col path in f32
//! (tests/gradcheck.rs and the unit tests below bound it).
//!
//! Work is split into groups of whole samples with at least `MIN_TILES` tiles, each group's 16
//! GEMMs single-threaded; with one group, its 16 GEMMs run in parallel instead. Either way
//! every output is the same sum in the same order whatever the thread count (a unit test runs
//! each direction on 1 and 3 threads and compares the bits).

use crate::geom::ConvGeom;
use crate::ops::matmul::{matmul, MatRef};
use crate::ops::scratch::Scratch;
use crate::ops::{c, Real};
use rayon::prelude::*;
mod weight_grad;
pub use weight_grad::backward_weight;

/// Channels below which im2col + GEMM is faster (the 16 GEMMs get too thin): measured with the
/// `conv` bench items; the RGB stem (3 channels) stays on im2col.
const MIN_CHANNELS: usize = 16;

/// Tiles per group: enough columns for each of the 16 GEMMs to run near the GEMM's rate, few
/// enough that a group's transformed input and product stay near the cache.
const MIN_TILES: usize = 64;

/// Runs `f` on each `chunk`-long piece of `data` with its index, on rayon's threads when
/// `parallel` (a group that has the machine to itself) and in order otherwise (groups that run
/// side by side already).
fn chunks<T: Send>(
    data: &mut [T],
    chunk: usize,
    parallel: bool,
    f: impl Fn((usize, &mut [T])) + Sync + Send,
) {
    if parallel {
        data.par_chunks_mut(chunk).enumerate().for_each(f);
    } else {
        data.chunks_mut(chunk).enumerate().for_each(f);
    }
}

/// Whether this convolution runs through Winograd on the CPU.
pub fn applies(g: &ConvGeom) -> bool {
    g.k == 3
        && g.stride == 1
        && g.pad == 1
        && g.h_out().is_multiple_of(2)
        && g.w_out().is_multiple_of(2)
        && g.c_in >= MIN_CHANNELS
        && g.c_out >= MIN_CHANNELS
}

/// U[e][o][i] = (G f Gᵀ)[e] for each 3x3 filter f, G = [[1,0,0],[½,½,½],[½,-½,½],[0,0,1]]: with
/// `adjoint` false, o = co and i = ci (the forward convolution); with it true, o = ci, i = co and
/// f turned by 180° (backward-data's convolution). Rows are spread over the threads.
fn transform_weights<T: Real>(w: &[T], c_out: usize, c_in: usize, adjoint: bool) -> Scratch<T> {
    let plane = c_out * c_in;
    let (rows, cols) = if adjoint {
        (c_in, c_out)
    } else {
        (c_out, c_in)
    };
    let mut u = Scratch::take(16 * plane);
    let half: T = c(0.5);
    // Transform into [o][e][i] (each task writes its own rows), then regroup by e.
    let mut by_row = Scratch::take(16 * plane);
    by_row
        .par_chunks_mut(16 * cols)
        .enumerate()
        .for_each(|(o, dst)| {
            for i in 0..cols {
                let (co, ci) = if adjoint { (i, o) } else { (o, i) };
                let src = &w[(co * c_in + ci) * 9..][..9];
                let k = |r: usize, q: usize| {
                    if adjoint {
                        src[8 - (r * 3 + q)]
                    } else {
                        src[r * 3 + q]
                    }
                };
                // G f: column q of f gives column q of the 4 x 3 product.
                let gcols: [[T; 4]; 3] = std::array::from_fn(|q| {
                    let (a, b, d) = (k(0, q), k(1, q), k(2, q));
                    [a, (a + b + d) * half, (a - b + d) * half, d]
                });
                let t: [[T; 3]; 4] = std::array::from_fn(|r| std::array::from_fn(|q| gcols[q][r]));
                for (r, tr) in t.iter().enumerate() {
                    let (a, b, d) = (tr[0], tr[1], tr[2]);
                    let row = [a, (a + b + d) * half, (a - b + d) * half, d];
                    for (q, &v) in row.iter().enumerate() {
                        dst[(r * 4 + q) * cols + i] = v;
                    }
                }
            }
        });
    u.par_chunks_mut(plane).enumerate().for_each(|(e, ue)| {
        for (o, dst) in ue.chunks_mut(cols).enumerate() {
            dst.copy_from_slice(&by_row[(o * 16 + e) * cols..][..cols]);
        }
    });
    debug_assert_eq!(u.len(), 16 * rows * cols);
    u
}

/// The geometry of one group: `samples` consecutive samples, `th x tw` tiles each.
#[derive(Clone, Copy)]
struct Tiles {
    th: usize,
    tw: usize,
    samples: usize,
}

impl Tiles {
    fn per_sample(&self) -> usize {
        self.th * self.tw
    }
    fn cols(&self) -> usize {
        self.samples * self.per_sample()
    }
}

/// V[e][ci][col] = (Bᵀ d B)[e] for each tile's 4x4 input patch d (zero outside the image),
/// Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]; col = sample * tiles + ty * tw + tx.
/// Each e's matrix is contiguous, as the forward GEMMs read it fastest.
fn transform_input<T: Real>(g: &ConvGeom, t: Tiles, xs: &[T], v: &mut [T]) {
    let cols = t.cols();
    let stride_e = g.c_in * cols;
    let mut rows = PaddedRows::new(g);
    for ci in 0..g.c_in {
        transform_channel(g, t, xs, ci, v, &mut rows, |e| e * stride_e + ci * cols);
    }
}

/// The working rows of `transform_channel`: a zero-bordered copy of one plane (only its
/// interior is ever written, so the border stays zero from plane to plane) and Bᵀ d's 4 rows.
struct PaddedRows<T> {
    padded: Vec<T>,
    s: Vec<T>,
    /// One row of Bᵀ d split into its even and odd columns (w / 2 + 1 each).
    even: Vec<T>,
    odd: Vec<T>,
}

impl<T: Real> PaddedRows<T> {
    fn new(g: &ConvGeom) -> Self {
        let wp = g.w + 2;
        PaddedRows {
            padded: vec![T::zero(); (g.h + 2) * wp],
            s: vec![T::zero(); 4 * wp],
            even: vec![T::zero(); wp / 2],
            odd: vec![T::zero(); wp / 2],
        }
    }
}

/// One input channel of `transform_input`, element e's columns written from `start(e)` on.
/// The plane is copied into the zero-bordered one first, so the arithmetic runs over whole rows
/// without bounds tests.
fn transform_channel<T: Real>(
    g: &ConvGeom,
    t: Tiles,
    xs: &[T],
    ci: usize,
    v: &mut [T],
    rows: &mut PaddedRows<T>,
    start: impl Fn(usize) -> usize,
) {
    let (wp, tw) = (g.w + 2, t.tw);
    let PaddedRows {
        padded,
        s,
        even,
        odd,
    } = rows;
    for j in 0..t.samples {
        let plane = &xs[(j * g.c_in + ci) * g.h * g.w..][..g.h * g.w];
        for (y, row) in plane.chunks(g.w).enumerate() {
            padded[(y + 1) * wp + 1..][..g.w].copy_from_slice(row);
        }
        for ty in 0..t.th {
            // Bᵀ d over whole padded rows 2ty .. 2ty+4.
            let p = |r: usize| &padded[(2 * ty + r) * wp..][..wp];
            let [s0, s1, s2, s3] = quarters(s, wp);
            map2(s0, p(0), p(2), |a, b| a - b);
            map2(s1, p(1), p(2), |a, b| a + b);
            map2(s2, p(2), p(1), |a, b| a - b);
            map2(s3, p(1), p(3), |a, b| a - b);
            let base = (j * t.th + ty) * tw;
            for (r, sr) in s.chunks_exact(wp).enumerate() {
                // (Bᵀ d) B: tile tx reads columns 2tx .. 2tx+4, that is even[tx], odd[tx],
                // even[tx+1], odd[tx+1] (the padded width is even).
                for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(sr.chunks_exact(2)) {
                    (*e, *o) = (pair[0], pair[1]);
                }
                let (e0, e1, o0, o1) = (&even[..tw], &even[1..], &odd[..tw], &odd[1..]);
                let mut out = |q: usize, x: &[T], y: &[T], f: fn(T, T) -> T| {
                    map2(&mut v[start(r * 4 + q) + base..][..tw], x, y, f)
                };
                out(0, e0, e1, |a, b| a - b);
                out(1, o0, e1, |a, b| a + b);
                out(2, e1, o0, |a, b| a - b);
                out(3, o0, o1, |a, b| a - b);
            }
        }
    }
}

/// out[i] = f(x[i], y[i]) over the shortest of the three: written as a zip so that the
/// compiler drops the bounds checks and vectorises the transforms' channel and tile loops.
#[inline(always)]
fn map2<T: Real>(out: &mut [T], x: &[T], y: &[T], f: impl Fn(T, T) -> T) {
    for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
        *o = f(a, b);
    }
}

/// out[i] = f(x[i], y[i], z[i]), as `map2`.
#[inline(always)]
fn map3<T: Real>(out: &mut [T], x: &[T], y: &[T], z: &[T], f: impl Fn(T, T, T) -> T) {
    for (((o, &a), &b), &c) in out.iter_mut().zip(x).zip(y).zip(z) {
        *o = f(a, b, c);
    }
}

/// The four consecutive `len`-long pieces of `s`.
fn quarters<T>(s: &mut [T], len: usize) -> [&mut [T]; 4] {
    let (a, rest) = s.split_at_mut(len);
    let (b, rest) = rest.split_at_mut(len);
    let (c, d) = rest.split_at_mut(len);
    [a, b, c, &mut d[..len]]
}

/// Row e of a channel-major transformed matrix ([channel][e][col]) as a channels x cols view.
fn element<T>(data: &[T], e: usize, channels: usize, cols: usize) -> MatRef<'_, T> {
    MatRef {
        data: &data[e * cols..],
        rows: channels,
        cols,
        rs: 16 * cols,
        cs: 1,
    }
}

/// y's 2x2 tiles from M[e][co][col]: Aᵀ m A, Aᵀ = [[1,1,1,0],[0,1,-1,-1]]. Every output is
/// written (the output's height and width are even).
fn transform_output<T: Real>(g: &ConvGeom, t: Tiles, m: &[T], ys: &mut [T], parallel: bool) {
    let cols = t.cols();
    let stride_e = g.c_out * cols;
    let wo = g.w_out();
    let y_per = g.c_out * g.hw_out();
    let tw = t.tw;
    chunks(ys, y_per, parallel, |(j, yj)| {
        let mut s = vec![T::zero(); 8 * tw];
        let mut halves = vec![T::zero(); 2 * tw];
        for (co, plane) in yj.chunks_mut(g.hw_out()).enumerate() {
            for ty in 0..t.th {
                let base = co * cols + (j * t.th + ty) * tw;
                let e = |i: usize| &m[i * stride_e + base..][..tw];
                // Aᵀ m: s[r * 4 + q] is row r of the 2 x 4 product, over the tile row's tiles.
                let (row0, row1) = s.split_at_mut(4 * tw);
                for q in 0..4 {
                    let (m0, m1, m2, m3) = (e(q), e(4 + q), e(8 + q), e(12 + q));
                    let (a, b) = (&mut row0[q * tw..][..tw], &mut row1[q * tw..][..tw]);
                    map3(a, m0, m1, m2, |x, y, z| x + y + z);
                    map3(b, m1, m2, m3, |x, y, z| x - y - z);
                }
                for r in 0..2 {
                    let sr = |q: usize| &s[(r * 4 + q) * tw..][..tw];
                    let (lo, hi) = halves.split_at_mut(tw);
                    map3(lo, sr(0), sr(1), sr(2), |a, b, c| a + b + c);
                    map3(hi, sr(1), sr(2), sr(3), |b, c, d| b - c - d);
                    let out = &mut plane[(2 * ty + r) * wo..][..wo];
                    for (pair, (&l, &h)) in out.chunks_exact_mut(2).zip(lo.iter().zip(hi.iter())) {
                        (pair[0], pair[1]) = (l, h);
                    }
                }
            }
        }
    });
}

/// One group: transform, 16 GEMMs (in parallel when `parallel_gemms`), transform back.
fn group<T: Real>(g: &ConvGeom, u: &[T], t: Tiles, xs: &[T], ys: &mut [T], parallel_gemms: bool) {
    let cols = t.cols();
    let (in_e, out_e) = (g.c_in * cols, g.c_out * cols);
    let mut v = Scratch::take(16 * in_e);
    transform_input(g, t, xs, &mut v);
    let mut m = Scratch::take(16 * out_e);
    let gemm = |(e, me): (usize, &mut [T])| {
        let a = MatRef::rm(
            &u[e * g.c_out * g.c_in..][..g.c_out * g.c_in],
            g.c_out,
            g.c_in,
        );
        let b = MatRef::rm(&v[e * in_e..][..in_e], g.c_in, cols);
        matmul(me, a, b, false, false);
    };
    chunks(&mut m, out_e, parallel_gemms, gemm);
    transform_output(g, t, &m, ys, parallel_gemms);
}

/// y = conv(x, w) for a convolution where `applies(g)`.
pub fn forward<T: Real>(g: &ConvGeom, x: &[T], w: &[T], y: &mut [T]) {
    debug_assert!(applies(g));
    let u = transform_weights(w, g.c_out, g.c_in, false);
    run_groups(g, &u, x, y);
}

/// y = conv(x, ·) from the transformed weights `u`, group by group.
fn run_groups<T: Real>(g: &ConvGeom, u: &[T], x: &[T], y: &mut [T]) {
    let (th, tw) = (g.h_out() / 2, g.w_out() / 2);
    let per = MIN_TILES.div_ceil(th * tw).clamp(1, g.n.max(1));
    let (x_per, y_per) = (g.c_in * g.h * g.w, g.c_out * g.hw_out());
    let run = |(gi, ys): (usize, &mut [T]), parallel_gemms: bool| {
        let samples = ys.len() / y_per;
        let t = Tiles { th, tw, samples };
        let xs = &x[gi * per * x_per..][..samples * x_per];
        group(g, u, t, xs, ys, parallel_gemms);
    };
    if g.n.div_ceil(per) > 1 {
        y.par_chunks_mut(per * y_per)
            .enumerate()
            .for_each(|p| run(p, false));
    } else {
        run((0, y), true);
    }
}

/// dx from w and dy for a convolution where `applies(g)`: at stride 1 and pad 1 the adjoint of
/// a 3x3 convolution is the 3x3 convolution of dy with each filter turned by 180° and the
/// channel axes swapped.
pub fn backward_data<T: Real>(g: &ConvGeom, w: &[T], dy: &[T], dx: &mut [T]) {
    let gt = ConvGeom {
        c_in: g.c_out,
        c_out: g.c_in,
        h: g.h_out(),
        w: g.w_out(),
        ..*g
    };
    let u = transform_weights(w, g.c_out, g.c_in, true);
    run_groups(&gt, &u, dy, dx);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ops::conv::cpu;

    pub(super) fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }

    pub(super) fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    fn geom(n: usize, c_in: usize, c_out: usize, h: usize, w: usize) -> ConvGeom {
        ConvGeom {
            n,
            c_in,
            h,
            w,
            c_out,
            k: 3,
            stride: 1,
            pad: 1,
        }
    }

    /// Shapes that cover one group, several groups, non-square maps and 2x2 maps.
    pub(super) fn cases() -> Vec<ConvGeom> {
        vec![
            geom(3, 16, 24, 8, 6),
            geom(2, 20, 16, 2, 2),
            geom(40, 16, 16, 4, 4),
            geom(1, 16, 17, 10, 12),
        ]
    }

    #[test]
    fn forward_and_both_backward_directions_match_the_direct_sums_in_f64() {
        for (i, g) in cases().into_iter().enumerate() {
            assert!(applies(&g));
            let x = values(g.x_len(), 1 + i as u64);
            let w = values(g.w_len(), 11 + i as u64);
            let dy = values(g.y_len(), 21 + i as u64);
            let (mut y, mut want) = (vec![0.0; g.y_len()], vec![0.0; g.y_len()]);
            forward(&g, &x, &w, &mut y);
            cpu::forward_naive(&g, &x, &w, &mut want);
            let err = max_diff(&y, &want);
            assert!(err < 1e-12, "{g:?}: forward off by {err}");
            // <dy, conv(x)> = <backward_data(dy), x> for every x: the adjoint identity.
            let mut dx = vec![0.0; g.x_len()];
            backward_data(&g, &w, &dy, &mut dx);
            let lhs: f64 = dy.iter().zip(&want).map(|(a, b)| a * b).sum();
            let rhs: f64 = dx.iter().zip(&x).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-10 * lhs.abs().max(1.0),
                "{g:?}: {lhs} vs {rhs}"
            );
            // <dy, conv(x; w)> = <backward_weight(x, dy), w> for every w.
            let mut dw = vec![0.0; g.w_len()];
            backward_weight(&g, &x, &dy, &mut dw);
            let rhs: f64 = dw.iter().zip(&w).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-10 * lhs.abs().max(1.0),
                "{g:?}: {lhs} vs {rhs} (dw)"
            );
            let mut im2col_dw = vec![0.0; g.w_len()];
            cpu::im2col_backward_weight(&g, &x, &dy, &mut im2col_dw);
            let err = max_diff(&dw, &im2col_dw);
            assert!(err < 1e-10, "{g:?}: dw off by {err}");
        }
    }

    #[test]
    fn f32_stays_within_a_few_roundings_of_the_exact_sum() {
        let g = geom(2, 256, 64, 8, 8);
        let x32: Vec<f32> = values(g.x_len(), 5).iter().map(|&v| v as f32).collect();
        let w32: Vec<f32> = values(g.w_len(), 6).iter().map(|&v| v as f32).collect();
        let widen = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let mut exact = vec![0.0; g.y_len()];
        cpu::forward_naive(&g, &widen(&x32), &widen(&w32), &mut exact);
        let mut y = vec![0f32; g.y_len()];
        forward(&g, &x32, &w32, &mut y);
        let scale = exact.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = y
            .iter()
            .zip(&exact)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        // 2304-term sums of products in [-1, 1]: f32's 6e-8 unit roundoff times a small factor.
        assert!(err < 2e-6 * scale, "max error {err} of {scale}");
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        // Several groups in every direction (and several weight-gradient chains), then one.
        for g in [geom(12, 16, 24, 32, 32), geom(2, 16, 16, 8, 8)] {
            let f = |n: usize, seed: u64| -> Vec<f32> {
                values(n, seed).iter().map(|&v| v as f32).collect()
            };
            let (x, w, dy) = (f(g.x_len(), 7), f(g.w_len(), 8), f(g.y_len(), 9));
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let mut y = vec![0f32; g.y_len()];
                    let mut dx = vec![0f32; g.x_len()];
                    let mut dw = vec![0f32; g.w_len()];
                    forward(&g, &x, &w, &mut y);
                    backward_data(&g, &w, &dy, &mut dx);
                    backward_weight(&g, &x, &dy, &mut dw);
                    (y, dx, dw)
                })
            };
            assert!(run(1) == run(3), "{g:?}: 1 and 3 threads differ");
        }
    }
}
