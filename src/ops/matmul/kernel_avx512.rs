//! The AVX-512 register tile of the blocked f32 GEMM: up to `MR` rows by `NR` columns of C,
//! accumulated over a depth of `kc` from one packed panel of A and one of B.
//!
//! Each step of the depth loads the B panel's 32 values as two vectors and broadcasts each of
//! the rows' A values, so 14 rows give 28 independent FMA chains (28 of the 32 zmm registers):
//! enough to hide the FMA latency on two FMA pipes while loads stay well under the FMA count.

use std::arch::x86_64::*;

/// Rows of a full tile (the A panel's height).
pub const MR: usize = 14;
/// Columns of a tile (the B panel's width): two 16-lane vectors.
pub const NR: usize = 32;

/// Whether this CPU runs the kernel (checked once by the standard library, then cached).
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// C[rows x cols] (+)= Ap · Bp for one tile.
///
/// # Safety
/// `available()` holds; `a` points at `kc * MR` readable floats (row `i` of step `p` at
/// `p * MR + i`), `b` at `kc * NR` (column `j` of step `p` at `p * NR + j`); `c[h]` is the
/// top element of the tile's columns `16h..16h+16` (contiguous in memory; the two halves may
/// lie apart, as two samples' rows do in NCHW), rows `ldc` apart, and rows `0..rows`,
/// columns `0..cols` are writable; `1 <= rows <= MR`, `1 <= cols <= NR` (`c[1]` is never
/// dereferenced when `cols <= 16`). With `load_c`, C's old values are added to.
#[allow(clippy::too_many_arguments)]
pub unsafe fn tile(
    rows: usize,
    cols: usize,
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: [*mut f32; 2],
    ldc: usize,
    load_c: bool,
) {
    macro_rules! by_rows {
        ($($r:literal)*) => {
            match rows {
                $($r => tile_rows::<$r>(cols, kc, a, b, c, ldc, load_c),)*
                _ => unreachable!("a tile has 1 to {MR} rows, not {rows}"),
            }
        };
    }
    by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14)
}

#[target_feature(enable = "avx512f")]
unsafe fn tile_rows<const R: usize>(
    cols: usize,
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: [*mut f32; 2],
    ldc: usize,
    load_c: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for p in 0..kc {
        let b0 = _mm512_loadu_ps(b.add(p * NR));
        let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
        let ap = a.add(p * MR);
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*ap.add(i));
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
    }
    // Lanes past `cols` are neither read nor written: masked-off lanes touch no memory, so a
    // tile at C's right edge stays inside C.
    let lanes = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
    let (m0, m1) = (lanes(cols), lanes(cols.saturating_sub(16)));
    for (i, row) in acc.iter().enumerate() {
        let c0 = c[0].add(i * ldc);
        // `wrapping_add`: with cols <= 16 the second half may lie past C's end; it is only
        // used under an all-zero mask.
        let c1 = c[1].wrapping_add(i * ldc);
        let (mut v0, mut v1) = (row[0], row[1]);
        if load_c {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c0));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c1));
        }
        _mm512_mask_storeu_ps(c0, m0, v0);
        _mm512_mask_storeu_ps(c1, m1, v1);
    }
}

/// `dst[c * ldd + r] = src[r * lds + c]` for a block of up to 16x16, in registers (two rounds
/// of in-lane interleaves, then two of 128-bit lane shuffles): the `cols` columns c < cols,
/// each destination row written for its first `width` lanes r, the lanes from `rows` on
/// written as zero. Panics unless the slices hold what is read and written, the sizes are at
/// most 16 (and `available()`).
pub fn transpose_block(
    src: &[f32],
    lds: usize,
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    ldd: usize,
    width: usize,
) {
    assert!(available(), "the AVX-512 transpose needs AVX-512");
    assert!(rows <= 16 && cols <= 16 && width <= 16);
    if cols == 0 {
        return;
    }
    assert!(rows == 0 || src.len() >= (rows - 1) * lds + cols);
    assert!(width == 0 || dst.len() >= (cols - 1) * ldd + width);
    // SAFETY: the asserts above keep every read row and written row inside the slices.
    unsafe { transpose_block_raw(src.as_ptr(), lds, rows, cols, dst.as_mut_ptr(), ldd, width) }
}

/// `transpose_block` on raw pointers.
///
/// # Safety
/// AVX-512F is available, rows `r < rows` of `cols` values at `src + r * lds` can be read and
/// rows `c < cols` of `width` values at `dst + c * ldd` written.
#[target_feature(enable = "avx512f")]
unsafe fn transpose_block_raw(
    src: *const f32,
    lds: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    ldd: usize,
    width: usize,
) {
    let first = |n: usize| ((1u32 << n) - 1) as u16;
    let (load, store) = (first(cols), first(width));
    // Rows past `rows` are zero and their addresses never formed.
    let r: [__m512; 16] = std::array::from_fn(|i| {
        if i < rows {
            _mm512_maskz_loadu_ps(load, src.add(i * lds))
        } else {
            _mm512_setzero_ps()
        }
    });
    // t[2i], t[2i+1]: rows 2i and 2i+1 interleaved by element within each 128-bit lane.
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + j], lane L: column 4L + j of rows 4i..4i+4.
    let mut u = [_mm512_setzero_ps(); 16];
    for i in 0..4 {
        let pd = |v: __m512| _mm512_castps_pd(v);
        let (t0, t1, t2, t3) = (
            pd(t[4 * i]),
            pd(t[4 * i + 1]),
            pd(t[4 * i + 2]),
            pd(t[4 * i + 3]),
        );
        u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    // Output row 4L + j gathers lane L of u[j], u[4 + j], u[8 + j], u[12 + j].
    let mut out = [_mm512_setzero_ps(); 16];
    for j in 0..4 {
        let p0 = _mm512_shuffle_f32x4::<0x44>(u[j], u[4 + j]);
        let p1 = _mm512_shuffle_f32x4::<0xEE>(u[j], u[4 + j]);
        let q0 = _mm512_shuffle_f32x4::<0x44>(u[8 + j], u[12 + j]);
        let q1 = _mm512_shuffle_f32x4::<0xEE>(u[8 + j], u[12 + j]);
        out[j] = _mm512_shuffle_f32x4::<0x88>(p0, q0);
        out[4 + j] = _mm512_shuffle_f32x4::<0xDD>(p0, q0);
        out[8 + j] = _mm512_shuffle_f32x4::<0x88>(p1, q1);
        out[12 + j] = _mm512_shuffle_f32x4::<0xDD>(p1, q1);
    }
    for (c, v) in out.iter().enumerate().take(cols) {
        _mm512_mask_storeu_ps(dst.add(c * ldd), store, *v);
    }
}
