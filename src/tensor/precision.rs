//! The numerics a training run computes in (`--precision`), what PyTorch users set with
//! autocast and the TF32 switches. Weights, BN statistics, optimiser state, the PGD
//! perturbation and every accumulation stay f32 in all three; what changes is what the
//! convolutions multiply and what the activations are stored as.
//!
//! - `F32`: exact f32 everywhere, the reference the parity tests compare against (default).
//! - `Tf32`: the GPU's convolutions on the TF32 tensor-core kernels (`_v2`: operands rounded to
//!   TF32's 10-bit mantissa, f32 accumulation). There is no TF32 on a CPU, so a CPU run that
//!   asks for it is an error rather than a silent f32 run.
//! - `Bf16`: bf16 activations and bf16 convolution operands, as a bf16 tensor-core training
//!   step stores and multiplies them. On the CPU it is an emulation for measuring the accuracy
//!   cost of bf16 training (slower than f32, not faster): every value the GPU would store in
//!   bf16 is rounded to the nearest bf16 (ties to even, the hardware's `cvt.rn.bf16.f32`) and
//!   kept in an f32 whose low 16 bits are zero. Precisely:
//!   - a convolution multiplies bf16(x) by bf16(w) with f32 sums and stores bf16(y); its
//!     backward multiplies bf16(dy) by bf16(w) into bf16(dx), and bf16(dy) by bf16(x) into an
//!     f32 dw (the master weights' gradient);
//!   - the fused BN (+ residual) (+ masked ReLU) computes in f32 from its (bf16) inputs and
//!     stores bf16(y); its input gradients are stored in bf16, γ's and β's stay f32;
//!   - the input normalisation, pooling, the classifier and the losses stay f32 (a few
//!     kilobytes per image, where bf16 would save nothing).
//!
//!   On the GPU the same values are rounded the same way (`elementwise_round_bf16`); the
//!   convolutions run on the bf16 tensor-core kernels (kernels/conv2d_bf16.cu), whose operand
//!   conversions do the rounding, wherever the channels they copy come in eights, and on v1 over
//!   rounded operands elsewhere (the 3-channel stem), so both devices multiply the same values.
//!   The activations are still held in f32 buffers there: bf16 storage, and the fusion that
//!   would make bf16 pay, are further work.

use crate::device::args::Arg;
use crate::device::kernels::KernelId;
use crate::device::{int, launch_1d, Device};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::borrow::Cow;

/// The numerics of a run (see the module's documentation).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Exact f32.
    #[default]
    F32,
    /// TF32 tensor-core convolutions (GPU only).
    Tf32,
    /// bf16 activations and convolution operands (CPU: an emulation of the GPU's numerics).
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether `device` computes in this precision: an error naming what is missing and what
    /// to ask for instead when it cannot.
    pub fn check(self, device: &Device) -> Result<()> {
        match (self, device) {
            (Precision::F32, _) | (Precision::Tf32, Device::Cuda(_)) | (Precision::Bf16, _) => {
                Ok(())
            }
            (Precision::Tf32, Device::Cpu) => Err(Error::Config(
                "--precision tf32 needs a GPU: TF32 is a tensor-core format and the CPU has none \
                 (use --precision f32, or bf16 to measure reduced-precision training on the CPU)"
                    .into(),
            )),
        }
    }

    /// A value as this precision stores an activation: rounded to bf16 under `Bf16` (on the
    /// tensor's own device), as it is otherwise.
    pub(crate) fn store(self, mut t: Tensor, dev: &Device) -> Result<Tensor> {
        if self != Precision::Bf16 {
            return Ok(t);
        }
        match dev {
            Device::Cpu => {
                round_to_bf16(t.data_mut());
                Ok(t)
            }
            Device::Cuda(_) => rounded_on_gpu(&t, dev),
        }
    }

    /// An operand of a convolution as the multiplier reads it: a bf16-rounded copy under
    /// `Bf16` (on the CPU only where some value is not a bf16 yet), the tensor itself otherwise.
    pub(crate) fn operand<'a>(self, t: &'a Tensor, dev: &Device) -> Result<Cow<'a, Tensor>> {
        match (self, dev) {
            (Precision::Bf16, Device::Cpu) if !is_bf16(t.data()) => {
                Ok(Cow::Owned(self.store(t.clone(), dev)?))
            }
            (Precision::Bf16, Device::Cuda(_)) => Ok(Cow::Owned(rounded_on_gpu(t, dev)?)),
            _ => Ok(Cow::Borrowed(t)),
        }
    }
}

/// A GPU tensor's bf16 rounding (elementwise_round_bf16), as a new tensor.
fn rounded_on_gpu(t: &Tensor, dev: &Device) -> Result<Tensor> {
    let Device::Cuda(d) = dev else {
        unreachable!("called for GPU tensors only")
    };
    let n = t.numel();
    let mut out = Tensor::uninit_gpu(d, t.shape())?;
    d.launch(
        KernelId::ELEMENTWISE_ROUND_BF16,
        launch_1d(n),
        &[
            Arg::read(t.gpu(), n),
            int(n)?.into(),
            Arg::write(out.gpu_mut(), n),
        ],
    )?;
    Ok(out)
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Each value rounded to the nearest bf16, ties to even (NaN stays NaN, infinities stay).
pub fn round_to_bf16(v: &mut [f32]) {
    v.par_chunks_mut(1 << 14).for_each(|c| {
        for x in c {
            *x = half::bf16::from_f32(*x).to_f32();
        }
    });
}

/// Whether every value already is a bf16 (its low 16 bits zero): activations stored by an
/// earlier op need no second rounding.
fn is_bf16(v: &[f32]) -> bool {
    v.par_chunks(1 << 14)
        .all(|c| c.iter().all(|x| x.to_bits() & 0xFFFF == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounding to nearest, ties to even, at the 16-bit boundary; specials kept.
    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        let bits = |b: u32| f32::from_bits(b);
        let cases = [
            (0x3F80_0000, 0x3F80_0000), // 1.0 exact
            (0x3F80_7FFF, 0x3F80_0000), // below half an ulp: down
            (0x3F80_8000, 0x3F80_0000), // a tie, even below: stays
            (0x3F81_8000, 0x3F82_0000), // a tie, odd below: up to even
            (0x3F80_8001, 0x3F81_0000), // above half an ulp: up
            (0xBF80_C000, 0xBF81_0000), // negative values round by magnitude
            (0x7F7F_FFFF, 0x7F80_0000), // the largest f32 rounds to infinity
            (0x0000_0001, 0x0000_0000), // the smallest subnormal rounds to zero
        ];
        for (from, want) in cases {
            let mut v = [bits(from)];
            round_to_bf16(&mut v);
            assert_eq!(v[0].to_bits(), want, "{from:#010x}");
        }
        let mut special = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -0.0];
        round_to_bf16(&mut special);
        assert_eq!(special[0], f32::INFINITY);
        assert_eq!(special[1], f32::NEG_INFINITY);
        assert!(special[2].is_nan());
        assert_eq!(special[3].to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn only_bf16_is_stored_rounded_and_operands_are_rounded_once() {
        let cpu = Device::Cpu;
        let t = Tensor::from_vec(&[3], vec![1.0, 1.0 + 1e-3, -3.3]).unwrap();
        assert_eq!(Precision::F32.store(t.clone(), &cpu).unwrap(), t);
        let r = Precision::Bf16.store(t.clone(), &cpu).unwrap();
        assert!(r.data().iter().all(|x| x.to_bits() & 0xFFFF == 0));
        assert_eq!(r.data()[0], 1.0);
        let operand = |p: Precision, t| p.operand(t, &cpu).unwrap();
        assert!(matches!(operand(Precision::Bf16, &r), Cow::Borrowed(_)));
        assert_eq!(*operand(Precision::Bf16, &t), r);
        assert!(matches!(operand(Precision::Tf32, &t), Cow::Borrowed(_)));
    }

    #[test]
    fn a_device_that_cannot_compute_a_precision_is_named_in_the_error() {
        assert!(Precision::F32.check(&Device::Cpu).is_ok());
        assert!(Precision::Bf16.check(&Device::Cpu).is_ok());
        let err = Precision::Tf32.check(&Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("tf32") && err.contains("GPU"), "{err}");
    }
}
