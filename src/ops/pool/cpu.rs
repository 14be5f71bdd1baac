//! Global average pooling: [n, c, hw] → [n, c]. (WRN's avg-pool 8 on an 8x8 map is the same.)

use crate::ops::{c, Real};

pub fn forward<T: Real>(x: &[T], planes: usize, hw: usize, y: &mut [T]) {
    let inv: T = c(1.0 / hw as f64);
    for (p, yv) in y.iter_mut().enumerate().take(planes) {
        *yv = x[p * hw..(p + 1) * hw].iter().copied().sum::<T>() * inv;
    }
}

pub fn backward<T: Real>(dy: &[T], planes: usize, hw: usize, dx: &mut [T]) {
    let inv: T = c(1.0 / hw as f64);
    for p in 0..planes {
        let g = dy[p] * inv;
        dx[p * hw..(p + 1) * hw].iter_mut().for_each(|v| *v = g);
    }
}
