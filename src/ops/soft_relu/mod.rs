//! SNL's soft ReLU y = α ⊙ relu(z) + (1 − α) ⊙ z with one α per element of a site (cpu.rs
//! documents the math): the CPU reference (generic over f32/f64), the CUDA launchers
//! (cuda.rs), one function per direction that looks at the device once, and the graph node.

pub mod cpu;
pub mod cuda;

use crate::autograd::{Backward, BackwardPass, Graph, Var};
use crate::device::{ok, Device};
use crate::error::Result;
use crate::tensor::Tensor;

/// y for z [n, ...] and α of one sample's shape.
pub fn forward(dev: &Device, z: &Tensor, alpha: &Tensor) -> Result<Tensor> {
    match dev {
        Device::Cpu => {
            let mut y = Tensor::uninit_cpu(z.shape());
            cpu::forward(z.data(), alpha.data(), y.data_mut());
            y.check_written("soft_relu forward");
            Ok(y)
        }
        Device::Cuda(d) => {
            let mut y = Tensor::uninit_gpu(d, z.shape())?;
            cuda::forward(d, z.gpu(), alpha.gpu(), y.gpu_mut())?;
            Ok(y)
        }
    }
}

/// dz = dy where z > 0, dy·(1 − α) where z ≤ 0.
pub fn backward_input(dev: &Device, z: &Tensor, alpha: &Tensor, dy: &Tensor) -> Result<Tensor> {
    match dev {
        Device::Cpu => {
            let mut dz = Tensor::uninit_cpu(z.shape());
            cpu::backward_input(z.data(), alpha.data(), dy.data(), dz.data_mut());
            dz.check_written("soft_relu backward_input");
            Ok(dz)
        }
        Device::Cuda(d) => {
            let mut dz = Tensor::uninit_gpu(d, z.shape())?;
            cuda::backward_input(d, z.gpu(), alpha.gpu(), dy.gpu(), dz.gpu_mut())?;
            Ok(dz)
        }
    }
}

/// dα of α's shape `alpha_shape`: Σ over the samples of dy·max(−z, 0).
pub fn backward_alpha(
    dev: &Device,
    z: &Tensor,
    alpha_shape: &[usize],
    dy: &Tensor,
) -> Result<Tensor> {
    match dev {
        Device::Cpu => {
            let mut da = Tensor::zeros(alpha_shape);
            cpu::backward_alpha(z.data(), dy.data(), da.data_mut());
            Ok(da)
        }
        Device::Cuda(d) => {
            let mut da = Tensor::uninit_gpu(d, alpha_shape)?;
            cuda::backward_alpha(d, z.gpu(), dy.gpu(), da.gpu_mut())?;
            Ok(da)
        }
    }
}

struct SoftReluNode {
    z: Var,
    alpha: Var,
}

impl Backward for SoftReluNode {
    fn backward(&self, pass: &mut BackwardPass<'_>, _out: Var, g: &Tensor) {
        let dev = pass.device();
        let (zv, av) = (pass.value(self.z), pass.value(self.alpha));
        let dz = pass
            .needs(self.z)
            .then(|| ok(backward_input(dev, zv, av, g)));
        let da = pass
            .needs(self.alpha)
            .then(|| ok(backward_alpha(dev, zv, av.shape(), g)));
        if let Some(dz) = dz {
            pass.accumulate(self.z, dz);
        }
        if let Some(da) = da {
            pass.accumulate(self.alpha, da);
        }
    }
}

impl Graph<'_> {
    /// SNL's soft ReLU: y = z where z ≥ 0, (1 − α)·z where z < 0, for z [n, ...] and α of one
    /// sample's shape (shared by the batch). Both get gradients.
    pub fn soft_relu(&mut self, z: Var, alpha: Var) -> Var {
        let zs = self.value(z).shape().to_vec();
        assert!(
            !zs.is_empty() && self.value(alpha).shape() == &zs[1..],
            "soft_relu: α has shape {:?}, the input {zs:?} needs one sample's shape",
            self.value(alpha).shape()
        );
        let y = ok(forward(self.device(), self.value(z), self.value(alpha)));
        self.push(SoftReluNode { z, alpha }, y, &[z, alpha])
    }
}
