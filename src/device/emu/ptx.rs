//! The warp-wide tensor-core instructions the emulator executes, from the PTX ISA's fragment
//! layouts (section "Matrix Fragments for mma.m16n8k8", .tf32). With groupID g = lane / 4 and
//! threadID_in_group t = lane % 4, lane l holds:
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
    let mut cm = [[0f32; 8]; 16];
    for lane in 0..32 {
        let (g, t) = (lane / 4, lane % 4);
        am[g][t] = tf32(a[lane][0]);
        am[g + 8][t] = tf32(a[lane][1]);
        am[g][t + 4] = tf32(a[lane][2]);
        am[g + 8][t + 4] = tf32(a[lane][3]);
        bm[t][g] = tf32(b[lane][0]);
        bm[t + 4][g] = tf32(b[lane][1]);
        cm[g][2 * t] = c[lane][0];
        cm[g][2 * t + 1] = c[lane][1];
        cm[g + 8][2 * t] = c[lane][2];
        cm[g + 8][2 * t + 1] = c[lane][3];
    }
    let dm = |i: usize, j: usize| -> f32 {
        let s: f64 = (0..8).map(|k| am[i][k] * bm[k][j]).sum();
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

#[cfg(test)]
mod tests {
    use super::*;

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
