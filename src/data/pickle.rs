//! A small, safe reader for Python pickles: enough of the pickle virtual machine (protocols 0 to
//! 5) to read the CIFAR "python version" files and the numpy arrays inside them.
//!
//! Nothing is executed: a call (`REDUCE`, `NEWOBJ`) becomes a [`Value::Reduce`] node and a
//! `BUILD` a [`Value::Build`] node, which the caller interprets. The only calls evaluated are
//! the byte-string constructors Python itself uses to pickle `bytes` at protocols below 3
//! (`_codecs.encode(s, 'latin1')`, `bytes()`, `bytearray(...)`), so that byte strings look the
//! same whichever protocol wrote them.
//!
//! Safety against hostile or damaged files: every length field is checked against the input that
//! remains before anything is allocated, values live in an arena so shared references
//! (memo gets) cost nothing while parsing, and expanding the arena into a [`Value`] tree is
//! bounded in depth and in total size, so cycles and "billion laughs" nesting give errors.

use crate::error::{Error, Result};
use std::collections::HashMap;

/// A value read from a pickle.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Entries in insertion order; a repeated key is kept twice (lookups take the last).
    Dict(Vec<(Value, Value)>),
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)`, not evaluated. `NEWOBJ` (`cls.__new__(cls, *args)`) also lands here.
    Reduce {
        callable: Box<Value>,
        args: Box<Value>,
    },
    /// `obj.__setstate__(state)`, not evaluated.
    Build {
        obj: Box<Value>,
        state: Box<Value>,
    },
}

impl Value {
    /// A short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global { .. } => "global",
            Value::Reduce { .. } => "call (REDUCE)",
            Value::Build { .. } => "object (BUILD)",
        }
    }

    /// The text of a `str`, or of a `bytes` that is valid UTF-8: dict keys are `bytes` in files
    /// written by Python 2 and `str` in files written by Python 3.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// An `int` (or `bool`, which Python 2 files use for flags) as i64.
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::Bool(b) => Some(b as i64),
            _ => None,
        }
    }

    /// The entry of a dict whose key, as text, is `key` (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .rev()
                .find(|(k, _)| k.as_text() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// True for `Global { module, name }` with exactly these names.
    pub fn is_global(&self, module: &str, name: &str) -> bool {
        matches!(self, Value::Global { module: m, name: n } if m == module && n == name)
    }
}

/// Parses a whole pickle. `what` (usually the file name) starts every error message.
pub fn parse(input: &[u8], what: &str) -> Result<Value> {
    let mut vm = Vm {
        input,
        pos: 0,
        what,
        arena: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = vm.run()?;
    // Generous for real files (each node or byte of the tree comes from at least one input
    // byte, up to memo sharing of small globals) yet linear, which stops exponential nesting.
    let mut conv = Conv {
        arena: &vm.arena,
        input,
        what,
        budget: input.len().saturating_mul(8).saturating_add(1 << 20),
    };
    conv.value(root, 0)
}

type Id = usize;

/// Arena node: like [`Value`] but children are arena ids, and strings read straight from the
/// input are kept as ranges so that a 150 MB array is copied once, when the tree is built.
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    InBytes(usize, usize),
    Bytes(Vec<u8>),
    InStr(usize, usize),
    Str(String),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(String, String),
    Reduce(Id, Id),
    Build(Id, Id),
}

struct Vm<'a> {
    input: &'a [u8],
    pos: usize,
    what: &'a str,
    arena: Vec<Obj>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

const MAX_DEPTH: usize = 512;

impl<'a> Vm<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::Data(format!("{}: pickle: {msg}", self.what))
    }

    fn take(&mut self, n: u64) -> Result<(usize, usize)> {
        let left = self.input.len() - self.pos;
        if n > left as u64 {
            return Err(self.err(format_args!(
                "truncated: an item at offset {} needs {n} bytes but only {left} remain",
                self.pos
            )));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok((start, n as usize))
    }

    fn bytes(&mut self, n: u64) -> Result<&'a [u8]> {
        let (s, n) = self.take(n)?;
        Ok(&self.input[s..s + n])
    }

    fn uint(&mut self, n: usize) -> Result<u64> {
        let b = self.bytes(n as u64)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.input[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.err(format_args!(
                "truncated: no end of line after offset {}",
                self.pos
            )));
        };
        self.pos += n + 1;
        std::str::from_utf8(&rest[..n]).map_err(|_| self.err("a text line is not valid UTF-8"))
    }

    fn push(&mut self, obj: Obj) {
        self.arena.push(obj);
        self.stack.push(self.arena.len() - 1);
    }

    fn pop(&mut self) -> Result<Id> {
        match self.stack.pop() {
            Some(id) if self.marks.last().is_none_or(|&m| self.stack.len() >= m) => Ok(id),
            _ => Err(self.err(format_args!("stack underflow at offset {}", self.pos))),
        }
    }

    fn top(&self) -> Result<Id> {
        match self.stack.last() {
            Some(&id) if self.marks.last().is_none_or(|&m| self.stack.len() > m) => Ok(id),
            _ => Err(self.err(format_args!("empty stack at offset {}", self.pos))),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        match self.marks.pop() {
            Some(m) if m <= self.stack.len() => Ok(self.stack.split_off(m)),
            _ => Err(self.err(format_args!("missing MARK before offset {}", self.pos))),
        }
    }

    fn int(&mut self, v: i64) {
        self.push(Obj::Int(v));
    }

    /// Little-endian two's complement of any length, as Python's LONG1/LONG4 store it.
    fn long(&mut self, n: u64) -> Result<i64> {
        let b = self.bytes(n)?;
        let negative = b.last().is_some_and(|&x| x & 0x80 != 0);
        let fill = if negative { 0xFF } else { 0 };
        if b.len() > 8 && b[8..].iter().any(|&x| x != fill) {
            return Err(self.err(format_args!(
                "an integer of {} bytes does not fit in 64 bits",
                b.len()
            )));
        }
        let mut buf = [fill; 8];
        let k = b.len().min(8);
        buf[..k].copy_from_slice(&b[..k]);
        let v = i64::from_le_bytes(buf);
        if (v < 0) != negative {
            return Err(self.err("an integer does not fit in 64 bits"));
        }
        Ok(v)
    }

    fn in_bytes(&mut self, n: u64) -> Result<()> {
        let (s, n) = self.take(n)?;
        self.push(Obj::InBytes(s, n));
        Ok(())
    }

    fn in_str(&mut self, n: u64) -> Result<()> {
        let (s, n) = self.take(n)?;
        if std::str::from_utf8(&self.input[s..s + n]).is_err() {
            return Err(self.err(format_args!("the string at offset {s} is not valid UTF-8")));
        }
        self.push(Obj::InStr(s, n));
        Ok(())
    }

    fn text(&self, id: Id) -> Option<&str> {
        match self.arena.get(id)? {
            Obj::Str(s) => Some(s),
            Obj::InStr(s, n) => std::str::from_utf8(&self.input[*s..*s + *n]).ok(),
            _ => None,
        }
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<()> {
        match self.memo.get(&key) {
            Some(&id) => {
                self.stack.push(id);
                Ok(())
            }
            None => Err(self.err(format_args!(
                "memo key {key} read before it was written (offset {})",
                self.pos
            ))),
        }
    }

    fn run(&mut self) -> Result<Id> {
        loop {
            let at = self.pos;
            let Some(&op) = self.input.get(at) else {
                return Err(self.err(format_args!(
                    "truncated: input ends at offset {at} before STOP"
                )));
            };
            self.pos += 1;
            match op {
                b'.' => return self.pop(),
                0x80 => {
                    let v = self.uint(1)?;
                    if v > 5 {
                        return Err(self.err(format_args!("protocol {v} is newer than 5")));
                    }
                }
                0x95 => {
                    self.uint(8)?; // FRAME: its contents follow inline
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(t);
                }
                b'N' => self.push(Obj::None),
                0x88 => self.push(Obj::Bool(true)),
                0x89 => self.push(Obj::Bool(false)),
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.int(v as i64)
                }
                b'K' => {
                    let v = self.uint(1)?;
                    self.int(v as i64)
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.int(v as i64)
                }
                0x8a => {
                    let n = self.uint(1)?;
                    let v = self.long(n)?;
                    self.int(v)
                }
                0x8b => {
                    let n = self.uint(4)?;
                    let v = self.long(n)?;
                    self.int(v)
                }
                b'I' | b'L' => {
                    let line = self.line()?;
                    let obj = match line {
                        "01" if op == b'I' => Obj::Bool(true),
                        "00" if op == b'I' => Obj::Bool(false),
                        _ => match line.trim_end_matches('L').parse::<i64>() {
                            Ok(v) => Obj::Int(v),
                            Err(_) => {
                                return Err(
                                    self.err(format_args!("bad integer {line:?} at offset {at}"))
                                )
                            }
                        },
                    };
                    self.push(obj)
                }
                b'G' => {
                    let v = f64::from_bits(u64::from_be_bytes(
                        self.bytes(8)?.try_into().unwrap_or([0; 8]),
                    ));
                    self.push(Obj::Float(v))
                }
                b'F' => {
                    let line = self.line()?;
                    match line.parse::<f64>() {
                        Ok(v) => self.push(Obj::Float(v)),
                        Err(_) => {
                            return Err(self.err(format_args!("bad float {line:?} at offset {at}")))
                        }
                    }
                }
                b'T' => {
                    let n = self.uint(4)? as u32 as i32;
                    if n < 0 {
                        return Err(
                            self.err(format_args!("negative string length {n} at offset {at}"))
                        );
                    }
                    self.in_bytes(n as u64)?
                }
                b'U' | b'C' => {
                    let n = self.uint(1)?;
                    self.in_bytes(n)?
                }
                b'B' => {
                    let n = self.uint(4)?;
                    self.in_bytes(n)?
                }
                0x8e | 0x96 => {
                    let n = self.uint(8)?;
                    self.in_bytes(n)?
                }
                b'X' => {
                    let n = self.uint(4)?;
                    self.in_str(n)?
                }
                0x8c => {
                    let n = self.uint(1)?;
                    self.in_str(n)?
                }
                0x8d => {
                    let n = self.uint(8)?;
                    self.in_str(n)?
                }
                b'S' => {
                    let line = self.line()?;
                    let b = unquote(line)
                        .ok_or_else(|| self.err(format_args!("bad STRING at offset {at}")))?;
                    self.push(Obj::Bytes(b))
                }
                b'V' => {
                    let line = self.line()?;
                    let s = raw_unicode_unescape(line)
                        .ok_or_else(|| self.err(format_args!("bad UNICODE at offset {at}")))?;
                    self.push(Obj::Str(s))
                }
                b'}' => self.push(Obj::Dict(Vec::new())),
                b']' => self.push(Obj::List(Vec::new())),
                b')' => self.push(Obj::Tuple(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.err(format_args!(
                            "DICT with an odd number of items at offset {at}"
                        )));
                    }
                    let pairs = items.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                    self.push(Obj::Dict(pairs))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::List(items))
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = vec![0; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop()?;
                    }
                    self.push(Obj::Tuple(items))
                }
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        vec![self.pop()?]
                    } else {
                        self.pop_mark()?
                    };
                    let list = self.top()?;
                    match &mut self.arena[list] {
                        Obj::List(v) => v.extend(items),
                        _ => {
                            return Err(
                                self.err(format_args!("APPEND to a non-list at offset {at}"))
                            )
                        }
                    }
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let v = self.pop()?;
                        vec![self.pop()?, v]
                    } else {
                        self.pop_mark()?
                    };
                    if items.len() % 2 != 0 {
                        return Err(self.err(format_args!(
                            "SETITEMS with an odd number of items at offset {at}"
                        )));
                    }
                    let dict = self.top()?;
                    match &mut self.arena[dict] {
                        Obj::Dict(d) => d.extend(items.chunks_exact(2).map(|p| (p[0], p[1]))),
                        _ => {
                            return Err(
                                self.err(format_args!("SETITEM on a non-dict at offset {at}"))
                            )
                        }
                    }
                }
                b'q' => {
                    let k = self.uint(1)?;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.uint(4)?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?
                }
                b'p' => {
                    let line = self.line()?;
                    let k = line
                        .parse()
                        .map_err(|_| self.err(format_args!("bad PUT key at offset {at}")))?;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.uint(1)?;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.uint(4)?;
                    self.memo_get(k)?
                }
                b'g' => {
                    let line = self.line()?;
                    let k = line
                        .parse()
                        .map_err(|_| self.err(format_args!("bad GET key at offset {at}")))?;
                    self.memo_get(k)?
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.push(Obj::Global(module, name))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (self.text(module), self.text(name)) {
                        (Some(m), Some(n)) => {
                            let g = Obj::Global(m.to_string(), n.to_string());
                            self.push(g)
                        }
                        _ => {
                            return Err(self
                                .err(format_args!("STACK_GLOBAL of non-strings at offset {at}")))
                        }
                    }
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let obj = self.reduce(callable, args)?;
                    self.push(obj)
                }
                b'b' => {
                    // Python updates the object in place, so earlier memo references see the
                    // state too: the node is replaced and its old content moved to a new one.
                    let state = self.pop()?;
                    let obj = self.top()?;
                    let old = std::mem::replace(&mut self.arena[obj], Obj::None);
                    self.arena.push(old);
                    self.arena[obj] = Obj::Build(self.arena.len() - 1, state);
                }
                _ => {
                    let name = opcode_name(op);
                    return Err(self.err(format_args!(
                        "unsupported opcode 0x{op:02x}{name} at offset {at}; this reader handles \
                         plain data and numpy arrays only"
                    )));
                }
            }
        }
    }

    /// Evaluates the byte-string constructors (see the module comment); anything else stays a
    /// call node.
    fn reduce(&mut self, callable: Id, args: Id) -> Result<Obj> {
        let (module, name) = match &self.arena[callable] {
            Obj::Global(m, n) => (m.as_str(), n.as_str()),
            _ => return Ok(Obj::Reduce(callable, args)),
        };
        let builtin = module == "__builtin__" || module == "builtins";
        let is_ctor = (module == "_codecs" && name == "encode")
            || (builtin && (name == "bytes" || name == "bytearray"));
        if !is_ctor {
            return Ok(Obj::Reduce(callable, args));
        }
        let items: Vec<Id> = match &self.arena[args] {
            Obj::Tuple(v) => v.clone(),
            _ => return Ok(Obj::Reduce(callable, args)),
        };
        match items.as_slice() {
            [] if builtin => Ok(Obj::Bytes(Vec::new())),
            [b] if builtin => match self.arena[*b] {
                Obj::InBytes(s, n) => Ok(Obj::InBytes(s, n)),
                Obj::Bytes(ref v) => Ok(Obj::Bytes(v.clone())),
                _ => Ok(Obj::Reduce(callable, args)),
            },
            [s, enc] => {
                let latin1 = self.text(*enc).is_some_and(|e| {
                    ["latin1", "latin-1", "iso-8859-1", "iso8859-1"]
                        .contains(&e.to_ascii_lowercase().as_str())
                });
                match self.text(*s) {
                    Some(text) if latin1 => {
                        let mut out = Vec::with_capacity(text.len());
                        for ch in text.chars() {
                            let c = ch as u32;
                            if c > 0xFF {
                                return Err(self.err(format_args!(
                                    "a latin1-encoded byte string holds the character U+{c:04X}, which is not latin1"
                                )));
                            }
                            out.push(c as u8);
                        }
                        Ok(Obj::Bytes(out))
                    }
                    _ => Ok(Obj::Reduce(callable, args)),
                }
            }
            _ => Ok(Obj::Reduce(callable, args)),
        }
    }
}

/// Expands arena nodes into a tree, within a depth and size budget.
struct Conv<'v> {
    arena: &'v [Obj],
    input: &'v [u8],
    what: &'v str,
    budget: usize,
}

impl Conv<'_> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::Data(format!("{}: pickle: {msg}", self.what))
    }

    fn spend(&mut self, n: usize) -> Result<()> {
        match self.budget.checked_sub(n.saturating_add(1)) {
            Some(b) => {
                self.budget = b;
                Ok(())
            }
            None => Err(self.err(
                "the object graph expands to far more data than the file holds \
                 (shared or recursive references)",
            )),
        }
    }

    fn all(&mut self, ids: &[Id], depth: usize) -> Result<Vec<Value>> {
        self.spend(ids.len())?;
        ids.iter().map(|&c| self.value(c, depth)).collect()
    }

    fn value(&mut self, id: Id, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(self.err(format_args!(
                "nesting deeper than {MAX_DEPTH} levels (or a recursive object)"
            )));
        }
        let (arena, input, d) = (self.arena, self.input, depth + 1);
        Ok(match &arena[id] {
            Obj::None => Value::None,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::Int(*i),
            Obj::Float(f) => Value::Float(*f),
            &Obj::InBytes(s, n) => {
                self.spend(n)?;
                Value::Bytes(input[s..s + n].to_vec())
            }
            Obj::Bytes(b) => {
                self.spend(b.len())?;
                Value::Bytes(b.clone())
            }
            &Obj::InStr(s, n) => {
                self.spend(n)?;
                Value::Str(String::from_utf8_lossy(&input[s..s + n]).into_owned())
            }
            Obj::Str(s) => {
                self.spend(s.len())?;
                Value::Str(s.clone())
            }
            Obj::List(ids) => Value::List(self.all(ids, d)?),
            Obj::Tuple(ids) => Value::Tuple(self.all(ids, d)?),
            Obj::Dict(pairs) => {
                self.spend(pairs.len())?;
                let mut out = Vec::with_capacity(pairs.len());
                for &(k, v) in pairs {
                    out.push((self.value(k, d)?, self.value(v, d)?));
                }
                Value::Dict(out)
            }
            Obj::Global(module, name) => {
                self.spend(module.len() + name.len())?;
                Value::Global {
                    module: module.clone(),
                    name: name.clone(),
                }
            }
            &Obj::Reduce(c, a) => {
                self.spend(1)?;
                let callable = Box::new(self.value(c, d)?);
                let args = Box::new(self.value(a, d)?);
                Value::Reduce { callable, args }
            }
            &Obj::Build(o, s) => {
                self.spend(1)?;
                let obj = Box::new(self.value(o, d)?);
                let state = Box::new(self.value(s, d)?);
                Value::Build { obj, state }
            }
        })
    }
}

/// Decodes a protocol-0 STRING argument: a Python 2 `repr` of a byte string.
fn unquote(line: &str) -> Option<Vec<u8>> {
    let b = line.as_bytes();
    let q = *b.first()?;
    if b.len() < 2 || (q != b'\'' && q != b'"') || *b.last()? != q {
        return None;
    }
    let body = &b[1..b.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'x' => {
                let hex = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// Decodes a protocol-0 UNICODE argument (Python's raw-unicode-escape codec).
fn raw_unicode_unescape(line: &str) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let digits = match (c, chars.peek()) {
            ('\\', Some('u')) => 4,
            ('\\', Some('U')) => 8,
            _ => {
                out.push(c);
                continue;
            }
        };
        chars.next();
        let hex: String = chars.by_ref().take(digits).collect();
        if hex.len() != digits {
            return None;
        }
        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
    }
    Some(out)
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        b'P' | b'Q' => " (PERSID: persistent references)",
        0x82..=0x84 => " (EXT: extension registry)",
        b'i' | b'o' => " (INST/OBJ: protocol-0 class instances)",
        0x8f..=0x91 => " (sets)",
        0x92 => " (NEWOBJ_EX)",
        0x97 | 0x98 => " (out-of-band buffers)",
        _ => " (not a pickle opcode)",
    }
}

/// A numpy array read from a pickle: C-order (row-major) raw data.
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray {
    pub shape: Vec<usize>,
    /// numpy's type string with byte order: `|u1`, `<i8`, `<f4`, ...
    pub dtype: String,
    pub data: Vec<u8>,
}

impl NdArray {
    /// The kind letter and item size of the dtype, e.g. (`'u'`, 1).
    pub fn kind(&self) -> (char, usize) {
        let t = self.dtype.trim_start_matches(['<', '>', '|', '=']);
        let k = t.chars().next().unwrap_or('?');
        (k, t.get(1..).and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// The elements of an integer (or bool) array as i64.
    pub fn to_i64s(&self) -> Option<Vec<i64>> {
        let (k, size) = self.kind();
        if !matches!(k, 'i' | 'u' | 'b') || ![1, 2, 4, 8].contains(&size) {
            return None;
        }
        let big = self.dtype.starts_with('>');
        self.data
            .chunks_exact(size)
            .map(|c| {
                let mut buf = [0u8; 8];
                if big {
                    buf[8 - size..].copy_from_slice(c);
                    buf.reverse();
                } else {
                    buf[..size].copy_from_slice(c);
                }
                let signed = k == 'i' && c[if big { 0 } else { size - 1 }] & 0x80 != 0;
                if signed {
                    buf[size..].fill(0xFF);
                }
                let v = i64::from_le_bytes(buf);
                (k != 'u' || size < 8 || v >= 0).then_some(v)
            })
            .collect()
    }
}

/// Interprets a value as a numpy array: either `_reconstruct` + `BUILD` (protocols 0-4) or
/// `_frombuffer` (protocol 5). Fortran-ordered data is transposed to C order.
pub fn ndarray(value: Value, what: &str) -> Result<NdArray> {
    let err = |msg: String| Error::Data(format!("{what}: numpy array: {msg}"));
    let numpy_fn =
        |v: &Value, modules: &[&str], name: &str| modules.iter().any(|m| v.is_global(m, name));
    let (shape, dtype, fortran, data) = match value {
        Value::Build { obj, state } => {
            let ok = matches!(&*obj, Value::Reduce { callable, .. }
                if numpy_fn(callable, &["numpy.core.multiarray", "numpy._core.multiarray"], "_reconstruct"));
            if !ok {
                return Err(err(format!(
                    "expected numpy's _reconstruct, found {obj:.80?}"
                )));
            }
            let mut st = match *state {
                Value::Tuple(t) if t.len() == 4 || t.len() == 5 => t,
                other => {
                    return Err(err(format!(
                        "expected a 4- or 5-tuple state, found {}",
                        other.kind()
                    )))
                }
            };
            let data = st.pop();
            let fortran = st.pop().and_then(|f| f.as_int());
            let dtype = st.pop();
            let shape = st.pop();
            (shape, dtype, fortran == Some(1), data)
        }
        Value::Reduce { callable, args }
            if numpy_fn(
                &callable,
                &["numpy.core.numeric", "numpy._core.numeric"],
                "_frombuffer",
            ) =>
        {
            let mut a = match *args {
                Value::Tuple(t) if t.len() == 4 => t.into_iter(),
                other => {
                    return Err(err(format!(
                        "expected 4 arguments to _frombuffer, found {}",
                        other.kind()
                    )))
                }
            };
            let (data, dtype, shape, order) = (a.next(), a.next(), a.next(), a.next());
            let fortran = order.as_ref().and_then(Value::as_text) == Some("F");
            (shape, dtype, fortran, data)
        }
        other => {
            return Err(err(format!(
                "expected a numpy array, found {}",
                other.kind()
            )))
        }
    };
    let shape: Vec<usize> = match shape {
        Some(Value::Tuple(dims)) => dims
            .iter()
            .map(|d| d.as_int().and_then(|i| usize::try_from(i).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| err(format!("bad shape {dims:?}")))?,
        other => return Err(err(format!("expected a shape tuple, found {other:?}"))),
    };
    let dtype = dtype_string(dtype.as_ref())
        .ok_or_else(|| err(format!("unsupported dtype {dtype:.200?}")))?;
    let mut data = match data {
        Some(Value::Bytes(b)) => b,
        other => {
            let kind = other.as_ref().map_or("nothing", Value::kind);
            return Err(err(format!(
                "expected raw data as bytes, found {kind} (object arrays are not supported)"
            )));
        }
    };
    let arr = NdArray {
        shape,
        dtype,
        data: Vec::new(),
    };
    let item = arr.kind().1;
    let count = arr.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let expected = count.and_then(|c| c.checked_mul(item));
    if expected != Some(data.len()) {
        return Err(err(format!(
            "shape {:?} of {} needs {} bytes of data, found {}",
            arr.shape,
            arr.dtype,
            expected.map_or("too many".to_string(), |e| e.to_string()),
            data.len()
        )));
    }
    if fortran && arr.shape.len() > 1 {
        data = fortran_to_c(&data, &arr.shape, item);
    }
    Ok(NdArray { data, ..arr })
}

/// `numpy.dtype('u1', False, True)` with BUILD state `(3, '|', ...)` → `"|u1"`.
fn dtype_string(v: Option<&Value>) -> Option<String> {
    let (reduce, state) = match v? {
        Value::Build { obj, state } => (&**obj, Some(&**state)),
        other => (other, None),
    };
    let Value::Reduce { callable, args } = reduce else {
        return None;
    };
    if !callable.is_global("numpy", "dtype") {
        return None;
    }
    let Value::Tuple(a) = &**args else {
        return None;
    };
    let t = a.first()?.as_text()?;
    let (mut order, t) = match t.chars().next()? {
        c @ ('<' | '>' | '|' | '=') => (c, &t[1..]),
        _ => ('=', t),
    };
    if let Some(Value::Tuple(s)) = state {
        if let Some(c) = s
            .get(1)
            .and_then(Value::as_text)
            .and_then(|o| o.chars().next())
        {
            order = c;
        }
    }
    let kind = t.chars().next()?;
    let size: usize = t.get(1..)?.parse().ok()?;
    if !"biufc".contains(kind) || size == 0 {
        return None;
    }
    if order == '=' {
        order = if size == 1 {
            '|'
        } else if cfg!(target_endian = "big") {
            '>'
        } else {
            '<'
        };
    }
    Some(format!("{order}{kind}{size}"))
}

fn fortran_to_c(data: &[u8], shape: &[usize], item: usize) -> Vec<u8> {
    // Fortran strides: the first axis varies fastest.
    let mut strides = vec![item; shape.len()];
    for i in 1..shape.len() {
        strides[i] = strides[i - 1] * shape[i - 1];
    }
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; shape.len()];
    let count = data.len() / item.max(1);
    for _ in 0..count {
        let off: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&data[off..off + item]);
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}
