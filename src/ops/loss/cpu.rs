//! Losses: softmax cross-entropy, temperature KL (RSLAD / KD), attention transfer and AugMix's
//! Jensen-Shannon consistency loss. Each forward returns the scalar loss and what its backward
//! needs.

use crate::ops::{c, Real};

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

/// The bounds AugMix clamps the mixture distribution to before its log: `clamp(M, 1e-7, 1)`.
pub const JSD_CLAMP: (f64, f64) = (1e-7, 1.0);

/// Softmax of one row in both forms: log p = z − lse with lse = max + ln Σ exp(z − max), and
/// p = exp(log p). Taking the log from the logits keeps it finite where p underflows to 0.
fn softmax_and_log<T: Real>(z: &[T], p: &mut [T], lp: &mut [T]) {
    let max = z.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
    let lse = max + z.iter().map(|&v| (v - max).exp()).sum::<T>().ln();
    for ((o, l), &v) in p.iter_mut().zip(lp.iter_mut()).zip(z) {
        *l = v - lse;
        *o = l.exp();
    }
}

/// One row of the JSD: the three softmaxes, their logs, and per class the log of the clamped
/// mixture and whether the clamp let M through (`open`, where its gradient flows).
struct JsdRow<T> {
    p: [Vec<T>; 3],
    lp: [Vec<T>; 3],
    log_m: Vec<T>,
    open: Vec<bool>,
}

impl<T: Real> JsdRow<T> {
    fn new(k: usize) -> Self {
        let v = || vec![T::zero(); k];
        JsdRow {
            p: [v(), v(), v()],
            lp: [v(), v(), v()],
            log_m: v(),
            open: vec![false; k],
        }
    }

    /// Fills the row from logits rows `z` (the clean, first and second augmented views).
    fn fill(&mut self, z: [&[T]; 3]) {
        for (i, zi) in z.iter().enumerate() {
            softmax_and_log(zi, &mut self.p[i], &mut self.lp[i]);
        }
        let (lo, hi): (T, T) = (c(JSD_CLAMP.0), c(JSD_CLAMP.1));
        let three: T = c(3.0);
        for j in 0..self.log_m.len() {
            // (p_c + p_1 + p_2) / 3 in the reference's order; torch.clamp passes the gradient
            // where lo <= M <= hi (both ends included).
            let m = (self.p[0][j] + self.p[1][j] + self.p[2][j]) / three;
            self.open[j] = m >= lo && m <= hi;
            self.log_m[j] = m.max(lo).min(hi).ln();
        }
    }

    /// Σ_i Σ_j p_ij (log p_ij − log M_j), with 0·log 0 = 0.
    fn kl_sum(&self) -> T {
        let mut acc = T::zero();
        for i in 0..3 {
            for (j, &p) in self.p[i].iter().enumerate() {
                if p > T::zero() {
                    acc += p * (self.lp[i][j] - self.log_m[j]);
                }
            }
        }
        acc
    }
}

/// AugMix's Jensen-Shannon consistency loss of three logit batches [n, k] (clean, augmented 1,
/// augmented 2): JS = (1/3) Σ_{p ∈ {p_c, p_1, p_2}} KL(p ‖ M), M = clamp((p_c + p_1 + p_2)/3,
/// 1e-7, 1), KL(p ‖ M) = (1/n) Σ_b Σ_k p (log p − log M), p = softmax(z). The weight (λ = 12 in
/// AugMix) is the caller's.
pub fn jsd<T: Real>(z: [&[T]; 3], k: usize) -> T {
    let n = z[0].len() / k;
    let mut row = JsdRow::new(k);
    let mut loss = T::zero();
    for b in 0..n {
        let r = b * k..(b + 1) * k;
        row.fill([&z[0][r.clone()], &z[1][r.clone()], &z[2][r]]);
        loss += row.kl_sum();
    }
    loss / c((3 * n) as f64)
}

/// d JSD / d z_i for the three logit batches, times the upstream gradient `g`; the gradient
/// flows through M as well (AugMix does not detach it). With h_j = log p_j − log M_j − [M_j not
/// clamped], the gradient of one distribution's row is p ⊙ (h − ⟨p, h⟩) / (3n).
pub fn jsd_backward<T: Real>(z: [&[T]; 3], k: usize, g: T, dz: [&mut [T]; 3]) {
    let n = z[0].len() / k;
    let scale = g * c::<T>(1.0 / (3 * n) as f64);
    let mut row = JsdRow::new(k);
    let mut h = vec![T::zero(); k];
    let [d0, d1, d2] = dz;
    for b in 0..n {
        let r = b * k..(b + 1) * k;
        row.fill([&z[0][r.clone()], &z[1][r.clone()], &z[2][r.clone()]]);
        for (i, d) in [&mut *d0, &mut *d1, &mut *d2].into_iter().enumerate() {
            let (p, lp) = (&row.p[i], &row.lp[i]);
            let mut dot = T::zero();
            for j in 0..k {
                let through_m = if row.open[j] { T::one() } else { T::zero() };
                h[j] = lp[j] - row.log_m[j] - through_m;
                dot += p[j] * h[j];
            }
            for j in 0..k {
                d[r.start + j] = p[j] * (h[j] - dot) * scale;
            }
        }
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
