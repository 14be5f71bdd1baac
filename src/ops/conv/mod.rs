//! 2-D convolution without bias (every conv in ResNet18 and WRN-22-8 is bias-free): the CPU
//! reference (cpu.rs, generic over f32/f64), the CUDA launchers (cuda.rs), one function per
//! direction that looks at the device once, and the graph node.

pub mod cpu;
pub mod cuda;
#[cfg(target_arch = "x86_64")]
mod gathered;
#[cfg(target_arch = "x86_64")]
mod implicit;
#[cfg(target_arch = "x86_64")]
mod pointwise;
#[cfg(target_arch = "x86_64")]
mod sample_minor;
#[cfg(test)]
mod test_inputs;
mod winograd;

pub use crate::geom::ConvGeom;
pub use cuda::ConvVersion;

use crate::autograd::{Backward, BackwardPass, EntryId, Graph, ParamStore, Traced, Var};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::{ok, Device};
use crate::error::Result;
use crate::tensor::channel_sums::ChannelSums;
use crate::tensor::precision::Precision;
use crate::tensor::Tensor;
use std::cell::OnceCell;
use std::sync::Arc;

/// The kernels a convolution of `precision` runs on the GPU: the TF32 tensor-core `_v2` when
/// asked for, else exact f32 (v1), the default until the tensor-core kernels have been checked
/// on hardware. Under bf16, v1 multiplies the rounded operands of the directions the bf16
/// tensor-core kernels do not take (those whose copied channels do not come in eights, as the
/// 3-channel stem's forward and weight gradient), which gives the same products.
fn gpu_version(precision: Precision) -> ConvVersion {
    match precision {
        Precision::Tf32 => ConvVersion::V2,
        Precision::F32 | Precision::Bf16 => ConvVersion::V1,
    }
}

/// A convolution's weights: the tensor, and where it is a store entry, that entry, whose bf16
/// copies the store keeps until the entry changes (`ParamStore::derived`), so that all the
/// passes between two optimiser steps share one conversion of each weight.
#[derive(Clone, Copy)]
pub struct Weights<'a> {
    tensor: &'a Tensor,
    entry: Option<(&'a ParamStore, EntryId)>,
}

impl<'a> Weights<'a> {
    /// Weights converted afresh by each call that needs another form.
    pub fn plain(tensor: &'a Tensor) -> Self {
        Weights {
            tensor,
            entry: None,
        }
    }

    /// Entry `id` of `store`.
    pub fn stored(store: &'a ParamStore, id: EntryId) -> Self {
        Weights {
            tensor: store.get(id),
            entry: Some((store, id)),
        }
    }

    pub fn tensor(&self) -> &'a Tensor {
        self.tensor
    }

    fn converted(
        &self,
        form: &'static str,
        make: impl FnOnce(&Tensor) -> Result<DeviceBuffer<u32>>,
    ) -> Result<Arc<DeviceBuffer<u32>>> {
        match self.entry {
            Some((store, id)) => store.derived(id, form, make),
            None => Ok(Arc::new(make(self.tensor)?)),
        }
    }

    /// The bf16 forward's copy (`cuda::weights_bf16`).
    fn forward_bf16(&self, d: &CudaDevice, g: &ConvGeom) -> Result<Arc<DeviceBuffer<u32>>> {
        self.converted("conv forward bf16", |w| cuda::weights_bf16(d, g, w.gpu()))
    }

    /// The bf16 data gradient's copy (`cuda::weights_t_bf16`).
    fn data_gradient_bf16(&self, d: &CudaDevice, g: &ConvGeom) -> Result<Arc<DeviceBuffer<u32>>> {
        self.converted("conv data gradient bf16", |w| {
            cuda::weights_t_bf16(d, g, w.gpu())
        })
    }
}

/// y [n, c_out, h_out, w_out] = conv(x, w), in f32.
pub fn forward(dev: &Device, g: &ConvGeom, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    forward_at(dev, g, x, w, Precision::F32)
}

/// `forward` in `precision` (`crate::tensor::precision`: under bf16 the operands and y are
/// rounded).
pub fn forward_at(
    dev: &Device,
    g: &ConvGeom,
    x: &Tensor,
    w: &Tensor,
    precision: Precision,
) -> Result<Tensor> {
    Ok(forward_with_sums(dev, g, x, Weights::plain(w), precision, false)?.0)
}

/// `forward_at`, and with `want_sums` the per-channel sums of y for a BatchNorm after it where
/// the convolution computed them in passing (the GPU's bf16 kernel when it does not split K);
/// `None` elsewhere: the BatchNorm then reads y once more for them.
pub fn forward_with_sums(
    dev: &Device,
    g: &ConvGeom,
    x: &Tensor,
    weights: Weights<'_>,
    precision: Precision,
    want_sums: bool,
) -> Result<(Tensor, Option<ChannelSums>)> {
    precision.check(dev)?;
    let w = weights.tensor();
    let shape = [g.n, g.c_out, g.h_out(), g.w_out()];
    let y = match dev {
        Device::Cuda(d) if precision == Precision::Bf16 && cuda::bf16_applies(g) => {
            // The conversions round the operands.
            let (xh, wh) = (
                cuda::input_bf16(d, g, x.gpu())?,
                weights.forward_bf16(d, g)?,
            );
            let mut y = Tensor::uninit_gpu(d, &shape)?;
            let epilogue = cuda::Bf16Epilogue {
                round: true,
                sums: want_sums,
            };
            let fused = cuda::forward_bf16(d, g, &xh, &wh, y.gpu_mut(), epilogue)?;
            let y = if fused.rounded {
                y
            } else {
                precision.store(y, dev)?
            };
            return Ok((y, fused.sums));
        }
        Device::Cpu => {
            let (x, w) = (precision.operand(x, dev)?, precision.operand(w, dev)?);
            let mut y = Tensor::uninit_cpu(&shape);
            cpu::forward(g, x.data(), w.data(), y.data_mut());
            y.check_written("conv forward");
            y
        }
        Device::Cuda(d) => {
            let (x, w) = (precision.operand(x, dev)?, precision.operand(w, dev)?);
            let mut y = Tensor::uninit_gpu(d, &shape)?;
            cuda::forward(d, g, x.gpu(), w.gpu(), y.gpu_mut(), gpu_version(precision))?;
            y
        }
    };
    Ok((precision.store(y, dev)?, None))
}

/// dx [n, c_in, h, w] from the weights and dy, in f32.
pub fn backward_data(dev: &Device, g: &ConvGeom, w: &Tensor, dy: &Tensor) -> Result<Tensor> {
    backward_data_at(dev, g, w, dy, Precision::F32)
}

/// dy of one convolution, and its NHWC bf16 copy for the GPU's bf16 kernels, made on first
/// use: the data and weight gradients of one backward share it.
struct GradOutput<'a> {
    dy: &'a Tensor,
    bf16: OnceCell<DeviceBuffer<u32>>,
}

impl<'a> GradOutput<'a> {
    fn new(dy: &'a Tensor) -> Self {
        GradOutput {
            dy,
            bf16: OnceCell::new(),
        }
    }

    fn bf16(&self, d: &CudaDevice, g: &ConvGeom) -> Result<&DeviceBuffer<u32>> {
        if let Some(b) = self.bf16.get() {
            return Ok(b);
        }
        let b = cuda::grad_output_bf16(d, g, self.dy.gpu())?;
        Ok(self.bf16.get_or_init(|| b))
    }
}

/// `backward_data` in `precision` (under bf16 the operands and dx are rounded).
pub fn backward_data_at(
    dev: &Device,
    g: &ConvGeom,
    w: &Tensor,
    dy: &Tensor,
    precision: Precision,
) -> Result<Tensor> {
    backward_data_of(dev, g, Weights::plain(w), &GradOutput::new(dy), precision)
}

fn backward_data_of(
    dev: &Device,
    g: &ConvGeom,
    weights: Weights<'_>,
    grad: &GradOutput<'_>,
    precision: Precision,
) -> Result<Tensor> {
    precision.check(dev)?;
    let (shape, dy, w) = ([g.n, g.c_in, g.h, g.w], grad.dy, weights.tensor());
    match dev {
        Device::Cuda(d) if precision == Precision::Bf16 && cuda::bf16_applies_backward_data(g) => {
            let wth = weights.data_gradient_bf16(d, g)?;
            let mut dx = Tensor::uninit_gpu(d, &shape)?;
            cuda::backward_data_bf16(d, g, &wth, grad.bf16(d, g)?, dx.gpu_mut())?;
            precision.store(dx, dev)
        }
        Device::Cpu => {
            let (w, dy) = (precision.operand(w, dev)?, precision.operand(dy, dev)?);
            let mut dx = Tensor::uninit_cpu(&shape);
            cpu::backward_data(g, w.data(), dy.data(), dx.data_mut());
            dx.check_written("conv backward_data");
            precision.store(dx, dev)
        }
        Device::Cuda(d) => {
            let (w, dy) = (precision.operand(w, dev)?, precision.operand(dy, dev)?);
            let mut dx = Tensor::uninit_gpu(d, &shape)?;
            let v = gpu_version(precision);
            cuda::backward_data(d, g, w.gpu(), dy.gpu(), dx.gpu_mut(), v)?;
            precision.store(dx, dev)
        }
    }
}

/// dw [c_out, c_in, k, k] from x and dy, in f32.
pub fn backward_weight(dev: &Device, g: &ConvGeom, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    backward_weight_at(dev, g, x, dy, Precision::F32)
}

/// `backward_weight` in `precision` (under bf16 the operands are rounded; dw, the master
/// weights' gradient, stays f32).
pub fn backward_weight_at(
    dev: &Device,
    g: &ConvGeom,
    x: &Tensor,
    dy: &Tensor,
    precision: Precision,
) -> Result<Tensor> {
    backward_weight_of(dev, g, x, &GradOutput::new(dy), precision)
}

fn backward_weight_of(
    dev: &Device,
    g: &ConvGeom,
    x: &Tensor,
    grad: &GradOutput<'_>,
    precision: Precision,
) -> Result<Tensor> {
    precision.check(dev)?;
    let (shape, dy) = ([g.c_out, g.c_in, g.k, g.k], grad.dy);
    match dev {
        Device::Cuda(d)
            if precision == Precision::Bf16 && cuda::bf16_applies_backward_weight(g) =>
        {
            let xh = cuda::input_bf16(d, g, x.gpu())?;
            let mut dw = Tensor::uninit_gpu(d, &shape)?;
            cuda::backward_weight_bf16(d, g, &xh, grad.bf16(d, g)?, dw.gpu_mut())?;
            Ok(dw)
        }
        Device::Cpu => {
            let (x, dy) = (precision.operand(x, dev)?, precision.operand(dy, dev)?);
            let mut dw = Tensor::uninit_cpu(&shape);
            cpu::backward_weight(g, x.data(), dy.data(), dw.data_mut());
            dw.check_written("conv backward_weight");
            Ok(dw)
        }
        Device::Cuda(d) => {
            let (x, dy) = (precision.operand(x, dev)?, precision.operand(dy, dev)?);
            let mut dw = Tensor::uninit_gpu(d, &shape)?;
            let v = gpu_version(precision);
            cuda::backward_weight(d, g, x.gpu(), dy.gpu(), dw.gpu_mut(), v)?;
            Ok(dw)
        }
    }
}

/// The graph node of a convolution.
struct ConvNode {
    x: Var,
    w: Var,
    w_entry: EntryId,
    geom: ConvGeom,
    precision: Precision,
}

impl Backward for ConvNode {
    fn traced(&self) -> Option<Traced<'_>> {
        Some(Traced::Conv {
            x: self.x,
            w: self.w,
            stride: self.geom.stride,
            pad: self.geom.pad,
        })
    }

    fn backward(&self, pass: &mut BackwardPass<'_>, _out: Var, g: &Tensor) {
        let (dev, p) = (pass.device(), self.precision);
        // Under bf16 dy is rounded once for both products (on the CPU here; on the GPU by its
        // one bf16 copy, which `grad` makes for whichever direction needs it first).
        let g = if matches!(dev, Device::Cpu) {
            ok(p.operand(g, dev))
        } else {
            std::borrow::Cow::Borrowed(g)
        };
        let grad = GradOutput::new(&g);
        if pass.needs(self.x) {
            let dx = ok(backward_data_of(
                dev,
                &self.geom,
                Weights::stored(pass.store(), self.w_entry),
                &grad,
                p,
            ));
            pass.accumulate(self.x, dx);
        }
        if pass.needs(self.w) {
            let dw = ok(backward_weight_of(
                dev,
                &self.geom,
                pass.value(self.x),
                &grad,
                p,
            ));
            pass.accumulate(self.w, dw);
        }
    }
}

impl Graph<'_> {
    /// Convolution of x [n, c, h, w] with the store weight `w` [o, c, k, k].
    pub fn conv2d(&mut self, x: Var, w: EntryId, stride: usize, pad: usize) -> Var {
        let wv = self.param(w);
        let (xs, ws) = (self.value(x).shape(), self.value(wv).shape());
        let geom = ConvGeom {
            n: xs[0],
            c_in: xs[1],
            h: xs[2],
            w: xs[3],
            c_out: ws[0],
            k: ws[2],
            stride,
            pad,
        };
        assert_eq!(
            ws[1], xs[1],
            "conv2d: weight expects {} input channels, got {}",
            ws[1], xs[1]
        );
        let precision = self.precision();
        let (xv, wt) = (self.value(x), Weights::stored(self.store(), w));
        // Every convolution of the models is followed by a BatchNorm, which takes the sums.
        let (y, sums) = ok(forward_with_sums(
            self.device(),
            &geom,
            xv,
            wt,
            precision,
            true,
        ));
        let node = ConvNode {
            x,
            w: wv,
            w_entry: w,
            geom,
            precision,
        };
        let y = self.push(node, y, &[x, wv]);
        if let Some(sums) = sums {
            self.attach_channel_sums(y, sums);
        }
        y
    }

    /// Every convolution this graph has run, in order (benchmarks read a model's layer shapes
    /// from one forward pass).
    pub fn conv_geoms(&self) -> Vec<ConvGeom> {
        self.nodes_of::<ConvNode>().map(|n| n.geom).collect()
    }
}
