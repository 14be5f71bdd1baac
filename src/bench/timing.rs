//! Measuring a runner: wall clock on the CPU, CUDA events on the GPU (the GPU's own time for
//! the work enqueued, several runs per event pair when one run is too short to time well).

use super::work::Runner;
use crate::device::Device;
use crate::error::Result;
use serde::Serialize;
use std::time::Instant;

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Untimed runs first (kernel compilation, allocator warm-up, cuDNN-style autotuning).
    pub warmup: usize,
    pub min_samples: usize,
    pub max_samples: usize,
    /// Keep sampling until this much has been timed (and min_samples reached).
    pub min_time_s: f64,
}

impl Budget {
    /// `rlnet bench`'s short run.
    pub const QUICK: Budget = Budget {
        warmup: 1,
        min_samples: 3,
        max_samples: 50,
        min_time_s: 0.2,
    };
}

/// A measured item: seconds per run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Measurement {
    pub median_s: f64,
    pub min_s: f64,
    pub samples: usize,
    /// Runs inside each timed sample (GPU: several runs per event pair for short kernels).
    pub runs_per_sample: usize,
}

/// A GPU sample should last at least this long, so event resolution (~0.5 µs) and launch
/// gaps do not dominate.
const GPU_SAMPLE_S: f64 = 2e-3;

/// Seconds per run of one sample of `per` runs.
fn sample(device: &Device, run: &mut Runner, per: usize) -> Result<f64> {
    match device {
        Device::Cpu => {
            let t = Instant::now();
            (0..per).try_for_each(|_| run())?;
            Ok(t.elapsed().as_secs_f64() / per as f64)
        }
        Device::Cuda(d) => {
            let ms = d.time_ms(|| (0..per).try_for_each(|_| run()))?;
            Ok(ms as f64 / 1e3 / per as f64)
        }
    }
}

pub fn measure(device: &Device, run: &mut Runner, b: Budget) -> Result<Measurement> {
    for _ in 0..b.warmup {
        run()?;
    }
    // On the GPU, enough runs per sample to last GPU_SAMPLE_S; on the CPU one run is long
    // enough to time with the wall clock.
    let per = match device {
        Device::Cpu => 1,
        Device::Cuda(d) => {
            d.synchronize()?;
            let one = sample(device, run, 1)?;
            ((GPU_SAMPLE_S / one.max(1e-7)).ceil() as usize).clamp(1, 10_000)
        }
    };
    let mut times = Vec::new();
    let mut total = 0.0;
    while times.len() < b.max_samples.max(1)
        && (times.len() < b.min_samples.max(1) || total < b.min_time_s)
    {
        let t = sample(device, run, per)?;
        total += t * per as f64;
        times.push(t);
    }
    times.sort_by(f64::total_cmp);
    Ok(Measurement {
        median_s: times[times.len() / 2],
        min_s: times[0],
        samples: times.len(),
        runs_per_sample: per,
    })
}
