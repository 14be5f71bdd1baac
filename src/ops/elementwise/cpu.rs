//! Element-wise ops: per-channel affine maps (input normalisation inside the model), the
//! helpers the graph uses to add and scale, and the stage-2 mask statistic's abs-diff sum.

use crate::ops::Real;

/// y[n, c, i] = x[n, c, i] * scale[c] + shift[c]. Input normalisation `(x - mean) / std` is
/// scale = 1/std, shift = -mean/std; its input gradient (what PGD needs) is dy * scale.
pub fn channel_affine<T: Real>(x: &[T], scale: &[T], shift: &[T], hw: usize, y: &mut [T]) {
    let ch = scale.len();
    for (plane, (yp, xp)) in y.chunks_mut(hw).zip(x.chunks(hw)).enumerate() {
        let (s, b) = (scale[plane % ch], shift[plane % ch]);
        yp.iter_mut().zip(xp).for_each(|(yv, &xv)| *yv = xv * s + b);
    }
}

pub fn channel_affine_backward<T: Real>(dy: &[T], scale: &[T], hw: usize, dx: &mut [T]) {
    let ch = scale.len();
    for (plane, (dp, gp)) in dx.chunks_mut(hw).zip(dy.chunks(hw)).enumerate() {
        let s = scale[plane % ch];
        dp.iter_mut().zip(gp).for_each(|(d, &g)| *d = g * s);
    }
}

/// acc += v.
pub fn add_assign<T: Real>(acc: &mut [T], v: &[T]) {
    acc.iter_mut().zip(v).for_each(|(a, &b)| *a += b);
}

/// acc[i] += Σ_k |a[k·len + i] − b[k·len + i]| (len = acc.len()), each term added to acc in
/// sample order: the stage-2 mask statistic (spec §5.1), summed over a batch of activations.
pub fn abs_diff_accumulate<T: Real>(acc: &mut [T], a: &[T], b: &[T]) {
    assert_eq!(
        a.len(),
        b.len(),
        "abs_diff_accumulate: inputs differ in length"
    );
    if acc.is_empty() {
        return;
    }
    for (sa, sb) in a.chunks(acc.len()).zip(b.chunks(acc.len())) {
        acc.iter_mut()
            .zip(sa.iter().zip(sb))
            .for_each(|(s, (&x, &y))| *s += (x - y).abs());
    }
}
