//! `rlnet corrupt`: writes a CIFAR-10-C style folder (one `<corruption>.npy` per corruption,
//! severities stacked 1..5, plus `labels.npy`) and a PNG contact sheet, from a dataset's test
//! split or from a uint8 (N, 32, 32, 3) .npy.

use super::common::{show_progress, DeviceArgs};
use crate::corrupt::{self, io, sheet, Corruption, Plane, Resources, Severity};
use crate::data::source::DatasetKind;
use crate::data::Split;
use crate::error::{Error, Result};
use crate::recipe::DataArgs;
use crate::report::Progress;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct CorruptArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// The test split of this dataset is corrupted (unless --input is given).
    #[command(flatten)]
    data: DataArgs,
    /// A uint8 (N, 32, 32, 3) RGB .npy to corrupt instead of a dataset.
    #[arg(long, conflicts_with_all = ["dataset", "data_dir"])]
    input: Option<PathBuf>,
    /// Labels for --input (1-D integer .npy); labels.npy is written only when labels are known.
    #[arg(long, requires = "input")]
    labels: Option<PathBuf>,
    /// A corruption name, a comma-separated list, "standard" (the 15 of NPA) or "all" (19).
    #[arg(long, default_value = "all")]
    corruption: String,
    /// 1-5, a comma-separated list, or "all".
    #[arg(long, default_value = "all")]
    severity: String,
    /// Folder of the frost textures (frost1.png ... frost5.jpg); without it frost is skipped.
    #[arg(long)]
    frost_dir: Option<PathBuf>,
    /// Seed of the random corruptions (every draw is keyed by seed, corruption, severity and
    /// image index).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (created; existing files of the same names are replaced atomically).
    #[arg(long)]
    out: PathBuf,
    /// Which image the contact sheet shows.
    #[arg(long, default_value_t = 0)]
    sheet_image: usize,
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: CorruptArgs) -> Result<()> {
    let device = a.device.choose(a.quiet)?.device;
    let list = Corruption::parse_list(&a.corruption)?;
    let severities = Severity::parse_list(&a.severity)?;
    let (images, labels, n, h, w) = match &a.input {
        Some(path) => {
            let (images, n, h, w) = io::read_images_npy(path)?;
            let labels = a.labels.as_deref().map(io::read_labels_npy).transpose()?;
            if let Some(l) = &labels {
                if l.len() != n {
                    return Err(Error::Data(format!(
                        "{} has {} labels for {n} images",
                        a.labels
                            .as_ref()
                            .map_or(String::new(), |p| p.display().to_string()),
                        l.len()
                    )));
                }
            }
            (images, labels, n, h, w)
        }
        None => {
            let set = a.data.spec(DatasetKind::Synthetic).load(Split::Test)?;
            let (n, h, w) = (set.len(), set.height, set.width);
            (set.images, Some(set.labels), n, h, w)
        }
    };
    if n == 0 {
        return Err(Error::Data("no images to corrupt".into()));
    }
    if a.sheet_image >= n {
        return Err(Error::Config(format!(
            "--sheet-image {} is out of range: there are {n} images",
            a.sheet_image
        )));
    }
    let p = Plane { h, w };
    let res = match &a.frost_dir {
        Some(d) => Resources::with_frost_dir(d)?,
        None => Resources::default(),
    };
    // Frost named on its own without textures is an error; inside a list it is skipped.
    if list.len() == 1 {
        res.check(list[0])?;
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;

    let per = 3 * p.len();
    let mut rows: Vec<(Corruption, Vec<Vec<u8>>)> = Vec::new();
    let mut timings = Vec::new();
    let mut bar = Progress::new(
        show_progress(a.quiet),
        list.len() * severities.len(),
        "corrupt",
    );
    let mut done = 0;
    for &c in &list {
        if let Err(e) = res.check(c) {
            eprintln!("{} skipped: {e}", c.name());
            continue;
        }
        let t0 = Instant::now();
        let mut stacked = Vec::with_capacity(severities.len() * images.len());
        for &s in &severities {
            let out = corrupt::corrupt_on(&device, c, s, &images, p, 0, a.seed, &res)?;
            stacked.extend_from_slice(&out);
            done += 1;
            bar.update(done, c.name());
        }
        let secs = t0.elapsed().as_secs_f64();
        let count = severities.len() * n;
        let shape = [count as u64, h as u64, w as u64, 3];
        io::write_u8_npy(
            &a.out.join(format!("{}.npy", c.name())),
            &shape,
            &io::chw_to_hwc(&stacked, p.len()),
        )?;
        timings.push(serde_json::json!({
            "corruption": c.name(),
            "images": count,
            "seconds": secs,
            "images_per_s": count as f64 / secs,
        }));
        if !a.quiet {
            eprintln!(
                "{:<18} {count} images in {secs:.2} s ({:.0} img/s)",
                c.name(),
                count as f64 / secs
            );
        }
        let sheet_row = severities
            .iter()
            .enumerate()
            .map(|(k, _)| stacked[(k * n + a.sheet_image) * per..][..per].to_vec())
            .collect();
        rows.push((c, sheet_row));
    }
    bar.finish();
    if rows.is_empty() {
        return Err(Error::Config("no corruption could be produced".into()));
    }
    if let Some(labels) = &labels {
        let repeated: Vec<u32> = (0..severities.len())
            .flat_map(|_| labels.iter().copied())
            .collect();
        if repeated.iter().all(|&l| l < 256) {
            let bytes: Vec<u8> = repeated.iter().map(|&l| l as u8).collect();
            io::write_u8_npy(&a.out.join("labels.npy"), &[bytes.len() as u64], &bytes)?;
        } else {
            write_i64_npy(&a.out.join("labels.npy"), &repeated)?;
        }
    }
    let clean = &images[a.sheet_image * per..][..per];
    let sheet_rows: Vec<Vec<&[u8]>> = rows
        .iter()
        .map(|(_, imgs)| {
            std::iter::once(clean)
                .chain(imgs.iter().map(Vec::as_slice))
                .collect()
        })
        .collect();
    let sheet_path = a.out.join("contact_sheet.png");
    sheet::write_contact_sheet(&sheet_path, &sheet_rows, h, w, 3)?;
    let manifest = serde_json::json!({
        "source": a.input.as_ref().map_or_else(|| a.data.spec(DatasetKind::Synthetic).kind.name().to_string(), |p| p.display().to_string()),
        "images": n,
        "severities": severities.iter().map(|s| s.get()).collect::<Vec<_>>(),
        "seed": a.seed,
        "device": device.name(),
        "contact_sheet": {
            "file": "contact_sheet.png",
            "rows": rows.iter().map(|(c, _)| c.name()).collect::<Vec<_>>(),
            "columns": std::iter::once("clean".to_string()).chain(severities.iter().map(|s| format!("severity {}", s.get()))).collect::<Vec<_>>(),
            "image": a.sheet_image,
        },
        "timings": timings,
    });
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Config(e.to_string()))?;
    crate::files::write_atomic(&a.out.join("manifest.json"), text.as_bytes())?;
    if !a.quiet {
        eprintln!(
            "wrote {} corruption files, {} and manifest.json to {}",
            rows.len(),
            if labels.is_some() {
                "labels.npy, contact_sheet.png"
            } else {
                "contact_sheet.png"
            },
            a.out.display()
        );
    }
    Ok(())
}

/// Labels past 255 (CIFAR-100 fits in u8; a custom set might not) as int64.
fn write_i64_npy(path: &std::path::Path, labels: &[u32]) -> Result<()> {
    use npyz::WriterBuilder;
    let mut buf = Vec::new();
    {
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[labels.len() as u64])
            .writer(&mut buf)
            .begin_nd()
            .map_err(|e| Error::io(path, e))?;
        w.extend(labels.iter().map(|&l| l as i64))
            .map_err(|e| Error::io(path, e))?;
        w.finish().map_err(|e| Error::io(path, e))?;
    }
    crate::files::write_atomic(path, &buf)
}
