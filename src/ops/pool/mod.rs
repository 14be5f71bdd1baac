//! Global average pooling [n, c, h, w] → [n, c] (WRN's avg-pool 8 on an 8x8 map is the same):
//! the CPU reference (cpu.rs), the CUDA launchers (cuda.rs), one function per direction that
//! looks at the device once, and the graph node.

pub mod cpu;
pub mod cuda;

use crate::autograd::{Backward, BackwardPass, Graph, Traced, Var};
use crate::device::{ok, Device};
use crate::error::Result;
use crate::tensor::Tensor;

pub fn forward(dev: &Device, x: &Tensor) -> Result<Tensor> {
    let s = x.shape();
    let (planes, hw) = (s[0] * s[1], s[2] * s[3]);
    let shape = [s[0], s[1]];
    match dev {
        Device::Cpu => {
            let mut y = Tensor::zeros(&shape);
            cpu::forward(x.data(), planes, hw, y.data_mut());
            Ok(y)
        }
        Device::Cuda(d) => {
            let mut y = Tensor::uninit_gpu(d, &shape)?;
            cuda::avg_pool(d, x.gpu(), planes, hw, y.gpu_mut())?;
            Ok(y)
        }
    }
}

/// dx of the input shape `x_shape` [n, c, h, w].
pub fn backward(dev: &Device, dy: &Tensor, x_shape: &[usize]) -> Result<Tensor> {
    let (planes, hw) = (x_shape[0] * x_shape[1], x_shape[2] * x_shape[3]);
    match dev {
        Device::Cpu => {
            let mut dx = Tensor::zeros(x_shape);
            cpu::backward(dy.data(), planes, hw, dx.data_mut());
            Ok(dx)
        }
        Device::Cuda(d) => {
            let mut dx = Tensor::uninit_gpu(d, x_shape)?;
            cuda::avg_pool_backward(d, dy.gpu(), planes, hw, dx.gpu_mut())?;
            Ok(dx)
        }
    }
}

struct AvgPoolNode {
    x: Var,
}

impl Backward for AvgPoolNode {
    fn traced(&self) -> Option<Traced<'_>> {
        Some(Traced::GlobalAvgPool { x: self.x })
    }

    fn backward(&self, pass: &mut BackwardPass<'_>, _out: Var, g: &Tensor) {
        let dx = ok(backward(pass.device(), g, pass.value(self.x).shape()));
        pass.accumulate(self.x, dx);
    }
}

impl Graph<'_> {
    /// Global average pool [n, c, h, w] → [n, c].
    pub fn avg_pool(&mut self, x: Var) -> Var {
        let y = ok(forward(self.device(), self.value(x)));
        self.push(AvgPoolNode { x }, y, &[x])
    }
}
