//! Dense f32 tensors. Shapes are row-major (NCHW for images, OIHW for conv weights).
//!
//! Storage is an enum so a device backend can add its own variant; the CPU variant is a plain
//! `Vec<f32>` that the reference ops read and write directly.

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    Cpu(Vec<f32>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

impl Tensor {
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor::full(shape, 0.0)
    }

    pub fn full(shape: &[usize], v: f32) -> Self {
        let n = shape.iter().product();
        Tensor {
            shape: shape.to_vec(),
            storage: Storage::Cpu(vec![v; n]),
        }
    }

    /// A tensor over `data`, which must hold exactly `shape.iter().product()` values.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::shape(
                "Tensor::from_vec",
                format!("{n} values for shape {shape:?}"),
                format!("{} values", data.len()),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: Storage::Cpu(data),
        })
    }

    pub fn scalar(v: f32) -> Self {
        Tensor {
            shape: vec![1],
            storage: Storage::Cpu(vec![v]),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of dimension `i`.
    pub fn dim(&self, i: usize) -> usize {
        self.shape[i]
    }

    pub fn data(&self) -> &[f32] {
        match &self.storage {
            Storage::Cpu(v) => v,
        }
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        match &mut self.storage {
            Storage::Cpu(v) => v,
        }
    }

    pub fn into_vec(self) -> Vec<f32> {
        match self.storage {
            Storage::Cpu(v) => v,
        }
    }

    /// The first value (the value of a one-element tensor such as a loss).
    pub fn item(&self) -> f32 {
        self.data()[0]
    }

    /// The same values under another shape with the same number of elements.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return Err(Error::shape(
                "Tensor::reshape",
                format!("{} elements", self.numel()),
                format!("shape {shape:?}"),
            ));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Rows `start..end` of the leading dimension (a sub-batch), copied.
    pub fn slice_rows(&self, start: usize, end: usize) -> Tensor {
        let row: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        Tensor {
            shape,
            storage: Storage::Cpu(self.data()[start * row..end * row].to_vec()),
        }
    }

    /// Concatenation along the leading dimension.
    pub fn cat_rows(parts: &[&Tensor]) -> Result<Tensor> {
        let first = parts
            .first()
            .ok_or_else(|| Error::shape("Tensor::cat_rows", "at least one tensor", "none"))?;
        let mut data = Vec::new();
        let mut rows = 0;
        for p in parts {
            if p.shape[1..] != first.shape[1..] {
                return Err(Error::shape(
                    "Tensor::cat_rows",
                    format!("[*, {:?}]", &first.shape[1..]),
                    format!("{:?}", p.shape),
                ));
            }
            rows += p.shape[0];
            data.extend_from_slice(p.data());
        }
        let mut shape = first.shape.clone();
        shape[0] = rows;
        Tensor::from_vec(&shape, data)
    }
}
