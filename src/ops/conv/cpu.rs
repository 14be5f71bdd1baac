//! 2-D convolution without bias (every conv in ResNet18 and WRN-22-8 is bias-free).
//!
//! CPU path: im2col + GEMM over groups of samples whose column blocks sit side by side
//! (so late layers with 4x4 maps still get wide GEMMs). Forward `Y = W · col(X)`,
//! backward-data `dX = col2im(Wᵀ · dY)`, backward-weight `dW = Σ_groups dY · col(X)ᵀ`.
//! Each direction first hands the shapes that have a faster path to it: Winograd for the
//! 3x3 stride-1 convolutions, and for f32 on AVX-512 the implicit GEMM (`implicit`: strided
//! weight gradients, maps with much padding), the forward with panels gathered from NCHW
//! (`gathered`: the other strided forwards), the 1x1 weight gradient from NCHW
//! (`pointwise`), the strided backward-data of small maps with sample-minor columns
//! (`sample_minor`) and the packed GEMM under im2col (the other gradients but the RGB
//! stem's). f64, the gradient checks' type, always takes im2col or Winograd with the `gemm`
//! crate.

use super::winograd;
#[cfg(target_arch = "x86_64")]
use super::{gathered, implicit, pointwise, sample_minor};
use crate::geom::ConvGeom;
use crate::ops::matmul::{matmul, matmul_with, Kernel, MatRef};
use crate::ops::scratch::Scratch;
use crate::ops::Real;
use rayon::prelude::*;
use std::ops::Deref;

/// Writes sample `x`'s im2col block into `col`, whose rows are `ld` apart:
/// col[(ci*k + ky)*k + kx][oy*w_out + ox] = x[ci][oy*s - p + ky][ox*s - p + kx] (0 outside).
fn im2col<T: Real>(g: &ConvGeom, x: &[T], col: &mut [T], ld: usize) {
    let (ho, wo) = (g.h_out(), g.w_out());
    for ci in 0..g.c_in {
        let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = (ci * g.k + ky) * g.k + kx;
                let dst = &mut col[row * ld..row * ld + ho * wo];
                // Output columns whose input column lies inside the image: ox in [lo, hi).
                let lo = (g.pad.saturating_sub(kx)).div_ceil(g.stride).min(wo);
                let hi = ((g.w + g.pad - kx).div_ceil(g.stride)).clamp(lo, wo);
                for oy in 0..ho {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    let drow = &mut dst[oy * wo..(oy + 1) * wo];
                    if iy < 0 || iy >= g.h as isize {
                        drow.fill(T::zero());
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    drow[..lo].fill(T::zero());
                    drow[hi..].fill(T::zero());
                    let x0 = lo * g.stride + kx - g.pad;
                    if g.stride == 1 {
                        drow[lo..hi].copy_from_slice(&src[x0..x0 + hi - lo]);
                    } else {
                        for (j, d) in drow[lo..hi].iter_mut().enumerate() {
                            *d = src[x0 + j * g.stride];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of `im2col`: adds each column entry back onto the input pixel it came from.
fn col2im_add<T: Real>(g: &ConvGeom, col: &[T], ld: usize, dx: &mut [T]) {
    let (ho, wo) = (g.h_out(), g.w_out());
    for ci in 0..g.c_in {
        let plane = &mut dx[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = (ci * g.k + ky) * g.k + kx;
                let src = &col[row * ld..row * ld + ho * wo];
                let lo = (g.pad.saturating_sub(kx)).div_ceil(g.stride).min(wo);
                let hi = ((g.w + g.pad - kx).div_ceil(g.stride)).clamp(lo, wo);
                for oy in 0..ho {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let drow = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let x0 = lo * g.stride + kx - g.pad;
                    let srow = &src[oy * wo + lo..oy * wo + hi];
                    if g.stride == 1 {
                        // Contiguous on both sides: a slice zip the compiler vectorises.
                        for (d, &v) in drow[x0..x0 + srow.len()].iter_mut().zip(srow) {
                            *d += v;
                        }
                    } else {
                        for (j, &v) in srow.iter().enumerate() {
                            drow[x0 + j * g.stride] += v;
                        }
                    }
                }
            }
        }
    }
}

fn check(g: &ConvGeom, x: usize, w: usize, y: usize) {
    assert_eq!(x, g.x_len(), "conv: input length does not match {g:?}");
    assert_eq!(w, g.w_len(), "conv: weight length does not match {g:?}");
    assert_eq!(y, g.y_len(), "conv: output length does not match {g:?}");
}

/// Samples are processed in groups whose im2col matrices sit side by side, so each GEMM has at
/// least this many columns: late layers (4x4 maps) would otherwise run 16-column GEMMs.
const MIN_GEMM_COLS: usize = 1024;

/// im2col rows below which the products stay on the crate: the RGB stem's 27 rows ran half as
/// fast again packed in the gradients (its 27-wide weight gradient fills one 32-column panel,
/// and its 64-deep data gradient is too short to repay the packing), so its forward, with the
/// same 27-deep products, stays there too; from 64 rows (the 1x1 stride-2 shortcuts) up,
/// packed was as fast or faster (`conv` bench items).
const MIN_PACKED_ROWS: usize = 64;

/// The GEMM of backward-data and backward-weight: packed, whose operands here are transposed
/// in memory (the case the crate handles worst), except on the thin stem.
fn gradient_kernel(g: &ConvGeom) -> Kernel {
    if g.ckk() >= MIN_PACKED_ROWS {
        Kernel::Packed
    } else {
        Kernel::Crate
    }
}

/// Samples per group: every group but the last has this many.
fn group_size(g: &ConvGeom) -> usize {
    MIN_GEMM_COLS.div_ceil(g.hw_out()).clamp(1, g.n.max(1))
}

/// How the work of one conv is spread over threads: with several groups, one group per task
/// and single-threaded GEMMs (no synchronisation inside a group); with a single group, one
/// GEMM split by gemm itself.
fn groups_in_parallel(g: &ConvGeom) -> bool {
    g.n.div_ceil(group_size(g)) > 1
}

/// im2col of the `samples` consecutive samples in `xs` side by side: a [ckk, samples * hw]
/// matrix, every element written.
fn im2col_group<T: Real>(g: &ConvGeom, xs: &[T], samples: usize) -> Scratch<T> {
    let (ckk, hw, x_per) = (g.ckk(), g.hw_out(), g.c_in * g.h * g.w);
    let ld = samples * hw;
    let mut col = Scratch::take(ckk * ld);
    for j in 0..samples {
        let xn = &xs[j * x_per..(j + 1) * x_per];
        if g.is_pointwise() {
            for ci in 0..g.c_in {
                col[ci * ld + j * hw..ci * ld + (j + 1) * hw]
                    .copy_from_slice(&xn[ci * hw..(ci + 1) * hw]);
            }
        } else {
            im2col(g, xn, &mut col[j * hw..], ld);
        }
    }
    col
}

/// A matrix that is either a caller's slice as it is or a regrouped copy in scratch memory.
enum Grouped<'a, T: Real> {
    AsIs(&'a [T]),
    Copied(Scratch<T>),
}

impl<T: Real> Deref for Grouped<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Grouped::AsIs(s) => s,
            Grouped::Copied(s) => s,
        }
    }
}

/// dy of `samples` consecutive samples as one [c_out, samples * hw] matrix (one sample's dy
/// is that matrix already).
fn gather_dy<'a, T: Real>(g: &ConvGeom, dys: &'a [T], samples: usize) -> Grouped<'a, T> {
    if samples == 1 {
        return Grouped::AsIs(dys);
    }
    let hw = g.hw_out();
    let cols = samples * hw;
    let mut out = Scratch::take(g.c_out * cols);
    for j in 0..samples {
        for co in 0..g.c_out {
            let src = (j * g.c_out + co) * hw;
            out[co * cols + j * hw..co * cols + (j + 1) * hw].copy_from_slice(&dys[src..src + hw]);
        }
    }
    Grouped::Copied(out)
}

/// y = conv(x, w).
pub fn forward<T: Real>(g: &ConvGeom, x: &[T], w: &[T], y: &mut [T]) {
    check(g, x.len(), w.len(), y.len());
    #[cfg(target_arch = "x86_64")]
    if let (Some(xf), Some(wf), Some(yf)) = (T::as_f32(x), T::as_f32(w), T::as_f32_mut(y)) {
        if implicit::applies_forward(g) {
            return implicit::forward(g, xf, wf, yf);
        }
    }
    if winograd::applies(g) {
        return winograd::forward(g, x, w, y);
    }
    #[cfg(target_arch = "x86_64")]
    if let (Some(xf), Some(wf), Some(yf)) = (T::as_f32(x), T::as_f32(w), T::as_f32_mut(y)) {
        if g.ckk() >= MIN_PACKED_ROWS && gathered::applies(g) {
            return gathered::forward(g, xf, wf, yf);
        }
    }
    let (ckk, hw) = (g.ckk(), g.hw_out());
    let wm = MatRef::rm(w, g.c_out, ckk);
    forward_in_groups(g, x, y, |ys, col, samples, parallel| {
        let cols = samples * hw;
        let b = MatRef::rm(col, ckk, cols);
        if samples == 1 {
            // One sample's [c_out, hw] block is the GEMM's output as it is.
            matmul(ys, wm, b, false, parallel);
            return;
        }
        let mut out = Scratch::take(g.c_out * cols);
        matmul(&mut out, wm, b, false, parallel);
        // [c_out, samples * hw] → each sample's [c_out, hw] block.
        for (i, dst) in ys.chunks_mut(hw).enumerate() {
            let (j, co) = (i / g.c_out, i % g.c_out);
            dst.copy_from_slice(&out[co * cols + j * hw..co * cols + (j + 1) * hw]);
        }
    });
}

/// Runs `product(ys, col, samples, parallel)` for each group of samples: `col` is the group's
/// im2col matrix [ckk, samples * hw], `ys` the group's output samples, `parallel` whether the
/// product may use rayon's threads (one group alone) or not (groups side by side).
fn forward_in_groups<T: Real>(
    g: &ConvGeom,
    x: &[T],
    y: &mut [T],
    product: impl Fn(&mut [T], &[T], usize, bool) + Sync,
) {
    let (hw, x_per) = (g.hw_out(), g.c_in * g.h * g.w);
    let per = group_size(g);
    let parallel_groups = groups_in_parallel(g);
    let run = |(gi, ys): (usize, &mut [T])| {
        let samples = ys.len() / (g.c_out * hw);
        let xs = &x[gi * per * x_per..(gi * per + samples) * x_per];
        let col = im2col_group(g, xs, samples);
        product(ys, &col, samples, !parallel_groups);
    };
    let chunk = per * g.c_out * hw;
    if parallel_groups {
        y.par_chunks_mut(chunk).enumerate().for_each(run);
    } else {
        y.chunks_mut(chunk).enumerate().for_each(run);
    }
}

/// dx = conv backward with respect to the input (overwrites dx).
pub fn backward_data<T: Real>(g: &ConvGeom, w: &[T], dy: &[T], dx: &mut [T]) {
    check(g, dx.len(), w.len(), dy.len());
    #[cfg(target_arch = "x86_64")]
    if let (Some(wf), Some(dyf), Some(dxf)) = (T::as_f32(w), T::as_f32(dy), T::as_f32_mut(dx)) {
        if implicit::applies_backward_data(g) {
            return implicit::backward_data(g, wf, dyf, dxf);
        }
        if sample_minor::applies(g) {
            return sample_minor::backward_data(g, wf, dyf, dxf);
        }
    }
    if winograd::applies(g) {
        return winograd::backward_data(g, w, dy, dx);
    }
    im2col_backward_data(g, w, dy, dx);
}

/// The input gradient through GEMM + col2im, whatever the shape.
pub(super) fn im2col_backward_data<T: Real>(g: &ConvGeom, w: &[T], dy: &[T], dx: &mut [T]) {
    let (ckk, hw, x_per) = (g.ckk(), g.hw_out(), g.c_in * g.h * g.w);
    let per = group_size(g);
    let parallel_groups = groups_in_parallel(g);
    let wt = MatRef::rm(w, g.c_out, ckk).t();
    let y_per = g.c_out * hw;
    let run = |(gi, dxs): (usize, &mut [T])| {
        let samples = dxs.len() / x_per;
        let cols = samples * hw;
        let mut dcol = Scratch::take(ckk * cols);
        let dys = &dy[gi * per * y_per..(gi * per + samples) * y_per];
        let dyg = gather_dy(g, dys, samples);
        matmul_with(
            gradient_kernel(g),
            &mut dcol,
            wt,
            MatRef::rm(&dyg, g.c_out, cols),
            false,
            !parallel_groups,
        );
        for (j, dxn) in dxs.chunks_mut(x_per).enumerate() {
            if g.is_pointwise() {
                for ci in 0..g.c_in {
                    dxn[ci * hw..(ci + 1) * hw]
                        .copy_from_slice(&dcol[ci * cols + j * hw..ci * cols + (j + 1) * hw]);
                }
            } else {
                dxn.fill(T::zero());
                col2im_add(g, &dcol[j * hw..], cols, dxn);
            }
        }
    };
    if parallel_groups {
        dx.par_chunks_mut(per * x_per).enumerate().for_each(run);
    } else {
        dx.chunks_mut(per * x_per).enumerate().for_each(run);
    }
}

/// dw = conv backward with respect to the weight (overwrites dw). Each group's partial sum is
/// computed on its own and the partials are added in group order, so the result does not
/// depend on the thread count (gemm splits no sum across threads either).
pub fn backward_weight<T: Real>(g: &ConvGeom, x: &[T], dy: &[T], dw: &mut [T]) {
    check(g, x.len(), dw.len(), dy.len());
    if winograd::applies(g) {
        return winograd::backward_weight(g, x, dy, dw);
    }
    #[cfg(target_arch = "x86_64")]
    if let (Some(xf), Some(dyf), Some(dwf)) = (T::as_f32(x), T::as_f32(dy), T::as_f32_mut(dw)) {
        if g.stride > 1 && implicit::applies(g) {
            return implicit::backward_weight(g, xf, dyf, dwf);
        }
        if g.ckk() >= MIN_PACKED_ROWS && pointwise::applies(g) {
            return pointwise::backward_weight(g, xf, dyf, dwf);
        }
    }
    im2col_backward_weight(g, x, dy, dw);
}

/// The weight gradient through im2col + GEMM, whatever the shape.
pub(super) fn im2col_backward_weight<T: Real>(g: &ConvGeom, x: &[T], dy: &[T], dw: &mut [T]) {
    let (ckk, hw, x_per, y_per) = (
        g.ckk(),
        g.hw_out(),
        g.c_in * g.h * g.w,
        g.c_out * g.hw_out(),
    );
    let per = group_size(g);
    let parallel_groups = groups_in_parallel(g);
    let partial = |gi: usize| {
        let start = gi * per;
        let samples = per.min(g.n - start);
        let cols = samples * hw;
        let col = im2col_group(g, &x[start * x_per..(start + samples) * x_per], samples);
        let dyg = gather_dy(g, &dy[start * y_per..(start + samples) * y_per], samples);
        let mut acc = Scratch::take(g.c_out * ckk);
        let (a, b) = (
            MatRef::rm(&dyg, g.c_out, cols),
            MatRef::rm(&col, ckk, cols).t(),
        );
        matmul_with(gradient_kernel(g), &mut acc, a, b, false, !parallel_groups);
        acc
    };
    let groups = g.n.div_ceil(per);
    let partials: Vec<Scratch<T>> = if parallel_groups {
        (0..groups).into_par_iter().map(partial).collect()
    } else {
        (0..groups).map(partial).collect()
    };
    dw.fill(T::zero());
    for p in &partials {
        dw.iter_mut().zip(p.iter()).for_each(|(d, v)| *d += *v);
    }
}

/// The direct seven-loop convolution: slow, obviously right, the oracle for the fast path.
pub fn forward_naive<T: Real>(g: &ConvGeom, x: &[T], w: &[T], y: &mut [T]) {
    check(g, x.len(), w.len(), y.len());
    let (ho, wo) = (g.h_out(), g.w_out());
    for n in 0..g.n {
        for co in 0..g.c_out {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut s = T::zero();
                    for ci in 0..g.c_in {
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                if iy >= 0 && iy < g.h as isize && ix >= 0 && ix < g.w as isize {
                                    s += x[((n * g.c_in + ci) * g.h + iy as usize) * g.w
                                        + ix as usize]
                                        * w[((co * g.c_in + ci) * g.k + ky) * g.k + kx];
                                }
                            }
                        }
                    }
                    y[((n * g.c_out + co) * ho + oy) * wo + ox] = s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::test_inputs::square;

    /// Shapes that reach every f32 path: the crate on the RGB stem, the packed gradients (1x1
    /// and 3x3 stride 2, 8x8 and 10x10 outputs; the 1x1 weight gradient in `pointwise`), the
    /// gathered forward (1x1 and 3x3 stride 2, 4x4 and 8x8 outputs), the implicit GEMM (3x3
    /// on 4x4 outputs), the sample-minor backward-data (3x3 stride 2 on 8x8, 4x4 and 3x3
    /// outputs; im2col's on the 10x10 ones), Winograd, and the crate again where a sample's
    /// outputs are not whole 16-lane halves (3x3 outputs); batches that leave a short last
    /// group.
    fn shapes() -> Vec<ConvGeom> {
        vec![
            square(3, 3, 8, 16, 3, 1),
            square(70, 64, 8, 40, 1, 2),
            square(20, 64, 16, 30, 3, 2),
            square(9, 32, 8, 20, 3, 2),
            square(5, 32, 4, 32, 3, 1),
            square(6, 16, 8, 16, 3, 1),
            square(40, 64, 6, 20, 3, 2),
            square(6, 16, 20, 12, 3, 2),
        ]
    }

    fn values(len: usize, salt: usize) -> Vec<f64> {
        (0..len)
            .map(|i| (((i * 2654435761 + salt * 977) >> 9) % 1000) as f64 / 500.0 - 1.0)
            .collect()
    }

    /// Runs one direction in f64 (im2col + the crate: the reference) and in f32 (whichever
    /// fast path the shape takes) and compares them within f32 rounding.
    fn agree(what: &str, f64_out: &[f64], f32_out: &[f32]) {
        for (i, (&r, &v)) in f64_out.iter().zip(f32_out).enumerate() {
            assert!(
                (v as f64 - r).abs() <= 1e-4 * (1.0 + r.abs()),
                "{what}: element {i} is {v}, the f64 reference {r}"
            );
        }
    }

    #[test]
    fn every_f32_path_agrees_with_the_f64_reference_in_all_three_directions() {
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        for g in shapes() {
            let (x, w, dy) = (
                values(g.x_len(), 1),
                values(g.w_len(), 2),
                values(g.y_len(), 3),
            );
            let (xf, wf, dyf) = (f32s(&x), f32s(&w), f32s(&dy));
            let (mut y, mut yf) = (vec![0f64; g.y_len()], vec![f32::NAN; g.y_len()]);
            forward(&g, &x, &w, &mut y);
            forward(&g, &xf, &wf, &mut yf);
            agree(&format!("forward {g:?}"), &y, &yf);
            let (mut dx, mut dxf) = (vec![0f64; g.x_len()], vec![f32::NAN; g.x_len()]);
            backward_data(&g, &w, &dy, &mut dx);
            backward_data(&g, &wf, &dyf, &mut dxf);
            agree(&format!("backward data {g:?}"), &dx, &dxf);
            let (mut dw, mut dwf) = (vec![0f64; g.w_len()], vec![f32::NAN; g.w_len()]);
            backward_weight(&g, &x, &dy, &mut dw);
            backward_weight(&g, &xf, &dyf, &mut dwf);
            agree(&format!("backward weight {g:?}"), &dw, &dwf);
        }
    }
}
