//! Every handwritten CUDA kernel compiles with NVRTC for sm_90 (the H200) with zero register
//! spills. Needs no GPU, only libnvrtc:
//!
//!   export LD_LIBRARY_PATH=$(tools/setup_nvrtc.sh):$LD_LIBRARY_PATH
//!   REQUIRE_NVRTC=1 cargo test --release --test kernels_compile -- --nocapture
//!
//! Without libnvrtc the test prints "skipped" and passes, unless REQUIRE_NVRTC=1 (CI), where it
//! fails. With `--nocapture` it prints a per-kernel table of registers, spills, stack frame and
//! shared memory, read from ptxas's verbose report. It compiles exactly as the CUDA backend
//! does (src/device/nvrtc.rs).

use rlnet::device::kernels::{expanded_source, COMMON, COMMON_INCLUDE, FILES};
use rlnet::device::nvrtc::{compile_cubin, nvrtc_present, parse_ptxas_log, version, OPTIONS};

const ARCH: &str = "sm_90";

#[test]
fn every_kernel_compiles_for_sm90_without_spills() {
    let required = std::env::var("REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    if !nvrtc_present() {
        assert!(
            !required,
            "REQUIRE_NVRTC=1 but libnvrtc was not found (set LD_LIBRARY_PATH, see tools/setup_nvrtc.sh)"
        );
        println!("skipped: libnvrtc not found (set LD_LIBRARY_PATH, see tools/setup_nvrtc.sh)");
        return;
    }
    let (major, minor) = version().expect("NVRTC reports its version");
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for f in FILES {
        let started = std::time::Instant::now();
        let compiled = compile_cubin(f.name, &expanded_source(f), ARCH)
            .unwrap_or_else(|e| panic!("{}.cu with NVRTC {major}.{minor}: {e}", f.name));
        let ms = started.elapsed().as_millis();
        for line in compiled.log.lines().filter(|l| l.contains("warning")) {
            problems.push(format!("{}.cu: {line}", f.name));
        }
        let entries = parse_ptxas_log(&compiled.log);
        let names: Vec<&str> = f.kernel_names().collect();
        for &k in &names {
            match entries.iter().find(|e| e.name == k) {
                None => problems.push(format!(
                    "{}.cu: registry kernel {k} was not compiled",
                    f.name
                )),
                Some(e) => {
                    if e.spill_stores > 0 || e.spill_loads > 0 {
                        problems.push(format!(
                            "{}.cu: {k} spills ({} bytes stores, {} bytes loads, {} registers)",
                            f.name, e.spill_stores, e.spill_loads, e.registers
                        ));
                    }
                    rows.push((f.name, e.clone()));
                }
            }
        }
        for e in &entries {
            if !names.contains(&e.name.as_str()) {
                problems.push(format!(
                    "{}.cu: entry {} is not in the registry",
                    f.name, e.name
                ));
            }
        }
        println!(
            "{}.cu: {} kernels, cubin {} bytes, compiled in {ms} ms",
            f.name,
            entries.len(),
            compiled.cubin.len()
        );
    }
    println!("\nNVRTC {major}.{minor}, {ARCH}, options {OPTIONS:?}");
    println!(
        "{:<12} {:<32} {:>5} {:>7} {:>7} {:>7} {:>7}",
        "file", "kernel", "regs", "stack", "spill-s", "spill-l", "smem"
    );
    for (file, e) in &rows {
        println!(
            "{:<12} {:<32} {:>5} {:>7} {:>7} {:>7} {:>7}",
            file, e.name, e.registers, e.stack_bytes, e.spill_stores, e.spill_loads, e.shared_bytes
        );
    }
    assert!(
        problems.is_empty(),
        "kernel compile problems:\n{}",
        problems.join("\n")
    );
}

/// The emulator's self-test kernels (src/device/emu/selftest.cu) compile for sm_90 too: they
/// spell every inline-PTX form the emulator accepts (cp.async with its shared and global
/// address operands and immediates, ldmatrix, the bf16 mma and conversion), so ptxas checks
/// that each form the emulator executes is one the GPU takes.
#[test]
fn the_emulator_self_tests_ptx_forms_compile_for_sm90() {
    let required = std::env::var("REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    if !nvrtc_present() {
        assert!(!required, "REQUIRE_NVRTC=1 but libnvrtc was not found");
        println!("skipped: libnvrtc not found");
        return;
    }
    let source = include_str!("../src/device/emu/selftest.cu").replace(COMMON_INCLUDE, COMMON);
    let compiled = compile_cubin("selftest", &source, ARCH)
        .unwrap_or_else(|e| panic!("selftest.cu with NVRTC: {e}"));
    let entries = parse_ptxas_log(&compiled.log);
    for k in [
        "selftest_bf16_gemm",
        "selftest_cvt_bf16x2",
        "selftest_bad_async",
    ] {
        assert!(
            entries.iter().any(|e| e.name == k),
            "{k} missing from ptxas's report:\n{}",
            compiled.log
        );
    }
}
