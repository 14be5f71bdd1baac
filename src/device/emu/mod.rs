//! The CUDA emulator: the second backend of the CUDA device (`--device cuda-emu`, and the GPU
//! tests on machines without a GPU). It runs the very kernels of kernels/*.cu, compiled as C++
//! by build.rs with kernels/emu/rlemu.h, on the CPU:
//!
//! - memory (memory.rs): host allocations, poisoned when fresh and framed by guard zones that
//!   are checked after every launch;
//! - a launch runs the grid's blocks one after another (all blocks, or a sample where a test
//!   asks for it), each block's threads as fibers (block.rs) scheduled in a chosen order
//!   (`Schedule`), its static shared memory poisoned before each block;
//! - warp collectives, mma.sync and ldmatrix are executed when every lane has arrived (ptx.rs
//!   for the tensor-core math and the fragment layouts); cp.async copies land when the issuing
//!   thread waits for their group (rlemu.h);
//! - every fault (a broken barrier, a bad mask, a deadlock, a write outside an allocation, a
//!   misaligned or non-shared address given to ldmatrix or cp.async) is an error naming the
//!   kernel, the block and the source lines.
//!
//! What it cannot check: timing and occupancy, the real warp scheduler (fibers only switch at
//! barriers and warp collectives, so a race shows only where a schedule exposes it), reads past
//! an allocation (only writes are caught by the guards; tools/emu-asan.sh catches reads),
//! libdevice's last bits (host libm instead), and the hardware's exact FMA contraction.
//!
//! Only one block of a kernel file runs at a time in the process (its shared memory is a set of
//! statics), so launches of one file are serialised; launches of different files run in
//! parallel.

mod block;
mod coverage;
mod ffi;
mod memory;
pub mod mutants;
mod ptx;
pub mod selftest;

pub use block::Schedule;
pub(crate) use memory::{EmuAlloc, POISON};

use super::kernels::{KernelId, KernelSig, FILES};
use block::{run_block, BlockLaunch};
use ffi::{shared_section, Dim3, EntryFn, SharedFn, FILE_SHARED, KERNEL_ENTRIES, MUTANT_UNITS};
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

/// How the emulator runs kernels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmuConfig {
    /// The order of threads (and blocks).
    pub schedule: Schedule,
    /// Run at most this many blocks of each grid (evenly spaced, the first and last included),
    /// leaving the other blocks' outputs unwritten: only for tests that ask for it.
    pub sample_blocks: Option<usize>,
    /// Run the kernels of one file from this planted-bug copy (src/device/emu/mutants.rs).
    pub mutant: Option<&'static str>,
}

impl Default for EmuConfig {
    fn default() -> EmuConfig {
        EmuConfig {
            schedule: Schedule::Forward,
            sample_blocks: None,
            mutant: None,
        }
    }
}

impl EmuConfig {
    /// The default configuration with the schedule of `RLNET_EMU_SCHEDULE`
    /// (`forward`, `reverse`, `shuffle[:SEED]`) when set.
    pub fn from_env() -> Result<EmuConfig, String> {
        let mut c = EmuConfig::default();
        if let Ok(s) = std::env::var("RLNET_EMU_SCHEDULE") {
            c.schedule = Schedule::parse(&s).ok_or_else(|| {
                format!(
                    "RLNET_EMU_SCHEDULE={s}: expected forward, reverse, shuffle or shuffle:SEED"
                )
            })?;
        }
        Ok(c)
    }

    /// Checks the configuration (the mutant must exist).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(m) = self.mutant {
            if !MUTANT_UNITS.iter().any(|u| u.name == m) {
                return Err(format!("no planted-bug kernel copy named {m}"));
            }
        }
        Ok(())
    }
}

/// One argument of an emulated launch: its value as the kernel reads it (a host address for a
/// pointer, the bits of a scalar in the low bytes) and, for a buffer, the allocation whose
/// guard zones are checked after the launch.
pub struct EmuArg<'a> {
    pub value: u64,
    pub buffer: Option<&'a EmuAlloc>,
}

/// The emulated device.
#[derive(Debug)]
pub struct Emulator {
    config: EmuConfig,
}

/// What runs: a kernel's trampoline and the translation unit it belongs to.
struct Target<'a> {
    name: &'a str,
    entry: EntryFn,
    unit: usize,
    shared: SharedFn,
}

/// Units: the kernel files, then the mutants, then the self-test file.
fn unit_locks() -> &'static [Mutex<()>] {
    static LOCKS: OnceLock<Vec<Mutex<()>>> = OnceLock::new();
    LOCKS.get_or_init(|| {
        (0..FILES.len() + MUTANT_UNITS.len() + 1)
            .map(|_| Mutex::new(()))
            .collect()
    })
}

/// The H200's shared memory per block with the opt-in attribute (sm_90: 227 KiB), which the
/// emulated device reports.
pub const MAX_SHARED_PER_BLOCK: usize = 232_448;

impl Emulator {
    pub fn new(config: EmuConfig) -> Result<Emulator, String> {
        config.validate()?;
        Ok(Emulator { config })
    }

    pub fn config(&self) -> &EmuConfig {
        &self.config
    }

    /// Static shared memory of kernel `k` as the emulator can bound it: its file's whole
    /// shared-memory section (every kernel of the file together).
    pub fn static_shared_bytes(&self, k: KernelId) -> usize {
        shared_section(self.target(k).shared).1
    }

    fn target(&self, k: KernelId) -> Target<'static> {
        let sig = k.sig();
        if let Some(m) = self.config.mutant {
            let (i, unit) = MUTANT_UNITS
                .iter()
                .enumerate()
                .find(|(_, u)| u.name == m)
                .expect("validated");
            if unit.file == FILES[sig.file].name {
                let pos = FILES[sig.file]
                    .kernels
                    .iter()
                    .position(|&x| x == k)
                    .expect("a kernel of its file");
                return Target {
                    name: sig.name,
                    entry: unit.kernels[pos],
                    unit: FILES.len() + i,
                    shared: unit.shared,
                };
            }
        }
        Target {
            name: sig.name,
            entry: KERNEL_ENTRIES[k.0],
            unit: sig.file,
            shared: FILE_SHARED[sig.file],
        }
    }

    /// Runs registry kernel `k` over `grid` blocks of `block` threads with `shared_bytes` of
    /// dynamic shared memory. The caller has checked the arguments against the signature.
    pub fn launch(
        &self,
        k: KernelId,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: usize,
        args: &[EmuArg<'_>],
    ) -> Result<(), String> {
        let target = self.target(k);
        self.run(&target, k.sig(), grid, block, shared_bytes, args)?;
        if self.config.mutant.is_none() {
            coverage::record(k);
        }
        Ok(())
    }

    fn run(
        &self,
        t: &Target<'_>,
        sig: &KernelSig,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: usize,
        args: &[EmuArg<'_>],
    ) -> Result<(), String> {
        debug_assert_eq!(args.len(), sig.params.len());
        let (grid, block) = (Dim3::new(grid), Dim3::new(block));
        let _unit = unit_locks()[t.unit]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (section, section_len) = shared_section(t.shared);
        let mut dynamic = EmuAlloc::new(shared_bytes, POISON)?;
        let mut values: Vec<u64> = args.iter().map(|a| a.value).collect();
        let ptrs: Vec<*mut c_void> = values
            .iter_mut()
            .map(|v| v as *mut u64 as *mut c_void)
            .collect();
        let blocks = grid.count();
        let order = self.config.schedule.order(blocks, u64::MAX, 0);
        let chosen: Vec<usize> = match self.config.sample_blocks {
            Some(m) if m < blocks => {
                let m = m.max(2);
                let mut s: Vec<usize> = (0..m).map(|i| i * (blocks - 1) / (m - 1)).collect();
                s.dedup();
                s
            }
            _ => order,
        };
        for b in chosen {
            // SAFETY: the section is the unit's own shared memory, which no other block uses
            // while this one holds the unit's lock.
            unsafe { std::ptr::write_bytes(section, POISON, section_len) };
            dynamic.fill(POISON);
            run_block(&BlockLaunch {
                kernel: t.name,
                entry: t.entry,
                args: ptrs.as_ptr(),
                block_idx: grid.unflatten(b),
                block_dim: block,
                grid_dim: grid,
                dynamic_shared: if shared_bytes > 0 {
                    dynamic.ptr()
                } else {
                    std::ptr::null_mut()
                },
                dynamic_shared_bytes: shared_bytes,
                schedule: self.config.schedule,
                linear: b as u64,
            })?;
            if let Some(d) = dynamic.damage() {
                return Err(format!(
                    "block {b} of {} wrote outside its {shared_bytes} bytes of dynamic shared \
                     memory: {d}",
                    t.name
                ));
            }
        }
        for (i, a) in args.iter().enumerate() {
            if let Some(d) = a.buffer.and_then(|b| b.damage()) {
                let p = &sig.params[i];
                return Err(format!(
                    "{} wrote outside the buffer passed as parameter {i} `{}` ({}, {} bytes): {d}",
                    t.name,
                    p.name,
                    p.ty.c_type(),
                    a.buffer.map_or(0, |b| b.bytes())
                ));
            }
        }
        Ok(())
    }
}
