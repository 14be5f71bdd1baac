//! 2-D convolution without bias (every conv in ResNet18 and WRN-22-8 is bias-free).
//!
//! CPU path: im2col + GEMM over groups of samples whose column blocks sit side by side
//! (so late layers with 4x4 maps still get wide GEMMs). Forward `Y = W · col(X)`,
//! backward-data `dX = col2im(Wᵀ · dY)`, backward-weight `dW = Σ_groups dY · col(X)ᵀ`.

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
                    for (j, &v) in src[oy * wo + lo..oy * wo + hi].iter().enumerate() {
                        drow[x0 + j * g.stride] += v;
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

/// Samples are processed in groups whose im2col matrices sit side by side, so each GEMM has at
/// least this many columns: late layers (4x4 maps) would otherwise run 16-column GEMMs.
const MIN_GEMM_COLS: usize = 2048;

/// Groups of consecutive samples: every group but the last has the same size.
fn groups(g: &ConvGeom) -> impl Iterator<Item = std::ops::Range<usize>> {
    let per = MIN_GEMM_COLS.div_ceil(g.hw_out()).clamp(1, g.n.max(1));
    let n = g.n;
    (0..n.div_ceil(per)).map(move |i| i * per..((i + 1) * per).min(n))
}

/// im2col of samples `group` side by side: a [ckk, group.len() * hw] matrix.
fn im2col_group<T: Real>(g: &ConvGeom, x: &[T], group: &std::ops::Range<usize>, col: &mut Vec<T>) {
    let (ckk, hw, x_per) = (g.ckk(), g.hw_out(), g.c_in * g.h * g.w);
    let ld = group.len() * hw;
    col.resize(ckk * ld, T::zero());
    if g.is_pointwise() {
        // Rows are input channels; each sample contributes a contiguous hw run per row.
        col.par_chunks_mut(ld).enumerate().for_each(|(ci, row)| {
            for (j, n) in group.clone().enumerate() {
                row[j * hw..(j + 1) * hw]
                    .copy_from_slice(&x[n * x_per + ci * hw..n * x_per + (ci + 1) * hw]);
            }
        });
        return;
    }
    // Each sample fills its own column range; the ranges interleave, so hand each task a
    // pointer-free view by splitting per sample through raw column offsets.
    let cols = SharedCols(col.as_mut_ptr(), col.len());
    group.clone().into_par_iter().for_each(|n| {
        let j = n - group.start;
        // SAFETY: sample j writes only columns j*hw..(j+1)*hw of each row: disjoint across tasks,
        // and all within the buffer (row*ld + j*hw + hw <= ckk*ld).
        let view = unsafe { cols.from(j * hw) };
        im2col(g, &x[n * x_per..(n + 1) * x_per], view, ld);
    });
}

/// A raw pointer to a column buffer shared by tasks that write disjoint columns.
struct SharedCols<T>(*mut T, usize);
unsafe impl<T: Send> Send for SharedCols<T> {}
unsafe impl<T: Send> Sync for SharedCols<T> {}

impl<T> SharedCols<T> {
    /// The buffer from `offset` on. Safety: concurrent users must write disjoint elements.
    #[allow(clippy::mut_from_ref)]
    unsafe fn from(&self, offset: usize) -> &mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(offset), self.1 - offset)
    }
}

/// y = conv(x, w).
pub fn forward<T: Real>(g: &ConvGeom, x: &[T], w: &[T], y: &mut [T]) {
    check::<T>(g, x.len(), w.len(), y.len());
    let (ckk, hw) = (g.ckk(), g.hw_out());
    let wm = MatRef::rm(w, g.c_out, ckk);
    let (mut col, mut out) = (Vec::new(), Vec::new());
    for group in groups(g) {
        let cols = group.len() * hw;
        im2col_group(g, x, &group, &mut col);
        out.resize(g.c_out * cols, T::zero());
        matmul(&mut out, wm, MatRef::rm(&col, ckk, cols), false, true);
        // [c_out, samples * hw] → the samples' [c_out, hw] blocks.
        let ys = &mut y[group.start * g.c_out * hw..group.end * g.c_out * hw];
        ys.par_chunks_mut(hw).enumerate().for_each(|(i, dst)| {
            let (j, co) = (i / g.c_out, i % g.c_out);
            dst.copy_from_slice(&out[co * cols + j * hw..co * cols + (j + 1) * hw]);
        });
    }
}

/// dy of samples `group` as one [c_out, samples * hw] matrix.
fn gather_dy<T: Real>(g: &ConvGeom, dy: &[T], group: &std::ops::Range<usize>, out: &mut Vec<T>) {
    let hw = g.hw_out();
    let cols = group.len() * hw;
    out.resize(g.c_out * cols, T::zero());
    out.par_chunks_mut(cols).enumerate().for_each(|(co, row)| {
        for (j, n) in group.clone().enumerate() {
            let src = (n * g.c_out + co) * hw;
            row[j * hw..(j + 1) * hw].copy_from_slice(&dy[src..src + hw]);
        }
    });
}

/// dx = conv backward with respect to the input (overwrites dx).
pub fn backward_data<T: Real>(g: &ConvGeom, w: &[T], dy: &[T], dx: &mut [T]) {
    check::<T>(g, dx.len(), w.len(), dy.len());
    let (ckk, hw) = (g.ckk(), g.hw_out());
    let x_per = g.c_in * g.h * g.w;
    let wt = MatRef::rm(w, g.c_out, ckk).t();
    let (mut dyg, mut dcol) = (Vec::new(), Vec::new());
    for group in groups(g) {
        let cols = group.len() * hw;
        gather_dy(g, dy, &group, &mut dyg);
        dcol.resize(ckk * cols, T::zero());
        matmul(&mut dcol, wt, MatRef::rm(&dyg, g.c_out, cols), false, true);
        let dxs = &mut dx[group.start * x_per..group.end * x_per];
        dxs.par_chunks_mut(x_per).enumerate().for_each(|(j, dxn)| {
            if g.is_pointwise() {
                for ci in 0..g.c_in {
                    dxn[ci * hw..(ci + 1) * hw]
                        .copy_from_slice(&dcol[ci * cols + j * hw..ci * cols + (j + 1) * hw]);
                }
            } else {
                dxn.fill(T::zero());
                col2im_add(g, &dcol[j * hw..], cols, dxn);
            }
        });
    }
}

/// dw = conv backward with respect to the weight (overwrites dw). Groups are added in order
/// and gemm splits no sum across threads, so the result does not depend on the thread count.
pub fn backward_weight<T: Real>(g: &ConvGeom, x: &[T], dy: &[T], dw: &mut [T]) {
    check::<T>(g, x.len(), dw.len(), dy.len());
    let (ckk, hw) = (g.ckk(), g.hw_out());
    let (mut col, mut dyg) = (Vec::new(), Vec::new());
    for (i, group) in groups(g).enumerate() {
        let cols = group.len() * hw;
        im2col_group(g, x, &group, &mut col);
        gather_dy(g, dy, &group, &mut dyg);
        matmul(
            dw,
            MatRef::rm(&dyg, g.c_out, cols),
            MatRef::rm(&col, ckk, cols).t(),
            i > 0,
            true,
        );
    }
    if g.n == 0 {
        dw.fill(T::zero());
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
