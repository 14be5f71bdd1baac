//! Every reader of outside input, fuzzed: valid seed files mutated at random (bit flips,
//! boundary values written over integers and length fields, truncation, deletion, duplication,
//! insertion, splices of two seeds) and fed to the parser, which must return (an error is fine)
//! without panicking, within a second, and without asking for memory its input cannot justify.
//!
//! CI runs RLNET_FUZZ_INPUTS inputs per parser (default 100,000; the whole file in about a
//! minute on 2 cores); `RLNET_FUZZ_INPUTS=10000000 cargo test --release --test fuzz --
//! --nocapture` runs longer. Inputs that fail are written to the temporary folder the failure
//! message names.

use npyz::WriterBuilder;
use rlnet::checkpoint;
use rlnet::corrupt::frost::decode_texture;
use rlnet::corrupt::io::{images_from_npy, labels_from_npy};
use rlnet::data::cifar::{read_bin_bytes, read_pickle_bytes, CifarKind};
use rlnet::data::source::DatasetKind;
use rlnet::data::tiny_imagenet::decode_jpeg;
use rlnet::nn::{Arch, Domain, Model, ModelConfig};
use rlnet::pytorch::{archive, reference, tensors};
use rlnet::rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The system allocator, counting the bytes live and their peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// No input may make a parser hold more than this at once (the largest seed is 14 KB).
const MEMORY_LIMIT: usize = 256 << 20;
const TIME_LIMIT: Duration = Duration::from_secs(1);

/// One reader: its seeds and how an input reaches it.
struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    /// Whether the input was accepted (Ok).
    parse: fn(&[u8]) -> bool,
}

fn fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `n` CIFAR binary records of `label_bytes` label bytes each (labels below 10).
fn cifar_records(n: usize, label_bytes: usize) -> Vec<u8> {
    let rec = label_bytes + 3072;
    (0..n * rec)
        .map(|i| match i % rec < label_bytes {
            true => (i / rec % 10) as u8,
            false => (i * 7 % 251) as u8,
        })
        .collect()
}

/// A uint8 .npy of `shape` (or int64 with `wide`).
fn npy(shape: &[u64], wide: bool) -> Vec<u8> {
    let n: u64 = shape.iter().product();
    let mut out = Vec::new();
    if wide {
        let mut w = npyz::WriteOptions::<i64>::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut out)
            .begin_nd()
            .unwrap();
        w.extend((0..n as i64).map(|i| i % 10)).unwrap();
        w.finish().unwrap();
    } else {
        let mut w = npyz::WriteOptions::<u8>::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut out)
            .begin_nd()
            .unwrap();
        w.extend((0..n).map(|i| (i % 256) as u8)).unwrap();
        w.finish().unwrap();
    }
    out
}

/// A small RGB PNG.
fn png_seed() -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, 12, 9);
    e.set_color(png::ColorType::Rgb);
    e.set_depth(png::BitDepth::Eight);
    let mut w = e.write_header().unwrap();
    let pixels: Vec<u8> = (0..12 * 9 * 3).map(|i| (i * 5 % 256) as u8).collect();
    w.write_image_data(&pixels).unwrap();
    w.finish().unwrap();
    out
}

/// The checkpoint of a tiny model.
fn checkpoint_seed() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("rlnet-fuzz-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.safetensors");
    let model = Model::new(ModelConfig::new(Arch::ResNet18, 0.0625), 1).unwrap();
    let meta = checkpoint::CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        stage: "teacher".into(),
        model: model.config.clone(),
        state: serde_json::json!({"progress": {"epoch": 1}}),
    };
    checkpoint::save(&path, &model, None, &meta).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    bytes
}

/// A tiny RLNet-student .pth as rlnet exports it (ResNet18 at width 1/32 on 8 px inputs).
fn pth_seed() -> Vec<u8> {
    let cfg = ModelConfig {
        input_size: 8,
        ..ModelConfig::new(Arch::ResNet18, 0.03125)
    };
    let model = Model::new(cfg, 1).unwrap();
    reference::export(&model, reference::Layout::RlnetStudent, Domain::Clean).unwrap()
}

/// The container, the pickle and its tensors; a state dict that reads is also imported.
fn read_pth(b: &[u8]) -> bool {
    let Ok(saved) = archive::read(b, "fuzz").and_then(|a| tensors::saved(&a, "fuzz")) else {
        return false;
    };
    let _ = reference::import(&saved, DatasetKind::Cifar10, "fuzz");
    true
}

fn targets() -> Vec<Target> {
    let jpegs: Vec<Vec<u8>> = ["grey", "prog", "q60_422", "q75_420", "q90_444"]
        .iter()
        .map(|n| fixture(&format!("tests/fixtures/jpeg_pil/{n}.jpg")))
        .collect();
    let pickles: Vec<Vec<u8>> = ["data_batch_1", "data_batch_2", "test", "train"]
        .iter()
        .map(|n| fixture(&format!("tests/fixtures/cifar_pickle/{n}")))
        .collect();
    vec![
        Target {
            name: "CIFAR-10 binary",
            seeds: vec![cifar_records(2, 1), cifar_records(1, 1)],
            parse: |b| read_bin_bytes(b, CifarKind::Cifar10, "fuzz").is_ok(),
        },
        Target {
            name: "CIFAR-100 binary",
            seeds: vec![cifar_records(2, 2)],
            parse: |b| read_bin_bytes(b, CifarKind::Cifar100, "fuzz").is_ok(),
        },
        Target {
            name: "CIFAR python pickle (the pickle VM and numpy arrays)",
            seeds: pickles.clone(),
            parse: |b| {
                let ten = read_pickle_bytes(b, CifarKind::Cifar10, "fuzz").is_ok();
                read_pickle_bytes(b, CifarKind::Cifar100, "fuzz").is_ok() || ten
            },
        },
        Target {
            name: "CIFAR-C images .npy",
            seeds: vec![npy(&[2, 4, 4, 3], false), npy(&[1, 32, 32, 3], false)],
            parse: |b| images_from_npy(b, "fuzz").is_ok(),
        },
        Target {
            name: "CIFAR-C labels .npy",
            seeds: vec![npy(&[7], false), npy(&[5], true)],
            parse: |b| labels_from_npy(b, "fuzz").is_ok(),
        },
        Target {
            name: "safetensors checkpoint and its JSON header",
            seeds: vec![checkpoint_seed()],
            parse: |b| checkpoint::from_bytes(b, Path::new("fuzz")).is_ok(),
        },
        Target {
            name: "Tiny-ImageNet JPEG",
            seeds: jpegs.clone(),
            parse: |b| decode_jpeg(b, &mut vec![0u8; 64 * 64 * 3]).is_ok(),
        },
        Target {
            name: "frost texture PNG",
            seeds: vec![png_seed()],
            parse: |b| decode_texture(b, true).is_ok(),
        },
        Target {
            name: "frost texture JPEG",
            seeds: jpegs,
            parse: |b| decode_texture(b, false).is_ok(),
        },
        Target {
            name: "PyTorch .pth (zip and legacy), its pickle, tensors and import",
            seeds: vec![
                pth_seed(),
                fixture("tests/fixtures/pytorch/zip.pth"),
                fixture("tests/fixtures/pytorch/legacy.pth"),
            ],
            parse: read_pth,
        },
    ]
}

/// A random draw in [0, n) from the input's key and a counter.
struct Draws {
    key: u64,
    i: u64,
}

impl Draws {
    fn below(&mut self, n: usize) -> usize {
        self.i += 1;
        rng::below(self.key, 91, self.i, n.max(1) as u64) as usize
    }
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff_ffff,
    0xffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    1 << 40,
];

/// One mutated input from the seeds.
fn mutate(seeds: &[Vec<u8>], key: u64) -> Vec<u8> {
    let mut d = Draws { key, i: 0 };
    let mut b = seeds[d.below(seeds.len())].clone();
    for _ in 0..1 + d.below(4) {
        let len = b.len();
        match d.below(8) {
            0 if len > 0 => {
                let i = d.below(len);
                b[i] ^= 1 << d.below(8);
            }
            1 if len > 0 => {
                let i = d.below(len);
                b[i] = INTERESTING[d.below(5)] as u8;
            }
            // A boundary value over what may be a length or offset field.
            2 if len >= 8 => {
                let (i, w) = (d.below(len - 7), [1, 2, 4, 8][d.below(4)]);
                let v = INTERESTING[d.below(INTERESTING.len())].to_le_bytes();
                b[i..i + w].copy_from_slice(&v[..w]);
            }
            3 => b.truncate(d.below(len + 1)),
            4 if len > 0 => {
                let i = d.below(len);
                let n = d.below(len - i + 1).min(64);
                b.drain(i..i + n);
            }
            5 if len > 0 => {
                let i = d.below(len);
                let n = d.below(len - i + 1).min(256);
                let chunk = b[i..i + n].to_vec();
                let at = d.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
            6 => {
                let at = d.below(len + 1);
                let n = 1 + d.below(16);
                let junk: Vec<u8> = (0..n).map(|_| d.below(256) as u8).collect();
                b.splice(at..at, junk);
            }
            _ => {
                let other = &seeds[d.below(seeds.len())];
                let cut = d.below(len + 1);
                let from = d.below(other.len() + 1);
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
            }
        }
    }
    b
}

/// What fuzzing one target found.
#[derive(Default)]
struct Findings {
    panics: Vec<PathBuf>,
    hangs: Vec<PathBuf>,
    hogs: Vec<PathBuf>,
    /// Mutated inputs the parser accepted (a fuzzer whose inputs all fail at the first byte
    /// tests little).
    accepted: u64,
    peak: usize,
    slowest: Duration,
}

fn keep(dir: &Path, kind: &str, n: u64, input: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(format!("{kind}-{n}.bin"));
    std::fs::write(&p, input).unwrap();
    p
}

fn fuzz(t: &Target, inputs: u64, dir: &Path) -> Findings {
    let mut f = Findings::default();
    for n in 0..inputs {
        let input = mutate(&t.seeds, n);
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let t0 = Instant::now();
        let outcome = std::panic::catch_unwind(|| (t.parse)(&input));
        let ok = outcome.is_ok();
        f.accepted += outcome.unwrap_or(false) as u64;
        let took = t0.elapsed();
        let used = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        f.peak = f.peak.max(used);
        f.slowest = f.slowest.max(took);
        if !ok && f.panics.len() < 10 {
            f.panics.push(keep(dir, "panic", n, &input));
        }
        if took > TIME_LIMIT && f.hangs.len() < 10 {
            f.hangs.push(keep(dir, "hang", n, &input));
        }
        if used > MEMORY_LIMIT && f.hogs.len() < 10 {
            f.hogs.push(keep(dir, "memory", n, &input));
        }
    }
    f
}

#[test]
fn no_reader_of_outside_input_panics_hangs_or_hoards_memory() {
    let inputs: u64 = std::env::var("RLNET_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("rlnet-fuzz-{}", std::process::id()));
    let targets = targets();
    // The seeds themselves must parse (a dead target finds nothing).
    for t in &targets {
        for (i, seed) in t.seeds.iter().enumerate() {
            assert!((t.parse)(seed), "{}: seed {i} does not parse", t.name);
        }
    }
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = Vec::new();
    for t in &targets {
        let t0 = Instant::now();
        let f = fuzz(
            t,
            inputs,
            &dir.join(t.name.replace([' ', '/', '(', ')'], "_")),
        );
        println!(
            "{:<52} {inputs} inputs ({} accepted) in {:>5.1} s: {} panics, {} hangs (> \
             {TIME_LIMIT:?}), {} over {} MiB; peak {:.1} MiB, slowest {:.1} ms",
            t.name,
            f.accepted,
            t0.elapsed().as_secs_f64(),
            f.panics.len(),
            f.hangs.len(),
            f.hogs.len(),
            MEMORY_LIMIT >> 20,
            f.peak as f64 / (1 << 20) as f64,
            f.slowest.as_secs_f64() * 1e3
        );
        for (kind, list) in [
            ("panic", &f.panics),
            ("hang", &f.hangs),
            ("memory", &f.hogs),
        ] {
            failed.extend(
                list.iter()
                    .map(|p| format!("{}: {kind}: {}", t.name, p.display())),
            );
        }
    }
    std::panic::set_hook(quiet);
    assert!(
        failed.is_empty(),
        "inputs that failed:\n{}",
        failed.join("\n")
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// What the fuzzer found, fixed: an .npy whose (version 3) header length claims 662 MB made
/// npyz reserve it, and images with a zero height panicked in the layout conversion.
#[test]
fn the_inputs_the_fuzzer_found_are_clean_errors() {
    let mut huge_header = npy(&[5], true);
    huge_header[6] = 3;
    huge_header[8..12].copy_from_slice(&0x277b_0076u32.to_le_bytes());
    let e = labels_from_npy(&huge_header, "x.npy")
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.npy") && e.contains("truncated"), "{e}");

    let zero_height = npy(&[2, 0, 4, 3], false);
    let e = images_from_npy(&zero_height, "z.npy")
        .unwrap_err()
        .to_string();
    assert!(e.contains("z.npy") && e.contains("H, W > 0"), "{e}");
}

/// A checkpoint's header says which model to build; a header describing another model than
/// the file's tensors (a corrupt or hostile file of a few kilobytes asking for gigabytes) is
/// refused, naming a tensor that does not fit, before anything is allocated; absurd settings
/// fail validation.
#[test]
fn a_checkpoint_header_cannot_ask_for_more_model_than_its_file_holds() {
    let dir = std::env::temp_dir().join(format!("rlnet-fuzz-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tiny = Model::new(ModelConfig::new(Arch::ResNet18, 0.0625), 1).unwrap();
    let base = tiny.config.clone();
    let mut wrn = ModelConfig::new(Arch::Wrn22_8, 1.0);
    wrn.wrn = (994, 64);
    let cases: Vec<(ModelConfig, &str)> = vec![
        (
            ModelConfig {
                width_mult: 16.0,
                ..base.clone()
            },
            "the header's model needs",
        ),
        (
            ModelConfig {
                num_classes: 100_000,
                ..base.clone()
            },
            "the header's model needs",
        ),
        (
            ModelConfig {
                input_size: 1024,
                ..base.clone()
            },
            "the header's model needs",
        ),
        (wrn, "the header's model needs"),
        (
            ModelConfig {
                num_classes: 1 << 40,
                ..base.clone()
            },
            "classes",
        ),
        (
            ModelConfig {
                input_size: 1 << 30,
                ..base.clone()
            },
            "input size",
        ),
    ];
    for (i, (config, needle)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("h{i}.safetensors"));
        let meta = checkpoint::CheckpointMeta {
            format_version: checkpoint::FORMAT_VERSION,
            stage: "teacher".into(),
            model: config,
            state: serde_json::json!({}),
        };
        checkpoint::save(&path, &tiny, None, &meta).unwrap();
        let e = checkpoint::load(&path).and_then(|c| c.model()).err();
        let e = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            e.contains(needle) && e.contains(&format!("h{i}")),
            "case {i}: {e}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
