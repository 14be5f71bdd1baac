//! Shapes of the ops that both backends (the CPU reference and the CUDA launchers) share.

/// Shapes of one convolution: x [n, c_in, h, w], w [c_out, c_in, k, k], y [n, c_out, h_out, w_out].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    pub fn y_len(&self) -> usize {
        self.n * self.c_out * self.h_out() * self.w_out()
    }
    pub fn w_len(&self) -> usize {
        self.c_out * self.c_in * self.k * self.k
    }
    /// Rows of the im2col matrix (c_in * k * k).
    pub fn ckk(&self) -> usize {
        self.c_in * self.k * self.k
    }
    pub fn hw_out(&self) -> usize {
        self.h_out() * self.w_out()
    }
    /// A 1x1, stride-1, unpadded conv reads the input as its own im2col matrix.
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    /// Multiply-adds of the forward pass (each backward direction costs the same).
    pub fn macs(&self) -> usize {
        self.n * self.c_out * self.hw_out() * self.ckk()
    }
}

/// x is [n, c, hw] (hw = H*W flattened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnGeom {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl BnGeom {
    pub fn len(&self) -> usize {
        self.n * self.c * self.hw
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
