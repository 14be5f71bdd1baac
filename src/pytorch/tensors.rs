//! A state dict's tensors from a checkpoint's pickle, as `torch.load(weights_only=True)` would
//! allow and no further: every global the pickle names must be one a state dict needs (the
//! ordered dict, the two tensor-rebuild functions, the typed storages), every call must be a
//! tensor rebuild, and every tensor view must lie inside its storage. Anything else is refused
//! by name before any tensor is made.

use super::archive::Archive;
use super::storage::{nodes, storage_ref, DType};
use crate::data::pickle::Value;
use crate::error::{Error, Result};
use half::{bf16, f16};

/// One tensor of a state dict.
#[derive(Clone, Debug)]
pub struct TorchTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// The elements in row-major order as f32: exact for f32, f16, bf16, bool and small
    /// integers (a mask's 0 and 1), rounded for f64 and large integers, which only
    /// [`TorchTensor::floats`] refuses.
    values: Vec<f32>,
}

/// One element of `dtype` from its little-endian bytes, as f32.
fn element(dtype: DType, b: &[u8]) -> f32 {
    // Zero-padded to 8 bytes, so every width reads from one array.
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    match dtype {
        DType::F32 => f32::from_le_bytes([a[0], a[1], a[2], a[3]]),
        DType::F16 => f16::from_le_bytes([a[0], a[1]]).to_f32(),
        DType::BF16 => bf16::from_le_bytes([a[0], a[1]]).to_f32(),
        DType::F64 => f64::from_le_bytes(a) as f32,
        DType::I64 => i64::from_le_bytes(a) as f32,
        DType::I32 => i32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f32,
        DType::I16 => i16::from_le_bytes([a[0], a[1]]) as f32,
        DType::I8 => a[0] as i8 as f32,
        DType::U8 | DType::Bool => a[0] as f32,
    }
}

/// What a checkpoint holds for rlnet: its state dict and, where saved beside it, the list of
/// ReLU masks (the RLNet reference's `mask_epoch`).
pub struct Saved {
    /// In saved order, with a DataParallel `module.` prefix taken off.
    pub state_dict: Vec<(String, TorchTensor)>,
    pub masks: Option<Vec<TorchTensor>>,
}

/// The key under which the RLNet reference saves its masks beside the state dict.
pub const MASK_LIST_KEY: &str = "mask_epoch";

/// The state dict in `archive` and the masks beside it. The saved object is either the state
/// dict itself or a dict holding it (under any key, e.g. `{"model": ..., "epoch": ...}`): the
/// one value that is a dict of tensors (`state_dict` if several are).
pub fn saved(archive: &Archive, what: &str) -> Result<Saved> {
    let state_dict = state_dict(archive, what)?;
    let root = unwrap_build(&archive.root);
    let masks = match root.get(MASK_LIST_KEY) {
        None | Some(Value::None) => None,
        Some(Value::List(items) | Value::Tuple(items)) => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, t)| rebuild(t, archive, &format!("{what}: {MASK_LIST_KEY}[{i}]")))
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(other) => {
            return Err(fail(
                what,
                format!(
                    "{MASK_LIST_KEY} is a {}: expected a list of mask tensors",
                    other.kind()
                ),
            ))
        }
    };
    Ok(Saved { state_dict, masks })
}

fn state_dict(archive: &Archive, what: &str) -> Result<Vec<(String, TorchTensor)>> {
    check_safe(&archive.root, what)?;
    let root = unwrap_build(&archive.root);
    let dict = if is_tensor_dict(root) {
        root
    } else {
        let Value::Dict(items) = root else {
            return Err(fail(
                what,
                format!("the saved object is a {}, not a dict", root.kind()),
            ));
        };
        let found: Vec<(&Value, &Value)> = items
            .iter()
            .map(|(k, v)| (k, unwrap_build(v)))
            .filter(|(_, v)| is_tensor_dict(v))
            .collect();
        match found.as_slice() {
            [(_, d)] => *d,
            [] => {
                let keys: Vec<String> = items.iter().map(|(k, _)| key_text(k)).collect();
                return Err(fail(
                    what,
                    format!(
                        "no state dict in the saved dict (keys: {}): expected a dict of tensors",
                        keys.join(", ")
                    ),
                ));
            }
            many => {
                let keys: Vec<String> = many.iter().map(|(k, _)| key_text(k)).collect();
                match many.iter().find(|(k, _)| k.as_text() == Some("state_dict")) {
                    Some((_, d)) => *d,
                    None => {
                        return Err(fail(
                            what,
                            format!(
                                "several state dicts ({}): which one is ambiguous",
                                keys.join(", ")
                            ),
                        ))
                    }
                }
            }
        }
    };
    let Value::Dict(items) = dict else {
        unreachable!("is_tensor_dict holds only for dicts")
    };
    let mut out = Vec::with_capacity(items.len());
    for (k, v) in items {
        let name = k
            .as_text()
            .ok_or_else(|| fail(what, format!("a state-dict key that is a {}", k.kind())))?;
        out.push((
            name.to_string(),
            rebuild(v, archive, &format!("{what}: {name}"))?,
        ));
    }
    let prefixed = out.iter().all(|(n, _)| n.starts_with("module."));
    if prefixed {
        for (n, _) in &mut out {
            n.drain(.."module.".len());
        }
    }
    Ok(out)
}

impl TorchTensor {
    /// The values of a weight or BN tensor, or an error naming the tensor when its dtype is
    /// not one rlnet reads.
    pub fn floats(&self, name: &str) -> Result<&[f32]> {
        if self.dtype.is_read() {
            return Ok(&self.values);
        }
        Err(Error::Data(format!(
            "{name} is {}: rlnet reads float32, float16 and bfloat16 weights",
            self.dtype.name()
        )))
    }

    /// The values of a ReLU mask (any dtype: the reference saves int64), each 0 or 1.
    pub fn binary(&self, name: &str) -> Result<&[f32]> {
        match self.values.iter().position(|&v| v != 0.0 && v != 1.0) {
            None => Ok(&self.values),
            Some(i) => Err(Error::Data(format!(
                "{name}: element {i} is {}; a ReLU mask holds only 0 (identity) and 1 (ReLU) \
                 (SNL's α become binary when its run thresholds them)",
                self.values[i]
            ))),
        }
    }
}

fn fail(what: &str, msg: impl std::fmt::Display) -> Error {
    Error::Data(format!("{what}: {msg}"))
}

fn key_text(k: &Value) -> String {
    k.as_text()
        .map_or_else(|| format!("<{}>", k.kind()), |s| format!("{s:?}"))
}

/// An ordered dict pickles as the dict BUILT with its attributes (`_metadata`); the dict is
/// what counts.
fn unwrap_build(v: &Value) -> &Value {
    match v {
        Value::Build { obj, .. } if matches!(**obj, Value::Dict(_)) => obj,
        _ => v,
    }
}

fn is_rebuild(v: &Value) -> bool {
    matches!(v, Value::Reduce { callable, .. } if REBUILDS.iter().any(|n| callable.is_global("torch._utils", n)))
}

fn is_tensor_dict(v: &Value) -> bool {
    matches!(v, Value::Dict(items) if !items.is_empty() && items.iter().all(|(_, t)| is_rebuild(t)))
}

const REBUILDS: [&str; 2] = ["_rebuild_tensor_v2", "_rebuild_parameter"];

/// Whether a state dict may name this global.
fn allowed(module: &str, name: &str) -> bool {
    (module == "torch" && DType::from_storage(name).is_some())
        || (module == "torch._utils" && REBUILDS.contains(&name))
        || (module == "collections" && name == "OrderedDict")
}

fn refuse_global(what: &str, module: &str, name: &str) -> Error {
    fail(
        what,
        format!(
            "refusing the global {module}.{name}: a state dict needs only \
             collections.OrderedDict, torch._utils._rebuild_tensor_v2 and _rebuild_parameter, \
             and torch's typed storages (a checkpoint holding other objects, such as a whole \
             model saved with torch.save(model) or the training settings, cannot be read \
             without running its code; save model.state_dict() instead)"
        ),
    )
}

/// Every global is one a state dict needs (checked first, so a foreign object is named by its
/// class) and every call a tensor rebuild; what else the pickle holds (ints, floats, strings,
/// dicts, lists) is plain data.
fn check_safe(v: &Value, what: &str) -> Result<()> {
    for node in nodes(v) {
        if let Value::Global { module, name } = node {
            if !allowed(module, name) {
                return Err(refuse_global(what, module, name));
            }
        }
    }
    for node in nodes(v) {
        match node {
            Value::Reduce { callable, .. } if !is_rebuild(node) => {
                let called = match &**callable {
                    Value::Global { module, name } => format!("{module}.{name}"),
                    other => format!("a {}", other.kind()),
                };
                return Err(fail(
                    what,
                    format!("refusing a call of {called}: only tensor rebuilds are read"),
                ));
            }
            Value::Build { obj, .. } if !matches!(**obj, Value::Dict(_)) => {
                return Err(fail(
                    what,
                    format!("refusing to set the state of a {}", obj.kind()),
                ));
            }
            Value::Persistent(pid) if storage_ref(pid).is_none() => {
                return Err(fail(
                    what,
                    "a persistent reference that is not a tensor storage \
                     ('storage', type, key, location, size)",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])` or
/// `_rebuild_parameter(tensor, requires_grad, hooks)`, read into a row-major tensor.
fn rebuild(v: &Value, archive: &Archive, what: &str) -> Result<TorchTensor> {
    let Value::Reduce { callable, args } = v else {
        return Err(fail(
            what,
            format!("a {} where a tensor was expected", v.kind()),
        ));
    };
    let Value::Tuple(args) = &**args else {
        return Err(fail(what, "tensor arguments that are not a tuple"));
    };
    if callable.is_global("torch._utils", "_rebuild_parameter") {
        return match args.first() {
            Some(inner) if args.len() == 3 => rebuild(inner, archive, what),
            _ => Err(fail(what, "_rebuild_parameter without its 3 arguments")),
        };
    }
    let [Value::Persistent(pid), offset, size, stride, ..] = args.as_slice() else {
        return Err(fail(
            what,
            "_rebuild_tensor_v2 without (storage, offset, size, stride)",
        ));
    };
    let (key, dtype) = storage_ref(pid).expect("checked by check_safe");
    let dtype = dtype.map_err(|class| fail(what, format!("unknown storage type {class}")))?;
    let ints = |v: &Value, part: &str| -> Result<Vec<usize>> {
        let Value::Tuple(items) = v else {
            return Err(fail(what, format!("the tensor's {part} is not a tuple")));
        };
        items
            .iter()
            .map(|i| i.as_int().and_then(|i| usize::try_from(i).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                fail(
                    what,
                    format!("the tensor's {part} holds a negative or non-integer entry"),
                )
            })
    };
    let (shape, strides) = (ints(size, "size")?, ints(stride, "stride")?);
    if shape.len() != strides.len() {
        return Err(fail(
            what,
            format!("size {shape:?} and stride {strides:?} differ in rank"),
        ));
    }
    let offset = offset
        .as_int()
        .and_then(|o| usize::try_from(o).ok())
        .ok_or_else(|| fail(what, "the storage offset is not a non-negative integer"))?;
    let bytes = archive
        .storages
        .get(&key)
        .ok_or_else(|| fail(what, format!("storage {key} is missing from the archive")))?;
    if bytes.len() % dtype.size() != 0 {
        return Err(fail(
            what,
            format!(
                "storage {key}: {} bytes is not a whole number of {} elements",
                bytes.len(),
                dtype.name()
            ),
        ));
    }
    let numel: Option<usize> = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let last: Option<usize> = shape.iter().zip(&strides).try_fold(offset, |a, (&d, &s)| {
        a.checked_add(d.saturating_sub(1).checked_mul(s)?)
    });
    let elems = bytes.len() / dtype.size();
    match (numel, last) {
        (Some(0), _) => {}
        (Some(_), Some(last)) if last < elems => {}
        _ => {
            return Err(fail(
                what,
                format!(
                    "the view (size {shape:?}, stride {strides:?}, offset {offset}) runs past \
                     storage {key} of {elems} elements"
                ),
            ))
        }
    }
    let numel = numel.expect("checked");
    let mut values = Vec::with_capacity(numel);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..numel {
        let at = offset
            + index
                .iter()
                .zip(&strides)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        values.push(element(
            dtype,
            &bytes[at * dtype.size()..(at + 1) * dtype.size()],
        ));
        // Row-major order: the last index runs fastest.
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(TorchTensor {
        dtype,
        shape,
        values,
    })
}
