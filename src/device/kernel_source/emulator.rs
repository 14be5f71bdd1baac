//! The translation of a kernel file into the C++ the CUDA emulator compiles: inline PTX into
//! `rlemu_ptx` calls (an instruction not in ptx_forms.rs's `PTX_FORMS` is an error),
//! `extern "C" __global__` into `__global__`, `extern __shared__` arrays into the launch's
//! dynamic shared memory, and the per-kernel trampolines.

use super::ptx_forms::{PtxForm, PTX_FORMS};
use super::text::{
    blank_comments, is_ident, line_of, literal_end, matching, skip_ws, split_top, word_at,
};
use super::ParsedKernel;
use std::fmt::Write as _;

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

/// The operand numbers of one PTX operand: `%3`, `{%0, %1, %2, %3}`, or with `address` `[%3]`.
fn ptx_registers(file: &str, line: usize, text: &str, address: bool) -> Result<Vec<usize>, String> {
    let t = text.trim();
    let bracketed = t.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    if address != bracketed.is_some() {
        return Err(format!(
            "{file}:{line}: PTX operand `{t}`: {}",
            if address {
                "expected an address `[%N]`"
            } else {
                "an address `[...]` where the instruction takes a register"
            }
        ));
    }
    let t = bracketed.unwrap_or(t).trim();
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
    let forms: Vec<&PtxForm> = PTX_FORMS.iter().filter(|f| f.opcode == opcode).collect();
    if forms.is_empty() {
        return Err(format!(
            "{file}:{line}: inline PTX `{opcode}` is not known to the CUDA emulator (it knows: {}); \
             add its semantics to rlemu_ptx (kernels/emu/rlemu.h) and PTX_FORMS \
             (src/device/kernel_source.rs)",
            known()
        ));
    }
    let groups: Vec<&str> = if rest.trim().is_empty() {
        Vec::new()
    } else {
        split_top(rest, b',')
    };
    // An opcode may have forms of different arity (cp.async with and without a source size).
    let form = forms
        .iter()
        .find(|f| f.operands.len() == groups.len())
        .ok_or_else(|| {
            let counts: Vec<String> = forms.iter().map(|f| f.operands.len().to_string()).collect();
            format!(
                "{file}:{line}: `{opcode}` takes {} operands, the asm gives {}",
                counts.join(" or "),
                groups.len()
            )
        })?;
    let mut written = Vec::new();
    let mut read = Vec::new();
    for (k, (group, spec)) in groups.iter().zip(form.operands).enumerate() {
        let regs = ptx_registers(file, line, group, spec.address)?;
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
        let src = "\n\nvoid f() { asm volatile(\"ldmatrix.sync.aligned.m8n8.x4.b8 {%0,%1,%2,%3}, [%4];\" : \"=r\"(a) : \"r\"(p)); }";
        let e = translate("kernels/x.cu", src).unwrap_err();
        assert!(e.starts_with("kernels/x.cu:3:"), "{e}");
        assert!(
            e.contains("ldmatrix.sync.aligned.m8n8.x4.b8") && e.contains("not known"),
            "{e}"
        );
    }

    #[test]
    fn addresses_immediates_and_forms_of_two_arities() {
        let ld = "asm volatile(\"ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\" : \"=r\"(r[0]), \"=r\"(r[1]), \"=r\"(r[2]), \"=r\"(r[3]) : \"r\"(s));";
        let t = translate("k.cu", ld).unwrap();
        assert!(
            t.contains("rlemu_ptx::ldmatrix_x4_trans(__FILE__, __LINE__, &(r[0]), &(r[1]), &(r[2]), &(r[3]), (s));"),
            "{t}"
        );
        let zfill = "asm volatile(\"cp.async.cg.shared.global [%0], [%1], %2, %3;\" :: \"r\"(d), \"l\"(g), \"n\"(16), \"r\"(bytes));";
        let t = translate("k.cu", zfill).unwrap();
        assert!(
            t.contains(
                "rlemu_ptx::cp_async_cg_zfill(__FILE__, __LINE__, (d), (g), (16), (bytes));"
            ),
            "{t}"
        );
        let plain = "asm volatile(\"cp.async.ca.shared.global [%0], [%1], %2;\\n\" :: \"r\"(d), \"l\"(g), \"n\"(8));";
        assert!(translate("k.cu", plain)
            .unwrap()
            .contains("rlemu_ptx::cp_async_ca(__FILE__, __LINE__, (d), (g), (8));"));
        let groups =
            "asm volatile(\"cp.async.commit_group;\\ncp.async.wait_group %0;\" :: \"n\"(1));";
        let t = translate("k.cu", groups).unwrap();
        assert!(
            t.contains("rlemu_ptx::cp_async_commit_group(__FILE__, __LINE__); rlemu_ptx::cp_async_wait_group(__FILE__, __LINE__, (1));"),
            "{t}"
        );
        let unbracketed = "asm volatile(\"cp.async.cg.shared.global %0, [%1], %2;\" :: \"r\"(d), \"l\"(g), \"n\"(16));";
        let e = translate("k.cu", unbracketed).unwrap_err();
        assert!(e.contains("expected an address `[%N]`"), "{e}");
        let arity =
            "asm volatile(\"cp.async.cg.shared.global [%0], [%1];\" :: \"r\"(d), \"l\"(g));";
        let e = translate("k.cu", arity).unwrap_err();
        assert!(e.contains("takes 3 or 4 operands, the asm gives 2"), "{e}");
        let pointer_in_r = "asm volatile(\"cp.async.cg.shared.global [%0], [%1], %2;\" :: \"r\"(d), \"r\"(g), \"n\"(16));";
        let e = translate("k.cu", pointer_in_r).unwrap_err();
        assert!(e.contains("needs a \"l\""), "{e}");
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
