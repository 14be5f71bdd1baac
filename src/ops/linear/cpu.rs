//! Fully connected layer: y [n, out] = x [n, in] · wᵀ + b, w [out, in].

use crate::ops::matmul::{matmul, MatRef};
use crate::ops::Real;

pub fn forward<T: Real>(x: &[T], w: &[T], b: &[T], n: usize, inp: usize, out: usize, y: &mut [T]) {
    assert_eq!(x.len(), n * inp, "linear: input length");
    assert_eq!(w.len(), out * inp, "linear: weight length");
    matmul(
        y,
        MatRef::rm(x, n, inp),
        MatRef::rm(w, out, inp).t(),
        false,
        false,
    );
    for row in y.chunks_mut(out) {
        row.iter_mut().zip(b).for_each(|(v, &bb)| *v += bb);
    }
}

/// dx = dy · w.
pub fn backward_data<T: Real>(w: &[T], dy: &[T], n: usize, inp: usize, out: usize, dx: &mut [T]) {
    matmul(
        dx,
        MatRef::rm(dy, n, out),
        MatRef::rm(w, out, inp),
        false,
        false,
    );
}

/// dw = dyᵀ · x and db = Σ_n dy.
#[allow(clippy::too_many_arguments)]
pub fn backward_params<T: Real>(
    x: &[T],
    dy: &[T],
    n: usize,
    inp: usize,
    out: usize,
    dw: &mut [T],
    db: &mut [T],
) {
    matmul(
        dw,
        MatRef::rm(dy, n, out).t(),
        MatRef::rm(x, n, inp),
        false,
        false,
    );
    db.iter_mut().for_each(|v| *v = T::zero());
    for row in dy.chunks(out) {
        db.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
    }
}
