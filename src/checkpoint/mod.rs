//! Checkpoints as safetensors: every store tensor under its reference name (`conv1.weight`,
//! `layer1.0.bn1.BN_c.running_mean`, ...; conv weights OIHW), ReLU masks as u8 (`<relu>.mask`),
//! SGD momentum buffers (`optimizer.momentum.<param>`), and a JSON header (`rlnet` metadata key)
//! with the model config and the stage's own state. Files are written to a temporary name,
//! synced and renamed, so an interruption never leaves a half-written checkpoint behind.
//! `stages` loads the checkpoints later stages start from.

mod stages;

pub use stages::{load_search_student, load_teacher, teacher_settings};

use crate::autograd::EntryKind;
use crate::error::{Error, Result};
use crate::nn::{Model, ModelConfig};
use crate::optim::Sgd;
use crate::tensor::Tensor;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const FORMAT_VERSION: u32 = 1;
const META_KEY: &str = "rlnet";
const MOMENTUM_PREFIX: &str = "optimizer.momentum.";

/// The JSON header of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format_version: u32,
    /// "teacher", "search", "distill".
    pub stage: String,
    pub model: ModelConfig,
    /// The stage's config and progress (epoch, step, history), as the stage defines them.
    pub state: serde_json::Value,
}

/// A loaded checkpoint: its header and its tensors by name.
pub struct Checkpoint {
    pub path: PathBuf,
    pub meta: CheckpointMeta,
    tensors: HashMap<String, Tensor>,
}

/// Saves a model (and optionally its optimiser state) with the given header.
pub fn save(path: &Path, model: &Model, optim: Option<&Sgd>, meta: &CheckpointMeta) -> Result<()> {
    save_with(path, model, optim, &[], meta)
}

/// [`save`] plus extra named f32 tensors (a stage's own running state, read back with
/// [`Checkpoint::tensor`]), all in the one atomically written file.
pub fn save_with(
    path: &Path,
    model: &Model,
    optim: Option<&Sgd>,
    extra: &[(String, &Tensor)],
    meta: &CheckpointMeta,
) -> Result<()> {
    let bad = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for e in model.store.entries() {
        // A model on the GPU is downloaded entry by entry.
        let host = e.tensor.to_host()?;
        let (dtype, bytes) = match e.kind {
            EntryKind::Mask => (
                Dtype::U8,
                host.data().iter().map(|&v| (v != 0.0) as u8).collect(),
            ),
            _ => (Dtype::F32, bytemuck::cast_slice(host.data()).to_vec()),
        };
        owned.push((e.name.clone(), dtype, e.tensor.shape().to_vec(), bytes));
    }
    if let Some(sgd) = optim {
        for (id, buf) in sgd.buffers() {
            let e = model.store.entry(id);
            owned.push((
                format!("{MOMENTUM_PREFIX}{}", e.name),
                Dtype::F32,
                e.tensor.shape().to_vec(),
                bytemuck::cast_slice(buf.to_host()?.data()).to_vec(),
            ));
        }
    }
    for (name, t) in extra {
        owned.push((
            name.clone(),
            Dtype::F32,
            t.shape().to_vec(),
            bytemuck::cast_slice(t.to_host()?.data()).to_vec(),
        ));
    }
    let views = owned
        .iter()
        .map(|(n, d, s, b)| {
            Ok((
                n.as_str(),
                TensorView::new(*d, s.clone(), b).map_err(|e| bad(e.to_string()))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let header = serde_json::to_string(meta).map_err(|e| bad(e.to_string()))?;
    let info = HashMap::from([(META_KEY.to_string(), header)]);
    let bytes =
        safetensors::tensor::serialize(views, Some(info)).map_err(|e| bad(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    crate::files::write_atomic(path, &bytes)
}

/// Reads a checkpoint; a file that is not a complete rlnet safetensors file is an error that
/// says so.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(&bytes, path)
}

/// A checkpoint from the bytes of its file (`path`: where they came from, for messages).
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
    let bad = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let (_, md) = SafeTensors::read_metadata(bytes).map_err(|e| {
        bad(format!(
            "not a readable safetensors file ({e}); truncated or not a checkpoint?"
        ))
    })?;
    let header = md
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| bad(format!("no '{META_KEY}' header: not written by rlnet")))?;
    let meta: CheckpointMeta = serde_json::from_str(header)
        .map_err(|e| bad(format!("malformed '{META_KEY}' header: {e}")))?;
    if meta.format_version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {} (this build reads version {FORMAT_VERSION})",
            meta.format_version
        )));
    }
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("tensor data unreadable ({e}); truncated?")))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::U8 => view.data().iter().map(|&v| v as f32).collect(),
            other => {
                return Err(bad(format!(
                    "tensor {name} has dtype {other:?}; expected F32 or U8"
                )))
            }
        };
        let t = Tensor::from_vec(view.shape(), data).map_err(|e| bad(e.to_string()))?;
        tensors.insert(name, t);
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        meta,
        tensors,
    })
}

impl Checkpoint {
    fn bad(&self, msg: String) -> Error {
        Error::Checkpoint {
            path: self.path.clone(),
            msg,
        }
    }

    /// The model this checkpoint holds: built from its config, every tensor filled and checked.
    pub fn model(&self) -> Result<Model> {
        // Every tensor of the header's model must be in the file with its shape: checked
        // before the model is allocated, so a corrupt header cannot ask for gigabytes.
        let shapes = Model::tensor_shapes(&self.meta.model).map_err(|e| self.bad(e.to_string()))?;
        for (name, shape) in &shapes {
            let t = self
                .tensors
                .get(name)
                .ok_or_else(|| self.bad(format!("tensor {name} is missing")))?;
            if t.shape() != shape.as_slice() {
                return Err(self.bad(format!(
                    "tensor {name} is {:?} in the file but the header's model needs {shape:?}",
                    t.shape()
                )));
            }
        }
        let mut model = Model::new(self.meta.model.clone(), 0)?;
        self.fill(&mut model)?;
        Ok(model)
    }

    /// Copies this checkpoint's tensors into `model`, which must have the same layout.
    pub fn fill(&self, model: &mut Model) -> Result<()> {
        for id in 0..model.store.len() {
            let name = model.store.entry(id).name.clone();
            let t = self
                .tensors
                .get(&name)
                .ok_or_else(|| self.bad(format!("tensor {name} is missing")))?;
            model
                .store
                .set(id, t.clone())
                .map_err(|e| self.bad(e.to_string()))?;
        }
        Ok(())
    }

    /// Restores SGD momentum buffers saved with the model.
    pub fn restore_optimizer(&self, model: &Model, sgd: &mut Sgd) -> Result<()> {
        for id in model.store.param_ids() {
            let e = model.store.entry(id);
            if let Some(t) = self.tensors.get(&format!("{MOMENTUM_PREFIX}{}", e.name)) {
                if t.shape() != e.tensor.shape() {
                    return Err(self.bad(format!("momentum of {} has the wrong shape", e.name)));
                }
                sgd.set_buffer(id, t.to_device(model.store.device())?);
            }
        }
        Ok(())
    }

    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }
}
