//! Which registry kernels the emulator has executed, across processes: the file named by
//! `RLNET_EMU_COVERAGE` gets one kernel name per line, appended on a kernel's first execution in
//! each process, and tests/emu_coverage.rs checks it after the whole suite ran, so that CI fails
//! when a kernel is executed by no test.

use crate::device::kernels::{KernelId, KERNELS};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

fn flags() -> &'static [AtomicBool] {
    static FLAGS: OnceLock<Vec<AtomicBool>> = OnceLock::new();
    FLAGS.get_or_init(|| (0..KERNELS.len()).map(|_| AtomicBool::new(false)).collect())
}

/// Notes that `k` ran (to completion, without a fault).
pub fn record(k: KernelId) {
    if flags()[k.0].swap(true, Ordering::Relaxed) {
        return;
    }
    if let Some(path) = std::env::var_os("RLNET_EMU_COVERAGE") {
        // A line of a few bytes with O_APPEND: concurrent test processes do not interleave.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            let _ = f.write_all(format!("{}\n", k.name()).as_bytes());
        }
    }
}
