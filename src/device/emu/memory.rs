//! The emulated device's memory: host allocations framed by guard zones. Fresh allocations are
//! poisoned (every byte 0xFF: NaN as f32 and f64), so a kernel that leaves part of its output
//! unwritten shows NaN in the parity tests; the guard zones are checked after every launch, so
//! a kernel that writes past either end of a buffer is reported by name.
//!
//! The memory comes from the C allocator (not Rust's global one), so an AddressSanitizer run of
//! the emulator (tools/emu-asan.sh) also sees every access beyond the guard zones.

use std::ffi::c_void;

/// Bytes of guard zone on each side of an allocation (a multiple of 16: the allocation itself
/// stays 16-byte aligned, as vector loads need). 4 KiB holds the overrun of a 1-D kernel that
/// lost its bounds guard (at most one block of 256 threads writing 8-byte values past the end);
/// a wilder write can reach the C heap's own bookkeeping, which tools/emu-asan.sh catches.
pub const GUARD: usize = 4096;

/// The byte poisoned memory holds.
pub const POISON: u8 = 0xFF;

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn free(p: *mut c_void);
}

// Under AddressSanitizer (tools/emu-asan.sh) the guard zones are poisoned, so that any access to
// them, a read as much as a write, is reported by ASan at the faulting instruction.
#[cfg(feature = "emu-asan")]
extern "C" {
    fn __asan_poison_memory_region(addr: *const c_void, size: usize);
    fn __asan_unpoison_memory_region(addr: *const c_void, size: usize);
}

/// Marks the two guard zones of the allocation at `base` off limits (or back on, before they
/// are read or freed) for AddressSanitizer; nothing without it.
#[allow(unused_variables)]
fn asan_guards(base: *mut u8, bytes: usize, poison: bool) {
    #[cfg(feature = "emu-asan")]
    // SAFETY: both zones lie inside the allocation at `base`.
    unsafe {
        let zones = [
            base as *const c_void,
            base.add(GUARD + bytes) as *const c_void,
        ];
        for z in zones {
            if poison {
                __asan_poison_memory_region(z, GUARD);
            } else {
                __asan_unpoison_memory_region(z, GUARD);
            }
        }
    }
}

/// The guard pattern's byte at position `i` of a zone (varied, so that no simple fill matches).
fn guard_byte(i: usize) -> u8 {
    (0xA5 ^ (i.wrapping_mul(0x3B) >> 1)) as u8
}

/// One emulated device allocation.
pub struct EmuAlloc {
    base: *mut u8,
    bytes: usize,
}

// SAFETY: the allocation is owned memory without thread affinity; access is synchronised by the
// borrow rules of the buffers that own it (launches borrow them for their duration).
unsafe impl Send for EmuAlloc {}
unsafe impl Sync for EmuAlloc {}

impl EmuAlloc {
    /// `bytes` of memory, every byte `fill`.
    pub fn new(bytes: usize, fill: u8) -> Result<EmuAlloc, String> {
        let total = bytes
            .checked_add(2 * GUARD)
            .ok_or_else(|| format!("an allocation of {bytes} bytes is too large"))?;
        // SAFETY: a plain C allocation, checked for failure, freed in Drop.
        let base = unsafe { malloc(total) } as *mut u8;
        if base.is_null() {
            return Err(format!(
                "the emulated device is out of memory ({bytes} bytes requested)"
            ));
        }
        let a = EmuAlloc { base, bytes };
        // SAFETY: the three ranges lie inside the `total` bytes just allocated.
        unsafe {
            for i in 0..GUARD {
                *base.add(i) = guard_byte(i);
                *base.add(GUARD + bytes + i) = guard_byte(i);
            }
            std::ptr::write_bytes(base.add(GUARD), fill, bytes);
        }
        asan_guards(base, bytes, true);
        Ok(a)
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The start of the usable memory (what kernels get as the pointer).
    pub fn ptr(&self) -> *mut u8 {
        // SAFETY: GUARD bytes into the allocation.
        unsafe { self.base.add(GUARD) }
    }

    /// The memory as bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `bytes` initialised bytes at `ptr`, borrowed with `self`.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.bytes) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.bytes) }
    }

    /// Fills the memory with `byte` (poisoning shared memory before a block).
    pub fn fill(&mut self, byte: u8) {
        self.as_mut_slice().fill(byte);
    }

    /// Describes damage to the guard zones: how many bytes before the start and after the end
    /// were overwritten, or None when both are intact.
    pub fn damage(&self) -> Option<String> {
        asan_guards(self.base, self.bytes, false);
        let damage = self.guard_damage();
        asan_guards(self.base, self.bytes, true);
        damage
    }

    fn guard_damage(&self) -> Option<String> {
        let zone = |start: *mut u8| -> Vec<usize> {
            (0..GUARD)
                // SAFETY: both zones lie inside the allocation.
                .filter(|&i| unsafe { *start.add(i) } != guard_byte(i))
                .collect()
        };
        let before = zone(self.base);
        // SAFETY: the zone after the usable bytes.
        let after = zone(unsafe { self.base.add(GUARD + self.bytes) });
        if before.is_empty() && after.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        if let Some(&first) = before.first() {
            parts.push(format!(
                "{} bytes before its start overwritten (as far as {} bytes before)",
                before.len(),
                GUARD - first
            ));
        }
        if let Some(&last) = after.last() {
            parts.push(format!(
                "{} bytes past its end overwritten (as far as byte {} past the end)",
                after.len(),
                last + 1
            ));
        }
        Some(parts.join(" and "))
    }
}

impl Drop for EmuAlloc {
    fn drop(&mut self) {
        asan_guards(self.base, self.bytes, false);
        // SAFETY: allocated by malloc in `new`, freed once.
        unsafe { free(self.base as *mut c_void) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(
        feature = "emu-asan",
        ignore = "writes into a guard zone, which ASan reports"
    )]
    fn fresh_memory_is_poisoned_and_guards_report_damage() {
        let mut a = EmuAlloc::new(10, POISON).unwrap();
        assert!(a.as_slice().iter().all(|&b| b == POISON));
        assert!(f32::from_le_bytes([POISON; 4]).is_nan());
        assert_eq!(a.damage(), None);
        assert_eq!(a.ptr() as usize % 16, 0);
        // SAFETY: deliberately writes the first byte past the end (inside the guard zone).
        unsafe { *a.ptr().add(10) = 0 };
        assert!(a.damage().unwrap().contains("past its end"));
        a.fill(3);
        assert_eq!(a.as_slice(), &[3; 10]);
        let empty = EmuAlloc::new(0, 0).unwrap();
        assert_eq!(empty.damage(), None);
    }
}
