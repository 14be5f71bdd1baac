//! One thread block on the CPU: every CUDA thread is a fiber (a stackful coroutine) that runs
//! until its next switch point (kernels/emu/rlemu.h: `__syncthreads`, a warp collective, the end
//! of the kernel). The scheduler resumes the runnable fibers pass by pass in the chosen order and
//! resolves the switch points:
//!
//! - a warp collective as soon as every lane its mask names has arrived at the same collective
//!   (same operation, same source line, same mask): shuffles, votes, `__syncwarp`, mma.sync;
//! - `__syncthreads` once no fiber can run and every thread of the block waits there, from one
//!   place in the source.
//!
//! Everything that real hardware would leave undefined is an error naming the source lines: a
//! barrier reached by part of the block or from different places, a lane whose mask does not
//! name it, lanes of one collective with different masks or sites, a lane named in a mask that
//! exited or does not exist, a shuffle reading a lane the mask leaves out, and any other
//! deadlock.

use super::ffi::{kind, rlemu_release_thread, Dim3, EntryFn, RlemuOp, RlemuThread};
use super::ptx;
use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use std::cell::RefCell;
use std::ffi::c_void;

/// Bytes of stack per emulated thread. The kernels' deepest frame (with the emulator's
/// wrappers) uses a few KiB; only touched pages are ever backed by memory.
const STACK_BYTES: usize = 256 * 1024;

/// The order in which the runnable fibers of a block are resumed, pass after pass (and the
/// order of the blocks of a grid). A kernel whose result depends on it has a race: a missing
/// barrier shows as a difference between schedules (or as a read of poisoned shared memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Thread 0 first (blocks in order).
    Forward,
    /// The last thread first (blocks in reverse order).
    Reverse,
    /// A fresh permutation of the threads in every pass (and of the blocks), from this seed.
    Shuffled(u64),
}

impl Schedule {
    /// Reads `forward`, `reverse` or `shuffle[:SEED]`.
    pub fn parse(s: &str) -> Option<Schedule> {
        match s {
            "forward" => Some(Schedule::Forward),
            "reverse" => Some(Schedule::Reverse),
            "shuffle" => Some(Schedule::Shuffled(0)),
            _ => s
                .strip_prefix("shuffle:")
                .and_then(|v| v.parse().ok())
                .map(Schedule::Shuffled),
        }
    }

    /// The order of `n` items in round `round` of stream `stream` (block index or pass).
    pub fn order(self, n: usize, stream: u64, round: u64) -> Vec<usize> {
        let mut v = Vec::with_capacity(n);
        self.order_into(&mut v, n, stream, round);
        v
    }

    /// `order` into a reused vector. Forward and reverse orders are the same in every round,
    /// so they are only rebuilt when `n` changes.
    pub fn order_into(self, v: &mut Vec<usize>, n: usize, stream: u64, round: u64) {
        if v.len() == n && round > 0 && !matches!(self, Schedule::Shuffled(_)) {
            return;
        }
        v.clear();
        v.extend(0..n);
        match self {
            Schedule::Forward => {}
            Schedule::Reverse => v.reverse(),
            Schedule::Shuffled(seed) => {
                let mut state =
                    seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ round.rotate_left(32);
                for i in (1..n).rev() {
                    let j = (splitmix(&mut state) % (i as u64 + 1)) as usize;
                    v.swap(i, j);
                }
            }
        }
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

type Fiber = Coroutine<(), *mut RlemuOp, (), DefaultStack>;

thread_local! {
    /// Fiber stacks reused from block to block on this OS thread.
    static STACKS: RefCell<Vec<DefaultStack>> = const { RefCell::new(Vec::new()) };
}

fn take_stack() -> Result<DefaultStack, String> {
    match STACKS.with(|s| s.borrow_mut().pop()) {
        Some(s) => Ok(s),
        None => DefaultStack::new(STACK_BYTES)
            .map_err(|e| format!("cannot map an emulated thread's stack: {e}")),
    }
}

/// The switch point at which the scheduler (this file) takes over from a fiber: called by the
/// C++ side (rlemu::sync) on the fiber's own stack.
///
/// # Safety
/// `t` is the context the fiber was started with and `op` lives on the fiber's stack until
/// the call returns; both are guaranteed by rlemu.h.
#[no_mangle]
pub unsafe extern "C" fn rlemu_sync(t: *mut RlemuThread, op: *mut RlemuOp) {
    let yielder = (*t).fiber as *const Yielder<(), *mut RlemuOp>;
    (*yielder).suspend(op);
}

/// What a block needs to run.
pub struct BlockLaunch<'a> {
    pub kernel: &'a str,
    pub entry: EntryFn,
    pub args: *const *mut c_void,
    pub block_idx: Dim3,
    pub block_dim: Dim3,
    pub grid_dim: Dim3,
    pub dynamic_shared: *mut u8,
    pub dynamic_shared_bytes: usize,
    pub schedule: Schedule,
    /// The block's linear index (stream of its shuffled schedule).
    pub linear: u64,
}

#[derive(Clone, Copy)]
enum State {
    Runnable,
    Waiting(*mut RlemuOp),
    Done,
}

/// Formats thread numbers as ranges: "0-15, 17, 20-31".
fn ranges(ids: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1] == end + 1 {
            i += 1;
            end = ids[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(", ")
}

struct Block {
    states: Vec<State>,
    n: usize,
    /// Per warp, how many of its lanes wait at a warp collective: a collective can only be
    /// complete once this reaches the number of lanes its mask names.
    at_warp_op: Vec<u32>,
}

impl Block {
    /// The op thread `t` waits at. Not tied to a borrow of the block: the op lives on the
    /// thread's suspended stack, which the scheduler does not touch until it resumes the thread.
    fn op<'a>(&self, t: usize) -> Option<&'a RlemuOp> {
        match self.states[t] {
            // SAFETY: a waiting fiber's op lives on its suspended stack until it is resumed,
            // and callers drop the reference before resuming it.
            State::Waiting(op) => Some(unsafe { &*op }),
            _ => None,
        }
    }

    /// What thread `t` is doing, in words, for error messages.
    fn describe(&self, t: usize) -> String {
        match self.states[t] {
            State::Runnable => "runnable".into(),
            State::Done => "exited".into(),
            State::Waiting(_) => {
                let op = self.op(t).expect("waiting");
                if op.is_barrier() {
                    format!("waiting at __syncthreads ({})", op.site())
                } else {
                    format!(
                        "waiting at {} ({}, mask {:#010x})",
                        op.name(),
                        op.site(),
                        op.mask
                    )
                }
            }
        }
    }

    /// Every thread grouped by what it is doing.
    fn summary(&self) -> String {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for t in 0..self.n {
            let d = self.describe(t);
            match groups.iter_mut().find(|(k, _)| *k == d) {
                Some((_, v)) => v.push(t),
                None => groups.push((d, vec![t])),
            }
        }
        groups
            .iter()
            .map(|(d, ids)| format!("threads {} {d}", ranges(ids)))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Thread `t` arrived at the warp collective `op`: checks it and resolves the collective
    /// once every lane it names is there. Allocates only to report an error.
    fn arrive_warp(&mut self, t: usize) -> Result<(), String> {
        let op = self.op(t).expect("waiting");
        let (warp, lane) = (t / 32, t % 32);
        let base = warp * 32;
        let mask = op.mask;
        let what = || format!("{} at {}", op.name(), op.site());
        if mask & (1 << lane) == 0 {
            return Err(format!(
                "{}: thread {t} (lane {lane} of warp {warp}) passes mask {mask:#010x}, which \
                 does not name its own lane",
                what()
            ));
        }
        let highest = 31 - mask.leading_zeros() as usize;
        if base + highest >= self.n {
            return Err(format!(
                "{}: mask {mask:#010x} names lane {highest} of warp {warp}, but the block has \
                 only {} threads",
                what(),
                self.n
            ));
        }
        let whole_warp = [
            kind::MMA_M16N8K8_TF32,
            kind::MMA_M16N8K16_BF16,
            kind::LDMATRIX,
        ];
        if whole_warp.contains(&op.kind) && mask != u32::MAX {
            return Err(format!("{}: needs all 32 lanes of the warp", what()));
        }
        self.at_warp_op[warp] += 1;
        if self.at_warp_op[warp] < mask.count_ones() {
            return Ok(());
        }
        let mut lanes = [0u8; 32];
        let mut count = 0;
        for l in 0..32 {
            if mask & (1 << l) == 0 {
                continue;
            }
            lanes[count] = l as u8;
            count += 1;
            let other = base + l;
            match self.states[other] {
                State::Done => {
                    return Err(format!(
                        "{} with mask {mask:#010x}: lane {l} (thread {other}) exited without \
                         reaching it",
                        what()
                    ))
                }
                State::Runnable => return Ok(()),
                State::Waiting(_) => {
                    let o = self.op(other).expect("waiting");
                    if o.is_barrier() {
                        return Ok(());
                    }
                    if !o.same_collective(op) {
                        if o.mask & (1 << lane) != 0 {
                            return Err(format!(
                                "warp {warp}: lane {lane} is at {} with mask {mask:#010x} \
                                 while lane {l} is at {} at {} with mask {:#010x}; the lanes a \
                                 mask names must meet at the same collective with the same mask",
                                what(),
                                o.name(),
                                o.site(),
                                o.mask
                            ));
                        }
                        return Ok(());
                    }
                }
            }
        }
        self.resolve_warp(base, &lanes[..count])
    }

    /// Every lane of `lanes` (of the warp starting at thread `base`) waits at the same
    /// collective: computes each lane's result and makes the lanes runnable again.
    fn resolve_warp(&mut self, base: usize, lanes: &[u8]) -> Result<(), String> {
        let mut ops = [std::ptr::null_mut::<RlemuOp>(); 32];
        for (i, &l) in lanes.iter().enumerate() {
            ops[i] = match self.states[base + l as usize] {
                State::Waiting(op) => op,
                _ => unreachable!("every lane waits"),
            };
        }
        // SAFETY: each op lives on its suspended fiber's stack; the pointers are distinct.
        let get = |i: usize| {
            let p = ops[i];
            unsafe { &mut *p }
        };
        let (k, mask, width) = {
            let first = get(0);
            (first.kind, first.mask, first.width)
        };
        // The position of each lane in `lanes` (absent: u8::MAX).
        let mut index = [u8::MAX; 32];
        for (i, &l) in lanes.iter().enumerate() {
            index[l as usize] = i as u8;
        }
        match k {
            kind::SHFL_IDX | kind::SHFL_UP | kind::SHFL_DOWN | kind::SHFL_XOR => {
                if !(1..=32).contains(&width) || (width & (width - 1)) != 0 {
                    return Err(format!(
                        "{} at {}: width {width} is not a power of two from 1 to 32",
                        get(0).name(),
                        get(0).site()
                    ));
                }
                let w = width as usize;
                let mut values = [0u64; 32];
                for (i, v) in values.iter_mut().enumerate().take(lanes.len()) {
                    *v = get(i).value;
                }
                for (i, &lane) in lanes.iter().enumerate() {
                    let lane = lane as usize;
                    let op = get(i);
                    let seg = lane & !(w - 1);
                    let pos = lane & (w - 1);
                    let arg = op.lane;
                    let src = match k {
                        kind::SHFL_IDX => seg + (arg.rem_euclid(w as i32) as usize),
                        kind::SHFL_UP => {
                            if arg >= 0 && pos >= arg as usize {
                                lane - arg as usize
                            } else {
                                lane
                            }
                        }
                        kind::SHFL_DOWN => {
                            if arg >= 0 && pos + (arg as usize) < w {
                                lane + arg as usize
                            } else {
                                lane
                            }
                        }
                        _ => {
                            let s = lane ^ (arg as usize & 31);
                            if s & !(w - 1) > seg {
                                lane
                            } else {
                                s
                            }
                        }
                    };
                    let j = index[src];
                    if j == u8::MAX {
                        return Err(format!(
                            "{} at {}: lane {lane} reads lane {src}, which mask {mask:#010x} \
                             leaves out (its value is undefined)",
                            op.name(),
                            op.site()
                        ));
                    }
                    op.result = values[j as usize];
                }
            }
            kind::VOTE_BALLOT | kind::VOTE_ANY | kind::VOTE_ALL => {
                let ballot = lanes
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| get(i).value != 0)
                    .fold(0u32, |m, (_, &l)| m | (1 << l));
                let result = match k {
                    kind::VOTE_BALLOT => ballot as u64,
                    kind::VOTE_ANY => (ballot != 0) as u64,
                    _ => (ballot == mask) as u64,
                };
                for i in 0..lanes.len() {
                    get(i).result = result;
                }
            }
            kind::SYNCWARP => {}
            kind::MMA_M16N8K8_TF32 => {
                let (mut a, mut b, mut c) = ([[0u32; 4]; 32], [[0u32; 2]; 32], [[0f32; 4]; 32]);
                for (i, &l) in lanes.iter().enumerate() {
                    let op = get(i);
                    let l = l as usize;
                    (a[l], b[l], c[l]) = (op.a, op.b, op.c);
                }
                let d = ptx::mma_m16n8k8_tf32(&a, &b, &c);
                for (i, &l) in lanes.iter().enumerate() {
                    get(i).d = d[l as usize];
                }
            }
            kind::MMA_M16N8K16_BF16 => {
                let (mut a, mut b, mut c) = ([[0u32; 4]; 32], [[0u32; 2]; 32], [[0f32; 4]; 32]);
                for (i, &l) in lanes.iter().enumerate() {
                    let op = get(i);
                    let l = l as usize;
                    (a[l], b[l], c[l]) = (op.a, op.b, op.c);
                }
                let d = ptx::mma_m16n8k16_bf16(&a, &b, &c);
                for (i, &l) in lanes.iter().enumerate() {
                    get(i).d = d[l as usize];
                }
            }
            kind::LDMATRIX => {
                let (matrices, trans) = (get(0).width as usize, get(0).lane != 0);
                // Row r of matrix m: the 16 bytes lane 8m + r named (checked by rlemu.h).
                let mut rows = [[0u16; 8]; 32];
                for (i, &l) in lanes.iter().enumerate() {
                    let l = l as usize;
                    if l < 8 * matrices {
                        // SAFETY: rlemu.h checked that the 16 bytes lie in shared memory.
                        rows[l] = unsafe { std::ptr::read_unaligned(get(i).value as *const _) };
                    }
                }
                let r = ptx::ldmatrix(&rows, matrices, trans);
                for (i, &l) in lanes.iter().enumerate() {
                    get(i).r = r[l as usize];
                }
            }
            other => return Err(format!("unknown switch point kind {other}")),
        }
        for &l in lanes {
            self.states[base + l as usize] = State::Runnable;
        }
        self.at_warp_op[base / 32] -= lanes.len() as u32;
        Ok(())
    }

    /// The error of a block stuck with thread `t` waiting at a warp collective: the lanes its
    /// mask names that exited, if any, else what every thread is doing.
    fn deadlock(&self, t: usize) -> String {
        let op = self.op(t).expect("waiting");
        let base = t / 32 * 32;
        let exited: Vec<usize> = (0..32)
            .filter(|l| op.mask & (1 << l) != 0)
            .filter(|l| matches!(self.states[base + l], State::Done))
            .collect();
        if !exited.is_empty() {
            return format!(
                "{} at {} with mask {:#010x}: lanes {} of warp {} exited without reaching it",
                op.name(),
                op.site(),
                op.mask,
                ranges(&exited),
                t / 32
            );
        }
        let lane = t % 32;
        for l in (0..32).filter(|l| op.mask & (1 << l) != 0) {
            if let Some(o) = self.op(base + l) {
                if !o.is_barrier() && !o.same_collective(op) && o.mask & (1 << lane) != 0 {
                    return format!(
                        "warp {}: lane {lane} is at {} at {} with mask {:#010x} while lane {l} \
                         is at {} at {} with mask {:#010x}; the lanes a mask names must meet at \
                         the same collective with the same mask",
                        t / 32,
                        op.name(),
                        op.site(),
                        op.mask,
                        o.name(),
                        o.site(),
                        o.mask
                    );
                }
            }
        }
        format!("the block deadlocked: {}", self.summary())
    }

    /// No fiber can run: either the whole block waits at one barrier (released here) or the
    /// block is stuck, which is an error.
    fn release_barrier(&mut self) -> Result<(), String> {
        let mut first: Option<(*const std::ffi::c_char, i32)> = None;
        let (mut exited, mut divergent) = (false, false);
        for t in 0..self.n {
            match self.states[t] {
                State::Done => exited = true,
                State::Waiting(_) => {
                    let op = self.op(t).expect("waiting");
                    if !op.is_barrier() {
                        return Err(self.deadlock(t));
                    }
                    let site = (op.file, op.line);
                    match first {
                        None => first = Some(site),
                        Some(f) if f != site => divergent = true,
                        Some(_) => {}
                    }
                }
                State::Runnable => unreachable!("no fiber is runnable"),
            }
        }
        if exited {
            let (waiting, gone): (Vec<usize>, Vec<usize>) =
                (0..self.n).partition(|&t| matches!(self.states[t], State::Waiting(_)));
            let site = self.op(waiting[0]).expect("waiting").site();
            return Err(format!(
                "__syncthreads at {site} was reached by {} of the block's {} threads: threads {} \
                 exited before it (a barrier must be reached by the whole block)",
                waiting.len(),
                self.n,
                ranges(&gone)
            ));
        }
        if divergent {
            return Err(format!(
                "__syncthreads reached from different places: {} (a barrier must be reached \
                 from one place by the whole block)",
                self.summary()
            ));
        }
        self.states.fill(State::Runnable);
        Ok(())
    }
}

/// Runs one block to completion. Errors name what went wrong and where; the block's fibers
/// are discarded then (their stacks are reused).
pub fn run_block(b: &BlockLaunch<'_>) -> Result<(), String> {
    let n = b.block_dim.count();
    let mut ctx: Vec<RlemuThread> = (0..n)
        .map(|t| RlemuThread {
            thread_idx: b.block_dim.unflatten(t),
            block_idx: b.block_idx,
            block_dim: b.block_dim,
            grid_dim: b.grid_dim,
            dynamic_shared: b.dynamic_shared,
            dynamic_shared_bytes: b.dynamic_shared_bytes as u64,
            fiber: std::ptr::null_mut(),
            async_copies: std::ptr::null_mut(),
        })
        .collect();
    let mut fibers: Vec<Fiber> = Vec::with_capacity(n);
    for c in ctx.iter_mut() {
        let t: *mut RlemuThread = c;
        let (entry, args) = (b.entry, b.args);
        let stack = take_stack()?;
        fibers.push(Coroutine::with_stack(
            stack,
            move |y: &Yielder<(), *mut RlemuOp>, ()| {
                // SAFETY: `t` and `args` outlive the fiber (run_block keeps `ctx` and the caller
                // keeps the arguments until every fiber is finished or discarded); the
                // trampoline reads exactly the kernel's parameters from `args`.
                unsafe {
                    (*t).fiber = y as *const Yielder<(), *mut RlemuOp> as *mut c_void;
                    entry(t, args);
                }
            },
        ));
    }
    let mut block = Block {
        states: vec![State::Runnable; n],
        n,
        at_warp_op: vec![0; n.div_ceil(32)],
    };
    let result = schedule(b, &mut block, &mut fibers);
    for mut f in fibers {
        if !f.done() {
            // SAFETY: a fiber stopped at a switch point holds only plain data on its stack
            // (kernel code has no destructors), so dropping its frames without unwinding is
            // sound; unwinding through the C++ frames would not be.
            unsafe { f.force_reset() };
        }
        let stack = f.into_stack();
        STACKS.with(|s| s.borrow_mut().push(stack));
    }
    for c in ctx.iter_mut().filter(|c| !c.async_copies.is_null()) {
        // SAFETY: the thread's fiber is finished or discarded, so nothing uses its copies.
        unsafe { rlemu_release_thread(c) };
    }
    drop(ctx);
    result.map_err(|e| {
        format!(
            "block ({}, {}, {}) of {}: {e}",
            b.block_idx.x, b.block_idx.y, b.block_idx.z, b.kernel
        )
    })
}

fn schedule(b: &BlockLaunch<'_>, block: &mut Block, fibers: &mut [Fiber]) -> Result<(), String> {
    let n = block.n;
    let mut done = 0;
    let mut order = Vec::with_capacity(n);
    for pass in 0u64.. {
        b.schedule.order_into(&mut order, n, b.linear, pass);
        for &t in &order {
            if !matches!(block.states[t], State::Runnable) {
                continue;
            }
            match fibers[t].resume(()) {
                CoroutineResult::Yield(op) => {
                    // SAFETY: the op lives on the fiber's stack while it is suspended.
                    if let Some(what) = unsafe { &*op }.fault_message() {
                        return Err(format!("thread {t}: {what} ({})", unsafe { &*op }.site()));
                    }
                    block.states[t] = State::Waiting(op);
                    // SAFETY: the op lives on the fiber's stack while it is suspended.
                    if !unsafe { &*op }.is_barrier() {
                        block.arrive_warp(t)?;
                    }
                }
                CoroutineResult::Return(()) => {
                    block.states[t] = State::Done;
                    done += 1;
                }
            }
        }
        if done == n {
            return Ok(());
        }
        if !block.states.iter().any(|s| matches!(s, State::Runnable)) {
            block.release_barrier()?;
        }
    }
    unreachable!("the pass loop only ends by returning")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_permutations_and_parse() {
        for s in [Schedule::Forward, Schedule::Reverse, Schedule::Shuffled(7)] {
            let mut o = s.order(100, 3, 2);
            o.sort();
            assert_eq!(o, (0..100).collect::<Vec<_>>());
        }
        assert_eq!(Schedule::Reverse.order(3, 0, 0), vec![2, 1, 0]);
        assert_ne!(
            Schedule::Shuffled(1).order(64, 0, 0),
            Schedule::Shuffled(1).order(64, 0, 1)
        );
        assert_eq!(Schedule::parse("shuffle:9"), Some(Schedule::Shuffled(9)));
        assert_eq!(Schedule::parse("reverse"), Some(Schedule::Reverse));
        assert_eq!(Schedule::parse("sideways"), None);
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), "0-2, 5, 7-8");
    }
}
