//! Reading C source as text: comments blanked (line numbers kept), literals skipped, brackets
//! matched, top-level splits and `#define`d numbers.

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
pub(super) fn literal_end(b: &[u8], start: usize) -> usize {
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

pub(super) fn line_of(s: &str, offset: usize) -> usize {
    s[..offset].matches('\n').count() + 1
}

pub(super) fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether `word` occurs in `code` at `i` as a whole identifier.
pub(super) fn word_at(code: &[u8], i: usize, word: &str) -> bool {
    let w = word.as_bytes();
    code.len() >= i + w.len()
        && &code[i..i + w.len()] == w
        && (i == 0 || !is_ident(code[i - 1]))
        && code.get(i + w.len()).is_none_or(|&c| !is_ident(c))
}

pub(super) fn skip_ws(code: &[u8], mut i: usize) -> usize {
    while i < code.len() && code[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The index of the bracket closing the one at `open` (`(`, `[` or `{`), skipping literals.
pub(super) fn matching(code: &[u8], open: usize) -> Option<usize> {
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
pub(super) fn split_top(s: &str, sep: u8) -> Vec<&str> {
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
pub(super) fn defines(code: &str) -> Vec<(String, String)> {
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

pub(super) fn resolve_number(expr: &str, defs: &[(String, String)], depth: usize) -> Option<u32> {
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
