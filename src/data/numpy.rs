//! numpy arrays inside pickles: turning the `_reconstruct`/`_frombuffer` call trees that
//! `pickle::parse` returns into shaped, C-ordered raw data.

use super::pickle::Value;
use crate::error::{Error, Result};

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

    /// The elements of an integer (or bool) array as i64; None for other dtypes.
    pub fn to_i64s(&self) -> Option<Vec<i64>> {
        let (k, size) = self.kind();
        if !"iub".contains(k) || ![1, 2, 4, 8].contains(&size) {
            return None;
        }
        let shift = 64 - 8 * size as u32;
        let big = self.dtype.starts_with('>');
        let value = |c: &[u8]| {
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(c);
            if big {
                b[..size].reverse();
            }
            let v = i64::from_le_bytes(b);
            // Sign-extend signed kinds; an unsigned 64-bit value past i64::MAX does not fit.
            let v = if k == 'i' { (v << shift) >> shift } else { v };
            (k == 'i' || v >= 0).then_some(v)
        };
        self.data.chunks_exact(size).map(value).collect()
    }
}

/// Interprets a value as a numpy array: either `_reconstruct` + `BUILD` (protocols 0-4) or
/// `_frombuffer` (protocol 5). Fortran-ordered data is transposed to C order.
pub fn ndarray(value: Value, what: &str) -> Result<NdArray> {
    let bad = |msg: &str| Err(Error::Data(format!("{what}: numpy array: {msg}")));
    let numpy = |v: &Value, module: &str, name: &str| {
        ["numpy.core.", "numpy._core."]
            .iter()
            .any(|p| v.is_global(&format!("{p}{module}"), name))
    };
    let (fortran, shape, dtype, data) = match value {
        Value::Build { obj, state } => match (*obj, *state) {
            (Value::Reduce { callable, .. }, Value::Tuple(st))
                if numpy(&callable, "multiarray", "_reconstruct") && matches!(st.len(), 4 | 5) =>
            {
                // (version, shape, dtype, is_fortran, raw data); numpy also reads it unversioned.
                let mut it = st.into_iter().rev();
                let (data, f, dtype, shape) = (it.next(), it.next(), it.next(), it.next());
                (f.and_then(|f| f.as_int()) == Some(1), shape, dtype, data)
            }
            _ => return bad("an object that is not numpy's _reconstruct with its state"),
        },
        Value::Reduce { callable, args } if numpy(&callable, "numeric", "_frombuffer") => {
            // (buffer, dtype, shape, order)
            let Value::Tuple(a) = *args else {
                return bad("_frombuffer without an argument tuple");
            };
            let mut it = a.into_iter();
            let (data, dtype, shape, order) = (it.next(), it.next(), it.next(), it.next());
            (
                order.as_ref().and_then(Value::as_text) == Some("F"),
                shape,
                dtype,
                data,
            )
        }
        other => return bad(&format!("expected a numpy array, found {}", other.kind())),
    };
    let dims = match &shape {
        Some(Value::Tuple(d)) => d
            .iter()
            .map(|d| usize::try_from(d.as_int()?).ok())
            .collect(),
        _ => None,
    };
    let Some(shape) = dims else {
        return bad("a missing or malformed shape");
    };
    let Some(dtype) = dtype_string(dtype.as_ref()) else {
        return bad("a missing or unsupported dtype (numeric dtypes only)");
    };
    let Some(Value::Bytes(mut data)) = data else {
        return bad("raw data that is not a byte string (object arrays are not supported)");
    };
    let mut arr = NdArray {
        shape,
        dtype,
        data: Vec::new(),
    };
    let item = arr.kind().1;
    let count = arr.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let expected = count.and_then(|c| c.checked_mul(item));
    if expected != Some(data.len()) {
        let need = expected.map_or("more than 2^64".to_string(), |e| e.to_string());
        let (s, t, n) = (&arr.shape, &arr.dtype, data.len());
        return bad(&format!(
            "shape {s:?} of {t} needs {need} bytes of data, found {n}"
        ));
    }
    if fortran && arr.shape.len() > 1 {
        data = fortran_to_c(&data, &arr.shape, item);
    }
    arr.data = data;
    Ok(arr)
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
    let Value::Tuple(a) = &**args else {
        return None;
    };
    let t = a
        .first()?
        .as_text()
        .filter(|_| callable.is_global("numpy", "dtype"))?;
    let order = match state {
        Some(Value::Tuple(s)) => s.get(1).and_then(Value::as_text),
        _ => None,
    };
    let order = order.or(Some(t)).and_then(|o| o.chars().next());
    let t = t.trim_start_matches(['<', '>', '|', '=']);
    let (kind, size) = (t.chars().next()?, t.get(1..)?.parse::<usize>().ok()?);
    if !"biufc".contains(kind) || size == 0 {
        return None;
    }
    let order = match order {
        _ if size == 1 => '|',
        Some(c @ ('<' | '>')) => c,
        _ if cfg!(target_endian = "big") => '>',
        _ => '<',
    };
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
    for _ in 0..data.len() / item.max(1) {
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
