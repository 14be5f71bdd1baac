//! The named tensors a model owns: trainable parameters, BatchNorm running statistics
//! (buffers) and ReLU masks. Names follow the PyTorch reference's state-dict
//! (`layer1.0.bn1.BN_c.running_mean`), so checkpoints map one-to-one onto it.

use crate::device::buffer::DeviceBuffer;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub type EntryId = usize;

/// Device copies derived from entries, by entry and form (`ParamStore::derived`).
type DerivedCopies = HashMap<(EntryId, &'static str), Arc<DeviceBuffer<u32>>>;

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

#[derive(Debug)]
pub struct ParamStore {
    entries: Vec<Entry>,
    by_name: HashMap<String, EntryId>,
    /// Where every entry lives (and so where graphs over this store compute).
    device: Device,
    /// Device copies derived from entries (`derived`), each dropped when its entry changes.
    derived: Mutex<DerivedCopies>,
}

impl Default for ParamStore {
    fn default() -> Self {
        ParamStore {
            entries: Vec::new(),
            by_name: HashMap::new(),
            device: Device::Cpu,
            derived: Mutex::new(HashMap::new()),
        }
    }
}

/// A copy starts without derived copies (it makes its own on first use).
impl Clone for ParamStore {
    fn clone(&self) -> Self {
        ParamStore {
            entries: self.entries.clone(),
            by_name: self.by_name.clone(),
            device: self.device.clone(),
            derived: Mutex::new(HashMap::new()),
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
        self.derived_mut().clear();
        for e in &mut self.entries {
            e.tensor = std::mem::replace(&mut e.tensor, Tensor::zeros(&[0])).into_device(device)?;
        }
        self.device = device.clone();
        Ok(())
    }

    pub fn get(&self, id: EntryId) -> &Tensor {
        &self.entries[id].tensor
    }

    /// The entry to change in place; its derived copies are dropped.
    pub fn get_mut(&mut self, id: EntryId) -> &mut Tensor {
        self.forget_derived(id);
        &mut self.entries[id].tensor
    }

    /// A device copy of entry `id` in another form, made by `make` on first use and kept
    /// until the entry changes (`get_mut`, `set` and `to_device` drop it; nothing else can
    /// change an entry). `form` names the form, one key per form of an entry. The GPU's bf16
    /// convolutions keep their converted weights here, so that the passes between two
    /// optimiser steps (PGD-7's seven forward and backward passes, then the training
    /// pass) convert each weight once instead of once per pass.
    pub fn derived(
        &self,
        id: EntryId,
        form: &'static str,
        make: impl FnOnce(&Tensor) -> Result<DeviceBuffer<u32>>,
    ) -> Result<Arc<DeviceBuffer<u32>>> {
        let mut derived = self.derived.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = derived.get(&(id, form)) {
            return Ok(b.clone());
        }
        let b = Arc::new(make(&self.entries[id].tensor)?);
        derived.insert((id, form), b.clone());
        Ok(b)
    }

    /// How many derived copies the store holds now (device memory beyond its entries).
    pub fn derived_copies(&self) -> usize {
        self.derived.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn derived_mut(&mut self) -> &mut DerivedCopies {
        self.derived.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    fn forget_derived(&mut self, id: EntryId) {
        self.derived_mut().retain(|&(e, _), _| e != id);
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
        self.forget_derived(id);
        Ok(())
    }
}
