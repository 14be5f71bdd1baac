//! The strided forwards as an implicit GEMM whose B panels are gathered straight from the NCHW
//! input, f32 on AVX-512 CPUs: Y[co][(s, o)] = Σ_(ci, t) W[co][(ci, t)] · X[(ci, t)][(s, o)].
//!
//! Why: an im2col forward writes the whole column matrix (for ResNet18's 128x16x16→256
//! stride-2 layer, 38 MB per batch of 128) and reads it back to pack it, over a quarter of that
//! convolution's time; the transposing implicit GEMM (`implicit`) trades that for two
//! transposes and only wins where much of the input is padding. Here the weights are A as they
//! lie in memory ([co][ci][t] is row-major with depth (ci, t)), the columns, ordered (sample,
//! position), are NCHW's own (the GEMM writes y in place), and each panel step, one channel at
//! one tap for 32 output columns, is filled from the input as it is: each 16-lane half from a
//! few windows of 32 consecutive values of the channel's plane, by masked loads and a
//! two-source permute (padding lanes read nothing and pack zeros). Masked hardware gathers
//! instead made packing a third of the time (17 ms against 15 for im2col on that layer); the
//! windows, their plans built once per panel phase and the planes prefetched a few channels
//! ahead, make it 11-13 ms.
//!
//! Every sum runs in a fixed order whatever the thread count (the GEMM splits columns only).

use crate::geom::ConvGeom;
use crate::ops::matmul::blocked::{self, Layout, PackB, PrepackedA, NR};
use crate::ops::matmul::MatRef;
use std::arch::x86_64::*;

/// Channels ahead of the packing whose plane lines are prefetched.
const PREFETCH_CHANNELS: usize = 4;
/// Floats per cache line.
const LINE: usize = 16;

/// Lanes of one half of a panel step (one 16-lane vector).
const HALF: usize = NR / 2;

/// Whether `forward` takes this convolution: AVX-512, output maps whose samples fill whole
/// 16-lane halves (so that C's runs split into halves, as the GEMM's NCHW layout needs), and
/// 32 samples' offsets within i32. On every strided ResNet18 layer it was faster than im2col
/// and the packed GEMM (the 1x1 stride-2 shortcuts 2.2x on 32x32 and 16x16 inputs, 1.1x on
/// 8x8; the 3x3 stride-2 layers 1.2-1.3x), under the binary's allocator (mimalloc, with which
/// im2col's strided stores ran 3x slower than under the system allocator).
pub fn applies(g: &ConvGeom) -> bool {
    let sample = g.c_in * g.h * g.w;
    blocked::available() && g.hw_out().is_multiple_of(HALF) && i32::try_from(NR * sample).is_ok()
}

/// y = conv(x, w) for a convolution where `applies(g)`.
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    assert!(applies(g), "gathered forward: unsupported geometry {g:?}");
    assert!(x.len() == g.x_len() && w.len() == g.w_len() && y.len() == g.y_len());
    let a = PrepackedA::new(&MatRef::rm(w, g.c_out, g.ckk()));
    let b = GatheredColumns::new(x, g);
    blocked::sgemm_with(y, Layout::runs(g.c_out, g.hw_out()), &a, &b, false, true);
}

/// The forward's B: X[(ci, t)][(s, o)] = x[s][ci][oy·stride + ky − pad][ox·stride + kx − pad],
/// zero outside the image.
struct GatheredColumns<'a> {
    x: &'a [f32],
    g: &'a ConvGeom,
    /// The plan of every whole panel, by its first column modulo `period`: panels whose
    /// first columns agree there read the same offsets from their first samples.
    plans: Vec<PanelPlan>,
    period: usize,
}

impl<'a> GatheredColumns<'a> {
    fn new(x: &'a [f32], g: &'a ConvGeom) -> Self {
        let hw_out = g.hw_out();
        let period = hw_out / gcd(hw_out, NR) * NR;
        let whole = g.n * hw_out / NR * NR;
        let plans = (0..period.min(whole))
            .step_by(NR)
            .map(|first| PanelPlan::new(g, &PanelLanes::new(g, first, NR)))
            .collect();
        GatheredColumns {
            x,
            g,
            plans,
            period,
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl PackB for GatheredColumns<'_> {
    fn cols(&self) -> usize {
        self.g.n * self.g.hw_out()
    }
    fn depth(&self) -> usize {
        self.g.ckk()
    }
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        let g = self.g;
        for q in 0..nc.div_ceil(NR) {
            let first = j0 + q * NR;
            let cols = NR.min(nc - q * NR);
            let panel = &mut dst[q * kc * NR..(q + 1) * kc * NR];
            let partial;
            let plan = if cols == NR {
                &self.plans[first % self.period / NR]
            } else {
                partial = PanelPlan::new(g, &PanelLanes::new(g, first, cols));
                &partial
            };
            let sample = first / g.hw_out() * g.c_in * g.h * g.w;
            // SAFETY: `applies` holds (checked in `forward`); every window reads only input
            // pixels of the samples of columns first..first+cols (`PanelLanes`), channels stay
            // below c_in (p0 + kc <= ckk), and the panel holds kc steps of NR floats.
            unsafe { pack_panel(g, &self.x[sample..], plan, p0, kc, panel) };
        }
    }
}

/// Where one panel's 32 columns start reading: for column `first + l`, sample s and output
/// position (oy, ox), the offset of tap (0, 0) in channel 0 relative to the panel's first
/// sample, and the input row and column of that tap (which may lie in the padding). Columns
/// past B's edge get a row far outside every image, so their lanes are always masked off.
struct PanelLanes {
    offset: [i32; NR],
    row: [i32; NR],
    col: [i32; NR],
}

impl PanelLanes {
    fn new(g: &ConvGeom, first: usize, cols: usize) -> Self {
        let (hw_out, w_out) = (g.hw_out(), g.w_out());
        let sample = (g.c_in * g.h * g.w) as i32;
        let (s0, pad, stride, w) = (first / hw_out, g.pad as i32, g.stride as i32, g.w as i32);
        let mut lanes = PanelLanes {
            offset: [0; NR],
            row: [i32::MIN / 2; NR],
            col: [0; NR],
        };
        for l in 0..cols {
            let (s, o) = ((first + l) / hw_out, (first + l) % hw_out);
            let row = (o / w_out) as i32 * stride - pad;
            let col = (o % w_out) as i32 * stride - pad;
            lanes.row[l] = row;
            lanes.col[l] = col;
            lanes.offset[l] = (s - s0) as i32 * sample + row * w + col;
        }
        lanes
    }
}

/// Up to 32 consecutive input values that feed some lanes of one half of a panel step, in the
/// channel plane's coordinates: the half reads them with two masked loads and one two-source
/// permute. Lanes of one half read increasing offsets, so a few windows cover them: one for a
/// 16-wide output row of a 32-wide input, two for two rows (8x8 from 16x16) or for four rows of
/// a 4x4 output from 8x8, at most one per lane for any geometry.
#[derive(Clone, Copy)]
struct Window {
    start: usize,
    /// Which of the window's 16 + 16 values are read (the others may lie past the input).
    load: [__mmask16; 2],
    /// Each lane's position in the window (0..32).
    index: __m512i,
    /// The lanes the window feeds.
    lanes: __mmask16,
}

/// The windows of every (tap, half) of one panel, `ranges[2 t + half]` indexing `windows`.
struct PanelPlan {
    windows: Vec<Window>,
    ranges: Vec<std::ops::Range<usize>>,
    /// The cache lines of a channel plane the windows read (offsets of their first floats,
    /// for a line-aligned plane).
    lines: Vec<usize>,
}

impl PanelPlan {
    fn new(g: &ConvGeom, lanes: &PanelLanes) -> Self {
        let mut plan = PanelPlan {
            windows: Vec::new(),
            ranges: Vec::with_capacity(2 * g.k * g.k),
            lines: Vec::new(),
        };
        for t in 0..g.k * g.k {
            let (ky, kx) = ((t / g.k) as i32, (t % g.k) as i32);
            for half in 0..2 {
                let begin = plan.windows.len();
                let mut index = [0i32; HALF];
                let mut open: Option<Window> = None;
                for l in 0..HALF {
                    let lane = half * HALF + l;
                    let (row, col) = (lanes.row[lane] + ky, lanes.col[lane] + kx);
                    let inside = (0..g.h as i32).contains(&row) && (0..g.w as i32).contains(&col);
                    if !inside {
                        continue;
                    }
                    let at = (lanes.offset[lane] + ky * g.w as i32 + kx) as usize;
                    let window = match open {
                        Some(w) if at < w.start + NR => open.as_mut().expect("open"),
                        _ => {
                            if let Some(w) = open.take() {
                                plan.windows.push(w.with_index(&mut index));
                            }
                            open.insert(Window {
                                start: at,
                                load: [0; 2],
                                // SAFETY: AVX-512F is available wherever a plan is built
                                // (`applies`); a zero vector needs nothing else.
                                index: unsafe { _mm512_setzero_si512() },
                                lanes: 0,
                            })
                        }
                    };
                    let pos = at - window.start;
                    window.load[pos / HALF] |= 1 << (pos % HALF);
                    window.lanes |= 1 << l;
                    index[l] = pos as i32;
                }
                if let Some(w) = open {
                    plan.windows.push(w.with_index(&mut index));
                }
                plan.ranges.push(begin..plan.windows.len());
            }
        }
        // Each line once: a panel that spans two samples reads two far-apart parts of the
        // input, so the lines, not the span between them.
        plan.lines = plan
            .windows
            .iter()
            .flat_map(|w| [w.start, w.start + HALF, w.start + NR - 1])
            .map(|at| at / LINE * LINE)
            .collect();
        plan.lines.sort_unstable();
        plan.lines.dedup();
        plan
    }
}

impl Window {
    /// The window with its lanes' positions from `index` (then cleared for the next window).
    fn with_index(mut self, index: &mut [i32; HALF]) -> Self {
        // SAFETY: AVX-512F is available (see `PanelPlan::new`); the load reads 16 i32s.
        self.index = unsafe { _mm512_loadu_si512(index.as_ptr().cast()) };
        *index = [0; HALF];
        self
    }
}

/// Packs depth `p0..p0+kc` of one panel: step p = (ci, t) fills each half from the windows of
/// tap t in channel ci's plane; lanes no window feeds (padding, columns past B) are zero.
///
/// # Safety
/// AVX-512F is available; `x` starts at the panel's first sample and every window's read
/// values plus `ci * h * w` for `ci < c_in` lie inside it; `p0 + kc <= ckk`; `panel` holds
/// `kc * NR` floats.
#[target_feature(enable = "avx512f")]
unsafe fn pack_panel(
    g: &ConvGeom,
    x: &[f32],
    plan: &PanelPlan,
    p0: usize,
    kc: usize,
    panel: &mut [f32],
) {
    let (kk, plane) = (g.k * g.k, g.h * g.w);
    let out = panel.as_mut_ptr();
    // Step p0 + step is channel ci at tap t, counted along rather than divided out.
    let (mut ci, mut t) = (p0 / kk, p0 % kk);
    for step in 0..kc {
        let base = x.as_ptr().add(ci * plane);
        if t == 0 {
            // The planes stream from memory (a block's 32 samples are far apart), and the
            // hardware prefetchers do not follow them: fetch the lines a later channel reads.
            let ahead = base.wrapping_add(PREFETCH_CHANNELS * plane);
            for &line in &plan.lines {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast());
            }
        }
        for half in 0..2 {
            let mut v = _mm512_setzero_ps();
            let range = plan.ranges.get_unchecked(2 * t + half).clone();
            for w in plan.windows.get_unchecked(range) {
                // `wrapping_add`: a window's second half may start past x (then its load
                // mask is empty and nothing is read).
                let at = base.wrapping_add(w.start);
                let lo = _mm512_maskz_loadu_ps(w.load[0], at);
                let hi = _mm512_maskz_loadu_ps(w.load[1], at.wrapping_add(HALF));
                v = _mm512_mask_mov_ps(v, w.lanes, _mm512_permutex2var_ps(lo, w.index, hi));
            }
            _mm512_storeu_ps(out.add(step * NR + half * HALF), v);
        }
        t += 1;
        if t == kk {
            (ci, t) = (ci + 1, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::cpu::forward_naive;
    use crate::ops::conv::test_inputs::square;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// Against the direct loops on shapes that cross every edge: a half panel at B's right
    /// edge, panels that span samples, depth blocks that split a channel's taps, rows past a
    /// whole MR panel, padding on every side, strides 1 to 3 (one to four windows a half),
    /// 1x1 and 5x5 kernels.
    #[test]
    fn matches_the_direct_loops() {
        if !blocked::available() {
            return;
        }
        let shapes = [
            square(3, 70, 8, 29, 3, 2),
            square(2, 20, 24, 17, 3, 3),
            square(2, 40, 16, 15, 3, 1),
            square(3, 64, 8, 20, 5, 2),
            square(5, 33, 16, 17, 1, 2),
            square(3, 64, 8, 20, 1, 2),
        ];
        for g in shapes {
            assert!(applies(&g), "{g:?}");
            let (x, w) = (values(g.x_len(), 1), values(g.w_len(), 2));
            let mut want = vec![0f32; g.y_len()];
            forward_naive(&g, &x, &w, &mut want);
            let mut got = vec![f32::NAN; g.y_len()];
            forward(&g, &x, &w, &mut got);
            let scale = (g.ckk() as f32).sqrt();
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * scale * (1.0 + b.abs()),
                    "{g:?} y[{i}]: {a} vs {b}"
                );
            }
        }
    }

    /// The same bits on one thread as on three (the GEMM splits columns only).
    #[test]
    fn thread_count_does_not_change_the_bits() {
        if !blocked::available() {
            return;
        }
        let g = square(7, 48, 16, 30, 3, 2);
        let (x, w) = (values(g.x_len(), 3), values(g.w_len(), 4));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut y = vec![0f32; g.y_len()];
            pool.install(|| forward(&g, &x, &w, &mut y));
            y
        };
        assert_eq!(run(1), run(3));
    }
}
