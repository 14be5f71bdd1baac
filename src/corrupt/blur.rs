//! The blur corruptions (corruptions-spec.md §4.5, §4.7, §4.9): gaussian_blur, defocus_blur and
//! zoom_blur here, all deterministic; glass_blur, the only random one, in [`super::glass`].
//! The CUDA versions are kernels/corrupt_blur.cu (launchers in src/corrupt/cuda/blur.rs);
//! they take their filter weights from the functions below so both backends use the same bits.

use super::filter::{border_index, center_zoom, gaussian_plane, Border};
use super::{glass, to_u8, Corruption, ImageKey, Plane, Severity};

/// gaussian_blur's σ per severity (scipy radius int(4σ + 0.5) = 2, 2, 3, 3, 4).
pub const GAUSSIAN_SIGMA: [f64; 5] = [0.4, 0.6, 0.7, 0.8, 1.0];

/// defocus_blur's (disk radius, antialiasing σ) per severity.
pub const DEFOCUS: [(f64, f64); 5] = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)];

/// zoom_blur's factor lists are `np.arange(1, upper, 0.01)` with these upper bounds.
pub const ZOOM_UPPER: [f64; 5] = [1.06, 1.11, 1.16, 1.21, 1.26];

/// Side of the defocus stencil: the reference's 17×17 kernel is zero outside its central 5×5
/// for every CIFAR severity (a disk of radius ≤ 1.5 fits in 3×3, and the 3×3 antialiasing
/// Gaussian widens it by one on each side).
pub const DEFOCUS_SIDE: usize = 5;

pub fn apply(c: Corruption, s: Severity, img: &[u8], p: Plane, out: &mut [u8], key: &ImageKey) {
    match c {
        Corruption::GaussianBlur => gaussian_blur(s, img, p, out),
        Corruption::DefocusBlur => defocus_blur(s, img, p, out),
        Corruption::ZoomBlur => zoom_blur(s, img, p, out),
        Corruption::GlassBlur => glass::glass_blur(s, img, p, out, key),
        other => unreachable!("blur::apply got {}", other.name()),
    }
}

/// out = G_σ(x) per channel (scikit-image `gaussian` = scipy `gaussian_filter`, border nearest,
/// truncate 4), in f64.
pub fn gaussian_blur(s: Severity, img: &[u8], p: Plane, out: &mut [u8]) {
    let sigma = GAUSSIAN_SIGMA[s.index()];
    let n = p.len();
    let mut plane = vec![0f64; n];
    for (src, dst) in img.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        for (v, &b) in plane.iter_mut().zip(src) {
            *v = b as f64 / 255.0;
        }
        gaussian_plane(&mut plane, p.h, p.w, sigma, 4.0, Border::Nearest);
        for (d, &v) in dst.iter_mut().zip(&plane) {
            *d = to_u8(v);
        }
    }
}

/// The reference's defocus kernel (`disk` in make_cifar_c.py), reproduced in its f32
/// arithmetic: a 17×17 indicator of i² + j² ≤ r², divided by its count, then OpenCV's
/// `GaussianBlur` with a 3×3 f32 kernel (`getGaussianKernel`: taps exp(−x²/2a²) rounded to f32,
/// summed in f64, each multiplied by the reciprocal sum and rounded again) applied rows first,
/// border REFLECT_101, as c·k0 + (l + r)·k1. Matches cv2 3.4 bit for bit at every severity.
/// Returns the central [`DEFOCUS_SIDE`]² weights, row-major, widened to f64 as `filter2D` does.
pub fn defocus_kernel(s: Severity) -> [f64; DEFOCUS_SIDE * DEFOCUS_SIDE] {
    const N: usize = 17;
    let (radius, alias) = DEFOCUS[s.index()];
    let inside = |i: usize, j: usize| {
        let (y, x) = (i as f64 - 8.0, j as f64 - 8.0);
        y * y + x * x <= radius * radius
    };
    let count = (0..N * N).filter(|&k| inside(k / N, k % N)).count() as f32;
    let disk: Vec<f32> = (0..N * N)
        .map(|k| {
            if inside(k / N, k % N) {
                1.0 / count
            } else {
                0.0
            }
        })
        .collect();
    let scale = -0.5 / (alias * alias);
    // Taps for x = −1, 0, 1, summed in that order from 0.
    let (side, centre) = (scale.exp() as f32, 1.0f32);
    let inv = 1.0 / (((0.0 + side as f64) + centre as f64) + side as f64);
    let (k1, k0) = ((side as f64 * inv) as f32, (centre as f64 * inv) as f32);
    let smooth = |src: &[f32], step: usize, stride: usize| -> Vec<f32> {
        let mut dst = vec![0f32; N * N];
        for line in 0..N {
            for i in 0..N {
                let at = |d: isize| {
                    src[line * stride + border_index(i as isize + d, N, Border::Reflect101) * step]
                };
                dst[line * stride + i * step] = at(0) * k0 + (at(-1) + at(1)) * k1;
            }
        }
        dst
    };
    // Rows (along x) first, then columns, as OpenCV's separable filter runs.
    let rows = smooth(&disk, 1, N);
    let full = smooth(&rows, N, 1);
    let c = N / 2 - DEFOCUS_SIDE / 2;
    let mut k = [0f64; DEFOCUS_SIDE * DEFOCUS_SIDE];
    for (idx, w) in k.iter_mut().enumerate() {
        *w = full[(c + idx / DEFOCUS_SIDE) * N + c + idx % DEFOCUS_SIDE] as f64;
    }
    debug_assert!(
        (0..N * N)
            .filter(|&i| {
                let (y, x) = (i / N, i % N);
                !(c..c + DEFOCUS_SIDE).contains(&y) || !(c..c + DEFOCUS_SIDE).contains(&x)
            })
            .all(|i| full[i] == 0.0),
        "defocus kernel wider than {DEFOCUS_SIDE}x{DEFOCUS_SIDE}"
    );
    k
}

/// out = `cv2.filter2D(x, -1, kernel)` per channel: centred correlation in f64 with border
/// REFLECT_101, summed row by row from 0. (OpenCV computes this 17×17 correlation by DFT, so
/// its last bits differ; measured over the 1,017 cifar10-mini test images at every severity,
/// the 8-bit results are nevertheless identical.)
pub fn defocus_blur(s: Severity, img: &[u8], p: Plane, out: &mut [u8]) {
    let k = defocus_kernel(s);
    let r = (DEFOCUS_SIDE / 2) as isize;
    let n = p.len();
    for (src, dst) in img.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        for y in 0..p.h {
            for x in 0..p.w {
                let mut acc = 0f64;
                for i in -r..=r {
                    let row = border_index(y as isize + i, p.h, Border::Reflect101) * p.w;
                    for j in -r..=r {
                        let col = border_index(x as isize + j, p.w, Border::Reflect101);
                        let w = k[((i + r) as usize) * DEFOCUS_SIDE + (j + r) as usize];
                        acc += w * (src[row + col] as f64 / 255.0);
                    }
                }
                dst[y * p.w + x] = to_u8(acc);
            }
        }
    }
}

/// zoom_blur's factors at severity `s`: `np.arange(1, upper, 0.01)` as numpy computes it,
/// length ceil((upper − 1)/0.01) and element i = 1 + i·((1 + 0.01) − 1). The float error
/// keeps 1.06 and 1.11 but drops 1.16, 1.21 and 1.26 (7, 12, 16, 21, 26 factors), and makes
/// the last factor of severity 5 1.2500000000000002, not 1.25.
pub fn zoom_factors(s: Severity) -> Vec<f64> {
    let upper = ZOOM_UPPER[s.index()];
    let len = ((upper - 1.0) / 0.01).ceil() as usize;
    let delta = (1.0 + 0.01) - 1.0;
    (0..len).map(|i| 1.0 + i as f64 * delta).collect()
}

/// out = (x + Σ_z Z_z(x)) / (K + 1) in f32, the reference's order: x = f32(v/255), the centre
/// zooms ([`center_zoom`]) added one factor at a time, then one f32 division, clip, ×255 in
/// f32, truncate.
pub fn zoom_blur(s: Severity, img: &[u8], p: Plane, out: &mut [u8]) {
    let factors = zoom_factors(s);
    let div = (factors.len() + 1) as f32;
    let n = p.len();
    for (src, dst) in img.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let x: Vec<f32> = src.iter().map(|&b| (b as f64 / 255.0) as f32).collect();
        let mut acc = vec![0f32; n];
        for &z in &factors {
            for (a, v) in acc.iter_mut().zip(center_zoom(&x, p.h, p.w, z)) {
                *a += v;
            }
        }
        for ((d, &xv), &a) in dst.iter_mut().zip(&x).zip(&acc) {
            *d = to_u8_f32((xv + a) / div);
        }
    }
}

/// The f32 form of [`to_u8`]: clip to [0, 1], ×255 in f32 (numpy keeps the f32 dtype), truncate.
#[inline]
pub fn to_u8_f32(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0) as u8
}
