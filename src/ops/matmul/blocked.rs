//! The f32 GEMM on AVX-512 CPUs: cache blocking and panel packing around the register tile in
//! `kernel_avx512`, in the loop order of GotoBLAS/BLIS.
//!
//! Why not only the `gemm` crate: its f32 path is at its best when both operands are laid out
//! for it (row-major A and B) and loses a third of its rate when they are transposed in
//! memory, as in the convolutions' weight gradient (`conv` bench items in BENCHMARKS.md). Here
//! every operand is packed, so the layout costs only the packing, and the packing sources are
//! open (`PackA`, `PackB`): a convolution packs panels straight from its input, never forming
//! the im2col matrix, and skips the tiles that only padding feeds. f64 (the gradient checks)
//! stays on the crate.
//!
//! Blocks: a KC x NC block of B is packed once per (column block, depth block) and stays in
//! L3; an MC x KC block of A (344 KiB) stays in L2 while every B panel of the block passes
//! over it; one KC x NR panel of B (32 KiB) stays in L1 while the A panels stream past it.
//! Each element of C is summed in the same order whatever the thread count (threads split
//! C's columns, never the depth), so results are deterministic.

use super::kernel_avx512::tile;
use super::MatRef;
use crate::ops::scratch::Scratch;
use rayon::prelude::*;
use std::cell::Cell;

pub use super::kernel_avx512::{available, transpose_block, MR, NR};

/// Depth of a block (the B panel in L1 is KC x NR floats).
const KC: usize = 256;
const MC: usize = MR * 24;
const NC: usize = NR * 64;

/// The A operand (m x k) as the driver sees it: something that packs MR-row panels.
pub trait PackA: Sync {
    fn rows(&self) -> usize;
    fn depth(&self) -> usize;
    /// Rows `i0..i0+mc`, depth `p0..p0+kc` into MR-row panels: panel `r`, step `p`, row `i`
    /// at `(r * kc + p) * MR + i`. A short last panel's missing rows need not be written (the
    /// register tile never reads them).
    fn pack(&self, i0: usize, mc: usize, p0: usize, kc: usize, dst: &mut [f32]);
    /// The source as a whole-product packing, whose panels the register tile then reads
    /// where they lie instead of through `pack`'s copy.
    fn prepacked(&self) -> Option<&PrepackedA> {
        None
    }
}

/// The B operand (k x n): something that packs NR-column panels, chooses the depth blocks and
/// may declare some (block, panel) pairs all zero so that their tiles are skipped.
pub trait PackB: Sync {
    /// Whether `live` can be false (then C is cleared first and every block adds to it).
    const SKIPS: bool = false;
    fn cols(&self) -> usize;
    fn depth(&self) -> usize;
    /// The length of the depth block that starts at `p0`: at most `max` (a source whose
    /// zeros come in runs of depth ends its blocks where the runs end).
    fn block(&self, p0: usize, max: usize) -> usize {
        max.min(self.depth() - p0)
    }
    /// Whether depth `p0..p0+kc` of columns `j0..j0+cols` can hold a non-zero value. A source
    /// that ever answers false sets `SKIPS`.
    fn live(&self, _p0: usize, _kc: usize, _j0: usize, _cols: usize) -> bool {
        true
    }
    /// Depth `p0..p0+kc`, columns `j0..j0+nc` into NR-column panels: panel `q`, step `p`,
    /// column `j` at `(q * kc + p) * NR + j`, a short last panel padded with zero columns.
    /// Panels that are not `live` need not be written.
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]);
}

impl PackA for MatRef<'_, f32> {
    fn rows(&self) -> usize {
        self.rows
    }
    fn depth(&self) -> usize {
        self.cols
    }
    fn pack(&self, i0: usize, mc: usize, p0: usize, kc: usize, dst: &mut [f32]) {
        for r in 0..mc.div_ceil(MR) {
            let rows = MR.min(mc - r * MR);
            let first = (i0 + r * MR) * self.rs + p0 * self.cs;
            let panel = &mut dst[r * kc * MR..(r + 1) * kc * MR];
            interleave::<MR>(self.data, first, rows, self.rs, self.cs, kc, panel);
        }
    }
}

impl PackB for MatRef<'_, f32> {
    fn cols(&self) -> usize {
        self.cols
    }
    fn depth(&self) -> usize {
        self.rows
    }
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        for q in 0..nc.div_ceil(NR) {
            let cols = NR.min(nc - q * NR);
            let first = p0 * self.rs + (j0 + q * NR) * self.cs;
            let panel = &mut dst[q * kc * NR..(q + 1) * kc * NR];
            interleave::<NR>(self.data, first, cols, self.cs, self.rs, kc, panel);
        }
    }
}

/// An A operand packed once for the whole product: the register tile reads its panels where
/// they lie (`PackA::prepacked`) instead of each thread packing (and transposing) all of A
/// itself, block by block. Row panel `r` holds the whole depth at `r * k * MR`.
pub struct PrepackedA {
    panels: Scratch<f32>,
    m: usize,
    k: usize,
}

impl PrepackedA {
    /// Packs `src`, its row panels spread over the threads.
    pub fn new<A: PackA>(src: &A) -> Self {
        let (m, k) = (src.rows(), src.depth());
        let mut panels = Scratch::take(m.div_ceil(MR) * k * MR);
        panels
            .par_chunks_mut(k * MR)
            .enumerate()
            .for_each(|(r, panel)| src.pack(r * MR, MR.min(m - r * MR), 0, k, panel));
        PrepackedA { panels, m, k }
    }

    /// The panel of rows `i0..i0+MR` from depth `p0` on.
    fn panel(&self, i0: usize, p0: usize) -> &[f32] {
        debug_assert!(i0.is_multiple_of(MR), "panels start every MR rows");
        &self.panels[((i0 / MR) * self.k + p0) * MR..]
    }
}

impl PackA for PrepackedA {
    fn rows(&self) -> usize {
        self.m
    }
    fn depth(&self) -> usize {
        self.k
    }
    fn pack(&self, i0: usize, mc: usize, p0: usize, kc: usize, dst: &mut [f32]) {
        for r in 0..mc.div_ceil(MR) {
            let panel = &self.panel(i0 + r * MR, p0)[..kc * MR];
            dst[r * kc * MR..(r + 1) * kc * MR].copy_from_slice(panel);
        }
    }
    fn prepacked(&self) -> Option<&PrepackedA> {
        Some(self)
    }
}

/// Where element (i, j) of C lives: `i * ldc + (j / run) * run_stride + j % run`. A plain
/// row-major matrix is one run per row (`Layout::rows`); a convolution's output in NCHW with
/// its columns ordered (sample, position) is runs of a sample's positions (`Layout::runs`),
/// so the GEMM writes it in place instead of through a regrouping copy.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    ldc: usize,
    run: usize,
    run_stride: usize,
}

impl Layout {
    /// A row-major matrix with `n` columns.
    pub fn rows(n: usize) -> Self {
        Layout {
            ldc: n,
            run: n.max(1),
            run_stride: 0,
        }
    }

    /// Columns (s, o) of a [s][row][o] array with `run` values of o: NCHW with rows = channels.
    pub fn runs(rows: usize, run: usize) -> Self {
        Layout {
            ldc: run,
            run,
            run_stride: rows * run,
        }
    }

    fn at(&self, i: usize, j: usize) -> usize {
        i * self.ldc + (j / self.run) * self.run_stride + j % self.run
    }
}

/// C's base pointer, shared by the threads that write disjoint column ranges of it.
#[derive(Clone, Copy)]
struct SharedC(*mut f32);
// SAFETY: the threads given a SharedC write disjoint column ranges (see `sgemm_with`).
unsafe impl Send for SharedC {}
unsafe impl Sync for SharedC {}

/// `c (m x n, row-major) (+)= a (m x k) · b (k x n)` for strided matrices.
pub fn sgemm(
    c: &mut [f32],
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    accumulate: bool,
    parallel: bool,
) {
    let n = b.cols;
    sgemm_with(c, Layout::rows(n), &a, &b, accumulate, parallel)
}

/// `C (m x n, laid out in c by `layout`) (+)= A · B` from any packing sources; `parallel`
/// splits C's columns over rayon's threads in ranges of equal work. Panics unless
/// `available()`, the sources agree on k, `c` holds every element of C and each run is a
/// whole number of 16-lane halves (or the only run of its row).
pub fn sgemm_with<A: PackA, B: PackB>(
    c: &mut [f32],
    layout: Layout,
    a: &A,
    b: &B,
    accumulate: bool,
    parallel: bool,
) {
    let (m, n) = (a.rows(), b.cols());
    assert!(available(), "the blocked GEMM needs AVX-512");
    assert_eq!(
        a.depth(),
        b.depth(),
        "blocked GEMM: inner dimensions differ"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() > layout.at(m - 1, n - 1),
        "blocked GEMM: destination too small"
    );
    assert!(
        layout.run.is_multiple_of(16) || layout.run >= n,
        "blocked GEMM: a 16-lane half must lie inside one run"
    );
    let threads = if parallel {
        rayon::current_num_threads().min(n.div_ceil(NR))
    } else {
        1
    };
    let base = SharedC(c.as_mut_ptr());
    if threads <= 1 {
        // SAFETY: c holds m x n floats; this call alone writes them.
        unsafe { columns(a, b, base, layout, 0, n, accumulate) };
        return;
    }
    let bounds = column_split(b, threads);
    (0..threads).into_par_iter().for_each(|t| {
        let (j0, j1) = (bounds[t], bounds[t + 1]);
        if j0 < j1 {
            // SAFETY: every thread writes only columns j0..j1 of C, disjoint from the others'.
            unsafe { columns(a, b, base, layout, j0, j1, accumulate) };
        }
    });
}

/// Where the threads' column ranges start and end (`threads + 1` bounds, multiples of NR but
/// the last), so that each range holds about the same share of the tiles that will run. A
/// source that skips tiles can leave an even split lopsided: a 3x3 stride-2 convolution's
/// padding lies only at the top and left of the image, so the columns of the first output rows
/// hold most of the skipped tiles (with the 4x4 output from 8x8, an even split left one thread
/// 55% of the work).
fn column_split<B: PackB>(b: &B, threads: usize) -> Vec<usize> {
    let n = b.cols();
    let panels = n.div_ceil(NR);
    let cols = |jr: usize| NR.min(n - jr * NR);
    // Each panel's work: the depth of the blocks in which it runs a tile.
    let mut work = vec![0usize; panels];
    if B::SKIPS {
        let mut pc = 0;
        while pc < b.depth() {
            let kc = b.block(pc, KC);
            for (jr, w) in work.iter_mut().enumerate() {
                if b.live(pc, kc, jr * NR, cols(jr)) {
                    *w += kc;
                }
            }
            pc += kc;
        }
    } else {
        work.fill(1);
    }
    let total: usize = work.iter().sum();
    let mut bounds = vec![0];
    let mut done = 0;
    for (jr, w) in work.iter().enumerate() {
        // A range ends at the first panel boundary where its share is reached.
        while bounds.len() < threads && done * threads >= total * bounds.len() && jr > 0 {
            bounds.push(jr * NR);
        }
        done += w;
    }
    bounds.resize(threads + 1, n);
    bounds
}

// Packing buffers kept per thread: an MC x KC block of A and a KC x NC block of B.
thread_local! {
    static PACKED: Cell<(Vec<f32>, Vec<f32>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// Columns `j0..j1` of C from the whole of A and those columns of B.
///
/// # Safety
/// `c` holds every element of the m x j1 matrix `layout` places, `j0` is a multiple of NR,
/// and no other thread touches columns `j0..j1` during the call.
unsafe fn columns<A: PackA, B: PackB>(
    a: &A,
    b: &B,
    c: SharedC,
    layout: Layout,
    j0: usize,
    j1: usize,
    accumulate: bool,
) {
    let (m, k) = (a.rows(), a.depth());
    if B::SKIPS && !accumulate {
        // Skipped tiles leave C as it is, so every block adds onto a cleared C.
        for i in 0..m {
            let mut j = j0;
            while j < j1 {
                let len = (layout.run - j % layout.run).min(j1 - j);
                std::slice::from_raw_parts_mut(c.0.add(layout.at(i, j)), len).fill(0.0);
                j += len;
            }
        }
    }
    // Taken rather than borrowed: nothing here can re-enter, but a re-entry would only
    // allocate a second pair instead of failing.
    let (mut ap, mut bp) = PACKED.take();
    ap.resize(MC * KC, 0.0);
    bp.resize(KC * NC, 0.0);
    let mut live = Vec::with_capacity(NC / NR);
    // A prepacked A is read in place; any other is packed block by block into `ap`.
    let prepacked = a.prepacked();
    for jc in (j0..j1).step_by(NC) {
        let nc = NC.min(j1 - jc);
        let mut pc = 0;
        while pc < k {
            let kc = b.block(pc, KC);
            live.clear();
            live.extend(
                (0..nc.div_ceil(NR)).map(|jr| b.live(pc, kc, jc + jr * NR, NR.min(nc - jr * NR))),
            );
            if live.contains(&true) {
                b.pack(pc, kc, jc, nc, &mut bp);
                let load_c = B::SKIPS || accumulate || pc > 0;
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    if prepacked.is_none() {
                        a.pack(ic, mc, pc, kc, &mut ap);
                    }
                    for jr in (0..nc.div_ceil(NR)).filter(|&jr| live[jr]) {
                        let cols = NR.min(nc - jr * NR);
                        let bpanel = bp.as_ptr().add(jr * kc * NR);
                        for ir in 0..mc.div_ceil(MR) {
                            let rows = MR.min(mc - ir * MR);
                            let (i, j) = (ic + ir * MR, jc + jr * NR);
                            // The second half may start past C when cols <= 16 (never
                            // dereferenced then): hence the wrapping offset.
                            let ct = [
                                c.0.add(layout.at(i, j)),
                                c.0.wrapping_add(layout.at(i, j + 16)),
                            ];
                            let apanel = match prepacked {
                                Some(p) => p.panel(i, pc).as_ptr(),
                                None => ap.as_ptr().add(ir * kc * MR),
                            };
                            tile(rows, cols, kc, apanel, bpanel, ct, layout.ldc, load_c);
                        }
                    }
                }
            }
            pc += kc;
        }
    }
    PACKED.set((ap, bp));
}

/// `dst[p * W + l] = src[first + l * lane + p * step]` for lanes `l < lanes` (zero for the
/// rest of the W) and steps `p < len`. When the steps are contiguous (`step == 1`, a
/// transpose), 16 steps of 16 lanes at a time are transposed in registers, so that the reads
/// run along memory and the writes are whole rows: the element-by-element copy through a
/// block that this replaced was a fifth of the 1x1 stride-2 weight gradient (perf,
/// 128x16x16→256), where both operands are packed this way.
pub fn interleave<const W: usize>(
    src: &[f32],
    first: usize,
    lanes: usize,
    lane: usize,
    step: usize,
    len: usize,
    dst: &mut [f32],
) {
    const STEPS: usize = 16;
    if lane == 1 {
        for (p, out) in dst[..len * W].chunks_exact_mut(W).enumerate() {
            let at = first + p * step;
            if lanes == W {
                // A copy of constant length: inlined as vector moves, not a memcpy call.
                let row: &[f32; W] = src[at..at + W].try_into().expect("W values");
                out.copy_from_slice(row);
            } else {
                out[..lanes].copy_from_slice(&src[at..at + lanes]);
                out[lanes..].fill(0.0);
            }
        }
        return;
    }
    if step == 1 {
        return transpose_steps::<W>(src, first, lanes, lane, len, dst);
    }
    let mut block = [[0f32; STEPS]; W];
    for p0 in (0..len).step_by(STEPS) {
        let n = STEPS.min(len - p0);
        for (l, row) in block.iter_mut().enumerate().take(lanes) {
            let at = first + l * lane + p0 * step;
            for (p, v) in row[..n].iter_mut().enumerate() {
                *v = src[at + p * step];
            }
        }
        for (p, out) in dst[p0 * W..(p0 + n) * W].chunks_exact_mut(W).enumerate() {
            for (o, row) in out.iter_mut().zip(&block) {
                *o = row[p];
            }
        }
    }
}

/// `interleave` at `step == 1`: each 16 steps x 16 lanes as one register transpose.
fn transpose_steps<const W: usize>(
    src: &[f32],
    first: usize,
    lanes: usize,
    lane: usize,
    len: usize,
    dst: &mut [f32],
) {
    const STEPS: usize = 16;
    assert!(lanes <= W, "interleave: {lanes} lanes in a panel of {W}");
    for p0 in (0..len).step_by(STEPS) {
        let n = STEPS.min(len - p0);
        for l0 in (0..W).step_by(16) {
            let rows = lanes.saturating_sub(l0).min(16);
            // With no rows left nothing is read (and the offset may lie past the source).
            let from = if rows > 0 {
                &src[first + l0 * lane + p0..]
            } else {
                &[]
            };
            let to = &mut dst[p0 * W + l0..];
            transpose_block(from, lane, rows, n, to, W, (W - l0).min(16));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A B whose panels `dead_from..` skip every depth block but the first, like the columns
    /// of a convolution's top output rows that the padding feeds.
    struct Lopsided {
        n: usize,
        k: usize,
        dead_from: usize,
    }

    impl PackB for Lopsided {
        const SKIPS: bool = true;
        fn cols(&self) -> usize {
            self.n
        }
        fn depth(&self) -> usize {
            self.k
        }
        fn live(&self, p0: usize, _kc: usize, j0: usize, _cols: usize) -> bool {
            p0 == 0 || j0 / NR < self.dead_from
        }
        fn pack(&self, _p0: usize, kc: usize, _j0: usize, nc: usize, dst: &mut [f32]) {
            dst[..nc.div_ceil(NR) * kc * NR].fill(1.0);
        }
    }

    /// The tiles of each thread's range (in depth), from a split.
    fn work_per_thread(b: &Lopsided, bounds: &[usize]) -> Vec<usize> {
        bounds
            .windows(2)
            .map(|r| {
                (r[0]..r[1])
                    .step_by(NR)
                    .map(|j| {
                        let live_blocks = if j / NR < b.dead_from {
                            b.k.div_ceil(KC)
                        } else {
                            1
                        };
                        live_blocks * KC
                    })
                    .sum()
            })
            .collect()
    }

    /// `interleave` against its definition, for W = MR and NR: contiguous lanes (a copy),
    /// contiguous steps (the register transpose) with lanes short of one and of two 16-lane
    /// halves and step counts short of 16, and strided steps; the padding lanes come out zero
    /// over a destination that held NaN.
    #[test]
    fn interleave_matches_its_definition() {
        fn check<const W: usize>(lanes: usize, lane: usize, step: usize, len: usize) {
            let first = 3;
            let size = first + lanes.max(1) * lane + len * step + 16;
            let src: Vec<f32> = (0..size).map(|i| i as f32).collect();
            let mut dst = vec![f32::NAN; len * W];
            interleave::<W>(&src, first, lanes, lane, step, len, &mut dst);
            for p in 0..len {
                for l in 0..W {
                    let want = if l < lanes {
                        src[first + l * lane + p * step]
                    } else {
                        0.0
                    };
                    let got = dst[p * W + l];
                    assert_eq!(
                        got, want,
                        "W {W} lanes {lanes} lane {lane} step {step}: ({p}, {l})"
                    );
                }
            }
        }
        if !available() {
            return;
        }
        for (lanes, len) in [(1, 1), (5, 17), (14, 16), (16, 33), (17, 7), (32, 40)] {
            check::<NR>(lanes.min(NR), 50, 1, len);
            check::<MR>(lanes.min(MR), 50, 1, len);
            check::<NR>(lanes.min(NR), 41, 3, len);
            check::<MR>(lanes.min(MR), 1, 37, len);
        }
        check::<NR>(0, 50, 1, 5);
    }

    #[test]
    fn a_source_without_skips_is_split_into_even_panel_ranges() {
        for (n, threads) in [(32, 1), (100, 2), (2048, 2), (2048, 3), (40 * NR + 5, 4)] {
            let bounds = column_split(&MatRef::rm(&[], 0, n), threads);
            assert_eq!(
                (bounds.len(), bounds[0], bounds[threads]),
                (threads + 1, 0, n)
            );
            let panels: Vec<usize> = bounds
                .windows(2)
                .map(|r| r[1].div_ceil(NR) - r[0] / NR)
                .collect();
            let (least, most) = (panels.iter().min().unwrap(), panels.iter().max().unwrap());
            assert!(most - least <= 1, "n {n}: {bounds:?}");
        }
    }

    #[test]
    fn a_lopsided_source_is_split_by_the_tiles_that_run() {
        // Panels 0..16 run 8 blocks each, panels 16..64 one: an even split would give the
        // first thread 128 + 16 blocks of tiles and the second 32.
        let b = Lopsided {
            n: 64 * NR,
            k: 8 * KC,
            dead_from: 16,
        };
        for threads in [2, 3] {
            let bounds = column_split(&b, threads);
            assert_eq!((bounds[0], bounds[threads]), (0, b.n));
            assert!(bounds.windows(2).all(|r| r[0] <= r[1] && r[0] % NR == 0));
            let work = work_per_thread(&b, &bounds);
            let (total, most) = (work.iter().sum::<usize>(), *work.iter().max().unwrap());
            // Within one panel's work (8 blocks) of an even share.
            assert!(
                most <= total / threads + 8 * KC,
                "{threads} threads: {work:?} from {bounds:?}"
            );
        }
    }

    #[test]
    fn a_lopsided_product_is_the_same_on_every_thread_count() {
        let (m, k, n) = (20, 3 * KC, 10 * NR + 7);
        let b = Lopsided { n, k, dead_from: 4 };
        let a_vals: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 - 6.0).collect();
        let a = MatRef::rm(&a_vals, m, k);
        let product = |threads: usize| {
            let mut c = vec![f32::NAN; m * n];
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| sgemm_with(&mut c, Layout::rows(n), &a, &b, false, true));
            c
        };
        let one = product(1);
        for i in 0..m {
            for j in 0..n {
                // Every step of a live block is 1: the row's sum over the live depth.
                let depth = if j / NR < b.dead_from { k } else { KC };
                let want: f32 = a_vals[i * k..i * k + depth].iter().sum();
                assert_eq!(one[i * n + j], want, "({i}, {j})");
            }
        }
        for threads in [2, 3] {
            assert_eq!(product(threads), one, "{threads} threads");
        }
    }
}
