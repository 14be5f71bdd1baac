//! The contact sheet `rlnet corrupt` writes: one row per corruption, one column per image
//! (clean first, then each severity), CHW images scaled up by pixel repetition so a 32-pixel
//! image is visible, with grey gutters between cells.

use crate::error::{Error, Result};
use crate::files::write_atomic;
use std::path::Path;

/// Cells are separated by this many pixels of the gutter grey.
const GUTTER: usize = 4;
const GUTTER_GREY: u8 = 200;

/// Writes a PNG grid of `rows` (each a list of CHW RGB h×w images) scaled by `scale`.
pub fn write_contact_sheet(
    path: &Path,
    rows: &[Vec<&[u8]>],
    h: usize,
    w: usize,
    scale: usize,
) -> Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    if rows.is_empty() || cols == 0 {
        return Err(Error::Config("contact sheet: nothing to draw".into()));
    }
    let (ch, cw) = (h * scale, w * scale);
    let width = cols * cw + (cols + 1) * GUTTER;
    let height = rows.len() * ch + (rows.len() + 1) * GUTTER;
    let mut rgb = vec![GUTTER_GREY; width * height * 3];
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            let (y0, x0) = (GUTTER + r * (ch + GUTTER), GUTTER + c * (cw + GUTTER));
            for y in 0..ch {
                for x in 0..cw {
                    let src = (y / scale) * w + x / scale;
                    let dst = ((y0 + y) * width + x0 + x) * 3;
                    for k in 0..3 {
                        rgb[dst + k] = img[k * h * w + src];
                    }
                }
            }
        }
    }
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let png_err = |e: png::EncodingError| Error::Config(format!("PNG encoding failed: {e}"));
        let mut writer = enc.write_header().map_err(png_err)?;
        writer.write_image_data(&rgb).map_err(png_err)?;
    }
    write_atomic(path, &buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_decodes_with_the_expected_size_and_pixels() {
        let dir = std::env::temp_dir().join(format!("rlnet-sheet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.png");
        let red: Vec<u8> = [vec![255u8; 4], vec![0; 4], vec![0; 4]].concat();
        let blue: Vec<u8> = [vec![0u8; 4], vec![0; 4], vec![255; 4]].concat();
        write_contact_sheet(&path, &[vec![&red, &blue], vec![&blue]], 2, 2, 3).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut px = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut px).unwrap();
        assert_eq!((info.width, info.height), (2 * 6 + 3 * 4, 2 * 6 + 3 * 4));
        let at = |y: usize, x: usize| &px[(y * info.width as usize + x) * 3..][..3];
        assert_eq!(at(4, 4), &[255, 0, 0]);
        assert_eq!(at(4, 4 + 6 + 4), &[0, 0, 255]);
        assert_eq!(at(0, 0), &[GUTTER_GREY; 3]);
        // The second row has one cell; the rest stays gutter grey.
        assert_eq!(at(4 + 6 + 4, 4 + 6 + 4), &[GUTTER_GREY; 3]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
