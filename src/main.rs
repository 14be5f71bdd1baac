//! The `rlnet` command line: see `rlnet --help`.

fn main() -> std::process::ExitCode {
    rlnet::cli::main()
}
