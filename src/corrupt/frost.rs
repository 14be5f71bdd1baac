//! frost (corruptions-spec.md §4.11): a random 32×32 crop of one of five frost textures, shrunk
//! by 5, blended with the image: out = clip(a·img + b·frost, 0, 255), truncated.
//!
//! The reference reads frost1.png … frost5.jpg with OpenCV (its list names a frost6.jpg too,
//! which `randint(5)` never picks), drops the PNGs' alpha channel and shrinks each by 0.2 with
//! INTER_LINEAR. For a factor of exactly 5, bilinear sampling lands on source pixels
//! (5i + 2, 5j + 2), so the tiles here are that subsample (round(H/5) × round(W/5)), checked
//! value for value against OpenCV (tests/corruptions/frost.rs). PNGs are decoded with the `png`
//! crate, JPEGs with libjpeg-turbo (mozjpeg's decompressor, the library OpenCV uses).
//!
//! Draws per image: `below(0, 5)` = texture, `below(1, H − 32)` = first row,
//! `below(2, W − 32)` = first column (numpy's `randint(5)`, `randint(0, H − 32)`,
//! `randint(0, W − 32)`, upper bounds exclusive; H×W the tile's size).

use super::{to_u8_255, ImageKey, Plane, Severity};
use crate::error::{Error, Result};
use std::fmt;
use std::path::Path;

/// The five textures the reference can pick, in its order.
pub const FILES: [&str; 5] = [
    "frost1.png",
    "frost2.png",
    "frost3.png",
    "frost4.jpg",
    "frost5.jpg",
];

/// The shrink factor: tile pixel (i, j) is texture pixel (5i + 2, 5j + 2).
const SHRINK: usize = 5;

/// The crop's side.
const CROP: usize = 32;

/// (image weight, frost weight) per severity.
const WEIGHTS: [(f64, f64); 5] = [
    (1.0, 0.2),
    (1.0, 0.3),
    (0.9, 0.4),
    (0.85, 0.4),
    (0.75, 0.45),
];

/// (image weight, frost weight) at severity `s`.
pub fn weights(s: Severity) -> (f64, f64) {
    WEIGHTS[s.index()]
}

/// One shrunken texture: `h`×`w` RGB pixels, HWC.
#[derive(Clone)]
pub struct FrostTile {
    pub h: usize,
    pub w: usize,
    pub rgb: Vec<u8>,
}

impl fmt::Debug for FrostTile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrostTile {}x{} RGB", self.h, self.w)
    }
}

/// The five shrunken frost textures, loaded once.
#[derive(Clone, Debug)]
pub struct FrostTiles {
    tiles: Vec<FrostTile>,
}

impl FrostTiles {
    /// Reads frost1.png … frost5.jpg from `dir` and shrinks them as the reference does.
    pub fn load(dir: &Path) -> Result<FrostTiles> {
        let tiles = FILES
            .iter()
            .map(|name| {
                let path = dir.join(name);
                let bytes = std::fs::read(&path).map_err(|e| {
                    Error::Data(format!(
                        "frost texture {}: {e} (expected the reference's five textures \
                         frost1.png, frost2.png, frost3.png, frost4.jpg, frost5.jpg in {})",
                        path.display(),
                        dir.display()
                    ))
                })?;
                let (h, w, rgb) =
                    decode_texture(&bytes, name.ends_with(".png")).map_err(|why| {
                        Error::Data(format!(
                            "frost texture {}: {why} (expected an 8- or 16-bit PNG or a \
                         baseline/progressive JPEG, as in hendrycks/robustness)",
                            path.display()
                        ))
                    })?;
                shrink(h, w, &rgb).ok_or_else(|| {
                    Error::Data(format!(
                        "frost texture {}: {w}x{h} pixels is too small (expected at least \
                         {side}x{side}, so that a {CROP}x{CROP} crop fits after shrinking by \
                         {SHRINK})",
                        path.display(),
                        side = SHRINK * (CROP + 1)
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FrostTiles { tiles })
    }

    /// The five tiles in the reference's order (what the GPU launcher uploads).
    pub fn tiles(&self) -> &[FrostTile] {
        &self.tiles
    }
}

/// Decodes a PNG to 8-bit RGB as OpenCV's `imread(IMREAD_COLOR)` does: palettes and low bit
/// depths expanded, 16-bit samples cut to their high byte, grey replicated, alpha dropped.
/// The largest texture read (pixels): 4096 x 4096.
const MAX_TEXTURE_PIXELS: usize = 1 << 24;

/// A texture file's RGB pixels (height, width, HWC bytes): PNG, or with `png` false JPEG.
pub fn decode_texture(
    bytes: &[u8],
    png: bool,
) -> std::result::Result<(usize, usize, Vec<u8>), String> {
    match png {
        true => decode_png(bytes),
        false => decode_jpeg(bytes),
    }
}

fn decode_png(bytes: &[u8]) -> std::result::Result<(usize, usize, Vec<u8>), String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let size = reader
        .output_buffer_size()
        .ok_or("the image is too large to decode")?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let (h, w) = (info.height as usize, info.width as usize);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("a palette the decoder did not expand".into()),
    };
    let mut rgb = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        let row = &buf[y * info.line_size..][..w * channels];
        for px in row.chunks_exact(channels) {
            if channels < 3 {
                rgb.extend_from_slice(&[px[0]; 3]);
            } else {
                rgb.extend_from_slice(&px[..3]);
            }
        }
    }
    Ok((h, w, rgb))
}

/// Decodes a JPEG to 8-bit RGB with libjpeg-turbo (mozjpeg). libjpeg reports fatal errors by
/// unwinding; they are caught here and returned as messages.
fn decode_jpeg(bytes: &[u8]) -> std::result::Result<(usize, usize, Vec<u8>), String> {
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<(usize, usize, Vec<u8>)> {
        let d = mozjpeg::Decompress::new_mem(bytes)?;
        let (w, h) = d.size();
        // The header's size is checked before the pixels are reserved (a short file can claim
        // 65535 x 65535); the reference's textures are under a megapixel.
        if w * h > MAX_TEXTURE_PIXELS {
            return Err(std::io::Error::other(format!(
                "{w}x{h} pixels: more than the {MAX_TEXTURE_PIXELS} a texture may have"
            )));
        }
        let mut started = d.rgb()?;
        let (h, w) = (started.height(), started.width());
        let rgb = started.read_scanlines::<u8>()?;
        started.finish()?;
        Ok((h, w, rgb))
    });
    match decoded {
        Ok(Ok((h, w, rgb))) if rgb.len() == h * w * 3 => Ok((h, w, rgb)),
        Ok(Ok((h, w, rgb))) => Err(format!(
            "libjpeg returned {} bytes for {w}x{h} RGB pixels",
            rgb.len()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "libjpeg failed".into())),
    }
}

/// OpenCV's INTER_LINEAR resize by 0.2 (output round(H·0.2) × round(W·0.2)), which samples
/// exactly pixel (5i + 2, 5j + 2). None when the tile is too small for a 32×32 crop (the
/// reference's `randint(0, H − 32)` needs H > 32).
fn shrink(h: usize, w: usize, rgb: &[u8]) -> Option<FrostTile> {
    let th = (h as f64 * 0.2).round() as usize;
    let tw = (w as f64 * 0.2).round() as usize;
    if th <= CROP || tw <= CROP {
        return None;
    }
    let mut out = Vec::with_capacity(th * tw * 3);
    for i in 0..th {
        for j in 0..tw {
            let at = ((SHRINK * i + 2) * w + SHRINK * j + 2) * 3;
            out.extend_from_slice(&rgb[at..at + 3]);
        }
    }
    Some(FrostTile {
        h: th,
        w: tw,
        rgb: out,
    })
}

/// frost of one CHW image with a known texture `idx` (0..5) and crop origin (r0, c0).
#[allow(clippy::too_many_arguments)]
pub fn frost_at(
    s: Severity,
    img: &[u8],
    p: Plane,
    tiles: &FrostTiles,
    idx: usize,
    r0: usize,
    c0: usize,
    out: &mut [u8],
) {
    let (a, b) = weights(s);
    let t = &tiles.tiles[idx];
    let n = p.len();
    for ch in 0..3 {
        for y in 0..p.h {
            for x in 0..p.w {
                let k = ch * n + y * p.w + x;
                let f = t.rgb[((r0 + y) * t.w + c0 + x) * 3 + ch];
                out[k] = to_u8_255(a * img[k] as f64 + b * f as f64);
            }
        }
    }
}

/// frost of one CHW image (spec §4.11).
pub fn frost(
    s: Severity,
    img: &[u8],
    p: Plane,
    out: &mut [u8],
    key: &ImageKey,
    tiles: &FrostTiles,
) {
    let idx = key.below(0, FILES.len() as u64) as usize;
    let t = &tiles.tiles[idx];
    let r0 = key.below(1, (t.h - CROP) as u64) as usize;
    let c0 = key.below(2, (t.w - CROP) as u64) as usize;
    frost_at(s, img, p, tiles, idx, r0, c0, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_samples_every_fifth_pixel_from_the_third() {
        // A 170x171 texture whose pixel (y, x) holds (y, x, 7).
        let (h, w) = (170, 171);
        let rgb: Vec<u8> = (0..h * w)
            .flat_map(|k| [(k / w) as u8, (k % w) as u8, 7])
            .collect();
        let t = shrink(h, w, &rgb).unwrap();
        assert_eq!((t.h, t.w), (34, 34));
        assert_eq!(&t.rgb[..3], &[2, 2, 7]);
        let last = (33 * 34 + 33) * 3;
        assert_eq!(&t.rgb[last..last + 3], &[167, 167, 7]);
        assert!(shrink(160, 400, &vec![0; 160 * 400 * 3]).is_none());
    }

    #[test]
    fn missing_and_corrupt_textures_are_named() {
        let dir = std::env::temp_dir().join(format!("rlnet-frost-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = FrostTiles::load(&dir).unwrap_err().to_string();
        assert!(err.contains("frost1.png"), "{err}");
        for name in FILES {
            std::fs::write(dir.join(name), b"not an image").unwrap();
        }
        let err = FrostTiles::load(&dir).unwrap_err().to_string();
        assert!(err.contains("frost1.png") && err.contains("PNG"), "{err}");
        // Valid PNGs up to the JPEGs: the JPEG error is caught, not a panic.
        let png = tiny_png(170, 170);
        for name in &FILES[..3] {
            std::fs::write(dir.join(name), &png).unwrap();
        }
        let err = FrostTiles::load(&dir).unwrap_err().to_string();
        assert!(err.contains("frost4.jpg"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tiny_png(h: u32, w: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().unwrap();
        writer
            .write_image_data(&vec![128u8; (h * w * 4) as usize])
            .unwrap();
        drop(writer);
        bytes
    }
}
