//! What a checkpoint's pickle says of its tensor storages: their element types (by typed
//! storage class) and the persistent references that name them, and a walk over every node of
//! the pickle, which the container reader and the tensor reader both need.

use crate::data::pickle::Value;

/// A storage's element type, by the name of its typed storage class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    const ALL: [(DType, &'static str); 10] = [
        (DType::F32, "FloatStorage"),
        (DType::F16, "HalfStorage"),
        (DType::BF16, "BFloat16Storage"),
        (DType::F64, "DoubleStorage"),
        (DType::I64, "LongStorage"),
        (DType::I32, "IntStorage"),
        (DType::I16, "ShortStorage"),
        (DType::I8, "CharStorage"),
        (DType::U8, "ByteStorage"),
        (DType::Bool, "BoolStorage"),
    ];

    pub fn from_storage(name: &str) -> Option<DType> {
        DType::ALL.iter().find(|(_, n)| *n == name).map(|(d, _)| *d)
    }

    /// The storage class's name (`torch.FloatStorage` for f32), as the pickle spells it.
    pub fn storage_name(self) -> &'static str {
        DType::ALL
            .iter()
            .find(|(d, _)| *d == self)
            .map(|(_, n)| *n)
            .expect("listed")
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// PyTorch's name of the dtype, for messages.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    pub fn is_read(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }
}

/// Every node of `v`, depth first.
pub fn nodes(v: &Value) -> impl Iterator<Item = &Value> {
    let mut stack = vec![v];
    std::iter::from_fn(move || {
        let v = stack.pop()?;
        match v {
            Value::List(items) | Value::Tuple(items) => stack.extend(items),
            Value::Dict(items) => stack.extend(items.iter().flat_map(|(k, v)| [k, v])),
            Value::Reduce { callable, args } => stack.extend([&**callable, &**args]),
            Value::Build { obj, state } => stack.extend([&**obj, &**state]),
            Value::Persistent(pid) => stack.push(pid),
            _ => {}
        }
        Some(v)
    })
}

/// A storage reference's key and element type (an error naming an unknown storage type):
/// `('storage', torch.FloatStorage, '0', 'cpu', 6)`, with a sixth entry (None) in the legacy
/// format.
pub fn storage_ref(pid: &Value) -> Option<(String, std::result::Result<DType, String>)> {
    let Value::Tuple(parts) = pid else {
        return None;
    };
    let (tag, class, key) = (parts.first()?, parts.get(1)?, parts.get(2)?);
    if tag.as_text() != Some("storage") || !(5..=6).contains(&parts.len()) {
        return None;
    }
    let Value::Global { module, name } = class else {
        return None;
    };
    let dtype = match DType::from_storage(name).filter(|_| module == "torch") {
        Some(d) => Ok(d),
        None => Err(format!("{module}.{name}")),
    };
    Some((key.as_text()?.to_string(), dtype))
}
