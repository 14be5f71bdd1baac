//! The kernel sources read as text: the `extern "C" __global__` signatures of kernels/*.cu, and
//! the translation of a kernel file into the C++ that the CUDA emulator compiles.
//!
//! build.rs includes this file (`#[path]`) to generate the kernel registry and the emulator's
//! translation units, and the library includes it so that tests can exercise the parser: it
//! therefore uses nothing but `std`.
//!
//! The translation changes only what C++ cannot express with a header:
//! - inline PTX (`asm("..." : outputs : inputs)`): each instruction is matched against the
//!   emulated forms in `PTX_FORMS` and becomes a call into `rlemu_ptx`; an instruction the
//!   emulator does not know is an error, never a silent pass;
//! - `extern "C" __global__` becomes `__global__` (C++ linkage inside a per-file namespace, so a
//!   mutated copy of a file can be linked beside the original);
//! - `extern __shared__ T name[];` becomes a pointer to the launch's dynamic shared memory.
//!
//! Everything else (the CUDA keywords, built-in variables, intrinsics, `__syncthreads`, warp
//! collectives) is provided by kernels/emu/rlemu.h. Line numbers are kept, so `__LINE__` and
//! compiler errors point into the .cu file.

mod emulator;
mod ptx_forms;
mod text;

pub use emulator::{emulator_source, trampoline};
pub use ptx_forms::{PtxForm, PtxOperand, Reg, PTX_FORMS};
pub use text::blank_comments;

use text::{defines, is_ident, line_of, matching, resolve_number, skip_ws, split_top, word_at};

/// The element type behind a kernel parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    F64,
    U8,
    U32,
    I32,
    U64,
    I64,
}

impl Elem {
    /// The C spelling, as the emulator's trampolines write it.
    pub fn c_name(self) -> &'static str {
        match self {
            Elem::F32 => "float",
            Elem::F64 => "double",
            Elem::U8 => "unsigned char",
            Elem::U32 => "unsigned int",
            Elem::I32 => "int",
            Elem::U64 => "unsigned long long",
            Elem::I64 => "long long",
        }
    }

    /// The Rust path of this variant, for generated code.
    pub fn rust_path(self) -> &'static str {
        match self {
            Elem::F32 => "Elem::F32",
            Elem::F64 => "Elem::F64",
            Elem::U8 => "Elem::U8",
            Elem::U32 => "Elem::U32",
            Elem::I32 => "Elem::I32",
            Elem::U64 => "Elem::U64",
            Elem::I64 => "Elem::I64",
        }
    }
}

/// How a kernel takes one parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    /// `const T*`: a buffer the kernel reads.
    ConstPtr(Elem),
    /// `T*`: a buffer the kernel writes (and may read).
    MutPtr(Elem),
    /// A value passed by copy.
    Scalar(Elem),
}

impl ParamType {
    /// The C spelling (`const float*`, `int`, ...).
    pub fn c_type(self) -> String {
        match self {
            ParamType::ConstPtr(e) => format!("const {}*", e.c_name()),
            ParamType::MutPtr(e) => format!("{}*", e.c_name()),
            ParamType::Scalar(e) => e.c_name().to_string(),
        }
    }

    /// The Rust expression of this value, for generated code.
    pub fn rust_expr(self) -> String {
        match self {
            ParamType::ConstPtr(e) => format!("ParamType::ConstPtr({})", e.rust_path()),
            ParamType::MutPtr(e) => format!("ParamType::MutPtr({})", e.rust_path()),
            ParamType::Scalar(e) => format!("ParamType::Scalar({})", e.rust_path()),
        }
    }
}

/// One parameter of a parsed kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedParam {
    pub name: String,
    pub ty: ParamType,
}

/// One `extern "C" __global__` function of a kernel file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedKernel {
    pub name: String,
    pub params: Vec<ParsedParam>,
    /// The first argument of `__launch_bounds__` (the most threads a block may have), else 1024.
    pub max_threads: u32,
}

fn parse_param(file: &str, kernel: &str, text: &str) -> Result<ParsedParam, String> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '*')
        .filter(|w| !w.is_empty() && *w != "__restrict__" && *w != "__restrict")
        .collect();
    let pointer = text.contains('*');
    let Some((&name, type_words)) = words.split_last() else {
        return Err(format!("{file}.cu: kernel {kernel}: empty parameter"));
    };
    let is_const = type_words.contains(&"const");
    let base: Vec<&str> = type_words
        .iter()
        .copied()
        .filter(|w| *w != "const")
        .collect();
    let elem = match base.join(" ").as_str() {
        "float" => Elem::F32,
        "double" => Elem::F64,
        "unsigned char" => Elem::U8,
        "unsigned" | "unsigned int" => Elem::U32,
        "int" => Elem::I32,
        "unsigned long long" | "unsigned long long int" | "rl_u64" => Elem::U64,
        "long long" | "long long int" => Elem::I64,
        other => {
            return Err(format!(
                "{file}.cu: kernel {kernel}: parameter `{name}` has type `{other}`, which the \
                 kernel registry does not know (float, double, int, unsigned, unsigned char, \
                 [unsigned] long long and pointers to them)"
            ))
        }
    };
    let ty = match (pointer, is_const) {
        (true, true) => ParamType::ConstPtr(elem),
        (true, false) => ParamType::MutPtr(elem),
        (false, _) => ParamType::Scalar(elem),
    };
    Ok(ParsedParam {
        name: name.to_string(),
        ty,
    })
}

/// Every `extern "C" __global__` function of `source` (the file `file`.cu), in file order.
pub fn parse_kernels(file: &str, source: &str) -> Result<Vec<ParsedKernel>, String> {
    let code = blank_comments(source);
    let defs = defines(&code);
    let b = code.as_bytes();
    let marker = "extern \"C\" __global__";
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = code[from..].find(marker) {
        let at = from + pos;
        let mut i = skip_ws(b, at + marker.len());
        if word_at(b, i, "void") {
            i = skip_ws(b, i + 4);
        }
        let mut max_threads = 1024;
        if word_at(b, i, "__launch_bounds__") {
            let open = skip_ws(b, i + "__launch_bounds__".len());
            let close = matching(b, open).ok_or_else(|| {
                format!(
                    "{file}.cu:{}: unclosed __launch_bounds__",
                    line_of(&code, at)
                )
            })?;
            let first = split_top(&code[open + 1..close], b',')[0];
            max_threads = resolve_number(first, &defs, 0).ok_or_else(|| {
                format!(
                    "{file}.cu:{}: __launch_bounds__({first}) is not a number or a #define of one",
                    line_of(&code, at)
                )
            })?;
            i = skip_ws(b, close + 1);
        }
        let name_end = (i..b.len()).find(|&j| !is_ident(b[j])).unwrap_or(b.len());
        let name = code[i..name_end].to_string();
        let open = skip_ws(b, name_end);
        if name.is_empty() || b.get(open) != Some(&b'(') {
            return Err(format!(
                "{file}.cu:{}: cannot read the kernel declared here",
                line_of(&code, at)
            ));
        }
        let close = matching(b, open)
            .ok_or_else(|| format!("{file}.cu: kernel {name}: unclosed parameter list"))?;
        let list = code[open + 1..close].trim();
        let params = if list.is_empty() || list == "void" {
            Vec::new()
        } else {
            split_top(list, b',')
                .into_iter()
                .map(|p| parse_param(file, &name, p))
                .collect::<Result<_, _>>()?
        };
        out.push(ParsedKernel {
            name,
            params,
            max_threads,
        });
        from = close;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signatures_launch_bounds_and_comments() {
        let src = "// extern \"C\" __global__ void not_me(\n\
                   /* extern \"C\" __global__ void nor_me( */\n\
                   #define T 128\n\
                   extern \"C\" __global__ void __launch_bounds__(T, 2)\nfoo_fwd(const float* __restrict__ x, int n, unsigned long long seed, double* out) {}\n\
                   extern \"C\" __global__ void bar_bwd (unsigned char* y) {}\n";
        let k = parse_kernels("t", src).unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!((k[0].name.as_str(), k[0].max_threads), ("foo_fwd", 128));
        assert_eq!(
            k[0].params.iter().map(|p| p.ty).collect::<Vec<_>>(),
            vec![
                ParamType::ConstPtr(Elem::F32),
                ParamType::Scalar(Elem::I32),
                ParamType::Scalar(Elem::U64),
                ParamType::MutPtr(Elem::F64)
            ]
        );
        assert_eq!((k[1].name.as_str(), k[1].max_threads), ("bar_bwd", 1024));
        assert_eq!(k[1].params[0].ty, ParamType::MutPtr(Elem::U8));
    }

    #[test]
    fn unknown_parameter_types_are_refused() {
        let e = parse_kernels("t", "extern \"C\" __global__ void k(float4 v) {}").unwrap_err();
        assert!(e.contains("float4") && e.contains("does not know"), "{e}");
    }
}
