//! Winograd F(2x2, 3x3) for the CPU's 3x3 stride-1 pad-1 convolutions, forward and
//! backward-data (which, at stride 1, is the forward convolution of dy with the flipped,
//! transposed weights).
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
//! every output is the same sum in the same order whatever the thread count.

use crate::geom::ConvGeom;
use crate::ops::matmul::{matmul, MatRef};
use crate::ops::scratch::Scratch;
use crate::ops::{c, Real};
use rayon::prelude::*;

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

/// Where element e of channel ch of a transformed matrix ([e][ch][col] or [ch][e][col]) starts.
#[derive(Clone, Copy)]
enum Layout {
    /// [e][ch][col]: each e's matrix is contiguous (the forward GEMMs read it fastest).
    ElementMajor,
    /// [ch][e][col]: each channel's part is contiguous, so channels are transformed in
    /// parallel; each e's matrix is a view with row stride 16 * cols.
    ChannelMajor { parallel: bool },
}

/// V[e][ci][col] = (Bᵀ d B)[e] (in `layout`) for each tile's 4x4 input patch d (zero outside
/// the image), Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]; col = sample * tiles + ty *
/// tw + tx.
fn transform_input<T: Real>(g: &ConvGeom, t: Tiles, xs: &[T], v: &mut [T], layout: Layout) {
    let cols = t.cols();
    match layout {
        Layout::ElementMajor => {
            let stride_e = g.c_in * cols;
            let mut rows = PaddedRows::new(g);
            for ci in 0..g.c_in {
                transform_channel(g, t, xs, ci, v, &mut rows, |e| e * stride_e + ci * cols);
            }
        }
        Layout::ChannelMajor { parallel } => chunks(v, 16 * cols, parallel, |(ci, vc)| {
            transform_channel(g, t, xs, ci, vc, &mut PaddedRows::new(g), |e| e * cols)
        }),
    }
}

/// The working rows of `transform_channel`: a zero-bordered copy of one plane (only its
/// interior is ever written, so the border stays zero from plane to plane) and Bᵀ d's 4 rows.
struct PaddedRows<T> {
    padded: Vec<T>,
    s: Vec<T>,
}

impl<T: Real> PaddedRows<T> {
    fn new(g: &ConvGeom) -> Self {
        let wp = g.w + 2;
        PaddedRows {
            padded: vec![T::zero(); (g.h + 2) * wp],
            s: vec![T::zero(); 4 * wp],
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
    let wp = g.w + 2;
    let PaddedRows { padded, s } = rows;
    for j in 0..t.samples {
        let plane = &xs[(j * g.c_in + ci) * g.h * g.w..][..g.h * g.w];
        for (y, row) in plane.chunks(g.w).enumerate() {
            padded[(y + 1) * wp + 1..][..g.w].copy_from_slice(row);
        }
        for ty in 0..t.th {
            // Bᵀ d over whole padded rows 2ty .. 2ty+4.
            let p = |r: usize| &padded[(2 * ty + r) * wp..][..wp];
            let (p0, p1, p2, p3) = (p(0), p(1), p(2), p(3));
            let (s01, s23) = s.split_at_mut(2 * wp);
            let (s0, s1) = s01.split_at_mut(wp);
            let (s2, s3) = s23.split_at_mut(wp);
            for x in 0..wp {
                s0[x] = p0[x] - p2[x];
                s1[x] = p1[x] + p2[x];
                s2[x] = p2[x] - p1[x];
                s3[x] = p1[x] - p3[x];
            }
            let base = (j * t.th + ty) * t.tw;
            for (r, sr) in s.chunks(wp).enumerate() {
                let out = |q: usize| start(r * 4 + q) + base;
                let (o0, o1, o2, o3) = (out(0), out(1), out(2), out(3));
                // (Bᵀ d) B: columns 2tx .. 2tx+4 of each row.
                for tx in 0..t.tw {
                    let c0 = 2 * tx;
                    v[o0 + tx] = sr[c0] - sr[c0 + 2];
                    v[o1 + tx] = sr[c0 + 1] + sr[c0 + 2];
                    v[o2 + tx] = sr[c0 + 2] - sr[c0 + 1];
                    v[o3 + tx] = sr[c0 + 1] - sr[c0 + 3];
                }
            }
        }
    }
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
    chunks(ys, y_per, parallel, |(j, yj)| {
        let mut s = vec![T::zero(); 8 * t.tw];
        for (co, plane) in yj.chunks_mut(g.hw_out()).enumerate() {
            for ty in 0..t.th {
                let base = co * cols + (j * t.th + ty) * t.tw;
                let e = |i: usize| &m[i * stride_e + base..][..t.tw];
                // Aᵀ m: s[r * 4 + q] is row r of the 2 x 4 product, over the tile row's tiles.
                for q in 0..4 {
                    let (m0, m1, m2, m3) = (e(q), e(4 + q), e(8 + q), e(12 + q));
                    let (lo, hi) = s.split_at_mut(4 * t.tw);
                    let (a, b) = (&mut lo[q * t.tw..][..t.tw], &mut hi[q * t.tw..][..t.tw]);
                    for tx in 0..t.tw {
                        a[tx] = m0[tx] + m1[tx] + m2[tx];
                        b[tx] = m1[tx] - m2[tx] - m3[tx];
                    }
                }
                for r in 0..2 {
                    let sr = |q: usize| &s[(r * 4 + q) * t.tw..][..t.tw];
                    let (a, b, cq, d) = (sr(0), sr(1), sr(2), sr(3));
                    let out = &mut plane[(2 * ty + r) * wo..][..wo];
                    for tx in 0..t.tw {
                        out[2 * tx] = a[tx] + b[tx] + cq[tx];
                        out[2 * tx + 1] = b[tx] - cq[tx] - d[tx];
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
    transform_input(g, t, xs, &mut v, Layout::ElementMajor);
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

/// dM[co][e][col] = (A dy Aᵀ)[e] for each 2x2 tile of dy, A = [[1,0],[1,1],[1,-1],[0,-1]]: the
/// adjoint of `transform_output`, channel-major like `transform_input`.
fn transform_output_adjoint<T: Real>(
    g: &ConvGeom,
    t: Tiles,
    dys: &[T],
    dm: &mut [T],
    parallel: bool,
) {
    let cols = t.cols();
    let wo = g.w_out();
    chunks(dm, 16 * cols, parallel, |(co, dmc)| {
        for j in 0..t.samples {
            let plane = &dys[(j * g.c_out + co) * g.hw_out()..][..g.hw_out()];
            for ty in 0..t.th {
                let base = (j * t.th + ty) * t.tw;
                let (r0, r1) = (
                    &plane[2 * ty * wo..][..wo],
                    &plane[(2 * ty + 1) * wo..][..wo],
                );
                for tx in 0..t.tw {
                    let (a, b) = (r0[2 * tx], r0[2 * tx + 1]);
                    let (cc, d) = (r1[2 * tx], r1[2 * tx + 1]);
                    // Rows of A dy: [a b], [a+c b+d], [a-c b-d], [-c -d]; each times Aᵀ.
                    let rows = [(a, b), (a + cc, b + d), (a - cc, b - d), (-cc, -d)];
                    for (r, &(p, q)) in rows.iter().enumerate() {
                        let vals = [p, p + q, p - q, -q];
                        for (k, &v) in vals.iter().enumerate() {
                            dmc[(r * 4 + k) * cols + base + tx] = v;
                        }
                    }
                }
            }
        }
    });
}

/// dw[co][ci] = Gᵀ dU[·][co][ci] G: the adjoint of `transform_weights`.
fn transform_weights_adjoint<T: Real>(du: &[T], c_out: usize, c_in: usize, dw: &mut [T]) {
    let plane = c_out * c_in;
    let half: T = c(0.5);
    // Gᵀ applied to a 4-vector: [v0 + ½v1 + ½v2, ½v1 - ½v2, ½v1 + ½v2 + v3].
    let gt = |v: [T; 4]| {
        [
            v[0] + (v[1] + v[2]) * half,
            (v[1] - v[2]) * half,
            (v[1] + v[2]) * half + v[3],
        ]
    };
    dw.par_chunks_mut(9).enumerate().for_each(|(o, f)| {
        let e = |r: usize, q: usize| du[(r * 4 + q) * plane + o];
        let cols: [[T; 3]; 4] = std::array::from_fn(|q| gt([e(0, q), e(1, q), e(2, q), e(3, q)]));
        for a in 0..3 {
            let row = gt([cols[0][a], cols[1][a], cols[2][a], cols[3][a]]);
            f[a * 3..a * 3 + 3].copy_from_slice(&row);
        }
    });
}

/// Whether the weight gradient runs through Winograd: only for maps of at most this many
/// outputs, where its 16 GEMMs have long inner dimensions; on larger maps im2col + GEMM is
/// faster (the `conv` bench items: 4x4 maps 1.7x faster through Winograd, 8x8 even, 16x16 and
/// 32x32 slower).
pub fn applies_to_weight_gradient(g: &ConvGeom) -> bool {
    applies(g) && g.hw_out() <= MAX_WGRAD_OUTPUTS
}

const MAX_WGRAD_OUTPUTS: usize = 16;

/// Tiles per group of the weight gradient: the tiles are the GEMMs' inner dimension, so longer
/// groups mean fewer partial sums to add up.
const MIN_WGRAD_TILES: usize = 1024;

/// dw from x and dy for a convolution where `applies(g)`: dU[e] = Σ_groups dM[e] · V[e]ᵀ, the
/// groups' partial sums added in group order, then dw = Gᵀ dU G.
pub fn backward_weight<T: Real>(g: &ConvGeom, x: &[T], dy: &[T], dw: &mut [T]) {
    debug_assert!(applies(g));
    let (th, tw) = (g.h_out() / 2, g.w_out() / 2);
    let per = MIN_WGRAD_TILES.div_ceil(th * tw).clamp(1, g.n.max(1));
    let groups = g.n.div_ceil(per);
    let (x_per, y_per, plane) = (g.c_in * g.h * g.w, g.c_out * g.hw_out(), g.c_out * g.c_in);
    let partial = |gi: usize, parallel_gemms: bool| {
        let samples = per.min(g.n - gi * per);
        let t = Tiles { th, tw, samples };
        let cols = t.cols();
        let (in_e, out_e) = (g.c_in * cols, g.c_out * cols);
        let mut v = Scratch::take(16 * in_e);
        let xs = &x[gi * per * x_per..][..samples * x_per];
        let layout = Layout::ChannelMajor {
            parallel: parallel_gemms,
        };
        transform_input(g, t, xs, &mut v, layout);
        let mut dm = Scratch::take(16 * out_e);
        let dys = &dy[gi * per * y_per..][..samples * y_per];
        transform_output_adjoint(g, t, dys, &mut dm, parallel_gemms);
        let mut du = Scratch::take(16 * plane);
        let gemm = |(e, de): (usize, &mut [T])| {
            let (a, b) = (element(&dm, e, g.c_out, cols), element(&v, e, g.c_in, cols));
            matmul(de, a, b.t(), false, false);
        };
        chunks(&mut du, plane, parallel_gemms, gemm);
        du
    };
    let partials: Vec<Scratch<T>> = if groups > 1 {
        (0..groups)
            .into_par_iter()
            .map(|gi| partial(gi, false))
            .collect()
    } else {
        vec![partial(0, true)]
    };
    let mut du = Scratch::take(16 * plane);
    du.copy_from_slice(&partials[0]);
    for p in &partials[1..] {
        du.iter_mut().zip(p.iter()).for_each(|(d, v)| *d += *v);
    }
    transform_weights_adjoint(&du, g.c_out, g.c_in, dw);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::cpu;

    fn values(n: usize, seed: u64) -> Vec<f64> {
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

    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
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
    fn cases() -> Vec<ConvGeom> {
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
}
