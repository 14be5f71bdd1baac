//! Every registered kernel was executed by some test. The emulator appends each kernel's name to
//! the file named by RLNET_EMU_COVERAGE the first time a process runs it; CI runs the whole
//! suite with that variable set, then this test (ignored otherwise, as it needs the file):
//!
//!   export RLNET_EMU_COVERAGE=$(mktemp)
//!   cargo test --release
//!   cargo test --release --test emu_coverage -- --ignored --nocapture
//!
//! It prints, per kernel family, how many of its kernels ran, and fails naming any that none did.

use rlnet::device::kernels::FILES;
use std::collections::BTreeSet;

#[test]
#[ignore = "reads the coverage file of a whole test run: run after the suite with RLNET_EMU_COVERAGE set"]
fn every_registered_kernel_ran_on_the_emulator() {
    let path = std::env::var("RLNET_EMU_COVERAGE")
        .expect("RLNET_EMU_COVERAGE names the coverage file of the test run");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let ran: BTreeSet<&str> = text.lines().map(str::trim).collect();
    let mut missing = Vec::new();
    let (mut total, mut executed) = (0, 0);
    println!("kernels executed on the CUDA emulator, per family:");
    for f in FILES {
        let names: Vec<&str> = f.kernel_names().collect();
        let done = names.iter().filter(|k| ran.contains(*k)).count();
        println!("  {:<16} {done:>2} of {:>2}", f.name, names.len());
        missing.extend(names.iter().filter(|k| !ran.contains(*k)).copied());
        total += names.len();
        executed += done;
    }
    println!("emulator coverage: {executed} of {total} registered kernels executed");
    assert!(
        missing.is_empty(),
        "registered kernels that no test executed: {}",
        missing.join(", ")
    );
}
