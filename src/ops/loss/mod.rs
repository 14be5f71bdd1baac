//! Losses: softmax cross-entropy, temperature KL (RSLAD / KD), attention transfer and AugMix's
//! Jensen-Shannon consistency loss: the CPU reference (cpu.rs, generic over f32/f64), the CUDA
//! launchers (cuda.rs), one function per direction that looks at the device once, and the
//! graph nodes. Losses are [1] tensors on the graph's device; their gradients arrive as host
//! scalars (`Tensor::item`).

pub mod cpu;
pub mod cuda;

pub use cpu::{AT_EPS, JSD_CLAMP};
pub use cuda::AtShape;

use crate::autograd::{Backward, BackwardPass, Graph, Var};
use crate::device::buffer::DeviceBuffer;
use crate::device::{ok, Device};
use crate::error::Result;
use crate::tensor::Tensor;
use std::sync::Arc;

/// Class labels, with their device copy when the loss runs on the GPU. A clone shares the
/// device copy, so the passes of one batch (PGD's K steps, a step's clean and AugMix views)
/// upload its labels once.
#[derive(Clone)]
pub struct Labels {
    pub host: Vec<u32>,
    pub gpu: Option<Arc<DeviceBuffer<u32>>>,
}

impl Labels {
    /// `labels`, uploaded when `dev` is a GPU.
    pub fn on(dev: &Device, labels: &[u32]) -> Result<Labels> {
        Ok(Labels {
            host: labels.to_vec(),
            gpu: match dev {
                Device::Cpu => None,
                Device::Cuda(d) => Some(Arc::new(d.upload(labels)?)),
            },
        })
    }
}

/// (loss [1], softmax probabilities) of a cross-entropy, the mean (or sum) over the batch.
pub fn cross_entropy(
    dev: &Device,
    logits: &Tensor,
    labels: &Labels,
    sum: bool,
) -> Result<(Tensor, Tensor)> {
    let k = logits.dim(1);
    match (dev, &labels.gpu) {
        (Device::Cuda(d), Some(lg)) => {
            let (mut l, mut p) = (
                Tensor::uninit_gpu(d, &[1])?,
                Tensor::uninit_gpu(d, logits.shape())?,
            );
            cuda::cross_entropy(d, logits.gpu(), lg, k, sum, p.gpu_mut(), l.gpu_mut())?;
            Ok((l, p))
        }
        _ => {
            let (l, p) = cpu::cross_entropy(logits.data(), &labels.host, k, sum);
            Ok((Tensor::scalar(l), Tensor::from_vec(logits.shape(), p)?))
        }
    }
}

/// The cross-entropy's gradient; `g` is the upstream gradient.
pub fn cross_entropy_backward(
    dev: &Device,
    probs: &Tensor,
    labels: &Labels,
    sum: bool,
    g: f32,
) -> Result<Tensor> {
    let k = probs.dim(1);
    match (dev, &labels.gpu) {
        (Device::Cuda(d), Some(lg)) => {
            let mut dz = Tensor::uninit_gpu(d, probs.shape())?;
            cuda::cross_entropy_backward(d, probs.gpu(), lg, k, sum, g, dz.gpu_mut())?;
            Ok(dz)
        }
        _ => {
            let mut dz = Tensor::zeros(probs.shape());
            cpu::cross_entropy_backward(probs.data(), &labels.host, k, sum, g, dz.data_mut());
            Ok(dz)
        }
    }
}

/// (loss [1], p_s, p_t) of KL_T(s ‖ t) with T² scaling.
pub fn kl_div(dev: &Device, s: &Tensor, t: &Tensor, temp: f64) -> Result<[Tensor; 3]> {
    let k = s.dim(1);
    match dev {
        Device::Cpu => {
            let (l, ps, pt) = cpu::kl_div(s.data(), t.data(), k, temp);
            Ok([
                Tensor::scalar(l),
                Tensor::from_vec(s.shape(), ps)?,
                Tensor::from_vec(s.shape(), pt)?,
            ])
        }
        Device::Cuda(d) => {
            let mut out = [
                Tensor::uninit_gpu(d, &[1])?,
                Tensor::uninit_gpu(d, s.shape())?,
                Tensor::uninit_gpu(d, s.shape())?,
            ];
            let [l, ps, pt] = &mut out;
            cuda::kl_div(
                d,
                s.gpu(),
                t.gpu(),
                k,
                temp,
                ps.gpu_mut(),
                pt.gpu_mut(),
                l.gpu_mut(),
            )?;
            Ok(out)
        }
    }
}

pub fn kl_div_backward(
    dev: &Device,
    ps: &Tensor,
    pt: &Tensor,
    temp: f64,
    g: f32,
) -> Result<Tensor> {
    let k = ps.dim(1);
    match dev {
        Device::Cpu => {
            let mut ds = Tensor::zeros(ps.shape());
            cpu::kl_div_backward(ps.data(), pt.data(), k, temp, g, ds.data_mut());
            Ok(ds)
        }
        Device::Cuda(d) => {
            let mut ds = Tensor::uninit_gpu(d, ps.shape())?;
            cuda::kl_div_backward(d, ps.gpu(), pt.gpu(), k, temp, g, ds.gpu_mut())?;
            Ok(ds)
        }
    }
}

fn at_shape(f: &Tensor) -> AtShape {
    let s = f.shape();
    AtShape {
        n: s[0],
        ch: s[1],
        hw: s[2..].iter().product(),
    }
}

/// The attention map a(F) [n, hw] of features [n, c, ...] (no loss).
pub fn attention_map(dev: &Device, f: &Tensor) -> Result<Tensor> {
    let s = at_shape(f);
    match dev {
        Device::Cpu => {
            let (a, _) = cpu::attention_map(f.data(), s.n, s.ch, s.hw);
            Tensor::from_vec(&[s.n, s.hw], a)
        }
        Device::Cuda(d) => {
            let (mut a, mut norms) = (
                Tensor::uninit_gpu(d, &[s.n, s.hw])?,
                Tensor::uninit_gpu(d, &[s.n])?,
            );
            cuda::attention(d, s, f.gpu(), None, a.gpu_mut(), norms.gpu_mut(), None)?;
            Ok(a)
        }
    }
}

/// (loss [1], a(F_s), norms) of attention transfer against the target map `at`.
pub fn attention(dev: &Device, fs: &Tensor, at: &Tensor) -> Result<[Tensor; 3]> {
    let s = at_shape(fs);
    match dev {
        Device::Cpu => {
            let (l, a, norms) = cpu::attention(fs.data(), at.data(), s.n, s.ch, s.hw);
            Ok([
                Tensor::scalar(l),
                Tensor::from_vec(&[s.n, s.hw], a)?,
                Tensor::from_vec(&[s.n], norms)?,
            ])
        }
        Device::Cuda(d) => {
            let mut out = [
                Tensor::uninit_gpu(d, &[1])?,
                Tensor::uninit_gpu(d, &[s.n, s.hw])?,
                Tensor::uninit_gpu(d, &[s.n])?,
            ];
            let [l, a, norms] = &mut out;
            cuda::attention(
                d,
                s,
                fs.gpu(),
                Some(at.gpu()),
                a.gpu_mut(),
                norms.gpu_mut(),
                Some(l.gpu_mut()),
            )?;
            Ok(out)
        }
    }
}

pub fn attention_backward(
    dev: &Device,
    fs: &Tensor,
    a: &Tensor,
    norms: &Tensor,
    at: &Tensor,
    g: f32,
) -> Result<Tensor> {
    let s = at_shape(fs);
    match dev {
        Device::Cpu => {
            let mut d = Tensor::zeros(fs.shape());
            cpu::attention_backward(
                fs.data(),
                a.data(),
                norms.data(),
                at.data(),
                s.n,
                s.ch,
                s.hw,
                g,
                d.data_mut(),
            );
            Ok(d)
        }
        Device::Cuda(d) => {
            let mut dfs = Tensor::uninit_gpu(d, fs.shape())?;
            cuda::attention_backward(
                d,
                s,
                fs.gpu(),
                a.gpu(),
                norms.gpu(),
                at.gpu(),
                g,
                dfs.gpu_mut(),
            )?;
            Ok(dfs)
        }
    }
}

/// The JSD loss [1] of three logit batches (clean, augmented 1, augmented 2).
pub fn jsd(dev: &Device, z: [&Tensor; 3]) -> Result<Tensor> {
    let k = z[0].dim(1);
    match dev {
        Device::Cpu => Ok(Tensor::scalar(cpu::jsd(z.map(|t| t.data()), k))),
        Device::Cuda(d) => {
            let mut l = Tensor::uninit_gpu(d, &[1])?;
            cuda::jsd(d, z.map(|t| t.gpu()), k, l.gpu_mut())?;
            Ok(l)
        }
    }
}

/// The JSD's gradients for the three logit batches; `g` is the upstream gradient.
pub fn jsd_backward(dev: &Device, z: [&Tensor; 3], g: f32) -> Result<[Tensor; 3]> {
    let k = z[0].dim(1);
    match dev {
        Device::Cpu => {
            let mut dz = z.map(|t| Tensor::zeros(t.shape()));
            let [d0, d1, d2] = &mut dz;
            cpu::jsd_backward(
                z.map(|t| t.data()),
                k,
                g,
                [d0.data_mut(), d1.data_mut(), d2.data_mut()],
            );
            Ok(dz)
        }
        Device::Cuda(d) => {
            let mut dz = [
                Tensor::uninit_gpu(d, z[0].shape())?,
                Tensor::uninit_gpu(d, z[1].shape())?,
                Tensor::uninit_gpu(d, z[2].shape())?,
            ];
            let [d0, d1, d2] = &mut dz;
            cuda::jsd_backward(
                d,
                z.map(|t| t.gpu()),
                k,
                g,
                [d0.gpu_mut(), d1.gpu_mut(), d2.gpu_mut()],
            )?;
            Ok(dz)
        }
    }
}

struct CrossEntropyNode {
    logits: Var,
    labels: Labels,
    sum: bool,
    probs: Tensor,
}

impl Backward for CrossEntropyNode {
    fn backward(&self, pass: &mut BackwardPass<'_>, _out: Var, g: &Tensor) {
        let dz = ok(cross_entropy_backward(
            pass.device(),
            &self.probs,
            &self.labels,
            self.sum,
            g.item(),
        ));
        pass.accumulate(self.logits, dz);
    }
}

struct KlDivNode {
    s: Var,
    temp: f64,
    ps: Tensor,
    pt: Tensor,
}

impl Backward for KlDivNode {
    fn backward(&self, pass: &mut BackwardPass<'_>, _out: Var, g: &Tensor) {
        let ds = ok(kl_div_backward(
            pass.device(),
            &self.ps,
            &self.pt,
            self.temp,
            g.item(),
        ));
        pass.accumulate(self.s, ds);
    }
}

struct AttentionNode {
    fs: Var,
    target: Tensor,
    a: Tensor,
    norms: Tensor,
}

impl Backward for AttentionNode {
    fn backward(&self, pass: &mut BackwardPass<'_>, _out: Var, g: &Tensor) {
        let d = ok(attention_backward(
            pass.device(),
            pass.value(self.fs),
            &self.a,
            &self.norms,
            &self.target,
            g.item(),
        ));
        pass.accumulate(self.fs, d);
    }
}

/// AugMix's JSD over (clean, augmented 1, augmented 2) logits; the backward recomputes the
/// softmaxes from the logits, which are small.
struct JsdNode {
    z: [Var; 3],
}

impl Backward for JsdNode {
    fn backward(&self, pass: &mut BackwardPass<'_>, _out: Var, g: &Tensor) {
        let dz = ok(jsd_backward(
            pass.device(),
            self.z.map(|v| pass.value(v)),
            g.item(),
        ));
        for (v, d) in self.z.iter().zip(dz) {
            if pass.needs(*v) {
                pass.accumulate(*v, d);
            }
        }
    }
}

impl Graph<'_> {
    /// Softmax cross-entropy, mean (or sum) over the batch.
    pub fn cross_entropy(&mut self, logits: Var, labels: &[u32], sum: bool) -> Var {
        let labels = ok(Labels::on(self.device(), labels));
        self.cross_entropy_of(logits, &labels, sum)
    }

    /// `cross_entropy` with labels already on the graph's device.
    pub fn cross_entropy_of(&mut self, logits: Var, labels: &Labels, sum: bool) -> Var {
        assert_eq!(
            self.value(logits).dim(0),
            labels.host.len(),
            "cross_entropy: batch size"
        );
        let labels = labels.clone();
        let (l, probs) = ok(cross_entropy(
            self.device(),
            self.value(logits),
            &labels,
            sum,
        ));
        let node = CrossEntropyNode {
            logits,
            labels,
            sum,
            probs,
        };
        self.push(node, l, &[logits])
    }

    /// KL_T(student ‖ target) with T² scaling; the target logits are constants.
    pub fn kl_div(&mut self, s: Var, target_logits: &Tensor, temp: f64) -> Var {
        assert_eq!(
            self.value(s).shape(),
            target_logits.shape(),
            "kl_div: shapes differ"
        );
        let t = ok(target_logits.to_device(self.device()));
        let [l, ps, pt] = ok(kl_div(self.device(), self.value(s), &t, temp));
        self.push(KlDivNode { s, temp, ps, pt }, l, &[s])
    }

    /// Attention transfer against a constant target feature map of the same shape.
    pub fn attention(&mut self, fs: Var, target_features: &Tensor) -> Var {
        assert_eq!(
            self.value(fs).shape(),
            target_features.shape(),
            "attention: shapes differ"
        );
        let dev = self.device();
        let tf = ok(target_features.to_device(dev));
        let target = ok(attention_map(dev, &tf));
        let [l, a, norms] = ok(attention(dev, self.value(fs), &target));
        let node = AttentionNode {
            fs,
            target,
            a,
            norms,
        };
        self.push(node, l, &[fs])
    }

    /// AugMix's Jensen-Shannon consistency loss of three logit batches [n, k] (clean, augmented
    /// 1, augmented 2); every one of them gets a gradient (M is not detached). λ is the caller's.
    pub fn jsd(&mut self, clean: Var, aug1: Var, aug2: Var) -> Var {
        let z = [clean, aug1, aug2];
        let shape = self.value(clean).shape().to_vec();
        assert_eq!(shape.len(), 2, "jsd: logits must be [n, k]");
        for v in [aug1, aug2] {
            assert_eq!(
                self.value(v).shape(),
                shape.as_slice(),
                "jsd: shapes differ"
            );
        }
        let l = ok(jsd(self.device(), z.map(|v| self.value(v))));
        self.push(JsdNode { z }, l, &z)
    }
}
