//! Recycled CPU storage for op outputs that the op overwrites in full.
//!
//! A CPU training step creates hundreds of activation and gradient tensors of the same few
//! sizes, each tens of MB. Allocating each one zeroed cost a serial `memset` on the thread that
//! runs the graph (the other cores idle meanwhile) or fresh pages for the kernel to zero: on
//! that thread, three quarters of the dual-BN op's time and half of the conv forward's in a
//! ResNet18 stage-1 step (`perf`, BENCHMARKS.md). Storage of a dropped tensor comes back here
//! and the next output of the same length takes it as it is.
//!
//! The contents of a taken buffer are whatever its last tensor held (valid floats, so this is
//! safe code), and its op must write every element. In debug builds, and whenever the
//! environment sets `RLNET_POISON_UNINIT=1` (CI's test run and the CLI tests do), every taken
//! buffer is filled with a poison NaN instead, and the ops check their outputs for it
//! (`Tensor::check_written`), so an op that leaves part of its output unwritten fails its
//! tests naming itself, as the emulator's poisoned GPU buffers do.

use std::sync::{Mutex, OnceLock};

/// The NaN that poisoned buffers hold: a payload arithmetic never creates (x86's NaNs from
/// invalid operations are 0xffc00000), so a diverged model's NaNs are not taken for unwritten
/// elements.
pub(super) const POISON_BITS: u32 = 0x7fc0_0bad;

/// Whether taken buffers are filled with the poison NaN (read once per process).
pub(super) fn poisoned() -> bool {
    static POISON: OnceLock<bool> = OnceLock::new();
    *POISON.get_or_init(|| {
        cfg!(debug_assertions)
            || std::env::var("RLNET_POISON_UNINIT").is_ok_and(|v| !v.is_empty() && v != "0")
    })
}

/// Buffers below this many elements (256 KiB) are left to the allocator: cheap to zero.
const MIN_LEN: usize = 1 << 16;

/// At most this many bytes are held idle; beyond it the oldest buffers are freed. More than a
/// ResNet18 stage-1 step at batch 128 frees between its uses of a size (the stage-1 bench
/// peaks at 1.5 GB resident without recycling).
const MAX_HELD_BYTES: usize = 2 << 30;

/// A buffer not taken again within this many takes is freed: sizes that stopped recurring (an
/// evaluation's batch between training epochs, another stage's model) do not pile up.
/// Measured: the ResNet18 stage-1 bench step is as fast as with 4096, and the smoke pipeline
/// peaks at 504 MB against 932 MB with 4096 (301 MB without recycling).
const MAX_IDLE_TAKES: u64 = 1024;

struct Pool {
    /// Idle buffers with the take count when each came back, oldest first.
    idle: Vec<(Vec<f32>, u64)>,
    held_bytes: usize,
    /// Large buffers taken so far: the pool's clock.
    takes: u64,
}

static POOL: Mutex<Pool> = Mutex::new(Pool::new());

fn bytes(v: &Vec<f32>) -> usize {
    v.capacity() * std::mem::size_of::<f32>()
}

impl Pool {
    const fn new() -> Pool {
        Pool {
            idle: Vec::new(),
            held_bytes: 0,
            takes: 0,
        }
    }

    /// The newest idle buffer of exactly `len` elements (the most likely to be in cache); the
    /// buffers idle for more than `MAX_IDLE_TAKES` takes are freed first.
    fn take(&mut self, len: usize) -> Option<Vec<f32>> {
        self.takes += 1;
        let now = self.takes;
        let mut freed = 0;
        self.idle.retain(|(v, since)| {
            let keep = now - since <= MAX_IDLE_TAKES;
            if !keep {
                freed += bytes(v);
            }
            keep
        });
        self.held_bytes -= freed;
        let i = self.idle.iter().rposition(|(v, _)| v.len() == len)?;
        let (v, _) = self.idle.remove(i);
        self.held_bytes -= bytes(&v);
        Some(v)
    }

    /// Keeps `v`, then frees the oldest buffers until at most `max_bytes` are held.
    fn give(&mut self, v: Vec<f32>, max_bytes: usize) {
        self.held_bytes += bytes(&v);
        self.idle.push((v, self.takes));
        while self.held_bytes > max_bytes {
            let (oldest, _) = self.idle.remove(0);
            self.held_bytes -= bytes(&oldest);
        }
    }
}

/// A buffer of `len` elements with unspecified contents (NaN when `poisoned`).
pub(super) fn take(len: usize) -> Vec<f32> {
    let poison = if poisoned() {
        f32::from_bits(POISON_BITS)
    } else {
        0.0
    };
    let reused = if len < MIN_LEN {
        None
    } else {
        POOL.lock().ok().and_then(|mut p| p.take(len))
    };
    match reused {
        Some(mut v) => {
            if poisoned() {
                v.fill(poison);
            }
            v
        }
        None => vec![poison; len],
    }
}

/// Takes back the storage of a dropped CPU tensor.
pub(super) fn give(v: Vec<f32>) {
    if v.len() >= MIN_LEN {
        if let Ok(mut p) = POOL.lock() {
            p.give(v, MAX_HELD_BYTES);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_taken_again_and_poisoned_when_asked() {
        // A length no other test uses, so parallel tests cannot take this buffer first.
        let len = MIN_LEN + 12_345;
        let v = vec![1.0f32; len];
        let ptr = v.as_ptr();
        give(v);
        let w = take(len);
        assert_eq!(w.len(), len);
        assert_eq!(w.as_ptr(), ptr, "the idle buffer is reused");
        if poisoned() {
            assert!(w.iter().all(|x| x.to_bits() == POISON_BITS), "poisoned");
        } else {
            assert!(w.iter().all(|&x| x == 1.0), "reused as it was");
        }
    }

    #[test]
    fn the_oldest_buffers_go_first_beyond_the_byte_bound() {
        let mut p = Pool::new();
        let bufs: Vec<Vec<f32>> = (1..=4).map(|i| vec![0.0f32; 100 * i]).collect();
        let ptrs: Vec<_> = bufs.iter().map(|v| v.as_ptr()).collect();
        let max = bytes(&bufs[2]) + bytes(&bufs[3]);
        for v in bufs {
            p.give(v, max);
        }
        assert!(p.held_bytes <= max);
        assert!(
            p.take(100).is_none() && p.take(200).is_none(),
            "the oldest were freed"
        );
        assert_eq!(p.take(300).map(|v| v.as_ptr()), Some(ptrs[2]));
        assert_eq!(p.take(400).map(|v| v.as_ptr()), Some(ptrs[3]));
        assert_eq!(p.held_bytes, 0);
    }

    #[test]
    fn a_buffer_idle_for_too_many_takes_is_freed() {
        let mut p = Pool::new();
        p.give(vec![0.0f32; 50], usize::MAX);
        p.give(vec![0.0f32; 60], usize::MAX);
        for _ in 1..MAX_IDLE_TAKES {
            assert!(p.take(70).is_none());
        }
        // The next take is the MAX_IDLE_TAKES-th since both came back: still kept.
        assert!(p.take(60).is_some(), "still within the bound");
        assert!(p.take(50).is_none(), "freed one take later");
        assert_eq!(p.held_bytes, 0);
    }
}
