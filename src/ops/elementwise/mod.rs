//! Element-wise ops: add and scale (the graph's helpers), the per-channel affine map (input
//! normalisation inside the model) and the stage-2 mask statistic's abs-diff sum: the CPU
//! reference (cpu.rs, generic over f32/f64), the CUDA launchers (cuda.rs), one function per
//! direction that looks at the device once, and the graph nodes.

pub mod cpu;
pub mod cuda;

use crate::autograd::{Backward, BackwardPass, Graph, Traced, Var};
use crate::device::{ok, Device};
use crate::error::Result;
use crate::tensor::Tensor;

/// a + b.
pub fn add(dev: &Device, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    match dev {
        Device::Cpu => {
            let mut y = a.clone();
            cpu::add_assign(y.data_mut(), b.data());
            Ok(y)
        }
        Device::Cuda(d) => {
            let mut y = Tensor::uninit_gpu(d, a.shape())?;
            cuda::add(d, a.gpu(), b.gpu(), y.gpu_mut())?;
            Ok(y)
        }
    }
}

/// factor · x, where x lives: on the host even on a GPU graph (the gradient of a loss sum).
pub fn scale(dev: &Device, x: &Tensor, factor: f32) -> Result<Tensor> {
    match (dev, x.is_cuda()) {
        (Device::Cuda(d), true) => {
            let mut y = Tensor::uninit_gpu(d, x.shape())?;
            cuda::scale(d, x.gpu(), factor, y.gpu_mut())?;
            Ok(y)
        }
        _ => {
            let mut y = x.to_host()?;
            y.data_mut().iter_mut().for_each(|v| *v *= factor);
            Ok(y)
        }
    }
}

/// y = x · scale[c] + shift[c] over x [n, c, ...].
pub fn channel_affine(dev: &Device, x: &Tensor, scale: &[f32], shift: &[f32]) -> Result<Tensor> {
    let hw = x.shape()[2..].iter().product();
    match dev {
        Device::Cpu => {
            let mut y = Tensor::uninit_cpu(x.shape());
            cpu::channel_affine(x.data(), scale, shift, hw, y.data_mut());
            y.check_written("channel_affine");
            Ok(y)
        }
        Device::Cuda(d) => {
            let mut y = Tensor::uninit_gpu(d, x.shape())?;
            let (sc, sh) = (d.upload(scale)?, d.upload(shift)?);
            cuda::channel_affine(d, x.gpu(), &sc, &sh, hw, y.gpu_mut())?;
            Ok(y)
        }
    }
}

/// dx = dy · scale[c].
pub fn channel_affine_backward(dev: &Device, dy: &Tensor, scale: &[f32]) -> Result<Tensor> {
    let hw = dy.shape()[2..].iter().product();
    match dev {
        Device::Cpu => {
            let mut dx = Tensor::uninit_cpu(dy.shape());
            cpu::channel_affine_backward(dy.data(), scale, hw, dx.data_mut());
            dx.check_written("channel_affine_backward");
            Ok(dx)
        }
        Device::Cuda(d) => {
            let mut dx = Tensor::uninit_gpu(d, dy.shape())?;
            cuda::channel_affine_backward(d, dy.gpu(), &d.upload(scale)?, hw, dx.gpu_mut())?;
            Ok(dx)
        }
    }
}

/// acc += Σ over the samples of a and b of |a − b| (acc holds one sample's shape): the stage-2
/// mask statistic.
pub fn abs_diff_accumulate(dev: &Device, acc: &mut Tensor, a: &Tensor, b: &Tensor) -> Result<()> {
    match dev {
        Device::Cpu => {
            cpu::abs_diff_accumulate(acc.data_mut(), a.data(), b.data());
            Ok(())
        }
        Device::Cuda(d) => cuda::abs_diff_accumulate(d, acc.gpu_mut(), a.gpu(), b.gpu()),
    }
}

struct AddNode {
    a: Var,
    b: Var,
}

impl Backward for AddNode {
    fn traced(&self) -> Option<Traced<'_>> {
        Some(Traced::Add {
            a: self.a,
            b: self.b,
        })
    }

    fn backward(&self, pass: &mut BackwardPass<'_>, _out: Var, g: &Tensor) {
        if pass.needs(self.a) {
            pass.accumulate(self.a, g.clone());
        }
        if pass.needs(self.b) {
            pass.accumulate(self.b, g.clone());
        }
    }
}

struct ScaleNode {
    x: Var,
    factor: f32,
}

impl Backward for ScaleNode {
    fn backward(&self, pass: &mut BackwardPass<'_>, _out: Var, g: &Tensor) {
        let dx = ok(scale(pass.device(), g, self.factor));
        pass.accumulate(self.x, dx);
    }
}

struct ChannelAffineNode {
    x: Var,
    scale: Vec<f32>,
    /// Kept for the inference trace only.
    shift: Vec<f32>,
}

impl Backward for ChannelAffineNode {
    fn traced(&self) -> Option<Traced<'_>> {
        Some(Traced::ChannelAffine {
            x: self.x,
            scale: &self.scale,
            shift: &self.shift,
        })
    }

    fn backward(&self, pass: &mut BackwardPass<'_>, _out: Var, g: &Tensor) {
        let dx = ok(channel_affine_backward(pass.device(), g, &self.scale));
        pass.accumulate(self.x, dx);
    }
}

impl Graph<'_> {
    pub fn add(&mut self, a: Var, b: Var) -> Var {
        assert_eq!(
            self.value(a).shape(),
            self.value(b).shape(),
            "add: shapes differ"
        );
        let y = ok(add(self.device(), self.value(a), self.value(b)));
        self.push(AddNode { a, b }, y, &[a, b])
    }

    pub fn scale(&mut self, x: Var, factor: f32) -> Var {
        let y = ok(scale(self.device(), self.value(x), factor));
        self.push(ScaleNode { x, factor }, y, &[x])
    }

    /// y = x * scale[c] + shift[c] (input normalisation).
    pub fn channel_affine(&mut self, x: Var, scale: &[f32], shift: &[f32]) -> Var {
        let y = ok(channel_affine(self.device(), self.value(x), scale, shift));
        let node = ChannelAffineNode {
            x,
            scale: scale.to_vec(),
            shift: shift.to_vec(),
        };
        self.push(node, y, &[x])
    }
}
