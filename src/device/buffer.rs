//! GPU memory: `DeviceBuffer<T>`, a typed buffer that lives either in driver memory (a cudarc
//! allocation on the device's stream) or in the CUDA emulator's memory. Everything above
//! src/device/ holds GPU data only through this type, so cudarc stays inside this folder.

use super::kernels::Elem;
use crate::error::{Error, Result};
use cudarc::driver::{CudaSlice, DevicePtr, DeviceRepr, ValidAsZeroBits};

#[cfg(feature = "emu")]
use super::emu::EmuAlloc;

/// An element type kernels take (`Elem` names it in kernel signatures).
pub trait DeviceElem:
    DeviceRepr + ValidAsZeroBits + Copy + Default + std::fmt::Debug + Send + Sync + Unpin + 'static
{
    const ELEM: Elem;
}

macro_rules! device_elems {
    ($($t:ty => $e:ident),*) => {
        $(impl DeviceElem for $t {
            const ELEM: Elem = Elem::$e;
        })*
    };
}
device_elems!(f32 => F32, f64 => F64, u8 => U8, u32 => U32, i32 => I32, u64 => U64, i64 => I64);

pub(crate) fn driver_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::NoGpu {
        reason: format!("{what}: {e}"),
    }
}

/// Where a buffer's memory is.
pub(crate) enum Store<T: DeviceElem> {
    Driver(CudaSlice<T>),
    #[cfg(feature = "emu")]
    Emu {
        alloc: EmuAlloc,
        len: usize,
    },
}

/// `len` values of `T` in GPU memory (driver or emulator).
pub struct DeviceBuffer<T: DeviceElem> {
    pub(crate) store: Store<T>,
}

impl<T: DeviceElem> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self.store {
            Store::Driver(_) => "GPU",
            #[cfg(feature = "emu")]
            Store::Emu { .. } => "emulator",
        };
        write!(
            f,
            "DeviceBuffer<{:?}>({} values, {place})",
            T::ELEM,
            self.len()
        )
    }
}

/// A buffer's address as a kernel argument: a device pointer, or a host pointer into the
/// emulator's memory together with its allocation (whose guard zones the emulator checks).
pub(crate) enum Address<'a> {
    Driver(u64),
    #[cfg(feature = "emu")]
    Emu(&'a EmuAlloc),
    #[cfg(not(feature = "emu"))]
    #[allow(dead_code)]
    Never(std::marker::PhantomData<&'a ()>),
}

impl<T: DeviceElem> DeviceBuffer<T> {
    pub(crate) fn driver(s: CudaSlice<T>) -> Self {
        DeviceBuffer {
            store: Store::Driver(s),
        }
    }

    #[cfg(feature = "emu")]
    pub(crate) fn emu(values: usize, fill: u8) -> Result<Self> {
        let bytes = values
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| Error::shape("device allocation", "fewer than 2^64 bytes", values))?;
        let alloc = EmuAlloc::new(bytes, fill).map_err(|e| driver_err("emulator allocation", e))?;
        Ok(DeviceBuffer {
            store: Store::Emu { alloc, len: values },
        })
    }

    pub fn len(&self) -> usize {
        match &self.store {
            Store::Driver(s) => s.len(),
            #[cfg(feature = "emu")]
            Store::Emu { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values, copied to the host (waits for the device).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        match &self.store {
            Store::Driver(s) => s
                .stream()
                .clone_dtoh(s)
                .map_err(|e| driver_err("download", e)),
            #[cfg(feature = "emu")]
            Store::Emu { alloc, len } => Ok(read_values(alloc, *len)),
        }
    }

    /// Overwrites the values with `data` (the lengths must agree).
    pub fn copy_from(&mut self, data: &[T]) -> Result<()> {
        if data.len() != self.len() {
            return Err(Error::shape(
                "upload into a device buffer",
                format!("{} values", self.len()),
                data.len(),
            ));
        }
        match &mut self.store {
            Store::Driver(s) => {
                let stream = s.stream().clone();
                stream
                    .memcpy_htod(data, s)
                    .map_err(|e| driver_err("upload", e))
            }
            #[cfg(feature = "emu")]
            Store::Emu { alloc, .. } => {
                write_values(alloc, data);
                Ok(())
            }
        }
    }

    /// A new buffer holding `range` of this one, on the same device.
    pub fn copy_range(&self, range: std::ops::Range<usize>) -> Result<Self> {
        if range.start > range.end || range.end > self.len() {
            return Err(Error::shape(
                "device copy",
                format!("a range within {} values", self.len()),
                format!("{range:?}"),
            ));
        }
        match &self.store {
            Store::Driver(s) => s
                .stream()
                .clone_dtod(&s.slice(range))
                .map(DeviceBuffer::driver)
                .map_err(|e| driver_err("device copy", e)),
            #[cfg(feature = "emu")]
            Store::Emu { alloc, len } => {
                let all = read_values::<T>(alloc, *len);
                let mut out = DeviceBuffer::emu(range.len(), 0)?;
                if let Store::Emu { alloc, .. } = &mut out.store {
                    write_values(alloc, &all[range]);
                }
                Ok(out)
            }
        }
    }

    /// A copy on the same device.
    pub fn try_clone(&self) -> Result<Self> {
        self.copy_range(0..self.len())
    }

    /// The address a kernel gets for this buffer.
    pub(crate) fn address(&self) -> Address<'_> {
        match &self.store {
            Store::Driver(s) => {
                // Event tracking is off (one stream), so the guard returned here does nothing.
                let (ptr, _sync) = s.device_ptr(s.stream());
                Address::Driver(ptr)
            }
            #[cfg(feature = "emu")]
            Store::Emu { alloc, .. } => Address::Emu(alloc),
        }
    }
}

/// The first `len` values of an emulator allocation.
#[cfg(feature = "emu")]
fn read_values<T: DeviceElem>(alloc: &EmuAlloc, len: usize) -> Vec<T> {
    let mut v = vec![T::default(); len];
    // SAFETY: the allocation holds `len` values of T (its size was computed from them), every
    // bit pattern is a valid T (ValidAsZeroBits types are plain numbers), and the vector has
    // room for exactly those bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            alloc.ptr() as *const T,
            v.as_mut_ptr(),
            len.min(alloc.bytes() / std::mem::size_of::<T>().max(1)),
        )
    };
    v
}

#[cfg(feature = "emu")]
fn write_values<T: DeviceElem>(alloc: &mut EmuAlloc, data: &[T]) {
    let n = data
        .len()
        .min(alloc.bytes() / std::mem::size_of::<T>().max(1));
    // SAFETY: copies at most the allocation's size from a live slice.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), alloc.ptr() as *mut T, n) };
}

/// A device copy (as cudarc's `CudaSlice` clones). A failed copy is a device fault, so it
/// panics with the driver's message; use `try_clone` to handle it.
impl<T: DeviceElem> Clone for DeviceBuffer<T> {
    fn clone(&self) -> Self {
        self.try_clone()
            .unwrap_or_else(|e| panic!("GPU failure copying a buffer: {e}"))
    }
}
