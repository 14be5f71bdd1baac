//! CIFAR-10 and CIFAR-100 in both official layouts: the binary version (fixed-size records)
//! and the python version (pickled dicts holding numpy arrays).

use super::numpy;
use super::pickle::{self, Value};
use super::{ImageSet, Split};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarKind {
    Cifar10,
    Cifar100,
}

impl CifarKind {
    pub fn num_classes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100 => 100,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "CIFAR-10",
            CifarKind::Cifar100 => "CIFAR-100",
        }
    }

    /// Bytes per binary record: the label byte(s), then R, G and B planes of 32x32.
    pub fn record_size(self) -> usize {
        self.label_bytes() + PIXELS
    }

    fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2, // coarse, then fine
        }
    }

    fn subfolders(self) -> [&'static str; 2] {
        match self {
            CifarKind::Cifar10 => ["cifar-10-batches-bin", "cifar-10-batches-py"],
            CifarKind::Cifar100 => ["cifar-100-binary", "cifar-100-python"],
        }
    }

    /// File names of a split, without the `.bin` of the binary layout.
    fn stems(self, split: Split) -> Vec<String> {
        match (self, split) {
            (CifarKind::Cifar10, Split::Train) => {
                (1..=5).map(|i| format!("data_batch_{i}")).collect()
            }
            (CifarKind::Cifar10, Split::Test) => vec!["test_batch".into()],
            (CifarKind::Cifar100, Split::Train) => vec!["train".into()],
            (CifarKind::Cifar100, Split::Test) => vec!["test".into()],
        }
    }

    fn empty(self) -> ImageSet {
        ImageSet {
            images: Vec::new(),
            labels: Vec::new(),
            channels: 3,
            height: SIDE,
            width: SIDE,
            num_classes: self.num_classes(),
        }
    }
}

/// Reads one file of the binary layout. Any whole number of records is accepted.
pub fn read_bin_file(path: &Path, kind: CifarKind) -> Result<ImageSet> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_bin_bytes(&bytes, kind, &path.display().to_string())
}

/// The binary layout's records in `bytes` (read from `what`, as messages name it).
pub fn read_bin_bytes(bytes: &[u8], kind: CifarKind, what: &str) -> Result<ImageSet> {
    let rec = kind.record_size();
    let (size, count) = (bytes.len(), bytes.len() / rec);
    let describe = || {
        format!(
            "{what}: {size} bytes, {count} whole {rec}-byte {} records",
            kind.name()
        )
    };
    if size == 0 || size % rec != 0 {
        return Err(Error::Data(format!(
            "{} and {} bytes left over; expected a non-empty file of whole records",
            describe(),
            size % rec
        )));
    }
    let mut set = kind.empty();
    set.images.reserve_exact(count * PIXELS);
    set.labels.reserve_exact(count);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let (label, pixels) = r.split_at(kind.label_bytes());
        // CIFAR-100 stores the coarse label first: the fine label is the last label byte.
        let l = label.last().copied().unwrap_or(0) as usize;
        if l >= kind.num_classes() {
            return Err(Error::Data(format!(
                "{}: record {i} has label {l}, expected < {}",
                describe(),
                kind.num_classes()
            )));
        }
        set.labels.push(l as u32);
        set.images.extend_from_slice(pixels);
    }
    Ok(set)
}

/// Reads one file of the python layout: a pickled dict with `data` (numpy uint8 [N, 3072]) and
/// `labels` (CIFAR-10) or `fine_labels` (CIFAR-100). Keys may be bytes (Python 2) or str.
pub fn read_pickle_file(path: &Path, kind: CifarKind) -> Result<ImageSet> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_pickle_bytes(&bytes, kind, &path.display().to_string())
}

/// The python layout's pickled dict in `bytes` (read from `what`, as messages name it).
pub fn read_pickle_bytes(bytes: &[u8], kind: CifarKind, what: &str) -> Result<ImageSet> {
    let root = pickle::parse(bytes, what)?;
    let bad = |msg: String| Error::Data(format!("{what}: {msg}"));
    let Value::Dict(items) = root else {
        return Err(bad(format!(
            "expected a pickled dict, found {}",
            root.kind()
        )));
    };
    let label_key = match kind {
        CifarKind::Cifar10 => "labels",
        CifarKind::Cifar100 => "fine_labels",
    };
    let (mut data, mut labels) = (None, None);
    for (k, v) in items {
        match k.as_text() {
            Some("data") => data = Some(v),
            Some(key) if key == label_key => labels = Some(v),
            _ => {}
        }
    }
    let (Some(data), Some(labels)) = (data, labels) else {
        return Err(bad(format!(
            "expected the keys 'data' and '{label_key}' of a {} batch",
            kind.name()
        )));
    };
    let images = pixels(data, what)?;
    let labels = label_list(labels, what)?;
    let n = images.len() / PIXELS;
    if labels.len() != n {
        return Err(bad(format!(
            "{n} images but {} labels in '{label_key}'",
            labels.len()
        )));
    }
    let mut set = kind.empty();
    set.images = images;
    for (i, l) in labels.into_iter().enumerate() {
        match u32::try_from(l) {
            Ok(l) if (l as usize) < kind.num_classes() => set.labels.push(l),
            _ => {
                return Err(bad(format!(
                    "label {i} is {l}, expected 0..{}",
                    kind.num_classes()
                )))
            }
        }
    }
    Ok(set)
}

/// The pixels of `data`: a numpy uint8 array [N, 3072] or [N, 3, 32, 32], raw bytes, or a list
/// of rows (bytes or lists of ints).
fn pixels(data: Value, what: &str) -> Result<Vec<u8>> {
    let bad = |msg: String| Error::Data(format!("{what}: 'data': {msg}"));
    let out = match data {
        Value::Bytes(b) => b,
        Value::List(rows) | Value::Tuple(rows) => {
            let mut out = Vec::with_capacity(rows.len().saturating_mul(PIXELS));
            for (i, row) in rows.into_iter().enumerate() {
                let start = out.len();
                match row {
                    Value::Bytes(b) => out.extend_from_slice(&b),
                    Value::List(px) | Value::Tuple(px) => {
                        for p in px {
                            match p.as_int().map(u8::try_from) {
                                Some(Ok(p)) => out.push(p),
                                _ => return Err(bad(format!("row {i} holds {p:?}, not a byte"))),
                            }
                        }
                    }
                    other => return Err(bad(format!("row {i} is a {}", other.kind()))),
                }
                if out.len() - start != PIXELS {
                    return Err(bad(format!(
                        "row {i} has {} values, expected {PIXELS}",
                        out.len() - start
                    )));
                }
            }
            out
        }
        other => {
            let a = numpy::ndarray(other, what)?;
            let (k, size) = a.kind();
            let shape_ok = match a.shape.as_slice() {
                [_, p] => *p == PIXELS,
                [_, 3, h, w] => *h == SIDE && *w == SIDE,
                _ => false,
            };
            if (k, size) != ('u', 1) || !shape_ok {
                return Err(bad(format!(
                    "a {} array of shape {:?}, expected uint8 of shape [N, {PIXELS}] or [N, 3, 32, 32]",
                    a.dtype, a.shape
                )));
            }
            a.data
        }
    };
    if out.is_empty() || out.len() % PIXELS != 0 {
        return Err(bad(format!(
            "{} bytes, expected a non-zero multiple of {PIXELS}",
            out.len()
        )));
    }
    Ok(out)
}

fn label_list(labels: Value, what: &str) -> Result<Vec<i64>> {
    let bad = |msg: String| Error::Data(format!("{what}: labels: {msg}"));
    match labels {
        Value::List(v) | Value::Tuple(v) => v
            .iter()
            .enumerate()
            .map(|(i, l)| {
                l.as_int()
                    .ok_or_else(|| bad(format!("entry {i} is a {}, not an int", l.kind())))
            })
            .collect(),
        other => {
            let a = numpy::ndarray(other, what)?;
            a.to_i64s()
                .ok_or_else(|| bad(format!("a {} array, expected integers", a.dtype)))
        }
    }
}

/// Finds and reads a split under `dir` (or one of the standard extracted subfolders of `dir`),
/// in either layout. The train split concatenates every train batch present.
pub fn load(dir: &Path, kind: CifarKind, split: Split) -> Result<ImageSet> {
    let stems = kind.stems(split);
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(kind.subfolders().iter().map(|s| dir.join(s)));
    for d in &dirs {
        for binary in [true, false] {
            let files: Vec<PathBuf> = stems
                .iter()
                .map(|s| {
                    d.join(if binary {
                        format!("{s}.bin")
                    } else {
                        s.clone()
                    })
                })
                .filter(|p| p.is_file())
                .collect();
            if files.is_empty() {
                continue;
            }
            let mut set = kind.empty();
            for f in &files {
                let part = if binary {
                    read_bin_file(f, kind)?
                } else {
                    read_pickle_file(f, kind)?
                };
                set.images.extend_from_slice(&part.images);
                set.labels.extend_from_slice(&part.labels);
            }
            return Ok(set);
        }
    }
    let names = |suffix: &str| {
        stems
            .iter()
            .map(|s| format!("{s}{suffix}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let places = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let missing = if dir.is_dir() {
        ""
    } else {
        " (that folder does not exist)"
    };
    Err(Error::Data(format!(
        "no {} {} data in {}{missing}: looked for {} (binary layout) or {} (python layout) in {}",
        kind.name(),
        split.name(),
        dir.display(),
        names(".bin"),
        names(""),
        places
    )))
}
