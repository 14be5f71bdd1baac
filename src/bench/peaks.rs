//! The rates an item's floor is measured against: copy bandwidth and matmul FLOP rate.
//!
//! On the H200 these are the measured figures of ../shared/research/perf-anchors.md (4.3 TB/s
//! copy, 790 TFLOP/s dense bf16 matmul): the floor is bf16 even for our f32 kernels,
//! because bf16 is what the hardware can do. On a CPU they are measured here, at start-up:
//! the best of a few multi-threaded copies of 128 MiB, and the best of a few 2048³ f32 GEMMs
//! through the `gemm` crate (`Kernel::Crate`, the CPU backend's default matmul, so "fraction of
//! floor" reads as "fraction of what this machine's GEMM reaches"; the packed AVX-512 kernel
//! and the implicit-GEMM convolutions can pass 100% of it, the Winograd ones well past it).
//! Either can be overridden.

use crate::device::Device;
use crate::ops::matmul::{matmul, MatRef};
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// Copy bandwidth (bytes/s) and matmul rate (FLOP/s), with where they came from.
#[derive(Clone, Debug, Serialize)]
pub struct Peaks {
    pub bandwidth: f64,
    pub flops: f64,
    pub source: String,
}

impl Peaks {
    /// The measured H200 figures (perf-anchors.md, "Target machine").
    pub fn h200() -> Peaks {
        Peaks {
            bandwidth: 4.3e12,
            flops: 790e12,
            source: "H200: 4.3 TB/s copy, 790 TFLOP/s dense bf16 (perf-anchors.md)".into(),
        }
    }

    /// The peaks of `device`: the H200 figures for an H200, a measurement on the CPU, and
    /// `None` for any other GPU (the caller must pass its own with --peak-bandwidth/-flops).
    pub fn of(device: &Device) -> Option<Peaks> {
        match device {
            Device::Cuda(d) if d.name().contains("H200") => Some(Peaks::h200()),
            Device::Cuda(_) => None,
            Device::Cpu => Some(measure_cpu()),
        }
    }

    /// Replaces either figure with a user-given one, saying so in `source`.
    pub fn with_overrides(mut self, bandwidth: Option<f64>, flops: Option<f64>) -> Peaks {
        if let Some(b) = bandwidth {
            self.bandwidth = b;
            self.source += &format!("; bandwidth {} GB/s given", b / 1e9);
        }
        if let Some(f) = flops {
            self.flops = f;
            self.source += &format!("; matmul {} TFLOP/s given", f / 1e12);
        }
        self
    }
}

/// Best of `reps` timings of `f`, in seconds.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Copy bandwidth and f32 GEMM rate of this CPU, with all of rayon's threads.
pub fn measure_cpu() -> Peaks {
    const COPY: usize = 32 << 20; // f32 values: 128 MiB, far past any cache
    let src = vec![1f32; COPY];
    let mut dst = vec![0f32; COPY];
    let copy_s = best_of(5, || {
        dst.par_chunks_mut(1 << 16)
            .zip(src.par_chunks(1 << 16))
            .for_each(|(d, s)| d.copy_from_slice(s));
    });
    const N: usize = 2048;
    let a = vec![0.5f32; N * N];
    let b = vec![0.25f32; N * N];
    let mut c = vec![0f32; N * N];
    let gemm_s = best_of(3, || {
        matmul(
            &mut c,
            MatRef::rm(&a, N, N),
            MatRef::rm(&b, N, N),
            false,
            true,
        )
    });
    let threads = rayon::current_num_threads();
    Peaks {
        bandwidth: 2.0 * (COPY * 4) as f64 / copy_s,
        flops: 2.0 * (N * N * N) as f64 / gemm_s,
        source: format!(
            "CPU, {threads} threads, measured now: best 128 MiB copy, best 2048³ f32 GEMM (gemm crate)"
        ),
    }
}
