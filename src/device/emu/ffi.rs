//! The C ABI shared with kernels/emu/rlemu.h: the per-thread context, the switch-point op, and
//! the trampolines build.rs generates for every kernel (and every planted-bug copy).

use crate::device::kernels::{Elem, KernelSig, Param, ParamType};
use std::ffi::{c_char, c_void, CStr};

/// `uint3` / `dim3`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dim3 {
    pub x: u32,
    pub y: u32,
    pub z: u32,
}

impl Dim3 {
    pub fn new((x, y, z): (u32, u32, u32)) -> Dim3 {
        Dim3 { x, y, z }
    }

    pub fn count(self) -> usize {
        self.x as usize * self.y as usize * self.z as usize
    }

    /// The index of linear position `i` (x fastest), as CUDA numbers threads and blocks.
    pub fn unflatten(self, i: usize) -> Dim3 {
        let (x, y) = (self.x as usize, self.y as usize);
        Dim3 {
            x: (i % x) as u32,
            y: (i / x % y) as u32,
            z: (i / (x * y)) as u32,
        }
    }
}

/// `rlemu_thread`: what a fiber's kernel code sees as blockIdx, threadIdx, ...
#[repr(C)]
pub struct RlemuThread {
    pub thread_idx: Dim3,
    pub block_idx: Dim3,
    pub block_dim: Dim3,
    pub grid_dim: Dim3,
    pub dynamic_shared: *mut u8,
    pub dynamic_shared_bytes: u64,
    /// The fiber's yielder (`*const Yielder<(), *mut RlemuOp>`), set when the fiber starts.
    pub fiber: *mut c_void,
    /// The thread's pending cp.async copies (owned by the C++ side; `rlemu_release_thread`).
    pub async_copies: *mut c_void,
}

extern "C" {
    /// Frees what a finished or discarded thread still holds (kernels/emu/rlemu.cpp).
    pub fn rlemu_release_thread(t: *mut RlemuThread);
}

/// `rlemu_op_kind`.
pub mod kind {
    pub const BARRIER: i32 = 1;
    pub const SYNCWARP: i32 = 2;
    pub const SHFL_IDX: i32 = 3;
    pub const SHFL_UP: i32 = 4;
    pub const SHFL_DOWN: i32 = 5;
    pub const SHFL_XOR: i32 = 6;
    pub const VOTE_BALLOT: i32 = 7;
    pub const VOTE_ANY: i32 = 8;
    pub const VOTE_ALL: i32 = 9;
    pub const MMA_M16N8K8_TF32: i32 = 10;
    pub const MMA_M16N8K16_BF16: i32 = 11;
    pub const LDMATRIX: i32 = 12;
    pub const FAULT: i32 = 13;
}

/// `rlemu_op`: one switch point of one thread.
#[repr(C)]
pub struct RlemuOp {
    pub kind: i32,
    pub line: i32,
    pub file: *const c_char,
    pub mask: u32,
    pub lane: i32,
    pub width: i32,
    pub bytes: i32,
    pub value: u64,
    pub result: u64,
    pub a: [u32; 4],
    pub b: [u32; 2],
    pub c: [f32; 4],
    pub d: [f32; 4],
    pub r: [u32; 4],
}

impl RlemuOp {
    /// The CUDA name of the operation.
    pub fn name(&self) -> &'static str {
        match self.kind {
            kind::BARRIER => "__syncthreads",
            kind::SYNCWARP => "__syncwarp",
            kind::SHFL_IDX => "__shfl_sync",
            kind::SHFL_UP => "__shfl_up_sync",
            kind::SHFL_DOWN => "__shfl_down_sync",
            kind::SHFL_XOR => "__shfl_xor_sync",
            kind::VOTE_BALLOT => "__ballot_sync",
            kind::VOTE_ANY => "__any_sync",
            kind::VOTE_ALL => "__all_sync",
            kind::MMA_M16N8K8_TF32 => "mma.sync.m16n8k8 (tf32)",
            kind::MMA_M16N8K16_BF16 => "mma.sync.m16n8k16 (bf16)",
            kind::LDMATRIX => "ldmatrix",
            _ => "an unknown switch point",
        }
    }

    /// `file:line` of the call.
    pub fn site(&self) -> String {
        let file = if self.file.is_null() {
            "?".into()
        } else {
            // SAFETY: `file` is a `__FILE__` literal of the kernel library: static and
            // NUL-terminated.
            unsafe { CStr::from_ptr(self.file) }.to_string_lossy()
        };
        format!("{file}:{}", self.line)
    }

    pub fn is_barrier(&self) -> bool {
        self.kind == kind::BARRIER
    }

    /// The message of a fault (`rlemu::fault`): a string literal of the kernel library.
    pub fn fault_message(&self) -> Option<String> {
        (self.kind == kind::FAULT && self.value != 0).then(|| {
            // SAFETY: a fault's value is the address of a NUL-terminated literal in rlemu.h.
            unsafe { CStr::from_ptr(self.value as *const c_char) }
                .to_string_lossy()
                .into_owned()
        })
    }

    /// The same collective: kind and mask, and for shuffles, votes and mma the same call in the
    /// source (CUDA: the lanes a mask names "must execute the same intrinsic with the same
    /// mask"); `__syncwarp` calls at different places correspond, as on sm_70 and later.
    pub fn same_collective(&self, other: &RlemuOp) -> bool {
        self.kind == other.kind
            && self.mask == other.mask
            && (self.kind == kind::SYNCWARP || (self.line == other.line && self.file == other.file))
    }
}

/// A generated trampoline: starts one thread of one kernel with the launch's arguments.
pub type EntryFn = unsafe extern "C" fn(*mut RlemuThread, *const *mut c_void);

/// A generated accessor of one translation unit's shared-memory section bounds.
pub type SharedFn = unsafe extern "C" fn(*mut *mut u8, *mut *mut u8);

/// A planted-bug copy of one kernel file (src/device/emu/mutants.rs).
pub struct MutantUnit {
    pub name: &'static str,
    pub file: &'static str,
    pub shared: SharedFn,
    /// The trampolines of the file's kernels, in file order.
    pub kernels: &'static [EntryFn],
}

/// One of the emulator's self-test kernels (src/device/emu/selftest.cu).
pub struct SelftestKernel {
    pub sig: KernelSig,
    pub entry: EntryFn,
}

include!(concat!(env!("OUT_DIR"), "/emu_entries.rs"));

/// The `[begin, end)` of a unit's shared-memory section (empty when it declares none).
pub fn shared_section(f: SharedFn) -> (*mut u8, usize) {
    let (mut begin, mut end) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: the accessor writes two pointers into the two locals.
    unsafe { f(&mut begin, &mut end) };
    if begin.is_null() || end.is_null() {
        return (std::ptr::null_mut(), 0);
    }
    (begin, end as usize - begin as usize)
}
