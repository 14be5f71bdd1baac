//! Per-thread scratch buffers for the CPU references' temporary matrices (im2col columns, GEMM
//! results before they are regrouped, per-group partial sums).
//!
//! A training step runs the same convolutions hundreds of times; allocating their scratch
//! matrices afresh each time made the allocator zero them (`calloc`) or the kernel fault in
//! fresh pages, about a tenth of a CPU step. A buffer taken here keeps its memory for the next
//! call on the same thread, and is not cleared: its contents are whatever the last user left,
//! so every caller writes each element before it reads it (the GEMMs here overwrite their
//! destination, im2col writes zeros where the window leaves the image).

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

/// How many idle buffers a thread keeps per float type: a convolution holds at most three at
/// once (columns, GEMM result, regrouped dy).
const KEPT: usize = 4;

/// A float type with its own per-thread pool of idle buffers.
pub trait Pooled: Copy + Default + 'static {
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>>;
}

thread_local! {
    static F32_POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static F64_POOL: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

impl Pooled for f32 {
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<f32>>>> {
        &F32_POOL
    }
}

impl Pooled for f64 {
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<f64>>>> {
        &F64_POOL
    }
}

/// A buffer of `len` elements with unspecified contents, given back to the thread's pool when
/// dropped. The pooled vector keeps its full length between uses, so a buffer once grown is
/// never written again by `take` (a truncated vector would be re-filled on each longer reuse).
pub struct Scratch<T: Pooled> {
    buf: Vec<T>,
    len: usize,
}

impl<T: Pooled> Scratch<T> {
    /// Takes the smallest idle buffer that holds `len` elements (else replaces the largest
    /// with a fresh one), so a small request does not hold on to the biggest matrix.
    pub fn take(len: usize) -> Self {
        let mut buf = T::pool()
            .with(|p| {
                let mut p = p.borrow_mut();
                let fits = (0..p.len())
                    .filter(|&i| p[i].len() >= len)
                    .min_by_key(|&i| p[i].len());
                let pick = fits.or_else(|| (0..p.len()).max_by_key(|&i| p[i].len()));
                pick.map(|i| p.swap_remove(i))
            })
            .unwrap_or_default();
        if buf.len() < len {
            // A fresh vector rather than a grown one: growing would copy the old contents.
            buf = vec![T::default(); len];
        }
        Scratch { buf, len }
    }
}

impl<T: Pooled> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[..self.len]
    }
}

impl<T: Pooled> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[..self.len]
    }
}

impl<T: Pooled> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // `try_with`: a buffer dropped while its thread is being torn down is simply freed.
        let _ = T::pool().try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                p.push(buf);
                if p.len() > KEPT {
                    // Keep the largest ones: they are the expensive ones to fault in again.
                    let smallest = (0..p.len()).min_by_key(|&i| p[i].len());
                    if let Some(i) = smallest {
                        p.swap_remove(i);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_with_its_old_contents_and_the_requested_length() {
        let ptr = {
            let mut a = Scratch::<f32>::take(1000);
            a.fill(7.0);
            a.as_ptr()
        };
        let b = Scratch::<f32>::take(500);
        assert_eq!(b.len(), 500);
        assert_eq!(b.as_ptr(), ptr, "the idle buffer is taken again");
        assert!(b.iter().all(|&v| v == 7.0), "and it is not cleared");
    }

    #[test]
    fn buffers_held_at_once_are_distinct_and_the_pool_stays_bounded() {
        let held: Vec<Scratch<f64>> = (1..=KEPT + 3).map(|i| Scratch::take(i * 10)).collect();
        let mut ptrs: Vec<_> = held.iter().map(|s| s.as_ptr()).collect();
        ptrs.sort();
        ptrs.dedup();
        assert_eq!(ptrs.len(), KEPT + 3);
        drop(held);
        let kept = f64::pool().with(|p| p.borrow().iter().map(|v| v.len()).collect::<Vec<_>>());
        assert_eq!(kept.len(), KEPT);
        assert!(
            kept.iter().all(|&c| c >= 40),
            "the largest are kept: {kept:?}"
        );
    }

    #[test]
    fn a_short_use_does_not_make_the_next_long_one_rewrite_the_buffer() {
        let ptr = {
            let mut a = Scratch::<f32>::take(4000);
            a.fill(3.0);
            a.as_ptr()
        };
        drop(Scratch::<f32>::take(10));
        let b = Scratch::<f32>::take(4000);
        assert_eq!(b.as_ptr(), ptr);
        assert!(
            b.iter().all(|&v| v == 3.0),
            "the long buffer was written again"
        );
    }
}
