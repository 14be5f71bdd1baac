//! The PyTorch peer (`tools/torch_peer.py --items -`): the same items, run by PyTorch on the
//! same machine in one or more variants (eager or torch.compile, f32 or bf16 autocast,
//! optionally channels_last), so `rlnet bench --compare-torch` reports ratios from one run.

use super::Item;
use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How to run the peer.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub python: String,
    pub script: PathBuf,
    /// "cpu" or "cuda": the device our items ran on.
    pub device: &'static str,
    pub variants: Vec<Variant>,
    pub threads: Option<usize>,
    pub warmup: usize,
    pub reps: usize,
    pub min_time_s: f64,
}

/// One way of running PyTorch: `{eager|compile}-{f32|bf16}[-cl]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    pub compiled: bool,
    pub bf16: bool,
    pub channels_last: bool,
}

impl Variant {
    pub fn parse(s: &str) -> Result<Variant> {
        let bad = || {
            Error::Config(format!(
                "unknown PyTorch variant {s:?}: expected {{eager|compile}}-{{f32|bf16}}[-cl], e.g. eager-f32 or compile-bf16-cl"
            ))
        };
        let parts: Vec<&str> = s.split('-').collect();
        let (mode, dtype, cl) = match parts.as_slice() {
            [m, d] => (*m, *d, false),
            [m, d, "cl"] => (*m, *d, true),
            _ => return Err(bad()),
        };
        let compiled = match mode {
            "eager" => false,
            "compile" => true,
            _ => return Err(bad()),
        };
        let bf16 = match dtype {
            "f32" => false,
            "bf16" => true,
            _ => return Err(bad()),
        };
        Ok(Variant {
            compiled,
            bf16,
            channels_last: cl,
        })
    }

    pub fn name(&self) -> String {
        format!(
            "{}-{}{}",
            if self.compiled { "compile" } else { "eager" },
            if self.bf16 { "bf16" } else { "f32" },
            if self.channels_last { "-cl" } else { "" }
        )
    }
}

/// One (item, variant) answer of the peer.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct PeerResult {
    pub name: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub ms: Option<f64>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub skipped: Option<String>,
}

/// The peer's whole answer.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct PeerRun {
    pub torch_version: String,
    pub device: String,
    #[serde(default)]
    pub threads: Option<usize>,
    pub results: Vec<PeerResult>,
}

/// tools/torch_peer.py: `explicit` if given, else under the working directory, else beside
/// the executable's checkout (target/<profile>/rlnet → ../../tools).
pub fn find_script(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(Error::Config(format!(
                "--torch-peer {}: no such file (expected tools/torch_peer.py of an rlnet checkout)",
                p.display()
            )))
        };
    }
    let mut candidates = vec![PathBuf::from("tools/torch_peer.py")];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(root) = exe
            .parent()
            .and_then(|p| p.parent())
            .and_then(|p| p.parent())
        {
            candidates.push(root.join("tools/torch_peer.py"));
        }
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::Config(
            "--compare-torch needs tools/torch_peer.py: run from the rlnet checkout or pass --torch-peer PATH".into(),
        )
    })
}

/// Runs the peer on `items` and parses its answer.
pub fn run_peer(cfg: &PeerConfig, items: &[Item]) -> Result<PeerRun> {
    let request = json!({
        "device": cfg.device,
        "threads": cfg.threads,
        "warmup": cfg.warmup,
        "reps": cfg.reps,
        "min_time_s": cfg.min_time_s,
        "variants": cfg.variants.iter().map(Variant::name).collect::<Vec<_>>(),
        "items": items.iter().map(Item::torch_spec).collect::<Vec<_>>(),
    });
    let spawn_err = |e: std::io::Error| {
        Error::Config(format!(
            "cannot run the PyTorch peer with {:?} (--python): {e}",
            cfg.python
        ))
    };
    let mut child = Command::new(&cfg.python)
        .arg(&cfg.script)
        .args(["--items", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(spawn_err)?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    stdin
        .write_all(request.to_string().as_bytes())
        .map_err(spawn_err)?;
    drop(stdin);
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "the PyTorch peer {} failed ({}); its messages are above",
            cfg.script.display(),
            out.status
        )));
    }
    parse_peer(&out.stdout)
}

pub fn parse_peer(stdout: &[u8]) -> Result<PeerRun> {
    serde_json::from_slice(stdout).map_err(|e| {
        Error::Data(format!(
            "the PyTorch peer's answer is not the expected JSON object ({e}); it began {:?}",
            String::from_utf8_lossy(&stdout[..stdout.len().min(200)])
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_round_trip_and_bad_ones_are_named() {
        for s in [
            "eager-f32",
            "compile-bf16-cl",
            "eager-bf16",
            "compile-f32-cl",
        ] {
            assert_eq!(Variant::parse(s).unwrap().name(), s);
        }
        for s in ["eager", "jit-f32", "eager-f16", "eager-f32-nhwc", ""] {
            let e = Variant::parse(s).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{s:?}")) && e.contains("expected"),
                "{e}"
            );
        }
    }

    #[test]
    fn peer_answers_parse_and_garbage_is_reported() {
        let run = parse_peer(
            br#"{"torch_version": "2.5.1", "device": "cpu", "threads": 2, "results": [
                {"name": "a", "variant": "eager-f32", "ms": 1.5},
                {"name": "b", "skipped": "no PyTorch counterpart"}]}"#,
        )
        .unwrap();
        assert_eq!(run.results.len(), 2);
        assert_eq!(run.results[0].ms, Some(1.5));
        let e = parse_peer(b"Traceback (most recent call last)").unwrap_err();
        assert!(e.to_string().contains("Traceback"), "{e}");
    }
}
