//! Writes a checkpoint dict as `torch.save` does (the zip archive, pickle protocol 2), so that
//! `torch.load(path, weights_only=True)` reads it and its state dict goes into
//! `load_state_dict(strict=True)`: an ordered dict of `_rebuild_tensor_v2` calls on one
//! storage per tensor, each stored uncompressed at a 64-byte boundary.

use crate::error::{Error, Result};
use std::io::{Cursor, Write};

/// A tensor to write: f32 values, or the int64 counters PyTorch's BN keeps.
pub enum Values<'a> {
    F32(&'a [f32]),
    I64(Vec<i64>),
}

impl Values<'_> {
    fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }

    fn storage(&self) -> &'static str {
        match self {
            Values::F32(_) => "FloatStorage",
            Values::I64(_) => "LongStorage",
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Values::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

pub struct Entry<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Values<'a>,
}

/// A value of the saved dict.
pub enum Item<'a> {
    /// An ordered dict of tensors (`model.state_dict()`).
    StateDict(Vec<Entry<'a>>),
    /// A list of tensors (the names are not written).
    List(Vec<Entry<'a>>),
    Text(String),
}

/// The folder inside the archive (torch.save names it after the file; torch.load accepts any).
const FOLDER: &str = "archive";

/// The `.pth` bytes of the dict `root` (keys in order), as `torch.save(dict)` writes them.
pub fn pth(root: &[(&str, Item<'_>)]) -> Result<Vec<u8>> {
    let tensors: Vec<&Entry<'_>> = root
        .iter()
        .flat_map(|(_, item)| match item {
            Item::StateDict(e) | Item::List(e) => e.iter().collect(),
            Item::Text(_) => Vec::new(),
        })
        .collect();
    for e in &tensors {
        let n: usize = e.shape.iter().product();
        assert_eq!(n, e.values.len(), "{}: shape and values agree", e.name);
    }
    let zip_err = |e: zip::result::ZipError| Error::Data(format!("writing the .pth archive: {e}"));
    let io_err = |e: std::io::Error| Error::Data(format!("writing the .pth archive: {e}"));
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let total: usize = tensors.iter().map(|e| e.values.len() * 8).sum();
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(total >= u32::MAX as usize);
    let mut put = |name: &str, bytes: &[u8], align: u16| -> Result<()> {
        zip.start_file(format!("{FOLDER}/{name}"), stored.with_alignment(align))
            .map_err(zip_err)?;
        zip.write_all(bytes).map_err(io_err)
    };
    put("data.pkl", &pickle(root), 1)?;
    put("byteorder", b"little", 1)?;
    for (key, e) in tensors.iter().enumerate() {
        put(&format!("data/{key}"), &e.values.bytes(), 64)?;
    }
    put("version", b"3\n", 1)?;
    Ok(zip.finish().map_err(zip_err)?.into_inner())
}

/// The dict's pickle. Each tensor is `_rebuild_tensor_v2(persistent(('storage',
/// torch.<T>Storage, key, 'cpu', numel)), 0, size, contiguous stride, False, OrderedDict())`,
/// its storage keys numbered in order over the whole dict.
fn pickle(root: &[(&str, Item<'_>)]) -> Vec<u8> {
    let mut p = Pickler {
        out: vec![0x80, 2, b'}', b'('],
        key: 0,
    };
    for (name, item) in root {
        p.text(name);
        match item {
            Item::StateDict(entries) => {
                p.global("collections", "OrderedDict");
                p.out.extend([b')', b'R', b'(']);
                for e in entries {
                    p.text(&e.name);
                    p.tensor(e);
                }
                p.out.push(b'u');
            }
            Item::List(entries) => {
                p.out.extend([b']', b'(']);
                for e in entries {
                    p.tensor(e);
                }
                p.out.push(b'e');
            }
            Item::Text(s) => p.text(s),
        }
    }
    p.out.extend([b'u', b'.']);
    p.out
}

struct Pickler {
    out: Vec<u8>,
    /// The next storage's key.
    key: usize,
}

impl Pickler {
    fn tensor(&mut self, e: &Entry<'_>) {
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.out.extend([b'(', b'(']);
        self.text("storage");
        self.global("torch", e.values.storage());
        self.text(&self.key.to_string());
        self.key += 1;
        self.text("cpu");
        self.int(e.values.len());
        self.out.extend([b't', b'Q']);
        self.int(0);
        let mut strides = vec![1usize; e.shape.len()];
        for d in (0..e.shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * e.shape[d + 1];
        }
        self.tuple(&e.shape);
        self.tuple(&strides);
        self.out.push(0x89); // NEWFALSE: requires_grad
        self.global("collections", "OrderedDict");
        self.out.extend([b')', b'R', b't', b'R']);
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend(format!("{module}\n{name}\n").bytes());
    }

    fn text(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend((s.len() as u32).to_le_bytes());
        self.out.extend(s.bytes());
    }

    fn int(&mut self, v: usize) {
        match i32::try_from(v) {
            Ok(v) => {
                self.out.push(b'J');
                self.out.extend(v.to_le_bytes());
            }
            Err(_) => {
                self.out.extend([0x8a, 8]);
                self.out.extend((v as i64).to_le_bytes());
            }
        }
    }

    fn tuple(&mut self, items: &[usize]) {
        self.out.push(b'(');
        for &i in items {
            self.int(i);
        }
        self.out.push(b't');
    }
}
