//! Training survives SIGKILL at any moment: a stage is killed again and again at random times
//! (during steps, checkpoint writes and the final evaluation alike), resumed each time, and ends
//! with the weights of an uninterrupted run, bit for bit; after every kill the checkpoint is
//! either absent (nothing written yet) or readable.

use rlnet::checkpoint;
use rlnet::rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    std::env::var_os("RLNET_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_rlnet").into())
        .into()
}

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("rlnet-kill-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&p).ok();
    p
}

/// Every tensor of a checkpoint, by name, as raw bits.
fn tensors(path: &Path) -> Vec<(String, Vec<u32>)> {
    let c = checkpoint::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out: Vec<(String, Vec<u32>)> = c
        .model()
        .unwrap()
        .store
        .entries()
        .iter()
        .map(|e| {
            let bits = e.tensor.data().iter().map(|v| v.to_bits()).collect();
            (e.name.clone(), bits)
        })
        .collect();
    out.sort();
    out
}

/// Runs `args` (with `--out dir`) to its end, uninterrupted; returns how long it took.
fn run_whole(args: &[&str], dir: &Path) -> Duration {
    let t0 = Instant::now();
    let o = Command::new(bin())
        .args(args)
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    t0.elapsed()
}

/// Runs `args` into `dir` with `--resume`, killing each attempt after a random delay below
/// `span` until one finishes; returns the number of kills. After each kill the checkpoint
/// `ckpt` (if written yet) must load.
fn run_killed(args: &[&str], dir: &Path, ckpt: &str, span: Duration, seed: u64) -> usize {
    let mut kills = 0;
    for attempt in 0..200u64 {
        let mut child = Command::new(bin())
            .args(args)
            .arg("--out")
            .arg(dir)
            .arg("--resume")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Attempts die within a third of a whole run at first, later ones live longer, so the
        // run always gets through.
        let reach = (1.0 + attempt as f64 / 16.0).min(3.0) / 3.0;
        let u = rng::uniform_f64(seed, 77, attempt);
        let deadline = Instant::now() + span.mul_f64(u * reach);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).ok();
                assert!(status.success(), "attempt {attempt} failed: {err}");
                return kills;
            }
            if Instant::now() >= deadline {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                let path = dir.join(ckpt);
                if path.exists() {
                    checkpoint::load(&path).unwrap_or_else(|e| {
                        panic!("after kill {kills} the checkpoint does not load: {e}")
                    });
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    panic!("the run never finished in 200 attempts");
}

#[test]
fn killed_and_resumed_stages_end_with_the_uninterrupted_weights() {
    let common = [
        "--preset",
        "smoke",
        "--train-limit",
        "96",
        "--test-limit",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--checkpoint-every",
        "1",
        "--eval-pgd-steps",
        "1",
        "--quiet",
        "--device",
        "cpu",
    ];
    let teacher_args: Vec<&str> = ["teacher"].iter().chain(&common).copied().collect();
    let (whole, killed) = (tmp("teacher-whole"), tmp("teacher-killed"));
    let span = run_whole(&teacher_args, &whole);
    let kills = run_killed(&teacher_args, &killed, "teacher.safetensors", span, 1);
    println!("teacher: {kills} kills within {span:?} runs");
    assert!(
        kills >= 3,
        "only {kills} kills: the test did not interrupt the run"
    );
    let name = "teacher.safetensors";
    assert_eq!(
        tensors(&whole.join(name)),
        tensors(&killed.join(name)),
        "the killed teacher ends where the uninterrupted one does"
    );

    // Stage 2 carries more state across a kill: the mask scores of a mid-epoch checkpoint.
    let teacher = whole.join(name);
    let t = teacher.to_str().unwrap();
    let search_args: Vec<&str> = ["search", "--teacher", t, "--budget", "1500"]
        .iter()
        .chain(&common)
        .copied()
        .collect();
    let (whole_s, killed_s) = (tmp("search-whole"), tmp("search-killed"));
    let span = run_whole(&search_args, &whole_s);
    let kills = run_killed(&search_args, &killed_s, "search.safetensors", span, 2);
    println!("search: {kills} kills within {span:?} runs");
    assert!(
        kills >= 3,
        "only {kills} kills: the test did not interrupt the run"
    );
    for f in ["search.safetensors", "search_best.safetensors"] {
        assert_eq!(
            tensors(&whole_s.join(f)),
            tensors(&killed_s.join(f)),
            "{f}: the killed search ends where the uninterrupted one does"
        );
    }
    for d in [whole, killed, whole_s, killed_s] {
        std::fs::remove_dir_all(d).ok();
    }
}
