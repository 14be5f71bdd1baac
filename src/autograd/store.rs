//! The named tensors a model owns: trainable parameters, BatchNorm running statistics
//! (buffers) and ReLU masks. Names follow the PyTorch reference's state-dict
//! (`layer1.0.bn1.BN_c.running_mean`), so checkpoints map one-to-one onto it.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::HashMap;

pub type EntryId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EntryKind {
    /// Trained by the optimiser (conv/linear weights, BN gamma and beta).
    Param,
    /// State updated by forward passes, not by gradients (BN running mean and variance).
    Buffer,
    /// A ReLU mask: 1 keeps the ReLU, 0 makes the element linear. Shared by every BN domain.
    Mask,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub tensor: Tensor,
}

#[derive(Clone, Debug)]
pub struct ParamStore {
    entries: Vec<Entry>,
    by_name: HashMap<String, EntryId>,
    /// Where every entry lives (and so where graphs over this store compute).
    device: Device,
}

impl Default for ParamStore {
    fn default() -> Self {
        ParamStore {
            entries: Vec::new(),
            by_name: HashMap::new(),
            device: Device::Cpu,
        }
    }
}

/// A running-statistics update recorded by a train-mode BatchNorm pass.
#[derive(Clone, Debug)]
pub struct StatUpdate {
    pub running_mean: EntryId,
    pub running_var: EntryId,
    pub batch_mean: Tensor,
    pub batch_var_unbiased: Tensor,
}

impl ParamStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tensor under a new name.
    pub fn add(&mut self, name: &str, kind: EntryKind, tensor: Tensor) -> EntryId {
        assert!(
            !self.by_name.contains_key(name),
            "duplicate store entry {name}"
        );
        let id = self.entries.len();
        self.entries.push(Entry {
            name: name.to_string(),
            kind,
            tensor,
        });
        self.by_name.insert(name.to_string(), id);
        id
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Moves every entry to `device`.
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        for e in &mut self.entries {
            e.tensor = std::mem::replace(&mut e.tensor, Tensor::zeros(&[0])).into_device(device)?;
        }
        self.device = device.clone();
        Ok(())
    }

    pub fn get(&self, id: EntryId) -> &Tensor {
        &self.entries[id].tensor
    }

    pub fn get_mut(&mut self, id: EntryId) -> &mut Tensor {
        &mut self.entries[id].tensor
    }

    pub fn entry(&self, id: EntryId) -> &Entry {
        &self.entries[id]
    }

    pub fn id(&self, name: &str) -> Option<EntryId> {
        self.by_name.get(name).copied()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Ids of the trainable parameters, in registration order.
    pub fn param_ids(&self) -> Vec<EntryId> {
        self.ids_of(EntryKind::Param)
    }

    pub fn ids_of(&self, kind: EntryKind) -> Vec<EntryId> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].kind == kind)
            .collect()
    }

    /// Replaces an entry's values (moved to the store's device), checking the shape.
    pub fn set(&mut self, id: EntryId, tensor: Tensor) -> Result<()> {
        let tensor = tensor.into_device(&self.device)?;
        let e = &mut self.entries[id];
        if e.tensor.shape() != tensor.shape() {
            return Err(Error::shape(
                &e.name,
                format!("{:?}", e.tensor.shape()),
                format!("{:?}", tensor.shape()),
            ));
        }
        e.tensor = tensor;
        Ok(())
    }
}
