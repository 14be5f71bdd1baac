//! Strided matrix multiply, with the bounds checked here so callers stay in safe code. Two
//! kernels (`Kernel`): the `gemm` crate, the default, and for f32 on AVX-512 CPUs, when a
//! caller asks for it, the packed GEMM here (`blocked`, `kernel_avx512`), which the
//! convolutions also drive directly with their own packing sources.

#[cfg(target_arch = "x86_64")]
pub mod blocked;
#[cfg(target_arch = "x86_64")]
mod kernel_avx512;

use super::Real;
use gemm::Parallelism;

/// A read-only strided view: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows x cols` matrix.
    pub fn rm(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The same view over other storage of the same elements (a cast slice).
    #[cfg(target_arch = "x86_64")]
    fn on<U>(self, data: &[U]) -> MatRef<'_, U> {
        debug_assert_eq!(data.len(), self.data.len());
        MatRef {
            data,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
        }
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn last_index(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.rs + (self.cols - 1) * self.cs
        }
    }
}

/// How a product is computed: both give the same result up to f32 rounding order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kernel {
    /// The `gemm` crate: skips packing operands that are already laid out for it, which wins
    /// for many small products (Winograd's 16 per group, 64 columns each).
    Crate,
    /// Both operands packed into panels, then the AVX-512 register tile (`blocked`) for f32 on
    /// CPUs that have it, else the crate: wins for large products whose operands are
    /// transposed in memory (the im2col convolutions' weight and data gradients).
    Packed,
}

/// `dst (m x n, row-major) = a (m x k) * b (k x n)`, or `dst += a * b` when `accumulate`.
/// `parallel` lets the product be split over rayon's threads; callers that already run in
/// parallel (one sample per task) pass false.
pub fn matmul<T: Real>(
    dst: &mut [T],
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    parallel: bool,
) {
    matmul_with(Kernel::Crate, dst, a, b, accumulate, parallel)
}

/// `matmul` through the chosen kernel.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub fn matmul_with<T: Real>(
    kernel: Kernel,
    dst: &mut [T],
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "matmul: inner dimensions differ");
    assert!(dst.len() >= m * n, "matmul: destination too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].iter_mut().for_each(|v| *v = T::zero());
        }
        return;
    }
    assert!(a.last_index() < a.data.len() && b.last_index() < b.data.len());
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Packed && blocked::available() {
        if let (Some(d), Some(ad), Some(bd)) =
            (T::as_f32_mut(dst), T::as_f32(a.data), T::as_f32(b.data))
        {
            return blocked::sgemm(d, a.on(ad), b.on(bd), accumulate, parallel);
        }
    }
    let par = if parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: every index gemm touches lies within the views (checked above), and dst is a
    // distinct mutable slice of at least m*n elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic value in [-1, 1) for index `i` of operand `salt`.
    fn value(i: usize, salt: usize) -> f32 {
        (((i * 2654435761 + salt * 40503) >> 7) % 2048) as f32 / 1024.0 - 1.0
    }

    /// An m x k operand stored either row-major or transposed (column-major).
    fn operand(
        rows: usize,
        cols: usize,
        transposed: bool,
        salt: usize,
    ) -> (Vec<f32>, usize, usize) {
        let data = (0..rows * cols).map(|i| value(i, salt)).collect();
        if transposed {
            (data, 1, rows)
        } else {
            (data, cols, 1)
        }
    }

    fn view(d: &[f32], rows: usize, cols: usize, rs: usize, cs: usize) -> MatRef<'_, f32> {
        MatRef {
            data: d,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The product in f64 (the exact answer to compare against) and, per element, the sum of
    /// its terms' magnitudes (what an f32 sum's rounding error scales with).
    fn reference(a: MatRef<'_, f32>, b: MatRef<'_, f32>) -> (Vec<f64>, Vec<f64>) {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let (mut c, mut mag) = (vec![0f64; m * n], vec![0f64; m * n]);
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let t = a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
                    c[i * n + j] += t;
                    mag[i * n + j] += t.abs();
                }
            }
        }
        (c, mag)
    }

    /// Sizes on both sides of every block edge: the 14-row and 32-column register tile, the
    /// 256-deep depth block, the 336-row A block and the 2048-column B block.
    const SHAPES: [(usize, usize, usize); 9] = [
        (1, 1, 1),
        (13, 255, 31),
        (14, 256, 32),
        (15, 257, 33),
        (29, 600, 70),
        (340, 260, 40),
        (15, 300, 2100),
        (3, 40, 4100),
        (64, 20, 17),
    ];

    #[test]
    fn the_packed_kernel_matches_the_exact_product_for_every_layout_and_edge() {
        for &(m, k, n) in &SHAPES {
            for (at, bt) in [(false, false), (true, false), (false, true), (true, true)] {
                let (ad, ars, acs) = operand(m, k, at, 1);
                let (bd, brs, bcs) = operand(k, n, bt, 2);
                let (a, b) = (view(&ad, m, k, ars, acs), view(&bd, k, n, brs, bcs));
                let (want, mag) = reference(a, b);
                // Past m*n: sentinels the edge tiles' masked stores must leave alone.
                let mut got = vec![f32::MAX; m * n + 40];
                matmul_with(Kernel::Packed, &mut got, a, b, false, true);
                for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    // A k-term f32 sum (FMA chains, blocks added in turn) is off by at most
                    // k * 2^-24 of its terms' magnitudes; a wrong or missing term is not.
                    let tol = k as f64 * 6e-8 * mag[i] + 1e-12;
                    assert!(
                        (g as f64 - w).abs() <= tol,
                        "{m}x{k}x{n} transposed ({at}, {bt}): element {i} is {g}, not {w}"
                    );
                }
                assert!(
                    got[m * n..].iter().all(|&v| v == f32::MAX),
                    "{m}x{k}x{n}: a store went past the destination"
                );
            }
        }
    }

    #[test]
    fn the_packed_kernel_accumulates_onto_the_destination_when_asked() {
        let (m, k, n) = (29, 600, 70);
        let (ad, _, _) = operand(m, k, false, 3);
        let (bd, _, _) = operand(k, n, true, 4);
        let (a, b) = (MatRef::rm(&ad, m, k), view(&bd, k, n, 1, k));
        let start: Vec<f32> = (0..m * n).map(|i| value(i, 5)).collect();
        let mut got = start.clone();
        matmul_with(Kernel::Packed, &mut got, a, b, true, false);
        let (want, _) = reference(a, b);
        for i in 0..m * n {
            let w = start[i] as f64 + want[i];
            assert!(
                (got[i] as f64 - w).abs() < 1e-3,
                "element {i}: {} vs {w}",
                got[i]
            );
        }
    }

    #[test]
    fn the_packed_kernel_gives_the_same_bits_on_one_thread_as_on_several() {
        // Threads split the columns, never the depth: each element is summed in one order.
        let (m, k, n) = (40, 700, 1000);
        let (ad, _, _) = operand(m, k, false, 6);
        let (bd, _, _) = operand(k, n, false, 7);
        let (a, b) = (MatRef::rm(&ad, m, k), MatRef::rm(&bd, k, n));
        let mut one = vec![0f32; m * n];
        let mut many = vec![0f32; m * n];
        matmul_with(Kernel::Packed, &mut one, a, b, false, false);
        matmul_with(Kernel::Packed, &mut many, a, b, false, true);
        assert!(one
            .iter()
            .zip(&many)
            .all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    #[test]
    fn both_kernels_agree_on_f64_and_on_f32() {
        let (m, k, n) = (30, 90, 50);
        let ad: Vec<f64> = (0..m * k).map(|i| value(i, 8) as f64).collect();
        let bd: Vec<f64> = (0..k * n).map(|i| value(i, 9) as f64).collect();
        let (a, b) = (MatRef::rm(&ad, m, k), MatRef::rm(&bd, k, n));
        let mut crate_out = vec![0f64; m * n];
        let mut packed = vec![0f64; m * n];
        matmul_with(Kernel::Crate, &mut crate_out, a, b, false, false);
        matmul_with(Kernel::Packed, &mut packed, a, b, false, false);
        // f64 has no packed kernel: the request falls back to the crate, bit for bit.
        assert_eq!(crate_out, packed);
        let af: Vec<f32> = ad.iter().map(|&v| v as f32).collect();
        let bf: Vec<f32> = bd.iter().map(|&v| v as f32).collect();
        let (a, b) = (MatRef::rm(&af, m, k), MatRef::rm(&bf, k, n));
        let mut c1 = vec![0f32; m * n];
        let mut c2 = vec![0f32; m * n];
        matmul_with(Kernel::Crate, &mut c1, a, b, false, false);
        matmul_with(Kernel::Packed, &mut c2, a, b, false, false);
        assert!(c1.iter().zip(&c2).all(|(x, y)| (x - y).abs() < 1e-4));
    }
}
