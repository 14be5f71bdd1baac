//! A small, safe reader for Python pickles: enough of the pickle virtual machine (protocols 0 to
//! 5, less class instances, extensions, sets and out-of-band buffers) to read the CIFAR "python
//! version" files and the numpy arrays inside them, and PyTorch's checkpoints.
//!
//! Nothing is executed: a call (`REDUCE`, `NEWOBJ`) becomes a [`Value::Reduce`] node, a
//! `BUILD` a [`Value::Build`] node and a persistent reference (`PERSID`, `BINPERSID`, which
//! PyTorch uses for tensor storages) a [`Value::Persistent`] node, which the caller interprets.
//! The only calls evaluated are the byte-string constructors Python itself uses to pickle
//! `bytes` at protocols below 3 (`_codecs.encode(s, 'latin1')`, `bytes()`, `bytearray(...)`),
//! so that byte strings look the same whichever protocol wrote them, and
//! `collections.OrderedDict()` (empty, or from a list of pairs), which is a dict here, so that
//! the items `SETITEMS` adds to it land in it.
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
    /// A persistent reference: the id the pickler's `persistent_id` gave an object it stores
    /// outside the pickle (PyTorch: a tensor storage's key and type).
    Persistent(Box<Value>),
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
            Value::Persistent(_) => "persistent reference",
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
    parse_prefix(input, what).map(|(v, _)| v)
}

/// Parses the pickle at the start of `input`, which may go on past its STOP (PyTorch's legacy
/// format writes several pickles and raw data one after another); returns the value and the
/// number of bytes the pickle took.
pub fn parse_prefix(input: &[u8], what: &str) -> Result<(Value, usize)> {
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
    let budget = input.len().saturating_mul(8).saturating_add(1 << 20);
    let value = Conv { vm: &vm, budget }.value(root, 0)?;
    Ok((value, vm.pos))
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
    Persistent(Id),
}

struct Vm<'a> {
    input: &'a [u8],
    pos: usize,
    what: &'a str,
    arena: Vec<Obj>,
    stack: Vec<Id>,
    /// Stack heights at each MARK, as in CPython's metastack.
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

const MAX_DEPTH: usize = 512;

impl<'a> Vm<'a> {
    fn fail<T>(&self, at: usize, msg: impl std::fmt::Display) -> Result<T> {
        Err(Error::Data(format!(
            "{}: pickle: {msg} at offset {at}",
            self.what
        )))
    }

    /// The next `n` bytes, as a range: checked before anything of that size is allocated.
    fn take(&mut self, n: u64) -> Result<(usize, usize)> {
        let left = self.input.len() - self.pos;
        if n > left as u64 {
            return self.fail(
                self.pos,
                format_args!("truncated: {n} bytes needed, {left} left"),
            );
        }
        self.pos += n as usize;
        Ok((self.pos - n as usize, n as usize))
    }

    fn uint(&mut self, n: u64) -> Result<u64> {
        let (s, n) = self.take(n)?;
        let b = &self.input[s..s + n];
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }

    fn line(&mut self, at: usize) -> Result<&'a str> {
        let rest = &self.input[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return self.fail(at, "truncated: no end of line");
        };
        self.pos += n + 1;
        match std::str::from_utf8(&rest[..n]) {
            Ok(s) => Ok(s),
            Err(_) => self.fail(at, "a text argument is not UTF-8"),
        }
    }

    fn parse_line<T: std::str::FromStr>(&mut self, at: usize) -> Result<T> {
        let line = self.line(at)?;
        match line.trim_end_matches('L').parse() {
            Ok(v) => Ok(v),
            Err(_) => self.fail(at, format_args!("bad number {line:?}")),
        }
    }

    fn pop(&mut self, at: usize) -> Result<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.pop() {
            Some(id) if self.stack.len() >= floor => Ok(id),
            _ => self.fail(at, "stack underflow"),
        }
    }

    fn top(&self, at: usize) -> Result<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(&id) if self.stack.len() > floor => Ok(id),
            _ => self.fail(at, "empty stack"),
        }
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Id>> {
        match self.marks.pop() {
            Some(m) if m <= self.stack.len() => Ok(self.stack.split_off(m)),
            _ => self.fail(at, "missing MARK"),
        }
    }

    fn pairs(&self, items: Vec<Id>, at: usize) -> Result<Vec<(Id, Id)>> {
        if !items.len().is_multiple_of(2) {
            return self.fail(at, "a dict item without a value");
        }
        Ok(items.chunks_exact(2).map(|p| (p[0], p[1])).collect())
    }

    /// Little-endian two's complement of any length, as LONG1/LONG4 store it.
    fn long(&mut self, n: u64, at: usize) -> Result<i64> {
        let (s, n) = self.take(n)?;
        let b = &self.input[s..s + n];
        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
            0xFF
        } else {
            0
        };
        let mut buf = [fill; 8];
        buf[..n.min(8)].copy_from_slice(&b[..n.min(8)]);
        let v = i64::from_le_bytes(buf);
        if b.iter().skip(8).any(|&x| x != fill) || (v < 0) != (fill == 0xFF) {
            return self.fail(
                at,
                format_args!("a {n}-byte integer does not fit in 64 bits"),
            );
        }
        Ok(v)
    }

    /// A byte or text string after a little-endian length of `width` bytes.
    /// Text is validated as UTF-8 when used, not here: the one big string of a protocol-2
    /// numpy array is only ever decoded to latin1, which validates as it goes.
    fn sized(&mut self, width: u64, text: bool) -> Result<Obj> {
        let n = self.uint(width)?;
        let (s, n) = self.take(n)?;
        Ok(if text {
            Obj::InStr(s, n)
        } else {
            Obj::InBytes(s, n)
        })
    }

    fn utf8(&self, id: Id) -> Option<&[u8]> {
        match self.arena.get(id)? {
            Obj::Str(s) => Some(s.as_bytes()),
            Obj::InStr(s, n) => Some(&self.input[*s..*s + *n]),
            _ => None,
        }
    }

    fn text(&self, id: Id) -> Option<&str> {
        std::str::from_utf8(self.utf8(id)?).ok()
    }

    fn run(&mut self) -> Result<Id> {
        loop {
            let at = self.pos;
            let Some(&op) = self.input.get(at) else {
                return self.fail(at, "truncated: the input ends before STOP");
            };
            self.pos += 1;
            if op == b'.' {
                return self.pop(at);
            }
            if let Some(obj) = self.step(op, at)? {
                self.arena.push(obj);
                self.stack.push(self.arena.len() - 1);
            }
        }
    }

    /// Executes one opcode; returns the new object to push, if any.
    fn step(&mut self, op: u8, at: usize) -> Result<Option<Obj>> {
        let obj = match op {
            0x80 => match self.uint(1)? {
                0..=5 => return Ok(None),
                v => return self.fail(at, format_args!("protocol {v} is newer than 5")),
            },
            0x95 => return self.uint(8).map(|_| None), // FRAME: the contents follow inline
            b'(' => {
                self.marks.push(self.stack.len());
                return Ok(None);
            }
            b'0' => return self.pop(at).map(|_| None),
            b'1' => return self.pop_mark(at).map(|_| None),
            b'2' => {
                let top = self.top(at)?;
                self.stack.push(top);
                return Ok(None);
            }
            b'N' => Obj::None,
            0x88 | 0x89 => Obj::Bool(op == 0x88),
            b'J' => Obj::Int(self.uint(4)? as u32 as i32 as i64),
            b'K' => Obj::Int(self.uint(1)? as i64),
            b'M' => Obj::Int(self.uint(2)? as i64),
            0x8a => Obj::Int(self.uint(1).and_then(|n| self.long(n, at))?),
            0x8b => Obj::Int(self.uint(4).and_then(|n| self.long(n, at))?),
            // Protocol 0 writes True and False as I01 and I00.
            b'I' if self.input.get(at + 1..at + 4) == Some(b"01\n") => {
                self.line(at).map(|_| Obj::Bool(true))?
            }
            b'I' if self.input.get(at + 1..at + 4) == Some(b"00\n") => {
                self.line(at).map(|_| Obj::Bool(false))?
            }
            b'I' | b'L' => Obj::Int(self.parse_line(at)?),
            b'G' => Obj::Float(f64::from_bits(self.uint(8)?.swap_bytes())), // big-endian
            b'F' => Obj::Float(self.parse_line(at)?),
            b'T' if self.input.get(at + 4).is_some_and(|&b| b & 0x80 != 0) => {
                return self.fail(at, "a negative string length")
            }
            b'T' | b'B' => self.sized(4, false)?,
            b'U' | b'C' => self.sized(1, false)?,
            0x8e | 0x96 => self.sized(8, false)?,
            0x8c => self.sized(1, true)?,
            b'X' => self.sized(4, true)?,
            0x8d => self.sized(8, true)?,
            b'V' => match raw_unicode_unescape(self.line(at)?) {
                Some(s) => Obj::Str(s),
                None => return self.fail(at, "bad UNICODE argument"),
            },
            b'}' => Obj::Dict(Vec::new()),
            b']' => Obj::List(Vec::new()),
            b')' => Obj::Tuple(Vec::new()),
            b'd' => Obj::Dict(self.pop_mark(at).and_then(|v| self.pairs(v, at))?),
            b'l' => Obj::List(self.pop_mark(at)?),
            b't' => Obj::Tuple(self.pop_mark(at)?),
            0x85..=0x87 => {
                let mut items = (0..op - 0x84)
                    .map(|_| self.pop(at))
                    .collect::<Result<Vec<_>>>()?;
                items.reverse();
                Obj::Tuple(items)
            }
            b'a' | b'e' => {
                let items = match op {
                    b'a' => vec![self.pop(at)?],
                    _ => self.pop_mark(at)?,
                };
                let list = self.top(at)?;
                let Obj::List(v) = &mut self.arena[list] else {
                    return self.fail(at, "APPEND to a non-list");
                };
                v.extend(items);
                return Ok(None);
            }
            b's' | b'u' => {
                let items = match op {
                    b's' => [self.pop(at)?, self.pop(at)?].into_iter().rev().collect(),
                    _ => self.pop_mark(at)?,
                };
                let pairs = self.pairs(items, at)?;
                let dict = self.top(at)?;
                let Obj::Dict(d) = &mut self.arena[dict] else {
                    return self.fail(at, "SETITEM on a non-dict");
                };
                d.extend(pairs);
                return Ok(None);
            }
            b'q' | b'r' | 0x94 | b'p' => {
                let key = match op {
                    b'q' => self.uint(1)?,
                    b'r' => self.uint(4)?,
                    0x94 => self.memo.len() as u64,
                    _ => self.parse_line(at)?,
                };
                let top = self.top(at)?;
                self.memo.insert(key, top);
                return Ok(None);
            }
            b'h' | b'j' | b'g' => {
                let key = match op {
                    b'h' => self.uint(1)?,
                    b'j' => self.uint(4)?,
                    _ => self.parse_line(at)?,
                };
                let Some(&id) = self.memo.get(&key) else {
                    return self.fail(at, format_args!("memo key {key} read before written"));
                };
                self.stack.push(id);
                return Ok(None);
            }
            b'c' => {
                let module = self.line(at)?.to_string();
                Obj::Global(module, self.line(at)?.to_string())
            }
            0x93 => {
                let (name, module) = (self.pop(at)?, self.pop(at)?);
                match (self.text(module), self.text(name)) {
                    (Some(m), Some(n)) => Obj::Global(m.to_string(), n.to_string()),
                    _ => return self.fail(at, "STACK_GLOBAL of non-strings"),
                }
            }
            b'P' => {
                let line = self.line(at)?;
                self.arena.push(Obj::Str(line.to_string()));
                Obj::Persistent(self.arena.len() - 1)
            }
            b'Q' => Obj::Persistent(self.pop(at)?),
            b'R' | 0x81 => {
                let (args, callable) = (self.pop(at)?, self.pop(at)?);
                self.reduce(callable, args, at)?
            }
            b'b' => {
                // Python updates the object in place, so earlier memo references see the
                // state too: the node becomes the BUILD and its old content moves to a new one.
                let state = self.pop(at)?;
                let obj = self.top(at)?;
                let old = std::mem::replace(&mut self.arena[obj], Obj::None);
                self.arena.push(old);
                self.arena[obj] = Obj::Build(self.arena.len() - 1, state);
                return Ok(None);
            }
            _ => {
                let name = opcode_name(op);
                return self.fail(at, format_args!("unsupported opcode 0x{op:02x}{name}"));
            }
        };
        Ok(Some(obj))
    }

    /// Evaluates the byte-string constructors and `OrderedDict` (see the module comment); any
    /// other call stays a call node.
    fn reduce(&self, callable: Id, args: Id, at: usize) -> Result<Obj> {
        let keep = Ok(Obj::Reduce(callable, args));
        let (Some(Obj::Global(module, name)), Some(Obj::Tuple(items))) =
            (self.arena.get(callable), self.arena.get(args))
        else {
            return keep;
        };
        if module == "collections" && name == "OrderedDict" {
            return self.ordered_dict(items, at);
        }
        let builtin = module == "__builtin__" || module == "builtins";
        if !(builtin && (name == "bytes" || name == "bytearray"))
            && !(module == "_codecs" && name == "encode")
        {
            return keep;
        }
        match (items.as_slice(), builtin) {
            ([], true) => Ok(Obj::Bytes(Vec::new())),
            ([b], true) => match self.arena[*b] {
                Obj::InBytes(s, n) => Ok(Obj::InBytes(s, n)),
                Obj::Bytes(ref v) => Ok(Obj::Bytes(v.clone())),
                _ => keep,
            },
            ([s, enc], _) => {
                let names = ["latin1", "latin-1", "iso-8859-1", "iso8859-1"];
                let enc = self.text(*enc).map(str::to_ascii_lowercase);
                let is_latin1 = names.contains(&enc.as_deref().unwrap_or(""));
                let Some(text) = self.utf8(*s).filter(|_| is_latin1) else {
                    return keep;
                };
                match latin1(text) {
                    Some(out) => Ok(Obj::Bytes(out)),
                    None => self.fail(at, "a latin1 byte string that is not UTF-8 up to U+00FF"),
                }
            }
            _ => keep,
        }
    }
}

impl Vm<'_> {
    /// `OrderedDict()` or `OrderedDict([(k, v), ...])` (protocols 0 and 1 pass the items).
    fn ordered_dict(&self, args: &[Id], at: usize) -> Result<Obj> {
        let items = match args {
            [] => return Ok(Obj::Dict(Vec::new())),
            [list] => match &self.arena[*list] {
                Obj::List(v) | Obj::Tuple(v) => v,
                _ => return self.fail(at, "OrderedDict of something other than a list of pairs"),
            },
            _ => return self.fail(at, "OrderedDict with more than one argument"),
        };
        let mut pairs = Vec::with_capacity(items.len());
        for &item in items {
            match &self.arena[item] {
                Obj::List(kv) | Obj::Tuple(kv) if kv.len() == 2 => pairs.push((kv[0], kv[1])),
                _ => return self.fail(at, "an OrderedDict item that is not a (key, value) pair"),
            }
        }
        Ok(Obj::Dict(pairs))
    }
}

/// Expands arena nodes into a tree, within a depth and size budget.
struct Conv<'v, 'a> {
    vm: &'v Vm<'a>,
    budget: usize,
}

impl Conv<'_, '_> {
    fn spend(&mut self, n: usize) -> Result<()> {
        self.budget = match self.budget.checked_sub(n.saturating_add(1)) {
            Some(b) => b,
            None => {
                let msg = "the objects expand to far more data than the file holds";
                return self.vm.fail(self.vm.input.len(), msg);
            }
        };
        Ok(())
    }

    fn all(&mut self, ids: &[Id], depth: usize) -> Result<Vec<Value>> {
        self.spend(ids.len())?;
        ids.iter().map(|&c| self.value(c, depth)).collect()
    }

    fn value(&mut self, id: Id, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            let msg = format_args!("nesting deeper than {MAX_DEPTH} (or a recursive object)");
            return self.vm.fail(self.vm.input.len(), msg);
        }
        let (vm, d) = (self.vm, depth + 1);
        Ok(match &vm.arena[id] {
            Obj::None => Value::None,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::Int(*i),
            Obj::Float(f) => Value::Float(*f),
            &Obj::InBytes(s, n) => {
                self.spend(n)?;
                Value::Bytes(vm.input[s..s + n].to_vec())
            }
            Obj::Bytes(b) => {
                self.spend(b.len())?;
                Value::Bytes(b.clone())
            }
            Obj::InStr(..) | Obj::Str(_) => {
                let Some(s) = vm.text(id) else {
                    return vm.fail(vm.input.len(), "a string that is not valid UTF-8");
                };
                self.spend(s.len())?;
                Value::Str(s.to_string())
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
                let (module, name) = (module.clone(), name.clone());
                Value::Global { module, name }
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
            &Obj::Persistent(id) => {
                self.spend(1)?;
                Value::Persistent(Box::new(self.value(id, d)?))
            }
        })
    }
}

/// Decodes UTF-8 that holds only U+0000..U+00FF and encodes it as latin1, in one pass that
/// also validates: numpy's raw data arrives this way from Python 3 at protocol 2.
fn latin1(utf8: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(utf8.len());
    let mut bytes = utf8.iter().copied();
    while let Some(b) = bytes.next() {
        out.push(match b {
            0..=0x7F => b,
            0xC2 | 0xC3 => ((b & 0x03) << 6) | (bytes.next().filter(|c| c & 0xC0 == 0x80)? & 0x3F),
            _ => return None,
        });
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
        b'S' => " (STRING: protocol-0 byte strings)",
        0x82..=0x84 => " (EXT: extension registry)",
        b'i' | b'o' => " (INST/OBJ: protocol-0 class instances)",
        0x8f..=0x91 => " (sets)",
        0x92 => " (NEWOBJ_EX)",
        0x97 | 0x98 => " (out-of-band buffers)",
        _ => " (not a pickle opcode)",
    }
}
