//! 2-D convolution without bias (every conv in ResNet18 and WRN-22-8 is bias-free).
//!
//! CPU path: im2col + GEMM, one sample per rayon task. Forward `y_n = W · col(x_n)`,
//! backward-data `dx_n = col2im(Wᵀ · dy_n)`, backward-weight `dW = Σ_n dy_n · col(x_n)ᵀ`.
//! The weight gradient is summed over a fixed split of the batch, so its rounding (and so a
//! whole training run) does not depend on how many threads rayon happens to have.

use super::matmul::{matmul, MatRef};
use super::Real;
use rayon::prelude::*;

/// Shapes of one convolution: x [n, c_in, h, w], w [c_out, c_in, k, k], y [n, c_out, h_out, w_out].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    pub fn y_len(&self) -> usize {
        self.n * self.c_out * self.h_out() * self.w_out()
    }
    pub fn w_len(&self) -> usize {
        self.c_out * self.c_in * self.k * self.k
    }
    /// Rows of the im2col matrix (c_in * k * k).
    fn ckk(&self) -> usize {
        self.c_in * self.k * self.k
    }
    fn hw_out(&self) -> usize {
        self.h_out() * self.w_out()
    }
    /// A 1x1, stride-1, unpadded conv reads the input as its own im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    /// Multiply-adds of the forward pass (each backward direction costs the same).
    pub fn macs(&self) -> usize {
        self.n * self.c_out * self.hw_out() * self.ckk()
    }
}

/// col[(ci*k + ky)*k + kx][oy*w_out + ox] = x[ci][oy*s - p + ky][ox*s - p + kx] (0 outside).
fn im2col<T: Real>(g: &ConvGeom, x: &[T], col: &mut [T]) {
    let (ho, wo) = (g.h_out(), g.w_out());
    for ci in 0..g.c_in {
        let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = (ci * g.k + ky) * g.k + kx;
                let dst = &mut col[row * ho * wo..(row + 1) * ho * wo];
                for oy in 0..ho {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    let drow = &mut dst[oy * wo..(oy + 1) * wo];
                    if iy < 0 || iy >= g.h as isize {
                        drow.iter_mut().for_each(|v| *v = T::zero());
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for (ox, d) in drow.iter_mut().enumerate() {
                        let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                        *d = if ix < 0 || ix >= g.w as isize {
                            T::zero()
                        } else {
                            src[ix as usize]
                        };
                    }
                }
            }
        }
    }
}

/// The adjoint of `im2col`: adds each column entry back onto the input pixel it came from.
fn col2im_add<T: Real>(g: &ConvGeom, col: &[T], dx: &mut [T]) {
    let (ho, wo) = (g.h_out(), g.w_out());
    for ci in 0..g.c_in {
        let plane = &mut dx[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = (ci * g.k + ky) * g.k + kx;
                let src = &col[row * ho * wo..(row + 1) * ho * wo];
                for oy in 0..ho {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let drow = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for ox in 0..wo {
                        let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                        if ix >= 0 && ix < g.w as isize {
                            drow[ix as usize] += src[oy * wo + ox];
                        }
                    }
                }
            }
        }
    }
}

fn check<T>(g: &ConvGeom, x: usize, w: usize, y: usize) {
    assert_eq!(x, g.x_len(), "conv: input length does not match {g:?}");
    assert_eq!(w, g.w_len(), "conv: weight length does not match {g:?}");
    assert_eq!(y, g.y_len(), "conv: output length does not match {g:?}");
}

/// y = conv(x, w).
pub fn forward<T: Real>(g: &ConvGeom, x: &[T], w: &[T], y: &mut [T]) {
    check::<T>(g, x.len(), w.len(), y.len());
    let (ckk, hw) = (g.ckk(), g.hw_out());
    let x_per = g.c_in * g.h * g.w;
    let wm = MatRef::rm(w, g.c_out, ckk);
    y.par_chunks_mut(g.c_out * hw).enumerate().for_each_init(
        || vec![T::zero(); if g.is_pointwise() { 0 } else { ckk * hw }],
        |col, (n, yn)| {
            let xn = &x[n * x_per..(n + 1) * x_per];
            let colm = if g.is_pointwise() {
                xn
            } else {
                im2col(g, xn, col);
                &col[..]
            };
            matmul(yn, wm, MatRef::rm(colm, ckk, hw), false, false);
        },
    );
}

/// dx = conv backward with respect to the input (overwrites dx).
pub fn backward_data<T: Real>(g: &ConvGeom, w: &[T], dy: &[T], dx: &mut [T]) {
    check::<T>(g, dx.len(), w.len(), dy.len());
    let (ckk, hw) = (g.ckk(), g.hw_out());
    let x_per = g.c_in * g.h * g.w;
    let wt = MatRef::rm(w, g.c_out, ckk).t();
    dx.par_chunks_mut(x_per).enumerate().for_each_init(
        || vec![T::zero(); if g.is_pointwise() { 0 } else { ckk * hw }],
        |col, (n, dxn)| {
            let dyn_ = MatRef::rm(&dy[n * g.c_out * hw..(n + 1) * g.c_out * hw], g.c_out, hw);
            if g.is_pointwise() {
                matmul(dxn, wt, dyn_, false, false);
            } else {
                matmul(col, wt, dyn_, false, false);
                dxn.iter_mut().for_each(|v| *v = T::zero());
                col2im_add(g, col, dxn);
            }
        },
    );
}

/// The batch is summed in this many fixed groups (or fewer for small batches); the groups run in
/// parallel and are added in order, so the result is the same for any thread count.
const WEIGHT_GRAD_GROUPS: usize = 8;

/// dw = conv backward with respect to the weight (overwrites dw).
pub fn backward_weight<T: Real>(g: &ConvGeom, x: &[T], dy: &[T], dw: &mut [T]) {
    check::<T>(g, x.len(), dw.len(), dy.len());
    let (ckk, hw) = (g.ckk(), g.hw_out());
    let x_per = g.c_in * g.h * g.w;
    let groups = WEIGHT_GRAD_GROUPS.min(g.n).max(1);
    let per_group = g.n.div_ceil(groups);
    let partials: Vec<Vec<T>> = (0..groups)
        .into_par_iter()
        .map(|gi| {
            let mut acc = vec![T::zero(); g.c_out * ckk];
            let mut col = vec![T::zero(); if g.is_pointwise() { 0 } else { ckk * hw }];
            let samples = gi * per_group..((gi + 1) * per_group).min(g.n);
            for (i, n) in samples.enumerate() {
                let xn = &x[n * x_per..(n + 1) * x_per];
                let colm = if g.is_pointwise() {
                    xn
                } else {
                    im2col(g, xn, &mut col);
                    &col[..]
                };
                let dyn_ = MatRef::rm(&dy[n * g.c_out * hw..(n + 1) * g.c_out * hw], g.c_out, hw);
                matmul(&mut acc, dyn_, MatRef::rm(colm, ckk, hw).t(), i > 0, false);
            }
            acc
        })
        .collect();
    dw.copy_from_slice(&partials[0]);
    for p in &partials[1..] {
        dw.iter_mut().zip(p).for_each(|(d, v)| *d += *v);
    }
}

/// The direct seven-loop convolution: slow, obviously right, the oracle for the fast path.
pub fn forward_naive<T: Real>(g: &ConvGeom, x: &[T], w: &[T], y: &mut [T]) {
    check::<T>(g, x.len(), w.len(), y.len());
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
