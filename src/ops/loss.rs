//! Losses: softmax cross-entropy, temperature KL (RSLAD / KD) and attention transfer.
//! Each forward returns the scalar loss and what its backward needs.

use super::{c, Real};

fn softmax_row<T: Real>(z: &[T], temp: T, out: &mut [T]) {
    let max = z.iter().fold(T::neg_infinity(), |m, &v| m.max(v / temp));
    let mut s = T::zero();
    for (o, &v) in out.iter_mut().zip(z) {
        *o = (v / temp - max).exp();
        s += *o;
    }
    out.iter_mut().for_each(|o| *o /= s);
}

/// Cross-entropy of logits [n, k] against labels; `sum` chooses Σ over the batch instead of
/// the mean. Returns (loss, softmax probabilities).
pub fn cross_entropy<T: Real>(logits: &[T], labels: &[u32], k: usize, sum: bool) -> (T, Vec<T>) {
    let n = labels.len();
    let mut probs = vec![T::zero(); n * k];
    let mut loss = T::zero();
    for (i, &y) in labels.iter().enumerate() {
        let row = &logits[i * k..(i + 1) * k];
        softmax_row(row, T::one(), &mut probs[i * k..(i + 1) * k]);
        let max = row.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
        let lse = max + row.iter().map(|&v| (v - max).exp()).sum::<T>().ln();
        loss += lse - row[y as usize];
    }
    if !sum {
        loss /= c(n as f64);
    }
    (loss, probs)
}

/// d loss / d logits, times the upstream gradient `g`.
pub fn cross_entropy_backward<T: Real>(
    probs: &[T],
    labels: &[u32],
    k: usize,
    sum: bool,
    g: T,
    dz: &mut [T],
) {
    let n = labels.len();
    let scale = if sum { g } else { g / c(n as f64) };
    for (i, &y) in labels.iter().enumerate() {
        for j in 0..k {
            let onehot = if j == y as usize { T::one() } else { T::zero() };
            dz[i * k + j] = (probs[i * k + j] - onehot) * scale;
        }
    }
}

/// KL_T(s, t) = T² · (1/n) · Σ_i Σ_j p_t (log p_t − log p_s), p = softmax(·/T).
/// Returns (loss, p_s, p_t).
pub fn kl_div<T: Real>(s: &[T], t: &[T], k: usize, temp: f64) -> (T, Vec<T>, Vec<T>) {
    let n = s.len() / k;
    let tt: T = c(temp);
    let mut ps = vec![T::zero(); s.len()];
    let mut pt = vec![T::zero(); t.len()];
    let mut loss = T::zero();
    for i in 0..n {
        let r = i * k..(i + 1) * k;
        softmax_row(&s[r.clone()], tt, &mut ps[r.clone()]);
        softmax_row(&t[r.clone()], tt, &mut pt[r.clone()]);
        // log-softmax directly, so tiny probabilities do not round to log(0).
        let ls = log_softmax(&s[r.clone()], tt);
        let lt = log_softmax(&t[r.clone()], tt);
        for j in 0..k {
            let p = pt[i * k + j];
            if p > T::zero() {
                loss += p * (lt[j] - ls[j]);
            }
        }
    }
    (loss * tt * tt / c(n as f64), ps, pt)
}

fn log_softmax<T: Real>(z: &[T], temp: T) -> Vec<T> {
    let max = z.iter().fold(T::neg_infinity(), |m, &v| m.max(v / temp));
    let lse = max + z.iter().map(|&v| (v / temp - max).exp()).sum::<T>().ln();
    z.iter().map(|&v| v / temp - lse).collect()
}

/// d KL_T / d s = (T / n) (p_s − p_t), times the upstream gradient `g`.
pub fn kl_div_backward<T: Real>(ps: &[T], pt: &[T], k: usize, temp: f64, g: T, ds: &mut [T]) {
    let n = ps.len() / k;
    let scale = g * c::<T>(temp / n as f64);
    for ((d, &a), &b) in ds.iter_mut().zip(ps).zip(pt) {
        *d = (a - b) * scale;
    }
}

pub const AT_EPS: f64 = 1e-12;

/// Attention map of features [n, ch, hw]: a = q / max(‖q‖, eps), q = mean_c(F²), per sample.
/// Returns (a, ‖q‖) with a [n, hw].
pub fn attention_map<T: Real>(f: &[T], n: usize, ch: usize, hw: usize) -> (Vec<T>, Vec<T>) {
    let mut a = vec![T::zero(); n * hw];
    let mut norms = vec![T::zero(); n];
    let inv_c: T = c(1.0 / ch as f64);
    for i in 0..n {
        let q = &mut a[i * hw..(i + 1) * hw];
        for cc in 0..ch {
            let plane = &f[(i * ch + cc) * hw..(i * ch + cc + 1) * hw];
            q.iter_mut()
                .zip(plane)
                .for_each(|(qv, &v)| *qv += v * v * inv_c);
        }
        let norm = q.iter().map(|&v| v * v).sum::<T>().sqrt();
        norms[i] = norm;
        let d = norm.max(c(AT_EPS));
        q.iter_mut().for_each(|v| *v /= d);
    }
    (a, norms)
}

/// AT(F_s, F_t) = mean over n·hw of (a(F_s) − a(F_t))². `at` is a(F_t), a constant target.
/// Returns (loss, a(F_s), ‖q_s‖).
pub fn attention<T: Real>(
    fs: &[T],
    at: &[T],
    n: usize,
    ch: usize,
    hw: usize,
) -> (T, Vec<T>, Vec<T>) {
    let (a, norms) = attention_map(fs, n, ch, hw);
    let loss = a
        .iter()
        .zip(at)
        .map(|(&x, &y)| (x - y) * (x - y))
        .sum::<T>()
        / c((n * hw) as f64);
    (loss, a, norms)
}

/// d AT / d F_s, times the upstream gradient `g`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    fs: &[T],
    a: &[T],
    norms: &[T],
    at: &[T],
    n: usize,
    ch: usize,
    hw: usize,
    g: T,
    dfs: &mut [T],
) {
    let scale = g * c::<T>(2.0 / (n * hw) as f64);
    let two_over_c: T = c(2.0 / ch as f64);
    for (i, &norm) in norms.iter().enumerate().take(n) {
        let r = i * hw..(i + 1) * hw;
        let da: Vec<T> = a[r.clone()]
            .iter()
            .zip(&at[r.clone()])
            .map(|(&x, &y)| (x - y) * scale)
            .collect();
        // Through a = q / ‖q‖: dq = (da − a (a·da)) / ‖q‖, or da / eps when the norm is clamped.
        let dq: Vec<T> = if norm > c(AT_EPS) {
            let dot = a[r.clone()]
                .iter()
                .zip(&da)
                .map(|(&x, &y)| x * y)
                .sum::<T>();
            da.iter()
                .zip(&a[r.clone()])
                .map(|(&d, &x)| (d - x * dot) / norm)
                .collect()
        } else {
            da.iter().map(|&d| d / c(AT_EPS)).collect()
        };
        for cc in 0..ch {
            let off = (i * ch + cc) * hw;
            for j in 0..hw {
                dfs[off + j] = dq[j] * fs[off + j] * two_over_c;
            }
        }
    }
}
