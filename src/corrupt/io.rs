//! The CIFAR-10-C file layout (corruptions-spec.md §1): one `<corruption>.npy` per corruption,
//! uint8 [5·N, 32, 32, 3] HWC RGB with severity s in rows [(s−1)·N, s·N), plus `labels.npy`
//! (the N test labels repeated once per severity). Reading and writing here; the images turn
//! into CHW [`ImageSet`]s on the way in and back to HWC on the way out.

use super::{Corruption, Severity};
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::files::write_atomic;
use npyz::WriterBuilder;
use std::path::Path;

/// HWC → CHW for 3-channel images of `hw` pixels, back to back.
pub fn hwc_to_chw(hwc: &[u8], hw: usize) -> Vec<u8> {
    let mut out = vec![0u8; hwc.len()];
    for (src, dst) in hwc.chunks(3 * hw).zip(out.chunks_mut(3 * hw)) {
        for i in 0..hw {
            for c in 0..3 {
                dst[c * hw + i] = src[3 * i + c];
            }
        }
    }
    out
}

/// CHW → HWC, the inverse of [`hwc_to_chw`].
pub fn chw_to_hwc(chw: &[u8], hw: usize) -> Vec<u8> {
    let mut out = vec![0u8; chw.len()];
    for (src, dst) in chw.chunks(3 * hw).zip(out.chunks_mut(3 * hw)) {
        for i in 0..hw {
            for c in 0..3 {
                dst[3 * i + c] = src[c * hw + i];
            }
        }
    }
    out
}

/// An .npy file's header, checked against the file: the data its shape and dtype declare must
/// be in the file, so a short file cannot ask for more memory than it holds.
fn open_npy<'a>(bytes: &'a [u8], what: &str) -> Result<npyz::NpyFile<&'a [u8]>> {
    check_preamble(bytes, what)?;
    let f = npyz::NpyFile::new(bytes)
        .map_err(|e| Error::Data(format!("{what}: not a readable .npy file: {e}")))?;
    let item = match f.dtype() {
        npyz::DType::Plain(t) => t.num_bytes().unwrap_or(0),
        _ => 0,
    };
    let declared = f
        .shape()
        .iter()
        .try_fold(item as u64, |acc, &d| acc.checked_mul(d));
    match declared {
        Some(n) if n <= bytes.len() as u64 => Ok(f),
        _ => Err(Error::Data(format!(
            "{what}: the header declares shape {:?} of {} ({} bytes), more than the file's {} \
             bytes: truncated or corrupt",
            f.shape(),
            f.dtype().descr(),
            declared.map_or("over 2^64".to_string(), |n| n.to_string()),
            bytes.len()
        ))),
    }
}

/// The magic, version and header length of an .npy file, checked before its header is read:
/// the length field (4 bytes from version 2 on) must not claim more than the file holds.
fn check_preamble(bytes: &[u8], what: &str) -> Result<()> {
    let bad = |why: String| Error::Data(format!("{what}: not a readable .npy file: {why}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no .npy magic (\\x93NUMPY) at its start".into()));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("format version {v} (expected 1, 2 or 3)"))),
    };
    if len > bytes.len() - start {
        return Err(bad(format!(
            "its header claims {len} bytes, the file has {} after the preamble: truncated",
            bytes.len() - start
        )));
    }
    Ok(())
}

/// Reads a uint8 [N, H, W, 3] image array as CHW bytes with (N, H, W).
pub fn read_images_npy(path: &Path) -> Result<(Vec<u8>, usize, usize, usize)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    images_from_npy(&bytes, &path.display().to_string())
}

/// The same, from the bytes of an .npy file (`what` names it in messages).
pub fn images_from_npy(bytes: &[u8], what: &str) -> Result<(Vec<u8>, usize, usize, usize)> {
    let f = open_npy(bytes, what)?;
    let shape: Vec<usize> = f.shape().iter().map(|&d| d as usize).collect();
    let is_u8 = matches!(f.dtype(), npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Uint && t.size_field() == 1);
    if !is_u8 || shape.len() != 4 || shape[3] != 3 || shape[1] == 0 || shape[2] == 0 {
        return Err(Error::Data(format!(
            "{what}: expected uint8 images of shape (N, H, W, 3) with H, W > 0 (HWC RGB, the CIFAR-10-C layout), got {} {:?}",
            f.dtype().descr(),
            shape
        )));
    }
    let data: Vec<u8> = f
        .into_vec()
        .map_err(|e| Error::Data(format!("{what}: truncated or corrupt data: {e}")))?;
    Ok((
        hwc_to_chw(&data, shape[1] * shape[2]),
        shape[0],
        shape[1],
        shape[2],
    ))
}

/// Reads a 1-D integer label array (uint8, as CIFAR-10-C ships it, or any integer width).
pub fn read_labels_npy(path: &Path) -> Result<Vec<u32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    labels_from_npy(&bytes, &path.display().to_string())
}

/// The same, from the bytes of an .npy file (`what` names it in messages).
pub fn labels_from_npy(bytes: &[u8], what: &str) -> Result<Vec<u32>> {
    let f = open_npy(bytes, what)?;
    let shape: Vec<usize> = f.shape().iter().map(|&d| d as usize).collect();
    let bad = |msg: String| Error::Data(format!("{what}: {msg}"));
    if shape.len() != 1 {
        return Err(bad(format!(
            "expected a 1-D label array, got shape {shape:?}"
        )));
    }
    let npyz::DType::Plain(t) = f.dtype() else {
        return Err(bad("expected integer labels, got a structured dtype".into()));
    };
    let trunc = |e: std::io::Error| bad(format!("truncated or corrupt data: {e}"));
    let values: Vec<i64> = match (t.type_char(), t.size_field()) {
        (npyz::TypeChar::Uint, 1) => f
            .into_vec::<u8>()
            .map_err(trunc)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (npyz::TypeChar::Int, 4) => f
            .into_vec::<i32>()
            .map_err(trunc)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (npyz::TypeChar::Int, 8) => f.into_vec::<i64>().map_err(trunc)?,
        (npyz::TypeChar::Uint, 8) => f
            .into_vec::<u64>()
            .map_err(trunc)?
            .into_iter()
            .map(|v| v.min(i64::MAX as u64) as i64)
            .collect(),
        _ => return Err(bad(format!("expected uint8/int32/int64 labels, got {t}"))),
    };
    values
        .into_iter()
        .map(|v| u32::try_from(v).map_err(|_| bad(format!("label {v} is negative or too large"))))
        .collect()
}

/// Writes a uint8 array atomically (temporary name, then rename).
pub fn write_u8_npy(path: &Path, shape: &[u64], data: &[u8]) -> Result<()> {
    let mut buf = Vec::with_capacity(data.len() + 128);
    {
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut buf)
            .begin_nd()
            .map_err(|e| Error::io(path, e))?;
        w.extend(data.iter().copied())
            .map_err(|e| Error::io(path, e))?;
        w.finish().map_err(|e| Error::io(path, e))?;
    }
    write_atomic(path, &buf)
}

/// One corruption of a CIFAR-10-C style folder: the test set at each severity present.
pub struct CorruptedSets {
    pub corruption: Corruption,
    /// (severity, images with their labels), severities in order.
    pub by_severity: Vec<(Severity, ImageSet)>,
}

/// Reads `<dir>/<name>.npy` and `<dir>/labels.npy`, keeping the severities asked for. The row
/// count must be 5 × the label block (labels.npy holds the N labels once per severity, or just
/// once).
pub fn read_cifar_c(
    dir: &Path,
    c: Corruption,
    severities: &[Severity],
    num_classes: usize,
) -> Result<CorruptedSets> {
    let path = dir.join(format!("{}.npy", c.name()));
    if !path.exists() {
        return Err(Error::Data(format!(
            "{}: missing; a CIFAR-10-C/CIFAR-100-C folder has one <corruption>.npy per corruption and labels.npy",
            path.display()
        )));
    }
    let (images, rows, h, w) = read_images_npy(&path)?;
    let labels = read_labels_npy(&dir.join("labels.npy"))?;
    if rows % 5 != 0 || !(labels.len() == rows || labels.len() * 5 == rows) {
        return Err(Error::Data(format!(
            "{}: {rows} rows do not hold 5 severities of the {} labels in labels.npy",
            path.display(),
            labels.len()
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= num_classes) {
        return Err(Error::Data(format!(
            "{}: label {bad} is out of range for {num_classes} classes",
            dir.join("labels.npy").display()
        )));
    }
    let n = rows / 5;
    let per = 3 * h * w;
    let by_severity = severities
        .iter()
        .map(|&s| {
            let r = s.index() * n;
            let set = ImageSet {
                images: images[r * per..(r + n) * per].to_vec(),
                labels: labels[r % labels.len()..r % labels.len() + n].to_vec(),
                channels: 3,
                height: h,
                width: w,
                num_classes,
            };
            (s, set)
        })
        .collect();
    Ok(CorruptedSets {
        corruption: c,
        by_severity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        let chw: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8).collect();
        let hwc = chw_to_hwc(&chw, 4);
        assert_eq!(&hwc[..6], &[0, 4, 8, 1, 5, 9]);
        assert_eq!(hwc_to_chw(&hwc, 4), chw);
    }
}
