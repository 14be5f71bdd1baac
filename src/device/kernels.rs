//! The registry of handwritten CUDA kernels: every `kernels/*.cu` file, embedded in the binary,
//! with the `extern "C"` kernels it defines. The CUDA backend compiles a file with NVRTC on first
//! use (`expanded_source`, then `nvrtc::compile_cubin`), and `tests/kernels_compile.rs` compiles
//! every file for sm_90 and checks registers and spills.
//!
//! Each `.cu` file opens with a comment listing its kernels' exact argument lists, the launch
//! configuration (grid, block, shared memory) the launcher must use, and the CPU reference
//! function in `src/ops` it mirrors.

/// One kernel source file: its module name, its source with `#include "common.cuh"` expanded,
/// and the kernels it defines.
pub struct KernelFile {
    /// Module name (the file name without `.cu`), e.g. "conv2d".
    pub name: &'static str,
    /// The file as written (`#include "common.cuh"` not yet expanded; see `expanded_source`).
    pub source: &'static str,
    /// Every `extern "C" __global__` function of the file, in file order.
    pub kernels: &'static [&'static str],
}

/// The shared device header: the counter-based RNG (same integer ops as `crate::rng`),
/// fixed-order reductions and non-contracting arithmetic helpers.
pub const COMMON: &str = include_str!("../../kernels/common.cuh");

/// The include line each kernel file uses for `COMMON` (its only include).
pub const COMMON_INCLUDE: &str = "#include \"common.cuh\"";

pub const FILES: &[KernelFile] = &[
    KernelFile {
        name: "conv2d",
        source: include_str!("../../kernels/conv2d.cu"),
        kernels: &[
            "conv2d_fwd",
            "conv2d_bwd_data",
            "conv2d_bwd_weight",
            "conv2d_bwd_weight_reduce",
        ],
    },
    KernelFile {
        name: "conv2d_tc",
        source: include_str!("../../kernels/conv2d_tc.cu"),
        kernels: &[
            "conv2d_fwd_v2",
            "conv2d_bwd_data_v2",
            "conv2d_bwd_weight_v2",
        ],
    },
    KernelFile {
        name: "bn_act",
        source: include_str!("../../kernels/bn_act.cu"),
        kernels: &[
            "bn_act_stats",
            "bn_act_stats_final",
            "bn_act_fwd",
            "bn_act_bwd_reduce",
            "bn_act_bwd_reduce_final",
            "bn_act_bwd_apply",
            "bn_act_running_update",
            "bn_act_eval_invstd",
        ],
    },
    KernelFile {
        name: "elementwise",
        source: include_str!("../../kernels/elementwise.cu"),
        kernels: &[
            "elementwise_channel_affine_fwd",
            "elementwise_channel_affine_bwd",
            "elementwise_add",
            "elementwise_accumulate",
            "elementwise_scale",
            "elementwise_fill",
            "elementwise_absdiff_accumulate",
            "elementwise_avgpool_fwd",
            "elementwise_avgpool_bwd",
        ],
    },
    KernelFile {
        name: "linear",
        source: include_str!("../../kernels/linear.cu"),
        kernels: &[
            "linear_fwd",
            "linear_bwd_data",
            "linear_bwd_weight",
            "linear_bwd_bias",
        ],
    },
    KernelFile {
        name: "loss",
        source: include_str!("../../kernels/loss.cu"),
        kernels: &[
            "loss_ce_fwd",
            "loss_ce_bwd",
            "loss_kl_fwd",
            "loss_kl_bwd",
            "loss_at_map",
            "loss_at_bwd",
            "loss_jsd_fwd",
            "loss_jsd_bwd",
            "loss_reduce_sum",
        ],
    },
    KernelFile {
        name: "optim",
        source: include_str!("../../kernels/optim.cu"),
        kernels: &["optim_sgd_momentum_update", "optim_adam_update"],
    },
    KernelFile {
        name: "pgd",
        source: include_str!("../../kernels/pgd.cu"),
        kernels: &["pgd_random_start", "pgd_step"],
    },
    KernelFile {
        name: "augment",
        source: include_str!("../../kernels/augment.cu"),
        kernels: &["augment_crop_flip", "augment_to_float"],
    },
    KernelFile {
        name: "corrupt_pixel",
        source: include_str!("../../kernels/corrupt_pixel.cu"),
        kernels: &[
            "corrupt_pixel_gaussian",
            "corrupt_pixel_speckle",
            "corrupt_pixel_impulse",
            "corrupt_pixel_shot",
            "corrupt_pixel_hsv",
            "corrupt_pixel_contrast",
            "corrupt_pixel_pixelate",
        ],
    },
    KernelFile {
        name: "corrupt_weather",
        source: include_str!("../../kernels/corrupt_weather.cu"),
        kernels: &[
            "corrupt_weather_motion_blur",
            "corrupt_weather_snow",
            "corrupt_weather_fog",
            "corrupt_weather_frost",
        ],
    },
    KernelFile {
        name: "corrupt_elastic",
        source: include_str!("../../kernels/corrupt_elastic.cu"),
        kernels: &["corrupt_elastic_transform", "corrupt_elastic_spatter_mud"],
    },
    KernelFile {
        name: "corrupt_blur",
        source: include_str!("../../kernels/corrupt_blur.cu"),
        kernels: &[
            "corrupt_blur_gaussian",
            "corrupt_blur_glass",
            "corrupt_blur_defocus",
            "corrupt_blur_zoom",
        ],
    },
    KernelFile {
        name: "soft_relu",
        source: include_str!("../../kernels/soft_relu.cu"),
        kernels: &[
            "soft_relu_fwd",
            "soft_relu_bwd_input",
            "soft_relu_bwd_alpha",
        ],
    },
    KernelFile {
        name: "augmix",
        source: include_str!("../../kernels/augmix.cu"),
        kernels: &["augmix_batch"],
    },
];

/// The kernel file named `name` ("conv2d", "bn_act", ...).
pub fn file(name: &str) -> Option<&'static KernelFile> {
    FILES.iter().find(|f| f.name == name)
}

/// The source as NVRTC compiles it: `#include "common.cuh"` replaced by `COMMON` (NVRTC has no
/// file system access here). The same files also compile with `nvcc -I kernels`.
pub fn expanded_source(f: &KernelFile) -> String {
    f.source.replace(COMMON_INCLUDE, COMMON)
}

/// The names of the `extern "C" __global__` functions defined in `source`, in order
/// (comments ignored; `__launch_bounds__(..)` skipped).
pub fn defined_kernels(source: &str) -> Vec<String> {
    let code = strip_comments(source);
    let mut out = Vec::new();
    let marker = "extern \"C\" __global__";
    let mut rest = code.as_str();
    while let Some(i) = rest.find(marker) {
        rest = &rest[i + marker.len()..];
        let mut s = rest.trim_start();
        if let Some(t) = s.strip_prefix("void") {
            s = t.trim_start();
        }
        if let Some(t) = s.strip_prefix("__launch_bounds__") {
            // Skip the balanced parenthesised arguments.
            let t = t.trim_start();
            let mut depth = 0usize;
            let mut end = 0usize;
            for (j, ch) in t.char_indices() {
                match ch {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            s = t[end..].trim_start();
        }
        let name: String = s
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if s[name.len()..].trim_start().starts_with('(') && !name.is_empty() {
            out.push(name);
        }
    }
    out
}

fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'*' {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else {
            // Copy one whole UTF-8 character (comments may hold non-ASCII text).
            let ch = s[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn registry_matches_the_sources() {
        let mut all = BTreeSet::new();
        for f in FILES {
            let defined = defined_kernels(f.source);
            let listed: Vec<String> = f.kernels.iter().map(|s| s.to_string()).collect();
            for k in &listed {
                assert!(
                    defined.contains(k),
                    "{}.cu: `{k}` is listed but not defined as extern \"C\" __global__",
                    f.name
                );
            }
            for k in &defined {
                assert!(
                    listed.contains(k),
                    "{}.cu: extern \"C\" __global__ `{k}` is not listed in the registry",
                    f.name
                );
            }
            let unique: BTreeSet<_> = defined.iter().collect();
            assert_eq!(
                unique.len(),
                defined.len(),
                "{}.cu defines a kernel twice",
                f.name
            );
            for k in f.kernels {
                assert!(all.insert(*k), "kernel {k} appears in two files");
            }
        }
    }

    #[test]
    fn every_file_includes_common_once_and_nothing_else() {
        for f in FILES {
            let code = strip_comments(f.source);
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
            // A file of faster variants (conv2d_tc: tensor cores) belongs to its family.
            let family = f.name.strip_suffix("_tc").unwrap_or(f.name);
            for k in f.kernels {
                assert!(k.starts_with(&format!("{family}_")), "{k} in {}.cu", f.name);
            }
        }
    }

    #[test]
    fn parser_handles_launch_bounds_and_comments() {
        let src = "// extern \"C\" __global__ void not_me(\n\
                   /* extern \"C\" __global__ void nor_me( */\n\
                   extern \"C\" __global__ void __launch_bounds__(256, 2)\nfoo_fwd(int a) {}\n\
                   extern \"C\" __global__ void bar_bwd (float* x) {}\n";
        assert_eq!(defined_kernels(src), vec!["foo_fwd", "bar_bwd"]);
        assert!(file("conv2d").is_some() && file("nope").is_none());
    }
}
