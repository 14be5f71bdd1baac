//! The `rlnet` command line: see `rlnet --help`.

// Training allocates and frees many large activation buffers per step; the system allocator
// returns them to the kernel each time (page faults on every reuse), mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rlnet::cli::main()
}
