//! The two containers `torch.save` writes: the zip archive (PyTorch 1.6 and later: a folder
//! holding `data.pkl`, `data/<key>` per storage, `version`, `byteorder`) and the legacy stream
//! (a magic number, a protocol version and a system-info pickle, then the object's pickle, the
//! list of storage keys, and each storage as an 8-byte element count and its raw bytes).
//! Either way the result is the object's pickle, parsed without running code, and the raw bytes
//! of every storage by key.

use crate::data::pickle::{self, Value};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::{Cursor, Read};

/// What a checkpoint file holds before its tensors are rebuilt.
pub struct Archive {
    /// The saved object (a state dict, or a dict holding one).
    pub root: Value,
    /// Each storage's bytes (little-endian), by the key the pickle refers to it with.
    pub storages: HashMap<String, Vec<u8>>,
}

/// The pickle of `0x1950a86a20f9469cfc6c`, the legacy format's magic number (protocol 2,
/// LONG1 of 10 bytes, STOP).
const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];
/// The only legacy protocol version PyTorch has written.
const LEGACY_PROTOCOL: i64 = 1001;

/// Reads either container; `what` (the file name) starts every error message.
pub fn read(bytes: &[u8], what: &str) -> Result<Archive> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(bytes, what)
    } else if bytes.starts_with(&LEGACY_MAGIC) {
        read_legacy(bytes, what)
    } else if bytes.get(8) == Some(&b'{') {
        Err(fail(
            what,
            "this is a safetensors file (rlnet's own checkpoint format, which every command \
             takes as it is), not a PyTorch checkpoint",
        ))
    } else if bytes.len() < LEGACY_MAGIC.len() {
        Err(fail(
            what,
            format!("{} bytes: too short for a PyTorch checkpoint", bytes.len()),
        ))
    } else {
        Err(fail(
            what,
            "not a PyTorch checkpoint: expected the zip archive torch.save writes (it starts \
             with PK\\x03\\x04) or its legacy format (it starts with the pickled magic number \
             0x1950a86a20f9469cfc6c)",
        ))
    }
}

fn fail(what: &str, msg: impl std::fmt::Display) -> Error {
    Error::Data(format!("{what}: {msg}"))
}

fn read_zip(bytes: &[u8], what: &str) -> Result<Archive> {
    let zip_err = |e: zip::result::ZipError| fail(what, format!("zip archive: {e}"));
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zip_err)?;
    // The archive's one top folder is named after the file torch.save first wrote to; the
    // pickle is at <folder>/data.pkl and the storages at <folder>/data/<key>.
    let pkl = zip
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(|n| n.into_owned())
        .ok_or_else(|| {
            fail(
                what,
                "zip archive without <folder>/data.pkl: not a torch.save file",
            )
        })?;
    let folder = pkl.trim_end_matches("data.pkl").to_string();
    let data_prefix = format!("{folder}data/");
    let mut storages = HashMap::new();
    let mut root_bytes = None;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(zip_err)?;
        let name = entry.name().map_err(zip_err)?.into_owned();
        let key = match name.strip_prefix(&data_prefix) {
            Some(key) if !key.is_empty() && !key.contains('/') => Some(key.to_string()),
            _ if name == pkl => None,
            _ => continue,
        };
        // A stored entry cannot be larger than the file; a compressed one (torch.save never
        // compresses) is refused before it could expand.
        if entry.compression() != zip::CompressionMethod::Stored {
            return Err(fail(
                what,
                format!(
                    "{name} is compressed ({:?}); torch.save stores entries uncompressed",
                    entry.compression()
                ),
            ));
        }
        if entry.size() > bytes.len() as u64 {
            return Err(fail(what, format!("{name}: its size exceeds the file's")));
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| fail(what, format!("{name}: {e}")))?;
        match key {
            Some(key) => {
                storages.insert(key, data);
            }
            None => root_bytes = Some(data),
        }
    }
    let pkl_bytes = root_bytes.expect("data.pkl is one of the archive's entries");
    if let Ok(mut order) = zip.by_name(&format!("{folder}byteorder")) {
        let mut s = String::new();
        // A byteorder record that is not text is as foreign as a big-endian one.
        let _ = order.read_to_string(&mut s);
        if s.trim() != "little" {
            return Err(fail(
                what,
                format!(
                    "byte order {:?}: only little-endian checkpoints are read",
                    s.trim()
                ),
            ));
        }
    }
    let root = pickle::parse(&pkl_bytes, &format!("{what} ({pkl})"))?;
    Ok(Archive { root, storages })
}

fn read_legacy(bytes: &[u8], what: &str) -> Result<Archive> {
    let mut pos = LEGACY_MAGIC.len();
    let mut next = |part: &str| -> Result<Value> {
        let (v, used) = pickle::parse_prefix(&bytes[pos..], &format!("{what} ({part})"))?;
        pos += used;
        Ok(v)
    };
    match next("protocol version")?.as_int() {
        Some(LEGACY_PROTOCOL) => {}
        other => {
            return Err(fail(
                what,
                format!("legacy protocol version {other:?}: expected {LEGACY_PROTOCOL}"),
            ))
        }
    }
    let info = next("system info")?;
    if info.get("little_endian") != Some(&Value::Bool(true)) {
        return Err(fail(
            what,
            "a big-endian legacy checkpoint: only little-endian ones are read",
        ));
    }
    let root = next("the saved object")?;
    let Value::List(keys) = next("storage keys")? else {
        return Err(fail(what, "the legacy storage-key list is not a list"));
    };
    let sizes = storage_sizes(&root);
    let mut storages = HashMap::new();
    for key in keys {
        let Some(key) = key.as_text().map(str::to_string) else {
            return Err(fail(what, "a legacy storage key that is not text"));
        };
        let Some(&elem) = sizes.get(&key) else {
            return Err(fail(
                what,
                format!("storage {key} is listed but no tensor uses it"),
            ));
        };
        let Some(head) = bytes.get(pos..pos + 8) else {
            return Err(fail(
                what,
                format!("truncated before storage {key}'s length"),
            ));
        };
        let numel = u64::from_le_bytes(head.try_into().expect("8 bytes"));
        pos += 8;
        let len = numel
            .checked_mul(elem as u64)
            .filter(|&n| n <= (bytes.len() - pos) as u64);
        let Some(len) = len else {
            return Err(fail(
                what,
                format!("truncated: storage {key} of {numel} elements does not fit the file"),
            ));
        };
        storages.insert(key, bytes[pos..pos + len as usize].to_vec());
        pos += len as usize;
    }
    Ok(Archive { root, storages })
}

/// The element size of every storage the pickle refers to, by key (the legacy stream stores
/// element counts, not byte lengths). Storages of unknown types are left out; the tensor
/// reader names them.
fn storage_sizes(v: &Value) -> HashMap<String, usize> {
    let refs = super::storage::nodes(v).filter_map(|n| match n {
        Value::Persistent(pid) => super::storage::storage_ref(pid),
        _ => None,
    });
    refs.filter_map(|(key, dtype)| Some((key, dtype.ok()?.size())))
        .collect()
}
