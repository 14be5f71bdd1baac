//! The 19 CIFAR-C corruptions (Hendrycks & Dietterich 2019; corruptions-spec.md §3-§4), each at
//! the five CIFAR severities, reproducing the reference generator's arithmetic: work on x/255 in
//! [0, 1], clip, multiply by 255 and **truncate** to 8 bits.
//!
//! Images are 8-bit RGB, CHW (the layout of [`crate::data::ImageSet`]), one image at a time; a
//! batch is corrupted in parallel with [`corrupt_batch`]. The reference draws from one unseeded
//! global numpy generator, so its random corruptions cannot be reproduced draw for draw; here
//! every draw is keyed by (seed, corruption, severity, image index, draw number) through
//! [`ImageKey`], so a result never depends on batching, threads or device, and the CUDA kernels
//! (`src/corrupt/cuda/`) draw exactly the same numbers.

pub mod blur;
pub mod color;
pub mod cuda;
pub mod cvops;
pub mod elastic;
pub mod filter;
pub mod frost;
pub mod glass;
pub mod io;
pub mod jpeg;
pub mod motion;
pub mod noise;
pub mod pixelate;
pub mod sheet;
pub mod spatter;
pub mod weather;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::rng::{self, stream};
use rayon::prelude::*;
use std::path::Path;

/// One corruption. The order is the CIFAR-10-C order: the 15 standard ones, then the 4 extra
/// ones the benchmark holds out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Corruption {
    GaussianNoise,
    ShotNoise,
    ImpulseNoise,
    DefocusBlur,
    GlassBlur,
    MotionBlur,
    ZoomBlur,
    Snow,
    Frost,
    Fog,
    Brightness,
    Contrast,
    ElasticTransform,
    Pixelate,
    JpegCompression,
    SpeckleNoise,
    GaussianBlur,
    Spatter,
    Saturate,
}

impl Corruption {
    /// All 19, standard ones first.
    pub const ALL: [Corruption; 19] = [
        Corruption::GaussianNoise,
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
        Corruption::DefocusBlur,
        Corruption::GlassBlur,
        Corruption::MotionBlur,
        Corruption::ZoomBlur,
        Corruption::Snow,
        Corruption::Frost,
        Corruption::Fog,
        Corruption::Brightness,
        Corruption::Contrast,
        Corruption::ElasticTransform,
        Corruption::Pixelate,
        Corruption::JpegCompression,
        Corruption::SpeckleNoise,
        Corruption::GaussianBlur,
        Corruption::Spatter,
        Corruption::Saturate,
    ];

    /// The 15 corruptions NPA averages over (spec §7).
    pub const STANDARD: &'static [Corruption] = Self::ALL.split_at(15).0;

    /// The file-name form, e.g. "gaussian_noise".
    pub fn name(self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian_noise",
            Corruption::ShotNoise => "shot_noise",
            Corruption::ImpulseNoise => "impulse_noise",
            Corruption::DefocusBlur => "defocus_blur",
            Corruption::GlassBlur => "glass_blur",
            Corruption::MotionBlur => "motion_blur",
            Corruption::ZoomBlur => "zoom_blur",
            Corruption::Snow => "snow",
            Corruption::Frost => "frost",
            Corruption::Fog => "fog",
            Corruption::Brightness => "brightness",
            Corruption::Contrast => "contrast",
            Corruption::ElasticTransform => "elastic_transform",
            Corruption::Pixelate => "pixelate",
            Corruption::JpegCompression => "jpeg_compression",
            Corruption::SpeckleNoise => "speckle_noise",
            Corruption::GaussianBlur => "gaussian_blur",
            Corruption::Spatter => "spatter",
            Corruption::Saturate => "saturate",
        }
    }

    /// A stable small number, used to key the random draws.
    pub fn id(self) -> u64 {
        Self::ALL.iter().position(|&c| c == self).unwrap_or(0) as u64
    }

    pub fn parse(name: &str) -> Result<Corruption> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|c| c.name()).collect();
                Error::Config(format!(
                    "unknown corruption '{name}': expected one of {} (or 'all')",
                    names.join(", ")
                ))
            })
    }

    /// Parses "all", "standard" or a comma-separated list of names.
    pub fn parse_list(spec: &str) -> Result<Vec<Corruption>> {
        match spec {
            "all" => Ok(Self::ALL.to_vec()),
            "standard" => Ok(Self::STANDARD.to_vec()),
            _ => spec.split(',').map(|s| Self::parse(s.trim())).collect(),
        }
    }

    /// Whether the corruption draws random numbers (the others are deterministic functions of
    /// the image, and match the reference pixel for pixel).
    pub fn is_random(self) -> bool {
        !matches!(
            self,
            Corruption::Brightness
                | Corruption::Contrast
                | Corruption::Saturate
                | Corruption::DefocusBlur
                | Corruption::GaussianBlur
                | Corruption::ZoomBlur
                | Corruption::Pixelate
                | Corruption::JpegCompression
        )
    }
}

/// A severity, 1 (mildest) to 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Severity(u8);

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity(1),
        Severity(2),
        Severity(3),
        Severity(4),
        Severity(5),
    ];

    pub fn new(s: usize) -> Result<Severity> {
        if (1..=5).contains(&s) {
            Ok(Severity(s as u8))
        } else {
            Err(Error::Config(format!(
                "severity {s} is out of range: expected 1 to 5 (or 'all')"
            )))
        }
    }

    /// 1..=5.
    pub fn get(self) -> usize {
        self.0 as usize
    }

    /// 0..=4, the row of a severity table.
    pub fn index(self) -> usize {
        self.0 as usize - 1
    }

    /// Parses "all" or a comma-separated list of 1-5.
    pub fn parse_list(spec: &str) -> Result<Vec<Severity>> {
        if spec == "all" {
            return Ok(Self::ALL.to_vec());
        }
        spec.split(',')
            .map(|s| {
                let v: usize = s.trim().parse().map_err(|_| {
                    Error::Config(format!(
                        "severity '{s}' is not a number: expected 1 to 5 (or 'all')"
                    ))
                })?;
                Severity::new(v)
            })
            .collect()
    }
}

/// The random draws of one image under one corruption and severity: a keyed stream, so draw
/// `i` is the same number on the CPU and on the GPU, whatever the batching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageKey {
    /// `rng::hash(seed, CORRUPT, 8·corruption + severity)`: computed once per (corruption,
    /// severity) on the host and passed to kernels as is.
    pub seed: u64,
    /// The image's index in the dataset.
    pub stream: u64,
}

impl ImageKey {
    /// The per-(corruption, severity) seed the kernels receive.
    pub fn family_seed(seed: u64, c: Corruption, s: Severity) -> u64 {
        rng::hash(seed, stream::CORRUPT, 8 * c.id() + s.get() as u64)
    }

    pub fn new(seed: u64, c: Corruption, s: Severity, image: u64) -> ImageKey {
        ImageKey {
            seed: Self::family_seed(seed, c, s),
            stream: image,
        }
    }

    /// Draw `i`, uniform in [0, 1) with 53 bits (`rl_uniform_f64` on the GPU).
    pub fn uniform(&self, i: u64) -> f64 {
        rng::uniform_f64(self.seed, self.stream, i)
    }

    /// Draw `i` of the normal sequence (uses uniform draws 2i and 2i+1; `rl_normal`).
    pub fn normal(&self, i: u64) -> f64 {
        rng::normal(self.seed, self.stream, i)
    }

    /// Draw `i`, uniform integer in [0, n) (`rl_below`).
    pub fn below(&self, i: u64, n: u64) -> u64 {
        rng::below(self.seed, self.stream, i, n)
    }
}

/// Data some corruptions need beyond the image: the frost textures.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub frost: Option<frost::FrostTiles>,
}

impl Resources {
    /// Loads the frost textures from `dir` (frost1.png … frost5.jpg).
    pub fn with_frost_dir(dir: &Path) -> Result<Resources> {
        Ok(Resources {
            frost: Some(frost::FrostTiles::load(dir)?),
        })
    }

    /// Checks that everything `c` needs is present, naming what is missing otherwise.
    pub fn check(&self, c: Corruption) -> Result<()> {
        if c == Corruption::Frost && self.frost.is_none() {
            return Err(Error::Config(
                "frost needs its textures (frost1.png, frost2.png, frost3.png, frost4.jpg, \
                 frost5.jpg: the frost images of hendrycks/robustness): pass \
                 --frost-dir DIR, the folder that holds them"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The size of one image: 3 channels, `h` × `w`, CHW.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plane {
    pub h: usize,
    pub w: usize,
}

impl Plane {
    pub fn len(self) -> usize {
        self.h * self.w
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// The image size every severity table is written for.
pub const CIFAR_PLANE: Plane = Plane { h: 32, w: 32 };

/// The severity tables are CIFAR-10-C's: 32×32 images only.
fn check_plane(c: Corruption, p: Plane) -> Result<()> {
    if p != CIFAR_PLANE {
        return Err(Error::Config(format!(
            "{}: the corruption parameters are CIFAR-10-C's and need 32x32 images, got {}x{} \
             (for Tiny-ImageNet, read Tiny-ImageNet-C folders instead)",
            c.name(),
            p.h,
            p.w
        )));
    }
    Ok(())
}

/// Corrupts one CHW RGB image `img` (3·h·w bytes) into `out` (same size).
pub fn corrupt_image(
    c: Corruption,
    s: Severity,
    img: &[u8],
    p: Plane,
    out: &mut [u8],
    key: &ImageKey,
    res: &Resources,
) -> Result<()> {
    if img.len() != 3 * p.len() || out.len() != img.len() {
        return Err(Error::shape(
            c.name(),
            format!("3x{}x{} RGB image", p.h, p.w),
            format!("{} bytes in, {} out", img.len(), out.len()),
        ));
    }
    check_plane(c, p)?;
    res.check(c)?;
    match c {
        Corruption::GaussianNoise
        | Corruption::ShotNoise
        | Corruption::ImpulseNoise
        | Corruption::SpeckleNoise => noise::apply(c, s, img, p, out, key),
        Corruption::Brightness | Corruption::Contrast | Corruption::Saturate => {
            color::apply(c, s, img, p, out)
        }
        Corruption::GaussianBlur
        | Corruption::DefocusBlur
        | Corruption::GlassBlur
        | Corruption::ZoomBlur => blur::apply(c, s, img, p, out, key),
        Corruption::MotionBlur => motion::motion_blur(s, img, p, out, key),
        Corruption::Snow | Corruption::Fog => weather::apply(c, s, img, p, out, key),
        Corruption::Frost => {
            let tiles = res.frost.as_ref().expect("checked by Resources::check");
            frost::frost(s, img, p, out, key, tiles)
        }
        Corruption::ElasticTransform => elastic::elastic_transform(s, img, p, out, key),
        Corruption::Spatter => spatter::spatter(s, img, p, out, key),
        Corruption::Pixelate => pixelate::pixelate(s, img, p, out),
        Corruption::JpegCompression => jpeg::jpeg_compression(s, img, p, out)?,
    }
    Ok(())
}

/// Corrupts `n` CHW images back to back (image `j` is dataset image `first + j`), in parallel.
pub fn corrupt_batch(
    c: Corruption,
    s: Severity,
    images: &[u8],
    p: Plane,
    first: u64,
    seed: u64,
    res: &Resources,
) -> Result<Vec<u8>> {
    let per = 3 * p.len();
    if per == 0 || !images.len().is_multiple_of(per) {
        return Err(Error::shape(
            c.name(),
            format!("a whole number of 3x{}x{} images", p.h, p.w),
            format!("{} bytes", images.len()),
        ));
    }
    res.check(c)?;
    let mut out = vec![0u8; images.len()];
    out.par_chunks_mut(per)
        .zip(images.par_chunks(per))
        .enumerate()
        .try_for_each(|(j, (o, img))| {
            let key = ImageKey::new(seed, c, s, first + j as u64);
            corrupt_image(c, s, img, p, o, &key, res)
        })?;
    Ok(out)
}

/// [`corrupt_batch`] on `device`: the CUDA kernels on a GPU, the reference code on the CPU.
#[allow(clippy::too_many_arguments)]
pub fn corrupt_on(
    device: &Device,
    c: Corruption,
    s: Severity,
    images: &[u8],
    p: Plane,
    first: u64,
    seed: u64,
    res: &Resources,
) -> Result<Vec<u8>> {
    match device {
        Device::Cpu => corrupt_batch(c, s, images, p, first, seed, res),
        Device::Cuda(dev) => {
            check_plane(c, p)?;
            cuda::corrupt_batch_gpu(dev, c, s, images, first, seed, res)
        }
    }
}

/// x/255 → clip to [0, 1] → ·255 → truncate: the reference's last step (`np.uint8` of a float
/// after `np.clip(x, 0, 1) * 255`).
#[inline]
pub fn to_u8(x: f64) -> u8 {
    (x.clamp(0.0, 1.0) * 255.0) as u8
}

/// The same from a value already in 0..255 units (clip to [0, 255], then truncate).
#[inline]
pub fn to_u8_255(v: f64) -> u8 {
    v.clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_standard_is_the_first_fifteen() {
        for c in Corruption::ALL {
            assert_eq!(Corruption::parse(c.name()).unwrap(), c);
        }
        assert_eq!(Corruption::STANDARD.len(), 15);
        assert_eq!(Corruption::STANDARD[14], Corruption::JpegCompression);
        assert!(Corruption::parse("gaussian").is_err());
        assert_eq!(Corruption::parse_list("all").unwrap().len(), 19);
        assert_eq!(
            Corruption::parse_list("fog, snow").unwrap(),
            vec![Corruption::Fog, Corruption::Snow]
        );
    }

    #[test]
    fn severities_parse_and_reject() {
        assert_eq!(Severity::parse_list("all").unwrap().len(), 5);
        assert_eq!(Severity::parse_list("2,5").unwrap()[1].get(), 5);
        assert!(Severity::parse_list("0").is_err());
        assert!(Severity::parse_list("6").is_err());
        assert!(Severity::parse_list("x").is_err());
    }

    #[test]
    fn truncation_matches_numpy_uint8_after_clip() {
        assert_eq!(to_u8(0.999_999), 254);
        assert_eq!(to_u8(1.5), 255);
        assert_eq!(to_u8(-0.1), 0);
        assert_eq!(to_u8_255(254.9), 254);
    }
}
