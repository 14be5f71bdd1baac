//! The registry of handwritten CUDA kernels: every `kernels/*.cu` file, embedded in the binary,
//! and every `extern "C" __global__` kernel with its parameter list and launch bounds. build.rs
//! derives the registry from the sources themselves (src/device/kernel_source.rs), so the two
//! cannot drift: a kernel is named once, in its .cu file, and reached through its generated
//! handle (`KernelId::CONV2D_FWD`). The CUDA backend compiles a file with NVRTC on first use
//! (`expanded_source`, then `nvrtc::compile_cubin`); `tests/kernels_compile.rs` compiles every
//! file for sm_90 and checks registers and spills; the emulator runs the same files compiled as
//! C++ (src/device/emu/).
//!
//! Each `.cu` file opens with a comment listing its kernels' exact argument lists, the launch
//! configuration (grid, block, shared memory) the launcher must use, and the CPU reference
//! function in `src/ops` it mirrors.

pub use super::kernel_source::{Elem, ParamType};

/// A kernel of the registry (an index into `KERNELS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelId(pub usize);

/// One kernel source file.
pub struct KernelFile {
    /// Module name (the file name without `.cu`), e.g. "conv2d".
    pub name: &'static str,
    /// The file as written (`#include "common.cuh"` not yet expanded; see `expanded_source`).
    pub source: &'static str,
    /// Its kernels, in file order.
    pub kernels: &'static [KernelId],
}

/// One parameter of a kernel, as its signature declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub ty: ParamType,
}

/// One `extern "C" __global__` kernel.
#[derive(Debug)]
pub struct KernelSig {
    pub name: &'static str,
    /// Index of its file in `FILES`.
    pub file: usize,
    /// The most threads per block its `__launch_bounds__` allows (1024 without).
    pub max_threads: u32,
    pub params: &'static [Param],
}

include!(concat!(env!("OUT_DIR"), "/kernel_registry.rs"));

impl KernelId {
    pub fn sig(self) -> &'static KernelSig {
        &KERNELS[self.0]
    }

    pub fn name(self) -> &'static str {
        self.sig().name
    }

    pub fn file(self) -> &'static KernelFile {
        &FILES[self.sig().file]
    }

    /// Every registered kernel.
    pub fn all() -> impl Iterator<Item = KernelId> {
        (0..KERNELS.len()).map(KernelId)
    }
}

impl KernelFile {
    /// The names of its kernels, in file order.
    pub fn kernel_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kernels.iter().map(|k| k.name())
    }
}

/// The shared device header: the counter-based RNG (same integer ops as `crate::rng`),
/// fixed-order reductions and non-contracting arithmetic helpers.
pub const COMMON: &str = include_str!("../../kernels/common.cuh");

/// The include line each kernel file uses for `COMMON` (its only include).
pub const COMMON_INCLUDE: &str = "#include \"common.cuh\"";

/// The kernel file named `name` ("conv2d", "bn_act", ...).
pub fn file(name: &str) -> Option<&'static KernelFile> {
    FILES.iter().find(|f| f.name == name)
}

/// The source as NVRTC compiles it: `#include "common.cuh"` replaced by `COMMON` (NVRTC has no
/// file system access here). The same files also compile with `nvcc -I kernels`.
pub fn expanded_source(f: &KernelFile) -> String {
    f.source.replace(COMMON_INCLUDE, COMMON)
}

#[cfg(test)]
mod tests {
    use super::super::kernel_source::{blank_comments, parse_kernels};
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn registry_matches_the_sources() {
        let mut all = BTreeSet::new();
        for f in FILES {
            let parsed = parse_kernels(f.name, f.source).unwrap();
            let names: Vec<&str> = f.kernel_names().collect();
            assert_eq!(
                names,
                parsed.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
                "{}.cu",
                f.name
            );
            for (k, p) in f.kernels.iter().zip(&parsed) {
                assert_eq!(k.file().name, f.name);
                let params: Vec<ParamType> = k.sig().params.iter().map(|p| p.ty).collect();
                assert_eq!(
                    params,
                    p.params.iter().map(|p| p.ty).collect::<Vec<_>>(),
                    "{}",
                    k.name()
                );
                assert!(all.insert(k.name()), "kernel {} appears twice", k.name());
            }
        }
        assert_eq!(all.len(), KERNELS.len());
        assert_eq!(KernelId::CONV2D_FWD.name(), "conv2d_fwd");
    }

    #[test]
    fn every_file_includes_common_once_and_nothing_else() {
        for f in FILES {
            let code = blank_comments(f.source);
            assert_eq!(code.matches(COMMON_INCLUDE).count(), 1, "{}.cu", f.name);
            assert_eq!(
                code.matches("#include").count(),
                1,
                "{}.cu: NVRTC has no other headers",
                f.name
            );
            let expanded = expanded_source(f);
            assert!(!expanded.contains(COMMON_INCLUDE));
            assert!(
                expanded.contains("rl_hash"),
                "{}: common.cuh not expanded",
                f.name
            );
        }
    }

    #[test]
    fn kernel_names_carry_their_family_prefix() {
        for f in FILES {
            // A file of faster variants (conv2d_tc: TF32 tensor cores, conv2d_bf16: bf16 ones)
            // belongs to its family.
            let family = ["_tc", "_bf16"]
                .iter()
                .find_map(|v| f.name.strip_suffix(v))
                .unwrap_or(f.name);
            for k in f.kernel_names() {
                assert!(k.starts_with(&format!("{family}_")), "{k} in {}.cu", f.name);
            }
        }
        assert!(file("conv2d").is_some() && file("nope").is_none());
    }
}
