//! The warp-wide matrix instructions the emulator executes, from the PTX ISA's fragment layouts
//! (sections "Matrix Fragments for mma.m16n8k8" (.tf32) and "for mma.m16n8k16 with floating point
//! type" (.bf16), and "Warp-level matrix load instruction: ldmatrix"). With groupID g = lane / 4
//! and threadID_in_group t = lane % 4, in m16n8k8 .tf32 lane l holds:
//!
//! - A (16 x 8, row major): a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4];
//! - B (8 x 8, column major): b0 = B[t][g], b1 = B[t+4][g];
//! - C and D (16 x 8): c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1].
//!
//! Numerics: A and B are TF32 values in f32 registers, of which the hardware reads the sign,
//! exponent and top 10 mantissa bits (the low 13 bits are ignored); the kernels round them first
//! with cvt.rna.tf32.f32. Products of TF32 values are exact; the emulator adds the eight products
//! and C in f64 and rounds once to f32. The tensor cores' own accumulation order and precision
//! are not documented, so GPU results may differ from these in the last bits.

//!
//! In m16n8k16 .bf16 every A and B register holds two bf16 values, the lower-indexed one in the
//! low 16 bits: A (16 x 16) a0 = A[g][2t, 2t+1], a1 = A[g+8][2t, 2t+1], a2 = A[g][2t+8, 2t+9],
//! a3 = A[g+8][2t+8, 2t+9]; B (16 x 8) b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]; C and D as
//! above. Products of bf16 values are exact in f64 as well; the sixteen and C are added in f64
//! and rounded once, with the same caveat about the hardware's order.
//!
//! ldmatrix .m8n8 .b16 loads up to four 8 x 8 matrices of 16-bit values, lane 8m + r naming row
//! r of matrix m; register m of lane l then holds row g, columns 2t and 2t+1 of matrix m (low
//! half first), or with .trans rows 2t and 2t+1 of column g (the matrix transposed).

/// The f32 value a TF32 operand register holds.
fn tf32(bits: u32) -> f64 {
    f32::from_bits(bits & 0xffff_e000) as f64
}

/// D = A B + C of one `mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32`, from every lane's
/// fragments (indexed by lane); returns every lane's D fragment.
pub fn mma_m16n8k8_tf32(
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    c: &[[f32; 4]; 32],
) -> [[f32; 4]; 32] {
    let mut am = [[0f64; 8]; 16];
    let mut bm = [[0f64; 8]; 8];
    for lane in 0..32 {
        let (g, t) = (lane / 4, lane % 4);
        am[g][t] = tf32(a[lane][0]);
        am[g + 8][t] = tf32(a[lane][1]);
        am[g][t + 4] = tf32(a[lane][2]);
        am[g + 8][t + 4] = tf32(a[lane][3]);
        bm[t][g] = tf32(b[lane][0]);
        bm[t + 4][g] = tf32(b[lane][1]);
    }
    multiply_accumulate(&am, &bm, c)
}

/// Every lane's D fragment of D = A B + C (A 16 x K, B K x 8, C in the lanes' fragments), the
/// products and C added in f64 and rounded once.
fn multiply_accumulate<const K: usize>(
    am: &[[f64; K]; 16],
    bm: &[[f64; 8]; K],
    c: &[[f32; 4]; 32],
) -> [[f32; 4]; 32] {
    let mut cm = [[0f32; 8]; 16];
    for (lane, cl) in c.iter().enumerate() {
        let (g, t) = (lane / 4, lane % 4);
        cm[g][2 * t] = cl[0];
        cm[g][2 * t + 1] = cl[1];
        cm[g + 8][2 * t] = cl[2];
        cm[g + 8][2 * t + 1] = cl[3];
    }
    let dm = |i: usize, j: usize| -> f32 {
        let s: f64 = (0..K).map(|k| am[i][k] * bm[k][j]).sum();
        (s + cm[i][j] as f64) as f32
    };
    let mut d = [[0f32; 4]; 32];
    for (lane, out) in d.iter_mut().enumerate() {
        let (g, t) = (lane / 4, lane % 4);
        *out = [
            dm(g, 2 * t),
            dm(g, 2 * t + 1),
            dm(g + 8, 2 * t),
            dm(g + 8, 2 * t + 1),
        ];
    }
    d
}

/// The f64 values of the two bf16 halves of a register (low half first).
fn bf16_pair(bits: u32) -> [f64; 2] {
    let half = |h: u32| f32::from_bits(h << 16) as f64;
    [half(bits & 0xffff), half(bits >> 16)]
}

/// D = A B + C of one `mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32`, from every lane's
/// fragments (indexed by lane); returns every lane's D fragment.
pub fn mma_m16n8k16_bf16(
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    c: &[[f32; 4]; 32],
) -> [[f32; 4]; 32] {
    let mut am = [[0f64; 16]; 16];
    let mut bm = [[0f64; 8]; 16];
    for lane in 0..32 {
        let (g, t) = (lane / 4, lane % 4);
        for (i, &reg) in a[lane].iter().enumerate() {
            let (row, col) = (g + 8 * (i & 1), 2 * t + 8 * (i >> 1));
            [am[row][col], am[row][col + 1]] = bf16_pair(reg);
        }
        for (i, &reg) in b[lane].iter().enumerate() {
            let k = 2 * t + 8 * i;
            [bm[k][g], bm[k + 1][g]] = bf16_pair(reg);
        }
    }
    multiply_accumulate(&am, &bm, c)
}

/// Every lane's registers of one `ldmatrix.sync.aligned.m8n8.x{matrices}[.trans].shared.b16`,
/// from the rows the lanes named (`rows[8m + r]` = row r of matrix m; rows of lanes past
/// 8·matrices are not read). Registers past `matrices` are zero.
pub fn ldmatrix(rows: &[[u16; 8]; 32], matrices: usize, trans: bool) -> [[u32; 4]; 32] {
    let mut out = [[0u32; 4]; 32];
    for (lane, regs) in out.iter_mut().enumerate() {
        let (g, t) = (lane / 4, lane % 4);
        for (m, reg) in regs.iter_mut().enumerate().take(matrices) {
            let at = |r: usize, col: usize| rows[8 * m + r][col] as u32;
            let (lo, hi) = if trans {
                (at(2 * t, g), at(2 * t + 1, g))
            } else {
                (at(g, 2 * t), at(g, 2 * t + 1))
            };
            *reg = lo | hi << 16;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bf16 bits of small exact values (k / 8 for |k| < 64 is exact in bf16's 8 bits).
    fn bf(v: f32) -> u32 {
        let bits = v.to_bits();
        assert_eq!(bits & 0xffff, 0, "{v} is not a bf16 value");
        bits >> 16
    }

    // As in the TF32 test, the loops index fragments by register number: the formula under test.
    #[allow(clippy::needless_range_loop)]
    /// The m16n8k16 layout spelt as the ISA's per-element formulas (row = g for a_i with i < 2
    /// or 4 <= i < 6, col = 2t + (i & 1) + 8 for i >= 4, ...), checked against a plain matmul.
    #[test]
    fn bf16_mma_matches_a_matmul_under_the_isa_layout() {
        let a_val = |i: usize, k: usize| ((i * 16 + k) % 11) as f32 * 0.25 - 1.25;
        let b_val = |k: usize, j: usize| ((k * 8 + j) % 9) as f32 * 0.5 - 2.0;
        let c_val = |i: usize, j: usize| (i as f32) * 0.5 - 0.125 * j as f32;
        let (mut a, mut b, mut c) = ([[0u32; 4]; 32], [[0u32; 2]; 32], [[0f32; 4]; 32]);
        for lane in 0..32 {
            let (g, t) = (lane >> 2, lane % 4);
            for e in 0..8 {
                let row = if e < 2 || (4..6).contains(&e) {
                    g
                } else {
                    g + 8
                };
                let col = 2 * t + (e & 1) + if e >= 4 { 8 } else { 0 };
                a[lane][e / 2] |= bf(a_val(row, col)) << (16 * (e % 2));
            }
            for e in 0..4 {
                let row = 2 * t + (e & 1) + if e >= 2 { 8 } else { 0 };
                b[lane][e / 2] |= bf(b_val(row, g)) << (16 * (e % 2));
            }
            for i in 0..4 {
                c[lane][i] = c_val(g + 8 * (i >> 1), 2 * t + (i & 1));
            }
        }
        let d = mma_m16n8k16_bf16(&a, &b, &c);
        for lane in 0..32 {
            let (g, t) = (lane >> 2, lane % 4);
            for i in 0..4 {
                let (row, col) = (g + 8 * (i >> 1), 2 * t + (i & 1));
                let want: f32 =
                    (0..16).map(|k| a_val(row, k) * b_val(k, col)).sum::<f32>() + c_val(row, col);
                assert_eq!(d[lane][i], want, "lane {lane} d{i}");
            }
        }
    }

    #[test]
    fn ldmatrix_hands_out_rows_or_with_trans_columns() {
        let mut rows = [[0u16; 8]; 32];
        for (l, row) in rows.iter_mut().enumerate() {
            for (col, v) in row.iter_mut().enumerate() {
                *v = (l * 8 + col) as u16; // matrix l / 8, row l % 8
            }
        }
        let plain = ldmatrix(&rows, 4, false);
        let trans = ldmatrix(&rows, 4, true);
        let two = ldmatrix(&rows, 2, false);
        for lane in 0..32 {
            let (g, t) = (lane / 4, lane % 4);
            for m in 0..4 {
                let v = |r: usize, col: usize| ((8 * m + r) * 8 + col) as u32;
                assert_eq!(plain[lane][m], v(g, 2 * t) | v(g, 2 * t + 1) << 16);
                assert_eq!(trans[lane][m], v(2 * t, g) | v(2 * t + 1, g) << 16);
            }
            assert_eq!(&two[lane][..2], &plain[lane][..2]);
            assert_eq!(&two[lane][2..], &[0, 0]);
        }
    }

    /// Distributes matrices with the ISA's compact formulas (row = g + 8·(i & 1) for A, ...),
    /// a second spelling of the layout, and checks the product against a plain matmul.
    // The loops index fragments by register number on purpose: that is the formula under test.
    #[allow(clippy::needless_range_loop)]
    #[test]
    fn mma_matches_a_matmul_under_the_isa_layout() {
        let a_val = |i: usize, k: usize| ((i * 8 + k) % 13) as f32 * 0.25 - 1.5;
        let b_val = |k: usize, j: usize| ((k * 8 + j) % 7) as f32 * 0.5 - 1.0;
        let c_val = |i: usize, j: usize| (i as f32) - 0.125 * j as f32;
        let (mut a, mut b, mut c) = ([[0u32; 4]; 32], [[0u32; 2]; 32], [[0f32; 4]; 32]);
        for lane in 0..32 {
            let (g, t) = (lane >> 2, lane % 4);
            for i in 0..4 {
                a[lane][i] = a_val(g + 8 * (i & 1), t + 4 * (i >> 1)).to_bits();
                c[lane][i] = c_val(g + 8 * (i >> 1), 2 * t + (i & 1));
            }
            for i in 0..2 {
                b[lane][i] = b_val(t + 4 * i, g).to_bits();
            }
        }
        let d = mma_m16n8k8_tf32(&a, &b, &c);
        for lane in 0..32 {
            let (g, t) = (lane >> 2, lane % 4);
            for i in 0..4 {
                let (row, col) = (g + 8 * (i >> 1), 2 * t + (i & 1));
                let want: f32 =
                    (0..8).map(|k| a_val(row, k) * b_val(k, col)).sum::<f32>() + c_val(row, col);
                assert_eq!(d[lane][i], want, "lane {lane} d{i}");
            }
        }
    }

    #[test]
    fn tf32_operands_ignore_the_low_mantissa_bits() {
        let one_plus = (1.0f32).to_bits() | 0x1fff;
        let (mut a, mut b) = ([[0u32; 4]; 32], [[0u32; 2]; 32]);
        a[0][0] = one_plus; // A[0][0]
        b[0][0] = (2.0f32).to_bits(); // B[0][0]
        let d = mma_m16n8k8_tf32(&a, &b, &[[0.0; 4]; 32]);
        assert_eq!(d[0][0], 2.0);
    }
}
