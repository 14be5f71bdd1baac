//! Inputs the CPU convolution paths' tests share: square geometries and reproducible values.

use crate::geom::ConvGeom;

/// A square n x c_in x h x h input, c_out k x k filters at `stride`, "same" padding (k / 2).
pub fn square(n: usize, c_in: usize, h: usize, c_out: usize, k: usize, stride: usize) -> ConvGeom {
    ConvGeom {
        n,
        c_in,
        h,
        w: h,
        c_out,
        k,
        stride,
        pad: k / 2,
    }
}

/// `len` values in [-1, 1) from a multiplicative hash of the index, varied by `salt`.
pub fn values(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 2654435761 + salt * 977) >> 9) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}
