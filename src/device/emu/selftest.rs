//! The emulator's own tests: its warp collectives, its PTX and each detector, on the kernels of
//! selftest.cu (compiled into the emulator only).

use super::ffi::{SELFTEST_KERNELS, SELFTEST_SHARED};
use super::{EmuArg, Emulator, Target};
use crate::device::kernels::FILES;

impl Emulator {
    /// Runs self-test kernel `name` (selftest.cu); arguments as for `launch`.
    pub fn launch_selftest(
        &self,
        name: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: usize,
        args: &[EmuArg<'_>],
    ) -> Result<(), String> {
        let k = SELFTEST_KERNELS
            .iter()
            .find(|k| k.sig.name == name)
            .ok_or_else(|| format!("no self-test kernel {name}"))?;
        if args.len() != k.sig.params.len() {
            return Err(format!(
                "{name} takes {} arguments, got {}",
                k.sig.params.len(),
                args.len()
            ));
        }
        let target = Target {
            name: k.sig.name,
            entry: k.entry,
            unit: FILES.len() + super::MUTANT_UNITS.len(),
            shared: SELFTEST_SHARED,
        };
        self.run(&target, &k.sig, grid, block, shared_bytes, args)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EmuAlloc, EmuConfig, Schedule, POISON};
    use super::*;

    fn emu(schedule: Schedule) -> Emulator {
        Emulator::new(EmuConfig {
            schedule,
            ..EmuConfig::default()
        })
        .unwrap()
    }

    const SCHEDULES: [Schedule; 3] = [Schedule::Forward, Schedule::Reverse, Schedule::Shuffled(3)];

    fn buffer<T: Copy>(values: &[T]) -> EmuAlloc {
        let bytes = std::mem::size_of_val(values);
        let a = EmuAlloc::new(bytes, POISON).unwrap();
        // SAFETY: copies the values' bytes into an allocation of exactly that size.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr() as *const u8, a.ptr(), bytes) };
        a
    }

    fn read<T: Copy + Default>(a: &EmuAlloc) -> Vec<T> {
        let n = a.bytes() / std::mem::size_of::<T>();
        let mut v = vec![T::default(); n];
        // SAFETY: copies the allocation's bytes into a vector of exactly that size.
        unsafe { std::ptr::copy_nonoverlapping(a.ptr(), v.as_mut_ptr() as *mut u8, a.bytes()) };
        v
    }

    fn ptr(a: &EmuAlloc) -> EmuArg<'_> {
        EmuArg {
            value: a.ptr() as u64,
            buffer: Some(a),
        }
    }

    fn int(v: i32) -> EmuArg<'static> {
        EmuArg {
            value: v as u32 as u64,
            buffer: None,
        }
    }

    /// The PTX ISA's cvt.rna.tf32.f32: round to nearest, ties away from zero, 10 mantissa bits.
    fn rna_tf32(x: f32) -> u32 {
        if x.is_nan() {
            return 0x7fff_ffff;
        }
        let b = x.to_bits();
        let (sign, mag) = (b & 0x8000_0000, b & 0x7fff_ffff);
        let low = mag & 0x1fff;
        let mut up = mag & !0x1fff;
        if low >= 0x1000 {
            up += 0x2000;
        }
        sign | up
    }

    #[test]
    fn cvt_tf32_rounds_to_nearest_ties_away() {
        let xs: Vec<f32> = vec![
            1.0,
            f32::from_bits(0x3f80_1000), // exactly halfway: away from zero
            f32::from_bits(0x3f80_0fff), // just below halfway: down
            f32::from_bits(0xbf80_1000), // negative tie: away from zero
            f32::MAX,                    // rounds past the largest TF32: infinity
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x0000_1000), // a denormal tie
            -0.0,
            std::f32::consts::PI,
        ];
        let (x, y) = (buffer(&xs), buffer(&vec![0u32; xs.len()]));
        emu(Schedule::Forward)
            .launch_selftest(
                "selftest_cvt_tf32",
                (1, 1, 1),
                (32, 1, 1),
                0,
                &[ptr(&x), int(xs.len() as i32), ptr(&y)],
            )
            .unwrap();
        let got: Vec<u32> = read(&y);
        for (i, &v) in xs.iter().enumerate() {
            assert_eq!(got[i], rna_tf32(v), "cvt of {v:e} ({:#x})", v.to_bits());
        }
        assert_eq!(f32::from_bits(got[4]), f32::INFINITY);
    }

    #[test]
    fn warp_collectives_follow_cuda_semantics() {
        for s in SCHEDULES {
            let out = buffer(&vec![0u32; 64 * 8]);
            emu(s)
                .launch_selftest("selftest_warp_ops", (1, 1, 1), (64, 1, 1), 0, &[ptr(&out)])
                .unwrap();
            let o: Vec<u32> = read(&out);
            // o[0] is the float warp sum converted to unsigned: 528 = 1 + ... + 32.
            for t in 0..64usize {
                let lane = (t % 32) as u32;
                let r = &o[t * 8..t * 8 + 8];
                assert_eq!(r[0], 528, "{s:?} warp sum, thread {t}");
                assert_eq!(r[1], (lane + 1) * (lane + 2) / 2, "{s:?} scan, thread {t}");
                assert_eq!(r[2], (lane + 3) % 32 + 1, "{s:?} shfl_sync");
                assert_eq!(
                    r[3],
                    if lane + 2 < 32 { lane + 3 } else { lane + 1 },
                    "shfl_down"
                );
                assert_eq!(r[4], 0xaaaa_aaaa, "ballot of odd lanes");
                assert_eq!((r[5], r[6]), (1, 1), "any / all");
                assert_eq!(
                    r[7],
                    ((lane & !7) | ((lane ^ 4) & 7)) + 1,
                    "xor within 8 lanes"
                );
            }
        }
    }

    #[test]
    fn syncwarp_calls_at_different_places_correspond() {
        for s in SCHEDULES {
            let out = buffer(&[0i32; 32]);
            emu(s)
                .launch_selftest("selftest_syncwarp", (1, 1, 1), (32, 1, 1), 0, &[ptr(&out)])
                .unwrap();
            let want: Vec<i32> = (0..32).map(|l| l ^ 1).collect();
            assert_eq!(read::<i32>(&out), want, "{s:?}");
        }
    }

    #[test]
    fn mma_computes_a_b_plus_c() {
        let a: Vec<f32> = (0..128).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..64).map(|i| ((i * 5) % 9) as f32 * 0.5).collect();
        let c: Vec<f32> = (0..128).map(|i| i as f32 * 0.25).collect();
        let (ab, bb, cb, db) = (buffer(&a), buffer(&b), buffer(&c), buffer(&[0f32; 128]));
        emu(Schedule::Reverse)
            .launch_selftest(
                "selftest_mma",
                (1, 1, 1),
                (32, 1, 1),
                0,
                &[ptr(&ab), ptr(&bb), ptr(&cb), ptr(&db)],
            )
            .unwrap();
        let d: Vec<f32> = read(&db);
        for i in 0..16 {
            for j in 0..8 {
                let want: f32 =
                    (0..8).map(|k| a[i * 8 + k] * b[k * 8 + j]).sum::<f32>() + c[i * 8 + j];
                assert_eq!(d[i * 8 + j], want, "D[{i}][{j}]");
            }
        }
    }

    #[test]
    fn a_missing_barrier_shows_as_poisoned_shared_memory() {
        for s in SCHEDULES {
            let out = buffer(&[0f32; 256]);
            let e = emu(s);
            e.launch_selftest(
                "selftest_shared_sum",
                (2, 1, 1),
                (128, 1, 1),
                0,
                &[int(1), ptr(&out)],
            )
            .unwrap();
            assert!(
                read::<f32>(&out).iter().all(|&v| v == 8128.0),
                "{s:?} with the barrier"
            );
            e.launch_selftest(
                "selftest_shared_sum",
                (2, 1, 1),
                (128, 1, 1),
                0,
                &[int(0), ptr(&out)],
            )
            .unwrap();
            let racy: Vec<f32> = read(&out);
            assert!(
                racy.iter().any(|v| v.is_nan()),
                "{s:?}: without the barrier some thread must read a slot not yet written"
            );
        }
    }

    #[test]
    fn barrier_after_barrier_keeps_every_thread_in_step() {
        for s in SCHEDULES {
            let out = buffer(&[0i32; 3 * 96]);
            emu(s)
                .launch_selftest(
                    "selftest_barriers",
                    (3, 1, 1),
                    (96, 1, 1),
                    0,
                    &[int(50), ptr(&out)],
                )
                .unwrap();
            assert!(read::<i32>(&out).iter().all(|&v| v == 1225), "{s:?}");
        }
    }

    #[test]
    fn partial_and_divergent_barriers_are_errors() {
        let out = buffer(&[0i32; 64]);
        let e = emu(Schedule::Forward);
        let err = e
            .launch_selftest(
                "selftest_partial_barrier",
                (1, 1, 1),
                (64, 1, 1),
                0,
                &[int(40), ptr(&out)],
            )
            .unwrap_err();
        assert!(
            err.contains("reached by 40 of the block's 64 threads")
                && err.contains("threads 40-63 exited")
                && err.contains("selftest.cu:"),
            "{err}"
        );
        e.launch_selftest(
            "selftest_partial_barrier",
            (1, 1, 1),
            (64, 1, 1),
            0,
            &[int(64), ptr(&out)],
        )
        .unwrap();
        let err = e
            .launch_selftest(
                "selftest_divergent_barrier",
                (1, 1, 1),
                (64, 1, 1),
                0,
                &[ptr(&out)],
            )
            .unwrap_err();
        assert!(err.contains("different places"), "{err}");
        assert!(
            err.contains("selftest_divergent_barrier") && err.contains("block (0, 0, 0)"),
            "{err}"
        );
    }

    #[test]
    fn shuffle_masks_must_match_the_lanes_that_arrive() {
        let out = buffer(&[0i32; 32]);
        let e = emu(Schedule::Forward);
        let exited = e
            .launch_selftest(
                "selftest_bad_shuffle",
                (1, 1, 1),
                (32, 1, 1),
                0,
                &[int(0), ptr(&out)],
            )
            .unwrap_err();
        assert!(exited.contains("exited without reaching it"), "{exited}");
        let disagree = e
            .launch_selftest(
                "selftest_bad_shuffle",
                (1, 1, 1),
                (32, 1, 1),
                0,
                &[int(1), ptr(&out)],
            )
            .unwrap_err();
        assert!(
            disagree.contains("same collective with the same mask"),
            "{disagree}"
        );
        let own = e
            .launch_selftest(
                "selftest_bad_shuffle",
                (1, 1, 1),
                (32, 1, 1),
                0,
                &[int(2), ptr(&out)],
            )
            .unwrap_err();
        assert!(own.contains("does not name its own lane"), "{own}");
        // A 48-thread block: the second warp has 16 lanes, so a full mask names missing lanes.
        let partial = e
            .launch_selftest(
                "selftest_warp_ops",
                (1, 1, 1),
                (48, 1, 1),
                0,
                &[ptr(&buffer(&[0u32; 48 * 8]))],
            )
            .unwrap_err();
        assert!(partial.contains("has only 48 threads"), "{partial}");
    }

    #[test]
    #[cfg_attr(
        feature = "emu-asan",
        ignore = "writes into guard zones, which ASan reports"
    )]
    fn writes_outside_a_buffer_or_dynamic_shared_memory_are_reported() {
        let y = buffer(&[0f32; 100]);
        let err = emu(Schedule::Forward)
            .launch_selftest(
                "selftest_write_past_end",
                (1, 1, 1),
                (128, 1, 1),
                0,
                &[int(100), ptr(&y)],
            )
            .unwrap_err();
        assert!(
            err.contains("parameter 1 `y`") && err.contains("past its end"),
            "{err}"
        );
        let out = buffer(&[0f32; 64]);
        let e = emu(Schedule::Forward);
        e.launch_selftest(
            "selftest_dynamic_shared",
            (1, 1, 1),
            (32, 1, 1),
            64 * 4,
            &[int(64), ptr(&out)],
        )
        .unwrap();
        assert_eq!(read::<f32>(&out)[63], 63.0);
        let err = e
            .launch_selftest(
                "selftest_dynamic_shared",
                (1, 1, 1),
                (32, 1, 1),
                60 * 4,
                &[int(64), ptr(&out)],
            )
            .unwrap_err();
        assert!(err.contains("dynamic shared memory"), "{err}");
    }

    /// bf16 bits of `v`, rounded to nearest even (as cvt.rn does).
    fn bf16(v: f32) -> u32 {
        half::bf16::from_f32(v).to_bits() as u32
    }

    #[test]
    fn cvt_rn_bf16x2_rounds_to_nearest_even_and_packs_the_first_value_high() {
        let tie_down = f32::from_bits(0x3f80_8000); // 1 + 2^-8: halfway, even is 1.0
        let tie_up = f32::from_bits(0x3f81_8000); // halfway between 1 + 2^-7 and 1 + 2^-6
        let x = [
            1.0,
            -2.5,
            tie_down,
            tie_up,
            3.0e38,
            f32::MAX,
            f32::NAN,
            f32::INFINITY,
            1e-40,
            -0.0,
        ];
        let y = buffer(&[0u32; 5]);
        emu(Schedule::Forward)
            .launch_selftest(
                "selftest_cvt_bf16x2",
                (1, 1, 1),
                (32, 1, 1),
                0,
                &[ptr(&buffer(&x)), int(5), ptr(&y)],
            )
            .unwrap();
        let got: Vec<u32> = read(&y);
        let want = [
            0x3f80_c020,                  // 1.0, -2.5
            0x3f80_3f82,                  // the two ties
            bf16(3.0e38) << 16 | 0x7f80,  // f32::MAX rounds past bf16's largest
            0x7fff_7f80,                  // canonical NaN, infinity
            (bf16(1e-40)) << 16 | 0x8000, // a subnormal, -0
        ];
        assert_eq!(got, want, "{:x?}", got);
        assert_eq!(bf16(f32::MAX), 0x7f80);
    }

    /// A (16 x 32), B (32 x 8) as bf16-exact values, and what the gemm kernel must give.
    fn bf16_gemm_case(b_rows: usize, b_kmajor: bool) -> (Vec<u32>, Vec<u32>, Vec<f32>, Vec<f32>) {
        let a = |i: usize, k: usize| ((i * 32 + k) % 15) as f32 * 0.125 - 0.75;
        let b = |k: usize, j: usize| ((k * 8 + j) % 11) as f32 * 0.25 - 1.0;
        let c: Vec<f32> = (0..128).map(|i| i as f32 * 0.5 - 16.0).collect();
        let pack = |lo: f32, hi: f32| bf16(lo) | bf16(hi) << 16;
        let ab: Vec<u32> = (0..16 * 16)
            .map(|w| pack(a(w / 16, 2 * (w % 16)), a(w / 16, 2 * (w % 16) + 1)))
            .collect();
        // Stored [n][k] (8 rows of 32) or [k][n] (32 rows of 8); rows from b_rows on never
        // reach shared memory (zero-filled).
        let bb: Vec<u32> = if b_kmajor {
            (0..128)
                .map(|w| pack(b(w / 4, 2 * (w % 4)), b(w / 4, 2 * (w % 4) + 1)))
                .collect()
        } else {
            (0..128)
                .map(|w| pack(b(2 * (w % 16), w / 16), b(2 * (w % 16) + 1, w / 16)))
                .collect()
        };
        let live = |k: usize, j: usize| if b_kmajor { k < b_rows } else { j < b_rows };
        let d = (0..128)
            .map(|e| {
                let (i, j) = (e / 8, e % 8);
                let s: f32 = (0..32)
                    .filter(|&k| live(k, j))
                    .map(|k| a(i, k) * b(k, j))
                    .sum();
                s + c[e]
            })
            .collect();
        (ab, bb, c, d)
    }

    /// D of selftest_bf16_gemm on the case's operands (`wait_second` false: the kernel never
    /// waits for its second cp.async group), and what a matmul gives.
    fn run_bf16_gemm(
        s: Schedule,
        b_kmajor: bool,
        b_rows: usize,
        wait_second: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let (a, b, c, want) = bf16_gemm_case(b_rows, b_kmajor);
        let d = buffer(&[0f32; 128]);
        emu(s)
            .launch_selftest(
                "selftest_bf16_gemm",
                (1, 1, 1),
                (32, 1, 1),
                512,
                &[
                    ptr(&buffer(&a)),
                    ptr(&buffer(&b)),
                    int(b_kmajor as i32),
                    int(b_rows as i32),
                    int(wait_second as i32),
                    ptr(&buffer(&c)),
                    ptr(&d),
                ],
            )
            .unwrap();
        (read(&d), want)
    }

    #[test]
    fn a_bf16_gemm_through_cp_async_ldmatrix_and_mma_matches_a_matmul() {
        for s in SCHEDULES {
            for (b_kmajor, b_rows) in [(false, 8), (false, 5), (true, 32), (true, 20)] {
                let (got, want) = run_bf16_gemm(s, b_kmajor, b_rows, true);
                // Exact: every product and partial sum of these values is a short binary
                // fraction, exact in f32 and f64 alike.
                assert_eq!(got, want, "{s:?} k-major {b_kmajor} rows {b_rows}");
            }
        }
    }

    #[test]
    fn reading_a_cp_async_group_before_waiting_for_it_sees_the_poison() {
        let (got, _) = run_bf16_gemm(Schedule::Forward, false, 8, false);
        // The second k-half was never waited for: its shared memory still holds 0xFF bytes,
        // NaN as bf16.
        assert!(got.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn misaligned_and_non_shared_addresses_are_faults_naming_the_line() {
        let e = emu(Schedule::Forward);
        let out = buffer(&[0u32; 32]);
        let run = |mode| {
            e.launch_selftest(
                "selftest_bad_async",
                (1, 1, 1),
                (32, 1, 1),
                0,
                &[int(mode), ptr(&out)],
            )
            .unwrap_err()
        };
        let misaligned = run(0);
        assert!(
            misaligned.contains("cp.async: an address is not aligned")
                && misaligned.contains("selftest.cu:"),
            "{misaligned}"
        );
        let global = run(1);
        assert!(
            global.contains("not in this block's shared memory"),
            "{global}"
        );
        let row = run(2);
        assert!(
            row.contains("ldmatrix: a row address is not 16-byte aligned"),
            "{row}"
        );
    }
}
