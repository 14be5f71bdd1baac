//! The hot path, item by item (src/bench: every distinct ResNet18 and WRN-22-8 convolution in
//! its three directions, dual-BN + masked ReLU forward and backward, the PGD update, AugMix,
//! each corruption, one whole stage-1 step), at batch 128: on the CPU always, and on the GPU
//! when one is usable, timed there with CUDA events. `rlnet bench` runs a short version of the
//! same items and adds each one's fraction of its floor.
//!
//! Throughput: memory-bound items report bytes/s (their minimum traffic); compute-bound ones
//! report "elements"/s where one element is one FLOP (criterion has no FLOP unit), so
//! "1.2 Telem/s" reads as 1.2 TFLOP/s.
//!
//!     cargo bench --bench hot_path                      # everything (the CPU part takes long)
//!     cargo bench --bench hot_path -- 'gpu/conv'        # criterion's own name filter
//!
//! RLNET_BENCH_STEP_WIDTH (default 1.0) sets the stage-1 step's width multiplier; frost reads
//! its textures from ../shared/data/frost and is skipped where they are absent.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use rlnet::bench::peaks::Peaks;
use rlnet::bench::work::{Bench, Prepared};
use rlnet::bench::{items, Family, Item, Selection};
use rlnet::corrupt::Resources;
use rlnet::device::Device;
use rlnet::nn::Arch;
use std::path::Path;
use std::time::Duration;

// The same allocator as the rlnet binary, so the figures are what a training run sees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn selection(gpu: bool) -> Selection {
    let width = std::env::var("RLNET_BENCH_STEP_WIDTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    Selection {
        step: Some((Arch::ResNet18, width)),
        tensor_cores: gpu,
        ..Selection::default()
    }
}

fn resources() -> Resources {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/frost");
    Resources::with_frost_dir(&dir).unwrap_or_default()
}

/// Bytes/s for memory-bound items, FLOP/s (as elements) for compute-bound ones.
fn throughput(item: &Item, peaks: &Peaks) -> Throughput {
    if item.compute_bound(peaks) {
        Throughput::Elements(item.flops as u64)
    } else {
        Throughput::Bytes(item.bytes as u64)
    }
}

fn settings(g: &mut BenchmarkGroup<'_, WallTime>, family: Family, gpu: bool) {
    let (samples, secs) = match (family, gpu) {
        (Family::Step, false) => (10, 60),
        (_, false) => (10, 3),
        (_, true) => (20, 2),
    };
    g.sample_size(samples)
        .measurement_time(Duration::from_secs(secs))
        .warm_up_time(Duration::from_millis(500));
}

fn run_all(c: &mut Criterion, device: Device) {
    let gpu = device.gpu().cloned();
    let prefix = if gpu.is_some() { "gpu" } else { "cpu" };
    // The floor only decides the throughput unit here; the H200 figures stand in for any GPU.
    let peaks = Peaks::of(&device).unwrap_or_else(Peaks::h200);
    let sel = selection(gpu.is_some());
    let items = items(&sel).expect("the benchmark items");
    let bench = Bench::new(device, sel.batch, resources()).expect("benchmark inputs");
    for family in [
        Family::Conv,
        Family::BnRelu,
        Family::Pgd,
        Family::AugMix,
        Family::Corrupt,
        Family::Step,
    ] {
        let mut group = c.benchmark_group(format!("{prefix}/{}", family.name()));
        settings(&mut group, family, gpu.is_some());
        for item in items.iter().filter(|i| i.family() == family) {
            let mut run = match bench.prepare(item).expect("prepares") {
                Prepared::Run(r) => r,
                Prepared::Skip(why) => {
                    eprintln!("{prefix}/{}: skipped ({why})", item.name);
                    continue;
                }
            };
            group.throughput(throughput(item, &peaks));
            let id = item
                .name
                .split_once('/')
                .map_or(&item.name[..], |(_, rest)| rest);
            match &gpu {
                None => group.bench_function(id, |b| b.iter(|| run().expect("runs"))),
                Some(d) => group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let ms = d
                            .time_ms(|| (0..iters).try_for_each(|_| run()))
                            .expect("kernels run");
                        Duration::from_secs_f64(ms as f64 / 1e3)
                    })
                }),
            };
        }
        group.finish();
    }
}

fn bench_cpu(c: &mut Criterion) {
    run_all(c, Device::Cpu);
}

fn bench_gpu(c: &mut Criterion) {
    match Device::cuda() {
        Ok(device) => run_all(c, device),
        Err(e) => eprintln!("gpu: skipped ({e})"),
    }
}

criterion_group!(benches, bench_cpu, bench_gpu);
criterion_main!(benches);
