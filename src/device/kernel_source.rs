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

use std::fmt::Write as _;

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

/// Source text with comments replaced by spaces (newlines kept), so offsets and line numbers
/// stay those of the original. String and character literals are kept as they are.
pub fn blank_comments(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            out.extend_from_slice(b"  ");
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                i += 1;
            }
            if i < b.len() {
                out.extend_from_slice(b"  ");
                i += 2;
            }
        } else if b[i] == b'"' || b[i] == b'\'' {
            let end = literal_end(b, i);
            out.extend_from_slice(&b[i..end]);
            i = end;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    // Only ASCII bytes were replaced (by ASCII), and multi-byte characters were copied whole.
    String::from_utf8(out).expect("comment blanking keeps UTF-8")
}

/// The index just past the string or character literal starting at `start`.
fn literal_end(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() && b[i] != quote {
        if b[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    (i + 1).min(b.len())
}

fn line_of(s: &str, offset: usize) -> usize {
    s[..offset].matches('\n').count() + 1
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether `word` occurs in `code` at `i` as a whole identifier.
fn word_at(code: &[u8], i: usize, word: &str) -> bool {
    let w = word.as_bytes();
    code.len() >= i + w.len()
        && &code[i..i + w.len()] == w
        && (i == 0 || !is_ident(code[i - 1]))
        && code.get(i + w.len()).is_none_or(|&c| !is_ident(c))
}

fn skip_ws(code: &[u8], mut i: usize) -> usize {
    while i < code.len() && code[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The index of the bracket closing the one at `open` (`(`, `[` or `{`), skipping literals.
fn matching(code: &[u8], open: usize) -> Option<usize> {
    let (o, c) = match code[open] {
        b'(' => (b'(', b')'),
        b'[' => (b'[', b']'),
        _ => (b'{', b'}'),
    };
    let mut depth = 0usize;
    let mut i = open;
    while i < code.len() {
        match code[i] {
            b'"' | b'\'' => {
                i = literal_end(code, i);
                continue;
            }
            x if x == o => depth += 1,
            x if x == c => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits `s` at the top-level occurrences of `sep` (outside brackets and literals).
fn split_top(s: &str, sep: u8) -> Vec<&str> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let (mut depth, mut start, mut i) = (0i32, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                i = literal_end(b, i);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            x if x == sep && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

/// `#define NAME VALUE` lines of a file (comments blanked), for resolving launch bounds.
fn defines(code: &str) -> Vec<(String, String)> {
    code.lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix("#define")?;
            let mut it = rest.trim().splitn(2, char::is_whitespace);
            let name = it.next()?.to_string();
            if name.contains('(') {
                return None;
            }
            Some((name, it.next().unwrap_or("").trim().to_string()))
        })
        .collect()
}

fn resolve_number(expr: &str, defs: &[(String, String)], depth: usize) -> Option<u32> {
    let e = expr.trim();
    if let Ok(v) = e.parse() {
        return Some(v);
    }
    if depth > 8 {
        return None;
    }
    let (_, value) = defs.iter().find(|(n, _)| n == e)?;
    resolve_number(value, defs, depth + 1)
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

// ---------------------------------------------------------------------------------------------
// Inline PTX.

/// A register class of an inline-asm operand: the constraint letter and the C type it binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// "r": a 32-bit integer register (`unsigned`).
    B32,
    /// "f": an f32 register.
    F32,
}

impl Reg {
    fn letter(self) -> char {
        match self {
            Reg::B32 => 'r',
            Reg::F32 => 'f',
        }
    }
}

/// One operand of an emulated PTX instruction: written or read, and how many registers (a
/// vector `{%a, %b, ...}` when more than one).
#[derive(Clone, Copy, Debug)]
pub struct PtxOperand {
    pub written: bool,
    pub regs: usize,
    pub class: Reg,
}

/// A PTX instruction the emulator executes: its exact opcode with modifiers, its operands, and
/// the `rlemu_ptx` function (kernels/emu/rlemu.h) that implements it. The function takes the
/// source location, then a pointer per written register, then the value of each read register.
pub struct PtxForm {
    pub opcode: &'static str,
    pub operands: &'static [PtxOperand],
    pub function: &'static str,
}

const fn out(regs: usize, class: Reg) -> PtxOperand {
    PtxOperand {
        written: true,
        regs,
        class,
    }
}

const fn inp(regs: usize, class: Reg) -> PtxOperand {
    PtxOperand {
        written: false,
        regs,
        class,
    }
}

/// The inline PTX the emulator knows. Anything else in a kernel is a build error.
pub const PTX_FORMS: &[PtxForm] = &[
    PtxForm {
        opcode: "cvt.rna.tf32.f32",
        operands: &[out(1, Reg::B32), inp(1, Reg::F32)],
        function: "rlemu_ptx::cvt_rna_tf32_f32",
    },
    PtxForm {
        opcode: "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32",
        operands: &[
            out(4, Reg::F32),
            inp(4, Reg::B32),
            inp(2, Reg::B32),
            inp(4, Reg::F32),
        ],
        function: "rlemu_ptx::mma_m16n8k8_row_col_f32_tf32_tf32_f32",
    },
];

/// One operand of an asm statement: its constraint (`=r`, `+f`, `r`) and C expression.
struct AsmOperand {
    constraint: String,
    expr: String,
}

fn unescape_literals(file: &str, line: usize, text: &str) -> Result<String, String> {
    let mut out = String::new();
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    while i < b.len() {
        if b[i] != b'"' {
            return Err(format!(
                "{file}:{line}: inline asm: expected a string literal as the PTX template"
            ));
        }
        let end = literal_end(b, i);
        let mut chars = text[i + 1..end - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        i = skip_ws(b, end);
    }
    Ok(out)
}

fn parse_asm_operands(file: &str, line: usize, text: &str) -> Result<Vec<AsmOperand>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    split_top(text, b',')
        .into_iter()
        .map(|op| {
            let op = op.trim();
            let b = op.as_bytes();
            if b.first() != Some(&b'"') {
                return Err(format!(
                    "{file}:{line}: inline asm operand `{op}`: expected \"constraint\"(expression)"
                ));
            }
            let end = literal_end(b, 0);
            let open = skip_ws(b, end);
            if b.get(open) != Some(&b'(') || matching(b, open) != Some(b.len() - 1) {
                return Err(format!(
                    "{file}:{line}: inline asm operand `{op}`: expected \"constraint\"(expression)"
                ));
            }
            Ok(AsmOperand {
                constraint: op[1..end - 1].to_string(),
                expr: op[open + 1..b.len() - 1].trim().to_string(),
            })
        })
        .collect()
}

/// The operand numbers of one PTX operand: `%3` or `{%0, %1, %2, %3}`.
fn ptx_registers(file: &str, line: usize, text: &str) -> Result<Vec<usize>, String> {
    let t = text.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(t);
    inner
        .split(',')
        .map(|r| {
            let r = r.trim();
            r.strip_prefix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    format!(
                        "{file}:{line}: PTX operand `{r}`: the emulator binds only %N operands \
                         (no immediates, named registers or predicates)"
                    )
                })
        })
        .collect()
}

/// Translates one PTX instruction (`opcode operands`) bound to `operands` into a C++ call.
fn translate_instruction(
    file: &str,
    line: usize,
    instr: &str,
    operands: &[AsmOperand],
    outputs: usize,
) -> Result<String, String> {
    let instr = instr.trim();
    let (opcode, rest) = instr.split_once(char::is_whitespace).unwrap_or((instr, ""));
    let known = || {
        PTX_FORMS
            .iter()
            .map(|f| f.opcode)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let form = PTX_FORMS.iter().find(|f| f.opcode == opcode).ok_or_else(|| {
        format!(
            "{file}:{line}: inline PTX `{opcode}` is not known to the CUDA emulator (it knows: {}); \
             add its semantics to rlemu_ptx (kernels/emu/rlemu.h) and PTX_FORMS \
             (src/device/kernel_source.rs)",
            known()
        )
    })?;
    let groups: Vec<&str> = if rest.trim().is_empty() {
        Vec::new()
    } else {
        split_top(rest, b',')
    };
    if groups.len() != form.operands.len() {
        return Err(format!(
            "{file}:{line}: `{opcode}` takes {} operands, the asm gives {}",
            form.operands.len(),
            groups.len()
        ));
    }
    let mut written = Vec::new();
    let mut read = Vec::new();
    for (k, (group, spec)) in groups.iter().zip(form.operands).enumerate() {
        let regs = ptx_registers(file, line, group)?;
        if regs.len() != spec.regs {
            return Err(format!(
                "{file}:{line}: operand {k} of `{opcode}` takes {} registers, the asm gives {}",
                spec.regs,
                regs.len()
            ));
        }
        for r in regs {
            let op = operands.get(r).ok_or_else(|| {
                format!(
                    "{file}:{line}: `{opcode}` names %{r}, but the asm binds {} operands",
                    operands.len()
                )
            })?;
            let letter = op.constraint.trim_start_matches(['=', '+', '&']);
            if letter != spec.class.letter().to_string() {
                return Err(format!(
                    "{file}:{line}: operand %{r} of `{opcode}` is bound with \"{}\", the \
                     instruction needs a \"{}\" register there",
                    op.constraint,
                    spec.class.letter()
                ));
            }
            let is_output = r < outputs;
            if spec.written {
                if !is_output {
                    return Err(format!(
                        "{file}:{line}: `{opcode}` writes %{r}, which the asm lists as an input"
                    ));
                }
                written.push(format!("&({})", op.expr));
            } else {
                if is_output && !op.constraint.starts_with('+') {
                    return Err(format!(
                        "{file}:{line}: `{opcode}` reads %{r}, a write-only (\"=\") output"
                    ));
                }
                read.push(format!("({})", op.expr));
            }
        }
    }
    let args: Vec<String> = ["__FILE__".to_string(), "__LINE__".to_string()]
        .into_iter()
        .chain(written)
        .chain(read)
        .collect();
    Ok(format!("{}({});", form.function, args.join(", ")))
}

/// Translates the asm statement whose parenthesised body is `body` (between the parentheses).
fn translate_asm(file: &str, line: usize, body: &str) -> Result<String, String> {
    let sections = split_top(body, b':');
    if sections.len() > 4 {
        return Err(format!(
            "{file}:{line}: inline asm with goto labels is not supported"
        ));
    }
    let template = unescape_literals(file, line, sections[0])?;
    let outputs = parse_asm_operands(file, line, sections.get(1).copied().unwrap_or(""))?;
    let inputs = parse_asm_operands(file, line, sections.get(2).copied().unwrap_or(""))?;
    let n_out = outputs.len();
    let operands: Vec<AsmOperand> = outputs.into_iter().chain(inputs).collect();
    for op in &operands[..n_out] {
        if !op.constraint.starts_with('=') && !op.constraint.starts_with('+') {
            return Err(format!(
                "{file}:{line}: asm output `{}` has constraint \"{}\" without = or +",
                op.expr, op.constraint
            ));
        }
    }
    let mut code = String::from("{ ");
    let mut any = false;
    for instr in template.split(';') {
        if instr.trim().is_empty() {
            continue;
        }
        any = true;
        code.push_str(&translate_instruction(file, line, instr, &operands, n_out)?);
        code.push(' ');
    }
    if !any {
        return Err(format!("{file}:{line}: empty inline asm"));
    }
    code.push('}');
    Ok(code)
}

/// `code` with the text at `range` replaced by `with`, padded with the newlines the original
/// text held so that every later line keeps its number.
fn splice(code: &mut String, range: std::ops::Range<usize>, with: &str) {
    let newlines = code[range.clone()].matches('\n').count();
    let mut replacement = with.to_string();
    for _ in 0..newlines {
        replacement.push('\n');
    }
    code.replace_range(range, &replacement);
}

/// The kernel file `file` (`name.cu` as written; `path` is how error messages and `__FILE__`
/// name it) translated into C++ for the emulator, with `common` (common.cuh) spliced in at its
/// include line. The result still needs kernels/emu/rlemu.h before it and a namespace around it
/// (build.rs adds both).
pub fn emulator_source(
    path: &str,
    source: &str,
    common_path: &str,
    common: &str,
) -> Result<String, String> {
    let common_body = translate(common_path, &common.replace("#pragma once", ""))?;
    let body = translate(path, source)?;
    let lines: Vec<&str> = body.lines().collect();
    let mut out = format!("#line 1 \"{path}\"\n");
    for (i, l) in lines.iter().enumerate() {
        if l.trim() == "#include \"common.cuh\"" {
            let _ = writeln!(out, "#line 1 \"{common_path}\"\n{common_body}");
            let _ = writeln!(out, "#line {} \"{path}\"", i + 2);
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Applies the three translations (asm, kernel linkage, dynamic shared memory) to one file.
fn translate(path: &str, source: &str) -> Result<String, String> {
    let mut code = source.to_string();
    let mut i = 0;
    loop {
        let blanked = blank_comments(&code);
        let b = blanked.as_bytes();
        // The next construct to translate at or after i.
        let mut found = None;
        let mut j = i;
        while j < b.len() {
            if b[j] == b'"' || b[j] == b'\'' {
                j = literal_end(b, j);
                continue;
            }
            if ["asm", "__asm__", "__asm"].iter().any(|w| word_at(b, j, w))
                || word_at(b, j, "extern")
            {
                found = Some(j);
                break;
            }
            j += 1;
        }
        let Some(at) = found else { break };
        let line = line_of(&blanked, at);
        if word_at(b, at, "extern") {
            let after = skip_ws(b, at + "extern".len());
            if blanked[after..].starts_with("\"C\"") {
                let next = skip_ws(b, after + 3);
                if word_at(b, next, "__global__") {
                    splice(&mut code, at..after + 3, "");
                    i = at;
                    continue;
                }
                i = after + 3;
                continue;
            }
            if word_at(b, after, "__shared__") {
                let semi = blanked[after..]
                    .find(';')
                    .map(|k| after + k)
                    .ok_or_else(|| format!("{path}:{line}: unterminated extern __shared__"))?;
                let decl = blanked[after + "__shared__".len()..semi].trim().to_string();
                let decl = strip_align(&decl);
                let Some(bracket) = decl.rfind('[') else {
                    return Err(format!(
                        "{path}:{line}: extern __shared__ must declare an array `T name[]`"
                    ));
                };
                let head = decl[..bracket].trim();
                let name_start = head
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map(|k| k + 1)
                    .unwrap_or(0);
                let (ty, name) = (head[..name_start].trim(), &head[name_start..]);
                if ty.is_empty() || name.is_empty() || decl[bracket..].replace(' ', "") != "[]" {
                    return Err(format!(
                        "{path}:{line}: extern __shared__ must declare an array `T name[]`"
                    ));
                }
                let replacement = format!(
                    "{ty}* const {name} = reinterpret_cast<{ty}*>(rlemu_dynamic_shared());"
                );
                splice(&mut code, at..semi + 1, &replacement);
                i = at + replacement.len();
                continue;
            }
            i = after;
            continue;
        }
        // asm [volatile] ( ... ) ;
        let mut k = at
            + (0..)
                .take_while(|&d| b.get(at + d).is_some_and(|&c| is_ident(c)))
                .count();
        k = skip_ws(b, k);
        for q in ["volatile", "__volatile__"] {
            if word_at(b, k, q) {
                k = skip_ws(b, k + q.len());
            }
        }
        if b.get(k) != Some(&b'(') {
            return Err(format!("{path}:{line}: cannot read this inline asm"));
        }
        let close = matching(b, k).ok_or_else(|| format!("{path}:{line}: unclosed inline asm"))?;
        let semi = skip_ws(b, close + 1);
        if b.get(semi) != Some(&b';') {
            return Err(format!(
                "{path}:{line}: inline asm must be a statement ending in `;`"
            ));
        }
        let replacement = translate_asm(path, line, &blanked[k + 1..close])?;
        splice(&mut code, at..semi + 1, &replacement);
        i = at + replacement.len();
    }
    Ok(code)
}

/// A declaration without its `__align__(N)` attribute (the emulator aligns dynamic shared
/// memory to 16 bytes, as the hardware does).
fn strip_align(decl: &str) -> String {
    match decl.find("__align__") {
        Some(a) => match decl[a..].find(')') {
            Some(c) => format!("{} {}", &decl[..a], &decl[a + c + 1..]),
            None => decl.to_string(),
        },
        None => decl.to_string(),
    }
}

/// The C++ trampoline through which the emulator starts one thread of `kernel` (defined in
/// namespace `ns`): it installs the thread's context and calls the kernel with the launch's
/// arguments, each read from `args[i]` as cuLaunchKernel reads its parameter array.
pub fn trampoline(entry: &str, ns: &str, kernel: &ParsedKernel) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "extern \"C\" void {entry}(rlemu_thread* self, void* const* args) {{"
    );
    let _ = writeln!(s, "    rlemu_current = self;");
    let args: Vec<String> = kernel
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| format!("*static_cast<{} const*>(args[{i}])", p.ty.c_type()))
        .collect();
    let _ = writeln!(s, "    {ns}::{}({});", kernel.name, args.join(", "));
    let _ = writeln!(s, "}}");
    s
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

    #[test]
    fn inline_ptx_becomes_emulator_calls_with_lines_kept() {
        let src = "__device__ unsigned f(float v) {\n    unsigned r;\n    asm(\"cvt.rna.tf32.f32 %0, %1;\"\n        : \"=r\"(r) : \"f\"(v));\n    return r;\n}\n";
        let t = translate("k.cu", src).unwrap();
        assert!(
            t.contains("rlemu_ptx::cvt_rna_tf32_f32(__FILE__, __LINE__, &(r), (v));"),
            "{t}"
        );
        assert_eq!(t.lines().count(), src.lines().count());
        assert!(t.lines().nth(4).unwrap().contains("return r;"));
    }

    #[test]
    fn mma_operands_bind_in_order_and_read_write_outputs_are_read() {
        let src = "asm volatile(\"mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 \"\n\
            \"{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\"\n\
            : \"+f\"(d[0]), \"+f\"(d[1]), \"+f\"(d[2]), \"+f\"(d[3])\n\
            : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"r\"(b[0]), \"r\"(b[1]));";
        let t = translate("k.cu", src).unwrap();
        assert!(t.contains("mma_m16n8k8_row_col_f32_tf32_tf32_f32(__FILE__, __LINE__, &(d[0]), &(d[1]), &(d[2]), &(d[3]), (a[0]), (a[1]), (a[2]), (a[3]), (b[0]), (b[1]), (d[0]), (d[1]), (d[2]), (d[3]));"), "{t}");
    }

    #[test]
    fn unknown_ptx_is_an_error_naming_file_line_and_instruction() {
        let src = "\n\nvoid f() { asm volatile(\"ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\" : \"=r\"(a) : \"r\"(p)); }";
        let e = translate("kernels/x.cu", src).unwrap_err();
        assert!(e.starts_with("kernels/x.cu:3:"), "{e}");
        assert!(
            e.contains("ldmatrix.sync.aligned.m8n8.x4.shared.b16") && e.contains("not known"),
            "{e}"
        );
    }

    #[test]
    fn mismatched_constraints_are_errors() {
        let wrong = "asm(\"cvt.rna.tf32.f32 %0, %1;\" : \"=f\"(r) : \"f\"(v));";
        assert!(translate("k.cu", wrong)
            .unwrap_err()
            .contains("needs a \"r\""));
        let write_only = "asm(\"mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\" : \"=f\"(d[0]), \"=f\"(d[1]), \"=f\"(d[2]), \"=f\"(d[3]) : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"r\"(b[0]), \"r\"(b[1]));";
        assert!(translate("k.cu", write_only)
            .unwrap_err()
            .contains("write-only"));
    }

    #[test]
    fn kernel_linkage_and_dynamic_shared_memory() {
        let src = "extern \"C\" __global__ void k(int n) {\n    extern __shared__ __align__(16) float dq[];\n}\n";
        let t = translate("k.cu", src).unwrap();
        assert!(!t.contains("extern \"C\""), "{t}");
        assert!(t.contains("__global__ void k(int n)"));
        assert!(
            t.contains("float* const dq = reinterpret_cast<float*>(rlemu_dynamic_shared());"),
            "{t}"
        );
        assert_eq!(t.lines().count(), src.lines().count());
    }

    #[test]
    fn common_header_is_spliced_at_its_include_with_line_markers() {
        let src = "// k\n#include \"common.cuh\"\nint x;\n";
        let t = emulator_source(
            "kernels/k.cu",
            src,
            "kernels/common.cuh",
            "#pragma once\nint c;\n",
        )
        .unwrap();
        assert!(
            t.contains("#line 1 \"kernels/common.cuh\"\n\nint c;"),
            "{t}"
        );
        assert!(t.contains("#line 3 \"kernels/k.cu\"\nint x;"), "{t}");
        assert!(!t.contains("pragma once"));
    }
}
