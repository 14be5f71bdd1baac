//! The `rlnet` command line: see `rlnet --help`.

// Training allocates and frees many large activation buffers per step; the system allocator
// returns them to the kernel each time (page faults on every reuse), mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: the 16th entry of its option enum in versions 2 and 3.
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// A step frees and reallocates the same large buffers; by default mimalloc hands freed memory
/// back to the kernel after a delay (1 s in version 3), so the next steps fault in and zero
/// fresh pages again (9% of a CPU stage-1 step in `perf`, clear_page). Never purging makes the
/// memory a pool the steps reuse (the process keeps its peak). Another major version of
/// mimalloc, whose option numbers may differ, keeps its defaults.
fn keep_freed_memory() {
    // SAFETY: mimalloc's version query and option setter take any values.
    unsafe {
        if matches!(libmimalloc_sys::mi_version() / 10_000, 2 | 3) {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    rlnet::cli::main()
}
