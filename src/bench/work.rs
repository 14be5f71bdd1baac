//! Turns an item into a closure that runs its work once on a device, with every buffer made
//! beforehand (so a measurement is of the work, not of its set-up). The inputs are fixed
//! pseudo-random values; the images are the built-in synthetic set.

use super::{ConvDir, Item, Work};
use crate::augmix::{augmix_batch, AugMixConfig};
use crate::batches::GpuImages;
use crate::corrupt::cuda::{corrupt_device, has_kernel, GpuResources};
use crate::corrupt::{corrupt_batch, Resources, Severity, CIFAR_PLANE};
use crate::data::batch::CropFlip;
use crate::data::source::{DatasetKind, DatasetSpec};
use crate::data::{ImageSet, Split};
use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::geom::{BnGeom, ConvGeom};
use crate::nn::{Arch, Model, ModelConfig};
use crate::ops::bn_act::cuda::{self as gbn, BnGradsGpu, BnParams};
use crate::ops::bn_act::{self, Activation, BnGrads, BN_EPS};
use crate::ops::conv::cuda::{self as gconv, ConvVersion};
use crate::ops::pgd::cuda as gpgd;
use crate::ops::{conv, pgd};
use crate::optim::{Sgd, SgdConfig};
use crate::rng::{self, stream};
use crate::robust::pgd::PgdConfig;
use crate::tensor::precision::Precision;
use crate::tensor::Tensor;
use crate::train::step::{teacher_step, AugViews, StepKey};
use std::sync::Arc;

/// One run of an item's work.
pub type Runner = Box<dyn FnMut() -> Result<()>>;

/// An item ready to run, or why it cannot run here.
pub enum Prepared {
    Run(Runner),
    Skip(String),
}

/// What the items share: the device, the images and the corruption resources.
pub struct Bench {
    pub device: Device,
    images: ImageSet,
    resources: Resources,
    gpu: Option<GpuSide>,
}

/// The GPU copies, shared by the items' closures.
struct GpuSide {
    images: Arc<GpuImages>,
    resources: Arc<GpuResources>,
}

impl Bench {
    /// `n` images (the synthetic test set, repeated if it is smaller) and the corruption
    /// resources (frost needs its textures; without them frost is skipped).
    pub fn new(device: Device, n: usize, resources: Resources) -> Result<Bench> {
        let mut spec = DatasetSpec::new(DatasetKind::Synthetic, None);
        spec.test_limit = Some(n);
        let mut images = spec.load(Split::Test)?;
        let have = images.len();
        if have == 0 {
            return Err(Error::Data("the synthetic test set is empty".into()));
        }
        images.images = (0..n)
            .flat_map(|i| images.image(i % have).to_vec())
            .collect();
        images.labels = (0..n).map(|i| images.labels[i % have]).collect();
        let gpu = match &device {
            Device::Cuda(d) => Some(GpuSide {
                images: Arc::new(GpuImages::upload(&images, d)?),
                resources: Arc::new(GpuResources::upload(d, &resources)?),
            }),
            Device::Cpu => None,
        };
        Ok(Bench {
            device,
            images,
            resources,
            gpu,
        })
    }

    /// The closure that runs `item` once.
    pub fn prepare(&self, item: &Item) -> Result<Prepared> {
        match (&item.work, &self.device) {
            (Work::Conv { precision, .. }, Device::Cpu) if *precision != Precision::F32 => {
                Ok(Prepared::Skip(format!(
                    "the {} tensor-core kernels exist on the GPU only",
                    precision.name()
                )))
            }
            (Work::Conv { geom, dir, .. }, Device::Cpu) => Ok(Prepared::Run(conv_cpu(*geom, *dir))),
            (
                Work::Conv {
                    geom,
                    dir,
                    precision: Precision::Bf16,
                },
                Device::Cuda(d),
            ) => Ok(Prepared::Run(conv_gpu_bf16(d.clone(), *geom, *dir)?)),
            (
                Work::Conv {
                    geom,
                    dir,
                    precision,
                },
                Device::Cuda(d),
            ) => {
                let v = if *precision == Precision::Tf32 {
                    ConvVersion::V2
                } else {
                    ConvVersion::V1
                };
                Ok(Prepared::Run(conv_gpu(d.clone(), *geom, *dir, v)?))
            }
            (&Work::DualBnRelu { n, chw, backward }, _) => {
                let [c, h, w] = chw;
                let geom = BnGeom { n, c, hw: h * w };
                Ok(Prepared::Run(match &self.device {
                    Device::Cpu => bn_cpu(geom, backward),
                    Device::Cuda(d) => bn_gpu(d.clone(), geom, backward)?,
                }))
            }
            (Work::PgdUpdate { n }, _) => self.pgd(n * 3 * 32 * 32),
            (Work::AugMix { n }, _) => self.augmix(*n),
            (Work::Corrupt { corruption, n }, _) => self.corrupt(*corruption, *n),
            (Work::Stage1Step { arch, width, batch }, _) => {
                Ok(Prepared::Run(self.stage1(*arch, *width, *batch)?))
            }
        }
    }

    fn pgd(&self, len: usize) -> Result<Prepared> {
        let (alpha, eps) = (2.0 / 255.0, 8.0 / 255.0);
        let x0 = values(len, 1, 0.0, 1.0);
        let grad = values(len, 2, -1.0, 1.0);
        let mut x = x0.clone();
        Ok(Prepared::Run(match &self.device {
            Device::Cpu => Box::new(move || {
                pgd::cpu::step(&mut x, &x0, &grad, alpha, eps);
                Ok(())
            }),
            Device::Cuda(d) => {
                let d = d.clone();
                let (x0, grad, mut x) = (d.upload(&x0)?, d.upload(&grad)?, d.upload(&x)?);
                Box::new(move || gpgd::step(&d, &mut x, &x0, &grad, alpha, eps))
            }
        }))
    }

    fn augmix(&self, n: usize) -> Result<Prepared> {
        let indices: Vec<usize> = (0..n).collect();
        let crop = Some(CropFlip { pad: 4, seed: 1 });
        let cfg = AugMixConfig::default();
        let mut key = 0;
        Ok(Prepared::Run(match &self.gpu {
            None => {
                let set = self.images.clone();
                Box::new(move || {
                    key += n as u64;
                    augmix_batch(&set, &indices, crop, key, &cfg, 0).map(drop)
                })
            }
            Some(g) => {
                let images = g.images.clone();
                Box::new(move || {
                    key += n as u64;
                    images.augmix_batch(&indices, crop, key, &cfg, 0).map(drop)
                })
            }
        }))
    }

    fn corrupt(&self, c: crate::corrupt::Corruption, n: usize) -> Result<Prepared> {
        let s = Severity::new(3)?;
        if let Err(e) = self.resources.check(c) {
            return Ok(Prepared::Skip(e.to_string()));
        }
        Ok(Prepared::Run(match (&self.gpu, &self.device) {
            (Some(g), Device::Cuda(d)) => {
                if !has_kernel(c, s) {
                    return Ok(Prepared::Skip(format!(
                        "{} at severity 3 has no GPU kernel (it runs on the CPU)",
                        c.name()
                    )));
                }
                let d = d.clone();
                let (images, res) = (g.images.clone(), g.resources.clone());
                let mut out = d.alloc::<u8>(images.images().len())?;
                Box::new(move || corrupt_device(&d, c, s, images.images(), n, 0, 0, &res, &mut out))
            }
            _ => {
                let (images, res) = (self.images.images.clone(), self.resources.clone());
                Box::new(move || corrupt_batch(c, s, &images, CIFAR_PLANE, 0, 0, &res).map(drop))
            }
        }))
    }

    fn stage1(&self, arch: Arch, width: f32, batch: usize) -> Result<Runner> {
        if batch < 2 {
            return Err(Error::Config(format!(
                "the stage-1 step needs a batch of at least 2 (a clean and an attacked half), got {batch}"
            )));
        }
        let mut model = Model::new(ModelConfig::new(arch, width), 0)?;
        model.to_device(&self.device)?;
        let mut sgd = Sgd::new(SgdConfig::default(), &model.store);
        let half = batch.div_ceil(2);
        let x = Tensor::from_vec(&[batch, 3, 32, 32], values(batch * 3072, 3, 0.0, 1.0))?
            .into_device(&self.device)?;
        let views = AugViews {
            first: Tensor::from_vec(&[half, 3, 32, 32], values(half * 3072, 4, 0.0, 1.0))?
                .into_device(&self.device)?,
            second: None,
            jsd_lambda: 0.0,
        };
        let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
        let pgd = PgdConfig::linf(7);
        let mut step = 0;
        Ok(Box::new(move || {
            step += 1;
            let key = StepKey { seed: 0, step };
            let s = teacher_step(
                &mut model,
                &mut sgd,
                &x,
                Some(&views),
                &labels,
                0.05,
                &pgd,
                key,
            );
            if s.loss.is_finite() {
                Ok(())
            } else {
                Err(Error::Data(format!("stage-1 step {step}: loss {}", s.loss)))
            }
        }))
    }
}

/// `n` fixed pseudo-random values in [lo, hi).
fn values(n: usize, key: u64, lo: f32, hi: f32) -> Vec<f32> {
    (0..n)
        .map(|i| lo + (hi - lo) * rng::uniform(key, stream::SYNTHETIC, i as u64))
        .collect()
}

/// A mask over one sample's c·hw sites keeping every other ReLU.
fn half_mask(len: usize) -> Vec<f32> {
    (0..len).map(|i| (i % 2) as f32).collect()
}

/// The buffers of one convolution direction: (its two inputs, its output).
fn conv_buffers(g: &ConvGeom, dir: ConvDir) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (x, w, y) = (g.x_len(), g.w_len(), g.y_len());
    match dir {
        ConvDir::Forward => (
            values(x, 5, -1.0, 1.0),
            values(w, 6, -0.1, 0.1),
            vec![0.0; y],
        ),
        ConvDir::BackwardData => (
            values(w, 6, -0.1, 0.1),
            values(y, 7, -1.0, 1.0),
            vec![0.0; x],
        ),
        ConvDir::BackwardWeight => (
            values(x, 5, -1.0, 1.0),
            values(y, 7, -1.0, 1.0),
            vec![0.0; w],
        ),
    }
}

fn conv_cpu(g: ConvGeom, dir: ConvDir) -> Runner {
    let (a, b, mut out) = conv_buffers(&g, dir);
    Box::new(move || {
        match dir {
            ConvDir::Forward => conv::cpu::forward(&g, &a, &b, &mut out),
            ConvDir::BackwardData => conv::cpu::backward_data(&g, &a, &b, &mut out),
            ConvDir::BackwardWeight => conv::cpu::backward_weight(&g, &a, &b, &mut out),
        }
        Ok(())
    })
}

fn conv_gpu(d: Arc<CudaDevice>, g: ConvGeom, dir: ConvDir, v: ConvVersion) -> Result<Runner> {
    let (a, b, out) = conv_buffers(&g, dir);
    let (a, b, mut out) = (d.upload(&a)?, d.upload(&b)?, d.upload(&out)?);
    Ok(Box::new(move || match dir {
        ConvDir::Forward => gconv::forward(&d, &g, &a, &b, &mut out, v),
        ConvDir::BackwardData => gconv::backward_data(&d, &g, &a, &b, &mut out, v),
        ConvDir::BackwardWeight => gconv::backward_weight(&d, &g, &a, &b, &mut out, v),
    }))
}

/// A bf16 direction on operands converted once, outside the timed closure.
fn conv_gpu_bf16(d: Arc<CudaDevice>, g: ConvGeom, dir: ConvDir) -> Result<Runner> {
    let (a, b, out) = conv_buffers(&g, dir);
    let (a, b, mut out) = (d.upload(&a)?, d.upload(&b)?, d.upload(&out)?);
    match dir {
        ConvDir::Forward => {
            let (xh, wh) = (
                gconv::input_bf16(&d, &g, &a)?,
                gconv::weights_bf16(&d, &g, &b)?,
            );
            // The bare convolution (no epilogue fusion), as cuDNN's is timed.
            let bare = gconv::Bf16Epilogue::default();
            Ok(Box::new(move || {
                gconv::forward_bf16(&d, &g, &xh, &wh, &mut out, bare).map(drop)
            }))
        }
        ConvDir::BackwardData => {
            let wth = gconv::weights_t_bf16(&d, &g, &a)?;
            let dyh = gconv::grad_output_bf16(&d, &g, &b)?;
            Ok(Box::new(move || {
                gconv::backward_data_bf16(&d, &g, &wth, &dyh, &mut out)
            }))
        }
        ConvDir::BackwardWeight => {
            let xh = gconv::input_bf16(&d, &g, &a)?;
            let dyh = gconv::grad_output_bf16(&d, &g, &b)?;
            Ok(Box::new(move || {
                gconv::backward_weight_bf16(&d, &g, &xh, &dyh, &mut out)
            }))
        }
    }
}

/// One half of the dual-BN batch on the CPU: its input, forward output, statistics,
/// parameters and gradients.
struct CpuHalf {
    geom: BnGeom,
    x: Vec<f32>,
    y: Vec<f32>,
    dy: Vec<f32>,
    stats: bn_act::BatchStats<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    dx: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
}

impl CpuHalf {
    fn forward(&mut self, act: Activation<'_, f32>) {
        self.stats = bn_act::cpu::batch_stats(&self.geom, &self.x, BN_EPS);
        let s = &self.stats;
        bn_act::cpu::forward(
            &self.geom,
            &self.x,
            &s.mean,
            &s.invstd,
            &self.gamma,
            &self.beta,
            None,
            act,
            &mut self.y,
        );
    }

    fn backward(&mut self, act: Activation<'_, f32>) {
        let s = &self.stats;
        let out = BnGrads {
            dx: Some(&mut self.dx),
            dgamma: Some(&mut self.dgamma),
            dbeta: Some(&mut self.dbeta),
            dr: None,
        };
        bn_act::cpu::backward(
            &self.geom,
            &self.x,
            &self.y,
            &s.mean,
            &s.invstd,
            &self.gamma,
            act,
            true,
            &self.dy,
            out,
        );
    }
}

/// A ReLU after the BN at every site the mask keeps.
fn masked(mask: &[f32]) -> Activation<'_, f32> {
    Activation {
        relu: true,
        mask: Some(mask),
    }
}

/// The geometry of one half of a dual-BN batch: the clean half gets the odd sample.
fn halves(g: BnGeom) -> [BnGeom; 2] {
    let first = g.n.div_ceil(2);
    [
        BnGeom { n: first, ..g },
        BnGeom {
            n: g.n - first,
            ..g
        },
    ]
}

fn bn_cpu(g: BnGeom, backward: bool) -> Runner {
    let mask = half_mask(g.c * g.hw);
    let mut parts: Vec<CpuHalf> = halves(g)
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let k = i as u64;
            let x = values(h.len(), 10 + k, -2.0, 2.0);
            let mut half = CpuHalf {
                geom: h,
                stats: bn_act::cpu::batch_stats(&h, &x, BN_EPS),
                x,
                y: vec![0.0; h.len()],
                dy: values(h.len(), 40 + k, -1.0, 1.0),
                gamma: values(h.c, 20 + k, 0.5, 1.5),
                beta: values(h.c, 30 + k, -0.5, 0.5),
                dx: vec![0.0; h.len()],
                dgamma: vec![0.0; h.c],
                dbeta: vec![0.0; h.c],
            };
            half.forward(masked(&mask));
            half
        })
        .collect();
    Box::new(move || {
        for p in parts.iter_mut() {
            if backward {
                p.backward(masked(&mask));
            } else {
                p.forward(masked(&mask));
            }
        }
        Ok(())
    })
}

/// One half of the dual-BN batch on the GPU.
struct GpuHalf {
    geom: BnGeom,
    x: DeviceBuffer<f32>,
    y: DeviceBuffer<f32>,
    dy: DeviceBuffer<f32>,
    dx: DeviceBuffer<f32>,
    mean: DeviceBuffer<f32>,
    invstd: DeviceBuffer<f32>,
    var: DeviceBuffer<f32>,
    gamma: DeviceBuffer<f32>,
    beta: DeviceBuffer<f32>,
    dgamma: DeviceBuffer<f32>,
    dbeta: DeviceBuffer<f32>,
}

impl GpuHalf {
    fn forward(&mut self, d: &CudaDevice, mask: &DeviceBuffer<f32>) -> Result<()> {
        let eps = BN_EPS as f32;
        gbn::stats(
            d,
            &self.geom,
            &self.x,
            eps,
            &mut self.mean,
            &mut self.invstd,
            &mut self.var,
        )?;
        let p = BnParams {
            mean: &self.mean,
            invstd: &self.invstd,
            gamma: &self.gamma,
            beta: &self.beta,
            mask: Some(mask),
            relu: true,
        };
        gbn::forward(d, &self.geom, &self.x, None, &p, &mut self.y)
    }

    fn backward(&mut self, d: &CudaDevice, mask: &DeviceBuffer<f32>) -> Result<()> {
        let p = BnParams {
            mean: &self.mean,
            invstd: &self.invstd,
            gamma: &self.gamma,
            beta: &self.beta,
            mask: Some(mask),
            relu: true,
        };
        let out = BnGradsGpu {
            dx: Some(&mut self.dx),
            dgamma: Some(&mut self.dgamma),
            dbeta: Some(&mut self.dbeta),
            dr: None,
        };
        // No residual was added: the gate comes from x.
        let gate = gbn::Gate::FromInput;
        gbn::backward(d, &self.geom, &self.x, gate, &self.dy, &p, true, out)
    }
}

fn bn_gpu(d: Arc<CudaDevice>, g: BnGeom, backward: bool) -> Result<Runner> {
    let mask = d.upload(&half_mask(g.c * g.hw))?;
    let mut parts = halves(g)
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let k = i as u64;
            Ok(GpuHalf {
                geom: h,
                x: d.upload(&values(h.len(), 10 + k, -2.0, 2.0))?,
                y: d.alloc(h.len())?,
                dy: d.upload(&values(h.len(), 40 + k, -1.0, 1.0))?,
                dx: d.alloc(h.len())?,
                mean: d.alloc(h.c)?,
                invstd: d.alloc(h.c)?,
                var: d.alloc(h.c)?,
                gamma: d.upload(&values(h.c, 20 + k, 0.5, 1.5))?,
                beta: d.upload(&values(h.c, 30 + k, -0.5, 0.5))?,
                dgamma: d.alloc(h.c)?,
                dbeta: d.alloc(h.c)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for p in parts.iter_mut() {
        p.forward(&d, &mask)?;
    }
    Ok(Box::new(move || {
        for p in parts.iter_mut() {
            if backward {
                p.backward(&d, &mask)?;
            } else {
                p.forward(&d, &mask)?;
            }
        }
        Ok(())
    }))
}
