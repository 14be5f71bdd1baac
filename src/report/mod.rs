//! Run outputs: JSON reports (written atomically) and the terminal progress bar.

pub mod folders;
pub mod markdown;
pub mod pi_cost;
pub mod run;
pub mod seeds;
pub mod svg;

use crate::error::{Error, Result};
use crate::files::write_atomic;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::Path;

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value).map_err(|e| Error::Config(e.to_string()))?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// A progress bar that stays silent when hidden (tests, `--quiet`) or when not on a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(show: bool, len: usize, prefix: &str) -> Self {
        let bar = show.then(|| {
            let b = ProgressBar::new(len as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            b.set_prefix(prefix.to_string());
            b
        });
        Progress { bar }
    }

    pub fn set_position(&mut self, pos: usize) {
        if let Some(b) = &self.bar {
            b.set_position(pos as u64);
        }
    }

    pub fn update(&mut self, pos: usize, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_position(pos as u64);
            b.set_message(msg.to_string());
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}
