//! Data loading: CIFAR binary and python layouts (hand-written files, real-Python fixtures, the
//! shared mini CIFAR-10 when present) and the built-in synthetic set.

mod common;

use rlnet::data::cifar::{self, CifarKind};
use rlnet::data::numpy;
use rlnet::data::pickle::{self, Value};
use rlnet::data::{synthetic, ImageSet, Split};
use std::path::{Path, PathBuf};

const PIXELS: usize = 3072;

/// The pixel pattern every test file uses: pixel j of image i.
fn pix(i: usize, j: usize) -> u8 {
    ((i * 7 + j * 3) % 256) as u8
}
fn c10_label(i: usize) -> u32 {
    ((i * 3 + 1) % 10) as u32
}
fn c100_label(i: usize) -> u32 {
    ((i * 37 + 5) % 100) as u32
}

fn image_bytes(i: usize) -> Vec<u8> {
    (0..PIXELS).map(|j| pix(i, j)).collect()
}

/// A fresh, empty scratch folder for one test.
fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rlnet-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The committed fixtures written by Python 3 + numpy 2 (see the README in that folder).
fn fixtures() -> PathBuf {
    common::root().join("tests/fixtures/cifar_pickle")
}

/// Asserts that `set` holds images `first..first + n` of the pattern with the given labels.
fn check_pattern(set: &ImageSet, first: usize, n: usize, label: fn(usize) -> u32, classes: usize) {
    assert_eq!(set.len(), n);
    assert_eq!((set.channels, set.height, set.width), (3, 32, 32));
    assert_eq!(set.num_classes, classes);
    assert_eq!(set.images.len(), n * PIXELS);
    for k in 0..n {
        assert_eq!(set.image(k), &image_bytes(first + k)[..], "image {k}");
        assert_eq!(set.labels[k], label(first + k), "label {k}");
    }
}

fn bin_records(kind: CifarKind, first: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in first..first + n {
        match kind {
            CifarKind::Cifar10 => out.push(c10_label(i) as u8),
            CifarKind::Cifar100 => out.extend([c100_label(i) as u8 / 5, c100_label(i) as u8]),
        }
        out.extend(image_bytes(i));
    }
    out
}

/// Asserts that the error message of `r` mentions every one of `parts`.
fn assert_err<T: std::fmt::Debug>(r: rlnet::Result<T>, parts: &[&str]) {
    let msg = r.expect_err("expected an error").to_string();
    for part in parts {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

fn load(dir: &Path, kind: CifarKind, split: Split) -> ImageSet {
    cifar::load(dir, kind, split).unwrap()
}

#[test]
fn binary_cifar10_reads_back_exactly() {
    let f = tmp("bin10").join("data_batch_1.bin");
    write(&f, &bin_records(CifarKind::Cifar10, 0, 4));
    let set = cifar::read_bin_file(&f, CifarKind::Cifar10).unwrap();
    check_pattern(&set, 0, 4, c10_label, 10);
    let sub = set.subset(&[2, 0]);
    assert_eq!(sub.labels, vec![set.labels[2], set.labels[0]]);
    assert_eq!(sub.image(0), set.image(2));
    assert_eq!(set.image_size(), PIXELS);
}

#[test]
fn binary_cifar100_uses_the_fine_label() {
    let d = tmp("bin100");
    let sub = d.join("cifar-100-binary");
    std::fs::create_dir_all(&sub).unwrap();
    write(
        &sub.join("train.bin"),
        &bin_records(CifarKind::Cifar100, 0, 5),
    );
    let set = cifar::read_bin_file(&sub.join("train.bin"), CifarKind::Cifar100).unwrap();
    check_pattern(&set, 0, 5, c100_label, 100);
    assert_eq!(load(&d, CifarKind::Cifar100, Split::Train), set);
    // The same bytes read as CIFAR-10 are not a whole number of 3073-byte records.
    assert!(cifar::read_bin_file(&sub.join("train.bin"), CifarKind::Cifar10).is_err());
}

#[test]
fn binary_truncated_or_empty_file_is_an_error() {
    let d = tmp("bintrunc");
    let f = d.join("data_batch_1.bin");
    let bytes = bin_records(CifarKind::Cifar10, 0, 3);
    write(&f, &bytes[..bytes.len() - 1]);
    let parts = ["data_batch_1.bin", "3073-byte", "9218 bytes", "2 whole"];
    assert_err(cifar::read_bin_file(&f, CifarKind::Cifar10), &parts);
    write(&f, b"");
    let parts = ["data_batch_1.bin", "0 bytes", "0 whole"];
    assert_err(cifar::read_bin_file(&f, CifarKind::Cifar10), &parts);
    let missing = d.join("missing.bin");
    assert_err(
        cifar::read_bin_file(&missing, CifarKind::Cifar10),
        &["missing.bin"],
    );
}

#[test]
fn binary_label_out_of_range_is_an_error() {
    let f = tmp("binlabel").join("test_batch.bin");
    let mut bytes = bin_records(CifarKind::Cifar10, 0, 2);
    bytes[3073] = 10;
    write(&f, &bytes);
    let parts = [
        "test_batch.bin",
        "record 1",
        "label 10",
        "6146 bytes",
        "3073-byte",
    ];
    assert_err(cifar::read_bin_file(&f, CifarKind::Cifar10), &parts);
    let mut bytes = bin_records(CifarKind::Cifar100, 0, 2);
    bytes[1] = 100; // the fine label; a coarse label of 100 would not be read
    write(&f, &bytes);
    assert_err(
        cifar::read_bin_file(&f, CifarKind::Cifar100),
        &["label 100"],
    );
}

#[test]
fn load_from_an_empty_folder_lists_what_it_looked_for() {
    let d = tmp("empty");
    let r = cifar::load(&d, CifarKind::Cifar10, Split::Train);
    let dir = d.to_str().unwrap();
    let parts = ["data_batch_1.bin", "data_batch_5.bin", "data_batch_5 ", dir];
    assert_err(
        r,
        &[&parts[..], &["cifar-10-batches-bin", "cifar-10-batches-py"]].concat(),
    );
    let r = cifar::load(&d, CifarKind::Cifar100, Split::Test);
    assert_err(
        r,
        &["test.bin", "test ", "cifar-100-binary", "cifar-100-python"],
    );
    let r = cifar::load(&d.join("nope"), CifarKind::Cifar10, Split::Test);
    assert_err(r, &["does not exist", "test_batch.bin"]);
}

#[test]
fn load_concatenates_the_batches_present_from_folder_or_parent() {
    let d = tmp("loadbin");
    let sub = d.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&sub).unwrap();
    write(
        &sub.join("data_batch_1.bin"),
        &bin_records(CifarKind::Cifar10, 0, 2),
    );
    write(
        &sub.join("data_batch_3.bin"),
        &bin_records(CifarKind::Cifar10, 2, 3),
    );
    write(
        &sub.join("test_batch.bin"),
        &bin_records(CifarKind::Cifar10, 9, 1),
    );
    for dir in [&d, &sub] {
        check_pattern(
            &load(dir, CifarKind::Cifar10, Split::Train),
            0,
            5,
            c10_label,
            10,
        );
        check_pattern(
            &load(dir, CifarKind::Cifar10, Split::Test),
            9,
            1,
            c10_label,
            10,
        );
    }
    assert!(cifar::load(&d, CifarKind::Cifar100, Split::Train).is_err());
}

/// Writes pickle opcodes the way Python 2's cPickle does at protocol 2 (memoising every
/// container and string with BINPUT).
#[derive(Default)]
struct Py2 {
    out: Vec<u8>,
    memo: u8,
}

impl Py2 {
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }
    fn put(&mut self) -> &mut Self {
        self.memo += 1;
        let m = self.memo;
        self.op(&[b'q', m])
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        if s.len() < 256 {
            self.op(&[b'U', s.len() as u8]);
        } else {
            self.op(b"T").op(&(s.len() as u32).to_le_bytes());
        }
        self.op(s).put()
    }
    fn int(&mut self, v: u32) -> &mut Self {
        match v {
            0..=255 => self.op(&[b'K', v as u8]),
            256..=65535 => self.op(b"M").op(&(v as u16).to_le_bytes()),
            _ => self.op(b"J").op(&v.to_le_bytes()),
        }
    }
    fn int_list(&mut self, v: &[u32]) -> &mut Self {
        self.op(b"]").put().op(b"(");
        for &x in v {
            self.int(x);
        }
        self.op(b"e")
    }
    fn uint8_array(&mut self, rows: u32, data: &[u8]) -> &mut Self {
        self.op(b"cnumpy.core.multiarray\n_reconstruct\n").put();
        self.op(b"cnumpy\nndarray\n").put().int(0).op(b"\x85").put();
        self.str(b"b").op(b"\x87").put().op(b"R").put();
        // BUILD state: (1, (rows, 3072), dtype, False, raw bytes)
        self.op(b"(")
            .int(1)
            .int(rows)
            .int(PIXELS as u32)
            .op(b"\x86")
            .put();
        self.op(b"cnumpy\ndtype\n").put().str(b"u1").int(0).int(1);
        self.op(b"\x87").put().op(b"R").put();
        self.op(b"(")
            .int(3)
            .str(b"|")
            .op(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff");
        self.int(0).op(b"t").put().op(b"b");
        self.op(b"\x89").str(data).op(b"t").put().op(b"b")
    }
}

/// A CIFAR batch exactly as the original Python 2 files store it.
fn py2_batch(kind: CifarKind, first: usize, n: usize) -> Vec<u8> {
    let mut p = Py2::default();
    p.op(b"\x80\x02}").put().op(b"(");
    let data: Vec<u8> = (first..first + n).flat_map(image_bytes).collect();
    p.str(b"data").uint8_array(n as u32, &data);
    match kind {
        CifarKind::Cifar10 => {
            let labels: Vec<u32> = (first..first + n).map(c10_label).collect();
            p.str(b"labels").int_list(&labels);
        }
        CifarKind::Cifar100 => {
            let fine: Vec<u32> = (first..first + n).map(c100_label).collect();
            let coarse: Vec<u32> = fine.iter().map(|l| l / 5).collect();
            p.str(b"fine_labels").int_list(&fine);
            p.str(b"coarse_labels").int_list(&coarse);
        }
    }
    p.str(b"batch_label").str(b"training batch 1 of 1");
    p.str(b"filenames").op(b"]").put().op(b"(");
    for i in first..first + n {
        p.str(format!("img_{i}.png").as_bytes());
    }
    p.op(b"eu.");
    p.out
}

#[test]
fn python2_style_pickles_read_back_exactly() {
    let d = tmp("py2");
    write(
        &d.join("data_batch_2"),
        &py2_batch(CifarKind::Cifar10, 0, 3),
    );
    write(&d.join("test_batch"), &py2_batch(CifarKind::Cifar10, 20, 2));
    write(&d.join("train"), &py2_batch(CifarKind::Cifar100, 0, 4));
    let set = cifar::read_pickle_file(&d.join("data_batch_2"), CifarKind::Cifar10).unwrap();
    check_pattern(&set, 0, 3, c10_label, 10);
    assert_eq!(load(&d, CifarKind::Cifar10, Split::Train), set);
    check_pattern(
        &load(&d, CifarKind::Cifar10, Split::Test),
        20,
        2,
        c10_label,
        10,
    );
    check_pattern(
        &load(&d, CifarKind::Cifar100, Split::Train),
        0,
        4,
        c100_label,
        100,
    );
}

#[test]
fn python_pickle_fixtures_from_real_python_and_numpy_read_back_exactly() {
    let f = fixtures();
    assert!(
        f.join("data_batch_1").is_file(),
        "no fixtures at {}",
        f.display()
    );
    // data_batch_1: protocol 2, bytes keys; data_batch_2: protocol 4, str keys, int64 labels.
    let b1 = cifar::read_pickle_file(&f.join("data_batch_1"), CifarKind::Cifar10).unwrap();
    check_pattern(&b1, 0, 3, c10_label, 10);
    let b2 = cifar::read_pickle_file(&f.join("data_batch_2"), CifarKind::Cifar10).unwrap();
    check_pattern(&b2, 3, 2, c10_label, 10);
    check_pattern(
        &load(&f, CifarKind::Cifar10, Split::Train),
        0,
        5,
        c10_label,
        10,
    );
    check_pattern(
        &load(&f, CifarKind::Cifar10, Split::Test),
        100,
        2,
        c10_label,
        10,
    );
    // CIFAR-100: train at protocol 2; test at protocol 5 with Fortran-ordered data.
    check_pattern(
        &load(&f, CifarKind::Cifar100, Split::Train),
        0,
        3,
        c100_label,
        100,
    );
    check_pattern(
        &load(&f, CifarKind::Cifar100, Split::Test),
        200,
        2,
        c100_label,
        100,
    );
}

#[test]
fn pickle_values_and_numpy_arrays_decode() {
    let bytes = std::fs::read(fixtures().join("data_batch_2")).unwrap();
    let root = pickle::parse(&bytes, "data_batch_2").unwrap();
    let label = Value::Str("training batch 2 of 5".into());
    assert_eq!(root.get("batch_label"), Some(&label));
    let labels = numpy::ndarray(root.get("labels").unwrap().clone(), "labels").unwrap();
    assert_eq!(labels.shape, vec![2]);
    assert_eq!(labels.dtype, "<i8");
    let expected = [3, 4].map(|i| c10_label(i) as i64);
    assert_eq!(labels.to_i64s(), Some(expected.to_vec()));
    let bytes = std::fs::read(fixtures().join("data_batch_1")).unwrap();
    let root = pickle::parse(&bytes, "data_batch_1").unwrap();
    // Python 3 writes bytes at protocol 2 as _codecs.encode(str, 'latin1'): decoded to bytes.
    let label = Value::Bytes(b"training batch 1 of 5".to_vec());
    assert_eq!(root.get("batch_label"), Some(&label));
    let data = numpy::ndarray(root.get("data").unwrap().clone(), "data").unwrap();
    assert_eq!(
        (&data.shape[..], data.dtype.as_str()),
        (&[3, PIXELS][..], "|u1")
    );
    assert_eq!(&data.data[..PIXELS], &image_bytes(0)[..]);
}

fn all_fixture_bytes() -> Vec<(String, Vec<u8>)> {
    let names = [
        "data_batch_1",
        "data_batch_2",
        "test_batch",
        "train",
        "test",
    ];
    let read = |n: &str| (n.to_string(), std::fs::read(fixtures().join(n)).unwrap());
    let mut v: Vec<_> = names.into_iter().map(read).collect();
    v.push(("py2".into(), py2_batch(CifarKind::Cifar10, 0, 2)));
    v
}

#[test]
fn truncated_pickles_are_errors_not_panics() {
    for (name, bytes) in all_fixture_bytes() {
        let ends = [bytes.len() / 2, bytes.len() - 1];
        for cut in (0..bytes.len()).step_by(7).chain(ends) {
            let r = pickle::parse(&bytes[..cut], &name);
            assert!(r.is_err(), "{name} cut at {cut} parsed");
        }
    }
    let d = tmp("pytrunc");
    let bytes = py2_batch(CifarKind::Cifar10, 0, 2);
    write(&d.join("data_batch_1"), &bytes[..bytes.len() / 2]);
    let r = cifar::read_pickle_file(&d.join("data_batch_1"), CifarKind::Cifar10);
    assert_err(r, &["data_batch_1", "truncated"]);
    let r = cifar::load(&d, CifarKind::Cifar10, Split::Train);
    assert_err(r, &["data_batch_1", "truncated"]);
}

#[test]
fn corrupted_pickles_are_errors_not_panics() {
    // Flip bytes at pseudo-random places: any outcome but a panic is fine.
    let mut state = 0x1234_5678_9abc_def1u64;
    for (name, bytes) in all_fixture_bytes() {
        for _ in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % b.len() as u64) as usize;
                b[at] = (state >> 32) as u8;
            }
            if let Ok(v) = pickle::parse(&b, &name) {
                let _ = numpy::ndarray(v.get("data").cloned().unwrap_or(Value::None), &name);
            }
        }
    }
    let r = pickle::parse(b"\x80\x02}\xff.", "x.pkl");
    assert_err(r, &["x.pkl", "opcode 0xff", "offset 3"]);
    // A length field far beyond the input must not allocate.
    let r = pickle::parse(b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f.", "h");
    assert_err(r, &["truncated"]);
    // A list containing itself, and a doubling chain (billion laughs).
    assert!(pickle::parse(b"\x80\x02]q\x00h\x00a.", "cycle").is_err());
    let mut laughs = b"\x80\x02]q\x00".to_vec();
    for i in 0..60u8 {
        laughs.extend([b'h', i, b'h', i, 0x86, b'q', i + 1]);
    }
    laughs.push(b'.');
    assert!(pickle::parse(&laughs, "laughs").is_err());
}

#[test]
fn pickle_shape_and_label_mismatches_are_errors() {
    let f = tmp("pybad").join("data_batch_1");
    let mut bytes = py2_batch(CifarKind::Cifar10, 0, 2);
    // Claim 3 rows for 2 rows of data (the row count is the first `K\x02` after `K\x01`).
    let at = bytes.windows(4).position(|w| w == b"K\x01K\x02").unwrap();
    bytes[at + 3] = 3;
    write(&f, &bytes);
    let parts = [
        "data_batch_1",
        "shape [3, 3072]",
        "9216 bytes",
        "found 6144",
    ];
    assert_err(cifar::read_pickle_file(&f, CifarKind::Cifar10), &parts);
    // As CIFAR-100 the label key is missing.
    write(&f, &py2_batch(CifarKind::Cifar10, 0, 2));
    assert_err(
        cifar::read_pickle_file(&f, CifarKind::Cifar100),
        &["'fine_labels'"],
    );
    // One label too few, then a label out of range.
    for (labels, part) in [
        (&[1][..], "2 images but 1 labels"),
        (&[1, 10], "label 1 is 10"),
    ] {
        let mut p = Py2::default();
        p.op(b"\x80\x02}").put().op(b"(");
        p.str(b"data").uint8_array(2, &[0; 2 * PIXELS]);
        p.str(b"labels").int_list(labels).op(b"u.");
        write(&f, &p.out);
        assert_err(
            cifar::read_pickle_file(&f, CifarKind::Cifar10),
            &["data_batch_1", part],
        );
    }
}

fn mini_cifar() -> Option<PathBuf> {
    let d = common::shared_dir()?.join("data/cifar10-mini");
    if d.join("cifar-10-batches-bin").is_dir() {
        Some(d.to_path_buf())
    } else {
        println!("skipping: {} is absent", d.display());
        None
    }
}

#[test]
fn shared_mini_cifar10_loads_from_folder_and_parent() {
    let Some(parent) = mini_cifar() else { return };
    let folder = parent.join("cifar-10-batches-bin");
    let train = load(&folder, CifarKind::Cifar10, Split::Train);
    let test = load(&folder, CifarKind::Cifar10, Split::Test);
    assert_eq!((train.len(), test.len()), (5085, 1017));
    for set in [&train, &test] {
        assert_eq!(set.images.len(), set.len() * PIXELS);
        assert!(set.labels.iter().all(|&l| l < 10));
        let counts = set.class_counts();
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    }
    assert_eq!(load(&parent, CifarKind::Cifar10, Split::Train), train);
    assert_eq!(load(&parent, CifarKind::Cifar10, Split::Test), test);
    let one = cifar::read_bin_file(&folder.join("data_batch_2.bin"), CifarKind::Cifar10).unwrap();
    assert_eq!(one, train.subset(&(1017..2034).collect::<Vec<_>>()));
}

#[test]
fn synthetic_is_deterministic_and_well_formed() {
    let a = synthetic::generate(500, 7, Split::Train);
    assert_eq!(a, synthetic::generate(500, 7, Split::Train));
    assert_ne!(a.images, synthetic::generate(500, 8, Split::Train).images);
    assert_ne!(a.images, synthetic::generate(500, 7, Split::Test).images);
    let prefix = synthetic::generate(123, 7, Split::Train);
    assert_eq!(prefix, a.subset(&(0..123).collect::<Vec<_>>()));
    let shape = (a.len(), a.channels, a.height, a.width, a.num_classes);
    assert_eq!(shape, (500, 3, 32, 32, 10));
    assert_eq!(a.images.len(), 500 * PIXELS);
    assert_eq!(synthetic::CLASS_NAMES.len(), 10);
    // Exactly balanced in every block of 10.
    assert_eq!(a.class_counts(), vec![50; 10]);
    // Images are not flat: a real spread of values within each one.
    for i in 0..a.len() {
        let img = a.image(i);
        let (lo, hi) = (img.iter().min().unwrap(), img.iter().max().unwrap());
        assert!(hi - lo > 40, "image {i} spans {lo}..{hi}");
    }
    assert!(synthetic::generate(0, 1, Split::Test).is_empty());
}

/// Accuracy on `test` of the nearest class mean (fitted on `train`) of an RGB feature.
fn nearest_class_mean(
    train: &ImageSet,
    test: &ImageSet,
    feature: impl Fn(&[u8]) -> [f64; 3],
) -> f64 {
    let mut means = [[0.0f64; 3]; 10];
    let mut counts = [0.0f64; 10];
    for i in 0..train.len() {
        let (l, f) = (train.labels[i] as usize, feature(train.image(i)));
        (0..3).for_each(|c| means[l][c] += f[c]);
        counts[l] += 1.0;
    }
    for (m, n) in means.iter_mut().zip(counts) {
        *m = m.map(|s| s / n);
    }
    let correct = (0..test.len()).filter(|&i| {
        let f = feature(test.image(i));
        let d = |l: usize| (0..3).map(|c| (f[c] - means[l][c]).powi(2)).sum::<f64>();
        (0..10).min_by(|&a, &b| d(a).total_cmp(&d(b))) == Some(test.labels[i] as usize)
    });
    correct.count() as f64 / test.len() as f64
}

#[test]
fn synthetic_class_is_not_readable_from_the_mean_colour_or_one_pixel() {
    let start = std::time::Instant::now();
    let train = synthetic::generate(10_000, 3, Split::Train);
    println!("generated 10,000 synthetic images in {:?}", start.elapsed());
    let test = synthetic::generate(2_000, 3, Split::Test);
    let mean = |img: &[u8]| {
        [0, 1, 2].map(|c| {
            img[c * 1024..(c + 1) * 1024]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
        })
    };
    let acc = nearest_class_mean(&train, &test, mean);
    println!("nearest class mean of the mean colour: {:.1}%", acc * 100.0);
    assert!(
        acc < 0.35,
        "mean colour predicts the class {:.1}% of the time",
        acc * 100.0
    );
    for (y, x) in [(16, 16), (8, 8), (16, 4), (24, 20)] {
        let pixel = |img: &[u8]| [0, 1, 2].map(|c| img[c * 1024 + y * 32 + x] as f64);
        let acc = nearest_class_mean(&train, &test, pixel);
        assert!(
            acc < 0.35,
            "pixel ({y}, {x}) predicts the class {:.1}% of the time",
            acc * 100.0
        );
    }
}
