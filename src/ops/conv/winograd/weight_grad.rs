//! The weight gradient of a Winograd convolution: dU[e] = Σ_tiles dM[e] · V[e], one GEMM per
//! element e of the transformed tile with the tiles as its long inner dimension, then
//! dw = Gᵀ dU G.

use super::{applies, chunks, element, map2, quarters, Tiles};
use crate::geom::ConvGeom;
use crate::ops::matmul::{matmul, MatRef};
use crate::ops::scratch::Scratch;
use crate::ops::{c, Real};
use rayon::prelude::*;

/// Tiles per group of the weight gradient (the GEMMs' inner dimension): measured with the
/// `conv` bench items against 512 and 4096, 1024 was as fast or faster on every ResNet18 layer.
const MIN_WGRAD_TILES: usize = 1024;

/// Chains of groups the weight gradient runs side by side: enough to keep the threads busy,
/// few enough that their partial sums stay small. Fixed, so the sum does not depend on the
/// thread count.
const WGRAD_CHAINS: usize = 8;

/// dw from x and dy for a convolution where `applies(g)`.
pub fn backward_weight<T: Real>(g: &ConvGeom, x: &[T], dy: &[T], dw: &mut [T]) {
    backward_weight_in_groups(g, x, dy, dw, MIN_WGRAD_TILES);
}

/// dU[e] = Σ_groups dM[e] · V[e] over groups of whole samples with at least `min_tiles` tiles,
/// then dw = Gᵀ dU G. Consecutive groups form at most `WGRAD_CHAINS` chains; each chain adds
/// its groups' products in group order (the GEMMs accumulate), then the chains' sums are added
/// in chain order. With one group, its 16 GEMMs run in parallel instead.
fn backward_weight_in_groups<T: Real>(
    g: &ConvGeom,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    min_tiles: usize,
) {
    debug_assert!(applies(g));
    let (th, tw) = (g.h_out() / 2, g.w_out() / 2);
    let per = min_tiles.div_ceil(th * tw).clamp(1, g.n.max(1));
    let groups = g.n.div_ceil(per);
    let (x_per, y_per, plane) = (g.c_in * g.h * g.w, g.c_out * g.hw_out(), g.c_out * g.c_in);
    // One group's dU[e] (+)= dM[e] · V[e] into `du`.
    let group = |gi: usize, du: &mut [T], accumulate: bool, parallel_gemms: bool| {
        let samples = per.min(g.n - gi * per);
        let t = Tiles { th, tw, samples };
        let cols = t.cols();
        let (in_e, out_e) = (g.c_in * cols, g.c_out * cols);
        let mut v = Scratch::take(16 * in_e);
        let xs = &x[gi * per * x_per..][..samples * x_per];
        transform_input_tile_major(g, t, xs, &mut v);
        let mut dm = Scratch::take(16 * out_e);
        let dys = &dy[gi * per * y_per..][..samples * y_per];
        transform_output_adjoint(g, t, dys, &mut dm, parallel_gemms);
        let gemm = |(e, de): (usize, &mut [T])| {
            let a = element(&dm, e, g.c_out, cols);
            let b = MatRef::rm(&v[e * in_e..][..in_e], cols, g.c_in);
            matmul(de, a, b, accumulate, false);
        };
        chunks(du, plane, parallel_gemms, gemm);
    };
    let mut du = Scratch::take(16 * plane);
    if groups == 1 {
        group(0, &mut du, false, true);
    } else {
        let per_chain = groups.div_ceil(WGRAD_CHAINS);
        let chain = |ci: usize| {
            let mut acc = Scratch::take(16 * plane);
            let end = ((ci + 1) * per_chain).min(groups);
            for gi in ci * per_chain..end {
                group(gi, &mut acc, gi > ci * per_chain, false);
            }
            acc
        };
        let sums: Vec<Scratch<T>> = (0..groups.div_ceil(per_chain))
            .into_par_iter()
            .map(chain)
            .collect();
        du.copy_from_slice(&sums[0]);
        for p in &sums[1..] {
            du.iter_mut().zip(p.iter()).for_each(|(d, v)| *d += *v);
        }
    }
    transform_weights_adjoint(&du, g.c_out, g.c_in, dw);
}

/// Copies sample `xs` ([c][h][w]) into the interior of `padded` ([h+2][w+2][c], its border
/// left as it is), 16 channels at a time so that each pixel's write is one contiguous run.
fn to_padded_hwc<T: Real>(g: &ConvGeom, xs: &[T], padded: &mut [T]) {
    let (c, wp, hw) = (g.c_in, g.w + 2, g.h * g.w);
    for y in 0..g.h {
        let row = &mut padded[(y + 1) * wp * c..][..wp * c];
        for c0 in (0..c).step_by(16) {
            let cb = (c - c0).min(16);
            let src: [&[T]; 16] =
                std::array::from_fn(|k| &xs[(c0 + k.min(cb - 1)) * hw + y * g.w..][..g.w]);
            for (x, px) in row[c..].chunks_exact_mut(c).take(g.w).enumerate() {
                for (k, d) in px[c0..c0 + cb].iter_mut().enumerate() {
                    *d = src[k][x];
                }
            }
        }
    }
}

/// V[e][col][ci] = (Bᵀ d B)[e] for each tile's 4x4 input patch d: the transformed input with the
/// channels innermost, so the weight gradient's GEMMs read it as a row-major [tiles, c_in]
/// matrix (a k-contiguous second operand halves gemm's rate). Each sample is first copied into
/// a zero-bordered [h+2][w+2][c_in] buffer, so a tile row's four pixels are 4 * c_in
/// contiguous values and the arithmetic runs over whole channel vectors.
fn transform_input_tile_major<T: Real>(g: &ConvGeom, t: Tiles, xs: &[T], v: &mut [T]) {
    let (c, cols, wp) = (g.c_in, t.cols(), g.w + 2);
    let mut padded = Scratch::take((g.h + 2) * wp * c);
    // Only the border needs zeros: the interior is overwritten by every sample.
    let (top, rest) = padded.split_at_mut(wp * c);
    top.fill(T::zero());
    for row in rest.chunks_exact_mut(wp * c) {
        row[..c].fill(T::zero());
        row[(wp - 1) * c..].fill(T::zero());
    }
    let last = (g.h + 1) * wp * c;
    padded[last..].fill(T::zero());
    let mut s = Scratch::take(16 * c);
    for j in 0..t.samples {
        to_padded_hwc(g, &xs[j * c * g.h * g.w..][..c * g.h * g.w], &mut padded);
        for ty in 0..t.th {
            for tx in 0..t.tw {
                let col = (j * t.th + ty) * t.tw + tx;
                // Bᵀ d: s[r] holds row r of the 4x4 product, 4 pixels x c channels.
                let d = |r: usize| &padded[((2 * ty + r) * wp + 2 * tx) * c..][..4 * c];
                let [s0, s1, s2, s3] = quarters(&mut s, 4 * c);
                map2(s0, d(0), d(2), |a, b| a - b);
                map2(s1, d(1), d(2), |a, b| a + b);
                map2(s2, d(2), d(1), |a, b| a - b);
                map2(s3, d(1), d(3), |a, b| a - b);
                // (Bᵀ d) B along each row's 4 pixels.
                for (r, sr) in s.chunks_exact(4 * c).enumerate() {
                    let p = |q: usize| &sr[q * c..][..c];
                    let out = |q: usize| (r * 4 + q) * cols * c + col * c;
                    map2(&mut v[out(0)..][..c], p(0), p(2), |a, b| a - b);
                    map2(&mut v[out(1)..][..c], p(1), p(2), |a, b| a + b);
                    map2(&mut v[out(2)..][..c], p(2), p(1), |a, b| a - b);
                    map2(&mut v[out(3)..][..c], p(1), p(3), |a, b| a - b);
                }
            }
        }
    }
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
    let tw = t.tw;
    chunks(dm, 16 * cols, parallel, |(co, dmc)| {
        // A tile row's dy values, deinterleaved (a b / c d for every tx), and a row of A dy.
        let mut abcd = vec![T::zero(); 4 * tw];
        let mut pq = vec![T::zero(); 2 * tw];
        for j in 0..t.samples {
            let plane = &dys[(j * g.c_out + co) * g.hw_out()..][..g.hw_out()];
            for ty in 0..t.th {
                let base = (j * t.th + ty) * tw;
                let [a, b, cc, d] = quarters(&mut abcd, tw);
                for (r, (x, y)) in [(&mut *a, &mut *b), (&mut *cc, &mut *d)]
                    .into_iter()
                    .enumerate()
                {
                    let src = &plane[(2 * ty + r) * wo..][..wo];
                    for ((x, y), pair) in x.iter_mut().zip(y.iter_mut()).zip(src.chunks_exact(2)) {
                        (*x, *y) = (pair[0], pair[1]);
                    }
                }
                let (p, q) = pq.split_at_mut(tw);
                // Rows of A dy: (p, q) = (a, b), (a+c, b+d), (a-c, b-d), (-c, -d); each row
                // times Aᵀ is [p, p+q, p-q, -q].
                for r in 0..4 {
                    match r {
                        0 => {
                            p.copy_from_slice(a);
                            q.copy_from_slice(b);
                        }
                        1 => {
                            map2(p, a, cc, |x, y| x + y);
                            map2(q, b, d, |x, y| x + y);
                        }
                        2 => {
                            map2(p, a, cc, |x, y| x - y);
                            map2(q, b, d, |x, y| x - y);
                        }
                        _ => {
                            map2(p, cc, cc, |x, _| -x);
                            map2(q, d, d, |x, _| -x);
                        }
                    }
                    let rows = &mut dmc[r * 4 * cols..][..4 * cols];
                    let [e0, e1, e2, e3] = quarters(rows, cols);
                    e0[base..][..tw].copy_from_slice(p);
                    map2(&mut e1[base..][..tw], p, q, |x, y| x + y);
                    map2(&mut e2[base..][..tw], p, q, |x, y| x - y);
                    map2(&mut e3[base..][..tw], q, q, |x, _| -x);
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

#[cfg(test)]
mod tests {
    use super::super::tests::{cases, max_diff, values};
    use super::*;
    use crate::ops::conv::cpu;

    #[test]
    fn any_grouping_into_chains_gives_the_im2col_weight_gradient_in_f64() {
        // 1 tile per group (many groups, several per chain), 12 (a short last group), and the
        // default (one group).
        for g in cases() {
            let x = values(g.x_len(), 3);
            let dy = values(g.y_len(), 4);
            let mut want = vec![0.0; g.w_len()];
            cpu::im2col_backward_weight(&g, &x, &dy, &mut want);
            for min_tiles in [1, 12, MIN_WGRAD_TILES] {
                let mut dw = vec![0.0; g.w_len()];
                backward_weight_in_groups(&g, &x, &dy, &mut dw, min_tiles);
                let err = max_diff(&dw, &want);
                assert!(
                    err < 1e-10,
                    "{g:?}, {min_tiles} tiles per group: off by {err}"
                );
            }
        }
    }
}
