//! The per-image objectives the evaluation attacks maximise, computed on the host from the
//! logits with their exact gradient d(loss_i)/d(logits_i), in f64.
//!
//! An attack needs each image's loss (APGD keeps the best point per image, Square accepts a
//! query per image), and the logits are tiny (batch × classes), so the objective lives here
//! rather than on the graph: the gradient is seeded into the model's graph with
//! `Graph::backward_from`, on whatever device the model runs.

/// What an attack maximises, per image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective<'a> {
    /// Cross-entropy −log softmax(z)_y (APGD-CE).
    CrossEntropy,
    /// The targeted DLR loss of Croce & Hein (2020), one target class per image (APGD-T):
    /// −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 10⁻¹²), π the classes by decreasing logit.
    DlrTargeted(&'a [u32]),
    /// Minus the margin, −(z_y − max_{j≠y} z_j): positive once the image is misclassified.
    NegMargin,
}

/// Each image's loss and the gradient of the sum over images with respect to the logits
/// ([n, k], row-major, f32 as the graph takes it).
pub fn loss_and_grad(
    obj: Objective<'_>,
    logits: &[f32],
    k: usize,
    labels: &[u32],
) -> (Vec<f64>, Vec<f32>) {
    let mut losses = Vec::with_capacity(labels.len());
    let mut grad = vec![0f32; logits.len()];
    for (i, (row, &y)) in logits.chunks(k).zip(labels).enumerate() {
        let z: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        let mut g = vec![0f64; k];
        let loss = match obj {
            Objective::CrossEntropy => cross_entropy(&z, y as usize, &mut g),
            Objective::DlrTargeted(targets) => {
                dlr_targeted(&z, y as usize, targets[i] as usize, &mut g)
            }
            Objective::NegMargin => neg_margin(&z, y as usize, &mut g),
        };
        losses.push(loss);
        for (out, v) in grad[i * k..(i + 1) * k].iter_mut().zip(&g) {
            *out = *v as f32;
        }
    }
    (losses, grad)
}

/// z_y − max_{j≠y} z_j for each row: positive while the image is classified correctly.
pub fn margins(logits: &[f32], k: usize, labels: &[u32]) -> Vec<f64> {
    logits
        .chunks(k)
        .zip(labels)
        .map(|(row, &y)| {
            let z: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            let (other, _) = best_other(&z, y as usize);
            z[y as usize] - other
        })
        .collect()
}

/// The index of a row's first largest logit: the predicted class.
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Whether each row's prediction is its label.
pub fn correct(logits: &[f32], k: usize, labels: &[u32]) -> Vec<bool> {
    logits
        .chunks(k)
        .zip(labels)
        .map(|(row, &y)| argmax(row) == y as usize)
        .collect()
}

/// The classes of each row by decreasing logit (ties by index, as a stable sort gives).
pub fn ranked_classes(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    idx
}

fn cross_entropy(z: &[f64], y: usize, g: &mut [f64]) -> f64 {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = z.iter().map(|v| (v - m).exp()).sum();
    for (gj, zj) in g.iter_mut().zip(z) {
        *gj = (zj - m).exp() / sum;
    }
    g[y] -= 1.0;
    m + sum.ln() - z[y]
}

/// The largest logit other than class `y`, and its class.
fn best_other(z: &[f64], y: usize) -> (f64, usize) {
    z.iter()
        .enumerate()
        .filter(|&(j, _)| j != y)
        .fold((f64::NEG_INFINITY, y), |best, (j, &v)| {
            if v > best.0 {
                (v, j)
            } else {
                best
            }
        })
}

fn neg_margin(z: &[f64], y: usize, g: &mut [f64]) -> f64 {
    let (other, j) = best_other(z, y);
    g[y] -= 1.0;
    g[j] += 1.0;
    other - z[y]
}

fn dlr_targeted(z: &[f64], y: usize, t: usize, g: &mut [f64]) -> f64 {
    let mut order: Vec<usize> = (0..z.len()).collect();
    order.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
    let (p1, p3, p4) = (order[0], order[2], order[3]);
    let num = z[y] - z[t];
    let den = z[p1] - 0.5 * (z[p3] + z[p4]) + 1e-12;
    // loss = −num/den: d/d num = −1/den, d/d den = num/den².
    let (dnum, dden) = (-1.0 / den, num / (den * den));
    g[y] += dnum;
    g[t] -= dnum;
    g[p1] += dden;
    g[p3] -= 0.5 * dden;
    g[p4] -= 0.5 * dden;
    -num / den
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central differences in f64 on the summed loss.
    fn check(obj: Objective<'_>, logits: &[f32], k: usize, labels: &[u32]) {
        let (_, grad) = loss_and_grad(obj, logits, k, labels);
        for i in 0..logits.len() {
            let h = 1e-3f32;
            let mut up = logits.to_vec();
            let mut down = logits.to_vec();
            up[i] += h;
            down[i] -= h;
            let sum = |l: &[f32]| loss_and_grad(obj, l, k, labels).0.iter().sum::<f64>();
            let numeric = (sum(&up) - sum(&down)) / (f64::from(up[i]) - f64::from(down[i]));
            assert!(
                (numeric - f64::from(grad[i])).abs() < 1e-3 * (1.0 + numeric.abs()),
                "{obj:?} element {i}: analytic {} numeric {numeric}",
                grad[i]
            );
        }
    }

    const LOGITS: [f32; 12] = [
        2.0, -1.0, 0.5, 0.1, 3.0, 1.5, -0.7, 0.9, -2.0, 0.3, 1.1, 0.8,
    ];

    #[test]
    fn gradients_match_finite_differences() {
        check(Objective::CrossEntropy, &LOGITS, 6, &[0, 3]);
        check(Objective::NegMargin, &LOGITS, 6, &[1, 5]);
        check(Objective::DlrTargeted(&[4, 2]), &LOGITS, 6, &[0, 3]);
    }

    #[test]
    fn dlr_targeted_is_scale_invariant_and_the_margin_signs_misclassification() {
        let scaled: Vec<f32> = LOGITS.iter().map(|v| v * 1000.0).collect();
        let a = loss_and_grad(Objective::DlrTargeted(&[4, 2]), &LOGITS, 6, &[0, 3]).0;
        let b = loss_and_grad(Objective::DlrTargeted(&[4, 2]), &scaled, 6, &[0, 3]).0;
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6 * x.abs().max(1.0), "{x} vs {y}");
        }
        // Row 0: class 4 leads (3.0 > 2.0), so label 0 is misclassified and label 4 is not.
        let m = margins(&LOGITS, 6, &[0, 5]);
        assert!((m[0] + 1.0).abs() < 1e-6 && m[1] < 0.0);
        assert!(margins(&LOGITS, 6, &[4, 0])[0] > 0.0);
        assert_eq!(ranked_classes(&LOGITS[..6]), vec![4, 0, 5, 2, 3, 1]);
    }
}
